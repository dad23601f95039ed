// Shared by the benchmarks: machine peak, FLOP counting, peak memory, JSON lines.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>

namespace doppel::bench {

// Achievable arithmetic peak of this machine, measured with tight register-only
// loops on `threads` threads: fp32 FMA and (where the CPU has AVX512_BF16) bf16 dot products.
struct MachinePeak {
  double fp32_gflops = 0;
  double bf16_gflops = 0;  // 0 when the CPU has no native bf16 dot product
};
MachinePeak measure_machine_peak(int threads, double seconds_per_test = 1.0);

// Peak resident set size of this process in MiB (VmHWM), and a reset of it.
double peak_rss_mib();
void reset_peak_rss();

// Median wall time of `repeats` runs of `work` after one warm-up run.
double median_seconds(int repeats, const std::function<void()>& work);

// Runs `work` once under ATen's profiler and prints to stderr the `top` op names
// by self time (time not spent in nested ops), forward and backward alike.
void print_op_profile(const std::function<void()>& work, int top = 30);

// Prints one figure as one JSON line on stdout (and flushes).
void print_figure(nlohmann::json figure);

}  // namespace doppel::bench

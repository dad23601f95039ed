#include "bench_support.hpp"

#include <ATen/ATen.h>

// GCC 12's own AVX-512 headers trip -Wuninitialized (their _mm512_undefined_*
// helpers); the warning is about the header, not this code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>
#include <vector>

#include "doppel/core/runtime.hpp"

namespace doppel::bench {
namespace {

using Clock = std::chrono::steady_clock;

// 12 independent accumulators hide the 4-cycle FMA latency on two FMA ports.
__attribute__((target("avx512f"))) double fp32_fma_loop(int64_t iterations) {
  __m512 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(0.001f * i);
  const __m512 x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(0.0001f);
  for (int64_t n = 0; n < iterations; ++n)
    for (int i = 0; i < 12; ++i) a[i] = _mm512_fmadd_ps(a[i], x, y);
  __m512 sum = a[0];
  for (int i = 1; i < 12; ++i) sum = _mm512_add_ps(sum, a[i]);
  return _mm512_reduce_add_ps(sum);
}

__attribute__((target("avx512f,avx512bf16"))) double bf16_dot_loop(int64_t iterations) {
  __m512 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_setzero_ps();
  const __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80);  // 1.0 in bf16
  const __m512bh y = (__m512bh)_mm512_set1_epi16(0x3c23);  // ~0.01
  for (int64_t n = 0; n < iterations; ++n)
    for (int i = 0; i < 12; ++i) a[i] = _mm512_dpbf16_ps(a[i], x, y);
  __m512 sum = a[0];
  for (int i = 1; i < 12; ++i) sum = _mm512_add_ps(sum, a[i]);
  return _mm512_reduce_add_ps(sum);
}

#pragma GCC diagnostic pop

// Runs `loop` on `threads` threads for about `seconds`; returns GFLOP/s.
double measure(int threads, double seconds, double flops_per_iteration, double (*loop)(int64_t)) {
  int64_t iterations = 1 << 16;
  while (true) {  // calibrate on one thread
    auto start = Clock::now();
    volatile double sink = loop(iterations);
    (void)sink;
    double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    if (elapsed > 0.05) {
      iterations = static_cast<int64_t>(iterations * seconds / elapsed);
      break;
    }
    iterations *= 4;
  }
  std::vector<std::thread> workers;
  auto start = Clock::now();
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&] {
      volatile double sink = loop(iterations);
      (void)sink;
    });
  for (auto& w : workers) w.join();
  double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  return flops_per_iteration * static_cast<double>(iterations) * threads / elapsed / 1e9;
}

}  // namespace

MachinePeak measure_machine_peak(int threads, double seconds_per_test) {
  MachinePeak peak;
  peak.fp32_gflops = measure(threads, seconds_per_test, 12 * 32.0, fp32_fma_loop);
  if (cpu_has_native_bf16())
    peak.bf16_gflops = measure(threads, seconds_per_test, 12 * 64.0, bf16_dot_loop);
  return peak;
}

double peak_rss_mib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

void reset_peak_rss() {
  std::ofstream("/proc/self/clear_refs") << "5";
}

double median_seconds(int repeats, const std::function<void()>& work) {
  work();
  std::vector<double> times;
  for (int i = 0; i < repeats; ++i) {
    auto start = Clock::now();
    work();
    times.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

void print_figure(nlohmann::json figure) {
  std::cout << figure.dump() << std::endl;
}

}  // namespace doppel::bench

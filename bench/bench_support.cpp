#include "bench_support.hpp"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/profiler_legacy.h>

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
#include <map>
#include <thread>
#include <vector>

#include "doppel/core/runtime.hpp"

namespace doppel::bench {
namespace {

using Clock = std::chrono::steady_clock;

// 12 independent accumulators hide the FMA latency on two FMA ports. The inner loop
// must be unrolled: as a loop over a[] GCC keeps the accumulators in memory, and the
// store-to-load latency then halves the measured peak (it did until 2026-12-03).
__attribute__((target("avx512f"))) double fp32_fma_loop(int64_t iterations) {
  __m512 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(0.001f * i);
  const __m512 x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(0.0001f);
  for (int64_t n = 0; n < iterations; ++n)
#pragma GCC unroll 12
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
#pragma GCC unroll 12
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

void print_op_profile(const std::function<void()>& work, int top) {
  namespace profiler = torch::autograd::profiler;
  struct Totals {
    double self_us = 0;
    int64_t calls = 0;
  };
  std::map<std::string, Totals> by_name;
  double all_us = 0;
  {
    profiler::TLSLegacyProfilerGuard guard(
        torch::profiler::impl::ProfilerConfig(torch::profiler::impl::ProfilerState::CPU),
        [&](const profiler::thread_event_lists& threads) {
          for (const auto& events : threads) {
            // Ranges nest per thread: a stack of (push event, time spent in children).
            std::vector<std::pair<const profiler::LegacyEvent*, double>> open;
            for (const auto& event : events) {
              if (event.kind() == profiler::EventKind::PushRange) {
                open.emplace_back(&event, 0.0);
              } else if (event.kind() == profiler::EventKind::PopRange && !open.empty()) {
                const auto [push, children_us] = open.back();
                open.pop_back();
                const double elapsed = push->cpuElapsedUs(event);
                Totals& totals = by_name[push->name()];
                totals.self_us += elapsed - children_us;
                ++totals.calls;
                if (open.empty()) {
                  all_us += elapsed;
                } else {
                  open.back().second += elapsed;
                }
              }
            }
          }
        });
    work();
  }
  std::vector<std::pair<std::string, Totals>> sorted(by_name.begin(), by_name.end());
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.second.self_us > b.second.self_us; });
  std::fprintf(stderr, "%-52s %10s %7s %8s\n", "op (self time)", "ms", "share", "calls");
  for (int i = 0; i < top && i < static_cast<int>(sorted.size()); ++i) {
    const auto& [name, totals] = sorted[static_cast<size_t>(i)];
    std::fprintf(stderr, "%-52s %10.1f %6.1f%% %8lld\n", name.c_str(), totals.self_us / 1000,
                 all_us > 0 ? 100 * totals.self_us / all_us : 0.0,
                 static_cast<long long>(totals.calls));
  }
  std::fprintf(stderr, "%-52s %10.1f\n", "all top-level ranges", all_us / 1000);
}

void print_figure(nlohmann::json figure) {
  std::cout << figure.dump() << std::endl;
}

}  // namespace doppel::bench

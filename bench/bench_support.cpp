#include "bench_support.hpp"

#include <ATen/ATen.h>
#include <ATen/record_function.h>

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

std::atomic<double> counted_flops{0};

int64_t numel_of(const c10::IValue& value) {
  return value.isTensor() ? value.toTensor().numel() : 0;
}

void add_flops(double flops) {
  double current = counted_flops.load();
  while (!counted_flops.compare_exchange_weak(current, current + flops)) {
  }
}

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  const std::string name = fn.name();
  auto inputs = fn.inputs();
  auto sizes = [&](size_t i) { return inputs[i].toTensor().sizes(); };
  if ((name == "aten::mm" || name == "aten::bmm") && inputs.size() >= 2) {
    auto b = sizes(1);
    add_flops(2.0 * static_cast<double>(numel_of(inputs[0])) * b.back());
  } else if ((name == "aten::addmm" || name == "aten::baddbmm") && inputs.size() >= 3) {
    auto b = sizes(2);
    add_flops(2.0 * static_cast<double>(numel_of(inputs[1])) * b.back());
  } else if (name == "aten::convolution" && inputs.size() >= 9) {
    // FLOPs = 2 * output elements * (Cin/groups * kh * kw); output size from the
    // usual formula with stride, padding and dilation.
    auto input = sizes(0), weight = sizes(1);
    auto stride = inputs[3].toIntVector(), padding = inputs[4].toIntVector(),
         dilation = inputs[5].toIntVector();
    double outputs = static_cast<double>(input[0]) * weight[0];
    for (size_t d = 0; d < 2 && d + 2 < input.size(); ++d) {
      int64_t extent =
          (input[d + 2] + 2 * padding[d] - dilation[d] * (weight[d + 2] - 1) - 1) / stride[d] + 1;
      outputs *= static_cast<double>(extent);
    }
    add_flops(2.0 * outputs * static_cast<double>(weight[1] * weight[2] * weight[3]));
  }
  return nullptr;
}

}  // namespace

MachinePeak measure_machine_peak(int threads, double seconds_per_test) {
  MachinePeak peak;
  peak.fp32_gflops = measure(threads, seconds_per_test, 12 * 32.0, fp32_fma_loop);
  if (cpu_has_native_bf16())
    peak.bf16_gflops = measure(threads, seconds_per_test, 12 * 64.0, bf16_dot_loop);
  return peak;
}

FlopCounter::FlopCounter() {
  counted_flops = 0;
  handle_ = at::addGlobalCallback(
      at::RecordFunctionCallback(on_start).needsInputs(true).scopes({at::RecordScope::FUNCTION}));
}

FlopCounter::~FlopCounter() {
  at::removeCallback(handle_);
}

double FlopCounter::flops() const {
  return counted_flops.load();
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

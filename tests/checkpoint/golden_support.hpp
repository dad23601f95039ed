// Helpers for golden parity tests: read a golden file, compare with a stated
// relative bound and print the measured figures.
#pragma once
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "doppel/core/safetensors.hpp"

namespace doppel::test {

// A golden tensor, copied out of the mapped file.
inline at::Tensor golden_tensor(const SafetensorsFile& file, const std::string& name) {
  return file.tensor(name).clone();
}

struct Difference {
  double max_abs = 0;
  double relative = 0;  // max_abs / max|golden|
};

inline Difference compare(const at::Tensor& actual, const at::Tensor& golden) {
  const at::Tensor a = actual.to(at::kDouble), g = golden.to(at::kDouble);
  Difference difference;
  difference.max_abs = (a - g).abs().max().item<double>();
  difference.relative = difference.max_abs / g.abs().max().item<double>();
  return difference;
}

// README "Tolerances": single module calls ~1e-5 relative to max|golden|.
inline constexpr double kSingleCallBound = 1e-5;

// EXPECTs relative difference < bound; prints the figures for the report.
inline void expect_close(const at::Tensor& actual, const at::Tensor& golden, double bound,
                         const std::string& label) {
  ASSERT_EQ(actual.sizes(), golden.sizes()) << label;
  const Difference difference = compare(actual, golden);
  std::printf("[ parity   ] %-48s max abs %.3g  rel %.3g\n", label.c_str(), difference.max_abs,
              difference.relative);
  EXPECT_LT(difference.relative, bound) << label << ": max abs " << difference.max_abs;
}

}  // namespace doppel::test

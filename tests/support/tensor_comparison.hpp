// Tensor comparisons shared by the tests of several layers (one definition each: the test
// files of a folder are compiled together).
#pragma once
#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>

namespace doppel::test {

// max |a - b|, computed in double precision.
inline double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

// max |actual - expected| relative to max |expected|, in double precision.
inline double relative_difference(const at::Tensor& actual, const at::Tensor& expected) {
  return max_abs_diff(actual, expected) / expected.abs().max().item<double>();
}

// softmax(q k^T / sqrt(d)) v per head in double precision (differentiable): the formula the
// attention paths are tested against. q: [N, Lq, H*D], k: [N, Lk, H*D], v: [N, Lk, H*Dv].
inline at::Tensor reference_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      int64_t heads) {
  const int64_t n = q.size(0), head_dim = q.size(2) / heads, value_dim = v.size(2) / heads;
  auto split = [&](const at::Tensor& x, int64_t dim) {
    return x.to(at::kDouble).reshape({n, x.size(1), heads, dim}).transpose(1, 2);
  };
  const at::Tensor scores = at::matmul(split(q, head_dim), split(k, head_dim).transpose(-1, -2)) /
                            std::sqrt(static_cast<double>(head_dim));
  const at::Tensor out = at::matmul(at::softmax(scores, -1), split(v, value_dim));
  return out.transpose(1, 2).reshape({n, q.size(1), heads * value_dim});
}

}  // namespace doppel::test

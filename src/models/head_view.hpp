// Element access to the heads of a bf16 [N, L, H*D] tensor of any strides, for
// the fused attention kernels (the VAE passes transposed views).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>

namespace doppel {

// Where a bf16 [N, L, C] tensor's element [0, 0, 0] is, and how to step through it.
struct HeadView {
  const uint16_t* data;  // bf16 bits of element [0, 0, 0]
  int64_t batch_stride, row_stride, column_stride;

  explicit HeadView(const at::Tensor& tensor)
      : data(reinterpret_cast<const uint16_t*>(tensor.data_ptr<at::BFloat16>())),
        batch_stride(tensor.stride(0)),
        row_stride(tensor.stride(1)),
        column_stride(tensor.stride(2)) {}

  uint16_t at(int64_t batch, int64_t row, int64_t column) const {
    return data[batch * batch_stride + row * row_stride + column * column_stride];
  }
};

}  // namespace doppel

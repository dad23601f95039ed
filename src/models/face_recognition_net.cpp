#include "doppel/models/face_recognition_net.hpp"

#include <ATen/ATen.h>

#include "doppel/core/error.hpp"

namespace doppel {

FaceConvLayerImpl::FaceConvLayerImpl(int64_t in_channels, int64_t out_channels,
                                     int64_t kernel_size) {
  conv_ = register_module("conv", std::make_shared<Convolution>());
  conv_->filters = conv_->register_parameter(
      "filters", at::zeros({out_channels, in_channels, kernel_size, kernel_size}));
  conv_->bias = conv_->register_parameter("bias", at::zeros({out_channels}));
  scale_ = register_module("scale", std::make_shared<Scale>());
  scale_->weights = scale_->register_parameter("weights", at::ones({out_channels}));
  scale_->biases = scale_->register_parameter("biases", at::zeros({out_channels}));
}

at::Tensor FaceConvLayerImpl::forward(const at::Tensor& x, int64_t stride, int64_t padding,
                                      bool relu) {
  at::Tensor y = at::conv2d(x, conv_->filters, conv_->bias, stride, padding);
  // The affine "scale" layer is kept separate from the conv (not folded into
  // it) so that float rounding follows the reference order of operations.
  y = y * scale_->weights.view({1, -1, 1, 1}) + scale_->biases.view({1, -1, 1, 1});
  return relu ? at::relu(y) : y;
}

FaceResidualBlockImpl::FaceResidualBlockImpl(int64_t in_channels, int64_t out_channels,
                                             bool downsample)
    : downsample_(downsample) {
  conv1_ = register_module("conv1", FaceConvLayer(in_channels, out_channels, 3));
  conv2_ = register_module("conv2", FaceConvLayer(out_channels, out_channels, 3));
}

at::Tensor FaceResidualBlockImpl::forward(const at::Tensor& x) {
  if (!downsample_) {
    at::Tensor y = conv2_->forward(conv1_->forward(x, 1, 1, true), 1, 1, false);
    return at::relu(y + x);
  }
  // TensorFlow 'valid' stride-2 conv: no padding, floor((n - 3) / 2) + 1.
  at::Tensor y = conv2_->forward(conv1_->forward(x, 2, 0, true), 1, 1, false);  // [N,C',h,w]
  at::Tensor shortcut = at::avg_pool2d(x, 2, 2);                                // [N,C,H/2,W/2]
  // Odd sizes make the conv output one row/column smaller than the pooled
  // shortcut (3x3 vs 4x4); the reference appends zeros at the bottom/right.
  const int64_t pad_rows = shortcut.size(2) - y.size(2);
  const int64_t pad_cols = shortcut.size(3) - y.size(3);
  if (pad_rows < 0 || pad_cols < 0)
    throw Error(ErrorCode::kInternal, "face network: residual shortcut smaller than its branch");
  if (pad_rows > 0 || pad_cols > 0) y = at::constant_pad_nd(y, {0, pad_cols, 0, pad_rows});
  const int64_t extra_channels = y.size(1) - shortcut.size(1);
  if (extra_channels > 0) shortcut = at::constant_pad_nd(shortcut, {0, 0, 0, 0, 0, extra_channels});
  return at::relu(shortcut + y);
}

FaceRecognitionNetImpl::FaceRecognitionNetImpl(const FaceRecognitionNetConfig& config)
    : config_(config) {
  if (config.stage_channels.size() != 4 || config.descriptor_size <= 0 ||
      config.input_channels <= 0)
    throw Error(ErrorCode::kInvalidArgument,
                "face network config needs 4 stage channel counts and a positive descriptor size");
  const auto& c = config.stage_channels;
  conv32_down_ = register_module("conv32_down", FaceConvLayer(config.input_channels, c[0], 7));
  // Names are the reference's; they keep their "32/64/..." even in tiny test configs.
  struct BlockSpec {
    const char* name;
    int64_t in, out;
    bool downsample;
  };
  const BlockSpec specs[] = {
      {"conv32_1", c[0], c[0], false},    {"conv32_2", c[0], c[0], false},
      {"conv32_3", c[0], c[0], false},    {"conv64_down", c[0], c[1], true},
      {"conv64_1", c[1], c[1], false},    {"conv64_2", c[1], c[1], false},
      {"conv64_3", c[1], c[1], false},    {"conv128_down", c[1], c[2], true},
      {"conv128_1", c[2], c[2], false},   {"conv128_2", c[2], c[2], false},
      {"conv256_down", c[2], c[3], true}, {"conv256_1", c[3], c[3], false},
      {"conv256_2", c[3], c[3], false},   {"conv256_down_out", c[3], c[3], true},
  };
  for (const auto& spec : specs)
    blocks_.emplace_back(spec.name, register_module(spec.name, FaceResidualBlock(spec.in, spec.out,
                                                                                 spec.downsample)));
  fc_ = register_parameter("fc", at::zeros({c[3], config.descriptor_size}));
}

at::Tensor FaceRecognitionNetImpl::forward_with_intermediates(
    const at::Tensor& x, std::vector<std::pair<std::string, at::Tensor>>& out) {
  if (x.dim() != 4 || x.size(1) != config_.input_channels)
    throw Error(
        ErrorCode::kInvalidArgument,
        "face network expects [N, " + std::to_string(config_.input_channels) + ", H, W] input");
  at::Tensor h = conv32_down_->forward(x, 2, 0, true);  // [N,32,72,72] for 150x150
  out.emplace_back("conv32_down", h);
  h = at::max_pool2d(h, 3, 2);  // [N,32,35,35]
  out.emplace_back("max_pool", h);
  for (auto& [name, block] : blocks_) {
    h = block->forward(h);
    out.emplace_back(name, h);
  }
  h = h.mean({2, 3});  // [N,256]
  out.emplace_back("global_avg", h);
  h = h.matmul(fc_);  // [N,128]
  out.emplace_back("fc", h);
  return h;
}

at::Tensor FaceRecognitionNetImpl::forward(const at::Tensor& x) {
  std::vector<std::pair<std::string, at::Tensor>> unused;
  unused.reserve(20);
  return forward_with_intermediates(x, unused);
}

at::Tensor normalize_face_crops(const at::Tensor& crops_uint8_nhwc) {
  if (crops_uint8_nhwc.dim() != 4 || crops_uint8_nhwc.size(3) != 3 ||
      crops_uint8_nhwc.scalar_type() != at::kByte)
    throw Error(ErrorCode::kInvalidArgument, "face crops must be uint8 [N, H, W, 3] RGB");
  // The mean RGB of dlib's training faces, as face-api.js subtracts it.
  const at::Tensor mean =
      at::tensor({122.782f, 117.001f, 104.298f}, crops_uint8_nhwc.options().dtype(at::kFloat));
  return ((crops_uint8_nhwc.to(at::kFloat) - mean) / 255.0f).permute({0, 3, 1, 2}).contiguous();
}

}  // namespace doppel

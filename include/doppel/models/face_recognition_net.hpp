// The 128-d face-recognition network of face-api.js (a port of dlib's
// ResNet-29 "dlib_face_recognition_resnet_model_v1"). It maps a 150x150
// aligned face crop to a descriptor; two photos of one person lie within
// ~0.6 Euclidean distance of each other.
//
// Parameter names follow the face-api.js weight names with '.' for '/'
// (`conv32_1.conv1.conv.filters`), so its weights load without a name table.
// Filters are stored in torch's [out, in, kh, kw] order.
#pragma once
#include <torch/nn.h>

#include <string>
#include <utility>
#include <vector>

namespace doppel {

struct FaceRecognitionNetConfig {
  // Channels of the four stages (conv32_*, conv64_*, conv128_*, conv256_*).
  std::vector<int64_t> stage_channels = {32, 64, 128, 256};
  int64_t descriptor_size = 128;
  int64_t input_channels = 3;
};

// A convolution with bias followed by a per-channel affine "scale" layer
// (dlib's frozen batch norm) and optionally ReLU.
class FaceConvLayerImpl : public torch::nn::Module {
 public:
  FaceConvLayerImpl(int64_t in_channels, int64_t out_channels, int64_t kernel_size);
  // stride and padding vary per use; the weights do not.
  at::Tensor forward(const at::Tensor& x, int64_t stride, int64_t padding, bool relu);

 private:
  struct Convolution : torch::nn::Module {
    at::Tensor filters, bias;
  };
  struct Scale : torch::nn::Module {
    at::Tensor weights, biases;
  };
  std::shared_ptr<Convolution> conv_;
  std::shared_ptr<Scale> scale_;
};
TORCH_MODULE(FaceConvLayer);

// relu(conv2(conv1(x)) + shortcut(x)); `downsample` halves the size with a
// stride-2 'valid' conv1 and a 2x2 average-pool shortcut, zero-padding the
// smaller of the two to the other's size (and the shortcut's channels).
class FaceResidualBlockImpl : public torch::nn::Module {
 public:
  FaceResidualBlockImpl(int64_t in_channels, int64_t out_channels, bool downsample);
  at::Tensor forward(const at::Tensor& x);

 private:
  bool downsample_;
  FaceConvLayer conv1_{nullptr}, conv2_{nullptr};
};
TORCH_MODULE(FaceResidualBlock);

class FaceRecognitionNetImpl : public torch::nn::Module {
 public:
  explicit FaceRecognitionNetImpl(const FaceRecognitionNetConfig& config = {});

  // x: [N, 3, H, W] normalised as normalize_face_crops does (H = W = 150 for
  // the trained weights). Returns [N, descriptor_size] (not L2-normalised).
  at::Tensor forward(const at::Tensor& x);

  // The same pass, also returning the output of every block by its name
  // ("conv32_down", "max_pool", ..., "global_avg", "fc") for stage-by-stage checks.
  at::Tensor forward_with_intermediates(const at::Tensor& x,
                                        std::vector<std::pair<std::string, at::Tensor>>& out);

  const FaceRecognitionNetConfig& config() const { return config_; }

 private:
  FaceRecognitionNetConfig config_;
  FaceConvLayer conv32_down_{nullptr};
  std::vector<std::pair<std::string, FaceResidualBlock>> blocks_;
  at::Tensor fc_;  // [in, descriptor_size], used as x.matmul(fc)
};
TORCH_MODULE(FaceRecognitionNet);

// uint8 crops [N, H, W, 3] (RGB, any device) -> float [N, 3, H, W] as the
// network was trained: (pixel - mean RGB) / 255.
at::Tensor normalize_face_crops(const at::Tensor& crops_uint8_nhwc);

}  // namespace doppel

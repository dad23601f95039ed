// TensorFlow.js weight files: a JSON manifest naming every tensor (shape,
// dtype, optional uint8/uint16/float16 quantisation) and binary shards holding
// the tensors back to back in manifest order. face-api.js ships its networks so.
#pragma once
#include <ATen/ATen.h>

#include <filesystem>
#include <string>
#include <vector>

namespace doppel {

struct TfjsTensor {
  std::string name;  // as in the manifest, '/'-separated
  at::Tensor value;  // CPU, dequantised (float32 / int32 / bool as declared)
};

// Reads a `*-weights_manifest.json` and its shards (paths relative to the
// manifest). Every size is checked against the bytes present; throws
// doppel::Error naming the file and the tensor on any mismatch.
std::vector<TfjsTensor> read_tfjs_weights(const std::filesystem::path& manifest_path);

}  // namespace doppel

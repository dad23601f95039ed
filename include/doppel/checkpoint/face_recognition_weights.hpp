// Loading face-api.js's FaceRecognitionNet weights (TensorFlow.js manifest +
// shard) into doppel's libtorch module.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "doppel/checkpoint/formats/tfjs_weights.hpp"
#include "doppel/checkpoint/load_state.hpp"
#include "doppel/models/face_recognition_net.hpp"

namespace doppel {

// Copies tensors into the module's parameters. Module names are the tfjs
// names with '.' for '/'; tfjs stores conv filters HWIO, torch wants OIHW.
// Throws kInvalidFile naming the tensor on a shape mismatch or missing tensor.
LoadReport assign_face_recognition_weights(FaceRecognitionNet& net,
                                           const std::vector<TfjsTensor>& tensors);

// $DOPPEL_MODELS_DIR/face/face_recognition_model-weights_manifest.json.
std::filesystem::path default_face_recognition_manifest();

// Builds the 128-d network and loads it from a manifest; eval mode, on `device`.
FaceRecognitionNet load_face_recognition_net(const std::filesystem::path& manifest_path,
                                             const at::Device& device = at::kCPU);

}  // namespace doppel

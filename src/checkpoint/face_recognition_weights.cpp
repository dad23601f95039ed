#include "doppel/checkpoint/face_recognition_weights.hpp"

#include <map>
#include <set>

#include "doppel/core/error.hpp"
#include "doppel/core/log.hpp"
#include "doppel/core/paths.hpp"

namespace doppel {

LoadReport assign_face_recognition_weights(FaceRecognitionNet& net,
                                           const std::vector<TfjsTensor>& tensors) {
  std::map<std::string, const at::Tensor*> by_name;
  for (const auto& t : tensors) {
    std::string name = t.name;
    std::replace(name.begin(), name.end(), '/', '.');
    by_name[name] = &t.value;
  }
  LoadReport report;
  std::set<std::string> used;
  at::NoGradGuard no_grad;
  for (auto& item : net->named_parameters()) {
    const std::string& name = item.key();
    at::Tensor& parameter = item.value();
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      report.missing.push_back(name);
      continue;
    }
    at::Tensor value = *it->second;
    // tfjs convolution filters are [kh, kw, in, out]; torch's are [out, in, kh, kw].
    if (value.dim() == 4) value = value.permute({3, 2, 0, 1});
    if (value.sizes() != parameter.sizes())
      throw Error(ErrorCode::kInvalidFile, "face recognition weights: tensor '" + it->first +
                                               "' has shape " + c10::str(value.sizes()) +
                                               ", the network needs " +
                                               c10::str(parameter.sizes()));
    parameter.copy_(value.to(parameter.options()));
    used.insert(name);
    report.loaded.push_back(it->first);
  }
  for (const auto& [name, tensor] : by_name)
    if (!used.count(name)) report.unused.push_back(name);
  if (!report.missing.empty()) {
    std::string list;
    for (const auto& name : report.missing) list += (list.empty() ? "" : ", ") + name;
    throw Error(ErrorCode::kInvalidFile, "face recognition weights lack " +
                                             std::to_string(report.missing.size()) +
                                             " tensors: " + list);
  }
  return report;
}

std::filesystem::path default_face_recognition_manifest() {
  return default_models_dir() / "face" / "face_recognition_model-weights_manifest.json";
}

FaceRecognitionNet load_face_recognition_net(const std::filesystem::path& manifest_path,
                                             const at::Device& device) {
  if (!std::filesystem::is_regular_file(manifest_path))
    throw Error(ErrorCode::kNotFound,
                "face recognition model not found at " + manifest_path.string() +
                    "; run scripts/install.sh (it fetches @vladmandic/face-api) or set "
                    "DOPPEL_MODELS_DIR");
  FaceRecognitionNet net{FaceRecognitionNetConfig{}};
  const LoadReport report = assign_face_recognition_weights(net, read_tfjs_weights(manifest_path));
  for (const auto& name : report.unused)
    log_warning("face recognition weights: unused tensor " + name + " in " +
                manifest_path.string());
  net->to(device);
  net->eval();
  return net;
}

}  // namespace doppel

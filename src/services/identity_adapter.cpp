#include "doppel/services/identity_adapter.hpp"

#include "doppel/checkpoint/clip_vision.hpp"
#include "doppel/checkpoint/ip_adapter.hpp"
#include "doppel/core/error.hpp"

namespace doppel::services {

std::string plus_face_adapter_file_name(ModelFamily family) {
  return family == ModelFamily::kSdxl ? "ip-adapter-plus-face_sdxl_vit-h.safetensors"
                                      : "ip-adapter-plus-face_sd15.safetensors";
}

namespace {

// Registered adapters of the family, best first: plus-face, then the other face variant;
// newer before older (list_models answers oldest first).
std::optional<store::Model> registered_adapter(store::Repository& repository, ModelFamily family) {
  std::optional<store::Model> best;
  const auto rank = [](const store::Model& model) {
    return model.prediction == "plus-face" ? 2 : model.prediction == "full-face" ? 1 : 0;
  };
  for (const store::Model& model : repository.list_models()) {
    if (model.kind != store::kModelIpAdapter || model.family != model_family_name(family) ||
        rank(model) == 0)
      continue;
    if (!best || rank(model) >= rank(*best)) best = model;
  }
  return best;
}

}  // namespace

IdentityAdapterFiles find_identity_adapter(store::Repository& repository, ModelFamily family,
                                           const std::filesystem::path& models_dir) {
  IdentityAdapterFiles files;
  if (const auto registered = registered_adapter(repository, family)) {
    files.adapter = registered->path;
  } else {
    files.adapter = models_dir / "ip_adapter" / plus_face_adapter_file_name(family);
    if (!std::filesystem::is_regular_file(files.adapter))
      throw Error(ErrorCode::kNotFound,
                  "portraits from one photo need the IP-Adapter " +
                      plus_face_adapter_file_name(family) +
                      " (from h94/IP-Adapter on Hugging "
                      "Face): put it in " +
                      (models_dir / "ip_adapter").string() +
                      ", or register it in Settings (Models, kind IP-Adapter)");
  }
  if (!std::filesystem::exists(files.adapter))
    throw Error(ErrorCode::kNotFound, "the registered IP-Adapter " + files.adapter.string() +
                                          " is gone from the disk; put it back or register "
                                          "another in Settings");
  const IpAdapterConfig config =
      infer_ip_adapter_config(open_ip_adapter_tensors(files.adapter), files.adapter.string());
  for (const store::Model& model : repository.list_models()) {
    if (model.kind != store::kModelImageEncoder || !std::filesystem::exists(model.path)) continue;
    try {
      const ClipVisionConfig encoder = read_clip_vision_config(model.path);
      const int64_t width =
          config.uses_hidden_states() ? encoder.hidden_size : encoder.projection_dim;
      if (width == config.image_embed_dim) files.encoder = model.path;
    } catch (const Error&) {
      // Changed on the disk since it was registered: the next one may fit.
    }
  }
  if (!files.encoder.empty()) return files;
  try {
    find_image_encoder(files.adapter, config, models_dir);
  } catch (const Error& error) {
    throw Error(ErrorCode::kNotFound,
                std::string("the IP-Adapter needs its CLIP image encoder (h94's "
                            "models/image_encoder folder): put that folder in ") +
                    (models_dir / "image_encoder").string() +
                    ", or register it in Settings (Models, kind image encoder). " + error.what());
  }
  return files;
}

}  // namespace doppel::services

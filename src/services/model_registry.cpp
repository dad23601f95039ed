#include "doppel/services/model_registry.hpp"

#include <algorithm>
#include <filesystem>

#include "doppel/checkpoint/clip_vision.hpp"
#include "doppel/checkpoint/ip_adapter.hpp"
#include "doppel/checkpoint/stable_diffusion.hpp"
#include "doppel/core/error.hpp"
#include "doppel/services/job_payloads.hpp"

namespace doppel::services {

namespace {

constexpr const char* kWhatToRegister =
    "register a Stable Diffusion 1.x, 2.x or XL model: a .safetensors checkpoint or a diffusers "
    "folder (with unet/, vae/, text_encoder/) that the server can read";

[[noreturn]] void refuse(const std::string& path, const std::string& problem) {
  throw Error(ErrorCode::kInvalidArgument,
              "cannot use " + path + ": " + problem + "; " + std::string(kWhatToRegister));
}

[[noreturn]] void refuse_kind(const std::string& path, const std::string& problem,
                              const std::string& what_to_register) {
  throw Error(ErrorCode::kInvalidArgument,
              "cannot use " + path + ": " + problem + "; " + what_to_register);
}

constexpr const char* kAdapterToRegister =
    "register an h94 IP-Adapter file (.safetensors or .bin, e.g. "
    "ip-adapter-plus-face_sd15.safetensors) as kind 'ip_adapter'";
constexpr const char* kEncoderToRegister =
    "register a CLIP image encoder (h94's models/image_encoder folder with config.json and "
    "model.safetensors, or an open_clip file) as kind 'image_encoder'";

// What the file at `path` is when it is not what it was registered as: "an IP-Adapter",
// "a CLIP image encoder", "a Stable Diffusion checkpoint", or "" (none of them).
std::string other_kind(const std::string& path, const std::string& not_this) {
  if (not_this != store::kModelIpAdapter) {
    try {
      infer_ip_adapter_config(open_ip_adapter_tensors(path), path);
      return "an IP-Adapter (register it as kind 'ip_adapter')";
    } catch (const Error&) {
    }
  }
  if (not_this != store::kModelImageEncoder) {
    try {
      read_clip_vision_config(path);
      return "a CLIP image encoder (register it as kind 'image_encoder')";
    } catch (const Error&) {
    }
  }
  if (not_this != store::kModelCheckpoint) {
    try {
      inspect_stable_diffusion(path);
      return "a Stable Diffusion checkpoint (register it as kind 'checkpoint')";
    } catch (const Error&) {
    }
  }
  return "";
}

std::string ip_adapter_variant(const IpAdapterConfig& config, const std::string& path) {
  switch (config.kind) {
    case ImageProjectionKind::kLinear:
      return "base";
    case ImageProjectionKind::kMlp:
      return "full-face";
    case ImageProjectionKind::kResampler:
      break;
  }
  const std::string stem = std::filesystem::path(path).stem().string();
  return stem.find("face") != std::string::npos ? "plus-face" : "plus";
}

store::Model inspect_ip_adapter(const std::string& path) {
  if (!std::filesystem::is_regular_file(path))
    refuse_kind(path, "an IP-Adapter is one file, not a folder", kAdapterToRegister);
  IpAdapterConfig config;
  try {
    config = infer_ip_adapter_config(open_ip_adapter_tensors(path), path);
  } catch (const Error& error) {
    const std::string is = other_kind(path, store::kModelIpAdapter);
    refuse_kind(path,
                is.empty() ? std::string("it is not an IP-Adapter (") + error.what() + ")"
                           : "it is " + is + ", not an IP-Adapter",
                kAdapterToRegister);
  }
  store::Model model;
  model.kind = store::kModelIpAdapter;
  // The width of its image tokens is the text context's of the model it was made for.
  model.family = config.cross_attention_dim == 2048   ? "sdxl"
                 : config.cross_attention_dim == 1024 ? "sd2"
                                                      : "sd1";
  model.prediction = ip_adapter_variant(config, path);
  return model;
}

store::Model inspect_image_encoder(const std::string& path) {
  ClipVisionConfig config;
  try {
    config = read_clip_vision_config(path);
  } catch (const Error& error) {
    const std::string is = other_kind(path, store::kModelImageEncoder);
    refuse_kind(path,
                is.empty() ? std::string("it is not a CLIP image encoder (") + error.what() + ")"
                           : "it is " + is + ", not a CLIP image encoder",
                kEncoderToRegister);
  }
  store::Model model;
  model.kind = store::kModelImageEncoder;
  model.family = config.hidden_size == 1280   ? "vit-h-14"
                 : config.hidden_size == 1664 ? "vit-bigg-14"
                                              : "clip-vision";
  model.prediction = std::to_string(config.hidden_size);
  return model;
}

bool inside(const std::filesystem::path& path, const std::filesystem::path& folder) {
  const std::filesystem::path relative = path.lexically_relative(folder);
  return !relative.empty() && *relative.begin() != "..";
}

}  // namespace

std::string resolve_in_model_folders(const std::string& path,
                                     const std::vector<std::filesystem::path>& folders) {
  namespace fs = std::filesystem;
  std::vector<fs::path> roots;          // resolved (canonical)
  std::vector<fs::path> written_roots;  // as given, where that differs
  std::string names;
  for (const fs::path& folder : folders) {
    std::error_code status;
    const fs::path root = fs::canonical(folder, status);
    if (status) continue;
    roots.push_back(root);
    names += (names.empty() ? "" : ", ") + root.string();
    // A folder named through a link: paths written under its given name are inside it too.
    const fs::path given = fs::absolute(folder, status).lexically_normal();
    if (!status && given != root) written_roots.push_back(given);
  }
  const auto outside = [&]() -> Error {
    return Error(ErrorCode::kInvalidArgument,
                 "models are registered only from the server's model folders (" +
                     (names.empty() ? std::string("none exists") : names) +
                     "): put the model there, or start the server with --model-dir FOLDER or "
                     "--model PATH");
  };
  std::vector<fs::path> candidates;
  if (fs::path(path).is_absolute()) {
    candidates.push_back(fs::path(path).lexically_normal());
  } else {
    for (const fs::path& root : roots) candidates.push_back((root / path).lexically_normal());
  }
  bool missing = false;
  for (fs::path candidate : candidates) {
    while (!candidate.has_filename() && candidate.has_parent_path() &&
           candidate != candidate.parent_path())
      candidate = candidate.parent_path();  // "sd15/" and "sd15" alike
    const auto holds_candidate = [&](const fs::path& root) { return inside(candidate, root); };
    if (std::none_of(roots.begin(), roots.end(), holds_candidate) &&
        std::none_of(written_roots.begin(), written_roots.end(), holds_candidate))
      continue;
    std::error_code status;
    const fs::path real = fs::canonical(candidate, status);
    if (status) {
      missing = true;
      continue;
    }
    // A link inside a model folder may point anywhere: the place it points to must be inside.
    if (std::any_of(roots.begin(), roots.end(),
                    [&](const fs::path& root) { return inside(real, root); }))
      return real.string();
  }
  if (missing)
    refuse(path, "there is no file or folder at this path in the model folders (" + names +
                     "; check the spelling)");
  throw outside();
}

std::string normalise_model_path(const std::string& path) {
  std::error_code status;
  std::filesystem::path absolute = std::filesystem::absolute(path, status);
  if (status) absolute = path;
  std::string text = absolute.lexically_normal().string();
  while (text.size() > 1 && text.back() == '/') text.pop_back();  // "sd15/" and "sd15" alike
  return text;
}

store::Model inspect_model_for_registry(const std::string& path,
                                        const std::optional<std::string>& name,
                                        const std::string& kind) {
  std::error_code status;
  const auto type = std::filesystem::status(path, status).type();
  if (type == std::filesystem::file_type::not_found || type == std::filesystem::file_type::none)
    refuse(path,
           "there is no file or folder at this path on the server (check the spelling; a "
           "relative path is taken from the folder doppel serve runs in)");
  if (type != std::filesystem::file_type::regular && type != std::filesystem::file_type::directory)
    refuse(path, "it is neither a file nor a folder");
  if (kind == store::kModelIpAdapter || kind == store::kModelImageEncoder) {
    store::Model model =
        kind == store::kModelIpAdapter ? inspect_ip_adapter(path) : inspect_image_encoder(path);
    model.path = path;
    model.name = name.value_or(model_display_name(path));
    return model;
  }
  if (kind != store::kModelCheckpoint)
    throw Error(ErrorCode::kInvalidArgument,
                "unknown model kind '" + kind + "'; use checkpoint, ip_adapter or image_encoder");
  ModelInspection inspection;
  try {
    inspection = inspect_stable_diffusion(path);
  } catch (const Error& error) {
    const std::string is = other_kind(path, store::kModelCheckpoint);
    if (!is.empty()) refuse(path, "it is " + is + ", not a Stable Diffusion checkpoint");
    refuse(path, std::string("it is not a Stable Diffusion model the studio can load (") +
                     error.what() + ")");
  }
  if (inspection.inpainting)
    refuse(path,
           "it is an inpainting model (9-channel UNet), which cannot shoot portraits from "
           "text alone");
  store::Model model;
  model.path = path;
  model.name = name.value_or(model_display_name(path));
  model.family = model_family_name(inspection.family);
  model.prediction = inspection.prediction_type;
  return model;
}

TrainingDefaults training_defaults(const store::Model& model) {
  if (model.builtin) return {20, 4, 64};  // the tiny model makes 64x64 images in a blink
  // SD 2.x v-prediction models (768-v) were trained at 768 pixels, the others at 512.
  const bool sd2_768 = model.family == "sd2" && model.prediction == "v_prediction";
  TrainingDefaults defaults;
  if (sd2_768) defaults.resolution = 768;
  return defaults;
}

}  // namespace doppel::services

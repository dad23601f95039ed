#include "doppel/services/model_registry.hpp"

#include <algorithm>
#include <filesystem>

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
                                        const std::optional<std::string>& name) {
  std::error_code status;
  const auto type = std::filesystem::status(path, status).type();
  if (type == std::filesystem::file_type::not_found || type == std::filesystem::file_type::none)
    refuse(path,
           "there is no file or folder at this path on the server (check the spelling; a "
           "relative path is taken from the folder doppel serve runs in)");
  if (type != std::filesystem::file_type::regular && type != std::filesystem::file_type::directory)
    refuse(path, "it is neither a file nor a folder");
  ModelInspection inspection;
  try {
    inspection = inspect_stable_diffusion(path);
  } catch (const Error& error) {
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

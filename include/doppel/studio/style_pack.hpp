// Style packs: the looks a portrait studio offers (ID photo, business
// headshot, watercolour, ...) as data files, styles/*.yaml. docs/styles.md
// describes the format; every field is validated when a pack is loaded.
#pragma once
#include <nlohmann/json_fwd.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "doppel/checkpoint/model_detection.hpp"

namespace doppel {

// A LoRA a style merges on top of the subject's (e.g. a film-grain LoRA).
struct StyleLora {
  std::string file;  // a .safetensors file name in the LoRA folder (models/lora)
  double weight = 1.0;
};

// A ControlNet a style steers every shot with: a pose, the lines of a scene.
struct StyleControl {
  std::string model;                  // a file (or diffusers folder) name in the ControlNet folder
  std::string image;                  // the control picture, relative to the pack's file
  std::string preprocessor = "none";  // canny | face_pose | none (the image is the map)
  double weight = 1.0;                // 0-2
  double start = 0.0;                 // fractions of the steps it applies to
  double end = 1.0;
};

// A1111's hires fix for a style: sample at the pack's size, upscale, denoise again.
struct StyleHires {
  double scale = 1.5;  // 1-4
  double strength = 0.5;
  int64_t steps = 0;  // 0: the pack's steps
  std::string upscaler = "Latent";
};

// How a style brings out the person without (or besides) their trained LoRA (YAML "identity").
struct StyleIdentity {
  // IP-Adapter plus-face weight from the subject's best photo; 0: none. An instant subject
  // (no LoRA) needs it; a trained one may add it.
  double ip_adapter_scale = 0;
  // The face-detail pass (ADetailer) after each shot: its denoising strength; 0: off.
  double face_detail_strength = 0;
  // largest | all | most_like (the face most like the subject's face profile)
  std::string face_detail_faces = "largest";
  // Face fusion of the subject's best photo into each shot: its strength; 0: off.
  double fusion_strength = 0;
  bool any() const {
    return ip_adapter_scale > 0 || face_detail_strength > 0 || fusion_strength > 0;
  }
};

struct StylePack {
  std::string id;  // [a-z0-9_-], unique among the loaded packs
  std::string name;
  std::string name_zh;  // the web studio shows English and Chinese
  std::string description;
  std::string description_zh;
  ModelFamily family = ModelFamily::kSd1;
  // AUTOMATIC1111 prompt syntax with one or more "{subject}" placeholders,
  // where the subject's trigger and class words go ("ohwx woman").
  std::string prompt;
  std::string negative_prompt;
  std::string sampler;  // canonical name from sampler_registry()
  bool karras = false;
  int64_t steps = 25;
  double guidance = 7.0;
  int64_t width = 512;  // multiples of 8
  int64_t height = 512;
  int clip_skip = 1;  // A1111's "CLIP skip" (2 for anime-tuned models)
  std::vector<StyleLora> loras;
  std::string vae;  // a file name in the VAE folder (models/vae); empty: the model's own
  // Textual-inversion embeddings the prompts name (files in models/embeddings).
  std::vector<std::string> embeddings;
  std::vector<StyleControl> controls;  // YAML "controlnets"
  std::optional<StyleHires> hires;
  StyleIdentity identity;
  std::vector<std::string> tags;
  std::filesystem::path source;  // the file it was read from ("" when parsed from text)
};

// The files a pack needs beyond the model (VAE, ControlNets and their images, embeddings, LoRAs)
// that are not where the studio looks for them under `models_dir`; empty when all are there.
std::vector<std::filesystem::path> missing_style_files(const StylePack& pack,
                                                       const std::filesystem::path& models_dir);

// $DOPPEL_STYLES_DIR, else the styles/ folder of the source tree doppel was built from.
std::filesystem::path default_styles_dir();

// Parses and validates one pack; `label` names the source in error messages.
// Throws doppel::Error kInvalidFile naming the file, the field and the fix.
StylePack parse_style_pack(const std::string& yaml_text, const std::string& label);
// Reads a .yaml file (kNotFound when missing) and parses it.
StylePack load_style_pack(const std::filesystem::path& file);
// Every *.yaml / *.yml in `directory`, sorted by id; throws kInvalidFile when
// two files declare the same id, kNotFound when the folder does not exist.
std::vector<StylePack> load_style_packs(
    const std::filesystem::path& directory = default_styles_dir());

// The pack with this id; kNotFound listing the known ids otherwise.
const StylePack& find_style_pack(const std::vector<StylePack>& packs, const std::string& id);

// The packs made for `family`, in the given order (what a model can shoot).
std::vector<StylePack> style_packs_for(const std::vector<StylePack>& packs, ModelFamily family);

// The template with every "{subject}" replaced by `subject`.
std::string fill_prompt_template(const std::string& prompt_template, const std::string& subject);

// "sd1" | "sd2" | "sdxl" -> family; kInvalidArgument naming the accepted values.
ModelFamily parse_model_family(const std::string& name);

// The pack as the API lists it (every field; LoRAs as {file, weight}).
nlohmann::json style_pack_to_json(const StylePack& pack);

}  // namespace doppel

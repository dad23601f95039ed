// Shoot planning: a subject, some style packs and a count become an ordered
// list of shots, each a generation request plus the recipe (JSON) that makes
// the same image again. No files are read here: LoRAs are paths the worker
// merges before generating.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "doppel/diffusion/face_detail.hpp"
#include "doppel/diffusion/stable_diffusion_pipeline.hpp"
#include "doppel/studio/style_pack.hpp"

namespace doppel {

// Seeds stay below 2^32 (AUTOMATIC1111's range, and exact in JavaScript).
inline constexpr uint64_t kMaxSeed = 0xFFFFFFFFull;

// The person being shot.
struct ShootSubject {
  // The rare token the subject's LoRA was trained with ("ohwx"); may be empty
  // for training-free shoots.
  std::string trigger_word;
  std::string class_word = "person";          // "woman", "man", "person", ...
  std::optional<std::filesystem::path> lora;  // the subject's trained LoRA
  double lora_weight = 1.0;
  std::string lora_sha256;  // recorded in the recipe when known (hex)
};

struct ShootRequest {
  ShootSubject subject;
  std::vector<StylePack> styles;  // shot in this order
  int count_per_style = 4;
  uint64_t base_seed = 0;                  // shot i gets (base_seed + i) mod 2^32
  ModelFamily family = ModelFamily::kSd1;  // of the loaded model
  std::string model_name;                  // recorded in recipes
  std::string model_hash;
  std::filesystem::path lora_dir;  // where style LoRAs live; empty: models/lora
  // Where styles' VAEs (vae/) and ControlNets (controlnet/) live; empty: models/.
  std::filesystem::path models_dir;
};

// A LoRA to merge for one shot.
struct ShotLora {
  std::string role;  // "subject" | "style"
  std::filesystem::path path;
  double weight = 1.0;
  std::string sha256;  // "" when unknown
};

// A ControlNet steering one shot (from its style), with resolved paths.
struct ShotControl {
  std::filesystem::path model;
  std::filesystem::path image;
  std::string preprocessor = "none";
  double weight = 1.0;
  double start = 0.0;
  double end = 1.0;
};

struct Shot {
  std::string style_id;
  int index = 0;                             // position in the shoot (0-based)
  GenerationRequest request;                 // one image (batch 1); request.loras describes `loras`
  std::vector<ShotLora> loras;               // merge these before generating (subject first)
  std::optional<std::filesystem::path> vae;  // replaces the model's VAE
  std::vector<ShotControl> controls;
  // img2img / inpainting over a stored portrait: its PNG's blob digest (request.init_image is
  // for the worker to fill in from the blob store; request.inpaint holds the recipe's mask).
  std::optional<std::string> init_image_sha256;
  // The face-detail pass after the image is made ("fix the face").
  std::optional<FaceDetailOptions> face_detail;
  // The style's identity settings: fuse the subject's best photo into the shot at this strength;
  // steer it by that photo through IP-Adapter plus-face at this scale.
  std::optional<double> fusion_strength;
  std::optional<double> ip_adapter_scale;
  // The photo those read (its aligned crop's blob digest), pinned by the worker that made the
  // image so "again" reads the same one; empty: the subject's best accepted photo.
  std::string identity_photo;
  nlohmann::json recipe;  // everything needed to make the image again
};

// Checks a recipe's "ip_adapter": {"scale": 0-2}, or {"scale", "photo": 64 hex digits} once a
// worker pinned the photo. Throws kInvalidArgument naming `what` and the accepted form.
void check_identity_adapter(const nlohmann::json& entry, const std::string& what);

// "ohwx woman": what replaces {subject} in the templates. Throws
// kInvalidArgument when the words are empty or carry prompt syntax.
std::string subject_phrase(const ShootSubject& subject);

// Shots grouped by style (in request order), count_per_style each, so a
// worker merges each style's LoRAs once; shot i uses seed base_seed + i as
// A1111's batches do. Throws kInvalidArgument for an empty shoot, a count
// outside 1-100, a seed above kMaxSeed, or a style made for another family.
std::vector<Shot> plan_shoot(const ShootRequest& request);

// What a shot draws, from a style or a template: the start of its recipe.
struct ShotSettings {
  std::string style;   // the style's id, or "template:<id>"
  std::string prompt;  // with {subject}
  std::string negative_prompt;
  std::string sampler;
  bool karras = false;
  int64_t steps = 0;
  double guidance = 0;
  int64_t width = 0;
  int64_t height = 0;
  int clip_skip = 1;
};
// The recipe of shot `index` of `request` (seed base_seed + index) with `settings` and the
// shot's LoRAs (the subject's first): what every planned shot's recipe starts from.
nlohmann::json shot_recipe(const ShootRequest& request, const ShotSettings& settings,
                           uint64_t index, const std::vector<ShotLora>& loras);
// The subject's LoRA as a shot merges it; throws kInvalidArgument for a weight outside -2..2.
ShotLora subject_lora(const ShootSubject& subject);

// "Again with this seed": the shot a recipe describes, request identical to
// the original. Throws kInvalidArgument naming a missing or mistyped field.
// LoRA paths are taken as written: take recipes from the store, never from a
// client (which could name another account's LoRA file).
Shot shot_from_recipe(const nlohmann::json& recipe);

// The k-th (1-based) variation seed of `seed`: a SplitMix64 mix of (seed, k),
// unrelated to the shoot's seed + i sequence; below 2^32.
uint64_t variation_seed(uint64_t seed, int k);

// `count` shots with the recipe's settings and seeds variation_seed(seed, k) for
// k = first .. first + count - 1 ("more variations" continues at the next k);
// each recipe records "variation_of": the seed it was varied from.
std::vector<Shot> plan_variations(const nlohmann::json& recipe, int count, int first = 1);

}  // namespace doppel

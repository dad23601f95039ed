#include "doppel/studio/shoot_plan.hpp"

#include <algorithm>
#include <cmath>
#include <set>

#include "doppel/core/error.hpp"
#include "doppel/core/paths.hpp"
#include "doppel/diffusion/sampler.hpp"
#include "doppel/studio/recipe_edits.hpp"

namespace doppel {
namespace {

constexpr int kRecipeVersion = 1;
constexpr int kMaxCountPerStyle = 100;

[[noreturn]] void invalid(const std::string& message) {
  throw Error(ErrorCode::kInvalidArgument, message);
}

void check_subject_word(const std::string& what, const std::string& word) {
  if (word.size() > 64) invalid(what + " is longer than 64 characters");
  for (const char c : word) {
    // A1111 prompt syntax in a name would change weights or add LoRAs.
    if (std::string("()[]{}<>:|\\").find(c) != std::string::npos ||
        static_cast<unsigned char>(c) < 0x20)
      invalid(what + " '" + word + "' contains '" + std::string(1, c) +
              "'; use plain words (letters, digits, spaces)");
  }
}

nlohmann::json lora_json(const ShotLora& lora) {
  return {{"role", lora.role},
          {"file", lora.path.string()},
          {"weight", lora.weight},
          {"sha256", lora.sha256}};
}

// A style's VAE, ControlNets and hires fix, with resolved paths, into its recipes.
void add_style_extras(nlohmann::json& recipe, const StylePack& style,
                      const std::filesystem::path& models_dir) {
  if (!style.vae.empty()) recipe["vae"] = (models_dir / "vae" / style.vae).string();
  if (style.hires)
    recipe["hires"] = {{"scale", style.hires->scale},
                       {"strength", style.hires->strength},
                       {"steps", style.hires->steps},
                       {"upscaler", style.hires->upscaler}};
  // The style's identity settings (docs/styles.md "identity").
  const StyleIdentity& identity = style.identity;
  if (identity.face_detail_strength > 0)
    recipe["face_detail"] = {{"strength", identity.face_detail_strength},
                             {"faces", identity.face_detail_faces}};
  if (identity.fusion_strength > 0) recipe["fusion"] = {{"strength", identity.fusion_strength}};
  if (identity.ip_adapter_scale > 0) recipe["ip_adapter"] = {{"scale", identity.ip_adapter_scale}};
  if (style.controls.empty()) return;
  nlohmann::json controls = nlohmann::json::array();
  for (const StyleControl& control : style.controls)
    controls.push_back({{"model", (models_dir / "controlnet" / control.model).string()},
                        {"image", (style.source.parent_path() / control.image).string()},
                        {"preprocessor", control.preprocessor},
                        {"weight", control.weight},
                        {"start", control.start},
                        {"end", control.end}});
  recipe["controlnets"] = controls;
}

// The request and recipe of one image from fully resolved settings.
Shot make_shot(const nlohmann::json& recipe, int index) {
  Shot shot;
  shot.index = index;
  shot.style_id = recipe.at("style").get<std::string>();
  shot.recipe = recipe;
  GenerationRequest& request = shot.request;
  request.prompt = recipe.at("prompt").get<std::string>();
  request.negative_prompt = recipe.at("negative_prompt").get<std::string>();
  request.seed = recipe.at("seed").get<uint64_t>();
  request.sampler = recipe.at("sampler").get<std::string>();
  request.karras = recipe.at("karras").get<bool>();
  request.steps = recipe.at("steps").get<int64_t>();
  request.guidance_scale = recipe.at("guidance").get<double>();
  request.width = recipe.at("width").get<int64_t>();
  request.height = recipe.at("height").get<int64_t>();
  request.clip_skip = recipe.at("clip_skip").get<int>();
  if (recipe.contains("vae")) shot.vae = recipe["vae"].get<std::string>();
  if (recipe.contains("hires")) {
    const nlohmann::json& hires = recipe["hires"];
    request.hires =
        HiresFix{hires.at("scale").get<double>(), hires.at("strength").get<double>(),
                 hires.at("steps").get<int64_t>(), hires.at("upscaler").get<std::string>()};
  }
  for (const auto& control : recipe.value("controlnets", nlohmann::json::array()))
    shot.controls.push_back(
        {control.at("model").get<std::string>(), control.at("image").get<std::string>(),
         control.at("preprocessor").get<std::string>(), control.at("weight").get<double>(),
         control.at("start").get<double>(), control.at("end").get<double>()});
  if (recipe.contains("init_image")) {
    // Painted over a stored portrait: the worker reads its PNG from the blob store.
    shot.init_image_sha256 = recipe["init_image"].at("sha256").get<std::string>();
    request.strength = recipe["init_image"].at("strength").get<double>();
  }
  if (recipe.contains("inpaint")) {
    InpaintOptions inpaint;
    inpaint.mask = recipe_mask(recipe["inpaint"]);
    inpaint.mask_blur = recipe["inpaint"].at("mask_blur").get<int>();
    request.inpaint = std::move(inpaint);
  }
  if (recipe.contains("face_detail")) {
    FaceDetailOptions detail;
    detail.strength = recipe["face_detail"].at("strength").get<double>();
    detail.faces = parse_face_choice(recipe["face_detail"].at("faces").get<std::string>());
    shot.face_detail = detail;
  }
  if (recipe.contains("fusion"))
    shot.fusion_strength = recipe["fusion"].at("strength").get<double>();
  if (recipe.contains("ip_adapter")) {
    shot.ip_adapter_scale = recipe["ip_adapter"].at("scale").get<double>();
    shot.identity_photo = recipe["ip_adapter"].value("photo", "");
  }
  request.batch_size = 1;
  request.batch_count = 1;
  for (const auto& entry : recipe.at("loras")) {
    ShotLora lora{entry.at("role").get<std::string>(), entry.at("file").get<std::string>(),
                  entry.at("weight").get<double>(), entry.at("sha256").get<std::string>()};
    request.loras.push_back({lora.path.stem().string(), lora.weight,
                             lora.sha256.size() >= 12 ? lora.sha256.substr(0, 12) : ""});
    shot.loras.push_back(std::move(lora));
  }
  return shot;
}

// Checks a recipe that came from outside (the store, an API client): every
// field present with the right type, nothing unknown.
void check_recipe(const nlohmann::json& recipe) {
  if (!recipe.is_object()) invalid("a recipe must be a JSON object");
  struct Field {
    const char* key;
    bool (nlohmann::json::*is_type)() const noexcept;
    const char* type;
    bool required;
  };
  const Field fields[] = {
      {"version", &nlohmann::json::is_number_integer, "an integer", true},
      {"style", &nlohmann::json::is_string, "a string", true},
      {"model", &nlohmann::json::is_object, "an object", true},
      {"subject", &nlohmann::json::is_object, "an object", true},
      {"prompt", &nlohmann::json::is_string, "a string", true},
      {"negative_prompt", &nlohmann::json::is_string, "a string", true},
      {"seed", &nlohmann::json::is_number_unsigned, "a non-negative integer", true},
      {"sampler", &nlohmann::json::is_string, "a string", true},
      {"karras", &nlohmann::json::is_boolean, "true or false", true},
      {"steps", &nlohmann::json::is_number_integer, "an integer", true},
      {"guidance", &nlohmann::json::is_number, "a number", true},
      {"width", &nlohmann::json::is_number_integer, "an integer", true},
      {"height", &nlohmann::json::is_number_integer, "an integer", true},
      {"clip_skip", &nlohmann::json::is_number_integer, "an integer", true},
      {"loras", &nlohmann::json::is_array, "a list", true},
      {"variation_of", &nlohmann::json::is_number_unsigned, "a non-negative integer", false},
      // A new version of a stored portrait: {"edit": upscale / face_fix / inpaint, "image_id"}.
      {"made_from", &nlohmann::json::is_object, "an object", false},
      {"vae", &nlohmann::json::is_string, "a string", false},
      {"hires", &nlohmann::json::is_object, "an object", false},
      {"controlnets", &nlohmann::json::is_array, "a list", false},
      {"init_image", &nlohmann::json::is_object, "an object", false},
      {"inpaint", &nlohmann::json::is_object, "an object", false},
      {"face_detail", &nlohmann::json::is_object, "an object", false},
      {"fusion", &nlohmann::json::is_object, "an object", false},
      {"ip_adapter", &nlohmann::json::is_object, "an object", false},
      // An ID-photo shoot's document ({"spec", "background"}; the worker adds the verdict).
      {"id_photo", &nlohmann::json::is_object, "an object", false},
  };
  for (const auto& [key, value] : recipe.items()) {
    const bool known = std::any_of(std::begin(fields), std::end(fields),
                                   [&](const Field& field) { return key == field.key; });
    if (!known) invalid("recipe: unknown field '" + key + "'");
  }
  for (const Field& field : fields) {
    const auto it = recipe.find(field.key);
    if (it == recipe.end()) {
      if (field.required) invalid("recipe: field '" + std::string(field.key) + "' is missing");
      continue;
    }
    if (!((*it).*field.is_type)())
      invalid("recipe: field '" + std::string(field.key) + "' must be " + field.type);
  }
  if (recipe["version"] != kRecipeVersion)
    invalid("recipe: version " + recipe["version"].dump() +
            " is not supported (this doppel reads " + std::to_string(kRecipeVersion) + ")");
  if (recipe["seed"].get<uint64_t>() > kMaxSeed)
    invalid("recipe: seed must be at most " + std::to_string(kMaxSeed));
  const SamplerInfo* found = nullptr;
  try {
    found = &find_sampler(recipe["sampler"].get<std::string>());
  } catch (const Error& error) {
    invalid(std::string("recipe: field 'sampler': ") + error.what());
  }
  const SamplerInfo& sampler = *found;
  if (sampler.name != recipe["sampler"]) invalid("recipe: sampler must be a canonical name");
  if (recipe["karras"].get<bool>() && !sampler.supports_karras)
    invalid("recipe: sampler '" + sampler.name + "' has no Karras schedule");
  for (const char* key : {"width", "height"}) {
    const int64_t size = recipe[key].get<int64_t>();
    if (size < 64 || size > 2048 || size % 8 != 0)
      invalid("recipe: " + std::string(key) + " must be a multiple of 8 from 64 to 2048");
  }
  if (recipe["steps"].get<int64_t>() < 1 || recipe["steps"].get<int64_t>() > 150)
    invalid("recipe: steps must be from 1 to 150");
  if (const int clip_skip = recipe["clip_skip"].get<int>(); clip_skip < 1 || clip_skip > 4)
    invalid("recipe: clip_skip must be from 1 to 4");
  if (!std::isfinite(recipe["guidance"].get<double>()))
    invalid("recipe: guidance must be a finite number");
  for (const auto& lora : recipe["loras"]) {
    const bool valid =
        lora.is_object() && lora.size() == 4 && lora.contains("role") && lora["role"].is_string() &&
        lora.contains("file") && lora["file"].is_string() && lora.contains("weight") &&
        lora["weight"].is_number() && lora.contains("sha256") && lora["sha256"].is_string();
    if (!valid)
      invalid("recipe: each entry of 'loras' must be {role, file, weight, sha256}, got " +
              lora.dump());
    if (lora["role"] != "subject" && lora["role"] != "style" && lora["role"] != "speed")
      invalid("recipe: a LoRA's role must be \"subject\", \"style\" or \"speed\", got " +
              lora["role"].dump());
    if (const double weight = lora["weight"].get<double>();
        !std::isfinite(weight) || std::abs(weight) > 2.0)
      invalid("recipe: a LoRA's weight must be a number from -2 to 2");
  }
  auto numbers = [](const nlohmann::json& entry, std::initializer_list<const char*> keys) {
    return std::all_of(keys.begin(), keys.end(), [&](const char* key) {
      return entry.contains(key) && entry[key].is_number() &&
             std::isfinite(entry[key].get<double>());
    });
  };
  if (recipe.contains("hires")) {
    const nlohmann::json& hires = recipe["hires"];
    if (hires.size() != 4 || !numbers(hires, {"scale", "strength", "steps"}) ||
        !hires["steps"].is_number_integer() || !hires.contains("upscaler") ||
        !hires["upscaler"].is_string())
      invalid("recipe: 'hires' must be {scale, strength, steps, upscaler}, got " + hires.dump());
  }
  if (recipe.contains("init_image")) {
    const nlohmann::json& init = recipe["init_image"];
    const bool valid = init.size() == 2 && init.contains("sha256") && init["sha256"].is_string() &&
                       init["sha256"].get<std::string>().size() == 64 &&
                       numbers(init, {"strength"}) && init["strength"].get<double>() > 0 &&
                       init["strength"].get<double>() <= 1;
    if (!valid)
      invalid("recipe: 'init_image' must be {sha256 (64 hex digits), strength (0-1]}, got " +
              init.dump().substr(0, 200));
    if (recipe.contains("hires")) invalid("recipe: a hires fix is for text-to-image only");
  }
  if (recipe.contains("inpaint")) {
    const nlohmann::json& inpaint = recipe["inpaint"];
    const bool valid =
        inpaint.size() == 2 && inpaint.contains("mask_png") && inpaint["mask_png"].is_string() &&
        inpaint.contains("mask_blur") && inpaint["mask_blur"].is_number_integer() &&
        inpaint["mask_blur"].get<int64_t>() >= 0 && inpaint["mask_blur"].get<int64_t>() <= 64;
    if (!valid || !recipe.contains("init_image"))
      invalid("recipe: 'inpaint' must be {mask_png, mask_blur 0-64} next to an 'init_image'");
  }
  if (recipe.contains("face_detail")) {
    const nlohmann::json& detail = recipe["face_detail"];
    const bool valid = detail.size() == 2 && numbers(detail, {"strength"}) &&
                       detail["strength"].get<double>() > 0 &&
                       detail["strength"].get<double>() <= 1 && detail.contains("faces") &&
                       detail["faces"].is_string();
    if (!valid)
      invalid("recipe: 'face_detail' must be {strength (0-1], faces}, got " + detail.dump());
    parse_face_choice(detail["faces"].get<std::string>());  // names the accepted words
  }
  // Identity settings of the style: {"strength": 0-1} and {"scale": 0-2} (and its photo).
  if (recipe.contains("fusion")) {
    const nlohmann::json& entry = recipe["fusion"];
    if (entry.size() != 1 || !numbers(entry, {"strength"}) || entry["strength"].get<double>() < 0 ||
        entry["strength"].get<double>() > 1)
      invalid("recipe: 'fusion' must be {strength (0-1)}, got " + entry.dump());
  }
  if (recipe.contains("ip_adapter")) check_identity_adapter(recipe["ip_adapter"], "'ip_adapter'");
  for (const auto& control : recipe.value("controlnets", nlohmann::json::array())) {
    const bool valid = control.is_object() && control.size() == 6 &&
                       numbers(control, {"weight", "start", "end"}) && control.contains("model") &&
                       control["model"].is_string() && control.contains("image") &&
                       control["image"].is_string() && control.contains("preprocessor") &&
                       control["preprocessor"].is_string();
    if (!valid)
      invalid(
          "recipe: each entry of 'controlnets' must be {model, image, preprocessor, weight, "
          "start, end}, got " +
          control.dump());
  }
}

}  // namespace

void check_identity_adapter(const nlohmann::json& entry, const std::string& what) {
  const auto is_digest = [](const nlohmann::json& value) {
    if (!value.is_string() || value.get<std::string>().size() != 64) return false;
    const std::string text = value.get<std::string>();
    return std::all_of(text.begin(), text.end(),
                       [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
  };
  const bool valid = entry.is_object() && entry.contains("scale") && entry["scale"].is_number() &&
                     std::isfinite(entry["scale"].get<double>()) &&
                     entry["scale"].get<double>() >= 0 && entry["scale"].get<double>() <= 2 &&
                     entry.size() == (entry.contains("photo") ? 2u : 1u) &&
                     (!entry.contains("photo") || is_digest(entry["photo"]));
  if (!valid)
    invalid("recipe: " + what + " must be {scale (0-2)} or {scale, photo (64 hex digits)}, got " +
            entry.dump().substr(0, 200));
}

std::string subject_phrase(const ShootSubject& subject) {
  check_subject_word("the trigger word", subject.trigger_word);
  check_subject_word("the class word", subject.class_word);
  if (subject.class_word.find_first_not_of(' ') == std::string::npos)
    invalid("the class word is empty; use woman, man, person, girl, boy, ...");
  if (subject.trigger_word.find_first_not_of(' ') == std::string::npos) return subject.class_word;
  return subject.trigger_word + " " + subject.class_word;
}

std::vector<Shot> plan_shoot(const ShootRequest& request) {
  if (request.styles.empty()) invalid("a shoot needs at least one style");
  if (request.count_per_style < 1 || request.count_per_style > kMaxCountPerStyle)
    invalid("images per style must be from 1 to " + std::to_string(kMaxCountPerStyle) + ", got " +
            std::to_string(request.count_per_style));
  if (request.base_seed > kMaxSeed) invalid("the seed must be at most " + std::to_string(kMaxSeed));
  std::set<std::string> seen;
  for (const StylePack& style : request.styles) {
    if (!seen.insert(style.id).second)
      invalid("style '" + style.id + "' is listed twice; raise the count instead");
    if (style.family != request.family)
      invalid("style '" + style.id + "' is made for " + model_family_name(style.family) +
              " models, but the model is " + model_family_name(request.family) +
              "; choose styles for " + model_family_name(request.family));
  }
  subject_phrase(request.subject);  // refuses prompt syntax in the words before any shot
  const std::filesystem::path lora_dir =
      request.lora_dir.empty() ? default_models_dir() / "lora" : request.lora_dir;
  const std::filesystem::path models_dir =
      request.models_dir.empty() ? default_models_dir() : request.models_dir;

  std::vector<Shot> shots;
  for (const StylePack& style : request.styles) {
    std::vector<ShotLora> loras;
    if (request.subject.lora) loras.push_back(subject_lora(request.subject));
    for (const StyleLora& lora : style.loras)
      loras.push_back({"style", lora_dir / lora.file, lora.weight, ""});
    const ShotSettings settings{style.id,     style.prompt,   style.negative_prompt, style.sampler,
                                style.karras, style.steps,    style.guidance,        style.width,
                                style.height, style.clip_skip};
    for (int i = 0; i < request.count_per_style; ++i) {
      const auto index = static_cast<uint64_t>(shots.size());
      nlohmann::json recipe = shot_recipe(request, settings, index, loras);
      add_style_extras(recipe, style, models_dir);
      shots.push_back(make_shot(recipe, static_cast<int>(index)));
    }
  }
  return shots;
}

ShotLora subject_lora(const ShootSubject& subject) {
  if (!std::isfinite(subject.lora_weight) || std::abs(subject.lora_weight) > 2.0)
    invalid("the subject's LoRA weight must be a number from -2 to 2");
  return {"subject", *subject.lora, subject.lora_weight, subject.lora_sha256};
}

nlohmann::json shot_recipe(const ShootRequest& request, const ShotSettings& settings,
                           uint64_t index, const std::vector<ShotLora>& loras) {
  nlohmann::json lora_list = nlohmann::json::array();
  for (const ShotLora& lora : loras) lora_list.push_back(lora_json(lora));
  return {
      {"version", kRecipeVersion},
      {"style", settings.style},
      {"model",
       {{"family", model_family_name(request.family)},
        {"name", request.model_name},
        {"hash", request.model_hash}}},
      {"subject",
       {{"trigger_word", request.subject.trigger_word},
        {"class_word", request.subject.class_word}}},
      {"prompt", fill_prompt_template(settings.prompt, subject_phrase(request.subject))},
      {"negative_prompt", settings.negative_prompt},
      {"seed", (request.base_seed + index) & kMaxSeed},
      {"sampler", settings.sampler},
      {"karras", settings.karras},
      {"steps", settings.steps},
      {"guidance", settings.guidance},
      {"width", settings.width},
      {"height", settings.height},
      {"clip_skip", settings.clip_skip},
      {"loras", lora_list},
  };
}

Shot shot_from_recipe(const nlohmann::json& recipe) {
  check_recipe(recipe);
  return make_shot(recipe, 0);
}

uint64_t variation_seed(uint64_t seed, int k) {
  if (k < 1) invalid("variation numbers start at 1");
  // SplitMix64 (Steele et al. 2014) finaliser over (seed, k).
  uint64_t z = (seed ^ (static_cast<uint64_t>(k) << 32)) + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return (z ^ (z >> 31)) & kMaxSeed;
}

std::vector<Shot> plan_variations(const nlohmann::json& recipe, int count, int first) {
  check_recipe(recipe);
  if (count < 1 || count > kMaxCountPerStyle)
    invalid("variations must be from 1 to " + std::to_string(kMaxCountPerStyle));
  if (first < 1 || first > 1'000'000)
    invalid("the first variation number must be from 1 to 1000000");
  const uint64_t seed = recipe["seed"].get<uint64_t>();
  std::vector<Shot> shots;
  for (int k = first; k < first + count; ++k) {
    nlohmann::json varied = recipe;
    varied["seed"] = variation_seed(seed, k);
    varied["variation_of"] = seed;
    shots.push_back(make_shot(varied, k - first));
  }
  return shots;
}

}  // namespace doppel

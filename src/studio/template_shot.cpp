#include "doppel/studio/template_shot.hpp"

#include <algorithm>
#include <cmath>

#include "doppel/core/error.hpp"
#include "doppel/core/paths.hpp"

namespace doppel {
namespace {

using json = nlohmann::json;

constexpr const char* kTemplateStylePrefix = "template:";

[[noreturn]] void invalid(const std::string& message) {
  throw Error(ErrorCode::kInvalidArgument, message);
}

json lora_json(const ShootSubject& subject) {
  if (!subject.lora) return nullptr;
  if (!std::isfinite(subject.lora_weight) || std::abs(subject.lora_weight) > 2)
    invalid("a subject's LoRA weight must be a number from -2 to 2");
  return {{"file", subject.lora->string()},
          {"weight", subject.lora_weight},
          {"sha256", subject.lora_sha256}};
}

json subjects_json(const std::vector<TemplateShotSubject>& subjects) {
  json list = json::array();
  for (const TemplateShotSubject& each : subjects) {
    subject_phrase(each.subject);  // refuses prompt syntax in the words
    json entry = {{"subject_id", each.subject_id},
                  {"trigger_word", each.subject.trigger_word},
                  {"class_word", each.subject.class_word},
                  {"lora", lora_json(each.subject)}};
    if (each.ip_adapter_scale) {
      entry["ip_adapter"] = {{"scale", *each.ip_adapter_scale}};
      if (!each.ip_adapter_photo.empty()) entry["ip_adapter"]["photo"] = each.ip_adapter_photo;
    }
    list.push_back(std::move(entry));
  }
  return list;
}

std::vector<TemplateShotSubject> subjects_from_json(const json& list) {
  if (!list.is_array() || list.empty() || list.size() > 8)
    invalid("recipe: template subjects must be a list of 1-8 people");
  std::vector<TemplateShotSubject> subjects;
  for (const json& each : list) {
    const auto text = [&](const char* key) {
      if (!each.is_object() || !each.contains(key) || !each[key].is_string())
        invalid(std::string("recipe: each template subject needs a string '") + key + "'");
      return each[key].get<std::string>();
    };
    TemplateShotSubject subject;
    subject.subject_id = text("subject_id");
    subject.subject.trigger_word = text("trigger_word");
    subject.subject.class_word = text("class_word");
    const json lora = each.value("lora", json());
    if (!lora.is_null()) {
      if (!lora.is_object() || !lora.value("file", json()).is_string() ||
          !lora.value("weight", json()).is_number() || !lora.value("sha256", json()).is_string())
        invalid("recipe: a template subject's lora must be {file, weight, sha256} or null");
      subject.subject.lora = lora["file"].get<std::string>();
      subject.subject.lora_weight = lora["weight"].get<double>();
      subject.subject.lora_sha256 = lora["sha256"].get<std::string>();
    }
    if (each.contains("ip_adapter")) {
      // An instant person: {"scale"} as planned, {"scale", "photo"} once a worker read the photo.
      const json& adapter = each["ip_adapter"];
      check_identity_adapter(adapter, "a template subject's ip_adapter");
      subject.ip_adapter_scale = adapter["scale"].get<double>();
      subject.ip_adapter_photo = adapter.value("photo", "");
    }
    for (const auto& [key, value] : each.items())
      if (key != "subject_id" && key != "trigger_word" && key != "class_word" && key != "lora" &&
          key != "ip_adapter")
        invalid("recipe: unknown field '" + key + "' in a template subject");
    subject_phrase(subject.subject);
    subjects.push_back(std::move(subject));
  }
  return subjects;
}

bool is_digest(const std::string& text) {
  return text.size() == 64 && std::all_of(text.begin(), text.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// Where a face pass repaints: the template's own size, else the family's native size.
int64_t face_pass_size(const PortraitTemplate& settings) {
  if (settings.processing_size > 0) return settings.processing_size;
  return settings.family == ModelFamily::kSdxl ? 1024 : 512;
}

}  // namespace

std::vector<TemplateShot> plan_template_shots(const ShootRequest& request,
                                              const std::vector<ShootTemplate>& templates,
                                              int first_index) {
  if (request.count_per_style < 1 || request.count_per_style > 100)
    invalid("images per template must be from 1 to 100");
  if (request.base_seed > kMaxSeed) invalid("the seed must be at most " + std::to_string(kMaxSeed));
  subject_phrase(request.subject);  // refuses prompt syntax in the words before any shot
  const std::filesystem::path controlnets =
      (request.models_dir.empty() ? default_models_dir() : request.models_dir) / "controlnet";
  std::vector<ShotLora> loras;
  if (request.subject.lora) loras.push_back(subject_lora(request.subject));
  std::vector<TemplateShot> shots;
  for (const ShootTemplate& chosen : templates) {
    PortraitTemplate settings = chosen.settings;
    if (settings.family != request.family)
      invalid("template '" + settings.id + "' is made for " + model_family_name(settings.family) +
              " models, but the model is " + model_family_name(request.family));
    if (!is_digest(chosen.picture_sha256) && !(settings.generate && chosen.picture_sha256.empty()))
      invalid("template '" + settings.id + "': its picture digest must be 64 hex digits");
    for (auto* control : {&settings.face_pose, &settings.canny})
      if (*control && !std::filesystem::path((*control)->model).is_absolute())
        (*control)->model = (controlnets / (*control)->model).string();
    const int64_t size = face_pass_size(settings);
    for (int i = 0; i < request.count_per_style; ++i) {
      const auto index = static_cast<uint64_t>(first_index) + shots.size();
      json recipe = shot_recipe(
          request,
          {kTemplateStylePrefix + settings.id, settings.prompt, settings.negative_prompt,
           settings.sampler, settings.karras, settings.steps, settings.guidance, size, size, 1},
          index, loras);
      recipe["template"] = {{"sha256", chosen.picture_sha256},
                            {"settings", portrait_template_to_json(settings)}};
      if (!chosen.subjects.empty()) recipe["template"]["subjects"] = subjects_json(chosen.subjects);
      TemplateShot shot = template_shot_from_recipe(recipe);
      shot.shot.index = static_cast<int>(index);
      shots.push_back(std::move(shot));
    }
  }
  return shots;
}

std::vector<Shot> plan_template_variations(const nlohmann::json& recipe, int count, int first) {
  const TemplateShot original = template_shot_from_recipe(recipe);
  json common = recipe;
  common.erase("template");
  std::vector<Shot> shots;
  for (Shot& varied : plan_variations(common, count, first)) {
    json with_template = varied.recipe;
    with_template["template"] = recipe["template"];
    Shot shot = template_shot_from_recipe(with_template).shot;
    shot.index = varied.index;
    shots.push_back(std::move(shot));
  }
  return shots;
}

std::vector<TemplateSubject> template_shot_subjects(
    const TemplateShot& shot, const std::vector<std::vector<LoraSelection>>& loras,
    const std::vector<std::optional<FusionIdentity>>& fusion,
    const std::vector<std::vector<ImagePromptSelection>>& ip_adapters) {
  std::vector<ShootSubject> people;
  if (shot.subjects.empty()) {
    ShootSubject words;
    words.trigger_word = shot.shot.recipe["subject"].value("trigger_word", "");
    words.class_word = shot.shot.recipe["subject"].value("class_word", "person");
    people.push_back(words);
  }
  for (const TemplateShotSubject& each : shot.subjects) people.push_back(each.subject);
  std::vector<TemplateSubject> subjects;
  for (size_t k = 0; k < people.size(); ++k) {
    TemplateSubject subject;
    subject.phrase = subject_phrase(people[k]);
    if (k < loras.size()) subject.loras = loras[k];
    if (k < fusion.size()) subject.fusion = fusion[k];
    if (k < ip_adapters.size()) subject.ip_adapters = ip_adapters[k];
    subjects.push_back(std::move(subject));
  }
  return subjects;
}

bool is_template_recipe(const nlohmann::json& recipe) {
  return recipe.is_object() && recipe.contains("template");
}

TemplateShot template_shot_from_recipe(const nlohmann::json& recipe) {
  if (!is_template_recipe(recipe)) invalid("recipe: not a template shot (no 'template' field)");
  const json& part = recipe["template"];
  if (!part.is_object() || part.size() != 2 + (part.contains("subjects") ? 1 : 0) ||
      !part.contains("sha256") || !part["sha256"].is_string() || !part.contains("settings"))
    invalid("recipe: 'template' must be {sha256, settings} (and subjects), got " +
            part.dump().substr(0, 200));
  TemplateShot result;
  result.picture_sha256 = part["sha256"].get<std::string>();
  result.settings = portrait_template_from_json(part["settings"]);
  if (part.contains("subjects")) result.subjects = subjects_from_json(part["subjects"]);
  // Empty for a drawn picture not drawn yet: the worker records the digest of what it drew.
  if (!is_digest(result.picture_sha256) &&
      !(result.settings.generate && result.picture_sha256.empty()))
    invalid("recipe: template sha256 must be 64 lowercase hex digits");
  json common = recipe;
  common.erase("template");
  result.shot = shot_from_recipe(common);
  result.shot.recipe = recipe;
  const std::string style = result.shot.style_id;
  if (style != kTemplateStylePrefix + result.settings.id)
    invalid("recipe: style must be 'template:" + result.settings.id + "', got '" + style + "'");
  return result;
}

TemplatePortraitRequest template_shot_request(const TemplateShot& shot, const Image& picture,
                                              std::vector<LoraSelection> loras,
                                              std::vector<ImagePromptSelection> ip_adapters,
                                              std::optional<FusionIdentity> fusion) {
  const GenerationRequest& generation = shot.shot.request;
  TemplatePortraitRequest request;
  request.settings = shot.settings;
  // The face pass's settings are the recipe's (they were copied from the template when planned).
  request.settings.sampler = generation.sampler;
  request.settings.karras = generation.karras;
  request.settings.steps = generation.steps;
  request.settings.guidance = generation.guidance_scale;
  request.settings.negative_prompt = generation.negative_prompt;
  // Already the subject's words (a prompt without "{subject}" is used as written); with several
  // people each face gets its own words in the template's prompt.
  if (shot.subjects.empty()) request.settings.prompt = generation.prompt;
  request.settings.processing_size = std::max(generation.width, generation.height);
  request.picture = picture;
  request.picture_sha256 = shot.picture_sha256;
  request.seed = generation.seed;
  TemplateSubject subject;
  ShootSubject words;
  words.trigger_word = shot.shot.recipe["subject"].value("trigger_word", "");
  words.class_word = shot.shot.recipe["subject"].value("class_word", "person");
  subject.phrase = subject_phrase(words);
  subject.loras = std::move(loras);
  subject.ip_adapters = std::move(ip_adapters);
  subject.fusion = std::move(fusion);
  request.subjects.push_back(std::move(subject));
  return request;
}

}  // namespace doppel

// Template shots in a shoot: the shoot's subject put into a template's picture, planned beside
// the text-style shots. A template shot's recipe is an ordinary recipe (prompt, seed, sampler,
// the subject's LoRA; width and height are the face pass's processing size) plus "template": the
// picture's sha256 and the template's settings, so "again with this seed" repaints the same
// picture the same way.
#pragma once
#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "doppel/studio/portrait_template.hpp"
#include "doppel/studio/shoot_plan.hpp"
#include "doppel/studio/template_portrait.hpp"

namespace doppel {

// A template chosen for a shoot, with the digest of its picture (where the worker finds it);
// empty for a drawn template whose picture is not drawn yet (the worker draws it and records it).
// One person of a template with several faces (a couple): their record, words and LoRA.
struct TemplateShotSubject {
  std::string subject_id{};
  ShootSubject subject{};
  // An instant person (no LoRA): their likeness is their photo through IP-Adapter plus-face at
  // this scale; the worker pins the photo it read (its aligned crop's digest) so "again" reads
  // the same one.
  std::optional<double> ip_adapter_scale{};
  std::string ip_adapter_photo{};
};

struct ShootTemplate {
  PortraitTemplate settings;
  std::string picture_sha256;
  // One person per face to replace, left to right; empty: the shoot's subject alone.
  std::vector<TemplateShotSubject> subjects;
};

struct TemplateShot {
  Shot shot;  // the face pass's settings and the subject's LoRA; style_id "template:<id>"
  PortraitTemplate settings;  // ControlNet models as resolved paths
  std::string picture_sha256;
  // The recipe's "template.subjects": one per face, left to right; empty: the recipe's subject.
  std::vector<TemplateShotSubject> subjects;
};

// count_per_style shots per template, after `first_index` shots (seed base_seed + index, as
// plan_shoot numbers its shots), with the request's subject and model. Throws kInvalidArgument
// for a template made for another family or a bad picture digest.
std::vector<TemplateShot> plan_template_shots(const ShootRequest& request,
                                              const std::vector<ShootTemplate>& templates,
                                              int first_index = 0);

// "More variations" of a template portrait: plan_variations' seeds on the same template picture
// and settings (each shot's recipe keeps the recipe's "template").
std::vector<Shot> plan_template_variations(const nlohmann::json& recipe, int count, int first = 1);

// The face pass's subjects of a template shot: one per TemplateShot::subjects (their phrase, and
// `loras[k]` as the caller resolved the k-th person's LoRA), else the recipe's subject with
// loras[0]. `fusion[k]` is the k-th person's photo for a template with `fusion`, `ip_adapters[k]`
// their photo through an IP-Adapter (an instant person); either may be shorter or empty.
std::vector<TemplateSubject> template_shot_subjects(
    const TemplateShot& shot, const std::vector<std::vector<LoraSelection>>& loras,
    const std::vector<std::optional<FusionIdentity>>& fusion,
    const std::vector<std::vector<ImagePromptSelection>>& ip_adapters = {});

// Whether a stored recipe is a template shot's.
bool is_template_recipe(const nlohmann::json& recipe);
// The shot a template recipe describes; kInvalidArgument naming a missing or mistyped field.
TemplateShot template_shot_from_recipe(const nlohmann::json& recipe);

// The repaint request of a template shot: the subject (phrase from the recipe's subject, the
// given LoRAs and IP-Adapters, and the photo a template with `fusion` fuses) into the
// template's faces of `picture`. `loras` are the shot's LoRAs as the caller resolved them (the
// subject's from its blob, never a client path).
TemplatePortraitRequest template_shot_request(const TemplateShot& shot, const Image& picture,
                                              std::vector<LoraSelection> loras,
                                              std::vector<ImagePromptSelection> ip_adapters = {},
                                              std::optional<FusionIdentity> fusion = {});

}  // namespace doppel

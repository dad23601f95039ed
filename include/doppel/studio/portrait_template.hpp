// Portrait templates: a finished picture (a scene, a costume, a pose, a light) whose faces are
// replaced by the subject's. A template is a small YAML file beside its picture, or with a
// `generate` section instead of a picture, so a style pack can offer templates without shipping
// photos: the studio draws the picture once from the pack's prompt at a fixed seed and keeps it.
// docs/templates.md describes the format; every field is validated when a template is read.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "doppel/checkpoint/model_detection.hpp"
#include "doppel/face/head_mask.hpp"

namespace doppel {

// A ControlNet the face pass is steered by: a file name in the ControlNet folder
// (models/controlnet) or, once resolved for a shot, a path.
struct TemplateControl {
  std::string model;
  double weight = 1.0;  // 0-2
  double start = 0.0;   // fractions of the steps it applies to
  double end = 1.0;
};

// How the picture of a template without one is drawn (once, then kept).
struct TemplateGeneration {
  // A1111 prompt; empty: the pack's prompt with {subject} as `subject`.
  std::string prompt;
  std::string negative_prompt;  // empty with an empty prompt: the pack's
  std::string subject = "person";
  uint64_t seed = 0;
  int64_t width = 512;
  int64_t height = 768;
  int64_t steps = 25;
  std::string sampler = "dpmpp_2m";
  bool karras = true;
  double guidance = 7.0;
};

struct PortraitTemplate {
  std::string id;  // [a-z0-9_-]
  std::string name;
  std::string name_zh;
  std::string pack;  // the style pack whose gallery shows it ("" for none)
  ModelFamily family = ModelFamily::kSd1;
  std::filesystem::path image;  // the picture (resolved against the YAML's folder); or:
  std::optional<TemplateGeneration> generate;
  // The face pass: A1111 prompt with "{subject}" where the subject's words go.
  std::string prompt = "photo of {subject}";
  std::string negative_prompt;
  // Faces to replace, as indices counted left to right; empty: every face.
  std::vector<int> faces;
  std::string sampler = "dpmpp_2m";
  bool karras = true;
  int64_t steps = 25;
  double guidance = 7.0;
  double strength = 0.6;  // denoising strength of the face pass, (0, 1]
  // The face crop is repainted at this longest side (multiple of 8); 0: the model's native size.
  int64_t processing_size = 0;
  int padding = 32;  // A1111's "only masked padding", pixels of the template
  HeadMaskOptions mask;
  std::optional<TemplateControl> face_pose;  // ControlNet fed the template's landmarks
  std::optional<TemplateControl> canny;      // ControlNet fed the template's Canny edges
  double colour_match = 1.0;                 // 0 off, 1 the template's skin tone fully
  // The face-detail pass (ADetailer) over each new face at this denoising strength; unset: off.
  std::optional<double> face_detail;
  // Face fusion of the subject's best photo into each new face at this strength (0-1), then a
  // light face-detail pass (face_detail, else kFusionDetailStrength); unset: off.
  std::optional<double> fusion;
  std::filesystem::path source;  // the YAML file ("" when parsed from text)
};

// Parses and validates one template; relative `image` paths are resolved against `folder`.
// Throws kInvalidFile naming `label`, the field and what to write instead.
PortraitTemplate parse_portrait_template(const std::string& yaml_text, const std::string& label,
                                         const std::filesystem::path& folder = {});
// Reads a template file: a .yaml, or a picture (PNG/JPEG/WebP) used with every default and the
// id of its file name. kNotFound when missing.
PortraitTemplate load_portrait_template(const std::filesystem::path& file);
// Every *.yaml / *.yml of `directory` (not recursive), sorted by id; kInvalidFile for two files
// with one id. A missing folder has no templates.
std::vector<PortraitTemplate> load_portrait_templates(const std::filesystem::path& directory);
// <styles>/templates: where the built-in templates live.
std::filesystem::path default_templates_dir();

// The template with this id; kNotFound listing the known ids otherwise.
const PortraitTemplate& find_portrait_template(const std::vector<PortraitTemplate>& templates,
                                               const std::string& id);

// The settings as stored in a recipe or listed by the API (ControlNet names as given, no source
// or image path); template_from_json reads them back (kInvalidArgument for a bad field).
nlohmann::json portrait_template_to_json(const PortraitTemplate& portrait_template);
PortraitTemplate portrait_template_from_json(const nlohmann::json& settings);

// Lowercase hex sha256 of a template picture's file bytes: what a recipe records, so the same
// picture is used again.
std::string template_picture_sha256(std::string_view picture_bytes);

}  // namespace doppel

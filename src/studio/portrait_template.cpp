#include "doppel/studio/portrait_template.hpp"

#include <sodium.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>

#include "doppel/core/atomic_file.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/image.hpp"
#include "doppel/diffusion/sampler.hpp"
#include "doppel/studio/style_pack.hpp"

namespace doppel {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxTemplateBytes = 64 * 1024;

// Reads the settings of a template (YAML turned into JSON, or a recipe's copy) with messages
// that name the source and the field.
class TemplateReader {
 public:
  TemplateReader(const json& root, std::string label, ErrorCode code)
      : root_(root), label_(std::move(label)), code_(code) {}

  [[noreturn]] void fail(const std::string& field, const std::string& what) const {
    throw Error(code_, label_ + ": field '" + field + "' " + what);
  }
  void check_keys(const json& object, const std::string& where,
                  std::initializer_list<const char*> keys) const {
    for (const auto& [key, value] : object.items())
      if (std::none_of(keys.begin(), keys.end(), [&](const char* known) { return key == known; })) {
        std::string list;
        for (const char* known : keys) list += (list.empty() ? "" : ", ") + std::string(known);
        throw Error(code_, label_ + ": unknown field '" + where + key + "' (known: " + list + ")");
      }
  }
  std::optional<std::string> text(const json& object, const char* key,
                                  const std::string& where = "") const {
    const auto it = object.find(key);
    if (it == object.end() || it->is_null()) return std::nullopt;
    if (!it->is_string()) fail(where + key, "must be text");
    return it->get<std::string>();
  }
  std::optional<double> number(const json& object, const char* key, double low, double high,
                               const std::string& where = "") const {
    const auto it = object.find(key);
    if (it == object.end() || it->is_null()) return std::nullopt;
    if (!it->is_number() || !std::isfinite(it->get<double>()) || it->get<double>() < low ||
        it->get<double>() > high)
      fail(where + key, "must be a number from " + format(low) + " to " + format(high));
    return it->get<double>();
  }
  std::optional<int64_t> integer(const json& object, const char* key, int64_t low, int64_t high,
                                 const std::string& where = "") const {
    const auto it = object.find(key);
    if (it == object.end() || it->is_null()) return std::nullopt;
    if (!it->is_number_integer() || it->get<int64_t>() < low || it->get<int64_t>() > high)
      fail(where + key,
           "must be a whole number from " + std::to_string(low) + " to " + std::to_string(high));
    return it->get<int64_t>();
  }
  std::optional<bool> boolean(const json& object, const char* key,
                              const std::string& where = "") const {
    const auto it = object.find(key);
    if (it == object.end() || it->is_null()) return std::nullopt;
    if (!it->is_boolean()) fail(where + key, "must be true or false");
    return it->get<bool>();
  }
  const json& root() const { return root_; }

 private:
  static std::string format(double value) {
    char buffer[32];
    std::snprintf(buffer, sizeof(buffer), "%g", value);
    return buffer;
  }
  const json& root_;
  std::string label_;
  ErrorCode code_;
};

// YAML's untyped scalars as JSON: quoted text stays text, plain scalars that read as booleans or
// numbers become those, so one reader checks a YAML file and a recipe's JSON alike.
json yaml_to_json(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return nullptr;
    case YAML::NodeType::Sequence: {
      json list = json::array();
      for (const YAML::Node& item : node) list.push_back(yaml_to_json(item));
      return list;
    }
    case YAML::NodeType::Map: {
      json object = json::object();
      for (const auto& item : node)
        object[item.first.as<std::string>()] = yaml_to_json(item.second);
      return object;
    }
    case YAML::NodeType::Scalar:
      break;
  }
  const std::string scalar = node.Scalar();
  if (node.Tag() == "!") return scalar;  // quoted
  bool flag = false;
  if (YAML::convert<bool>::decode(node, flag)) return flag;
  int64_t whole = 0;
  if (scalar.find_first_of(".eE") == std::string::npos &&
      YAML::convert<int64_t>::decode(node, whole))
    return whole;
  double real = 0;
  if (YAML::convert<double>::decode(node, real)) return real;
  return scalar;
}

std::optional<TemplateControl> read_control(const TemplateReader& reader, const json& controls,
                                            const char* key) {
  const auto it = controls.find(key);
  if (it == controls.end() || it->is_null()) return std::nullopt;
  const std::string where = std::string("controls.") + key + ".";
  if (!it->is_object())
    reader.fail(std::string("controls.") + key, "must be {model, weight, start, end}");
  reader.check_keys(*it, where, {"model", "weight", "start", "end"});
  TemplateControl control;
  const auto model = reader.text(*it, "model", where);
  if (!model || model->empty())
    reader.fail(where + "model", "is missing: name the ControlNet file in models/controlnet");
  control.model = *model;
  control.weight = reader.number(*it, "weight", 0, 2, where).value_or(1.0);
  control.start = reader.number(*it, "start", 0, 1, where).value_or(0.0);
  control.end = reader.number(*it, "end", 0, 1, where).value_or(1.0);
  if (control.start >= control.end) reader.fail(where + "start", "must be below end");
  return control;
}

std::string checked_sampler(const TemplateReader& reader, const std::string& field,
                            const std::string& name) {
  try {
    return find_sampler(name).name;
  } catch (const Error& error) {
    reader.fail(field, std::string("names no sampler: ") + error.what());
  }
}

TemplateGeneration read_generation(const TemplateReader& reader, const json& object) {
  if (!object.is_object())
    reader.fail("generate", "must be a section (seed, width, height, prompt, ...)");
  reader.check_keys(object, "generate.",
                    {"prompt", "negative_prompt", "subject", "seed", "width", "height", "steps",
                     "sampler", "karras", "guidance"});
  TemplateGeneration generation;
  generation.prompt = reader.text(object, "prompt", "generate.").value_or("");
  generation.negative_prompt = reader.text(object, "negative_prompt", "generate.").value_or("");
  generation.subject = reader.text(object, "subject", "generate.").value_or("person");
  const auto seed = reader.integer(object, "seed", 0, 0xFFFFFFFFll, "generate.");
  if (!seed) reader.fail("generate.seed", "is missing: a kept picture needs a fixed seed");
  generation.seed = static_cast<uint64_t>(*seed);
  for (auto [key, target] :
       {std::pair{"width", &generation.width}, std::pair{"height", &generation.height}}) {
    *target = reader.integer(object, key, 64, 2048, "generate.").value_or(*target);
    if (*target % 8 != 0) reader.fail(std::string("generate.") + key, "must be a multiple of 8");
  }
  generation.steps = reader.integer(object, "steps", 1, 150, "generate.").value_or(25);
  if (auto sampler = reader.text(object, "sampler", "generate."))
    generation.sampler = checked_sampler(reader, "generate.sampler", *sampler);
  generation.karras = reader.boolean(object, "karras", "generate.").value_or(true);
  generation.guidance = reader.number(object, "guidance", 0, 30, "generate.").value_or(7.0);
  return generation;
}

bool valid_id(const std::string& id) {
  return !id.empty() && id.size() <= 64 && std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

// `require_picture`: a file names `image` or `generate`; a recipe carries the picture's hash.
PortraitTemplate read_template(const json& root, const std::string& label, ErrorCode code,
                               const std::filesystem::path& folder, bool require_picture) {
  if (!root.is_object())
    throw Error(code, label + ": a template must be a mapping of fields (id, prompt, ...)");
  const TemplateReader reader(root, label, code);
  reader.check_keys(root, "",
                    {"id",
                     "name",
                     "name_zh",
                     "pack",
                     "family",
                     "image",
                     "generate",
                     "prompt",
                     "negative_prompt",
                     "faces",
                     "sampler",
                     "karras",
                     "steps",
                     "guidance",
                     "strength",
                     "processing_size",
                     "padding",
                     "mask",
                     "controls",
                     "colour_match",
                     "face_detail",
                     "fusion"});
  PortraitTemplate result;
  result.id = reader.text(root, "id").value_or("");
  if (!valid_id(result.id))
    reader.fail("id", "must be 1-64 characters of a-z, 0-9, '_' and '-', got '" + result.id + "'");
  result.name = reader.text(root, "name").value_or(result.id);
  result.name_zh = reader.text(root, "name_zh").value_or(result.name);
  result.pack = reader.text(root, "pack").value_or("");
  if (auto family = reader.text(root, "family")) {
    try {
      result.family = parse_model_family(*family);
    } catch (const Error& error) {
      reader.fail("family", error.what());
    }
  }
  if (auto image = reader.text(root, "image")) {
    if (image->empty()) reader.fail("image", "is empty: name the picture file");
    result.image = std::filesystem::path(*image).is_absolute() ? std::filesystem::path(*image)
                                                               : folder / *image;
  }
  if (root.contains("generate") && !root["generate"].is_null())
    result.generate = read_generation(reader, root["generate"]);
  if (require_picture && result.image.empty() == !result.generate)
    reader.fail(result.image.empty() ? "image" : "generate",
                result.image.empty()
                    ? "is missing: name the picture file, or add a 'generate' section"
                    : "and 'image' are both given: a template has one picture");
  if (result.generate && result.generate->prompt.empty() && result.pack.empty())
    reader.fail("generate.prompt", "is missing: give a prompt, or the 'pack' whose prompt to use");

  result.prompt = reader.text(root, "prompt").value_or(result.prompt);
  if (result.prompt.find("{subject}") == std::string::npos)
    reader.fail("prompt", "must contain {subject}, where the subject's words go");
  result.negative_prompt = reader.text(root, "negative_prompt").value_or("");
  if (root.contains("faces")) {
    const json& faces = root["faces"];
    if (faces.is_string() && faces == "all") {
    } else if (faces.is_array() && !faces.empty()) {
      std::set<int> seen;
      for (const json& face : faces) {
        if (!face.is_number_integer() || face.get<int64_t>() < 0 || face.get<int64_t>() > 31)
          reader.fail("faces", "must be 'all' or a list of face numbers (0 = leftmost), got " +
                                   faces.dump());
        if (!seen.insert(face.get<int>()).second)
          reader.fail("faces", "names face " + face.dump() + " twice");
        result.faces.push_back(face.get<int>());
      }
    } else {
      reader.fail("faces",
                  "must be 'all' or a list of face numbers (0 = leftmost), got " + faces.dump());
    }
  }
  if (auto sampler = reader.text(root, "sampler"))
    result.sampler = checked_sampler(reader, "sampler", *sampler);
  result.karras = reader.boolean(root, "karras").value_or(result.karras);
  if (result.karras && !find_sampler(result.sampler).supports_karras) result.karras = false;
  result.steps = reader.integer(root, "steps", 1, 150).value_or(result.steps);
  result.guidance = reader.number(root, "guidance", 0, 30).value_or(result.guidance);
  result.strength = reader.number(root, "strength", 0.01, 1).value_or(result.strength);
  result.processing_size = reader.integer(root, "processing_size", 0, 2048).value_or(0);
  if (result.processing_size != 0 && (result.processing_size < 64 || result.processing_size % 8))
    reader.fail("processing_size", "must be 0 (the model's size) or a multiple of 8 from 64");
  result.padding = static_cast<int>(reader.integer(root, "padding", 0, 256).value_or(32));
  if (root.contains("mask") && !root["mask"].is_null()) {
    const json& mask = root["mask"];
    if (!mask.is_object()) reader.fail("mask", "must be {margin, feather, hairline}");
    reader.check_keys(mask, "mask.", {"margin", "feather", "hairline"});
    result.mask.margin = reader.number(mask, "margin", 0, 1, "mask.").value_or(result.mask.margin);
    result.mask.feather =
        reader.number(mask, "feather", 0, 0.5, "mask.").value_or(result.mask.feather);
    result.mask.hairline =
        reader.number(mask, "hairline", 0, 1.5, "mask.").value_or(result.mask.hairline);
  }
  if (root.contains("controls") && !root["controls"].is_null()) {
    const json& controls = root["controls"];
    if (!controls.is_object()) reader.fail("controls", "must be {face_pose: ..., canny: ...}");
    reader.check_keys(controls, "controls.", {"face_pose", "canny"});
    result.face_pose = read_control(reader, controls, "face_pose");
    result.canny = read_control(reader, controls, "canny");
  }
  result.colour_match = reader.number(root, "colour_match", 0, 1).value_or(1.0);
  result.face_detail = reader.number(root, "face_detail", 0.01, 1);
  result.fusion = reader.number(root, "fusion", 0, 1);
  return result;
}

json control_json(const TemplateControl& control) {
  return {{"model", control.model},
          {"weight", control.weight},
          {"start", control.start},
          {"end", control.end}};
}

}  // namespace

PortraitTemplate parse_portrait_template(const std::string& yaml_text, const std::string& label,
                                         const std::filesystem::path& folder) {
  if (yaml_text.size() > kMaxTemplateBytes)
    throw Error(ErrorCode::kInvalidFile, label + ": a template file must be under 64 KiB");
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& error) {
    throw Error(ErrorCode::kInvalidFile, label + ": not valid YAML (line " +
                                             std::to_string(error.mark.line + 1) +
                                             "): " + error.msg);
  }
  return read_template(yaml_to_json(root), label, ErrorCode::kInvalidFile, folder, true);
}

PortraitTemplate load_portrait_template(const std::filesystem::path& file) {
  if (!std::filesystem::is_regular_file(file))
    throw Error(ErrorCode::kNotFound, "template " + file.string() + " does not exist");
  std::string extension = file.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (extension == ".yaml" || extension == ".yml") {
    PortraitTemplate result =
        parse_portrait_template(read_file(file), file.string(), file.parent_path());
    result.source = file;
    return result;
  }
  // A picture alone: every default, named after its file.
  const std::string bytes = read_file(file);
  sniff_image_header(bytes.substr(0, 4096), file.string());  // kInvalidFile unless a picture
  std::string id;
  for (const char c : file.stem().string())
    id += std::isalnum(static_cast<unsigned char>(c))
              ? static_cast<char>(std::tolower(static_cast<unsigned char>(c)))
              : '-';
  PortraitTemplate result =
      read_template({{"id", valid_id(id) ? id : std::string("picture")}, {"image", file.string()}},
                    file.string(), ErrorCode::kInvalidFile, {}, true);
  result.source = file;
  return result;
}

std::vector<PortraitTemplate> load_portrait_templates(const std::filesystem::path& directory) {
  std::vector<PortraitTemplate> templates;
  if (!std::filesystem::is_directory(directory)) return templates;
  std::map<std::string, std::filesystem::path> ids;
  for (const auto& entry : std::filesystem::directory_iterator(directory)) {
    const std::string extension = entry.path().extension().string();
    if (!entry.is_regular_file() || (extension != ".yaml" && extension != ".yml")) continue;
    PortraitTemplate loaded = load_portrait_template(entry.path());
    if (auto [it, inserted] = ids.emplace(loaded.id, entry.path()); !inserted)
      throw Error(ErrorCode::kInvalidFile, entry.path().string() + ": template id '" + loaded.id +
                                               "' is already used by " + it->second.string());
    templates.push_back(std::move(loaded));
  }
  std::sort(templates.begin(), templates.end(),
            [](const auto& a, const auto& b) { return a.id < b.id; });
  return templates;
}

std::filesystem::path default_templates_dir() {
  return default_styles_dir() / "templates";
}

const PortraitTemplate& find_portrait_template(const std::vector<PortraitTemplate>& templates,
                                               const std::string& id) {
  for (const PortraitTemplate& candidate : templates)
    if (candidate.id == id) return candidate;
  std::string known;
  for (const PortraitTemplate& candidate : templates)
    known += (known.empty() ? "" : ", ") + candidate.id;
  throw Error(ErrorCode::kNotFound,
              "no template '" + id + "' (known: " + (known.empty() ? "none" : known) + ")");
}

json portrait_template_to_json(const PortraitTemplate& value) {
  json result = {{"id", value.id},
                 {"name", value.name},
                 {"name_zh", value.name_zh},
                 {"pack", value.pack},
                 {"family", model_family_name(value.family)},
                 {"prompt", value.prompt},
                 {"negative_prompt", value.negative_prompt},
                 {"faces", value.faces.empty() ? json("all") : json(value.faces)},
                 {"sampler", value.sampler},
                 {"karras", value.karras},
                 {"steps", value.steps},
                 {"guidance", value.guidance},
                 {"strength", value.strength},
                 {"processing_size", value.processing_size},
                 {"padding", value.padding},
                 {"mask",
                  {{"margin", value.mask.margin},
                   {"feather", value.mask.feather},
                   {"hairline", value.mask.hairline}}},
                 {"colour_match", value.colour_match}};
  json controls = json::object();
  if (value.face_detail) result["face_detail"] = *value.face_detail;
  if (value.fusion) result["fusion"] = *value.fusion;
  if (value.face_pose) controls["face_pose"] = control_json(*value.face_pose);
  if (value.canny) controls["canny"] = control_json(*value.canny);
  result["controls"] = controls;
  if (value.generate) {
    const TemplateGeneration& generation = *value.generate;
    result["generate"] = {
        {"prompt", generation.prompt},   {"negative_prompt", generation.negative_prompt},
        {"subject", generation.subject}, {"seed", generation.seed},
        {"width", generation.width},     {"height", generation.height},
        {"steps", generation.steps},     {"sampler", generation.sampler},
        {"karras", generation.karras},   {"guidance", generation.guidance}};
  }
  return result;
}

PortraitTemplate portrait_template_from_json(const json& settings) {
  return read_template(settings, "template", ErrorCode::kInvalidArgument, {}, false);
}

std::string template_picture_sha256(std::string_view picture_bytes) {
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(picture_bytes.data()),
                     picture_bytes.size());
  std::string hex;
  char byte_hex[3];
  for (const unsigned char byte : digest) {
    std::snprintf(byte_hex, sizeof(byte_hex), "%02x", byte);
    hex += byte_hex;
  }
  return hex;
}

}  // namespace doppel

#include "doppel/studio/style_pack.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "doppel/core/atomic_file.hpp"
#include "doppel/core/error.hpp"
#include "doppel/diffusion/sampler.hpp"

namespace doppel {
namespace {

constexpr const char* kSubjectPlaceholder = "{subject}";
constexpr size_t kMaxPackBytes = 64 * 1024;

// Every field a pack may have; `required` ones must be present.
struct FieldSpec {
  const char* key;
  bool required;
};
constexpr FieldSpec kFields[] = {
    {"id", true},
    {"name", true},
    {"name_zh", true},
    {"description", true},
    {"description_zh", true},
    {"family", true},
    {"prompt", true},
    {"negative_prompt", true},
    {"sampler", true},
    {"karras", false},
    {"steps", true},
    {"guidance", true},
    {"width", true},
    {"height", true},
    {"clip_skip", false},
    {"loras", false},
    {"vae", false},
    {"embeddings", false},
    {"controlnets", false},
    {"hires", false},
    {"identity", false},
    {"tags", false},
};

std::string field_list() {
  std::string list;
  for (const FieldSpec& field : kFields)
    list += (list.empty() ? "" : ", ") + std::string(field.key);
  return list;
}

std::string trim(const std::string& text) {
  const auto begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return {};
  const auto end = text.find_last_not_of(" \t\r\n");
  return text.substr(begin, end - begin + 1);
}

// Validates one parsed YAML document; every failure names the file, the line,
// the field and what to write instead.
class PackReader {
 public:
  PackReader(const YAML::Node& root, std::string label) : root_(root), label_(std::move(label)) {}

  [[noreturn]] void fail(const std::string& field, const YAML::Node& node,
                         const std::string& problem) const {
    std::string where = label_;
    if (node.IsDefined() && !node.Mark().is_null())
      where += ":" + std::to_string(node.Mark().line + 1);
    throw Error(ErrorCode::kInvalidFile,
                "style pack " + where + ": field '" + field + "': " + problem);
  }

  void check_fields() const {
    if (!root_.IsMap())
      throw Error(ErrorCode::kInvalidFile,
                  "style pack " + label_ + ": expected a mapping of fields (" + field_list() + ")");
    std::set<std::string> seen;
    for (const auto& entry : root_) {
      const std::string key = entry.first.Scalar();
      if (!seen.insert(key).second) fail(key, entry.first, "appears twice; keep one");
      const bool known = std::any_of(std::begin(kFields), std::end(kFields),
                                     [&](const FieldSpec& field) { return key == field.key; });
      if (!known)
        fail(key, entry.first,
             "unknown field; remove it or check its spelling (fields: " + field_list() + ")");
    }
    for (const FieldSpec& field : kFields) {
      if (field.required && !root_[field.key])
        throw Error(ErrorCode::kInvalidFile, "style pack " + label_ + ": field '" +
                                                 std::string(field.key) +
                                                 "' is missing; every pack needs it "
                                                 "(docs/styles.md lists the fields)");
    }
  }

  YAML::Node node(const char* key) const { return root_[key]; }

  std::string text(const char* key) const {
    const YAML::Node value = root_[key];
    if (!value || value.IsNull()) fail(key, value, "is empty; write the text");
    if (!value.IsScalar()) fail(key, value, "expected text, got a list or mapping");
    const std::string result = trim(value.Scalar());
    if (result.empty()) fail(key, value, "is empty; write the text");
    return result;
  }

  int64_t integer(const char* key, int64_t low, int64_t high, int64_t fallback) const {
    const YAML::Node value = root_[key];
    if (!value) return fallback;
    int64_t result = 0;
    if (!value.IsScalar() || !YAML::convert<int64_t>::decode(value, result))
      fail(key, value, "expected a whole number, got '" + describe(value) + "'");
    if (result < low || result > high)
      fail(key, value,
           std::to_string(result) + " is out of range; use " + std::to_string(low) + " to " +
               std::to_string(high));
    return result;
  }

  double number(const char* key, double low, double high) const {
    const YAML::Node value = root_[key];
    double result = 0;
    if (!value.IsScalar() || !YAML::convert<double>::decode(value, result) ||
        !std::isfinite(result))
      fail(key, value, "expected a number, got '" + describe(value) + "'");
    if (result < low || result > high)
      fail(key, value,
           value.Scalar() + " is out of range; use " + format(low) + " to " + format(high));
    return result;
  }

  bool boolean(const char* key, bool fallback) const {
    const YAML::Node value = root_[key];
    if (!value) return fallback;
    bool result = false;
    if (!value.IsScalar() || !YAML::convert<bool>::decode(value, result))
      fail(key, value, "expected true or false, got '" + describe(value) + "'");
    return result;
  }

  static std::string describe(const YAML::Node& value) {
    if (value.IsScalar()) return value.Scalar();
    if (value.IsSequence()) return "a list";
    if (value.IsMap()) return "a mapping";
    return "nothing";
  }

  static std::string format(double value) {
    std::string text = std::to_string(value);
    text.erase(text.find_last_not_of('0') + 1);
    if (!text.empty() && text.back() == '.') text.pop_back();
    return text;
  }

 private:
  const YAML::Node& root_;
  std::string label_;
};

void check_id(const PackReader& reader, const std::string& id) {
  const bool valid =
      id.size() <= 64 && std::all_of(id.begin(), id.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
      });
  if (!valid)
    reader.fail("id", reader.node("id"),
                "'" + id + "' may use only lowercase letters, digits, '_' and '-' (64 at most)");
}

void check_template(const PackReader& reader, const std::string& prompt) {
  if (prompt.find(kSubjectPlaceholder) == std::string::npos)
    reader.fail("prompt", reader.node("prompt"),
                "the template has no {subject}; put {subject} where the person goes, e.g. "
                "\"portrait photo of {subject}, studio lighting\"");
  // Any other brace is a misspelt placeholder ({Subject}, {subjects}) that
  // would reach the model as literal text.
  const std::string rest = fill_prompt_template(prompt, "");
  if (const auto brace = rest.find_first_of("{}"); brace != std::string::npos)
    reader.fail("prompt", reader.node("prompt"),
                "only {subject} is replaced; remove or fix the other braces ('" +
                    rest.substr(brace, 16) + "...')");
}

// A1111 extra-network tags would name LoRAs the worker never merges.
void check_no_network_tags(const PackReader& reader, const char* key, const std::string& text) {
  for (const char* tag : {"<lora:", "<lyco:", "<hypernet:"})
    if (text.find(tag) != std::string::npos)
      reader.fail(key, reader.node(key),
                  std::string("contains a ") + tag +
                      "...> tag; list style LoRAs under 'loras' "
                      "instead, so the studio merges them");
}

void check_size(const PackReader& reader, const char* key, int64_t value) {
  if (value % 8 != 0)
    reader.fail(key, reader.node(key),
                std::to_string(value) +
                    " is not a multiple of 8 (the VAE works on 8x8 blocks); "
                    "use " +
                    std::to_string(value / 8 * 8) + " or " + std::to_string(value / 8 * 8 + 8));
}

std::string read_sampler(const PackReader& reader, bool karras) {
  const std::string name = reader.text("sampler");
  const YAML::Node node = reader.node("sampler");
  if (name.size() > 7 && name.ends_with("_karras"))
    reader.fail("sampler", node,
                "write the sampler without '_karras' and set karras: true instead");
  const SamplerInfo* info = nullptr;
  try {
    info = &find_sampler(name);
  } catch (const Error& error) {
    reader.fail("sampler", node, error.what());
  }
  if (karras && !info->supports_karras) {
    std::string with_karras;
    for (const SamplerInfo& entry : sampler_registry())
      if (entry.supports_karras) with_karras += (with_karras.empty() ? "" : ", ") + entry.name;
    reader.fail("karras", reader.node("karras"),
                "sampler '" + info->name + "' has no Karras schedule; set karras: false or use " +
                    with_karras);
  }
  return info->name;
}

std::vector<StyleLora> read_loras(const PackReader& reader) {
  std::vector<StyleLora> loras;
  const YAML::Node list = reader.node("loras");
  if (!list || list.IsNull()) return loras;
  if (!list.IsSequence())
    reader.fail("loras", list, "expected a list of {file: NAME.safetensors, weight: 0.8}");
  for (const YAML::Node& entry : list) {
    if (!entry.IsMap() || !entry["file"])
      reader.fail("loras", entry,
                  "each entry needs file: NAME.safetensors (and optionally weight)");
    for (const auto& item : entry) {
      const std::string key = item.first.Scalar();
      if (key != "file" && key != "weight")
        reader.fail("loras." + key, item.first, "unknown field; a LoRA has only file and weight");
    }
    StyleLora lora;
    const YAML::Node file = entry["file"];
    lora.file = file.IsScalar() ? trim(file.Scalar()) : "";
    const bool plain_name = !lora.file.empty() && lora.file.front() != '.' &&
                            lora.file.find_first_of("/\\") == std::string::npos &&
                            lora.file.ends_with(".safetensors");
    if (!plain_name)
      reader.fail("loras.file", file,
                  "'" + PackReader::describe(file) +
                      "' must be a file name ending in .safetensors (no folders); the file "
                      "is looked up in the LoRA folder (models/lora)");
    if (const YAML::Node weight = entry["weight"]) {
      if (!weight.IsScalar() || !YAML::convert<double>::decode(weight, lora.weight) ||
          !std::isfinite(lora.weight) || std::abs(lora.weight) > 2.0)
        reader.fail("loras.weight", weight,
                    "expected a number from -2 to 2, got '" + PackReader::describe(weight) + "'");
    }
    loras.push_back(std::move(lora));
  }
  return loras;
}

// A plain file name (no folders, no leading dot), or fails naming where it is looked up.
std::string plain_file_name(const PackReader& reader, const std::string& field,
                            const YAML::Node& node, const std::string& folder) {
  const std::string name = node.IsScalar() ? trim(node.Scalar()) : "";
  if (name.empty() || name.front() == '.' || name.find_first_of("/\\") != std::string::npos)
    reader.fail(field, node,
                "'" + PackReader::describe(node) + "' must be a file name (no folders); it is " +
                    "looked up in " + folder);
  return name;
}

// Reads a number from `entry[key]` within [low, high], or `fallback` when absent.
double entry_number(const PackReader& reader, const YAML::Node& entry, const std::string& field,
                    const char* key, double low, double high, double fallback) {
  const YAML::Node value = entry[key];
  if (!value) return fallback;
  double result = 0;
  if (!value.IsScalar() || !YAML::convert<double>::decode(value, result) ||
      !std::isfinite(result) || result < low || result > high)
    reader.fail(field + "." + key, value,
                "expected a number from " + PackReader::format(low) + " to " +
                    PackReader::format(high) + ", got '" + PackReader::describe(value) + "'");
  return result;
}

void check_entry_keys(const PackReader& reader, const std::string& field, const YAML::Node& entry,
                      const std::set<std::string>& keys) {
  std::string list;
  for (const std::string& key : keys) list += (list.empty() ? "" : ", ") + key;
  if (!entry.IsMap()) reader.fail(field, entry, "expected a mapping with " + list);
  for (const auto& item : entry)
    if (!keys.count(item.first.Scalar()))
      reader.fail(field + "." + item.first.Scalar(), item.first,
                  "unknown field; " + field + " has " + list);
}

std::vector<StyleControl> read_controls(const PackReader& reader) {
  std::vector<StyleControl> controls;
  const YAML::Node list = reader.node("controlnets");
  if (!list || list.IsNull()) return controls;
  if (!list.IsSequence())
    reader.fail("controlnets", list,
                "expected a list of {model: NAME.safetensors, image: FILE.png, preprocessor, "
                "weight, start, end}");
  for (const YAML::Node& entry : list) {
    check_entry_keys(reader, "controlnets", entry,
                     {"model", "image", "preprocessor", "weight", "start", "end"});
    if (!entry["model"] || !entry["image"])
      reader.fail("controlnets", entry, "each entry needs model and image");
    StyleControl control;
    control.model =
        plain_file_name(reader, "controlnets.model", entry["model"], "models/controlnet");
    const YAML::Node image = entry["image"];
    control.image = image.IsScalar() ? trim(image.Scalar()) : "";
    if (control.image.empty() || control.image.front() == '/' ||
        control.image.find("..") != std::string::npos)
      reader.fail("controlnets.image", image,
                  "'" + PackReader::describe(image) +
                      "' must be a picture's path relative to the pack's file, inside its folder");
    if (const YAML::Node preprocessor = entry["preprocessor"]) {
      control.preprocessor = preprocessor.IsScalar() ? trim(preprocessor.Scalar()) : "";
      if (control.preprocessor != "canny" && control.preprocessor != "face_pose" &&
          control.preprocessor != "none")
        reader.fail(
            "controlnets.preprocessor", preprocessor,
            "'" + PackReader::describe(preprocessor) + "' is not one of canny, face_pose, none");
    }
    control.weight = entry_number(reader, entry, "controlnets", "weight", 0, 2, 1);
    control.start = entry_number(reader, entry, "controlnets", "start", 0, 1, 0);
    control.end = entry_number(reader, entry, "controlnets", "end", 0, 1, 1);
    if (control.start >= control.end)
      reader.fail("controlnets.start", entry["start"], "start must be below end");
    controls.push_back(std::move(control));
  }
  return controls;
}

std::optional<StyleHires> read_hires(const PackReader& reader) {
  const YAML::Node entry = reader.node("hires");
  if (!entry || entry.IsNull()) return std::nullopt;
  check_entry_keys(reader, "hires", entry, {"scale", "strength", "steps", "upscaler"});
  StyleHires hires;
  hires.scale = entry_number(reader, entry, "hires", "scale", 1, 4, hires.scale);
  hires.strength = entry_number(reader, entry, "hires", "strength", 0.01, 1, hires.strength);
  hires.steps = static_cast<int64_t>(entry_number(reader, entry, "hires", "steps", 0, 150, 0));
  if (const YAML::Node upscaler = entry["upscaler"]) {
    hires.upscaler = upscaler.IsScalar() ? trim(upscaler.Scalar()) : "";
    static const std::set<std::string> known = {"Latent", "Latent (nearest)", "Latent (bicubic)",
                                                "Lanczos", "Nearest"};
    if (!known.count(hires.upscaler))
      reader.fail("hires.upscaler", upscaler,
                  "'" + PackReader::describe(upscaler) +
                      "' is not an upscaler; use Latent, Latent (nearest), Latent (bicubic), "
                      "Lanczos or Nearest");
  }
  return hires;
}

StyleIdentity read_identity(const PackReader& reader) {
  StyleIdentity identity;
  const YAML::Node entry = reader.node("identity");
  if (!entry || entry.IsNull()) return identity;
  check_entry_keys(reader, "identity", entry,
                   {"ip_adapter_scale", "face_detail", "face_detail_faces", "fusion"});
  identity.ip_adapter_scale = entry_number(reader, entry, "identity", "ip_adapter_scale", 0, 2, 0);
  // face_detail: a strength, true (ADetailer's 0.4) or false.
  if (const YAML::Node detail = entry["face_detail"]; detail && !detail.IsNull()) {
    bool enabled = false;
    if (detail.IsScalar() && YAML::convert<bool>::decode(detail, enabled))
      identity.face_detail_strength = enabled ? 0.4 : 0;
    else
      identity.face_detail_strength =
          entry_number(reader, entry, "identity", "face_detail", 0, 1, 0);
  }
  if (const YAML::Node faces = entry["face_detail_faces"]) {
    identity.face_detail_faces = faces.IsScalar() ? trim(faces.Scalar()) : "";
    // most_like: the face most like the subject's face profile (a group picture's subject).
    if (identity.face_detail_faces != "largest" && identity.face_detail_faces != "all" &&
        identity.face_detail_faces != "most_like")
      reader.fail("identity.face_detail_faces", faces,
                  "'" + PackReader::describe(faces) + "' is not largest, all or most_like");
  }
  identity.fusion_strength = entry_number(reader, entry, "identity", "fusion", 0, 1, 0);
  return identity;
}

std::vector<std::string> read_embeddings(const PackReader& reader) {
  std::vector<std::string> names;
  const YAML::Node list = reader.node("embeddings");
  if (!list || list.IsNull()) return names;
  if (!list.IsSequence())
    reader.fail("embeddings", list, "expected a list of embedding names, e.g. [easynegative]");
  for (const YAML::Node& entry : list) {
    const std::string name = entry.IsScalar() ? trim(entry.Scalar()) : "";
    const bool plain = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
    });
    if (!plain)
      reader.fail("embeddings", entry,
                  "'" + PackReader::describe(entry) +
                      "' is not an embedding name (the file's name without its extension)");
    names.push_back(name);
  }
  return names;
}

std::vector<std::string> read_tags(const PackReader& reader) {
  std::vector<std::string> tags;
  const YAML::Node list = reader.node("tags");
  if (!list || list.IsNull()) return tags;
  if (!list.IsSequence()) reader.fail("tags", list, "expected a list, e.g. [photo, formal]");
  for (const YAML::Node& entry : list) {
    const std::string tag = entry.IsScalar() ? trim(entry.Scalar()) : "";
    if (tag.empty())
      reader.fail("tags", entry, "expected a word, got '" + PackReader::describe(entry) + "'");
    if (std::find(tags.begin(), tags.end(), tag) != tags.end())
      reader.fail("tags", entry, "'" + tag + "' is listed twice; remove one");
    tags.push_back(tag);
  }
  return tags;
}

}  // namespace

std::filesystem::path default_styles_dir() {
  if (const char* env = std::getenv("DOPPEL_STYLES_DIR"); env && *env) return env;
  return DOPPEL_DEFAULT_STYLES_DIR;
}

ModelFamily parse_model_family(const std::string& name) {
  for (ModelFamily family : {ModelFamily::kSd1, ModelFamily::kSd2, ModelFamily::kSdxl})
    if (name == model_family_name(family)) return family;
  throw Error(ErrorCode::kInvalidArgument,
              "unknown model family '" + name + "'; use sd1, sd2 or sdxl");
}

std::string fill_prompt_template(const std::string& prompt_template, const std::string& subject) {
  std::string result;
  const std::string placeholder = kSubjectPlaceholder;
  size_t start = 0;
  for (size_t found = prompt_template.find(placeholder); found != std::string::npos;
       found = prompt_template.find(placeholder, start)) {
    result.append(prompt_template, start, found - start);
    result += subject;
    start = found + placeholder.size();
  }
  result.append(prompt_template, start, std::string::npos);
  return result;
}

StylePack parse_style_pack(const std::string& yaml_text, const std::string& label) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& error) {
    throw Error(ErrorCode::kInvalidFile, "style pack " + label + ":" +
                                             std::to_string(error.mark.line + 1) +
                                             ": not valid YAML (" + error.msg + ")");
  }
  PackReader reader(root, label);
  reader.check_fields();

  StylePack pack;
  pack.id = reader.text("id");
  check_id(reader, pack.id);
  pack.name = reader.text("name");
  pack.name_zh = reader.text("name_zh");
  pack.description = reader.text("description");
  pack.description_zh = reader.text("description_zh");
  try {
    pack.family = parse_model_family(reader.text("family"));
  } catch (const Error&) {
    reader.fail("family", reader.node("family"),
                "'" + reader.text("family") + "' is not a model family; use sd1, sd2 or sdxl");
  }
  pack.prompt = reader.text("prompt");
  check_template(reader, pack.prompt);
  pack.negative_prompt = reader.text("negative_prompt");
  check_no_network_tags(reader, "prompt", pack.prompt);
  check_no_network_tags(reader, "negative_prompt", pack.negative_prompt);
  pack.karras = reader.boolean("karras", false);
  pack.sampler = read_sampler(reader, pack.karras);
  pack.steps = reader.integer("steps", 1, 150, 0);
  pack.guidance = reader.number("guidance", 1.0, 30.0);
  pack.width = reader.integer("width", 64, 2048, 0);
  pack.height = reader.integer("height", 64, 2048, 0);
  check_size(reader, "width", pack.width);
  check_size(reader, "height", pack.height);
  pack.clip_skip = static_cast<int>(reader.integer("clip_skip", 1, 4, 1));
  pack.loras = read_loras(reader);
  if (const YAML::Node vae = reader.node("vae"); vae && !vae.IsNull())
    pack.vae = plain_file_name(reader, "vae", vae, "models/vae");
  pack.embeddings = read_embeddings(reader);
  pack.controls = read_controls(reader);
  pack.hires = read_hires(reader);
  pack.identity = read_identity(reader);
  pack.tags = read_tags(reader);
  return pack;
}

StylePack load_style_pack(const std::filesystem::path& file) {
  const std::string text = read_file(file);
  // Packs are a page of text; anything larger is the wrong file.
  if (text.size() > kMaxPackBytes)
    throw Error(ErrorCode::kInvalidFile, "style pack " + file.string() + " is " +
                                             std::to_string(text.size()) +
                                             " bytes; a pack is at most 64 KiB of YAML");
  StylePack pack = parse_style_pack(text, file.string());
  pack.source = file;
  return pack;
}

std::vector<StylePack> load_style_packs(const std::filesystem::path& directory) {
  std::error_code error;
  if (!std::filesystem::is_directory(directory, error))
    throw Error(ErrorCode::kNotFound,
                "style pack folder " + directory.string() +
                    " does not exist; set DOPPEL_STYLES_DIR to the styles/ folder of doppel");
  std::vector<std::filesystem::path> files;
  std::filesystem::directory_iterator listing(directory, error);
  if (error)
    throw Error(ErrorCode::kIo,
                "cannot list the style pack folder " + directory.string() + ": " + error.message());
  for (const auto& entry : listing) {
    const std::filesystem::path& path = entry.path();
    const std::string extension = path.extension().string();
    if (!entry.is_regular_file(error) || path.filename().string().starts_with(".")) continue;
    if (extension == ".yaml" || extension == ".yml") files.push_back(path);
  }
  std::sort(files.begin(), files.end());
  std::vector<StylePack> packs;
  std::map<std::string, std::filesystem::path> seen;
  for (const auto& file : files) {
    StylePack pack = load_style_pack(file);
    if (const auto it = seen.find(pack.id); it != seen.end())
      throw Error(ErrorCode::kInvalidFile, "style pack " + file.string() + ": field 'id': '" +
                                               pack.id + "' is already used by " +
                                               it->second.string() + "; give each pack its own id");
    seen.emplace(pack.id, file);
    packs.push_back(std::move(pack));
  }
  std::sort(packs.begin(), packs.end(),
            [](const StylePack& a, const StylePack& b) { return a.id < b.id; });
  return packs;
}

std::vector<std::filesystem::path> missing_style_files(const StylePack& pack,
                                                       const std::filesystem::path& models_dir) {
  std::vector<std::filesystem::path> needed;
  for (const StyleLora& lora : pack.loras) needed.push_back(models_dir / "lora" / lora.file);
  if (!pack.vae.empty()) needed.push_back(models_dir / "vae" / pack.vae);
  for (const StyleControl& control : pack.controls) {
    needed.push_back(models_dir / "controlnet" / control.model);
    needed.push_back(pack.source.parent_path() / control.image);
  }
  std::vector<std::filesystem::path> missing;
  std::error_code error;
  for (const auto& path : needed)
    if (!std::filesystem::exists(path, error)) missing.push_back(path);
  // An embedding may be any of the formats A1111 reads.
  for (const std::string& name : pack.embeddings) {
    static constexpr const char* kExtensions[] = {".safetensors", ".pt", ".bin"};
    const bool found =
        std::any_of(std::begin(kExtensions), std::end(kExtensions), [&](const char* extension) {
          return std::filesystem::exists(models_dir / "embeddings" / (name + extension), error);
        });
    if (!found) missing.push_back(models_dir / "embeddings" / (name + ".safetensors"));
  }
  return missing;
}

const StylePack& find_style_pack(const std::vector<StylePack>& packs, const std::string& id) {
  for (const StylePack& pack : packs)
    if (pack.id == id) return pack;
  std::string known;
  for (const StylePack& pack : packs) known += (known.empty() ? "" : ", ") + pack.id;
  throw Error(ErrorCode::kNotFound,
              "no style pack '" + id + "'; the styles are: " + (known.empty() ? "(none)" : known));
}

std::vector<StylePack> style_packs_for(const std::vector<StylePack>& packs, ModelFamily family) {
  std::vector<StylePack> matching;
  std::copy_if(packs.begin(), packs.end(), std::back_inserter(matching),
               [&](const StylePack& pack) { return pack.family == family; });
  return matching;
}

nlohmann::json style_pack_to_json(const StylePack& pack) {
  nlohmann::json loras = nlohmann::json::array();
  for (const StyleLora& lora : pack.loras)
    loras.push_back({{"file", lora.file}, {"weight", lora.weight}});
  nlohmann::json controls = nlohmann::json::array();
  for (const StyleControl& control : pack.controls)
    controls.push_back({{"model", control.model},
                        {"image", control.image},
                        {"preprocessor", control.preprocessor},
                        {"weight", control.weight},
                        {"start", control.start},
                        {"end", control.end}});
  nlohmann::json hires = nullptr;
  if (pack.hires)
    hires = {{"scale", pack.hires->scale},
             {"strength", pack.hires->strength},
             {"steps", pack.hires->steps},
             {"upscaler", pack.hires->upscaler}};
  return {{"id", pack.id},
          {"name", pack.name},
          {"name_zh", pack.name_zh},
          {"description", pack.description},
          {"description_zh", pack.description_zh},
          {"family", model_family_name(pack.family)},
          {"prompt", pack.prompt},
          {"negative_prompt", pack.negative_prompt},
          {"sampler", pack.sampler},
          {"karras", pack.karras},
          {"steps", pack.steps},
          {"guidance", pack.guidance},
          {"width", pack.width},
          {"height", pack.height},
          {"clip_skip", pack.clip_skip},
          {"loras", loras},
          {"vae", pack.vae.empty() ? nlohmann::json(nullptr) : nlohmann::json(pack.vae)},
          {"embeddings", pack.embeddings},
          {"controlnets", controls},
          {"hires", hires},
          {"identity",
           {{"ip_adapter_scale", pack.identity.ip_adapter_scale},
            {"face_detail", pack.identity.face_detail_strength},
            {"face_detail_faces", pack.identity.face_detail_faces},
            {"fusion", pack.identity.fusion_strength}}},
          {"tags", pack.tags}};
}

}  // namespace doppel

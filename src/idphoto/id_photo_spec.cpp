#include "doppel/idphoto/id_photo_spec.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "doppel/core/atomic_file.hpp"
#include "doppel/core/error.hpp"
#include "idphoto/id_photo_specs_data.hpp"

namespace doppel {
namespace {

constexpr double kMillimetresPerInch = 25.4;

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw Error(ErrorCode::kInvalidFile, where + ": " + what);
}

bool is_kebab_case(const std::string& id) {
  if (id.empty() || id.front() == '-' || id.back() == '-') return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

std::array<uint8_t, 3> parse_hex_colour(const std::string& text, const std::string& where) {
  if (text.size() != 7 || text[0] != '#' ||
      !std::all_of(text.begin() + 1, text.end(), [](char c) { return std::isxdigit(c); }))
    fail(where, "colour must be written #RRGGBB (got \"" + text + "\")");
  std::array<uint8_t, 3> rgb{};
  for (int i = 0; i < 3; ++i)
    rgb[i] = static_cast<uint8_t>(std::stoi(text.substr(1 + 2 * i, 2), nullptr, 16));
  return rgb;
}

template <typename T>
T required(const YAML::Node& node, const char* key, const std::string& where) {
  const YAML::Node value = node[key];
  if (!value) fail(where, std::string("missing field '") + key + "'");
  try {
    return value.as<T>();
  } catch (const YAML::Exception&) {
    fail(where, std::string("field '") + key + "' has the wrong type");
  }
}

std::pair<double, double> number_pair(const YAML::Node& node, const char* key,
                                      const std::string& where) {
  const auto values = required<std::vector<double>>(node, key, where);
  if (values.size() != 2 || !std::isfinite(values[0]) || !std::isfinite(values[1]))
    fail(where, std::string("'") + key + "' must be two numbers");
  return {values[0], values[1]};
}

MillimetreRange range(const YAML::Node& node, const char* key, const std::string& where,
                      double limit) {
  const auto [low, high] = number_pair(node, key, where);
  if (!(low >= 0 && low < high && high <= limit))
    fail(where, std::string("'") + key +
                    "' must be [min, max] with 0 <= min < max <= " + std::to_string(limit) + " mm");
  return {low, high};
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

std::vector<IdPhotoSpec> parse_id_photo_specs(const std::string& yaml_text,
                                              const std::string& label) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    fail(label, std::string("not valid YAML: ") + e.what());
  }
  if (!root.IsMap() || !root["colours"].IsMap() || !root["specs"].IsSequence())
    fail(label, "expected a 'colours' map and a 'specs' list");
  std::map<std::string, IdPhotoColour> colours;
  for (const auto& entry : root["colours"]) {
    const std::string name = entry.first.as<std::string>();
    const std::string where = label + ": colour " + name;
    if (!is_kebab_case(name)) fail(where, "colour names are kebab case (light-grey)");
    IdPhotoColour colour;
    colour.name = name;
    colour.rgb = parse_hex_colour(required<std::string>(entry.second, "rgb", where), where);
    colour.tolerance = required<double>(entry.second, "tolerance", where);
    if (!(colour.tolerance > 0 && colour.tolerance <= 50))
      fail(where, "tolerance must be a colour difference between 0 and 50");
    colours[name] = colour;
  }
  std::vector<IdPhotoSpec> specs;
  std::set<std::string> ids;
  for (const auto& node : root["specs"]) {
    IdPhotoSpec spec;
    spec.id = required<std::string>(node, "id", label + ": a spec");
    const std::string where = label + ": spec " + spec.id;
    if (!is_kebab_case(spec.id)) fail(where, "ids are kebab case (us-passport)");
    if (!ids.insert(spec.id).second) fail(where, "the id is used twice");
    spec.name = required<std::string>(node, "name", where);
    if (node["name_zh"]) spec.name_zh = node["name_zh"].as<std::string>();
    spec.authority = required<std::string>(node, "authority", where);
    spec.source = required<std::string>(node, "source", where);
    if (node["derived"]) spec.derived = node["derived"].as<std::string>();
    std::tie(spec.width_mm, spec.height_mm) = number_pair(node, "size_mm", where);
    const auto [width_px, height_px] = number_pair(node, "pixels", where);
    spec.width_px = static_cast<int>(width_px);
    spec.height_px = static_cast<int>(height_px);
    spec.dpi = required<double>(node, "dpi", where);
    if (!(spec.width_mm >= 10 && spec.height_mm >= 10 && spec.width_mm <= 200 &&
          spec.height_mm <= 200))
      fail(where, "size_mm must be 10-200 mm each way");
    if (spec.width_px != width_px || spec.height_px != height_px || spec.width_px < 64 ||
        spec.height_px < 64 || spec.width_px > 4096 || spec.height_px > 4096)
      fail(where, "pixels must be whole numbers from 64 to 4096");
    if (!(spec.dpi >= 72 && spec.dpi <= 2400)) fail(where, "dpi must be 72-2400");
    // The file must print at the document's size: pixels = millimetres / 25.4 x dpi (+-1 px).
    for (auto [mm, px, axis] : {std::tuple{spec.width_mm, spec.width_px, "width"},
                                std::tuple{spec.height_mm, spec.height_px, "height"}})
      if (std::abs(mm / kMillimetresPerInch * spec.dpi - px) > 1.0)
        fail(where, std::string("the ") + axis + " of " + std::to_string(px) + " px at " +
                        std::to_string(int(spec.dpi)) + " dpi does not print at the size_mm");
    spec.head_height_mm = range(node, "head_height_mm", where, spec.height_mm);
    spec.eye_line_mm = range(node, "eye_line_mm", where, spec.height_mm);
    if (node["top_margin_mm"])
      spec.top_margin_mm = range(node, "top_margin_mm", where, spec.height_mm);
    const auto names = required<std::vector<std::string>>(node, "backgrounds", where);
    if (names.empty()) fail(where, "'backgrounds' names at least one colour");
    for (const auto& name : names) {
      const auto found = colours.find(name);
      if (found == colours.end()) fail(where, "background '" + name + "' is not in 'colours'");
      spec.backgrounds.push_back(found->second);
    }
    specs.push_back(std::move(spec));
  }
  if (specs.empty()) fail(label, "the file has no specs");
  return specs;
}

std::vector<IdPhotoSpec> load_id_photo_specs(const std::filesystem::path& path) {
  return parse_id_photo_specs(read_file(path), path.string());
}

const std::vector<IdPhotoSpec>& built_in_id_photo_specs() {
  static const std::vector<IdPhotoSpec> specs =
      parse_id_photo_specs(kIdPhotoSpecsYaml, "src/idphoto/id_photo_specs.yaml (built in)");
  return specs;
}

const IdPhotoSpec& find_id_photo_spec(const std::vector<IdPhotoSpec>& specs,
                                      const std::string& id) {
  for (const auto& spec : specs)
    if (spec.id == id) return spec;
  std::string known, closest;
  size_t best = SIZE_MAX;
  for (const auto& spec : specs) {
    known += (known.empty() ? "" : ", ") + spec.id;
    const size_t distance = edit_distance(id, spec.id);
    if (distance < best) best = distance, closest = spec.id;
  }
  std::string message = "unknown ID-photo spec '" + id + "'";
  if (best <= 3) message += " (did you mean " + closest + "?)";
  throw Error(ErrorCode::kNotFound,
              message + "; known specs: " + known + " (`doppel idphoto specs` lists them)");
}

const IdPhotoColour& choose_background(const IdPhotoSpec& spec, const std::string& name) {
  if (name.empty()) return spec.backgrounds.front();
  std::string allowed;
  for (const auto& colour : spec.backgrounds) {
    if (colour.name == name) return colour;
    allowed += (allowed.empty() ? "" : ", ") + colour.name;
  }
  throw Error(ErrorCode::kInvalidArgument,
              spec.id + " does not allow a " + name + " background; it allows: " + allowed);
}

}  // namespace doppel

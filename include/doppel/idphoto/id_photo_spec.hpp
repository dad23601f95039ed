// Document photo specifications (src/idphoto/id_photo_specs.yaml, built into the
// binary): the printed size, the pixels and DPI of the file, where the head
// and eyes must be, and the background colours a document accepts.
#pragma once
#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace doppel {

struct MillimetreRange {
  double min = 0;
  double max = 0;
  bool contains(double value) const { return value >= min && value <= max; }
  double middle() const { return (min + max) / 2; }
};

struct IdPhotoColour {
  std::string name;              // kebab case: white, light-grey, blue, ...
  std::array<uint8_t, 3> rgb{};  // sRGB
  double tolerance = 12;         // CIE76 distance in Lab still counted as this colour
};

struct IdPhotoSpec {
  std::string id;  // kebab case: cn-id-card, us-passport, ...
  std::string name, authority, source, derived;
  std::string name_zh;  // the name a Chinese reader knows the document by ("" = none given)
  double width_mm = 0, height_mm = 0;
  int width_px = 0, height_px = 0;
  double dpi = 0;
  MillimetreRange head_height_mm;                // chin to the top of the head (hair)
  MillimetreRange eye_line_mm;                   // bottom edge up to the eye line
  std::optional<MillimetreRange> top_margin_mm;  // top edge down to the top of the head
  std::vector<IdPhotoColour> backgrounds;        // allowed; the first is the default

  // Pixels of the spec's own file per millimetre of the print.
  double pixels_per_mm() const { return height_px / height_mm; }
};

// The specifications shipped with doppel, in file order.
const std::vector<IdPhotoSpec>& built_in_id_photo_specs();

// Parses and validates a specification file (the format of src/idphoto/id_photo_specs.yaml);
// throws doppel::Error kInvalidFile naming `label`, the spec and the field at fault.
std::vector<IdPhotoSpec> parse_id_photo_specs(const std::string& yaml_text,
                                              const std::string& label);
std::vector<IdPhotoSpec> load_id_photo_specs(const std::filesystem::path& path);

// The spec with this id; throws kNotFound listing the known ids (and the closest one).
const IdPhotoSpec& find_id_photo_spec(const std::vector<IdPhotoSpec>& specs, const std::string& id);

// One of the spec's allowed colours by name ("" = the spec's default); throws
// kInvalidArgument naming the colours the document allows.
const IdPhotoColour& choose_background(const IdPhotoSpec& spec, const std::string& name);

}  // namespace doppel

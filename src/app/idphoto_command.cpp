// `doppel idphoto specs|check|make`: document photos from the command line
// (docs/id-photos.md). `check` and `make` print one JSON verdict on stdout.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>

#include "app/command_registry.hpp"
#include "doppel/core/atomic_file.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/image_density.hpp"
#include "doppel/core/paths.hpp"
#include "doppel/idphoto/id_photo_check.hpp"
#include "doppel/idphoto/id_photo_maker.hpp"
#include "doppel/idphoto/id_photo_spec.hpp"
#include "doppel/idphoto/print_sheet.hpp"

namespace doppel::app {
namespace {

// Exit status when the photo is not (or cannot be made) compliant; 1 stays "doppel failed"
// and 2 "bad command line", as for `doppel face check`.
constexpr int kNotCompliant = 3;

std::string lowercase_extension(const std::string& file) {
  std::string extension = std::filesystem::path(file).extension().string();
  for (char& c : extension) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return extension;
}

void check_image_extension(const std::string& file, bool pdf_allowed) {
  const std::string extension = lowercase_extension(file);
  if (extension == ".png" || extension == ".jpg" || extension == ".jpeg") return;
  if (pdf_allowed && extension == ".pdf") return;
  throw Error(ErrorCode::kInvalidArgument, file + ": name the output .png or .jpg" +
                                               std::string(pdf_allowed ? " or .pdf" : "") +
                                               " (the format follows the name)");
}

std::string millimetres(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", value);
  return text;
}

nlohmann::json spec_json(const IdPhotoSpec& spec) {
  nlohmann::json backgrounds = nlohmann::json::array();
  for (const auto& colour : spec.backgrounds) backgrounds.push_back(colour.name);
  nlohmann::json out = {{"id", spec.id},
                        {"name", spec.name},
                        {"size_mm", {spec.width_mm, spec.height_mm}},
                        {"pixels", {spec.width_px, spec.height_px}},
                        {"dpi", spec.dpi},
                        {"head_height_mm", {spec.head_height_mm.min, spec.head_height_mm.max}},
                        {"eye_line_mm", {spec.eye_line_mm.min, spec.eye_line_mm.max}},
                        {"backgrounds", backgrounds},
                        {"authority", spec.authority},
                        {"source", spec.source}};
  if (spec.top_margin_mm) out["top_margin_mm"] = {spec.top_margin_mm->min, spec.top_margin_mm->max};
  return out;
}

struct IdPhotoCommandOptions {
  std::string landmark_model;
  std::string photo;
  std::string spec;
  std::string out;
  std::string background;
  std::string sheet;
  std::vector<std::string> sheet_outputs;
  int copies = PrintSheetOptions{}.copies;
  bool json = false;
};

CommandRegistration idphoto_command{
    "idphoto", "ID photos: document specs, compliance checks, crops and print sheets",
    [](CLI::App& command) {
      auto o = std::make_shared<IdPhotoCommandOptions>();
      command.require_subcommand(1);
      command.add_option("--landmark-model", o->landmark_model,
                         "dlib 68-point shape predictor (.dat)");
      CLI::App* specs = command.add_subcommand("specs", "List the document specifications");
      specs->add_flag("--json", o->json, "One JSON array with every field");

      CLI::App* check = command.add_subcommand(
          "check", "Judge a photo as a finished ID photo: one JSON verdict with every check");
      check->add_option("photo", o->photo, "Photo (PNG, JPEG or WebP)")->required();
      check->add_option("--spec", o->spec, "Document spec id (see `idphoto specs`)")->required();

      CLI::App* make = command.add_subcommand(
          "make", "Crop, scale and recolour a portrait into a compliant ID photo");
      make->add_option("photo", o->photo, "Portrait (PNG, JPEG or WebP)")->required();
      make->add_option("--spec", o->spec, "Document spec id (see `idphoto specs`)")->required();
      make->add_option("--out", o->out, "The ID photo (.png or .jpg, DPI written in)")->required();
      make->add_option("--background", o->background,
                       "Background colour allowed by the spec (white, blue, red, light-grey, "
                       "...); default: the spec's first");
      make->add_option("--sheet", o->sheet,
                       "Also lay copies out on photo paper: 4r, 5r, a6, a4, letter");
      make->add_option("--sheet-out", o->sheet_outputs, "Print sheet file(s): .png, .jpg or .pdf")
          ->expected(1, 4);
      make->add_option("--copies", o->copies, "Copies on the sheet (at most what fits)")
          ->check(CLI::Range(1, 100));

      return [=, &command]() -> int {
        const auto& all_specs = built_in_id_photo_specs();
        if (specs->parsed()) {
          if (o->json) {
            nlohmann::json list = nlohmann::json::array();
            for (const auto& spec : all_specs) list.push_back(spec_json(spec));
            std::cout << list.dump(2) << "\n";
            return 0;
          }
          std::printf("%-16s %-13s %-11s %-5s %s\n", "id", "size (mm)", "pixels", "dpi",
                      "backgrounds");
          for (const auto& spec : all_specs) {
            std::string backgrounds;
            for (const auto& colour : spec.backgrounds)
              backgrounds += (backgrounds.empty() ? "" : ", ") + colour.name;
            std::printf(
                "%-16s %-13s %-11s %-5g %s\n", spec.id.c_str(),
                (millimetres(spec.width_mm) + " x " + millimetres(spec.height_mm)).c_str(),
                (std::to_string(spec.width_px) + "x" + std::to_string(spec.height_px)).c_str(),
                spec.dpi, backgrounds.c_str());
          }
          return 0;
        }
        const IdPhotoSpec& spec = find_id_photo_spec(all_specs, o->spec);
        FaceDetector detector(o->landmark_model.empty() ? default_landmark_model_path()
                                                        : std::filesystem::path(o->landmark_model));
        const Image photo = read_image(o->photo);
        if (check->parsed()) {
          const IdPhotoVerdict verdict = check_id_photo(photo, spec, detector);
          nlohmann::json out = id_photo_verdict_json(verdict);
          out["file"] = o->photo;
          std::cout << out.dump() << "\n";
          return verdict.compliant ? 0 : kNotCompliant;
        }
        if (make->parsed()) {
          // Refuse bad names and a sheet that cannot be laid out before the work starts.
          check_image_extension(o->out, false);
          for (const auto& file : o->sheet_outputs) check_image_extension(file, true);
          if (o->sheet.empty() != o->sheet_outputs.empty())
            throw Error(ErrorCode::kInvalidArgument,
                        "--sheet and --sheet-out go together (e.g. --sheet 4r --sheet-out "
                        "sheet.pdf)");
          const PrintSheetPaper* paper =
              o->sheet.empty() ? nullptr : &find_print_sheet_paper(o->sheet);
          IdPhotoMakeOptions options;
          options.background = o->background;
          choose_background(spec, o->background);  // an unknown colour is a usage error
          const IdPhotoResult result = make_id_photo(detector, photo, spec, options);
          nlohmann::json out = id_photo_verdict_json(result.verdict);
          out["file"] = o->photo;
          out["background"] = result.background;
          if (!result.verdict.compliant) {
            std::cout << out.dump() << "\n";
            std::cerr << o->photo << " cannot be made into a compliant " << spec.id
                      << " photo; nothing was written:\n";
            for (const auto& reason : result.verdict.reasons())
              std::cerr << "  - " << reason << "\n";
            return kNotCompliant;
          }
          write_image_with_density(o->out, result.image, spec.dpi);
          out["out"] = o->out;
          out["pixels"] = {result.image.width, result.image.height};
          out["dpi"] = spec.dpi;
          if (paper) {
            PrintSheetOptions sheet_options;
            sheet_options.copies = o->copies;
            const PrintSheet sheet = compose_print_sheet(result.image, spec, *paper, sheet_options);
            for (const auto& file : o->sheet_outputs) {
              if (lowercase_extension(file) == ".pdf")
                write_file_atomically(
                    file, encode_image_pdf(sheet.image, sheet.width_mm, sheet.height_mm,
                                           spec.name + " x" + std::to_string(sheet.copies)));
              else
                write_image_with_density(file, sheet.image, sheet.dpi);
            }
            out["sheet"] = {
                {"paper", paper->id},     {"files", o->sheet_outputs},
                {"copies", sheet.copies}, {"columns", sheet.columns},
                {"rows", sheet.rows},     {"size_mm", {sheet.width_mm, sheet.height_mm}}};
            if (sheet.copies < o->copies)
              std::cerr << "only " << sheet.copies << " copies of " << spec.id << " fit on "
                        << paper->id << "\n";
          }
          std::cout << out.dump() << "\n";
          return 0;
        }
        std::cerr << command.help();
        return 2;
      };
    }};

}  // namespace
}  // namespace doppel::app

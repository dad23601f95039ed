// `doppel face check|embed|compare|crop`: the face layer from the command
// line, one JSON line per result on stdout.
#include <nlohmann/json.hpp>

#include <cmath>
#include <iostream>

#include "app/command_registry.hpp"
#include "doppel/core/error.hpp"
#include "doppel/face/face_aligner.hpp"
#include "doppel/face/face_analyzer.hpp"
#include "doppel/face/photo_intake.hpp"
#include "doppel/face/subject_profile.hpp"

namespace doppel::app {
namespace {

struct FaceCommandOptions {
  std::string landmark_model;
  std::string recognition_model;
  bool ignore_exif = false;
};

FaceAnalyzerOptions analyzer_options(const FaceCommandOptions& o) {
  FaceAnalyzerOptions options;
  if (!o.landmark_model.empty()) options.models.landmark_model = o.landmark_model;
  if (!o.recognition_model.empty()) options.models.recognition_manifest = o.recognition_model;
  options.read.apply_exif_orientation = !o.ignore_exif;
  return options;
}

// `face check` exit status when a photo was rejected, missing or unreadable (docs/face.md);
// 1 stays "doppel failed" and 2 "bad command line".
constexpr int kSomePhotosRejected = 3;

nlohmann::json box_json(const FaceDetection& d) {
  return {{"left", d.box.left},
          {"top", d.box.top},
          {"right", d.box.right},
          {"bottom", d.box.bottom},
          {"score", d.score}};
}

// A number, or null for NaN (JSON has no NaN).
nlohmann::json number(double value) {
  return std::isfinite(value) ? nlohmann::json(value) : nlohmann::json(nullptr);
}

nlohmann::json verdict_json(const PhotoVerdict& v) {
  nlohmann::json reasons = nlohmann::json::array();
  for (const auto& r : v.reasons)
    reasons.push_back({{"code", r.code},
                       {"message", r.message},
                       {"rejects", r.rejects},
                       {"detail", r.detail},
                       {"figures", r.figures}});
  nlohmann::json out = {
      {"file", v.label}, {"faces", v.faces}, {"accepted", v.accepted}, {"reasons", reasons}};
  if (v.face) {
    const FaceQualityMeasures& m = v.measures;
    out["face"] = box_json(v.face->detection);
    out["quality"] = {
        {"score", std::isfinite(v.brisque) ? nlohmann::json(v.quality_score) : nlohmann::json()},
        {"brisque", number(v.brisque)},
        {"face_width_px", m.face_width_px},
        {"sharpness", m.sharpness},
        {"brightness", m.brightness},
        {"clipped_fraction", m.clipped_fraction},
        {"eye_openness", m.eye_openness},
        {"mouth_contrast", m.mouth_contrast},
        {"yaw_degrees", m.pose.yaw_degrees},
        {"pitch_degrees", m.pose.pitch_degrees},
        {"roll_degrees", m.pose.roll_degrees},
        {"portrait_outside_fraction", v.portrait.outside_fraction}};
  } else {
    out["quality"] = nullptr;
  }
  return out;
}

// The largest face of an image, or an Error naming the file.
AnalyzedFace largest_face(FaceAnalyzer& analyzer, const Image& image, const std::string& file) {
  std::vector<AnalyzedFace> faces = analyzer.analyze(image);
  if (faces.empty()) throw Error(ErrorCode::kInvalidArgument, file + ": no face found");
  size_t best = 0;
  for (size_t i = 1; i < faces.size(); ++i)
    if (faces[i].detection.box.width() > faces[best].detection.box.width()) best = i;
  return std::move(faces[best]);
}

CommandRegistration face_command{
    "face", "Check, embed, compare and crop faces in photos", [](CLI::App& command) {
      auto options = std::make_shared<FaceCommandOptions>();
      command.require_subcommand(1);
      command.add_option("--landmark-model", options->landmark_model,
                         "dlib 68-point shape predictor (.dat)");
      command.add_option("--recognition-model", options->recognition_model,
                         "face-api.js face_recognition_model-weights_manifest.json");
      command.add_flag("--ignore-exif", options->ignore_exif,
                       "Do not apply EXIF orientation (as dlib's own loader)");

      auto files = std::make_shared<std::vector<std::string>>();
      CLI::App* check = command.add_subcommand(
          "check", "Judge photos for training: one JSON line per photo (set gates included)");
      check->add_option("images", *files, "Photos of one person")->required();
      auto no_brisque = std::make_shared<bool>(false);
      check->add_flag("--no-brisque", *no_brisque, "Skip the BRISQUE quality score");

      auto embed_file = std::make_shared<std::string>();
      auto embed_all = std::make_shared<bool>(false);
      CLI::App* embed = command.add_subcommand("embed", "Print the 128-d face descriptor");
      embed->add_option("image", *embed_file, "Photo")->required();
      embed->add_flag("--all", *embed_all, "Every face (default: the largest)");

      auto pair = std::make_shared<std::vector<std::string>>();
      CLI::App* compare = command.add_subcommand(
          "compare", "Distance and likeness between the largest faces of two photos");
      compare->add_option("images", *pair, "Two photos")->required()->expected(2);

      auto crop_file = std::make_shared<std::string>();
      auto crop_out = std::make_shared<std::string>();
      auto crop_size = std::make_shared<int>(512);
      auto crop_padding = std::make_shared<double>(PortraitCropOptions{}.padding);
      CLI::App* crop = command.add_subcommand(
          "crop", "Write the aligned head-and-shoulders crop of the largest face (PNG)");
      crop->add_option("image", *crop_file, "Photo")->required();
      crop->add_option("--out", *crop_out, "Output PNG")->required();
      crop->add_option("--size", *crop_size, "Side in pixels")->check(CLI::Range(16, 4096));
      crop->add_option("--padding", *crop_padding, "Margin around the face template")
          ->check(CLI::Range(0.0, 4.0));

      return [=, &command]() -> int {
        FaceAnalyzer analyzer(analyzer_options(*options));
        if (check->parsed()) {
          IntakeOptions intake_options;
          intake_options.measure_brisque = !*no_brisque;
          PhotoIntake intake(analyzer, intake_options);
          std::vector<std::filesystem::path> paths(files->begin(), files->end());
          int rejected = 0;
          for (const auto& verdict : intake.examine_set(paths)) {
            std::cout << verdict_json(verdict).dump() << "\n";
            rejected += verdict.accepted ? 0 : 1;
          }
          // Scripts can tell "all usable" from "some not" by the exit status alone.
          if (rejected > 0) {
            std::cerr << rejected << " of " << paths.size()
                      << " photos were not accepted (missing, unreadable or failing a check; "
                         "the reasons are in their lines)\n";
            return kSomePhotosRejected;
          }
          return 0;
        }
        if (embed->parsed()) {
          const Image image = analyzer.read(*embed_file);
          std::vector<AnalyzedFace> faces;
          if (*embed_all)
            faces = analyzer.analyze(image);
          else
            faces.push_back(largest_face(analyzer, image, *embed_file));
          for (const auto& face : faces)
            std::cout << nlohmann::json{{"file", *embed_file},
                                        {"face", box_json(face.detection)},
                                        {"descriptor", face.descriptor}}
                             .dump()
                      << "\n";
          return faces.empty() ? 1 : 0;
        }
        if (compare->parsed()) {
          const AnalyzedFace a = largest_face(analyzer, analyzer.read((*pair)[0]), (*pair)[0]);
          const AnalyzedFace b = largest_face(analyzer, analyzer.read((*pair)[1]), (*pair)[1]);
          const double distance = descriptor_distance(a.descriptor, b.descriptor);
          const double likeness = likeness_score(distance);
          std::cout << nlohmann::json{{"a", (*pair)[0]},
                                      {"b", (*pair)[1]},
                                      {"distance", distance},
                                      {"likeness", likeness},
                                      {"verdict", likeness_label(likeness)}}
                           .dump()
                    << "\n";
          return 0;
        }
        if (crop->parsed()) {
          const Image image = analyzer.read(*crop_file);
          const AnalyzedFace face = largest_face(analyzer, image, *crop_file);
          PortraitCropOptions portrait;
          portrait.size = *crop_size;
          portrait.padding = *crop_padding;
          const PortraitCrop result = extract_portrait_crop(image, face.detection, portrait);
          write_png(*crop_out, result.image);
          std::cout << nlohmann::json{{"file", *crop_file},
                                      {"out", *crop_out},
                                      {"size", result.image.width},
                                      {"face", box_json(face.detection)},
                                      {"outside_fraction", result.outside_fraction}}
                           .dump()
                    << "\n";
          return 0;
        }
        std::cerr << command.help();
        return 2;
      };
    }};

}  // namespace
}  // namespace doppel::app

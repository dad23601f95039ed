// doppel template: the faces a template picture offers (with a mask preview), and template
// portraits (the subjects' faces put into the template) from the command line.
#include <CLI/CLI.hpp>

#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "app/command_registry.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/log.hpp"
#include "doppel/core/paths.hpp"
#include "doppel/core/random.hpp"
#include "doppel/face/face_aligner.hpp"
#include "doppel/face/face_finder.hpp"
#include "doppel/face/face_pose_map.hpp"
#include "doppel/services/template_shot_job.hpp"
#include "doppel/studio/template_picture.hpp"
#include "doppel/studio/template_portrait.hpp"

namespace doppel::app {
namespace {

struct TemplateOptions {
  std::string template_file;  // a .yaml template or a picture
  std::string model;
  bool tiny_demo = false;
  std::string dtype = "auto";
  std::string out = "template-portrait.png";
  std::string mask_out;  // faces: the mask preview
  int64_t seed = -1;
  std::vector<std::string> subjects;        // words per subject ("ohwx woman")
  std::vector<std::string> subject_loras;   // PATH[:WEIGHT] per subject, "none" for none
  std::vector<std::string> subject_photos;  // per subject, with --ip-adapter and/or fusion
  double fusion = -1;                       // 0-1 replaces the template's `fusion`
  std::string ip_adapter;
  std::string image_encoder;
  double ip_scale = 0.7;
  std::vector<int> assign;  // face number per subject
  std::string controlnet_dir;
  std::string styles_dir;
  std::string keep_dir;
};

LoraSelection parse_subject_lora(const std::string& spec) {
  LoraSelection lora{spec, 1.0};
  if (const auto colon = spec.rfind(':'); colon != std::string::npos && colon + 1 < spec.size()) {
    char* end = nullptr;
    const double weight = std::strtod(spec.c_str() + colon + 1, &end);
    if (end && *end == '\0') {
      lora.path = spec.substr(0, colon);
      lora.weight = weight;
    }
  }
  if (!std::filesystem::is_regular_file(lora.path))
    throw Error(ErrorCode::kNotFound, "--subject-lora " + lora.path.string() +
                                          " does not exist (a .safetensors LoRA of the person)");
  return lora;
}

// `fusing`: the template fuses each subject's photo into their face (its `fusion`).
std::vector<TemplateSubject> subjects_of(const TemplateOptions& options, bool fusing) {
  if (options.subjects.empty())
    throw Error(ErrorCode::kInvalidArgument,
                "give one --subject per face to replace, e.g. --subject \"ohwx woman\" (the "
                "trigger and class words of the person's LoRA)");
  if (options.subject_loras.size() > options.subjects.size() ||
      options.subject_photos.size() > options.subjects.size())
    throw Error(ErrorCode::kInvalidArgument,
                "--subject-lora and --subject-photo go with a --subject each, in the same order");
  if (!options.subject_photos.empty() && options.ip_adapter.empty() && !fusing)
    throw Error(ErrorCode::kInvalidArgument,
                "--subject-photo needs --ip-adapter (e.g. ip-adapter-plus-face_sd15.safetensors) "
                "or --fusion");
  if (fusing && options.subject_photos.size() != options.subjects.size())
    throw Error(ErrorCode::kInvalidArgument,
                "the template fuses each subject's photo into their face (fusion): give a "
                "--subject-photo for every --subject");
  std::optional<FaceDetector> detector;
  if (fusing) detector.emplace(default_landmark_model_path());
  std::vector<TemplateSubject> subjects;
  for (size_t i = 0; i < options.subjects.size(); ++i) {
    TemplateSubject subject;
    subject.phrase = options.subjects[i];
    if (i < options.subject_loras.size() && options.subject_loras[i] != "none")
      subject.loras.push_back(parse_subject_lora(options.subject_loras[i]));
    if (fusing) {
      const Image photo = read_image(options.subject_photos[i]);
      if (const auto identity = services::fusion_identity({photo}, *detector)) {
        subject.fusion = *identity;
      } else {
        throw Error(ErrorCode::kInvalidArgument,
                    "--subject-photo " + options.subject_photos[i] +
                        ": no face found; fusion needs a photo where the face is clearly visible");
      }
    }
    if (!options.ip_adapter.empty() && i < options.subject_photos.size() &&
        options.subject_photos[i] != "none") {
      ImagePromptSelection adapter;
      adapter.adapter = options.ip_adapter;
      adapter.encoder = options.image_encoder;
      adapter.image = read_image(options.subject_photos[i]);
      adapter.scale = options.ip_scale;
      subject.ip_adapters.push_back(std::move(adapter));
    }
    subjects.push_back(std::move(subject));
  }
  return subjects;
}

std::unique_ptr<GenerationSession> open_session(const TemplateOptions& options, bool required) {
  SessionOptions session;
  session.hash_cache = default_cache_dir() / "file_hashes.json";
  if (options.tiny_demo) {
    if (!options.model.empty())
      throw Error(ErrorCode::kInvalidArgument, "use either --model or --tiny-demo, not both");
  } else if (!options.model.empty()) {
    session.model = ModelRef::file(options.model);
  } else if (required) {
    throw Error(ErrorCode::kInvalidArgument,
                "--model is required: a .safetensors checkpoint or a diffusers folder (or "
                "--tiny-demo to try it without one)");
  } else {
    return nullptr;
  }
  session.dtype = options.dtype;
  session.preprocessors["face_pose"] = face_pose_preprocessor();
  session.face_crop = largest_face_crop();
  session.face_finder = make_face_finder();
  return std::make_unique<GenerationSession>(std::move(session));
}

// The template, its picture and its faces.
struct LoadedTemplate {
  PortraitTemplate settings;
  TemplatePicture picture;
  std::vector<TemplateFace> faces;
};

LoadedTemplate load_template(const TemplateOptions& options, GenerationSession* session) {
  LoadedTemplate loaded;
  loaded.settings = load_portrait_template(options.template_file);
  std::vector<StylePack> packs;
  if (loaded.settings.generate && loaded.settings.generate->prompt.empty())
    packs =
        load_style_packs(options.styles_dir.empty() ? default_styles_dir()
                                                    : std::filesystem::path(options.styles_dir));
  loaded.picture =
      template_picture(loaded.settings, session, packs,
                       options.keep_dir.empty() ? default_cache_dir() / "templates"
                                                : std::filesystem::path(options.keep_dir));
  FaceDetector detector(default_landmark_model_path());
  loaded.faces = find_template_faces(loaded.picture.image, detector, loaded.settings.mask);
  return loaded;
}

int run_faces(const TemplateOptions& options) {
  const auto session = open_session(options, false);
  const LoadedTemplate loaded = load_template(options, session.get());
  nlohmann::json faces = nlohmann::json::array();
  for (const TemplateFace& face : loaded.faces)
    faces.push_back({{"index", face.index},
                     {"box",
                      {{"left", face.box.left},
                       {"top", face.box.top},
                       {"width", face.box.width()},
                       {"height", face.box.height()}}}});
  std::vector<int> replaced = loaded.settings.faces;
  if (replaced.empty())
    for (const TemplateFace& face : loaded.faces) replaced.push_back(face.index);
  nlohmann::json report = {{"template", loaded.settings.id},
                           {"picture", loaded.picture.path.string()},
                           {"sha256", loaded.picture.sha256},
                           {"width", loaded.picture.image.width},
                           {"height", loaded.picture.image.height},
                           {"faces", faces},
                           {"replace", replaced}};
  if (!options.mask_out.empty()) {
    write_png(options.mask_out, template_mask_preview(loaded.picture.image, loaded.faces));
    report["mask_preview"] = options.mask_out;
  }
  std::cout << report.dump(2) << "\n";
  return 0;
}

int run_render(const TemplateOptions& options) {
  const auto session = open_session(options, true);
  const LoadedTemplate loaded = load_template(options, session.get());
  TemplatePortraitRequest request;
  request.settings = loaded.settings;
  request.picture = loaded.picture.image;
  request.picture_sha256 = loaded.picture.sha256;
  if (options.fusion >= 0) request.settings.fusion = options.fusion;
  request.subjects = subjects_of(options, request.settings.fusion.has_value());
  request.assignment = options.assign;
  request.seed = options.seed < 0 ? random_seed() : static_cast<uint64_t>(options.seed);
  request.controlnet_dir = options.controlnet_dir;
  const TemplatePortrait portrait =
      render_template_portrait(*session, request, loaded.faces, make_terminal_progress_bar());
  write_generated_png(options.out, portrait.image);
  std::cout << options.out << "\n";
  return 0;
}

void add_common(CLI::App& command, TemplateOptions& options) {
  command
      .add_option("template", options.template_file,
                  "A template: its .yaml file (docs/templates.md) or a picture")
      ->required();
  command.add_option("--model", options.model, "Checkpoint (.safetensors) or diffusers folder");
  command.add_flag("--tiny-demo", options.tiny_demo, "Use the tiny random-weight model built in");
  command.add_option("--dtype", options.dtype, "fp32 | bf16 | auto");
  command.add_option("--styles", options.styles_dir,
                     "Style packs, for a template drawn from its pack's prompt (default styles/)");
  command.add_option("--keep-dir", options.keep_dir,
                     "Where pictures drawn for templates are kept (default ~/.cache/doppel)");
}

CommandRegistration template_command{
    "template", "Template portraits: a person's face put into a chosen picture",
    [](CLI::App& command) -> std::function<int()> {
      auto options = std::make_shared<TemplateOptions>();
      command.require_subcommand(1);
      CLI::App* faces = command.add_subcommand(
          "faces", "The faces of a template (numbered from the left) as JSON, and a mask preview");
      add_common(*faces, *options);
      faces->add_option("--mask-out", options->mask_out,
                        "Write the picture dimmed outside the areas that will be repainted");
      CLI::App* render =
          command.add_subcommand("render", "Put the subjects' faces into the template");
      add_common(*render, *options);
      render->add_option("--subject", options->subjects,
                         "Words for a subject, e.g. \"ohwx woman\" (one per face, left to right)");
      render->add_option("--subject-lora", options->subject_loras,
                         "The subject's LoRA PATH[:WEIGHT], by position; 'none' for none");
      render->add_option("--subject-photo", options->subject_photos,
                         "A photo of the subject for --ip-adapter, by position");
      render->add_option("--ip-adapter", options->ip_adapter,
                         "IP-Adapter for --subject-photo (a face variant reads the face crop)");
      render->add_option("--image-encoder", options->image_encoder, "CLIP image encoder");
      render->add_option("--ip-scale", options->ip_scale, "IP-Adapter weight (default 0.7)");
      render
          ->add_option("--fusion", options->fusion,
                       "Fuse each --subject-photo into its face at this strength (0-1), then a "
                       "light face-detail pass; default: the template's 'fusion'")
          ->check(CLI::Range(0.0, 1.0));
      render
          ->add_option("--assign", options->assign,
                       "The face each subject goes into, e.g. --assign 1,0")
          ->delimiter(',');
      render->add_option("--seed", options->seed, "Seed (face k uses seed + k); random if unset");
      render->add_option("--controlnet-dir", options->controlnet_dir,
                         "Where the template's ControlNets are (default models/controlnet)");
      render->add_option("--out", options->out, "Output PNG");
      return [options, faces, render]() -> int {
        if (faces->parsed()) return run_faces(*options);
        if (render->parsed()) return run_render(*options);
        return 2;
      };
    }};

}  // namespace
}  // namespace doppel::app

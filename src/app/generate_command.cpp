// doppel generate: text-to-image / image-to-image from the command line.
#include <CLI/CLI.hpp>

#include <iostream>
#include <optional>
#include <regex>

#include "app/command_registry.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/image.hpp"
#include "doppel/core/log.hpp"
#include "doppel/core/paths.hpp"
#include "doppel/core/random.hpp"
#include "doppel/core/stage_timer.hpp"
#include "doppel/diffusion/generation_session.hpp"
#include "doppel/diffusion/noise_schedule.hpp"
#include "doppel/diffusion/sampler.hpp"
#include "doppel/face/face_aligner.hpp"
#include "doppel/face/face_analyzer.hpp"
#include "doppel/face/face_finder.hpp"
#include "doppel/face/face_fusion.hpp"
#include "doppel/face/face_pose_map.hpp"

namespace doppel::app {
namespace {

struct GenerateOptions {
  std::string model;
  bool tiny_demo = false;
  std::string tokenizer;
  std::string config;
  std::string init_image;
  std::string dtype = "auto";  // bf16 where the CPU computes it natively
  std::string out = "doppel.png";
  int64_t seed = -1;
  int64_t subseed = -1;            // A1111's variation seed (-1 = random)
  double subseed_strength = 0;     // 0 = no variation
  std::vector<std::string> loras;  // PATH[:WEIGHT]
  std::string lora_dir;            // where <lora:NAME:WEIGHT> tags look for NAME.safetensors
  std::string vae;                 // replaces the checkpoint's VAE
  std::string embeddings_dir;      // textual-inversion embeddings named by prompt words
  std::string hires;               // SCALE:STRENGTH[:STEPS]
  std::string hires_upscaler = "Latent";
  std::string mask;                       // inpaint mask image
  std::string outpaint;                   // LEFT,TOP,RIGHT,BOTTOM pixels
  std::string inpaint_fill = "original";  // A1111's "Masked content"
  InpaintOptions inpaint;
  bool size_given = false;                         // --width or --height on the command line
  std::vector<std::string> controls;               // PATH:IMAGE[:SCALE[:START:END]]
  std::vector<std::string> control_preprocessors;  // canny | face_pose | none, per --control
  std::string vae_tiling = "auto";                 // auto | on | off
  std::string taesd;                               // TAESD decoder for live previews
  std::string preview;                      // where the preview PNG goes (default: next to --out)
  int64_t preview_every = 10;               // A1111's "live preview every N sampling steps"
  std::vector<std::string> ip_adapters;     // IP-Adapter files
  std::vector<std::string> ip_images;       // the i-th adapter's picture
  std::vector<double> ip_scales;            // the i-th adapter's weight (default 1)
  std::vector<std::string> image_encoders;  // one for all adapters, or one each
  std::string timestep_spacing;             // leading | linspace | trailing
  double ngms = 0;                          // A1111's negative guidance minimum sigma
  bool ngms_all_steps = false;
  bool face_detail = false;         // ADetailer's pass after each image
  FaceDetailOptions face_details;   // its settings (any --face-detail-* turns it on)
  std::string face_detail_faces;    // largest | all | most_like
  std::string face_detail_like;     // most_like: a photo of the person
  std::string face_detail_control;  // a face ControlNet (face_pose preprocessor)
  std::string fuse_face;            // a photo whose face is fused into each image
  double fusion_strength = 1.0;
  GenerationRequest request;
};

// What --tiny-demo draws when no --prompt is given.
constexpr const char* kTinyDemoPrompt = "a portrait photo of a person, soft light";

// "--hires 2:0.6" or "2:0.6:15" -> a hires fix; the pipeline checks the ranges.
HiresFix parse_hires(const std::string& text, const std::string& upscaler) {
  static const std::regex form(R"(^([0-9]*\.?[0-9]+):([0-9]*\.?[0-9]+)(?::([0-9]+))?$)");
  std::smatch match;
  if (!std::regex_match(text, match, form))
    throw Error(ErrorCode::kInvalidArgument,
                "--hires takes SCALE:STRENGTH[:STEPS], e.g. --hires 2:0.6 (got '" + text + "')");
  HiresFix hires;
  hires.scale = std::stod(match[1]);
  hires.denoising_strength = std::stod(match[2]);
  if (match[3].matched) hires.steps = std::stoll(match[3]);
  hires.upscaler = upscaler;
  return hires;
}

// "--outpaint 0,0,128,0": pixels to add on the left, top, right and bottom.
OutpaintMargins parse_outpaint(const std::string& text) {
  static const std::regex form(R"(^([0-9]+),([0-9]+),([0-9]+),([0-9]+)$)");
  std::smatch match;
  if (!std::regex_match(text, match, form))
    throw Error(ErrorCode::kInvalidArgument,
                "--outpaint takes LEFT,TOP,RIGHT,BOTTOM in pixels, e.g. --outpaint 0,0,128,0 "
                "(got '" +
                    text + "')");
  auto value = [&](int i) {
    return static_cast<int>(std::min<int64_t>(std::stoll(match[i]), 1 << 20));
  };
  return {value(1), value(2), value(3), value(4)};
}

// --mask / --outpaint: the init image and mask of an inpaint; an outpaint also sets the size.
void prepare_inpaint(GenerateOptions& options) {
  GenerationRequest& request = options.request;
  if (options.mask.empty() && options.outpaint.empty()) return;
  if (!request.init_image)
    throw Error(ErrorCode::kInvalidArgument,
                std::string(options.mask.empty() ? "--outpaint" : "--mask") +
                    " needs --init-image, the picture to paint into");
  if (!options.mask.empty() && !options.outpaint.empty())
    throw Error(
        ErrorCode::kInvalidArgument,
        "use either --mask (repaint part of the image) or --outpaint (extend it), not both");
  InpaintOptions inpaint = options.inpaint;
  inpaint.fill = parse_inpaint_fill(options.inpaint_fill);
  if (!options.mask.empty()) {
    inpaint.mask = read_image(options.mask);
  } else {
    const OutpaintCanvas canvas =
        make_outpaint_canvas(*request.init_image, parse_outpaint(options.outpaint));
    request.init_image = canvas.image;
    request.width = canvas.image.width;
    request.height = canvas.image.height;
    inpaint.mask = mask_to_image(canvas.mask);
    log_info("outpainting to " + std::to_string(request.width) + "x" +
             std::to_string(request.height));
  }
  request.inpaint = inpaint;
}

// out.png for one image; out-<n>-<seed>.png for several; a folder gets <n>-<seed>.png.
std::filesystem::path output_path(const std::filesystem::path& out, size_t index, size_t total,
                                  uint64_t seed) {
  std::string suffix = std::to_string(index + 1) + "-" + std::to_string(seed) + ".png";
  if (std::filesystem::is_directory(out)) return out / suffix;
  if (total == 1) return out;
  std::filesystem::path path = out;
  return path.replace_filename(out.stem().string() + "-" + suffix);
}

// "PATH:WEIGHT" or "PATH" (weight 1), as A1111's <lora:NAME:WEIGHT>.
LoraSelection parse_lora_spec(const std::string& spec) {
  size_t colon = spec.rfind(':');
  if (colon != std::string::npos) {
    try {
      size_t used = 0;
      double weight = std::stod(spec.substr(colon + 1), &used);
      if (used == spec.size() - colon - 1) return {spec.substr(0, colon), weight};
    } catch (const std::exception&) {
    }
  }
  return {spec, 1.0};
}

struct ControlSpec {
  std::filesystem::path model;
  std::filesystem::path image;
  double scale = 1.0;
  double start = 0.0;
  double end = 1.0;
};

// "PATH:IMAGE", "PATH:IMAGE:SCALE" or "PATH:IMAGE:SCALE:START:END"; the pipeline checks ranges.
ControlSpec parse_control_spec(const std::string& text) {
  std::vector<std::string> parts;
  for (size_t start = 0;;) {
    const size_t colon = text.find(':', start);
    parts.push_back(text.substr(start, colon - start));
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  auto number = [](const std::string& part) -> std::optional<double> {
    try {
      size_t used = 0;
      const double value = std::stod(part, &used);
      if (used == part.size()) return value;
    } catch (const std::exception&) {
    }
    return std::nullopt;
  };
  ControlSpec spec;
  std::vector<double> numbers;
  while (parts.size() > 2 && numbers.size() < 3) {
    const auto value = number(parts.back());
    if (!value) break;
    numbers.insert(numbers.begin(), *value);
    parts.pop_back();
  }
  if (parts.size() != 2 || parts[0].empty() || parts[1].empty() || numbers.size() == 2)
    throw Error(ErrorCode::kInvalidArgument,
                "--control takes CONTROLNET:IMAGE[:WEIGHT[:START:END]], e.g. --control "
                "canny.safetensors:edges.png:0.8:0:1 (got '" +
                    text + "')");
  spec.model = parts[0];
  spec.image = parts[1];
  if (!numbers.empty()) spec.scale = numbers[0];
  if (numbers.size() == 3) {
    spec.start = numbers[1];
    spec.end = numbers[2];
  }
  return spec;
}

// Every --control, with its preprocessor, as the session takes them.
std::vector<ControlSelection> control_selections(const GenerateOptions& options) {
  if (options.control_preprocessors.size() > options.controls.size())
    throw Error(ErrorCode::kInvalidArgument,
                "more --control-preprocessor options than --control options; the i-th "
                "preprocessor applies to the i-th --control");
  std::vector<ControlSelection> selections;
  for (size_t i = 0; i < options.controls.size(); ++i) {
    const ControlSpec spec = parse_control_spec(options.controls[i]);
    ControlSelection control;
    control.model = spec.model;
    control.image = read_image(spec.image);
    control.preprocessor =
        i < options.control_preprocessors.size() ? options.control_preprocessors[i] : "none";
    control.scale = spec.scale;
    control.guidance_start = spec.start;
    control.guidance_end = spec.end;
    selections.push_back(std::move(control));
  }
  return selections;
}

// Every --ip-adapter with its --ip-image, --ip-scale and --image-encoder (by position).
std::vector<ImagePromptSelection> image_prompt_selections(const GenerateOptions& options) {
  const size_t count = options.ip_adapters.size();
  if (options.ip_images.size() != count)
    throw Error(ErrorCode::kInvalidArgument,
                "give one --ip-image per --ip-adapter (the picture of the person or the style), "
                "in the same order; got " +
                    std::to_string(count) + " adapters and " +
                    std::to_string(options.ip_images.size()) + " images");
  if (options.ip_scales.size() > count)
    throw Error(ErrorCode::kInvalidArgument, "more --ip-scale options than --ip-adapter options");
  if (options.image_encoders.size() > 1 && options.image_encoders.size() != count)
    throw Error(ErrorCode::kInvalidArgument,
                "give one --image-encoder for all adapters, or one per --ip-adapter");
  std::vector<ImagePromptSelection> selections;
  for (size_t i = 0; i < count; ++i) {
    ImagePromptSelection selection;
    selection.adapter = options.ip_adapters[i];
    selection.image = read_image(options.ip_images[i]);
    if (i < options.ip_scales.size()) selection.scale = options.ip_scales[i];
    if (!options.image_encoders.empty())
      selection.encoder = options.image_encoders[options.image_encoders.size() == 1 ? 0 : i];
    selections.push_back(std::move(selection));
  }
  return selections;
}

// --face-detail and its settings: the request's face_detail when any of them is given.
std::optional<FaceDetailOptions> face_detail_options(const GenerateOptions& options,
                                                     bool settings_given) {
  if (!options.face_detail && !settings_given) return std::nullopt;
  FaceDetailOptions detail = options.face_details;
  if (!options.face_detail_faces.empty())
    detail.faces = parse_face_choice(options.face_detail_faces);
  if (detail.faces == FaceChoice::kMostLike) {
    if (options.face_detail_like.empty())
      throw Error(ErrorCode::kInvalidArgument,
                  "--face-detail-faces most_like needs --face-detail-like PHOTO, a photo of the "
                  "person whose face to repaint");
    FaceAnalyzer analyzer;
    const std::vector<AnalyzedFace> faces =
        analyzer.analyze(analyzer.read(options.face_detail_like));
    if (faces.empty())
      throw Error(ErrorCode::kInvalidArgument,
                  "--face-detail-like " + options.face_detail_like +
                      ": no face found; use a photo where the face is clearly visible");
    detail.reference = faces.front().descriptor;
  }
  if (!options.face_detail_control.empty())
    detail.control = FaceDetailControl{options.face_detail_control};
  check_face_detail_options(detail);
  return detail;
}

// --taesd: where the live preview goes (rewritten atomically, so a viewer can keep it open).
std::filesystem::path preview_path(const GenerateOptions& options) {
  if (!options.preview.empty()) return options.preview;
  const std::filesystem::path out = options.out;
  return std::filesystem::is_directory(out)
             ? out / "preview.png"
             : out.parent_path() / (out.stem().string() + "-preview.png");
}

SessionOptions session_options(const GenerateOptions& options) {
  SessionOptions session;
  session.hash_cache = default_cache_dir() / "file_hashes.json";
  if (options.tiny_demo) {
    if (!options.model.empty())
      throw Error(ErrorCode::kInvalidArgument, "use either --model or --tiny-demo, not both");
  } else {
    if (options.model.empty())
      throw Error(ErrorCode::kInvalidArgument,
                  "--model is required: a .safetensors checkpoint or a diffusers folder "
                  "(or --tiny-demo to try doppel without one)");
    session.model = ModelRef::file(options.model);
    if (!options.config.empty()) session.config = options.config;
  }
  if (!options.vae.empty()) session.vae = options.vae;
  if (!options.tokenizer.empty()) session.tokenizer = options.tokenizer;
  session.lora_dir = options.lora_dir;
  if (!options.embeddings_dir.empty() && !std::filesystem::is_directory(options.embeddings_dir))
    throw Error(ErrorCode::kNotFound,
                "--embeddings " + options.embeddings_dir + " is not a folder of embedding files");
  session.embeddings_dir = options.embeddings_dir;
  if (!options.taesd.empty()) session.taesd = options.taesd;
  session.dtype = options.dtype;
  session.preprocessors["face_pose"] = face_pose_preprocessor();
  session.face_crop = largest_face_crop();
  session.face_finder = make_face_finder();
  session.face_fuser = make_face_fuser();
  return session;
}

int run_generate(GenerateOptions& options, bool face_detail_settings_given) {
  SessionRequest job;
  GenerationRequest& request = options.request;
  if (request.prompt.empty()) {
    if (!options.tiny_demo)
      throw Error(ErrorCode::kInvalidArgument,
                  "--prompt is required: say what to draw, e.g. --prompt \"studio portrait of "
                  "a woman, soft light\"");
    request.prompt = kTinyDemoPrompt;
  }
  request.seed = options.seed < 0 ? random_seed() : static_cast<uint64_t>(options.seed);
  if (options.subseed_strength != 0)
    request.variation =
        VariationSeed{options.subseed < 0 ? random_seed() : static_cast<uint64_t>(options.subseed),
                      options.subseed_strength};
  if (!options.init_image.empty()) request.init_image = read_image(options.init_image);
  if (!options.hires.empty()) request.hires = parse_hires(options.hires, options.hires_upscaler);
  if (options.vae_tiling != "auto") request.tiled_vae = options.vae_tiling == "on";
  for (const auto& spec : options.loras) job.loras.push_back(parse_lora_spec(spec));
  job.controls = control_selections(options);
  job.ip_adapters = image_prompt_selections(options);
  job.face_detail = face_detail_options(options, face_detail_settings_given);
  if (!options.fuse_face.empty())
    job.face_fusion = FaceFusionSelection{read_image(options.fuse_face), options.fusion_strength};
  if (!options.timestep_spacing.empty())
    request.timestep_spacing = parse_timestep_spacing(options.timestep_spacing);
  request.negative_guidance_cutoff.min_sigma = options.ngms;
  request.negative_guidance_cutoff.all_steps = options.ngms_all_steps;
  if (options.tiny_demo)
    std::cerr << "doppel: generating with a tiny demo model built in code (random weights: "
                 "expect abstract noise).\n"
                 "        For real portraits point it at a checkpoint: doppel generate --model "
                 "v1-5-pruned-emaonly.safetensors --prompt \"...\"\n";
  // Every stage is timed from its progress events, as A1111 prints "Time taken".
  StageTimer timer("loading");
  GenerationSession session(session_options(options));
  if (!options.size_given && options.outpaint.empty()) {
    request.width = request.height = session.native_size();
    if (session.native_size() != 512)
      log_info(session.model_info().name + ": generating at " + std::to_string(request.width) +
               "x" + std::to_string(request.height) + " (--width/--height to change)");
  }
  prepare_inpaint(options);
  if (!options.taesd.empty()) {
    if (options.preview_every < 1)
      throw Error(ErrorCode::kInvalidArgument, "--preview-every must be at least 1");
    const std::filesystem::path target = preview_path(options);
    job.preview_every = options.preview_every;
    job.preview = [target](const Image& image, int64_t, int64_t) {
      try {
        write_png(target, image);
      } catch (const std::exception& error) {
        log_warning(std::string("live preview not written: ") + error.what());
      }
    };
    log_info("live preview: " + target.string());
  }
  job.generation = request;
  const ProgressCallback boundary = timer.wrap({});  // stage changes the bar does not draw
  auto mark = [&boundary](const char* stage) {
    ProgressEvent event;
    event.stage = stage;
    boundary(event);
  };
  mark("prompt");
  auto images = session.generate(job, timer.wrap(make_terminal_progress_bar()));
  mark("writing");
  for (size_t i = 0; i < images.size(); ++i) {
    auto path = output_path(options.out, i, images.size(), images[i].seed);
    write_generated_png(path, images[i]);
    std::cout << path.string() << "\n";
  }
  timer.stop();
  log_info("time taken: " + timer.summary());
  return 0;
}

CommandRegistration generate_command{
    "generate", "Generate images from a prompt (txt2img, img2img)", [](CLI::App& command) {
      auto options = std::make_shared<GenerateOptions>();
      GenerationRequest& r = options->request;
      command.add_option("--model", options->model,
                         "Checkpoint (.safetensors) or diffusers folder");
      command.add_flag("--tiny-demo", options->tiny_demo,
                       "Use a tiny random-weight model built in code (no download)");
      command.add_option("--tokenizer", options->tokenizer,
                         "bpe_simple_vocab_16e6.txt(.gz) or a tokenizer folder");
      command.add_option("--config", options->config,
                         "diffusers folder or .yaml/.json with the model's configs");
      command.add_option(
          "--prompt", r.prompt,
          "What to draw (--tiny-demo has a default: \"" + std::string(kTinyDemoPrompt) + "\")");
      command.add_option("--negative", r.negative_prompt, "What to avoid");
      CLI::Option* width = command.add_option(
          "--width", r.width,
          "Width in pixels, a multiple of 8 (default: the model's size: 512, SDXL 1024, "
          "--tiny-demo 64)");
      CLI::Option* height = command.add_option(
          "--height", r.height,
          "Height in pixels, a multiple of 8 (default: the model's size: 512, SDXL 1024, "
          "--tiny-demo 64)");
      command.add_option("--steps", r.steps, "Sampling steps")->capture_default_str();
      command.add_option("--cfg", r.guidance_scale, "Guidance (CFG) scale")->capture_default_str();
      std::string sampler_help = "Sampler:";
      for (const auto& info : sampler_registry()) sampler_help += " " + info.name;
      command.add_option("--sampler", r.sampler, sampler_help)->capture_default_str();
      command.add_flag("--karras", r.karras, "Karras noise schedule (euler, heun, lms, dpmpp_2m)");
      command.add_option("--eta", r.eta, "DDIM eta; the tcd sampler's gamma (0-1, e.g. 0.3)");
      command.add_option("--seed", options->seed, "Seed (-1 = random)")->capture_default_str();
      command
          .add_option("--subseed", options->subseed,
                      "Variation seed (A1111's; -1 = random), used with --subseed-strength")
          ->capture_default_str();
      command
          .add_option("--subseed-strength", options->subseed_strength,
                      "How far towards --subseed's noise, 0-1 (a batch keeps --seed and "
                      "counts the variation seed up)")
          ->capture_default_str();
      command.add_option("--batch", r.batch_size, "Images per batch")->capture_default_str();
      command.add_option("--count", r.batch_count, "Number of batches")->capture_default_str();
      command.add_option("--lora", options->loras,
                         "LoRA file to merge, PATH[:WEIGHT] (repeatable)");
      command.add_option("--lora-dir", options->lora_dir,
                         "Folder where <lora:NAME:WEIGHT> prompt tags find NAME.safetensors "
                         "(default: models/lora)");
      command.add_option("--vae", options->vae,
                         "VAE file or diffusers vae/ folder replacing the checkpoint's");
      command.add_option("--embeddings", options->embeddings_dir,
                         "Folder of textual-inversion embeddings (.safetensors, .pt, .bin) that "
                         "prompt words name by file stem (default: models/embeddings)");
      command.add_option("--init-image", options->init_image, "Start image (img2img)");
      command.add_option("--strength", r.strength, "img2img denoising strength")
          ->capture_default_str();
      command.add_option("--mask", options->mask,
                         "Inpaint: mask image for --init-image, white = repaint, black = keep");
      command.add_option("--mask-blur", options->inpaint.mask_blur, "Inpaint mask blur, pixels")
          ->capture_default_str();
      command.add_flag("--only-masked", options->inpaint.only_masked,
                       "Inpaint only the masked area at full resolution, then paste it back");
      command
          .add_option("--only-masked-padding", options->inpaint.only_masked_padding,
                      "Pixels around the mask included with --only-masked")
          ->capture_default_str();
      command
          .add_option("--inpaint-fill", options->inpaint_fill,
                      "What the masked area starts from: fill, original, \"latent noise\" or "
                      "\"latent nothing\" (A1111's Masked content; 0-3)")
          ->capture_default_str();
      command.add_option("--outpaint", options->outpaint,
                         "Extend --init-image by LEFT,TOP,RIGHT,BOTTOM pixels and paint the new "
                         "area (try --strength 0.8 to 1)");
      command.add_option("--clip-skip", r.clip_skip, "CLIP skip (A1111)")->capture_default_str();
      command.add_option("--hires", options->hires,
                         "Hires fix SCALE:STRENGTH[:STEPS]: sample at --width x --height, "
                         "upscale by SCALE, denoise again (e.g. 2:0.6)");
      command
          .add_option("--hires-upscaler", options->hires_upscaler,
                      "Latent, Latent (nearest), Latent (bicubic), Lanczos or Nearest")
          ->capture_default_str();
      command.add_option("--control", options->controls,
                         "ControlNet CONTROLNET:IMAGE[:WEIGHT[:START:END]] (repeatable): a "
                         "ControlNet file or diffusers folder, its control image, conditioning "
                         "weight (1) and the fraction of steps it applies to (0:1)");
      command.add_option("--control-preprocessor", options->control_preprocessors,
                         "canny, face_pose or none (repeatable; the i-th applies to the i-th "
                         "--control; default none)");
      command
          .add_option("--vae-tiling", options->vae_tiling,
                      "Decode/encode in tiles: auto (above 1024x1024 pixels), on or off")
          ->check(CLI::IsMember({"auto", "on", "off"}))
          ->capture_default_str();
      command.add_option("--taesd", options->taesd,
                         "TAESD decoder (taesd_decoder.safetensors) for a live preview image");
      command.add_option("--preview", options->preview,
                         "Live preview PNG (default: <out>-preview.png)");
      command.add_option("--preview-every", options->preview_every, "Preview every N steps")
          ->capture_default_str();
      command.add_option("--ip-adapter", options->ip_adapters,
                         "IP-Adapter file (h94 .safetensors or .bin; repeatable): steers the "
                         "image by a picture, e.g. ip-adapter-plus-face_sd15 for a person");
      command.add_option("--ip-image", options->ip_images,
                         "The picture of the i-th --ip-adapter (for face adapters, a photo of the "
                         "person: doppel crops the face)");
      command.add_option("--ip-scale", options->ip_scales,
                         "Weight of the i-th --ip-adapter (default 1; 0.5-0.8 keeps more of the "
                         "prompt)");
      command.add_option("--image-encoder", options->image_encoders,
                         "CLIP image encoder folder or file (default: beside the adapter, or "
                         "models/image_encoder)");
      command
          .add_option("--timestep-spacing", options->timestep_spacing,
                      "leading, linspace or trailing (diffusers' names; Turbo, Lightning and "
                      "Hyper-SD need trailing); default: the model's")
          ->check(CLI::IsMember({"leading", "linspace", "trailing"}));
      command.add_option("--ngms", options->ngms,
                         "A1111's negative guidance minimum sigma: skip the negative prompt "
                         "below this noise level (e.g. 0.5; 0 = off)");
      command.add_flag("--ngms-all-steps", options->ngms_all_steps,
                       "With --ngms: skip it at every step below the sigma, not every other");
      command.add_option("--tome", r.token_merging_ratio,
                         "Token merging ratio (A1111's ToMe, 0-0.9; 0.3 is faster, changes the "
                         "image a little)");
      command.add_flag("--face-detail", options->face_detail,
                       "After each image, repaint its face at full resolution (ADetailer): the "
                       "same prompt, LoRAs and IP-Adapters, pasted back feathered");
      FaceDetailOptions& detail = options->face_details;
      std::vector<CLI::Option*> detail_settings = {
          command
              .add_option("--face-detail-strength", detail.strength,
                          "Denoising strength of the face pass (0.3-0.45 keeps the face, higher "
                          "redraws it)")
              ->capture_default_str(),
          command
              .add_option("--face-detail-padding", detail.padding,
                          "Pixels of context around the face mask")
              ->capture_default_str(),
          command
              .add_option("--face-detail-blur", detail.mask_blur,
                          "Feathering of the pasted face, pixels")
              ->capture_default_str(),
          command
              .add_option("--face-detail-faces", options->face_detail_faces,
                          "largest (default), all, or most_like (with --face-detail-like)")
              ->check(CLI::IsMember({"largest", "all", "most_like"})),
          command.add_option("--face-detail-like", options->face_detail_like,
                             "A photo of the person whose face most_like repaints"),
          command.add_option("--face-detail-steps", detail.steps,
                             "Steps of the face pass (default: --steps)"),
          command.add_option("--face-detail-prompt", detail.prompt,
                             "Prompt of the face pass (default: --prompt)"),
          command.add_option("--face-detail-control", options->face_detail_control,
                             "A face ControlNet for the face pass, steered by the face's "
                             "landmarks (face_pose)")};
      command.add_option("--fuse-face", options->fuse_face,
                         "Fuse this photo's face into each image (landmark alignment, colour "
                         "match, seamless cloning), then harmonise it with a light face pass");
      command
          .add_option("--fusion-strength", options->fusion_strength,
                      "How much of the --fuse-face face goes in, 0-1")
          ->capture_default_str();
      command.add_option("--dtype", options->dtype, "Compute dtype: fp32, bf16 or auto")
          ->capture_default_str();
      command.add_option("--out", options->out, "Output PNG (or folder)")->capture_default_str();
      return [options, width, height, detail_settings] {
        options->size_given = width->count() + height->count() > 0;
        size_t given = 0;
        for (const CLI::Option* setting : detail_settings) given += setting->count();
        return run_generate(*options, given > 0);
      };
    }};

}  // namespace
}  // namespace doppel::app

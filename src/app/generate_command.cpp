// doppel generate: text-to-image / image-to-image from the command line.
#include <CLI/CLI.hpp>

#include <iostream>
#include <optional>
#include <regex>

#include "app/command_registry.hpp"
#include "doppel/checkpoint/control_net.hpp"
#include "doppel/checkpoint/lora.hpp"
#include "doppel/checkpoint/model_hash.hpp"
#include "doppel/checkpoint/stable_diffusion.hpp"
#include "doppel/checkpoint/taesd.hpp"
#include "doppel/checkpoint/tiny_model.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/image.hpp"
#include "doppel/core/log.hpp"
#include "doppel/core/paths.hpp"
#include "doppel/core/random.hpp"
#include "doppel/core/runtime.hpp"
#include "doppel/diffusion/control_preprocessors.hpp"
#include "doppel/diffusion/prompt_parser.hpp"
#include "doppel/diffusion/stable_diffusion_pipeline.hpp"
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
  std::vector<std::string> loras;  // PATH[:WEIGHT]
  std::string lora_dir;            // where <lora:NAME:WEIGHT> tags look for NAME.safetensors
  std::string vae;                 // replaces the checkpoint's VAE
  std::string embeddings_dir;      // textual-inversion embeddings named by prompt words
  std::string hires;               // SCALE:STRENGTH[:STEPS]
  std::string hires_upscaler = "Latent";
  std::string mask;      // inpaint mask image
  std::string outpaint;  // LEFT,TOP,RIGHT,BOTTOM pixels
  InpaintOptions inpaint;
  bool size_given = false;                         // --width or --height on the command line
  std::vector<std::string> controls;               // PATH:IMAGE[:SCALE[:START:END]]
  std::vector<std::string> control_preprocessors;  // canny | face_pose | none, per --control
  std::string vae_tiling = "auto";                 // auto | on | off
  std::string taesd;                               // TAESD decoder for live previews
  std::string preview;         // where the preview PNG goes (default: next to --out)
  int64_t preview_every = 10;  // A1111's "live preview every N sampling steps"
  GenerationRequest request;
};

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

// --taesd: the prediction of every N-th step, decoded by TAESD, rewritten (atomically) to one
// PNG that an image viewer can keep open. A failed preview write never stops the generation.
void set_live_preview(const GenerateOptions& options, StableDiffusionPipeline& pipeline) {
  if (options.preview_every < 1)
    throw Error(ErrorCode::kInvalidArgument, "--preview-every must be at least 1");
  std::filesystem::path target = options.preview;
  if (target.empty()) {
    const std::filesystem::path out = options.out;
    target = std::filesystem::is_directory(out)
                 ? out / "preview.png"
                 : out.parent_path() / (out.stem().string() + "-preview.png");
  }
  LivePreview preview;
  preview.decoder = load_taesd_decoder(options.taesd);
  preview.every_steps = options.preview_every;
  preview.show = [target](const Image& image, int64_t, int64_t) {
    try {
      write_png(target, image);
    } catch (const std::exception& error) {
      log_warning(std::string("live preview not written: ") + error.what());
    }
  };
  pipeline.set_live_preview(std::move(preview));
  log_info("live preview: " + target.string());
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
std::pair<std::filesystem::path, double> parse_lora_spec(const std::string& spec) {
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

// Merges every --lora into the model; the handle keeps the originals.
AppliedLoras merge_loras(StableDiffusionCheckpoint& model, const std::vector<std::string>& specs,
                         GenerationRequest& request) {
  std::vector<std::pair<LoraFile, double>> loras;
  for (const auto& spec : specs) {
    auto [path, weight] = parse_lora_spec(spec);
    loras.emplace_back(load_lora(path), weight);
    request.loras.push_back({path.stem().string(), weight, sha256_file_hex(path).substr(0, 12)});
  }
  AppliedLoras applied = apply_loras(model, loras);
  for (const auto& report : applied.reports()) {
    log_info("LoRA " + report.lora + ": " + std::to_string(report.applied.size()) +
             " weights changed");
    for (const auto& name : report.unmatched)
      log_warning("LoRA " + report.lora + ": '" + name + "' matches no layer of this model");
  }
  return applied;
}

// A1111's <lora:NAME:WEIGHT> prompt tags: each NAME is looked up in the LoRA
// folder and merged like --lora; all extra-network tags leave the prompt text.
void take_lora_tags(GenerateOptions& options) {
  GenerationRequest& request = options.request;
  ParsedPrompt parsed = parse_prompt(request.prompt, std::max<int64_t>(request.steps, 1));
  std::filesystem::path folder = options.lora_dir.empty() ? default_models_dir() / "lora"
                                                          : std::filesystem::path(options.lora_dir);
  for (const auto& tag : parsed.loras) {
    std::filesystem::path path = folder / (tag.name + ".safetensors");
    if (!std::filesystem::exists(path))
      throw Error(ErrorCode::kNotFound,
                  "the prompt asks for <lora:" + tag.name + ">, but " + path.string() +
                      " does not exist; put the file there or use --lora-dir");
    if (tag.unet_weight != tag.text_encoder_weight)
      log_warning("<lora:" + tag.name +
                  ">: separate text-encoder and UNet weights are merged "
                  "with the text-encoder weight");
    options.loras.push_back(path.string() + ":" + std::to_string(tag.text_encoder_weight));
  }
  for (const auto& tag : parsed.other_network_tags)
    log_warning("ignoring the prompt tag " + tag + " (only LoRA tags are supported)");
  // The same pattern A1111 uses to take extra-network tags out of the text.
  static const std::regex extra_network_tag(R"(<\w+:[^>]+>)");
  request.prompt = std::regex_replace(request.prompt, extra_network_tag, "");
}

// A1111 records a separate VAE by file name and the first 10 hex digits of its sha256
// (for a diffusers vae/ folder: the folder name and its weights file).
VaeReference describe_vae(const std::filesystem::path& path) {
  VaeReference vae;
  vae.name = path.filename().string();
  if (vae.name.empty()) vae.name = path.parent_path().filename().string();
  std::filesystem::path weights = path;
  if (std::filesystem::is_directory(path)) {
    weights = path / "diffusion_pytorch_model.safetensors";
    if (!std::filesystem::exists(weights)) return vae;
  }
  vae.short_hash = a1111_short_hash(sha256_file_hex(weights));
  return vae;
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

// The control image after its preprocessor (A1111 "module"): canny, face_pose or none.
Image preprocess_control_image(const Image& image, const std::string& preprocessor) {
  if (preprocessor == "none") return image;
  if (preprocessor == "canny") return canny_edge_map(image);
  if (preprocessor == "face_pose") {
    FaceDetector detector(default_landmark_model_path());
    return face_pose_map(image, detector);
  }
  throw Error(ErrorCode::kInvalidArgument, "unknown --control-preprocessor '" + preprocessor +
                                               "'; use canny, face_pose or none");
}

// Loads every --control for the pipeline's model and adds it to the request.
void add_controls(const GenerateOptions& options, const StableDiffusionPipeline& pipeline,
                  GenerationRequest& request) {
  if (options.control_preprocessors.size() > options.controls.size())
    throw Error(ErrorCode::kInvalidArgument,
                "more --control-preprocessor options than --control options; the i-th "
                "preprocessor applies to the i-th --control");
  for (size_t i = 0; i < options.controls.size(); ++i) {
    const ControlSpec spec = parse_control_spec(options.controls[i]);
    ControlInput control;
    control.preprocessor =
        i < options.control_preprocessors.size() ? options.control_preprocessors[i] : "none";
    control.image = preprocess_control_image(read_image(spec.image), control.preprocessor);
    ControlNetLoadOptions load;
    load.path = spec.model;
    load.base = pipeline.model().unet->config();
    load.dtype = pipeline.compute_dtype();
    load.device = pipeline.device();
    log_info("loading ControlNet " + spec.model.string());
    LoadedControlNet loaded = load_control_net(load);
    control.model = loaded.model;
    control.model_name = loaded.name + " [" + loaded.short_hash + "]";
    control.scale = spec.scale;
    control.guidance_start = spec.start;
    control.guidance_end = spec.end;
    request.controls.push_back(std::move(control));
  }
}

int run_generate(GenerateOptions& options) {
  GenerationRequest& request = options.request;
  take_lora_tags(options);
  request.seed = options.seed < 0 ? random_seed() : static_cast<uint64_t>(options.seed);
  if (!options.init_image.empty()) request.init_image = read_image(options.init_image);
  if (!options.hires.empty()) request.hires = parse_hires(options.hires, options.hires_upscaler);
  prepare_inpaint(options);
  if (options.vae_tiling != "auto") request.tiled_vae = options.vae_tiling == "on";

  StableDiffusionCheckpoint model;
  std::string model_name;
  if (options.tiny_demo) {
    model = make_tiny_stable_diffusion();
    model_name = "doppel-tiny-demo";
    std::cerr << "doppel: generating with a tiny demo model built in code (random weights: "
                 "expect abstract noise).\n"
                 "        For real portraits point it at a checkpoint: doppel generate --model "
                 "v1-5-pruned-emaonly.safetensors --prompt \"...\"\n";
    if (request.width == 512 && request.height == 512) request.width = request.height = 64;
    if (!options.vae.empty()) log_warning("--vae is ignored with --tiny-demo");
  } else {
    if (options.model.empty())
      throw Error(ErrorCode::kInvalidArgument,
                  "--model is required: a .safetensors checkpoint or a diffusers folder "
                  "(or --tiny-demo to try doppel without one)");
    ModelLoadOptions load;
    load.path = options.model;
    if (!options.config.empty()) load.config_path = options.config;
    if (!options.vae.empty()) load.vae_path = options.vae;
    load.dtype = parse_compute_dtype(options.dtype);
    log_info("loading " + options.model);
    model = load_stable_diffusion(load);
    for (const auto& name : model.report.unused) log_debug("unused tensor: " + name);
    model_name = std::filesystem::path(options.model).filename().replace_extension().string();
    if (model.family == ModelFamily::kSdxl && !options.size_given && options.outpaint.empty()) {
      request.width = request.height = 1024;  // SDXL's native size; 512 draws poorly
      log_info("SDXL model: generating at 1024x1024 (--width/--height to change)");
    }
    if (!options.vae.empty()) request.vae = describe_vae(options.vae);
  }
  AppliedLoras applied_loras = merge_loras(model, options.loras, request);
  ClipTokenizer tokenizer = options.tokenizer.empty()
                                ? ClipTokenizer::load_default()
                                : (std::filesystem::is_directory(options.tokenizer)
                                       ? ClipTokenizer::from_folder(options.tokenizer)
                                       : ClipTokenizer::from_bpe_file(options.tokenizer));
  StableDiffusionPipeline pipeline(std::move(model), tokenizer, model_name);
  const std::filesystem::path embeddings = options.embeddings_dir.empty()
                                               ? default_models_dir() / "embeddings"
                                               : std::filesystem::path(options.embeddings_dir);
  if (!options.embeddings_dir.empty() && !std::filesystem::is_directory(embeddings))
    throw Error(ErrorCode::kNotFound,
                "--embeddings " + embeddings.string() + " is not a folder of embedding files");
  pipeline.set_embeddings(TextualInversionLibrary::scan(embeddings));
  add_controls(options, pipeline, request);
  if (!options.taesd.empty()) set_live_preview(options, pipeline);
  auto images = pipeline.generate(request, make_terminal_progress_bar());
  for (size_t i = 0; i < images.size(); ++i) {
    auto path = output_path(options.out, i, images.size(), images[i].seed);
    write_png(path, images[i].image, {{"parameters", images[i].parameters.to_text()}});
    std::cout << path.string() << "\n";
  }
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
      command.add_option("--prompt", r.prompt, "What to draw")->required();
      command.add_option("--negative", r.negative_prompt, "What to avoid");
      CLI::Option* width =
          command.add_option("--width", r.width, "Width in pixels (multiple of 8; SDXL: 1024)")
              ->capture_default_str();
      CLI::Option* height =
          command.add_option("--height", r.height, "Height in pixels (multiple of 8; SDXL: 1024)")
              ->capture_default_str();
      command.add_option("--steps", r.steps, "Sampling steps")->capture_default_str();
      command.add_option("--cfg", r.guidance_scale, "Guidance (CFG) scale")->capture_default_str();
      std::string sampler_help = "Sampler:";
      for (const auto& info : sampler_registry()) sampler_help += " " + info.name;
      command.add_option("--sampler", r.sampler, sampler_help)->capture_default_str();
      command.add_flag("--karras", r.karras, "Karras noise schedule (euler, heun, lms, dpmpp_2m)");
      command.add_option("--eta", r.eta, "DDIM eta");
      command.add_option("--seed", options->seed, "Seed (-1 = random)")->capture_default_str();
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
      command.add_option("--dtype", options->dtype, "Compute dtype: fp32, bf16 or auto")
          ->capture_default_str();
      command.add_option("--out", options->out, "Output PNG (or folder)")->capture_default_str();
      return [options, width, height] {
        options->size_given = width->count() + height->count() > 0;
        return run_generate(*options);
      };
    }};

}  // namespace
}  // namespace doppel::app

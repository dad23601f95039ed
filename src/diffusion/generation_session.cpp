#include "doppel/diffusion/generation_session.hpp"

#include <algorithm>
#include <list>

#include "doppel/checkpoint/clip_vision.hpp"
#include "doppel/checkpoint/control_net.hpp"
#include "doppel/checkpoint/file_hash_cache.hpp"
#include "doppel/checkpoint/ip_adapter.hpp"
#include "doppel/checkpoint/lora.hpp"
#include "doppel/checkpoint/model_hash.hpp"
#include "doppel/checkpoint/taesd.hpp"
#include "doppel/checkpoint/tiny_model.hpp"
#include "doppel/core/atomic_file.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/log.hpp"
#include "doppel/core/paths.hpp"
#include "doppel/core/runtime.hpp"
#include "doppel/diffusion/control_preprocessors.hpp"
#include "doppel/diffusion/prompt_parser.hpp"

namespace doppel {

ModelRef ModelRef::built_in_tiny(uint64_t seed) {
  ModelRef ref;
  ref.seed_ = seed;
  return ref;
}

ModelRef ModelRef::file(std::filesystem::path path) {
  if (path.empty())
    throw Error(ErrorCode::kInvalidArgument,
                "no model path given: name a .safetensors checkpoint or a diffusers folder");
  ModelRef ref;
  ref.built_in_ = false;
  ref.path_ = std::move(path);
  return ref;
}

std::string ModelRef::display_name() const {
  if (built_in_) return kTinyModelName;
  std::filesystem::path path = path_;
  if (!path.has_filename()) path = path.parent_path();  // "folder/"
  return std::filesystem::is_directory(path) ? path.filename().string() : path.stem().string();
}

std::string ModelRef::key() const {
  return built_in_ ? "built-in:tiny:" + std::to_string(seed_) : "file:" + path_.string();
}

namespace {

// A1111 records a separate VAE by file name and the first 10 hex digits of its sha256
// (for a diffusers vae/ folder: the folder name and its weights file).
VaeReference describe_vae(const std::filesystem::path& path, FileHashCache& hashes) {
  VaeReference vae;
  vae.name = path.filename().string();
  if (vae.name.empty()) vae.name = path.parent_path().filename().string();
  std::filesystem::path weights = path;
  if (std::filesystem::is_directory(path)) {
    weights = path / "diffusion_pytorch_model.safetensors";
    if (!std::filesystem::exists(weights)) return vae;
  }
  vae.short_hash = a1111_short_hash(hashes.sha256(weights));
  return vae;
}

int64_t parameter_bytes(const StableDiffusionCheckpoint& model) {
  int64_t bytes = 0;
  auto add = [&](const torch::nn::Module& module) {
    for (const auto& parameter : module.parameters()) bytes += parameter.nbytes();
  };
  if (model.unet) add(*model.unet);
  if (model.vae) add(*model.vae);
  for (const auto& slot : model.text_encoders)
    if (slot.encoder) add(*slot.encoder);
  return bytes;
}

// One loaded model with what is attached to it.
struct LoadedModel {
  std::string key;  // model + VAE + config + dtype
  std::unique_ptr<StableDiffusionPipeline> pipeline;
  LoadedModelInfo info;
  // The LoRAs merged now, as (path, weight) in order, and the handle that restores the base.
  std::vector<std::pair<std::string, double>> lora_key;
  std::vector<LoraReference> lora_references;
  AppliedLoras applied;
  std::map<std::string, LoadedControlNet> control_nets;  // by path
  std::map<std::string, LoadedIpAdapter> ip_adapters;    // by path
  std::map<std::string, LoadedClipVision> encoders;      // by path
};

}  // namespace

struct GenerationSession::State {
  SessionOptions options;
  at::ScalarType dtype = at::kFloat;
  std::optional<ClipTokenizer> tokenizer;
  TinyAutoencoderDecoder taesd{nullptr};
  std::list<LoadedModel> models;          // most recently used first; front() is the current model
  std::unique_ptr<FileHashCache> hashes;  // model, VAE and LoRA files' sha256

  LoadedModel& current() { return models.front(); }
  const ClipTokenizer& clip_tokenizer();
  std::string cache_key(const ModelRef& model, const std::optional<std::filesystem::path>& vae);
  void select(const ModelRef& model, const std::optional<std::filesystem::path>& vae);
  LoadedModel load(const ModelRef& model, const std::optional<std::filesystem::path>& vae);
  void evict_over_budget();
  std::vector<LoraSelection> wanted_loras(const SessionRequest& request);
  void merge_loras(LoadedModel& loaded, const std::vector<LoraSelection>& wanted);
  ControlInput control_input(LoadedModel& loaded, const ControlSelection& selection);
  IpAdapterInput ip_adapter_input(LoadedModel& loaded, const ImagePromptSelection& selection);
  // The request as the pipeline takes it: LoRAs merged, ControlNets (unless `with_controls` is
  // false) and IP-Adapters loaded.
  GenerationRequest prepare(LoadedModel& loaded, const SessionRequest& in, bool with_controls);
  // Fusion and the face-detail pass on one generated image, as the request asks.
  GeneratedImage finish_faces(LoadedModel& loaded, const GenerationRequest& prepared,
                              const SessionRequest& in, GeneratedImage image,
                              const ProgressCallback& progress);
  GeneratedImage detail_pass(LoadedModel& loaded, const GenerationRequest& prepared,
                             const FaceDetailOptions& options, GeneratedImage image,
                             const ProgressCallback& progress, FaceDetailReport* report);
};

const ClipTokenizer& GenerationSession::State::clip_tokenizer() {
  if (!tokenizer) {
    if (!options.tokenizer) {
      tokenizer = ClipTokenizer::load_default();
    } else if (std::filesystem::is_directory(*options.tokenizer)) {
      tokenizer = ClipTokenizer::from_folder(*options.tokenizer);
    } else {
      tokenizer = ClipTokenizer::from_bpe_file(*options.tokenizer);
    }
  }
  return *tokenizer;
}

std::string GenerationSession::State::cache_key(const ModelRef& model,
                                                const std::optional<std::filesystem::path>& vae) {
  std::string key = model.key();
  if (vae) key += "|vae:" + vae->string();
  if (options.config) key += "|config:" + options.config->string();
  return key;
}

LoadedModel GenerationSession::State::load(const ModelRef& model,
                                           const std::optional<std::filesystem::path>& vae) {
  LoadedModel loaded;
  loaded.key = cache_key(model, vae);
  StableDiffusionCheckpoint checkpoint;
  if (model.is_built_in()) {
    // The tiny model is made in fp32: it exists to try the flow, not to be fast.
    checkpoint = make_tiny_stable_diffusion(model.seed());
    if (vae) {
      checkpoint.vae = load_vae_file(*vae, checkpoint.family, nullptr, at::kFloat, at::kCPU);
      loaded.info.vae = describe_vae(*vae, *hashes);
    }
  } else {
    ModelLoadOptions load;
    load.path = model.path();
    load.config_path = options.config;
    load.vae_path = vae;
    load.dtype = dtype;
    load.hash_cache = hashes.get();
    log_info("loading " + model.path().string());
    checkpoint = load_stable_diffusion(load);
    for (const auto& name : checkpoint.report.unused) log_debug("unused tensor: " + name);
    if (vae) loaded.info.vae = describe_vae(*vae, *hashes);
  }
  loaded.info.name = model.display_name();
  loaded.info.sha256 = checkpoint.sha256;
  loaded.info.hash = checkpoint.model_hash;
  loaded.info.family = checkpoint.family;
  loaded.info.inpainting = checkpoint.inpainting;
  loaded.info.parameter_bytes = parameter_bytes(checkpoint);
  loaded.pipeline = std::make_unique<StableDiffusionPipeline>(std::move(checkpoint),
                                                              clip_tokenizer(), loaded.info.name);
  const std::filesystem::path embeddings =
      options.embeddings_dir.empty() ? default_models_dir() / "embeddings" : options.embeddings_dir;
  loaded.pipeline->set_embeddings(TextualInversionLibrary::scan(embeddings));
  return loaded;
}

void GenerationSession::State::select(const ModelRef& model,
                                      const std::optional<std::filesystem::path>& vae) {
  const std::string key = cache_key(model, vae);
  auto found = std::find_if(models.begin(), models.end(),
                            [&](const LoadedModel& loaded) { return loaded.key == key; });
  if (found != models.end()) {
    models.splice(models.begin(), models, found);
    return;
  }
  // Without a budget, let go of the other weights before loading (two models may not fit).
  if (options.model_cache_bytes <= 0) models.clear();
  models.push_front(load(model, vae));
  evict_over_budget();
}

void GenerationSession::State::evict_over_budget() {
  auto total = [&] {
    int64_t bytes = 0;
    for (const LoadedModel& loaded : models) bytes += loaded.info.parameter_bytes;
    return bytes;
  };
  while (models.size() > 1 && total() > options.model_cache_bytes) models.pop_back();
}

// The request's LoRA files plus its prompt's <lora:NAME:WEIGHT> tags, found in the LoRA folder.
std::vector<LoraSelection> GenerationSession::State::wanted_loras(const SessionRequest& request) {
  std::vector<LoraSelection> wanted = request.loras;
  const ParsedPrompt parsed = parse_prompt(request.generation.prompt,
                                           std::clamp<int64_t>(request.generation.steps, 1, 10000));
  const std::filesystem::path folder =
      options.lora_dir.empty() ? default_models_dir() / "lora" : options.lora_dir;
  for (const LoraTag& tag : parsed.loras) {
    const std::filesystem::path path = folder / (tag.name + ".safetensors");
    if (!std::filesystem::is_regular_file(path))
      throw Error(ErrorCode::kNotFound, "the prompt asks for <lora:" + tag.name + ">, but " +
                                            path.string() +
                                            " does not exist; put the LoRA file there");
    if (tag.unet_weight != tag.text_encoder_weight)
      log_warning("<lora:" + tag.name +
                  ">: separate text-encoder and UNet weights are merged with the text-encoder "
                  "weight");
    wanted.push_back({path, tag.text_encoder_weight});
  }
  for (const std::string& tag : parsed.other_network_tags)
    log_warning("ignoring the prompt tag " + tag + " (only LoRA tags are supported)");
  return wanted;
}

// Merges `wanted` into the model, restoring the base first unless the same set is merged
// already (a shoot's shots share their LoRAs, so merging once serves them all).
void GenerationSession::State::merge_loras(LoadedModel& loaded,
                                           const std::vector<LoraSelection>& wanted) {
  std::vector<std::pair<std::string, double>> key;
  for (const LoraSelection& lora : wanted) key.emplace_back(lora.path.string(), lora.weight);
  if (key == loaded.lora_key && (loaded.applied.active() || key.empty())) return;
  loaded.applied.remove();
  loaded.lora_key.clear();
  loaded.lora_references.clear();
  if (wanted.empty()) return;
  std::vector<std::pair<LoraFile, double>> files;
  std::vector<LoraReference> references;
  for (const LoraSelection& lora : wanted) {
    files.emplace_back(load_lora(lora.path), lora.weight);
    references.push_back(
        {lora.path.stem().string(), lora.weight, hashes->sha256(lora.path).substr(0, 12)});
  }
  loaded.applied = apply_loras(loaded.pipeline->model(), files);
  for (const auto& report : loaded.applied.reports()) {
    log_info("LoRA " + report.lora + ": " + std::to_string(report.applied.size()) +
             " weights changed");
    for (const auto& name : report.unmatched)
      log_warning("LoRA " + report.lora + ": '" + name + "' matches no layer of this model");
  }
  loaded.lora_key = std::move(key);
  loaded.lora_references = std::move(references);
}

ControlInput GenerationSession::State::control_input(LoadedModel& loaded,
                                                     const ControlSelection& selection) {
  ControlInput control;
  control.preprocessor = selection.preprocessor.empty() ? "none" : selection.preprocessor;
  if (control.preprocessor == "none") {
    control.image = selection.image;
  } else if (control.preprocessor == "canny") {
    control.image = canny_edge_map(selection.image);
  } else if (auto found = options.preprocessors.find(control.preprocessor);
             found != options.preprocessors.end()) {
    control.image = found->second(selection.image);
  } else {
    std::string known = "canny";
    for (const auto& [name, function] : options.preprocessors) known += ", " + name;
    known += " or none";
    throw Error(ErrorCode::kInvalidArgument, "unknown ControlNet preprocessor '" +
                                                 control.preprocessor + "'; use one of " + known);
  }
  const std::string path = selection.model.string();
  auto found = loaded.control_nets.find(path);
  if (found == loaded.control_nets.end()) {
    ControlNetLoadOptions load;
    load.path = selection.model;
    load.base = loaded.pipeline->model().unet->config();
    load.dtype = loaded.pipeline->compute_dtype();
    load.device = loaded.pipeline->device();
    log_info("loading ControlNet " + path);
    found = loaded.control_nets.emplace(path, load_control_net(load)).first;
  }
  control.model = found->second.model;
  control.model_name = found->second.name + " [" + found->second.short_hash + "]";
  control.scale = selection.scale;
  control.guidance_start = selection.guidance_start;
  control.guidance_end = selection.guidance_end;
  return control;
}

IpAdapterInput GenerationSession::State::ip_adapter_input(LoadedModel& loaded,
                                                          const ImagePromptSelection& selection) {
  const at::ScalarType dtype = loaded.pipeline->compute_dtype();
  const at::Device device = loaded.pipeline->device();
  const std::string adapter_key = selection.adapter.string();
  auto adapter = loaded.ip_adapters.find(adapter_key);
  if (adapter == loaded.ip_adapters.end()) {
    log_info("loading IP-Adapter " + adapter_key);
    adapter = loaded.ip_adapters
                  .emplace(adapter_key,
                           load_ip_adapter(selection.adapter,
                                           loaded.pipeline->model().unet->config(), dtype, device))
                  .first;
  }
  const std::filesystem::path encoder_path =
      !selection.encoder.empty()
          ? selection.encoder
          : find_image_encoder(selection.adapter, adapter->second.model->config(),
                               default_models_dir());
  auto encoder = loaded.encoders.find(encoder_path.string());
  if (encoder == loaded.encoders.end()) {
    log_info("loading image encoder " + encoder_path.string());
    encoder =
        loaded.encoders
            .emplace(encoder_path.string(), load_clip_vision_encoder(encoder_path, dtype, device))
            .first;
  }
  IpAdapterInput input;
  input.adapter = adapter->second.model;
  input.encoder = encoder->second.model;
  const bool face_variant = adapter->second.name.find("face") != std::string::npos;
  input.image =
      face_variant && options.face_crop ? options.face_crop(selection.image) : selection.image;
  input.scale = selection.scale;
  input.guidance_start = selection.guidance_start;
  input.guidance_end = selection.guidance_end;
  input.block_scales = selection.block_scales;
  input.model_name = adapter->second.name + " [" + adapter->second.short_hash + "]";
  return input;
}

GenerationSession::GenerationSession(SessionOptions options) : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.options = std::move(options);
  if (s.options.threads > 0) configure_threads(s.options.threads);
  s.dtype = parse_compute_dtype(s.options.dtype);
  s.hashes = std::make_unique<FileHashCache>(s.options.hash_cache);
  if (s.options.taesd) s.taesd = load_taesd_decoder(*s.options.taesd);
  s.select(s.options.model, s.options.vae);
}

GenerationSession::~GenerationSession() = default;

void GenerationSession::select_model(const ModelRef& model,
                                     const std::optional<std::filesystem::path>& vae) {
  state_->select(model, vae);
}

GenerationRequest GenerationSession::State::prepare(LoadedModel& loaded, const SessionRequest& in,
                                                    bool with_controls) {
  GenerationRequest request = in.generation;
  merge_loras(loaded, wanted_loras(in));
  request.loras = loaded.lora_references;
  request.vae = loaded.info.vae;
  request.controls.clear();
  if (with_controls)
    for (const ControlSelection& selection : in.controls)
      request.controls.push_back(control_input(loaded, selection));
  request.ip_adapters.clear();
  for (const ImagePromptSelection& selection : in.ip_adapters)
    request.ip_adapters.push_back(ip_adapter_input(loaded, selection));
  return request;
}

GeneratedImage GenerationSession::State::detail_pass(
    LoadedModel& loaded, const GenerationRequest& prepared, const FaceDetailOptions& detail,
    GeneratedImage image, const ProgressCallback& progress, FaceDetailReport* report) {
  check_face_detail_options(detail);
  if (!options.face_finder)
    throw Error(ErrorCode::kInvalidArgument,
                "the face-detail pass needs a face finder in the session's options (the face "
                "layer's, see doppel/face/face_finder.hpp)");
  const std::vector<DetectedFace> found =
      options.face_finder.find(image.image, detail.faces == FaceChoice::kMostLike);
  const std::vector<DetectedFace> chosen = choose_faces(found, detail);
  if (report) *report = {static_cast<int>(found.size()), {}};

  // One inpaint per face, "only masked", seeded with the image's seed (as ADetailer does).
  GenerationRequest pass = prepared;
  if (!detail.prompt.empty()) pass.prompt = detail.prompt;
  if (!detail.negative_prompt.empty()) pass.negative_prompt = detail.negative_prompt;
  if (detail.inpaint_width > 0) {
    pass.width = detail.inpaint_width;
    pass.height = detail.inpaint_height;
  }
  if (detail.steps > 0) pass.steps = detail.steps;
  pass.strength = detail.strength;
  // A low strength over few steps would leave no step to denoise (steps * strength < 1): the
  // pass takes as many as one step needs.
  while (static_cast<int64_t>(static_cast<double>(pass.steps) * pass.strength) < 1) ++pass.steps;
  pass.seed = image.seed;
  pass.batch_size = pass.batch_count = 1;
  pass.hires.reset();
  pass.controls.clear();
  pass.further_init_images.clear();  // the pass paints into this image only
  pass.variation.reset();
  int repainted = 0;
  for (const DetectedFace& face : chosen) {
    InpaintOptions inpaint;
    inpaint.mask = face_mask(face, image.image.width, image.image.height, detail.dilate);
    inpaint.mask_blur = detail.mask_blur;
    inpaint.only_masked = true;
    inpaint.only_masked_padding = detail.padding;
    if (std::all_of(inpaint.mask.rgb.begin(), inpaint.mask.rgb.end(),
                    [](uint8_t value) { return value == 0; }))
      continue;  // eroded away: nothing of this face is left to repaint
    const InpaintPlan plan = plan_inpaint(image.image, inpaint, static_cast<int>(pass.width),
                                          static_cast<int>(pass.height));
    if (detail.control) {
      ControlSelection control;
      control.model = detail.control->model;
      control.image = plan.image;  // the face's crop at the inpaint size
      control.preprocessor = detail.control->preprocessor;
      control.scale = detail.control->scale;
      control.guidance_start = detail.control->guidance_start;
      control.guidance_end = detail.control->guidance_end;
      pass.controls = {control_input(loaded, control)};
    }
    pass.init_image = image.image;
    pass.inpaint = std::move(inpaint);
    image.image = loaded.pipeline->generate(pass, progress).front().image;
    if (report) report->repainted.push_back({face.box, *plan.region, pass.inpaint->mask});
    ++repainted;
  }
  record_face_detail(image.parameters, detail, options.face_finder.name, repainted);
  return image;
}

GeneratedImage GenerationSession::State::finish_faces(LoadedModel& loaded,
                                                      const GenerationRequest& prepared,
                                                      const SessionRequest& in,
                                                      GeneratedImage image,
                                                      const ProgressCallback& progress) {
  bool fused = false;
  if (const auto& fusion = in.face_fusion) {
    if (!options.face_fuser)
      throw Error(ErrorCode::kInvalidArgument,
                  "face fusion needs a face fuser in the session's options (the face layer's, "
                  "see doppel/face/face_fusion.hpp)");
    if (!(fusion->strength >= 0 && fusion->strength <= 1))
      throw Error(ErrorCode::kInvalidArgument, "the fusion strength must be between 0 and 1 (got " +
                                                   format_number(fusion->strength) + ")");
    if (std::optional<Image> result =
            options.face_fuser(image.image, fusion->identity, fusion->strength)) {
      image.image = std::move(*result);
      fused = true;
    }
    image.parameters.set("Face fusion strength", format_number(fusion->strength));
    if (!fused) image.parameters.set("Face fusion", "no face found");
  }
  if (in.face_detail) return detail_pass(loaded, prepared, *in.face_detail, image, progress, {});
  if (fused) {
    // The cloned face is harmonised with the picture by a light pass of its own.
    FaceDetailOptions harmonise;
    harmonise.strength = kFusionDetailStrength;
    return detail_pass(loaded, prepared, harmonise, image, progress, {});
  }
  return image;
}

std::vector<GeneratedImage> GenerationSession::generate(const SessionRequest& in,
                                                        const ProgressCallback& progress) {
  State& s = *state_;
  LoadedModel& loaded = s.current();
  if (in.face_detail) check_face_detail_options(*in.face_detail);
  const GenerationRequest request = s.prepare(loaded, in, true);
  LivePreview preview;
  if (in.preview) {
    if (in.preview_method == PreviewMethod::kTaesd && !s.taesd)
      throw Error(ErrorCode::kInvalidArgument,
                  "TAESD previews need a TAESD decoder (taesd_decoder.safetensors); name one in "
                  "the session's options, or ask for the cheap approximation");
    if (in.preview_every < 1)
      throw Error(ErrorCode::kInvalidArgument, "previews must come every 1 or more steps");
    // An empty decoder makes the pipeline use the cheap approximation.
    if (in.preview_method != PreviewMethod::kApproxCheap) preview.decoder = s.taesd;
    preview.every_steps = in.preview_every;
    preview.show = in.preview;
  }
  loaded.pipeline->set_live_preview(std::move(preview));
  std::vector<GeneratedImage> images = loaded.pipeline->generate(request, progress);
  if (in.face_fusion || in.face_detail) {
    loaded.pipeline->set_live_preview({});  // previews show the main generation only
    std::vector<GeneratedImage> finished;
    for (GeneratedImage& image : images) {
      try {
        finished.push_back(s.finish_faces(loaded, request, in, std::move(image), progress));
      } catch (const SkipCurrentImage&) {  // skipped while its faces were being finished
      }
    }
    images = std::move(finished);
  }
  return images;
}

GeneratedImage GenerationSession::detail_faces(const GeneratedImage& image,
                                               const SessionRequest& request,
                                               const ProgressCallback& progress,
                                               FaceDetailReport* report) {
  if (!request.face_detail)
    throw Error(ErrorCode::kInvalidArgument,
                "detail_faces: the request has no face_detail options; set them (the defaults "
                "are ADetailer's)");
  if (image.image.width <= 0 || image.image.height <= 0 ||
      image.image.rgb.size() != size_t(image.image.width) * image.image.height * 3)
    throw Error(ErrorCode::kInvalidArgument, "detail_faces: the image is empty or damaged");
  State& s = *state_;
  LoadedModel& loaded = s.current();
  check_face_detail_options(*request.face_detail);
  const GenerationRequest prepared = s.prepare(loaded, request, false);
  loaded.pipeline->set_live_preview({});
  return s.detail_pass(loaded, prepared, *request.face_detail, image, progress, report);
}

const LoadedModelInfo& GenerationSession::model_info() const {
  return state_->current().info;
}

int64_t GenerationSession::native_size() const {
  const LoadedModel& loaded = state_->models.front();
  if (loaded.key.rfind("built-in:", 0) == 0) return 64;
  return loaded.info.family == ModelFamily::kSdxl ? 1024 : 512;
}

const StableDiffusionCheckpoint& GenerationSession::model() const {
  return state_->models.front().pipeline->model();
}

at::ScalarType GenerationSession::compute_dtype() const {
  return state_->models.front().pipeline->compute_dtype();
}

std::string encode_generated_png(const GeneratedImage& image) {
  return encode_png(image.image, {{"parameters", image.parameters.to_text()}});
}

void write_generated_png(const std::filesystem::path& path, const GeneratedImage& image) {
  write_file_atomically(path, encode_generated_png(image));
}

}  // namespace doppel

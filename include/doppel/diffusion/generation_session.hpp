// The engine's one entry point: a GenerationSession owns a loaded model and everything attached
// to it (VAE, LoRAs, embeddings, ControlNets, TAESD previews) and turns a SessionRequest into
// images. The CLI, the studio's workers and the compatible APIs all fill in the same request;
// none of them assembles a generation by hand.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "doppel/core/image.hpp"
#include "doppel/core/progress.hpp"
#include "doppel/diffusion/face_detail.hpp"
#include "doppel/diffusion/stable_diffusion_pipeline.hpp"

namespace doppel {

// Which model to load: the tiny random-weight model built in code, or a checkpoint on disk
// (a CompVis .safetensors file or a diffusers folder).
class ModelRef {
 public:
  static ModelRef built_in_tiny(uint64_t seed = 0);
  static ModelRef file(std::filesystem::path path);

  bool is_built_in() const { return built_in_; }
  const std::filesystem::path& path() const { return path_; }  // empty for the built-in model
  uint64_t seed() const { return seed_; }  // of the built-in model's random weights
  // A1111's "Model:" name: the file's stem or the folder's name; "doppel-tiny-demo" built in.
  std::string display_name() const;
  // Identifies the model in caches and messages.
  std::string key() const;
  bool operator==(const ModelRef& other) const = default;

 private:
  bool built_in_ = true;
  uint64_t seed_ = 0;
  std::filesystem::path path_;
};

// The name the built-in tiny model goes by in metadata.
inline constexpr const char* kTinyModelName = "doppel-tiny-demo";

// A LoRA merged for one request, by file.
struct LoraSelection {
  std::filesystem::path path;  // .safetensors (kohya, LyCORIS, diffusers/PEFT naming)
  double weight = 1.0;
};

// A ControlNet for one request: its file, the picture it steers by, and A1111's settings.
struct ControlSelection {
  std::filesystem::path model;        // lllyasviel/A1111 .safetensors or a diffusers folder
  Image image;                        // a photo, or an already made control map ("none")
  std::string preprocessor = "none";  // canny, face_pose (when the caller provides it), none
  double scale = 1.0;
  double guidance_start = 0.0;
  double guidance_end = 1.0;
};

// An IP-Adapter for one request (A1111's ControlNet extension calls it a unit): the picture of
// the person or the style, steering every cross-attention layer.
struct ImagePromptSelection {
  std::filesystem::path adapter;  // h94 .safetensors or .bin (base, plus, plus-face, full-face)
  // The CLIP image encoder; empty: found beside the adapter as h94 lays them out, else in
  // models/image_encoder.
  std::filesystem::path encoder;
  Image image;  // face variants get the session's face crop of it (SessionOptions::face_crop)
  double scale = 1.0;
  double guidance_start = 0.0;
  double guidance_end = 1.0;
  std::map<std::string, double> block_scales;  // per-block multipliers (see IpAdapterInput)
};

// Face fusion for one request: the subject's best photo's face blended into each portrait
// (landmark alignment, colour transfer, seamless cloning), then harmonised by a light
// face-detail pass (the request's face_detail, else kFusionDetailStrength).
struct FaceFusionSelection {
  Image identity;         // a photo of the subject with one clear face
  double strength = 1.0;  // 0 keeps the portrait's face, 1 takes the subject's whole inner face
};
// The denoising strength of the face-detail pass after a fusion when the request sets none.
inline constexpr double kFusionDetailStrength = 0.2;

// Blends `identity`'s face into `portrait` at `strength` (see doppel/face/face_fusion.hpp);
// nullopt when the portrait has no face. Throws kInvalidArgument when `identity` has none.
using FaceFuser = std::function<std::optional<Image>(const Image& portrait, const Image& identity,
                                                     double strength)>;

// Turns a photo into a control map (A1111's ControlNet "modules").
using ControlPreprocessor = std::function<Image(const Image&)>;

// How live previews are drawn (A1111's "Live preview method").
enum class PreviewMethod {
  kAuto,         // TAESD when the session has a decoder, else Approx cheap
  kTaesd,        // the TAESD decoder (SessionOptions::taesd), full size; refused without one
  kApproxCheap,  // A1111's linear latent -> RGB map (latent_preview.hpp): latent size, no weights
};

struct SessionOptions {
  ModelRef model = ModelRef::built_in_tiny();
  // What the weights cannot tell (diffusers folder or LDM .yaml); default as load_stable_diffusion.
  std::optional<std::filesystem::path> config;
  std::optional<std::filesystem::path> vae;  // replaces the checkpoint's VAE ("SD VAE")
  // Where <lora:NAME:WEIGHT> prompt tags find NAME.safetensors; empty: models/lora.
  std::filesystem::path lora_dir;
  // Textual-inversion embeddings that prompt words name; empty: models/embeddings.
  std::filesystem::path embeddings_dir;
  std::optional<std::filesystem::path> taesd;  // TAESD decoder for live previews
  // A JSON file keeping the model, VAE and LoRA files' sha256 between runs (A1111's
  // cache.json); empty: they are remembered while the session lives.
  std::filesystem::path hash_cache;
  std::optional<std::filesystem::path> tokenizer;  // default: the model's own, else models/
  std::string dtype = "auto";  // fp32 | bf16 | auto (bf16 where the CPU computes it natively)
  int threads = 0;             // > 0: intra-op threads for the whole process
  // Loaded models kept for later requests (least recently used goes first); the current model
  // always stays. 0 keeps only the current one, as two real models may not fit in memory.
  int64_t model_cache_bytes = 0;
  // Preprocessors beyond "none" and "canny" (e.g. "face_pose", from the face layer).
  std::map<std::string, ControlPreprocessor> preprocessors;
  // The aligned face of a photo, for IP-Adapter face variants (file names with "face"); unset:
  // the photo is used as given.
  std::function<Image(const Image&)> face_crop;
  // The faces of an image, for the face-detail pass (doppel/face/face_finder.hpp); unset: a
  // request with face_detail is refused.
  FaceFinder face_finder;
  // Face fusion (doppel/face/face_fusion.hpp); unset: a request with face_fusion is refused.
  FaceFuser face_fuser;
};

// What a request adds to the session's model for its images.
struct SessionRequest {
  // Prompt, sizes, sampler, img2img / inpainting / outpainting, hires fix and the rest. Its
  // `loras`, `vae` and `controls` are filled in by the session from the fields below.
  GenerationRequest generation;
  // LoRAs besides the prompt's <lora:NAME:WEIGHT> tags (which the session resolves itself).
  std::vector<LoraSelection> loras;
  std::vector<ControlSelection> controls;
  std::vector<ImagePromptSelection> ip_adapters;
  // After each image is made: its face fused from a photo of the subject (first), then the
  // face-detail pass (ADetailer) with the same LoRAs and IP-Adapters; not the request's
  // ControlNets (they steer the whole picture), only FaceDetailOptions::control.
  std::optional<FaceFusionSelection> face_fusion;
  std::optional<FaceDetailOptions> face_detail;
  // Live previews every `preview_every` model calls (and at the last), by `preview_method`.
  std::function<void(const Image& preview, int64_t call, int64_t calls)> preview;
  int64_t preview_every = 10;
  PreviewMethod preview_method = PreviewMethod::kAuto;
};

// What the session has loaded, for metadata and reports.
struct LoadedModelInfo {
  std::string name;    // A1111's "Model:"
  std::string sha256;  // of the weights file ("" for the built-in model)
  std::string hash;    // A1111's short "Model hash"
  ModelFamily family = ModelFamily::kSd1;
  bool inpainting = false;
  std::optional<VaeReference> vae;
  int64_t parameter_bytes = 0;
};

class GenerationSession {
 public:
  // Loads the model (throws what load_stable_diffusion throws) and the TAESD decoder.
  explicit GenerationSession(SessionOptions options);
  ~GenerationSession();
  GenerationSession(const GenerationSession&) = delete;
  GenerationSession& operator=(const GenerationSession&) = delete;

  // Switches to another model (and VAE); models still in the cache are not loaded again.
  void select_model(const ModelRef& model,
                    const std::optional<std::filesystem::path>& vae = std::nullopt);

  // Resolves the request's LoRAs (files and prompt tags), ControlNets and embeddings, merges
  // the LoRAs into the model for this request only, and generates every image. Throws
  // doppel::Error naming what is wrong (a missing LoRA, a bad ControlNet, a bad request).
  std::vector<GeneratedImage> generate(const SessionRequest& request,
                                       const ProgressCallback& progress = {});

  // The face-detail pass alone on any image (the studio's "fix the face" on a gallery image,
  // A1111's restore_faces): `request.face_detail` (required) says how; its prompt, LoRAs,
  // IP-Adapters, sampler, CFG and width x height (the inpaint size) are used, the seed is
  // `image.seed`. The result keeps `image.parameters` plus ADetailer's keys; with no face found
  // the pixels are unchanged and the metadata says "Face detail faces: 0".
  GeneratedImage detail_faces(const GeneratedImage& image, const SessionRequest& request,
                              const ProgressCallback& progress = {},
                              FaceDetailReport* report = nullptr);

  const LoadedModelInfo& model_info() const;
  // The loaded model's native image size (SDXL 1024, others 512; the built-in model 64).
  int64_t native_size() const;
  // The current model. Its weights keep the last request's LoRAs until a request asks for
  // others (the base is restored first), so the shots of a shoot merge their LoRAs once.
  const StableDiffusionCheckpoint& model() const;
  at::ScalarType compute_dtype() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The PNG of a generated image with its A1111 "parameters" text: the one place every caller
// turns a generation into a file.
std::string encode_generated_png(const GeneratedImage& image);
// The same written atomically to `path`.
void write_generated_png(const std::filesystem::path& path, const GeneratedImage& image);

}  // namespace doppel

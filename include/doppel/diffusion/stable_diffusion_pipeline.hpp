// Text-to-image, image-to-image and inpainting with a loaded Stable Diffusion 1.x/2.x/XL model:
// prompt conditioning, classifier-free guidance around the UNet, a sampler from
// the registry, VAE encode/decode, and AUTOMATIC1111 metadata for every image.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "doppel/checkpoint/stable_diffusion.hpp"
#include "doppel/checkpoint/textual_inversion.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/generation_parameters.hpp"
#include "doppel/core/image.hpp"
#include "doppel/core/progress.hpp"
#include "doppel/core/random.hpp"
#include "doppel/diffusion/clip_tokenizer.hpp"
#include "doppel/diffusion/control_guidance.hpp"
#include "doppel/diffusion/image_prompt_guidance.hpp"
#include "doppel/diffusion/inpainting.hpp"
#include "doppel/diffusion/prompt_conditioning.hpp"
#include "doppel/diffusion/sampler.hpp"
#include "doppel/models/tiny_autoencoder.hpp"

namespace doppel {

// A LoRA merged into the model for a generation, as its metadata records it.
struct LoraReference {
  std::string name;  // file stem, as in <lora:NAME:WEIGHT>
  double multiplier = 1.0;
  std::string short_hash;  // first 12 hex digits of the file's sha256 (A1111 "Lora hashes")
};

// A VAE file that replaced the checkpoint's (ModelLoadOptions::vae_path), for the metadata.
struct VaeReference {
  std::string name;        // file name with extension, as A1111's "VAE"
  std::string short_hash;  // first 10 hex digits of the file's sha256 ("VAE hash")
};

// AUTOMATIC1111's "hires fix": sample at the request's size, upscale, then denoise again at the
// larger size, so a big image keeps the composition the model draws well at its native size.
struct HiresFix {
  double scale = 2.0;               // final size = size * scale, down to a multiple of 8; 1-4
  double denoising_strength = 0.7;  // of the second pass, in (0, 1]
  int64_t steps = 0;                // second-pass steps; 0 = the request's steps (A1111)
  // "Latent" (bilinear), "Latent (nearest)", "Latent (bicubic)": resize the latents;
  // "Lanczos", "Nearest": decode, resize the image, encode again. A1111's names.
  std::string upscaler = "Latent";
  // A1111's hr_sampler_name / hr_prompt / hr_negative_prompt: the second pass's own sampler
  // (doppel's name; with its own Karras flag) and prompts; unset: the first pass's.
  std::optional<std::string> sampler{};
  bool karras = false;  // with `sampler` only
  std::optional<std::string> prompt{};
  std::optional<std::string> negative_prompt{};
};

// A1111's variation seed: the starting noise is the seed's noise turned towards the noise of
// `seed` by `strength` (spherical interpolation; 0 = the seed's image, 1 = the variation
// seed's starting noise). As A1111: every image of the run then keeps the request's seed
// and image i uses variation seed + i, so a batch is variations of one picture.
struct VariationSeed {
  uint64_t seed = 0;
  double strength = 0.0;  // 0-1
};

struct GenerationRequest {
  std::string prompt;
  std::string negative_prompt;
  int64_t width = 512;  // multiples of 8
  int64_t height = 512;
  int64_t steps = 20;
  double guidance_scale = 7.0;  // <= 1 skips the unconditional pass
  // A1111's NGMS: below this sigma, calls skip the unconditional pass (off by default).
  NegativeGuidanceCutoff negative_guidance_cutoff;
  std::string sampler = "euler_a";
  bool karras = false;
  // diffusers' leading / linspace / trailing; unset = the model's scheduler config, else the
  // sampler's diffusers default. Turbo, Lightning and Hyper-SD want trailing (docs/few-step.md).
  std::optional<TimestepSpacing> timestep_spacing;
  // ToMe for SD (A1111's token_merging_ratio, 0-0.9): merges this share of the tokens before the
  // self-attention at the latents' full resolution; faster, slightly less detailed. 0 = off.
  double token_merging_ratio = 0;
  double eta = 0.0;  // DDIM only
  uint64_t seed = 0;
  // Images per batch and batches; image i of the whole run uses seed + i, so
  // any image can be made again on its own from its seed (as in A1111).
  int64_t batch_size = 1;
  int64_t batch_count = 1;
  int clip_skip = 1;                // A1111's "CLIP skip" on top of the model's native layer
  std::optional<Image> init_image;  // img2img when set (resized to width x height)
  // More init images (A1111's init_images beyond the first): image i of the run starts from
  // [init_image, further_init_images...][i % count].
  std::vector<Image> further_init_images;
  std::optional<VariationSeed> variation;  // A1111's subseed / subseed_strength
  double strength = 0.75;                  // img2img denoising strength in (0, 1]
  // LoRAs already merged into the model by the caller; recorded in the metadata
  // as A1111 does (<lora:NAME:WEIGHT> in the prompt, "Lora hashes").
  std::vector<LoraReference> loras;
  std::optional<VaeReference> vae;        // recorded as "VAE hash" / "VAE" when set
  std::optional<HiresFix> hires;          // text-to-image only
  std::optional<InpaintOptions> inpaint;  // needs init_image
  // VAE decode and encode in blended tiles: unset = automatic (tiles above kWholeVaePixels,
  // so large images fit in memory), true = always, false = never.
  std::optional<bool> tiled_vae;
  VaeTiling vae_tiling;
  // ControlNets steering every UNet call (residuals summed); their images are resized to the
  // size of each pass (the hires pass too) and recorded as A1111's "ControlNet N".
  std::vector<ControlInput> controls;
  // IP-Adapters (image prompts): each reference image is encoded once per request and steers
  // every cross-attention layer; recorded as A1111's "ControlNet N" units after the controls.
  std::vector<IpAdapterInput> ip_adapters;
};

// The largest image (in pixels) the VAE decodes and encodes whole when tiling is automatic.
inline constexpr int64_t kWholeVaePixels = 1024 * 1024;

// The size a hires fix makes from `size` (A1111: int(size * scale), then down to a multiple of
// the VAE's downscale factor).
int64_t hires_size(int64_t size, double scale, int64_t factor = 8);

// What the UNet is given besides latents, timestep and text; every field is optional.
struct UNetConditioning {
  at::Tensor image_conditioning;  // inpainting models: see inpainting_conditioning()
  // SDXL's size conditioning [1, 6]: original height, width, crop top, left, target height,
  // width. Default: the image's size with no crop, as A1111 and diffusers use.
  at::Tensor sdxl_time_ids;
  ControlGuidance controls;           // ControlNets, their images at the pass's size
  ImagePromptGuidance image_prompts;  // IP-Adapters, their images encoded
};

// A1111's live preview: every `every_steps` model calls (and at the last), the clean latents
// the model predicts are decoded with TAESD and shown; without a decoder, with A1111's
// "Approx cheap" linear map (latent_preview.hpp, a picture at the latents' size). Previews
// never change the result.
struct LivePreview {
  TinyAutoencoderDecoder decoder{nullptr};  // empty: the cheap approximation
  int64_t every_steps = 10;
  std::function<void(const Image& preview, int64_t call, int64_t calls)> show;
};

// Thrown from a progress callback to drop the image being made and go on with the request's
// next one (A1111's "skip"); the request then returns the images it finished.
class SkipCurrentImage : public Error {
 public:
  SkipCurrentImage() : Error(ErrorCode::kCancelled, "the image being made was skipped") {}
};

struct GeneratedImage {
  Image image;
  uint64_t seed = 0;
  GenerationParameters parameters;  // the A1111 "parameters" text of this image
};

class StableDiffusionPipeline {
 public:
  // `tokenizer` is used unless the model folder brings its own (which wins).
  StableDiffusionPipeline(StableDiffusionCheckpoint model, const ClipTokenizer& tokenizer,
                          std::string model_name);

  // Checks the request (sizes, steps, sampler, strength) and throws
  // kInvalidArgument with what to change; then generates every image.
  std::vector<GeneratedImage> generate(const GenerationRequest& request,
                                       const ProgressCallback& progress = {});

  // Textual-inversion embeddings that prompt words may name (A1111's embeddings folder).
  void set_embeddings(TextualInversionLibrary embeddings) { embeddings_ = std::move(embeddings); }
  // Live previews during sampling (an empty decoder turns them off).
  void set_live_preview(LivePreview preview) { preview_ = std::move(preview); }

  // The A1111 prompt language over `steps` steps: AND parts, schedules, emphasis, BREAK and
  // embeddings; every distinct scheduled text is encoded once.
  PromptConditioning condition_prompts(const std::string& prompt, const std::string& negative,
                                       int64_t steps, int clip_skip = 1);
  // Prompt -> [1, 77 * chunks, D] conditioning (A1111 75-token chunks, emphasis, BREAK,
  // embeddings; for AND or a schedule, the first part at the first step).
  at::Tensor encode_prompt(const std::string& text, int clip_skip = 1);
  // Encodes prompt and negative prompt to the same number of chunks: {negative, positive}.
  std::pair<at::Tensor, at::Tensor> encode_prompt_pair(const std::string& prompt,
                                                       const std::string& negative,
                                                       int clip_skip = 1);
  // The guided denoiser over the UNet: uncond + g * (cond - uncond), CFG batch
  // ordered [negative, positive] as diffusers does.
  // (SDXL needs pooled embeddings: use the PromptConditioning form.)
  ModelFunction guided_model(const at::Tensor& negative, const at::Tensor& positive,
                             double guidance_scale, const UNetConditioning& extra = {});
  // The same for a scheduled, composable conditioning: each model call of `plan` uses
  // the conditioning of its step (see guided_denoiser).
  // `cutoff`: A1111's NGMS (see guided_denoiser).
  ModelFunction guided_model(const PromptConditioning& conditioning, double guidance_scale,
                             const SamplingPlan& plan, const UNetConditioning& extra = {},
                             const NegativeGuidanceCutoff& cutoff = {});
  // Latents -> images in [-1, 1] ([N, 3, H, W], fp32); divides by the scaling factor. With
  // `tiling`, in blended tiles.
  at::Tensor decode_latents(const at::Tensor& latents, const VaeTiling* tiling = nullptr);
  // Image in [-1, 1] -> scaled latents mean + std * noise (noise drawn from `generator`).
  at::Tensor encode_image(const at::Tensor& image, Generator& generator,
                          const VaeTiling* tiling = nullptr);
  // What a 9-channel inpainting UNet sees besides the latents: [mask at latent size (binarised
  // at 0.5, nearest), latents of the image with the masked part blanked] = [1, 5, h, w].
  // `image` [1, 3, H, W] in [-1, 1], `mask` [1, 1, H, W] in [0, 1] (1 = repaint); one draw.
  at::Tensor inpainting_conditioning(const at::Tensor& image, const at::Tensor& mask,
                                     Generator& generator, const VaeTiling* tiling = nullptr);

  const StableDiffusionCheckpoint& model() const { return model_; }
  // For merging LoRAs into the weights this pipeline computes with (GenerationSession does).
  StableDiffusionCheckpoint& model() { return model_; }
  const SchedulerConfig& scheduler_config() const { return scheduler_; }
  at::ScalarType compute_dtype() const;
  at::Device device() const;

 private:
  GeneratedImage generate_one(const GenerationRequest& request, uint64_t seed,
                              const PromptConditioning& conditioning,
                              const PromptConditioning* hires_conditioning,
                              const InpaintPlan* inpaint, const ProgressCallback& progress);
  // The initial latents (and, for an inpainting model, its image conditioning) of one image,
  // drawing from `generator` in diffusers' order.
  at::Tensor initial_latents(const GenerationRequest& request, const SamplingPlan& plan,
                             const InpaintPlan* inpaint, Generator& generator,
                             at::Tensor* clean_latents, at::Tensor* image_conditioning);
  // The hires fix's second pass from the first pass's latents (seeded again from `seed`).
  at::Tensor hires_pass(const GenerationRequest& request, uint64_t seed,
                        const PromptConditioning& conditioning, const at::Tensor& latents,
                        const ProgressCallback& progress);
  // The request's tiling for an image of width x height, or null to process it whole.
  const VaeTiling* tiling_for(const GenerationRequest& request, int64_t width,
                              int64_t height) const;
  // `model` showing live previews of its predictions over `plan` (unchanged without preview).
  ModelFunction with_live_preview(ModelFunction model, const SamplingPlan& plan) const;
  GenerationParameters describe(const GenerationRequest& request, uint64_t seed,
                                const PromptConditioning& conditioning) const;
  ChunkEncoder chunk_encoder(int clip_skip);
  ChunkEncoder sdxl_chunk_encoder(int clip_skip);

  StableDiffusionCheckpoint model_;
  ImagePromptGuidance image_prompts_;  // the request's IP-Adapters while generate() runs
  ClipTokenizer tokenizer_;
  SchedulerConfig scheduler_;
  std::string model_name_;
  TextualInversionLibrary embeddings_;
  LivePreview preview_;
};

}  // namespace doppel

#include "doppel/diffusion/stable_diffusion_pipeline.hpp"

#include <c10/core/InferenceMode.h>

#include <cstdio>
#include <optional>

#include "doppel/core/error.hpp"
#include "doppel/core/log.hpp"
#include "doppel/diffusion/latent_preview.hpp"
#include "doppel/diffusion/variation_noise.hpp"

namespace doppel {
namespace {

// A1111's latent upscalers (torch.nn.functional.interpolate modes, antialias off).
std::optional<std::string> latent_upscale_mode(const std::string& name) {
  if (name == "Latent") return "bilinear";
  if (name == "Latent (nearest)") return "nearest";
  if (name == "Latent (bicubic)") return "bicubic";
  return std::nullopt;
}

std::optional<ResizeFilter> image_upscale_filter(const std::string& name) {
  if (name == "Lanczos") return ResizeFilter::kLanczos;
  if (name == "Nearest") return ResizeFilter::kNearest;
  return std::nullopt;
}

at::Tensor upscale_latents(const at::Tensor& latents, const std::string& mode, int64_t height,
                           int64_t width) {
  if (mode == "nearest") return at::upsample_nearest2d(latents, {height, width});
  if (mode == "bicubic") return at::upsample_bicubic2d(latents, {height, width}, false);
  return at::upsample_bilinear2d(latents, {height, width}, false);
}

void check_request(const GenerationRequest& request, int64_t factor, bool inpainting_model) {
  auto invalid = [](const std::string& message) {
    throw Error(ErrorCode::kInvalidArgument, message);
  };
  for (auto [name, value] : {std::pair{"width", request.width}, {"height", request.height}}) {
    if (value < factor || value > 8192)
      invalid(std::string(name) + " must be between " + std::to_string(factor) + " and 8192 (got " +
              std::to_string(value) + ")");
    if (value % factor != 0)
      invalid(std::string(name) + " must be a multiple of " + std::to_string(factor) + " (got " +
              std::to_string(value) + "; try " + std::to_string(value / factor * factor) + " or " +
              std::to_string((value / factor + 1) * factor) + ")");
  }
  if (request.steps < 1 || request.steps > 1000)
    invalid("steps must be between 1 and 1000 (got " + std::to_string(request.steps) + ")");
  if (request.batch_size < 1 || request.batch_count < 1)
    invalid("batch size and batch count must be at least 1");
  if (!(request.guidance_scale >= 0 && request.guidance_scale <= 100))
    invalid("guidance (CFG scale) must be between 0 and 100");
  if (!(request.negative_guidance_cutoff.min_sigma >= 0 &&
        request.negative_guidance_cutoff.min_sigma <= 1000))
    invalid("the negative guidance minimum sigma (NGMS) must be between 0 (off) and 1000 (got " +
            format_number(request.negative_guidance_cutoff.min_sigma) + ")");
  if (!(request.token_merging_ratio >= 0 && request.token_merging_ratio <= 0.9))
    invalid("the token merging ratio must be between 0 (off) and 0.9 (got " +
            format_number(request.token_merging_ratio) + ")");
  if (request.clip_skip < 1 || request.clip_skip > 12)
    invalid("CLIP skip must be between 1 and 12 (got " + std::to_string(request.clip_skip) + ")");
  if (request.init_image && !(request.strength > 0 && request.strength <= 1))
    invalid("img2img strength must be in (0, 1] (got " + format_number(request.strength) + ")");
  if (request.vae_tiling.tile_size < 4 || request.vae_tiling.overlap < 0 ||
      request.vae_tiling.overlap >= request.vae_tiling.tile_size)
    invalid("VAE tiles must be at least 4 latent pixels and overlap by less than their size");
  if (request.inpaint && !request.init_image)
    invalid("inpainting needs the image to paint into (an init image) as well as the mask");
  if (!request.further_init_images.empty() && !request.init_image)
    invalid("further init images need a first one (init_image)");
  if (request.variation && !(request.variation->strength >= 0 && request.variation->strength <= 1))
    invalid("the variation strength must be between 0 and 1 (got " +
            format_number(request.variation->strength) + ")");
  if (const auto& hires = request.hires) {
    if (request.init_image)
      invalid("hires fix is for text-to-image; for img2img ask for the larger size directly");
    if (inpainting_model)
      invalid("hires fix needs an ordinary checkpoint; this one is an inpainting model");
    if (!(hires->scale >= 1 && hires->scale <= 4))
      invalid("hires fix scale must be between 1 and 4 (got " + format_number(hires->scale) + ")");
    if (!(hires->denoising_strength > 0 && hires->denoising_strength <= 1))
      invalid("hires fix denoising strength must be in (0, 1] (got " +
              format_number(hires->denoising_strength) + ")");
    if (hires->steps < 0 || hires->steps > 1000)
      invalid("hires fix steps must be between 0 (= the sampling steps) and 1000");
    if (hires->sampler) find_sampler(*hires->sampler);  // an unknown name fails before any work
    if (!latent_upscale_mode(hires->upscaler) && !image_upscale_filter(hires->upscaler))
      invalid("unknown hires fix upscaler '" + hires->upscaler +
              "'; use Latent, Latent (nearest), Latent (bicubic), Lanczos or Nearest");
    for (int64_t size : {request.width, request.height})
      if (hires_size(size, hires->scale, factor) > 8192)
        invalid("hires fix would make an image larger than 8192 pixels; lower the scale");
  }
}

// Sets the UNet's ToMe ratio for one request and puts the previous one back, also on errors.
class TokenMergingScope {
 public:
  TokenMergingScope(UNetModel unet, double ratio)
      : unet_(std::move(unet)), previous_(unet_->token_merging_ratio()) {
    unet_->set_token_merging_ratio(ratio);
  }
  ~TokenMergingScope() { unet_->set_token_merging_ratio(previous_); }
  TokenMergingScope(const TokenMergingScope&) = delete;
  TokenMergingScope& operator=(const TokenMergingScope&) = delete;

 private:
  UNetModel unet_;
  double previous_;
};

// Reports one pass's "sampling" events as part of a single stage over both passes of a
// hires fix: steps counted from `offset` of `total`, time from `elapsed_before`.
ProgressCallback as_part_of(const ProgressCallback& progress, int64_t offset, int64_t total,
                            const double& elapsed_before, double& elapsed_now) {
  if (!progress) return {};
  return [&, offset, total, progress](const ProgressEvent& event) {
    if (event.stage != "sampling") return progress(event);
    if (offset > 0 && event.step == 0) return true;  // the first pass already said "offset"
    ProgressEvent combined = event;
    combined.step = offset + event.step;
    combined.total = total;
    combined.elapsed_seconds = elapsed_before + event.elapsed_seconds;
    elapsed_now = combined.elapsed_seconds;
    combined.eta_seconds = combined.step > 0 ? combined.elapsed_seconds / combined.step *
                                                   static_cast<double>(total - combined.step)
                                             : -1;
    return progress(combined);
  };
}

}  // namespace

int64_t hires_size(int64_t size, double scale, int64_t factor) {
  return static_cast<int64_t>(static_cast<double>(size) * scale) / factor * factor;
}

StableDiffusionPipeline::StableDiffusionPipeline(StableDiffusionCheckpoint model,
                                                 const ClipTokenizer& tokenizer,
                                                 std::string model_name)
    : model_(std::move(model)), tokenizer_(tokenizer), model_name_(std::move(model_name)) {
  if (model_.family == ModelFamily::kSdxl && model_.text_encoders.size() != 2)
    throw Error(ErrorCode::kInvalidFile, "an SDXL model needs both of its text encoders");
  if (model_.text_encoders.empty())
    throw Error(ErrorCode::kInvalidFile, "the model has no text encoder");
  const TextEncoderSlot& slot = model_.text_encoders.front();
  if (slot.tokenizer_path) tokenizer_ = ClipTokenizer::from_folder(*slot.tokenizer_path);
  tokenizer_ = tokenizer_.with_pad_id(slot.pad_token_id);
  scheduler_ = SchedulerConfig::from_json(model_.scheduler_config, model_.config_origin);
}

at::ScalarType StableDiffusionPipeline::compute_dtype() const {
  return model_.unet->parameters().front().scalar_type();
}

at::Device StableDiffusionPipeline::device() const {
  return model_.unet->parameters().front().device();
}

ChunkEncoder StableDiffusionPipeline::chunk_encoder(int clip_skip) {
  if (model_.family == ModelFamily::kSdxl) return sdxl_chunk_encoder(clip_skip);
  std::shared_ptr<ClipTextEncoder> encoder = model_.text_encoders.front().encoder;
  const int skip = model_.conditioning_clip_skip + clip_skip - 1;
  const at::Device on = device();
  return [encoder, skip, on](const at::Tensor& ids, const std::vector<EmbeddingRows>& rows) {
    const at::Tensor input_ids = ids.to(on);
    if (rows.empty()) return encoder->skip_layers(encoder->forward(input_ids), skip);
    // Textual inversion: the embedding's vectors replace the placeholder tokens' rows.
    at::Tensor embedded = encoder->embed_tokens(input_ids).clone();
    for (const EmbeddingRows& row : rows)
      embedded[row.batch].narrow(0, row.position, row.vectors.size(0)).copy_(row.vectors);
    return encoder->skip_layers(encoder->forward_embedded(input_ids, embedded), skip);
  };
}

ChunkEncoder StableDiffusionPipeline::sdxl_chunk_encoder(int clip_skip) {
  if (clip_skip > 1)
    log_warning(
        "CLIP skip is ignored for SDXL models (both encoders use their penultimate "
        "layer, as A1111 does by default)");
  std::shared_ptr<ClipTextEncoder> clip_l = model_.text_encoders[0].encoder;
  std::shared_ptr<ClipTextEncoder> clip_g = model_.text_encoders[1].encoder;
  const int64_t end_of_text = tokenizer_.eos_id();
  const int64_t pad = model_.text_encoders[1].pad_token_id;
  const at::Device on = device();
  return [clip_l, clip_g, end_of_text, pad, on](
             const at::Tensor& ids, const std::vector<EmbeddingRows>& rows) -> EncodedChunks {
    // The OpenCLIP tokenizer pads with its own token after the first end-of-text (A1111
    // rewrites the padding the same way).
    at::Tensor padded = ids.to(at::kCPU, at::kLong).clone();
    auto tokens = padded.accessor<int64_t, 2>();
    for (int64_t b = 0; b < padded.size(0); ++b) {
      bool ended = false;
      for (int64_t p = 0; p < padded.size(1); ++p) {
        if (ended) tokens[b][p] = pad;
        ended = ended || tokens[b][p] == end_of_text;
      }
    }
    const at::Tensor ids_l = ids.to(on);
    const at::Tensor ids_g = padded.to(on);
    at::Tensor first;
    ClipTextOutput second;
    if (rows.empty()) {
      first = ClipTextEncoder::penultimate(clip_l->forward(ids_l));
      second = clip_g->forward(ids_g);
    } else {
      // Textual inversion: each row holds [CLIP-L vector, OpenCLIP-G vector] side by side.
      at::Tensor embedded_l = clip_l->embed_tokens(ids_l).clone();
      at::Tensor embedded_g = clip_g->embed_tokens(ids_g).clone();
      const int64_t width_l = embedded_l.size(2);
      for (const EmbeddingRows& row : rows) {
        const int64_t count = row.vectors.size(0);
        embedded_l[row.batch]
            .narrow(0, row.position, count)
            .copy_(row.vectors.narrow(1, 0, width_l));
        embedded_g[row.batch]
            .narrow(0, row.position, count)
            .copy_(row.vectors.narrow(1, width_l, row.vectors.size(1) - width_l));
      }
      first = ClipTextEncoder::penultimate(clip_l->forward_embedded(ids_l, embedded_l));
      second = clip_g->forward_embedded(ids_g, embedded_g);
    }
    return {at::cat({first, ClipTextEncoder::penultimate(second).to(first.scalar_type())}, -1),
            second.text_embeds};
  };
}

PromptConditioning StableDiffusionPipeline::condition_prompts(const std::string& prompt,
                                                              const std::string& negative,
                                                              int64_t steps, int clip_skip) {
  c10::InferenceMode inference;
  int64_t width = 0;
  for (const TextEncoderSlot& slot : model_.text_encoders) {
    width += slot.encoder->config().hidden_size;
    if (model_.family != ModelFamily::kSdxl) break;  // SDXL concatenates both encoders
  }
  PromptConditioner conditioner(tokenizer_, chunk_encoder(clip_skip), width,
                                embeddings_.empty() ? nullptr : &embeddings_);
  PromptConditioning conditioning = conditioner.condition(prompt, negative, steps);
  // SDXL conditions an empty negative prompt on zeros (diffusers' force_zeros_for_empty_prompt;
  // A1111 likewise).
  if (model_.family == ModelFamily::kSdxl && negative.empty())
    for (ScheduledConditioning& entry : conditioning.negative) {
      entry.hidden = at::zeros_like(entry.hidden);
      entry.pooled = at::zeros_like(entry.pooled);
    }
  return conditioning;
}

at::Tensor StableDiffusionPipeline::encode_prompt(const std::string& text, int clip_skip) {
  return encode_prompt_pair(text, "", clip_skip).second;
}

std::pair<at::Tensor, at::Tensor> StableDiffusionPipeline::encode_prompt_pair(
    const std::string& prompt, const std::string& negative, int clip_skip) {
  PromptConditioning conditioning = condition_prompts(prompt, negative, 1, clip_skip);
  return {conditioning.negative.front().hidden,
          conditioning.positive.front().schedule.front().hidden};
}

ModelFunction StableDiffusionPipeline::guided_model(const at::Tensor& negative,
                                                    const at::Tensor& positive,
                                                    double guidance_scale,
                                                    const UNetConditioning& extra) {
  PromptConditioning conditioning;
  conditioning.positive.push_back({1.0, {{0, positive, {}}}});
  conditioning.negative.push_back({0, negative, {}});
  return guided_model(conditioning, guidance_scale, SamplingPlan{}, extra);
}

ModelFunction StableDiffusionPipeline::guided_model(const PromptConditioning& conditioning,
                                                    double guidance_scale, const SamplingPlan& plan,
                                                    const UNetConditioning& extra,
                                                    const NegativeGuidanceCutoff& cutoff) {
  UNetModel unet = model_.unet;
  if (model_.inpainting && !extra.image_conditioning.defined())
    throw Error(ErrorCode::kInvalidArgument,
                "an inpainting model needs its image conditioning (mask and masked image)");
  const int64_t factor = model_.vae->config().downscale_factor();
  // ControlNets follow the steps: guided_denoiser makes one UNet call per model call, so
  // calls map to steps as its own do.
  auto call_steps = std::make_shared<const std::vector<int64_t>>(steps_of_model_calls(plan));
  auto calls = std::make_shared<size_t>(0);
  const double steps = static_cast<double>(std::max<int64_t>(plan.steps, 1));
  // IP-Adapters need to know which UNet rows carry the negative prompt: guided_denoiser
  // batches [negative, part 1..k] x the sampler's rows, or the parts alone (no CFG, NGMS).
  auto sampler_rows = std::make_shared<int64_t>(0);
  const auto parts = static_cast<int64_t>(conditioning.positive.size());
  ModelFunction guided = guided_denoiser(
      [unet, extra, factor, call_steps, calls, steps, sampler_rows, parts](
          const at::Tensor& x, const at::Tensor& t, const at::Tensor& context,
          const at::Tensor& pooled) mutable {
        at::Tensor input = x;
        if (extra.image_conditioning.defined()) {
          // diffusers' order: cat([latents, mask, masked-image latents]) for every CFG row.
          input = at::cat({x, extra.image_conditioning.to(x.device(), x.scalar_type())
                                  .expand({x.size(0), -1, -1, -1})},
                          1);
        }
        UNetExtraInputs inputs;
        if (!extra.controls.empty() || !extra.image_prompts.empty()) {
          const size_t call = (*calls)++;
          const int64_t step =
              call_steps->empty() ? 0 : (*call_steps)[std::min(call, call_steps->size() - 1)];
          const double fraction = static_cast<double>(step) / steps;
          if (!extra.controls.empty())
            inputs = extra.controls.residuals(input, t, context, fraction);
          if (!extra.image_prompts.empty()) {
            const int64_t rows = x.size(0);
            const int64_t negative_rows = rows == *sampler_rows * (parts + 1) ? *sampler_rows : 0;
            inputs.image_prompt = extra.image_prompts.attention(rows, negative_rows, fraction);
          }
        }
        if (unet->config().adm_in_channels > 0) {
          if (!pooled.defined())
            throw Error(ErrorCode::kInvalidArgument,
                        "an SDXL UNet needs pooled text embeddings (condition_prompts)");
          const double height = static_cast<double>(x.size(2) * factor);
          const double width = static_cast<double>(x.size(3) * factor);
          const at::Tensor time_ids =
              extra.sdxl_time_ids.defined()
                  ? extra.sdxl_time_ids.to(at::kFloat)
                  : at::tensor({height, width, 0.0, 0.0, height, width}, at::kFloat)
                        .reshape({1, 6});
          inputs.vector_conditioning =
              sdxl_vector_conditioning(pooled, time_ids.to(pooled.device()).expand({x.size(0), 6}),
                                       unet->config().addition_time_embed_dim);
        }
        return unet->forward(input, t, context, inputs);
      },
      conditioning, guidance_scale, plan, cutoff);
  if (extra.image_prompts.empty()) return guided;
  return [guided = std::move(guided), sampler_rows](const at::Tensor& x, const at::Tensor& t) {
    *sampler_rows = x.size(0);
    return guided(x, t);
  };
}

at::Tensor StableDiffusionPipeline::decode_latents(const at::Tensor& latents,
                                                   const VaeTiling* tiling) {
  c10::InferenceMode inference;
  const at::Tensor unscaled = latents / model_.vae->config().scaling_factor;
  return tiling ? model_.vae->decode_tiled(unscaled, *tiling) : model_.vae->decode(unscaled);
}

at::Tensor StableDiffusionPipeline::encode_image(const at::Tensor& image, Generator& generator,
                                                 const VaeTiling* tiling) {
  c10::InferenceMode inference;
  const at::Tensor pixels = image.to(device());
  LatentDistribution posterior =
      tiling ? model_.vae->encode_tiled(pixels, *tiling) : model_.vae->encode(pixels);
  at::Tensor noise =
      generator.randn(posterior.mean.sizes(), at::TensorOptions().device(posterior.mean.device()));
  return posterior.sample(noise) * model_.vae->config().scaling_factor;
}

const VaeTiling* StableDiffusionPipeline::tiling_for(const GenerationRequest& request,
                                                     int64_t width, int64_t height) const {
  const bool tiled = request.tiled_vae.value_or(width * height > kWholeVaePixels);
  return tiled ? &request.vae_tiling : nullptr;
}

ModelFunction StableDiffusionPipeline::with_live_preview(ModelFunction model,
                                                         const SamplingPlan& plan) const {
  if (!preview_.show || preview_.every_steps < 1) return model;
  auto calls = std::make_shared<int64_t>(0);
  return [model = std::move(model), plan, calls, preview = preview_, family = model_.family](
             const at::Tensor& input, const at::Tensor& timestep) mutable {
    at::Tensor output = model(input, timestep);
    const int64_t call = ++*calls;
    const int64_t total = plan.model_calls();
    if (call % preview.every_steps == 0 || call == total) {
      const at::Tensor clean =
          predicted_clean_latents(plan, input, output, timestep.reshape({-1})[0].item<double>());
      preview.show(preview.decoder ? tensor_to_images(preview.decoder->forward(clean)).front()
                                   : approximate_latent_preview(clean, family),
                   call, total);
    }
    return output;
  };
}

at::Tensor StableDiffusionPipeline::inpainting_conditioning(const at::Tensor& image,
                                                            const at::Tensor& mask,
                                                            Generator& generator,
                                                            const VaeTiling* tiling) {
  c10::InferenceMode inference;
  const at::Tensor repaint = (mask >= 0.5).to(at::kFloat);
  const at::Tensor masked_image = image.to(at::kFloat) * (1 - repaint);
  const at::Tensor latents = encode_image(masked_image, generator, tiling);
  const at::Tensor small_mask =
      at::upsample_nearest2d(repaint, {latents.size(2), latents.size(3)}).to(latents.device());
  return at::cat({small_mask, latents}, 1);
}

namespace {

SamplerOptions sampler_options(const GenerationRequest& request) {
  SamplerOptions options;
  options.karras = request.karras;
  options.eta = request.eta;
  options.timestep_spacing = request.timestep_spacing;
  return options;
}

SamplingPlan hires_sampling_plan(const GenerationRequest& request,
                                 const SchedulerConfig& scheduler) {
  SamplerOptions options = sampler_options(request);
  const int64_t steps = request.hires->steps > 0 ? request.hires->steps : request.steps;
  if (request.hires->sampler) options.karras = request.hires->karras;
  return make_sampling_plan(request.hires->sampler.value_or(request.sampler), scheduler, steps,
                            options)
      .truncated_for_strength(request.hires->denoising_strength);
}

}  // namespace

at::Tensor StableDiffusionPipeline::hires_pass(const GenerationRequest& request, uint64_t seed,
                                               const PromptConditioning& conditioning,
                                               const at::Tensor& latents,
                                               const ProgressCallback& progress) {
  const HiresFix& hires = *request.hires;
  const int64_t factor = model_.vae->config().downscale_factor();
  const int64_t width = hires_size(request.width, hires.scale, factor);
  const int64_t height = hires_size(request.height, hires.scale, factor);
  const SamplingPlan plan = hires_sampling_plan(request, scheduler_);
  // A1111 draws the second pass's noise from the image's seed again.
  Generator generator(seed);
  at::Tensor upscaled;
  if (const auto mode = latent_upscale_mode(hires.upscaler)) {
    upscaled = upscale_latents(latents, *mode, height / factor, width / factor);
  } else {
    const Image first = tensor_to_images(decode_latents(latents, tiling_for(request, request.width,
                                                                            request.height)))
                            .front();
    const Image resized = resize_image(first, static_cast<int>(width), static_cast<int>(height),
                                       *image_upscale_filter(hires.upscaler));
    upscaled =
        encode_image(images_to_tensor({resized}), generator, tiling_for(request, width, height));
  }
  const at::Tensor noise =
      generator.randn(upscaled.sizes().vec(), at::TensorOptions().device(device()));
  UNetConditioning extra;
  extra.controls = ControlGuidance(request.controls, width, height, device());
  extra.image_prompts = image_prompts_;
  return sample(plan,
                with_live_preview(guided_model(conditioning, request.guidance_scale, plan, extra,
                                               request.negative_guidance_cutoff),
                                  plan),
                add_noise(plan, upscaled, noise), generator, progress);
}

at::Tensor StableDiffusionPipeline::initial_latents(const GenerationRequest& request,
                                                    const SamplingPlan& plan,
                                                    const InpaintPlan* inpaint,
                                                    Generator& generator, at::Tensor* clean_latents,
                                                    at::Tensor* image_conditioning) {
  // A1111's variation seed bends this image's starting noise (see VariationSeed).
  const auto draw_noise = [&](at::IntArrayRef shape, const at::TensorOptions& options) {
    return request.variation ? variation_noise(generator, shape, options, request.variation->seed,
                                               request.variation->strength)
                             : generator.randn(shape, options);
  };
  const int64_t factor = model_.vae->config().downscale_factor();
  const std::vector<int64_t> shape = {1, model_.unet->config().out_channels,
                                      request.height / factor, request.width / factor};
  const auto on_device = at::TensorOptions().device(device());
  const VaeTiling* tiling = tiling_for(request, request.width, request.height);
  at::Tensor pixels;  // [1, 3, H, W] in [-1, 1]: the picture img2img and inpainting start from
  if (inpaint) {
    pixels = images_to_tensor({inpaint->image});
  } else if (const auto& init = request.init_image) {
    pixels = images_to_tensor({init->width == request.width && init->height == request.height
                                   ? *init
                                   : resize_image(*init, static_cast<int>(request.width),
                                                  static_cast<int>(request.height))});
  }
  // diffusers' order of draws: the init image's posterior sample, the noise, then an
  // inpainting model's masked-image sample. Its inpainting pipeline starts from pure noise at
  // full strength, where an inpainting model needs no clean latents at all.
  const bool from_pure_noise = inpaint && request.strength >= 1;
  at::Tensor latents;
  if (!pixels.defined() || (from_pure_noise && model_.inpainting)) {
    latents = scale_initial_noise(plan, draw_noise(shape, on_device));
  } else {
    *clean_latents = encode_image(pixels, generator, tiling);
    if (inpaint) {
      // A1111's "latent noise" (the seed's noise, as A1111 draws it afresh) / "latent nothing".
      Generator seed_noise(generator.seed());
      *clean_latents = fill_masked_latents(
          *clean_latents,
          latent_repaint_mask(inpaint->mask, clean_latents->size(2), clean_latents->size(3)),
          request.inpaint->fill, seed_noise.randn(shape, on_device));
    }
    const at::Tensor noise = draw_noise(shape, on_device);
    latents =
        from_pure_noise ? scale_initial_noise(plan, noise) : add_noise(plan, *clean_latents, noise);
  }
  if (model_.inpainting) {
    // Without a mask everything is to be painted, from a blank picture (A1111's txt2img
    // conditioning of inpainting models).
    const at::Tensor mask =
        inpaint ? mask_to_tensor(inpaint->mask) : at::ones({1, 1, request.height, request.width});
    *image_conditioning = inpainting_conditioning(
        pixels.defined() ? pixels : at::zeros({1, 3, request.height, request.width}), mask,
        generator, tiling);
  }
  return latents;
}

GeneratedImage StableDiffusionPipeline::generate_one(const GenerationRequest& request,
                                                     uint64_t seed,
                                                     const PromptConditioning& conditioning,
                                                     const PromptConditioning* hires_conditioning,
                                                     const InpaintPlan* inpaint,
                                                     const ProgressCallback& progress) {
  c10::InferenceMode inference;
  Generator generator(seed);
  SamplingPlan plan =
      make_sampling_plan(request.sampler, scheduler_, request.steps, sampler_options(request));
  if (request.init_image) plan = plan.truncated_for_strength(request.strength);
  at::Tensor clean_latents;
  at::Tensor image_conditioning;
  at::Tensor latents =
      initial_latents(request, plan, inpaint, generator, &clean_latents, &image_conditioning);
  UNetConditioning extra;
  extra.image_conditioning = image_conditioning;
  extra.controls = ControlGuidance(request.controls, request.width, request.height, device());
  extra.image_prompts = image_prompts_;
  ModelFunction model = guided_model(conditioning, request.guidance_scale, plan, extra,
                                     request.negative_guidance_cutoff);
  // An ordinary checkpoint inpaints by keeping the unmasked latents at every step; an
  // inpainting model sees the masked image itself (diffusers does not blend for it).
  at::Tensor repaint;
  if (inpaint && !model_.inpainting) {
    repaint = latent_repaint_mask(inpaint->mask, latents.size(2), latents.size(3)).to(device());
    model = keep_unmasked_latents(std::move(model), plan, clean_latents, repaint);
  }
  model = with_live_preview(std::move(model), plan);
  if (request.hires) {
    // Both passes show as one sampling stage, as one job.
    const int64_t first_calls = plan.model_calls();
    const int64_t all_calls = first_calls + hires_sampling_plan(request, scheduler_).model_calls();
    const double none = 0;
    double after_first = 0;
    double after_second = 0;
    latents = sample(plan, model, latents, generator,
                     as_part_of(progress, 0, all_calls, none, after_first));
    latents = hires_pass(request, seed, *hires_conditioning, latents,
                         as_part_of(progress, first_calls, all_calls, after_first, after_second));
  } else {
    latents = sample(plan, model, latents, generator, progress);
  }
  if (repaint.defined()) latents = latents * repaint + clean_latents * (1 - repaint);
  ProgressTracker decoding(progress, "decoding", 1);
  const int64_t factor = model_.vae->config().downscale_factor();
  at::Tensor pixels = decode_latents(
      latents, tiling_for(request, latents.size(3) * factor, latents.size(2) * factor));
  decoding.advance(1);
  GeneratedImage result;
  result.image = tensor_to_images(pixels).front();
  if (inpaint)
    result.image =
        composite_inpainted(inpaint->original, result.image, inpaint->overlay, inpaint->region);
  result.seed = seed;
  result.parameters = describe(request, seed, conditioning);
  return result;
}

std::vector<GeneratedImage> StableDiffusionPipeline::generate(const GenerationRequest& request,
                                                              const ProgressCallback& progress) {
  check_request(request, model_.vae->config().downscale_factor(), model_.inpainting);
  check_controls(request.controls, model_.unet->config());
  check_ip_adapters(request.ip_adapters, *model_.unet);
  find_sampler(request.sampler);  // unknown names fail before any work
  const TokenMergingScope token_merging(model_.unet, request.token_merging_ratio);
  const PromptConditioning conditioning =
      condition_prompts(request.prompt, request.negative_prompt, request.steps, request.clip_skip);
  // Prompt schedules ([from:to:when]) follow the second pass's own step count; A1111's
  // hr_prompt / hr_negative_prompt replace the prompts of that pass.
  std::optional<PromptConditioning> hires_conditioning;
  if (const auto& hires = request.hires) {
    const std::string& prompt = hires->prompt.value_or(request.prompt);
    const std::string& negative = hires->negative_prompt.value_or(request.negative_prompt);
    const int64_t steps = hires->steps > 0 ? hires->steps : request.steps;
    if (steps != request.steps || prompt != request.prompt || negative != request.negative_prompt)
      hires_conditioning = condition_prompts(prompt, negative, steps, request.clip_skip);
  }
  const PromptConditioning* second_pass =
      request.hires ? (hires_conditioning ? &*hires_conditioning : &conditioning) : nullptr;
  // A1111's init_images: image i starts from picture i % count (each planned once).
  std::vector<Image> starts;
  if (request.init_image) starts.push_back(*request.init_image);
  starts.insert(starts.end(), request.further_init_images.begin(),
                request.further_init_images.end());
  std::vector<InpaintPlan> inpaints;
  if (request.inpaint)
    for (const Image& start : starts) {
      InpaintPlan plan = plan_inpaint(start, *request.inpaint, static_cast<int>(request.width),
                                      static_cast<int>(request.height));
      const InpaintFill fill = request.inpaint->fill;
      if (fill != InpaintFill::kOriginal) plan.image = fill_masked_area(plan.image, plan.mask);
      inpaints.push_back(std::move(plan));
    }
  const int64_t total = request.batch_size * request.batch_count;
  std::vector<GeneratedImage> images;
  // Every image of the request shares the encoded reference images; the state is dropped on
  // return (and on an exception) so the next request starts without them.
  image_prompts_ = ImagePromptGuidance(request.ip_adapters, *model_.unet);
  struct ClearImagePrompts {
    ImagePromptGuidance& guidance;
    ~ClearImagePrompts() { guidance = ImagePromptGuidance(); }
  } clear_image_prompts{image_prompts_};
  const bool varied = request.variation && request.variation->strength != 0;
  for (int64_t i = 0; i < total; ++i) {
    // Images run one at a time: on a CPU a larger UNet batch gains little, and
    // each image then depends on its own seed only.
    ProgressCallback labelled;
    if (progress)
      labelled = [&, i](const ProgressEvent& event) {
        ProgressEvent copy = event;
        if (total > 1)
          copy.stage =
              "image " + std::to_string(i + 1) + "/" + std::to_string(total) + " " + event.stage;
        return progress(copy);
      };
    const size_t start = starts.empty() ? 0 : static_cast<size_t>(i) % starts.size();
    const GenerationRequest* image_request = &request;
    std::optional<GenerationRequest> own;  // a copy only when this image differs
    if (start > 0 || varied) {
      own = request;
      if (start > 0) own->init_image = starts[start];
      if (varied) own->variation->seed += static_cast<uint64_t>(i);
      image_request = &*own;
    }
    // With a variation seed every image keeps the seed and varies by its variation seed (A1111).
    const uint64_t seed = request.seed + (varied ? 0 : static_cast<uint64_t>(i));
    try {
      images.push_back(generate_one(*image_request, seed, conditioning, second_pass,
                                    inpaints.empty() ? nullptr : &inpaints[start], labelled));
    } catch (const SkipCurrentImage&) {
      log_info("image " + std::to_string(i + 1) + "/" + std::to_string(total) + " skipped");
    }
  }
  return images;
}

}  // namespace doppel

#include "doppel/diffusion/stable_diffusion_pipeline.hpp"

#include <c10/core/InferenceMode.h>

#include <cstdio>

#include "doppel/core/error.hpp"

namespace doppel {
namespace {

std::string format_number(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%g", value);
  return buffer;
}

at::Tensor ids_tensor(const std::vector<std::vector<int64_t>>& chunks) {
  std::vector<int64_t> flat;
  for (const auto& chunk : chunks) flat.insert(flat.end(), chunk.begin(), chunk.end());
  return at::tensor(flat, at::kLong).reshape({static_cast<int64_t>(chunks.size()), -1});
}

void check_request(const GenerationRequest& request, int64_t factor) {
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
  if (request.clip_skip < 1 || request.clip_skip > 12)
    invalid("CLIP skip must be between 1 and 12 (got " + std::to_string(request.clip_skip) + ")");
  if (request.init_image && !(request.strength > 0 && request.strength <= 1))
    invalid("img2img strength must be in (0, 1] (got " + format_number(request.strength) + ")");
}

}  // namespace

StableDiffusionPipeline::StableDiffusionPipeline(StableDiffusionCheckpoint model,
                                                 const ClipTokenizer& tokenizer,
                                                 std::string model_name)
    : model_(std::move(model)), tokenizer_(tokenizer), model_name_(std::move(model_name)) {
  if (model_.family == ModelFamily::kSdxl)
    throw Error(ErrorCode::kUnsupported,
                "SDXL checkpoints are recognised, but this version of doppel generates with "
                "SD 1.x and 2.x models only; choose an SD 1.5 or 2.1 checkpoint");
  if (model_.inpainting)
    throw Error(ErrorCode::kUnsupported,
                "this is an inpainting checkpoint (9-channel UNet); text-to-image needs an "
                "ordinary SD 1.x/2.x checkpoint");
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

at::Tensor StableDiffusionPipeline::encode_prompt(const std::string& text, int clip_skip) {
  return encode_prompt_pair(text, "", clip_skip).second;
}

std::pair<at::Tensor, at::Tensor> StableDiffusionPipeline::encode_prompt_pair(
    const std::string& prompt, const std::string& negative, int clip_skip) {
  c10::InferenceMode inference;
  auto positive_chunks = tokenizer_.encode_chunks(prompt);
  auto negative_chunks = tokenizer_.encode_chunks(negative);
  // A1111 pads the shorter prompt with empty chunks so both condition the same length.
  const auto empty_chunk = tokenizer_.encode_chunks("").front();
  while (positive_chunks.size() < negative_chunks.size()) positive_chunks.push_back(empty_chunk);
  while (negative_chunks.size() < positive_chunks.size()) negative_chunks.push_back(empty_chunk);

  ClipTextEncoder& encoder = *model_.text_encoders.front().encoder;
  const int skip = model_.conditioning_clip_skip + clip_skip - 1;
  auto encode = [&](const std::vector<std::vector<int64_t>>& chunks) {
    at::Tensor hidden = encoder.skip_layers(encoder.forward(ids_tensor(chunks).to(device())), skip);
    // [chunks, 77, D] -> [1, chunks * 77, D]
    return hidden.reshape({1, -1, hidden.size(-1)});
  };
  return {encode(negative_chunks), encode(positive_chunks)};
}

ModelFunction StableDiffusionPipeline::guided_model(const at::Tensor& negative,
                                                    const at::Tensor& positive,
                                                    double guidance_scale) {
  UNetModel unet = model_.unet;
  if (guidance_scale <= 1.0) {
    return [unet, positive](const at::Tensor& x, const at::Tensor& t) mutable {
      return unet->forward(x, t, positive.expand({x.size(0), -1, -1}));
    };
  }
  return
      [unet, negative, positive, guidance_scale](const at::Tensor& x, const at::Tensor& t) mutable {
        const int64_t n = x.size(0);
        at::Tensor context = at::cat({negative.expand({n, -1, -1}), positive.expand({n, -1, -1})});
        at::Tensor both = unet->forward(at::cat({x, x}), t, context);
        at::Tensor unconditional = both.slice(0, 0, n), conditional = both.slice(0, n);
        return unconditional + guidance_scale * (conditional - unconditional);
      };
}

at::Tensor StableDiffusionPipeline::decode_latents(const at::Tensor& latents) {
  c10::InferenceMode inference;
  return model_.vae->decode(latents / model_.vae->config().scaling_factor);
}

at::Tensor StableDiffusionPipeline::encode_image(const at::Tensor& image, Generator& generator) {
  c10::InferenceMode inference;
  LatentDistribution posterior = model_.vae->encode(image.to(device()));
  at::Tensor noise =
      generator.randn(posterior.mean.sizes(), at::TensorOptions().device(posterior.mean.device()));
  return posterior.sample(noise) * model_.vae->config().scaling_factor;
}

GenerationParameters StableDiffusionPipeline::describe(const GenerationRequest& request,
                                                       uint64_t seed) const {
  GenerationParameters p;
  p.prompt = request.prompt;
  std::string lora_hashes;
  for (const auto& lora : request.loras) {
    std::string tag = "<lora:" + lora.name + ":" + format_number(lora.multiplier) + ">";
    if (p.prompt.find(tag) == std::string::npos) p.prompt += (p.prompt.empty() ? "" : " ") + tag;
    if (!lora.short_hash.empty())
      lora_hashes += (lora_hashes.empty() ? "" : ", ") + lora.name + ": " + lora.short_hash;
  }
  p.negative_prompt = request.negative_prompt;
  p.set("Steps", std::to_string(request.steps));
  p.set("Sampler", a1111_sampler_name(request.sampler, request.karras));
  p.set("CFG scale", format_number(request.guidance_scale));
  p.set("Seed", std::to_string(seed));
  p.set("Size", std::to_string(request.width) + "x" + std::to_string(request.height));
  if (!model_.model_hash.empty()) p.set("Model hash", model_.model_hash);
  p.set("Model", model_name_);
  if (request.init_image) p.set("Denoising strength", format_number(request.strength));
  if (request.clip_skip > 1) p.set("Clip skip", std::to_string(request.clip_skip));
  if (request.eta != 0) p.set("Eta", format_number(request.eta));
  if (!lora_hashes.empty()) p.set("Lora hashes", lora_hashes);
  p.set("Version", "doppel 0.1.0");
  return p;
}

GeneratedImage StableDiffusionPipeline::generate_one(const GenerationRequest& request,
                                                     uint64_t seed, const at::Tensor& negative,
                                                     const at::Tensor& positive,
                                                     const ProgressCallback& progress) {
  c10::InferenceMode inference;
  Generator generator(seed);
  const int64_t factor = model_.vae->config().downscale_factor();
  const std::vector<int64_t> shape = {1, model_.unet->config().out_channels,
                                      request.height / factor, request.width / factor};
  SamplerOptions options;
  options.karras = request.karras;
  options.eta = request.eta;
  SamplingPlan plan = make_sampling_plan(request.sampler, scheduler_, request.steps, options);
  const auto on_device = at::TensorOptions().device(device());
  at::Tensor latents;
  if (request.init_image) {
    // diffusers' order of draws: posterior sample, then the noise added at t_start.
    plan = plan.truncated_for_strength(request.strength);
    Image resized =
        request.init_image->width == request.width && request.init_image->height == request.height
            ? *request.init_image
            : resize_image(*request.init_image, static_cast<int>(request.width),
                           static_cast<int>(request.height));
    at::Tensor clean = encode_image(images_to_tensor({resized}), generator);
    latents = add_noise(plan, clean, generator.randn(shape, on_device));
  } else {
    latents = scale_initial_noise(plan, generator.randn(shape, on_device));
  }
  latents = sample(plan, guided_model(negative, positive, request.guidance_scale), latents,
                   generator, progress);
  ProgressTracker decoding(progress, "decoding", 1);
  at::Tensor pixels = decode_latents(latents);
  decoding.advance(1);
  GeneratedImage result;
  result.image = tensor_to_images(pixels).front();
  result.seed = seed;
  result.parameters = describe(request, seed);
  return result;
}

std::vector<GeneratedImage> StableDiffusionPipeline::generate(const GenerationRequest& request,
                                                              const ProgressCallback& progress) {
  check_request(request, model_.vae->config().downscale_factor());
  find_sampler(request.sampler);  // unknown names fail before any work
  auto [negative, positive] =
      encode_prompt_pair(request.prompt, request.negative_prompt, request.clip_skip);
  const int64_t total = request.batch_size * request.batch_count;
  std::vector<GeneratedImage> images;
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
    images.push_back(generate_one(request, request.seed + static_cast<uint64_t>(i), negative,
                                  positive, labelled));
  }
  return images;
}

}  // namespace doppel

// The A1111 "parameters" text of a generated image: what StableDiffusionPipeline records, in
// A1111's key names and order, so A1111, Civitai and ComfyUI readers take it back.
#include "doppel/diffusion/stable_diffusion_pipeline.hpp"

namespace doppel {

GenerationParameters StableDiffusionPipeline::describe(
    const GenerationRequest& request, uint64_t seed, const PromptConditioning& conditioning) const {
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
  if (const auto& spacing = request.timestep_spacing) {
    // A1111's nearest schedule (its Karras lives in the sampler name), then diffusers' exact name.
    if (!request.karras && request.sampler.find("_karras") == std::string::npos)
      p.set("Schedule type", a1111_schedule_type(*spacing));
    p.set("Timestep spacing", timestep_spacing_name(*spacing));
  }
  p.set("CFG scale", format_number(request.guidance_scale));
  p.set("Seed", std::to_string(seed));
  p.set("Size", std::to_string(request.width) + "x" + std::to_string(request.height));
  if (!model_.model_hash.empty()) p.set("Model hash", model_.model_hash);
  p.set("Model", model_name_);
  if (request.vae) {
    if (!request.vae->short_hash.empty()) p.set("VAE hash", request.vae->short_hash);
    p.set("VAE", request.vae->name);
  }
  // After the VAE, as A1111 orders them.
  if (request.variation && request.variation->strength != 0) {
    p.set("Variation seed", std::to_string(request.variation->seed));
    p.set("Variation seed strength", format_number(request.variation->strength));
  }
  if (request.init_image) p.set("Denoising strength", format_number(request.strength));
  if (const auto& inpaint = request.inpaint) {
    p.set("Mask blur", std::to_string(inpaint->mask_blur));
    if (inpaint->only_masked) {
      p.set("Inpaint area", "Only masked");
      p.set("Masked area padding", std::to_string(inpaint->only_masked_padding));
    }
  }
  if (const auto& hires = request.hires) {
    p.set("Denoising strength", format_number(hires->denoising_strength));
    p.set("Hires upscale", format_number(hires->scale));
    if (hires->steps > 0) p.set("Hires steps", std::to_string(hires->steps));
    p.set("Hires upscaler", hires->upscaler);
    // A1111 names the second pass's own sampler and prompts only where they differ.
    if (hires->sampler) {
      const std::string sampler = a1111_sampler_name(*hires->sampler, hires->karras);
      if (sampler != a1111_sampler_name(request.sampler, request.karras))
        p.set("Hires sampler", sampler);
    }
    if (hires->prompt && *hires->prompt != request.prompt) p.set("Hires prompt", *hires->prompt);
    if (hires->negative_prompt && *hires->negative_prompt != request.negative_prompt)
      p.set("Hires negative prompt", *hires->negative_prompt);
  }
  if (request.clip_skip > 1) p.set("Clip skip", std::to_string(request.clip_skip));
  if (request.token_merging_ratio > 0) {
    p.set("Token merging ratio", format_number(request.token_merging_ratio));
    if (request.hires) p.set("Token merging ratio hr", format_number(request.token_merging_ratio));
  }
  if (request.eta != 0) p.set("Eta", format_number(request.eta));
  if (const NegativeGuidanceCutoff& ngms = request.negative_guidance_cutoff; ngms.enabled()) {
    p.set("NGMS", format_number(ngms.min_sigma));
    if (ngms.all_steps) p.set("NGMS all steps", "True");
  }
  // A1111 drops ':' and ',' from embedding names here so the list stays parseable.
  std::string embedding_hashes;
  for (const auto& [name, hash] : conditioning.embeddings) {
    if (hash.empty()) continue;
    std::string clean;
    for (char c : name)
      if (c != ':' && c != ',') clean += c;
    embedding_hashes += (embedding_hashes.empty() ? "" : ", ") + clean + ": " + hash;
  }
  if (!embedding_hashes.empty()) p.set("TI hashes", embedding_hashes);
  if (!lora_hashes.empty()) p.set("Lora hashes", lora_hashes);
  describe_controls(request.controls, p);
  describe_ip_adapters(request.ip_adapters, request.controls.size(),
                       model_.unet->config().adm_in_channels > 0, p);
  p.set("Version", doppel_version());
  return p;
}

}  // namespace doppel

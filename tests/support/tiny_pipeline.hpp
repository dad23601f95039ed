// The tiny built-in model as a pipeline, and a small request for it: what the engine's
// behaviour tests generate with (64x64, a few steps, milliseconds).
#pragma once
#include "doppel/checkpoint/tiny_model.hpp"
#include "doppel/diffusion/stable_diffusion_pipeline.hpp"
#include "support/test_tokenizer.hpp"

namespace doppel::test {

inline StableDiffusionPipeline tiny_pipeline() {
  return StableDiffusionPipeline(make_tiny_stable_diffusion(7), test_tokenizer(), "tiny");
}

// A 64x64 portrait prompt, 4 euler_a steps, seed 11.
inline GenerationRequest tiny_request() {
  GenerationRequest request;
  request.prompt = "a portrait of a person";
  request.negative_prompt = "blurry";
  request.width = request.height = 64;
  request.steps = 4;
  request.sampler = "euler_a";
  request.seed = 11;
  return request;
}

}  // namespace doppel::test

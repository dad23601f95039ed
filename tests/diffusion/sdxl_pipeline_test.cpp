// SDXL through the pipeline: both text encoders' conditioning with the pooled embedding
// (StableDiffusionXLPipeline.encode_prompt), the size conditioning, and the whole Euler run of
// golden/sdxl, from both layouts; then generate() on the same model.
#include <c10/core/InferenceMode.h>

#include <gtest/gtest.h>

#include "diffusion/diffusion_test_support.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/safetensors.hpp"
#include "doppel/diffusion/stable_diffusion_pipeline.hpp"
#include "support/shared_data.hpp"
#include "support/tensor_comparison.hpp"

namespace doppel {
namespace {

using test::kNegative;
using test::kPrompt;

using test::relative_difference;

std::filesystem::path sdxl_dir() {
  return test::golden_dir() / "sdxl";
}

StableDiffusionPipeline load_sdxl(const std::string& layout) {
  ModelLoadOptions options;
  options.path = sdxl_dir() / layout;
  options.config_path = sdxl_dir() / "diffusers";
  options.compute_hash = false;
  return StableDiffusionPipeline(load_stable_diffusion(options),
                                 ClipTokenizer::from_bpe_file(test::golden_dir() / "tokenizer" /
                                                              "bpe_simple_vocab_16e6.txt.gz"),
                                 "sdxl-tiny");
}

void expect_close(const at::Tensor& actual, const at::Tensor& expected, double bound,
                  const std::string& label) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << label;
  const double error = relative_difference(actual, expected);
  std::printf("[ parity   ] %-44s rel %.3g\n", label.c_str(), error);
  EXPECT_LT(error, bound) << label;
}

TEST(SdxlPipelineGolden, ConditioningMatchesEncodePrompt) {
  DOPPEL_REQUIRE_PATH(sdxl_dir() / "goldens" / "conditioning.safetensors");
  auto golden = SafetensorsFile::open(sdxl_dir() / "goldens" / "conditioning.safetensors");
  for (const std::string layout : {"diffusers", "sdxl_tiny_single_file_fp16.safetensors"}) {
    StableDiffusionPipeline pipeline = load_sdxl(layout);
    // diffusers reads "(bird:1.2)" literally; in A1111's language that is the escaped form.
    const std::vector<std::string> prompts = {kPrompt, "A CAT, a dog & a \\(bird:1.2\\) 🐱 猫"};
    for (size_t i = 0; i < prompts.size(); ++i) {
      const std::string p = "p" + std::to_string(i) + ".";
      const PromptConditioning conditioning = pipeline.condition_prompts(prompts[i], kNegative, 1);
      const ScheduledConditioning& positive = conditioning.positive.front().schedule.front();
      const ScheduledConditioning& negative = conditioning.negative.front();
      const std::string label = layout.substr(0, 9) + " " + p;
      expect_close(positive.hidden, golden.tensor(p + "prompt_embeds"), 1e-5, label + "embeds");
      expect_close(positive.pooled, golden.tensor(p + "pooled_prompt_embeds"), 1e-5,
                   label + "pooled");
      expect_close(negative.hidden, golden.tensor(p + "negative_prompt_embeds"), 1e-5,
                   label + "negative embeds");
      expect_close(negative.pooled, golden.tensor(p + "negative_pooled_prompt_embeds"), 1e-5,
                   label + "negative pooled");
    }
    // An empty negative prompt is all zeros, as force_zeros_for_empty_prompt makes it.
    const PromptConditioning empty = pipeline.condition_prompts(kPrompt, "", 1);
    EXPECT_EQ(empty.negative.front().hidden.abs().max().item<double>(), 0.0);
    EXPECT_EQ(empty.negative.front().pooled.abs().max().item<double>(), 0.0);
  }
}

TEST(SdxlPipelineGolden, EulerTxt2ImgMatchesTheReference) {
  DOPPEL_REQUIRE_PATH(sdxl_dir() / "goldens" / "txt2img_euler_6steps.safetensors");
  auto golden = SafetensorsFile::open(sdxl_dir() / "goldens" / "txt2img_euler_6steps.safetensors");
  for (const std::string layout : {"diffusers", "sdxl_tiny_single_file_fp16.safetensors"}) {
    StableDiffusionPipeline pipeline = load_sdxl(layout);
    c10::InferenceMode inference;
    const PromptConditioning conditioning = pipeline.condition_prompts(kPrompt, kNegative, 6);
    const SamplingPlan plan = make_sampling_plan("euler", pipeline.scheduler_config(), 6);
    const std::vector<double> expected_timesteps = {831, 665, 499, 333, 167, 1};
    EXPECT_EQ(plan.timesteps, expected_timesteps);
    UNetConditioning extra;
    extra.sdxl_time_ids = golden.tensor("add_time_ids");
    EXPECT_TRUE(at::equal(extra.sdxl_time_ids,
                          at::tensor({96.0f, 80.0f, 4.0f, 8.0f, 64.0f, 64.0f}).reshape({1, 6})));
    Generator generator(1234);
    std::vector<at::Tensor> steps;
    at::Tensor latents = scale_initial_noise(plan, golden.tensor("initial_noise"));
    latents =
        sample(plan, pipeline.guided_model(conditioning, 7.5, plan, extra), latents, generator, {},
               [&](int64_t, const at::Tensor& step) { steps.push_back(step.clone()); });
    ASSERT_EQ(steps.size(), 6u);
    const std::string label = layout.substr(0, 9) + " sdxl euler ";
    expect_close(steps[0], golden.tensor("step00.latents"), 1e-4, label + "step 0");
    expect_close(latents, golden.tensor("final_latents"), 1e-4, label + "final latents");
    const Image image = tensor_to_images(pipeline.decode_latents(latents)).front();
    const at::Tensor ours =
        at::from_blob(const_cast<uint8_t*>(image.rgb.data()), {64, 64, 3}, at::kByte).to(at::kInt);
    const at::Tensor theirs = golden.tensor("image_uint8").reshape({64, 64, 3}).to(at::kInt);
    EXPECT_LE((ours - theirs).abs().max().item<int>(), 1) << label;
  }
}

TEST(SdxlPipeline, GeneratesWithEverySamplerFamilyAndRecordsTheRecipe) {
  DOPPEL_REQUIRE_PATH(sdxl_dir() / "diffusers");
  StableDiffusionPipeline pipeline = load_sdxl("diffusers");
  GenerationRequest request;
  request.prompt = "a (portrait:1.2) of a person BREAK studio light";
  request.negative_prompt = "";
  request.width = 64;
  request.height = 48;
  request.steps = 4;
  request.seed = 9;
  for (const char* sampler : {"euler_a", "dpmpp_2m", "ddim"}) {
    request.sampler = sampler;
    const std::vector<GeneratedImage> images = pipeline.generate(request);
    ASSERT_EQ(images.size(), 1u);
    EXPECT_EQ(images[0].image.width, 64);
    EXPECT_EQ(images[0].image.height, 48);
    EXPECT_EQ(images[0].parameters.get("Size").value(), "64x48");
  }
  // Same seed, same image; another seed, another image.
  const Image first = pipeline.generate(request).front().image;
  EXPECT_EQ(pipeline.generate(request).front().image.rgb, first.rgb);
  request.seed = 10;
  EXPECT_NE(pipeline.generate(request).front().image.rgb, first.rgb);
  // img2img and the hires fix run through the same conditioning.
  GenerationRequest hires = request;
  hires.hires = HiresFix{};
  hires.hires->scale = 1.5;
  EXPECT_EQ(pipeline.generate(hires).front().image.width, 96);
  GenerationRequest img2img = request;
  img2img.init_image = first;
  img2img.strength = 0.5;
  EXPECT_EQ(pipeline.generate(img2img).front().image.height, 48);
  // The plain (negative, positive) form has no pooled embedding: a clear error.
  auto [negative, positive] = pipeline.encode_prompt_pair("a", "b");
  ModelFunction model = pipeline.guided_model(negative, positive, 7.0);
  EXPECT_THROW(model(at::zeros({1, 4, 8, 8}), at::full({1}, 500.0f)), Error);
}

// An SDXL embedding holding the word "cat"'s token rows of both encoders conditions like "cat".
TEST(SdxlPipeline, TextualInversionReplacesBothEncodersRows) {
  DOPPEL_REQUIRE_PATH(sdxl_dir() / "diffusers");
  StableDiffusionPipeline pipeline = load_sdxl("diffusers");
  const ClipTokenizer tokenizer = ClipTokenizer::from_bpe_file(test::golden_dir() / "tokenizer" /
                                                               "bpe_simple_vocab_16e6.txt.gz");
  TextualInversionEmbedding kitty;
  kitty.name = "kitty";
  kitty.file = "kitty.safetensors";
  kitty.short_hash = "0123456789ab";
  {
    c10::InferenceMode inference;
    const at::Tensor cat = at::tensor({tokenizer.token_id("cat</w>")}).reshape({1, 1});
    for (size_t i = 0; i < 2; ++i)
      kitty.per_encoder[i == 0 ? "clip_l" : "clip_g"] =
          pipeline.model().text_encoders[i].encoder->embed_tokens(cat).reshape({1, -1}).clone();
  }
  TextualInversionLibrary library;
  library.add(kitty);
  pipeline.set_embeddings(library);
  const PromptConditioning embedded = pipeline.condition_prompts("a kitty on a sofa", "", 1);
  const PromptConditioning worded = pipeline.condition_prompts("a cat on a sofa", "", 1);
  const ScheduledConditioning& a = embedded.positive.front().schedule.front();
  const ScheduledConditioning& b = worded.positive.front().schedule.front();
  EXPECT_LT((a.hidden - b.hidden).abs().max().item<double>(), 1e-6);
  EXPECT_LT((a.pooled - b.pooled).abs().max().item<double>(), 1e-6);
  EXPECT_EQ(embedded.embeddings.at("kitty"), "0123456789ab");
}

}  // namespace
}  // namespace doppel

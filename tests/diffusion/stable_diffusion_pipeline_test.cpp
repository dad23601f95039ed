// End-to-end parity of txt2img / img2img with the reference pipelines
// (golden/sd1, golden/sd2), plus behaviour on the tiny model built in code.
#include "doppel/diffusion/stable_diffusion_pipeline.hpp"

#include <c10/core/InferenceMode.h>

#include <gtest/gtest.h>

#include <set>

#include "diffusion/diffusion_test_support.hpp"
#include "doppel/checkpoint/tiny_model.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/safetensors.hpp"
#include "support/error_code.hpp"
#include "support/shared_data.hpp"
#include "support/tensor_comparison.hpp"
#include "support/test_tokenizer.hpp"
#include "support/tiny_pipeline.hpp"

namespace doppel {
namespace {

using test::kNegative;
using test::kPrompt;

using test::relative_difference;

using test::tiny_pipeline;
using test::tiny_request;

using test::code_of;
using test::test_tokenizer;

ClipTokenizer golden_tokenizer() {
  return ClipTokenizer::from_bpe_file(test::golden_dir() / "tokenizer" /
                                      "bpe_simple_vocab_16e6.txt.gz");
}

StableDiffusionPipeline load_golden(const std::string& family, const std::string& layout_path) {
  ModelLoadOptions options;
  options.path = test::golden_dir() / family / layout_path;
  if (layout_path.ends_with(".safetensors"))
    options.config_path = test::golden_dir() / family / "diffusers";
  options.compute_hash = false;
  return StableDiffusionPipeline(load_stable_diffusion(options), golden_tokenizer(), family);
}

// Runs one golden txt2img file through the pipeline's own stages: the prompt
// encoders, the CFG denoiser, the named sampler and the VAE.
void expect_txt2img_parity(StableDiffusionPipeline& pipeline, const std::string& golden_file,
                           const std::string& sampler, bool karras, int64_t steps) {
  auto golden = SafetensorsFile::open(golden_file);
  auto [negative, positive] = pipeline.encode_prompt_pair(kPrompt, kNegative);
  SamplerOptions options;
  options.karras = karras;
  SamplingPlan plan = make_sampling_plan(sampler, pipeline.scheduler_config(), steps, options);
  Generator generator(1234);  // the reference's generator for per-step noise
  at::Tensor latents = scale_initial_noise(plan, golden.tensor("initial_noise"));
  latents = sample(plan, pipeline.guided_model(negative, positive, 7.5), latents, generator);
  EXPECT_LT(relative_difference(latents, golden.tensor("final_latents")), 1e-4) << golden_file;
  at::Tensor image = pipeline.decode_latents(latents).div(2).add(0.5).clamp(0, 1);
  at::Tensor expected = golden.tensor("image").permute({0, 3, 1, 2});
  EXPECT_LT((image - expected).abs().max().item<double>(), 1e-3) << golden_file;
  auto pixels = tensor_to_images(pipeline.decode_latents(latents)).front();
  at::Tensor ours = at::from_blob(pixels.rgb.data(), {64, 64, 3}, at::kByte).to(at::kInt);
  at::Tensor theirs = golden.tensor("image_uint8").reshape({64, 64, 3}).to(at::kInt);
  EXPECT_LE((ours - theirs).abs().max().item<int>(), 1) << golden_file;
}

TEST(StableDiffusionPipelineGolden, Sd1Txt2ImgEverySamplerMatchesReference) {
  auto folder = test::golden_dir() / "sd1";
  DOPPEL_REQUIRE_PATH(folder / "diffusers");
  auto pipeline = load_golden("sd1", "diffusers");
  const std::vector<std::tuple<std::string, std::string, bool>> runs = {
      {"ddim", "ddim", false},
      {"euler", "euler", false},
      {"euler_ancestral", "euler_a", false},
      {"dpmpp_2m", "dpmpp_2m", false},
      {"dpmpp_2m_karras", "dpmpp_2m", true},
      {"lms", "lms", false},
      {"pndm", "pndm", false},
      {"ddpm", "ddpm", false},
      {"lcm", "lcm", false}};
  for (const auto& [file, sampler, karras] : runs)
    expect_txt2img_parity(pipeline,
                          (folder / "goldens" / "txt2img" / (file + ".safetensors")).string(),
                          sampler, karras, 10);
}

TEST(StableDiffusionPipelineGolden, Sd1SingleFileEqualsDiffusersFolder) {
  auto folder = test::golden_dir() / "sd1";
  DOPPEL_REQUIRE_PATH(folder / "sd1_tiny_single_file_fp16.safetensors");
  auto pipeline = load_golden("sd1", "sd1_tiny_single_file_fp16.safetensors");
  expect_txt2img_parity(pipeline, (folder / "goldens/txt2img/euler.safetensors").string(), "euler",
                        false, 10);
}

TEST(StableDiffusionPipelineGolden, Sd1Img2ImgMatchesReference) {
  auto folder = test::golden_dir() / "sd1";
  DOPPEL_REQUIRE_PATH(folder / "goldens" / "img2img_ddim_strength0.6.safetensors");
  auto pipeline = load_golden("sd1", "diffusers");
  auto golden = SafetensorsFile::open(folder / "goldens" / "img2img_ddim_strength0.6.safetensors");
  auto [negative, positive] = pipeline.encode_prompt_pair(kPrompt, kNegative);
  SamplingPlan plan =
      make_sampling_plan("ddim", pipeline.scheduler_config(), 10).truncated_for_strength(0.6);
  EXPECT_EQ(plan.model_calls(), 6);
  EXPECT_EQ(plan.first_timestep(), 501);
  Generator generator(1234);
  at::Tensor init = golden.tensor("init_image_01").mul(2).sub(1);
  at::Tensor clean = pipeline.encode_image(init, generator);
  at::Tensor latents = add_noise(plan, clean, generator.randn(clean.sizes()));
  latents = sample(plan, pipeline.guided_model(negative, positive, 7.5), latents, generator);
  EXPECT_LT(relative_difference(latents, golden.tensor("final_latents")), 1e-4);
}

TEST(StableDiffusionPipelineGolden, Sd2VPredictionDdimMatchesReference) {
  auto folder = test::golden_dir() / "sd2";
  DOPPEL_REQUIRE_PATH(folder / "diffusers");
  auto pipeline = load_golden("sd2", "diffusers");
  EXPECT_EQ(pipeline.scheduler_config().prediction_type, PredictionType::kVPrediction);
  expect_txt2img_parity(pipeline,
                        (folder / "goldens" / "txt2img_ddim_vpred_6steps.safetensors").string(),
                        "ddim", false, 6);
}

TEST(StableDiffusionPipeline, EachImageDependsOnlyOnItsSeed) {
  auto pipeline = tiny_pipeline();
  GenerationRequest request = tiny_request();
  request.batch_size = 2;
  auto batch = pipeline.generate(request);
  ASSERT_EQ(batch.size(), 2u);
  EXPECT_EQ(batch[1].seed, 12u);
  EXPECT_NE(batch[0].image.rgb, batch[1].image.rgb);
  GenerationRequest again = tiny_request();
  again.seed = 12;
  EXPECT_EQ(pipeline.generate(again).front().image.rgb, batch[1].image.rgb);
  const GenerationParameters& p = batch[1].parameters;
  EXPECT_EQ(p.prompt, request.prompt);
  EXPECT_EQ(p.get("Seed").value(), "12");
  EXPECT_EQ(p.get("Sampler").value(), "Euler a");
  EXPECT_EQ(p.get("Size").value(), "64x64");
}

TEST(StableDiffusionPipeline, Img2ImgStaysCloserToTheInitImageAtLowStrength) {
  auto pipeline = tiny_pipeline();
  GenerationRequest request = tiny_request();
  request.sampler = "ddim";
  request.steps = 10;
  Image init;
  init.width = init.height = 64;
  init.rgb.assign(64 * 64 * 3, 200);
  request.init_image = init;
  auto distance = [&](double strength) {
    request.strength = strength;
    auto out = pipeline.generate(request).front();
    EXPECT_TRUE(out.parameters.get("Denoising strength").has_value());
    double sum = 0;
    for (size_t i = 0; i < out.image.rgb.size(); ++i)
      sum += std::abs(double(out.image.rgb[i]) - double(init.rgb[i]));
    return sum / out.image.rgb.size();
  };
  EXPECT_LT(distance(0.3), distance(1.0));
}

TEST(StableDiffusionPipeline, RejectsBadRequestsWithClearErrors) {
  auto pipeline = tiny_pipeline();
  auto with = [&](auto change) {
    GenerationRequest request = tiny_request();
    change(request);
    return code_of([&] { pipeline.generate(request); });
  };
  EXPECT_EQ(with([](auto& r) { r.width = 60; }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(with([](auto& r) { r.steps = 0; }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(with([](auto& r) { r.sampler = "nonsense"; }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(with([](auto& r) {
              r.init_image = Image{8, 8, std::vector<uint8_t>(192, 0)};
              r.strength = 0;
            }),
            ErrorCode::kInvalidArgument);
  // The message says what to use instead (and the size must be refused at all).
  std::string message;
  GenerationRequest request = tiny_request();
  request.width = 100;
  EXPECT_EQ(code_of([&] { pipeline.generate(request); }, &message), ErrorCode::kInvalidArgument);
  EXPECT_NE(message.find("try 96 or 104"), std::string::npos) << message;
}

TEST(StableDiffusionPipeline, LongPromptsAreChunkedNotRejected) {
  auto pipeline = tiny_pipeline();
  std::string prompt;
  while (prompt.size() < 10000) prompt += "portrait, soft light, ";
  at::Tensor conditioning = pipeline.encode_prompt(prompt);
  EXPECT_EQ(conditioning.size(1) % 77, 0);
  EXPECT_GT(conditioning.size(1), 77 * 10);
  auto [negative, positive] = pipeline.encode_prompt_pair(prompt, "");
  EXPECT_EQ(negative.sizes(), positive.sizes());  // the negative is padded with empty chunks
}

// Tiled VAE decode/encode: automatic only above kWholeVaePixels; forced tiles give the same
// size and a close picture; one tile covering everything is the whole decode exactly.
TEST(StableDiffusionPipeline, TiledVaeIsUsedWhenAskedAndStaysClose) {
  auto pipeline = tiny_pipeline();
  GenerationRequest request = tiny_request();
  request.width = 128;
  request.height = 64;
  const Image whole = pipeline.generate(request).front().image;
  request.tiled_vae = true;
  request.vae_tiling = {8, 4};  // 16x8 latents: several tiles
  const Image tiled = pipeline.generate(request).front().image;
  ASSERT_EQ(tiled.width, 128);
  EXPECT_NE(tiled.rgb, whole.rgb);
  double difference = 0;
  for (size_t i = 0; i < whole.rgb.size(); ++i)
    difference += std::abs(double(tiled.rgb[i]) - double(whole.rgb[i]));
  EXPECT_LT(difference / whole.rgb.size(), 40.0);  // same picture, tile context differs
  request.vae_tiling = {16, 4};                    // one tile covers the 16x8 latents
  EXPECT_EQ(pipeline.generate(request).front().image.rgb, whole.rgb);
  // img2img encodes through the tiles too.
  request.vae_tiling = {8, 4};
  request.init_image = whole;
  request.strength = 0.5;
  EXPECT_EQ(pipeline.generate(request).front().image.width, 128);
  request.vae_tiling = {8, 8};
  EXPECT_THROW(pipeline.generate(request), Error);
}

TEST(StableDiffusionPipeline, NanDuringSamplingIsANumericalError) {
  StableDiffusionCheckpoint model = make_tiny_stable_diffusion(7);
  {
    at::NoGradGuard no_grad;
    model.unet->named_parameters()["out.2.bias"].fill_(std::numeric_limits<float>::quiet_NaN());
  }
  StableDiffusionPipeline pipeline(std::move(model), test_tokenizer(), "nan");
  EXPECT_EQ(code_of([&] { pipeline.generate(tiny_request()); }), ErrorCode::kNumerical);
}

GenerationRequest tiny_hires_request(double strength) {
  GenerationRequest request = tiny_request();
  request.sampler = "ddim";
  request.steps = 10;
  request.hires = HiresFix{};
  request.hires->scale = 2;
  request.hires->denoising_strength = strength;
  return request;
}

TEST(HiresFix, SizesFollowA1111Rounding) {
  EXPECT_EQ(hires_size(512, 2), 1024);
  EXPECT_EQ(hires_size(512, 1.5), 768);
  EXPECT_EQ(hires_size(500, 1.3), 648);  // int(650) down to a multiple of 8
  EXPECT_EQ(hires_size(64, 1), 64);
}

TEST(HiresFix, MakesTheLargerImageAndRecordsItAsA1111Does) {
  auto pipeline = tiny_pipeline();
  GeneratedImage image = pipeline.generate(tiny_hires_request(0.6)).front();
  EXPECT_EQ(image.image.width, 128);
  EXPECT_EQ(image.image.height, 128);
  const GenerationParameters& p = image.parameters;
  EXPECT_EQ(p.get("Size").value(), "64x64");  // A1111 records the first pass's size
  EXPECT_EQ(p.get("Denoising strength").value(), "0.6");
  EXPECT_EQ(p.get("Hires upscale").value(), "2");
  EXPECT_EQ(p.get("Hires upscaler").value(), "Latent");
  EXPECT_FALSE(p.get("Hires steps").has_value());  // 0: the sampling steps
  // Reproducible from the seed alone, as every image is.
  EXPECT_EQ(pipeline.generate(tiny_hires_request(0.6)).front().image.rgb, image.image.rgb);
}

// The whole algorithm, spelled out with the pipeline's public pieces: the first pass as
// txt2img, its latents upscaled bilinearly, then img2img at the strength with noise drawn from
// the image's seed again (A1111's order).
TEST(HiresFix, IsTheFirstPassUpscaledInLatentSpaceThenDenoisedFromTheSameSeed) {
  auto pipeline = tiny_pipeline();
  const GenerationRequest request = tiny_hires_request(0.5);
  const Image made = pipeline.generate(request).front().image;

  c10::InferenceMode inference;
  const PromptConditioning conditioning =
      pipeline.condition_prompts(request.prompt, request.negative_prompt, request.steps);
  const int64_t factor = pipeline.model().vae->config().downscale_factor();
  const int64_t channels = pipeline.model().unet->config().out_channels;
  const auto on_device = at::TensorOptions().device(pipeline.device());
  const SamplingPlan first = make_sampling_plan("ddim", pipeline.scheduler_config(), 10);
  Generator generator(request.seed);
  at::Tensor latents = scale_initial_noise(
      first, generator.randn({1, channels, 64 / factor, 64 / factor}, on_device));
  latents = sample(first, pipeline.guided_model(conditioning, 7.0, first), latents, generator);
  const at::Tensor upscaled = at::upsample_bilinear2d(latents, {128 / factor, 128 / factor}, false);
  const SamplingPlan second = first.truncated_for_strength(0.5);
  Generator again(request.seed);
  const at::Tensor noise = again.randn(upscaled.sizes().vec(), on_device);
  latents = sample(second, pipeline.guided_model(conditioning, 7.0, second),
                   add_noise(second, upscaled, noise), again);
  EXPECT_EQ(made.rgb, tensor_to_images(pipeline.decode_latents(latents)).front().rgb);
}

TEST(HiresFix, EveryUpscalerMakesItsOwnLargerImage) {
  auto pipeline = tiny_pipeline();
  std::set<std::vector<uint8_t>> different;
  for (const std::string upscaler :
       {"Latent", "Latent (nearest)", "Latent (bicubic)", "Lanczos", "Nearest"}) {
    GenerationRequest request = tiny_hires_request(0.5);
    request.steps = 4;
    request.hires->upscaler = upscaler;
    const GeneratedImage image = pipeline.generate(request).front();
    EXPECT_EQ(image.image.width, 128) << upscaler;
    EXPECT_EQ(image.parameters.get("Hires upscaler").value(), upscaler);
    different.insert(image.image.rgb);
  }
  EXPECT_EQ(different.size(), 5u);
}

TEST(HiresFix, ProgressIsOneSamplingStageOverBothPasses) {
  auto pipeline = tiny_pipeline();
  GenerationRequest request = tiny_hires_request(0.5);
  request.hires->steps = 6;  // second pass: 6 steps at strength 0.5 -> 3 model calls
  std::vector<ProgressEvent> sampling;
  pipeline.generate(request, [&](const ProgressEvent& event) {
    if (event.stage == "sampling") sampling.push_back(event);
    return true;
  });
  // One event as sampling starts, then one per model call: 10 + 3, counted as one stage.
  ASSERT_EQ(sampling.size(), 14u);
  for (size_t i = 0; i < sampling.size(); ++i) {
    EXPECT_EQ(sampling[i].step, static_cast<int64_t>(i));
    EXPECT_EQ(sampling[i].total, 13);
    if (i > 0) {
      EXPECT_GE(sampling[i].elapsed_seconds, sampling[i - 1].elapsed_seconds);
    }
  }
  EXPECT_EQ(pipeline.generate(request).front().parameters.get("Hires steps").value(), "6");
}

TEST(HiresFix, RejectsWhatItCannotDoWithClearErrors) {
  auto pipeline = tiny_pipeline();
  auto message = [&](auto change) {
    GenerationRequest request = tiny_hires_request(0.5);
    change(request);
    try {
      pipeline.generate(request);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      return std::string(e.what());
    }
    ADD_FAILURE() << "expected an error";
    return std::string();
  };
  EXPECT_NE(message([](auto& r) { r.hires->scale = 5; }).find("between 1 and 4"),
            std::string::npos);
  EXPECT_NE(message([](auto& r) { r.hires->denoising_strength = 0; }).find("(0, 1]"),
            std::string::npos);
  EXPECT_NE(message([](auto& r) { r.hires->upscaler = "ESRGAN"; }).find("Lanczos"),
            std::string::npos);
  EXPECT_NE(message([](auto& r) {
              r.init_image = Image{64, 64, std::vector<uint8_t>(12288, 0)};
            }).find("text-to-image"),
            std::string::npos);
  EXPECT_NE(message([](auto& r) {
              r.width = 4096;
              r.hires->scale = 3;
            }).find("8192"),
            std::string::npos);
}

}  // namespace
}  // namespace doppel

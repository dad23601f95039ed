// ControlNet in the pipeline: the reference's StableDiffusionControlNetPipeline run
// (golden/controlnet), step ranges, several ControlNets, hires fix, metadata, bad requests,
// and the canny preprocessor.
#include <c10/core/InferenceMode.h>

#include <gtest/gtest.h>

#include "diffusion/diffusion_test_support.hpp"
#include "doppel/checkpoint/control_net.hpp"
#include "doppel/checkpoint/tiny_model.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/safetensors.hpp"
#include "doppel/diffusion/control_guidance.hpp"
#include "doppel/diffusion/control_preprocessors.hpp"
#include "doppel/diffusion/stable_diffusion_pipeline.hpp"
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

using test::code_of;
using test::test_tokenizer;

namespace fs = std::filesystem;

TEST(ControlNetPipelineGolden, DdimWithControlNetMatchesReference) {
  const fs::path golden_path =
      test::golden_dir() / "controlnet" / "goldens" / "txt2img_ddim_control0.8.safetensors";
  DOPPEL_REQUIRE_PATH(golden_path);
  DOPPEL_REQUIRE_PATH(test::golden_dir() / "sd1" / "diffusers");
  at::set_num_threads(2);
  ModelLoadOptions options;
  options.path = test::golden_dir() / "sd1" / "diffusers";
  options.compute_hash = false;
  StableDiffusionPipeline pipeline(load_stable_diffusion(options), test_tokenizer(), "sd1");
  SafetensorsFile golden = SafetensorsFile::open(golden_path);

  ControlNetLoadOptions load;
  load.path = test::golden_dir() / "controlnet" / "diffusers";
  load.base = pipeline.model().unet->config();
  ControlInput control;
  control.model = load_control_net(load).model;
  control.image = read_image(test::golden_dir() / "controlnet" / "goldens" / "control_image.png");
  control.scale = 0.8;
  // The PNG holds the reference's control image to within its 8-bit rounding.
  const double image_rounding =
      (control_image_tensor(control.image) - golden.tensor("control_image"))
          .abs()
          .max()
          .item<double>();
  EXPECT_LE(image_rounding, 0.5 / 255 + 1e-7);
  std::printf("[ parity   ] control image PNG vs reference tensor: max abs %.3g\n", image_rounding);

  const PromptConditioning conditioning = pipeline.condition_prompts(kPrompt, kNegative, 10);
  const SamplingPlan plan = make_sampling_plan("ddim", pipeline.scheduler_config(), 10);
  const ControlGuidance controls({control}, 64, 64, pipeline.device());
  UNetConditioning extra;
  extra.controls = controls;  // copies share the call counts
  Generator generator(1234);
  at::Tensor latents = sample(plan, pipeline.guided_model(conditioning, 7.5, plan, extra),
                              scale_initial_noise(plan, golden.tensor("initial_noise")), generator);
  EXPECT_EQ(controls.calls(), (std::vector<int64_t>{10}));
  const double latent_error = relative_difference(latents, golden.tensor("final_latents"));
  EXPECT_LT(latent_error, 1e-4);
  const at::Tensor decoded = pipeline.decode_latents(latents);
  const double image_error =
      (decoded.div(2).add(0.5).clamp(0, 1) - golden.tensor("image").permute({0, 3, 1, 2}))
          .abs()
          .max()
          .item<double>();
  EXPECT_LT(image_error, 1e-4);
  Image pixels = tensor_to_images(decoded).front();
  const at::Tensor ours = at::from_blob(pixels.rgb.data(), {64, 64, 3}, at::kByte).to(at::kInt);
  const at::Tensor theirs = golden.tensor("image_uint8").reshape({64, 64, 3}).to(at::kInt);
  const at::Tensor differ = (ours - theirs).abs();
  EXPECT_LE(differ.max().item<int>(), 1);
  std::printf(
      "[ parity   ] controlnet ddim 10 steps: final latents rel %.3g (max|golden| %.1f), image "
      "abs %.3g, %lld uint8 pixels differ by 1\n",
      latent_error, golden.tensor("final_latents").abs().max().item<double>(), image_error,
      static_cast<long long>(differ.gt(0).sum().item<int64_t>()));
}

ControlNetModel tiny_control_net(uint64_t seed, std::vector<int64_t> widths = {32, 64}) {
  ControlNetConfig config;
  config.unet = make_tiny_stable_diffusion(7).unet->config();
  config.unet.block_out_channels = std::move(widths);
  config.hint_channels = {16, 16, 32, 32};
  ControlNetModel model(config);
  layers::randomize_parameters(*model, seed);
  return model;
}

Image gradient_image(int width, int height) {
  Image image;
  image.width = width;
  image.height = height;
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < 3; ++c)
        image.rgb.push_back(static_cast<uint8_t>((x * 255 / width + y * 3 + c * 60) % 256));
  return image;
}

GenerationRequest tiny_request() {
  GenerationRequest request;
  request.prompt = "a portrait of a person";
  request.negative_prompt = "blurry";
  request.width = request.height = 64;
  request.steps = 10;
  request.sampler = "ddim";
  request.seed = 5;
  return request;
}

ControlInput tiny_control(uint64_t seed, double scale = 1.0) {
  ControlInput control;
  control.model = tiny_control_net(seed);
  control.image = gradient_image(64, 64);
  control.scale = scale;
  control.model_name = "tiny [00000000]";
  return control;
}

TEST(ControlNetPipeline, GuidanceStartAndEndSelectTheSteps) {
  StableDiffusionPipeline pipeline = tiny_pipeline();
  ControlInput middle = tiny_control(1);
  middle.guidance_start = 0.3;
  middle.guidance_end = 0.6;
  ControlInput whole = tiny_control(2);
  c10::InferenceMode inference;
  const PromptConditioning conditioning = pipeline.condition_prompts("portrait", "", 10);
  for (const std::string sampler : {"ddim", "pndm", "euler_a"}) {
    const SamplingPlan plan = make_sampling_plan(sampler, pipeline.scheduler_config(), 10);
    const ControlGuidance controls({middle, whole}, 64, 64, pipeline.device());
    UNetConditioning extra;
    extra.controls = controls;
    Generator generator(3);
    sample(plan, pipeline.guided_model(conditioning, 7.0, plan, extra),
           scale_initial_noise(plan, generator.randn({1, 4, 8, 8})), generator);
    // Steps 3, 4, 5, 6 of 10 (A1111: start <= step / steps <= end); PNDM's repeated
    // warm-up call belongs to step 1, outside the range.
    EXPECT_EQ(controls.calls()[0], 4) << sampler;
    EXPECT_EQ(controls.calls()[1], plan.model_calls()) << sampler;
  }
  // img2img at strength 0.5 runs steps 5..9 of the schedule: 5 and 6 are in range.
  const SamplingPlan img2img =
      make_sampling_plan("ddim", pipeline.scheduler_config(), 10).truncated_for_strength(0.5);
  const ControlGuidance controls({middle}, 64, 64, pipeline.device());
  UNetConditioning extra;
  extra.controls = controls;
  Generator generator(3);
  sample(img2img, pipeline.guided_model(conditioning, 7.0, img2img, extra),
         generator.randn({1, 4, 8, 8}), generator);
  EXPECT_EQ(controls.calls()[0], 2);
}

TEST(ControlNetPipeline, SeveralControlNetsAddTheirResiduals) {
  ControlInput a = tiny_control(1, 0.7);
  ControlInput b = tiny_control(2, 1.2);
  const at::Tensor x = at::randn({2, 4, 8, 8});
  const at::Tensor t = at::tensor({300.0f});
  const at::Tensor context = at::randn({2, 77, 32});
  c10::InferenceMode inference;
  const UNetExtraInputs both =
      ControlGuidance({a, b}, 64, 64, at::kCPU).residuals(x, t, context, 0.5);
  const UNetExtraInputs only_a =
      ControlGuidance({a}, 64, 64, at::kCPU).residuals(x, t, context, 0.5);
  const UNetExtraInputs only_b =
      ControlGuidance({b}, 64, 64, at::kCPU).residuals(x, t, context, 0.5);
  ASSERT_EQ(both.skip_residuals.size(), 6u);
  for (size_t i = 0; i < 6; ++i)
    EXPECT_TRUE(at::allclose(both.skip_residuals[i],
                             only_a.skip_residuals[i] + only_b.skip_residuals[i], 1e-5, 1e-6));
  EXPECT_TRUE(at::allclose(both.middle_residual, only_a.middle_residual + only_b.middle_residual,
                           1e-5, 1e-6));
  // Outside every range: no residuals at all (the UNet runs plain).
  ControlInput late = a;
  late.guidance_start = 0.8;
  EXPECT_TRUE(ControlGuidance({late}, 64, 64, at::kCPU)
                  .residuals(x, t, context, 0.5)
                  .skip_residuals.empty());
}

TEST(ControlNetPipeline, WeightZeroGivesThePlainImageAndMetadataRecordsIt) {
  StableDiffusionPipeline pipeline = tiny_pipeline();
  GenerationRequest request = tiny_request();
  const Image plain = pipeline.generate(request).front().image;
  ControlInput control = tiny_control(1, 0.0);
  control.image = gradient_image(50, 30);  // another size: resized, not an error
  control.preprocessor = "canny";
  request.controls.push_back(control);
  const GeneratedImage steered_off = pipeline.generate(request).front();
  EXPECT_EQ(steered_off.image.rgb, plain.rgb);
  EXPECT_EQ(steered_off.parameters.get("ControlNet 0").value_or(""),
            "Module: canny, Model: tiny [00000000], Weight: 0, Resize Mode: Just Resize, "
            "Guidance Start: 0, Guidance End: 1");
  EXPECT_NE(steered_off.parameters.to_text().find(
                "ControlNet 0: \"Module: canny, Model: tiny [00000000], Weight: 0,"),
            std::string::npos)
      << steered_off.parameters.to_text();

  request.controls.front().scale = 1.0;
  request.controls.push_back(tiny_control(2, 0.5));
  const GeneratedImage steered = pipeline.generate(request).front();
  EXPECT_NE(steered.image.rgb, plain.rgb);
  EXPECT_TRUE(steered.parameters.get("ControlNet 1").has_value());
}

TEST(ControlNetPipeline, HiresFixAndImg2ImgRunWithControls) {
  StableDiffusionPipeline pipeline = tiny_pipeline();
  GenerationRequest request = tiny_request();
  request.steps = 4;
  request.controls.push_back(tiny_control(1, 0.8));
  request.hires = HiresFix{1.5, 0.5, 2, "Latent"};
  const GeneratedImage hires = pipeline.generate(request).front();
  EXPECT_EQ(hires.image.width, 96);
  EXPECT_EQ(hires.image.height, 96);
  request.hires.reset();
  request.init_image = gradient_image(64, 64);
  request.strength = 0.5;
  EXPECT_EQ(pipeline.generate(request).front().image.width, 64);
}

TEST(ControlNetPipeline, BadControlsAreClearErrorsBeforeAnyWork) {
  StableDiffusionPipeline pipeline = tiny_pipeline();
  GenerationRequest request = tiny_request();
  request.controls.push_back(tiny_control(1));
  request.controls.front().guidance_start = 0.7;
  request.controls.front().guidance_end = 0.2;
  std::string message;
  EXPECT_EQ(code_of([&] { pipeline.generate(request); }, &message), ErrorCode::kInvalidArgument);
  EXPECT_NE(message.find("ControlNet 0"), std::string::npos) << message;
  EXPECT_NE(message.find("start < end"), std::string::npos) << message;

  request.controls.front() = tiny_control(1);
  request.controls.front().model = tiny_control_net(3, {32, 32});  // made for another UNet
  EXPECT_EQ(code_of([&] { pipeline.generate(request); }, &message), ErrorCode::kInvalidArgument);
  EXPECT_NE(message.find("different model"), std::string::npos) << message;

  request.controls.front() = tiny_control(1);
  request.controls.front().image = Image{};
  EXPECT_EQ(code_of([&] { pipeline.generate(request); }, &message), ErrorCode::kInvalidArgument);
  EXPECT_NE(message.find("control image"), std::string::npos) << message;
}

TEST(ControlPreprocessors, CannyDrawsWhiteEdgesOnBlack) {
  Image image;
  image.width = image.height = 64;
  image.rgb.assign(64 * 64 * 3, 20);
  for (int y = 16; y < 48; ++y)
    for (int x = 16; x < 48; ++x)
      for (int c = 0; c < 3; ++c) image.rgb[(y * 64 + x) * 3 + c] = 230;
  const Image edges = canny_edge_map(image);
  ASSERT_EQ(edges.width, 64);
  ASSERT_EQ(edges.height, 64);
  ASSERT_EQ(edges.rgb.size(), image.rgb.size());
  int white = 0;
  for (int y = 0; y < 64; ++y) {
    for (int x = 0; x < 64; ++x) {
      const uint8_t* pixel = &edges.rgb[(y * 64 + x) * 3];
      ASSERT_TRUE(pixel[0] == 0 || pixel[0] == 255);
      ASSERT_EQ(pixel[0], pixel[1]);
      ASSERT_EQ(pixel[0], pixel[2]);
      if (pixel[0] == 0) continue;
      ++white;
      // Every edge pixel lies on the square's border.
      const bool near_border = (std::abs(x - 16) <= 1 || std::abs(x - 47) <= 1 ||
                                std::abs(y - 16) <= 1 || std::abs(y - 47) <= 1);
      EXPECT_TRUE(near_border) << x << "," << y;
    }
  }
  EXPECT_GE(white, 4 * 28);  // the whole outline
  // A flat image has no edges.
  Image flat = image;
  flat.rgb.assign(flat.rgb.size(), 128);
  const Image none = canny_edge_map(flat);
  EXPECT_EQ(std::count(none.rgb.begin(), none.rgb.end(), 0), static_cast<long>(none.rgb.size()));
  EXPECT_THROW(canny_edge_map(Image{}), Error);
}

}  // namespace
}  // namespace doppel

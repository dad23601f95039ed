// Inpainting and outpainting: the mask helpers (A1111's preparation), latent blending under
// every sampler, the pipeline on a tiny model (ordinary and 9-channel), and parity of the
// 9-channel path with diffusers' StableDiffusionInpaintPipeline (golden/inpaint).
#include "doppel/diffusion/inpainting.hpp"

#include <c10/core/InferenceMode.h>

#include <gtest/gtest.h>

#include "doppel/checkpoint/tiny_model.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/safetensors.hpp"
#include "doppel/diffusion/stable_diffusion_pipeline.hpp"
#include "doppel/models/layers.hpp"
#include "support/error_code.hpp"
#include "support/shared_data.hpp"
#include "support/test_images.hpp"
#include "support/test_tokenizer.hpp"

namespace doppel {
namespace {

using test::pixel;

using test::code_of;
using test::test_tokenizer;

// A black mask with a white rectangle [x1, x2) x [y1, y2).
Image rectangle_mask(int width, int height, int x1, int y1, int x2, int y2) {
  Image mask = test::solid_image(width, height, 0, 0, 0);
  for (int y = y1; y < y2; ++y)
    for (int x = x1; x < x2; ++x) std::fill_n(&mask.rgb[(size_t(y) * width + x) * 3], 3, 255);
  return mask;
}

// A picture with structure, so changes are visible.
Image gradient(int width, int height) {
  Image image = test::solid_image(width, height, 0, 0, 0);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      uint8_t* p = &image.rgb[(size_t(y) * width + x) * 3];
      p[0] = static_cast<uint8_t>(x * 255 / width);
      p[1] = static_cast<uint8_t>(y * 255 / height);
      p[2] = static_cast<uint8_t>((x + y) % 256);
    }
  return image;
}

bool same_pixel(const Image& a, const Image& b, int x, int y) {
  return std::equal(pixel(a, x, y), pixel(a, x, y) + 3, pixel(b, x, y));
}

TEST(InpaintMask, LuminanceBlurAndBounds) {
  Image colours = test::solid_image(3, 1, 0, 0, 0);
  std::fill_n(&colours.rgb[3], 3, 255);
  colours.rgb[6] = 255;  // pure red
  const Mask mask = mask_from_image(colours);
  EXPECT_EQ(mask.values, (std::vector<uint8_t>{0, 255, 76}));  // PIL "L" of red is 76

  const Mask square = mask_from_image(rectangle_mask(64, 64, 24, 24, 40, 40));
  EXPECT_EQ(blur_mask(square, 0).values, square.values);
  const Mask blurred = blur_mask(square, 4);
  EXPECT_GT(blurred.values[32 * 64 + 32], 230);  // two sigmas from every edge: nearly full
  EXPECT_GT(blurred.values[32 * 64 + 20], 0);    // the blur reaches outside the square
  EXPECT_LT(blurred.values[32 * 64 + 24], 255);
  EXPECT_EQ(blurred.values[32 * 64 + 20], blurred.values[32 * 64 + 43]);  // symmetric

  const auto bounds = mask_bounds(square, 8);
  ASSERT_TRUE(bounds.has_value());
  EXPECT_EQ(bounds->x1, 16);
  EXPECT_EQ(bounds->y1, 16);
  EXPECT_EQ(bounds->x2, 48);
  EXPECT_EQ(bounds->y2, 48);
  const auto clipped = mask_bounds(square, 100);
  EXPECT_EQ(clipped->x1, 0);
  EXPECT_EQ(clipped->x2, 64);
  EXPECT_FALSE(mask_bounds(mask_from_image(test::solid_image(8, 8, 0, 0, 0)), 4).has_value());
}

TEST(InpaintMask, CropRegionGrowsToTheProcessingAspectInsideTheImage) {
  // A tall 10x40 box in a 100x100 image, processed square: it becomes 40x40, centred.
  PixelRegion tall{45, 30, 55, 70};
  PixelRegion square = expand_to_aspect(tall, 64, 64, 100, 100);
  EXPECT_EQ(square.width(), 40);
  EXPECT_EQ(square.height(), 40);
  EXPECT_EQ(square.x1, 30);
  // Near the right edge it moves left instead of leaving the image.
  PixelRegion edge = expand_to_aspect(PixelRegion{90, 30, 100, 70}, 64, 64, 100, 100);
  EXPECT_EQ(edge.x2, 100);
  EXPECT_EQ(edge.width(), 40);
  // Wide boxes grow in height.
  PixelRegion wide = expand_to_aspect(PixelRegion{0, 0, 80, 20}, 64, 32, 100, 100);
  EXPECT_EQ(wide.height(), 40);
  EXPECT_EQ(wide.y1, 0);
}

TEST(InpaintMask, CompositeKeepsTheOriginalOutsideTheMask) {
  const Image original = gradient(32, 32);
  const Image generated = test::solid_image(16, 16, 10, 200, 30);
  const Mask overlay = mask_from_image(rectangle_mask(32, 32, 8, 8, 16, 16));
  const Image result = composite_inpainted(original, generated, overlay, PixelRegion{8, 8, 24, 24});
  EXPECT_TRUE(same_pixel(result, original, 4, 4));
  EXPECT_TRUE(same_pixel(result, original, 20, 20));  // in the pasted box but not masked
  EXPECT_EQ(pixel(result, 10, 10)[1], 200);
  // Half-white overlay blends half and half.
  Mask half = overlay;
  std::fill(half.values.begin(), half.values.end(), 128);
  const Image blended =
      composite_inpainted(original, test::solid_image(32, 32, 255, 255, 255), half);
  EXPECT_NEAR(pixel(blended, 0, 0)[0], (255 * 128 + pixel(original, 0, 0)[0] * 127) / 255.0, 1);
  EXPECT_EQ(code_of([&] { composite_inpainted(original, generated, mask_from_image(generated)); }),
            ErrorCode::kInvalidArgument);
}

TEST(Outpaint, CanvasGrowsToMultiplesOfEightWithTheOriginalInTheMiddle) {
  const Image original = gradient(60, 50);
  const OutpaintCanvas canvas = make_outpaint_canvas(original, {16, 0, 30, 0}, 8);
  EXPECT_EQ(canvas.image.width % 8, 0);
  EXPECT_EQ(canvas.image.height % 8, 0);
  EXPECT_EQ(canvas.image.width, 16 + 60 + 36);  // the right margin took the rounding (30 -> 36)
  EXPECT_EQ(canvas.margins.right, 36);
  EXPECT_EQ(canvas.image.height, 56);  // bottom grew by 6 to reach a multiple of 8
  EXPECT_EQ(canvas.margins.bottom, 6);
  for (int y = 0; y < original.height; ++y)
    for (int x = 0; x < original.width; x += 7)
      ASSERT_TRUE(std::equal(pixel(original, x, y), pixel(original, x, y) + 3,
                             pixel(canvas.image, x + 16, y)));
  auto masked = [&](int x, int y) { return canvas.mask.values[size_t(y) * canvas.mask.width + x]; };
  EXPECT_EQ(masked(0, 10), 255);        // new on the left
  EXPECT_EQ(masked(16 + 4, 10), 255);   // overlap into the original
  EXPECT_EQ(masked(16 + 30, 10), 0);    // the original's middle is kept
  EXPECT_EQ(masked(16 + 59, 10), 255);  // overlap on the right
  EXPECT_EQ(masked(16 + 30, 0), 0);     // top had no margin: no overlap there
  // The fill continues the edge colours: left margin near the left edge's red channel.
  EXPECT_NEAR(pixel(canvas.image, 12, 25)[0], pixel(original, 0, 25)[0], 16);

  EXPECT_EQ(code_of([&] { make_outpaint_canvas(original, {}); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] {
              make_outpaint_canvas(original, {-1, 0, 8, 0});
            }),
            ErrorCode::kInvalidArgument);
}

TEST(InpaintPlanning, WholePictureAndOnlyMasked) {
  const Image init = gradient(96, 80);
  InpaintOptions options;
  options.mask = rectangle_mask(96, 80, 40, 30, 56, 50);
  options.mask_blur = 2;
  const InpaintPlan whole = plan_inpaint(init, options, 64, 64);
  EXPECT_EQ(whole.image.width, 64);
  EXPECT_EQ(whole.original.width, 64);
  EXPECT_FALSE(whole.region.has_value());
  EXPECT_EQ(whole.overlay.width, 64);
  // The overlay is the mask doubled.
  for (size_t i = 0; i < whole.mask.values.size(); ++i)
    ASSERT_EQ(whole.overlay.values[i], std::min(whole.mask.values[i] * 2, 255));

  options.only_masked = true;
  options.only_masked_padding = 8;
  const InpaintPlan crop = plan_inpaint(init, options, 64, 64);
  ASSERT_TRUE(crop.region.has_value());
  EXPECT_EQ(crop.region->width(), crop.region->height());  // grown to the square's aspect
  EXPECT_EQ(crop.original.width, 96);                      // pasted back at full size
  EXPECT_EQ(crop.overlay.width, 96);
  EXPECT_EQ(crop.image.width, 64);
  EXPECT_EQ(crop.mask.height, 64);

  InpaintOptions empty;
  empty.mask = test::solid_image(96, 80, 0, 0, 0);
  EXPECT_EQ(code_of([&] { plan_inpaint(init, empty, 64, 64); }), ErrorCode::kInvalidArgument);
  options.mask_blur = 65;
  EXPECT_EQ(code_of([&] { plan_inpaint(init, options, 64, 64); }), ErrorCode::kInvalidArgument);
  options.mask_blur = 4;
  options.mask = Image{};
  EXPECT_EQ(code_of([&] { plan_inpaint(init, options, 64, 64); }), ErrorCode::kInvalidArgument);
}

// Under every sampler the blended model predicts exactly the clean latents where the mask
// keeps them and is untouched where it repaints.
TEST(KeepUnmaskedLatents, PredictsTheOriginalWhereTheMaskKeepsIt) {
  at::manual_seed(3);
  const at::Tensor clean = at::randn({1, 4, 8, 8});
  at::Tensor repaint = at::zeros({1, 1, 8, 8});
  repaint.narrow(2, 2, 4).narrow(3, 2, 4).fill_(1);
  for (PredictionType prediction : {PredictionType::kEpsilon, PredictionType::kVPrediction}) {
    SchedulerConfig config = SchedulerConfig::stable_diffusion(prediction);
    for (const char* sampler : {"ddim", "euler", "euler_a", "heun", "dpmpp_2m", "lms", "pndm"}) {
      for (bool karras : {false, true}) {
        if (karras && !find_sampler(sampler).supports_karras) continue;
        SamplerOptions options;
        options.karras = karras;
        const SamplingPlan plan = make_sampling_plan(sampler, config, 6, options);
        at::Tensor raw = at::randn({1, 4, 8, 8});
        ModelFunction model = [raw](const at::Tensor&, const at::Tensor&) { return raw; };
        ModelFunction blended = keep_unmasked_latents(model, plan, clean, repaint);
        const size_t call = 2;
        const double t = plan.timesteps[call];
        double alpha = 0, sigma = 0;
        if (!plan.sigmas.empty()) {
          alpha = 1 / std::sqrt(plan.sigmas[call] * plan.sigmas[call] + 1);
          sigma = plan.sigmas[call] * alpha;
        } else {
          const double a = plan.alphas_cumprod[static_cast<int64_t>(t)].item<double>();
          alpha = std::sqrt(a);
          sigma = std::sqrt(1 - a);
        }
        const at::Tensor input = at::randn({1, 4, 8, 8});
        const at::Tensor out = blended(input, at::full({1}, t, at::kFloat));
        const at::Tensor x0 = prediction == PredictionType::kEpsilon ? (input - out * sigma) / alpha
                                                                     : input * alpha - out * sigma;
        const std::string label =
            std::string(sampler) + (karras ? " karras" : "") + prediction_type_name(prediction);
        EXPECT_LT(((x0 - clean) * (1 - repaint)).abs().max().item<double>(), 1e-4) << label;
        EXPECT_TRUE(at::equal(out * repaint, raw * repaint)) << label;
      }
    }
  }
}

// The tiny model with a 9-channel UNet in place of its own.
StableDiffusionCheckpoint tiny_inpainting_model() {
  StableDiffusionCheckpoint model = make_tiny_stable_diffusion(7);
  UNetConfig config = model.unet->config();
  config.in_channels = 9;
  model.unet = UNetModel(config);
  layers::randomize_parameters(*model.unet, 21);
  model.inpainting = true;
  return model;
}

GenerationRequest inpaint_request(const Image& init) {
  GenerationRequest request;
  request.prompt = "a portrait of a person";
  request.width = request.height = 64;
  request.steps = 4;
  request.sampler = "euler_a";
  request.seed = 5;
  request.init_image = init;
  request.strength = 0.9;
  InpaintOptions inpaint;
  inpaint.mask = rectangle_mask(64, 64, 16, 16, 48, 48);
  inpaint.mask_blur = 2;
  request.inpaint = inpaint;
  return request;
}

// Pixels at least `margin` away from the mask's box keep the init image; the box changes.
void expect_repainted_inside_only(const Image& result, const Image& init, int margin) {
  ASSERT_EQ(result.width, init.width);
  int changed_inside = 0;
  for (int y = 0; y < init.height; ++y)
    for (int x = 0; x < init.width; ++x) {
      const bool far = x < 16 - margin || x >= 48 + margin || y < 16 - margin || y >= 48 + margin;
      if (far) {
        ASSERT_TRUE(same_pixel(result, init, x, y)) << x << "," << y;
      }
      if (x >= 24 && x < 40 && y >= 24 && y < 40 && !same_pixel(result, init, x, y))
        ++changed_inside;
    }
  EXPECT_GT(changed_inside, 200);
}

TEST(InpaintingPipeline, OrdinaryCheckpointRepaintsOnlyTheMask) {
  StableDiffusionPipeline pipeline(make_tiny_stable_diffusion(7), test_tokenizer(), "tiny");
  const Image init = gradient(64, 64);
  for (const char* sampler : {"euler_a", "ddim", "dpmpp_2m"}) {
    GenerationRequest request = inpaint_request(init);
    request.sampler = sampler;
    const GeneratedImage out = pipeline.generate(request).front();
    expect_repainted_inside_only(out.image, init, 8);
    EXPECT_EQ(out.parameters.get("Mask blur").value(), "2");
    EXPECT_EQ(out.parameters.get("Denoising strength").value(), "0.9");
    EXPECT_FALSE(out.parameters.get("Inpaint area").has_value());
  }
  // Same seed, same picture.
  GenerationRequest request = inpaint_request(init);
  EXPECT_EQ(pipeline.generate(request).front().image.rgb,
            pipeline.generate(request).front().image.rgb);
}

TEST(InpaintingPipeline, OnlyMaskedWorksOnTheCropAndKeepsTheImageSize) {
  StableDiffusionPipeline pipeline(make_tiny_stable_diffusion(7), test_tokenizer(), "tiny");
  const Image init = gradient(128, 96);
  GenerationRequest request = inpaint_request(init);
  request.inpaint->mask = rectangle_mask(128, 96, 60, 40, 76, 56);
  request.inpaint->only_masked = true;
  request.inpaint->only_masked_padding = 8;
  const GeneratedImage out = pipeline.generate(request).front();
  ASSERT_EQ(out.image.width, 128);
  ASSERT_EQ(out.image.height, 96);
  int changed = 0;
  for (int y = 0; y < 96; ++y)
    for (int x = 0; x < 128; ++x) {
      const bool far = x < 52 || x >= 84 || y < 32 || y >= 64;
      if (far) {
        ASSERT_TRUE(same_pixel(out.image, init, x, y)) << x << "," << y;
      }
      if (!far && !same_pixel(out.image, init, x, y)) ++changed;
    }
  EXPECT_GT(changed, 100);
  EXPECT_EQ(out.parameters.get("Inpaint area").value(), "Only masked");
  EXPECT_EQ(out.parameters.get("Masked area padding").value(), "8");
  EXPECT_EQ(out.parameters.get("Size").value(), "64x64");
}

TEST(InpaintingPipeline, InpaintingCheckpointInpaintsAndGeneratesFromText) {
  StableDiffusionPipeline pipeline(tiny_inpainting_model(), test_tokenizer(), "tiny-inpaint");
  const Image init = gradient(64, 64);
  for (double strength : {1.0, 0.6}) {
    GenerationRequest request = inpaint_request(init);
    request.strength = strength;
    expect_repainted_inside_only(pipeline.generate(request).front().image, init, 8);
  }
  // Without a mask it paints everything, as A1111 runs txt2img on inpainting models.
  GenerationRequest text_only;
  text_only.prompt = "a portrait";
  text_only.width = text_only.height = 64;
  text_only.steps = 3;
  EXPECT_EQ(pipeline.generate(text_only).front().image.width, 64);
  GenerationRequest hires = text_only;
  hires.hires = HiresFix{};
  EXPECT_EQ(code_of([&] { pipeline.generate(hires); }), ErrorCode::kInvalidArgument);
}

TEST(InpaintingPipeline, OutpaintExtendsTheCanvasAndKeepsTheOriginal) {
  StableDiffusionPipeline pipeline(make_tiny_stable_diffusion(7), test_tokenizer(), "tiny");
  const Image original = gradient(48, 64);
  const OutpaintCanvas canvas = make_outpaint_canvas(original, {0, 0, 16, 0});
  GenerationRequest request = inpaint_request(canvas.image);
  request.width = canvas.image.width;
  request.height = canvas.image.height;
  request.strength = 1.0;
  request.inpaint->mask = mask_to_image(canvas.mask);
  request.inpaint->mask_blur = 4;
  const Image result = pipeline.generate(request).front().image;
  ASSERT_EQ(result.width, 64);
  int changed = 0;
  for (int y = 0; y < 64; ++y) {
    for (int x = 0; x < 24; ++x) ASSERT_TRUE(same_pixel(result, canvas.image, x, y));
    for (int x = 52; x < 64; ++x) changed += !same_pixel(result, canvas.image, x, y);
  }
  EXPECT_GT(changed, 300);
}

TEST(InpaintingPipeline, BadRequestsAreClearErrors) {
  StableDiffusionPipeline pipeline(make_tiny_stable_diffusion(7), test_tokenizer(), "tiny");
  GenerationRequest no_init = inpaint_request(gradient(64, 64));
  no_init.init_image.reset();
  EXPECT_EQ(code_of([&] { pipeline.generate(no_init); }), ErrorCode::kInvalidArgument);
  GenerationRequest black = inpaint_request(gradient(64, 64));
  black.inpaint->mask = test::solid_image(64, 64, 0, 0, 0);
  try {
    pipeline.generate(black);
    ADD_FAILURE() << "an all-black mask must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("white"), std::string::npos) << e.what();
  }
  GenerationRequest padding = inpaint_request(gradient(64, 64));
  padding.inpaint->only_masked_padding = -1;
  EXPECT_EQ(code_of([&] { pipeline.generate(padding); }), ErrorCode::kInvalidArgument);
}

// diffusers' StableDiffusionInpaintPipeline with the 9-channel golden UNet: DDIM, 10 steps,
// CFG 7.5, strength 1, from the saved noise; the masked image's posterior draw from seed 1234.
TEST(InpaintingGolden, NineChannelDdimMatchesReference) {
  const auto golden_path =
      test::golden_dir() / "inpaint" / "goldens" / "inpaint_ddim_10steps.safetensors";
  DOPPEL_REQUIRE_PATH(golden_path);
  ModelLoadOptions options;
  options.path = test::golden_dir() / "sd1" / "diffusers";
  options.compute_hash = false;
  StableDiffusionCheckpoint model = load_stable_diffusion(options);
  const ModelSidecar sidecar = read_diffusers_configs(test::golden_dir() / "sd1" / "diffusers");
  const TensorSource canonical =
      open_checkpoint_tensors(test::golden_dir() / "inpaint" / "diffusers");
  model.unet = load_unet(canonical, ModelFamily::kSd1, &sidecar, at::kFloat, at::kCPU);
  model.inpainting = true;
  StableDiffusionPipeline pipeline(std::move(model),
                                   ClipTokenizer::from_bpe_file(test::golden_dir() / "tokenizer" /
                                                                "bpe_simple_vocab_16e6.txt.gz"),
                                   "inpaint");
  auto golden = SafetensorsFile::open(golden_path);
  c10::InferenceMode inference;

  Generator generator(1234);
  const at::Tensor image = golden.tensor("init_image_01").mul(2).sub(1);
  const at::Tensor conditioning =
      pipeline.inpainting_conditioning(image, golden.tensor("mask_image"), generator);
  const at::Tensor expected_mask = golden.tensor("mask_latent").narrow(0, 0, 1);
  const at::Tensor expected_latents = golden.tensor("masked_image_latents").narrow(0, 0, 1);
  EXPECT_TRUE(at::equal(conditioning.narrow(1, 0, 1), expected_mask));
  const double latent_error =
      (conditioning.narrow(1, 1, 4) - expected_latents).abs().max().item<double>() /
      expected_latents.abs().max().item<double>();
  std::printf("[ parity   ] inpaint masked-image latents            rel %.3g\n", latent_error);
  EXPECT_LT(latent_error, 1e-5);

  auto [negative, positive] = pipeline.encode_prompt_pair(
      "a photograph of an astronaut riding a horse", "blurry, low quality");
  const SamplingPlan plan = make_sampling_plan("ddim", pipeline.scheduler_config(), 10);
  at::Tensor latents = scale_initial_noise(plan, golden.tensor("initial_noise"));
  UNetConditioning extra;
  extra.image_conditioning = conditioning;
  latents = sample(plan, pipeline.guided_model(negative, positive, 7.5, extra), latents, generator);
  const at::Tensor expected = golden.tensor("final_latents");
  const double final_error =
      (latents - expected).abs().max().item<double>() / expected.abs().max().item<double>();
  std::printf("[ parity   ] inpaint ddim 10 final latents          rel %.3g\n", final_error);
  EXPECT_LT(final_error, 1e-4);
  const Image pixels = tensor_to_images(pipeline.decode_latents(latents)).front();
  const at::Tensor ours =
      at::from_blob(const_cast<uint8_t*>(pixels.rgb.data()), {64, 64, 3}, at::kByte).to(at::kInt);
  const at::Tensor theirs = golden.tensor("image_uint8").reshape({64, 64, 3}).to(at::kInt);
  EXPECT_LE((ours - theirs).abs().max().item<int>(), 1);
}

}  // namespace
}  // namespace doppel

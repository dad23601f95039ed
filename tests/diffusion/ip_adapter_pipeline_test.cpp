// IP-Adapter in the pipeline: the nine reference runs of ../shared/golden/ipadapter
// (cases.jsonl: SD1 base, SD1 plus-face, SDXL plus-face at scales 0.6 / 1.0 / 0), generate()
// through the public request, metadata, step ranges, per-block scales and bad requests.
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "doppel/checkpoint/clip_vision.hpp"
#include "doppel/checkpoint/ip_adapter.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/safetensors.hpp"
#include "doppel/diffusion/image_prompt_guidance.hpp"
#include "doppel/diffusion/stable_diffusion_pipeline.hpp"
#include "support/error_code.hpp"
#include "support/shared_data.hpp"

namespace doppel {
namespace {

namespace fs = std::filesystem;
using test::code_of;

fs::path folder() {
  return test::golden_dir() / "ipadapter";
}

ClipTokenizer golden_tokenizer() {
  return ClipTokenizer::from_bpe_file(test::golden_dir() / "tokenizer" /
                                      "bpe_simple_vocab_16e6.txt.gz");
}

StableDiffusionPipeline load_pipeline(const std::string& model_folder) {
  ModelLoadOptions options;
  options.path = folder() / model_folder;
  options.compute_hash = false;
  return StableDiffusionPipeline(load_stable_diffusion(options), golden_tokenizer(), "tiny");
}

IpAdapterInput load_input(const StableDiffusionPipeline& pipeline, const nlohmann::json& c) {
  IpAdapterInput input;
  LoadedIpAdapter adapter = load_ip_adapter(folder() / c["ip_adapter"].get<std::string>(),
                                            pipeline.model().unet->config());
  input.adapter = adapter.model;
  input.model_name = adapter.name + " [" + adapter.short_hash + "]";
  input.encoder = load_clip_vision_encoder(folder() / c["image_encoder"].get<std::string>()).model;
  input.image = read_image(folder() / c["ip_image"].get<std::string>());
  input.scale = c["ip_scale"].get<double>();
  return input;
}

std::vector<nlohmann::json> cases() {
  std::vector<nlohmann::json> all;
  std::ifstream in(folder() / "cases.jsonl");
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) all.push_back(nlohmann::json::parse(line));
  return all;
}

int max_pixel_difference(const Image& image, const at::Tensor& golden_uint8, int64_t* differing) {
  const at::Tensor ours = at::from_blob(const_cast<uint8_t*>(image.rgb.data()),
                                        {image.height, image.width, 3}, at::kByte)
                              .to(at::kInt);
  const at::Tensor difference =
      (ours - golden_uint8.reshape({image.height, image.width, 3}).to(at::kInt)).abs();
  *differing = difference.gt(0).sum().item<int64_t>();
  return difference.max().item<int>();
}

// README "Tolerances": runs ~1e-4 relative on final_latents, 1e-4 absolute on the image,
// image_uint8 +-1 with a handful of pixels differing.
TEST(IpAdapterPipelineGolden, EveryReferenceRunMatches) {
  DOPPEL_REQUIRE_PATH(folder() / "cases.jsonl");
  const auto all = cases();
  ASSERT_EQ(all.size(), 9u);
  for (const nlohmann::json& c : all) {
    const std::string id = c["id"];
    StableDiffusionPipeline pipeline = load_pipeline(c["model"]);
    const SafetensorsFile golden = SafetensorsFile::open(folder() / c["golden"].get<std::string>());
    c10::InferenceMode inference;
    const int64_t steps = c["steps"];
    const PromptConditioning conditioning =
        pipeline.condition_prompts(c["prompt"], c["negative"], steps);
    const SamplingPlan plan = make_sampling_plan(c["sampler"], pipeline.scheduler_config(), steps);
    UNetConditioning extra;
    extra.image_prompts = ImagePromptGuidance({load_input(pipeline, c)}, *pipeline.model().unet);
    Generator generator(c["seed"].get<uint64_t>());
    const at::Tensor latents =
        sample(plan, pipeline.guided_model(conditioning, c["cfg"].get<double>(), plan, extra),
               scale_initial_noise(plan, golden.tensor("initial_noise")), generator);
    const at::Tensor expected = golden.tensor("final_latents");
    const double latent_error =
        (latents - expected).abs().max().item<double>() / expected.abs().max().item<double>();
    const at::Tensor decoded = pipeline.decode_latents(latents);
    const double image_error =
        (decoded.div(2).add(0.5).clamp(0, 1) - golden.tensor("image").permute({0, 3, 1, 2}))
            .abs()
            .max()
            .item<double>();
    int64_t differing = 0;
    const int worst = max_pixel_difference(tensor_to_images(decoded).front(),
                                           golden.tensor("image_uint8"), &differing);
    std::printf(
        "[ parity   ] %-34s final latents rel %.3g, image abs %.3g, uint8 max %d (%lld px)\n",
        id.c_str(), latent_error, image_error, worst, static_cast<long long>(differing));
    EXPECT_LT(latent_error, 1e-4) << id;
    EXPECT_LT(image_error, 1e-4) << id;
    EXPECT_LE(worst, 1) << id;
    EXPECT_LE(differing, 12) << id;
  }
}

GenerationRequest request_for(const nlohmann::json& c) {
  GenerationRequest request;
  request.prompt = c["prompt"];
  request.negative_prompt = c["negative"];
  request.width = c["width"];
  request.height = c["height"];
  request.steps = c["steps"];
  request.guidance_scale = c["cfg"];
  request.sampler = c["sampler"];
  request.seed = c["seed"];
  return request;
}

TEST(IpAdapterPipelineGolden, GenerateThroughTheRequestMatchesTheReferencePng) {
  DOPPEL_REQUIRE_PATH(folder() / "cases.jsonl");
  for (const nlohmann::json& c : cases()) {
    if (c["id"] != "txt2img_sd15_plus_face_ddim8_ip0.6" &&
        c["id"] != "txt2img_sdxl_plus_face_euler6_ip1.0")
      continue;
    StableDiffusionPipeline pipeline = load_pipeline(c["model"]);
    GenerationRequest request = request_for(c);
    request.ip_adapters.push_back(load_input(pipeline, c));
    const GeneratedImage made = pipeline.generate(request).front();
    const Image expected = read_image(folder() / c["expected"].get<std::string>());
    const at::Tensor expected_tensor =
        at::from_blob(const_cast<uint8_t*>(expected.rgb.data()), {64, 64, 3}, at::kByte);
    int64_t differing = 0;
    const int worst = max_pixel_difference(made.image, expected_tensor, &differing);
    std::printf("[ parity   ] generate() %-34s uint8 max %d (%lld px)\n",
                c["id"].get<std::string>().c_str(), worst, static_cast<long long>(differing));
    EXPECT_LE(worst, 1);
    // A1111's ControlNet extension records an IP-Adapter unit like this.
    const std::string text = made.parameters.to_text();
    const std::string module =
        c["family"] == "sdxl" ? "ip-adapter_clip_sdxl_plus_vith" : "ip-adapter_clip_sd15";
    EXPECT_NE(text.find("ControlNet 0: \"Module: " + module +
                        ", Model: " + request.ip_adapters[0].model_name +
                        ", Weight: " + (c["ip_scale"].get<double>() == 1.0 ? "1" : "0.6") +
                        ", Resize Mode: Crop and Resize, Guidance Start: 0, Guidance End: 1\""),
              std::string::npos)
        << text;
  }
}

TEST(IpAdapterPipelineGolden, ScaleZeroIsThePlainPipeline) {
  DOPPEL_REQUIRE_PATH(folder() / "cases.jsonl");
  const nlohmann::json c = cases().front();
  StableDiffusionPipeline pipeline = load_pipeline(c["model"]);
  GenerationRequest request = request_for(c);
  request.steps = 3;
  const Image plain = pipeline.generate(request).front().image;
  IpAdapterInput input = load_input(pipeline, c);
  input.scale = 0;
  request.ip_adapters.push_back(input);
  EXPECT_EQ(pipeline.generate(request).front().image.rgb, plain.rgb);
  request.ip_adapters.front().scale = 1.0;
  EXPECT_NE(pipeline.generate(request).front().image.rgb, plain.rgb);
  // The state of one request does not leak into the next.
  request.ip_adapters.clear();
  EXPECT_EQ(pipeline.generate(request).front().image.rgb, plain.rgb);
}

TEST(IpAdapterPipelineGolden, SteersTheHiresPassAndSeveralImages) {
  DOPPEL_REQUIRE_PATH(folder() / "cases.jsonl");
  const nlohmann::json c = cases()[3];  // plus-face
  StableDiffusionPipeline pipeline = load_pipeline(c["model"]);
  GenerationRequest request = request_for(c);
  request.steps = 3;
  request.hires = HiresFix{1.5, 0.5, 2, "Latent"};
  request.batch_size = 2;
  const std::vector<GeneratedImage> plain = pipeline.generate(request);
  request.ip_adapters.push_back(load_input(pipeline, c));
  const std::vector<GeneratedImage> steered = pipeline.generate(request);
  ASSERT_EQ(steered.size(), 2u);
  EXPECT_EQ(steered[0].image.width, 96);
  for (size_t i = 0; i < 2; ++i) EXPECT_NE(steered[i].image.rgb, plain[i].image.rgb);
  // Image 2 made on its own from its seed is the same (the encoded image is shared, not state).
  GenerationRequest second = request;
  second.batch_size = 1;
  second.seed = steered[1].seed;
  EXPECT_EQ(pipeline.generate(second).front().image.rgb, steered[1].image.rgb);
}

TEST(IpAdapterGuidance, RowsStepRangeAndSeveralAdapters) {
  DOPPEL_REQUIRE_PATH(folder() / "cases.jsonl");
  const auto all = cases();
  StableDiffusionPipeline pipeline = load_pipeline(all.front()["model"]);
  IpAdapterInput late = load_input(pipeline, all.front());
  late.scale = 0.5;
  late.guidance_start = 0.5;
  IpAdapterInput whole = load_input(pipeline, all[3]);  // plus-face
  c10::InferenceMode inference;
  const ImagePromptGuidance guidance({late, whole}, *pipeline.model().unet);
  const size_t layers = pipeline.model().unet->image_prompt_layer_widths().size();
  const auto early = guidance.attention(3, 1, 0.25);
  ASSERT_TRUE(early);
  ASSERT_EQ(early->layers.size(), layers);
  EXPECT_EQ(early->layers[0].size(), 1u);  // only the whole-range adapter
  const auto after = guidance.attention(3, 1, 0.5);
  ASSERT_EQ(after->layers[0].size(), 2u);
  EXPECT_DOUBLE_EQ(after->layers[0][0].scale, 0.5);
  // Row 0 carries the negative's keys, rows 1 and 2 the positive's.
  const at::Tensor key = after->layers[0][0].key;
  ASSERT_EQ(key.size(0), 3);
  EXPECT_TRUE(at::equal(key[1], key[2]));
  EXPECT_FALSE(at::equal(key[0], key[1]));
  const auto positive_only = guidance.attention(2, 0, 0.5);
  EXPECT_TRUE(at::equal(positive_only->layers[0][0].key[0], key[1]));
  // The negatives diffusers builds: LayerNorm(bias) tokens for zero embeds (base), so they
  // are not zero.
  EXPECT_GT(guidance.tokens(0)[0].abs().sum().item<double>(), 0.0);
}

TEST(IpAdapterGuidance, BlockScalesAndPresets) {
  const std::vector<std::string> names = {
      "input_blocks.1.1.transformer_blocks.0.attn2", "input_blocks.2.1.transformer_blocks.0.attn2",
      "output_blocks.3.1.transformer_blocks.0.attn2", "middle_block.1.transformer_blocks.0.attn2",
      "middle_block.1.transformer_blocks.1.attn2"};
  EXPECT_EQ(ip_adapter_layer_scales({}, names), std::vector<double>(5, 1.0));
  EXPECT_EQ(ip_adapter_layer_scales({{"middle_block", 0.5},
                                     {"middle_block.1.transformer_blocks.1", 2.0},
                                     {"input_blocks.2", 1.0}},
                                    names),
            (std::vector<double>{0.0, 1.0, 0.0, 0.5, 2.0}));
  // A block with no cross-attention layer is an error, not silently ignored.
  EXPECT_EQ(code_of([&] {
              ip_adapter_layer_scales({{"input_blocks.4", 1.0}}, names);
            }),
            ErrorCode::kInvalidArgument);
  const auto style = ip_adapter_block_preset("style", UNetConfig::sdxl());
  EXPECT_EQ(style, (std::map<std::string, double>{{"output_blocks.1", 1.0}}));
  EXPECT_EQ(ip_adapter_block_preset("style_and_composition", UNetConfig::sdxl()).size(), 2u);
  EXPECT_EQ(code_of([&] { ip_adapter_block_preset("style", UNetConfig::sd15()); }),
            ErrorCode::kUnsupported);
  EXPECT_EQ(code_of([&] { ip_adapter_block_preset("mood", UNetConfig::sdxl()); }),
            ErrorCode::kInvalidArgument);
}

TEST(IpAdapterGuidance, BadRequestsAreRefusedWithTheirReason) {
  DOPPEL_REQUIRE_PATH(folder() / "cases.jsonl");
  const auto all = cases();
  StableDiffusionPipeline pipeline = load_pipeline(all.front()["model"]);
  const IpAdapterInput good = load_input(pipeline, all.front());
  GenerationRequest request = request_for(all.front());
  request.steps = 2;
  auto refused = [&](IpAdapterInput input, const std::string& words) {
    request.ip_adapters = {input};
    try {
      pipeline.generate(request);
      ADD_FAILURE() << "accepted: " << words;
    } catch (const Error& error) {
      EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(error.what()).find(words), std::string::npos) << error.what();
    }
  };
  IpAdapterInput input = good;
  input.scale = 3;
  refused(input, "weight must be between 0 and 2");
  input = good;
  input.guidance_start = 0.8;
  input.guidance_end = 0.2;
  refused(input, "guidance start and end");
  input = good;
  input.image = Image{};
  refused(input, "reference image");
  input = good;
  input.encoder = nullptr;
  refused(input, "image encoder");
  input = good;
  input.block_scales = {{"output_blocks.99", 1.0}};
  refused(input, "has no cross-attention layer");
  // A plus adapter reads 40-wide hidden states; the base adapter 24-wide embeds. An encoder
  // whose projection is another width is refused before any work.
  ClipVisionConfig other = good.encoder->config();
  other.projection_dim = 10;
  input = good;
  input.encoder = ClipVisionModel(other);
  refused(input, "features");
}

}  // namespace
}  // namespace doppel

// Golden parity of the UNet and the VAE loaded through the checkpoint layer,
// from both layouts (diffusers folder and CompVis single file), for the tiny
// SD1, SD2, SDXL and inpainting models of ../shared/golden (README §2, 6, 7, 8).
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "doppel/checkpoint/stable_diffusion.hpp"
#include "doppel/core/safetensors.hpp"
#include "golden_support.hpp"
#include "support/shared_data.hpp"

namespace doppel {
namespace {

namespace fs = std::filesystem;
using test::expect_close;
using test::golden_dir;
using test::golden_tensor;

using test::kSingleCallBound;

StableDiffusionCheckpoint load(const fs::path& path, std::optional<fs::path> config = {},
                               at::ScalarType dtype = at::kFloat) {
  ModelLoadOptions options;
  options.path = path;
  options.config_path = config;
  options.dtype = dtype;
  options.compute_hash = false;
  return load_stable_diffusion(options);
}

void check_unet_cases(UNetModel& unet, const fs::path& golden_file, int cases,
                      const std::string& label, double bound = kSingleCallBound,
                      int64_t sdxl_time_embed_dim = 0) {
  at::NoGradGuard no_grad;
  const SafetensorsFile goldens = SafetensorsFile::open(golden_file);
  for (int i = 0; i < cases; ++i) {
    const std::string key = cases == 1 ? "" : "case" + std::to_string(i) + ".";
    UNetExtraInputs extra;
    if (sdxl_time_embed_dim > 0) {
      extra.vector_conditioning =
          sdxl_vector_conditioning(golden_tensor(goldens, key + "text_embeds"),
                                   golden_tensor(goldens, key + "time_ids"), sdxl_time_embed_dim);
    }
    at::Tensor out = unet->forward(golden_tensor(goldens, key + "sample"),
                                   golden_tensor(goldens, key + "timestep").to(at::kFloat),
                                   golden_tensor(goldens, key + "encoder_hidden_states"), extra);
    expect_close(out, golden_tensor(goldens, key + "out"), bound, label + " " + key + "out");
  }
}

void check_vae(AutoencoderKL& vae, const std::string& label, double bound = kSingleCallBound) {
  at::NoGradGuard no_grad;
  const SafetensorsFile goldens =
      SafetensorsFile::open(golden_dir() / "sd1/goldens/vae.safetensors");
  for (int i = 0; i < 2; ++i) {
    const std::string decode = "decode" + std::to_string(i) + ".";
    expect_close(vae->decode(golden_tensor(goldens, decode + "latent")),
                 golden_tensor(goldens, decode + "image"), bound, label + " " + decode + "image");
    const std::string encode = "encode" + std::to_string(i) + ".";
    const LatentDistribution posterior = vae->encode(golden_tensor(goldens, encode + "image"));
    expect_close(posterior.mean, golden_tensor(goldens, encode + "mean"), bound,
                 label + " " + encode + "mean");
    expect_close(posterior.logvar, golden_tensor(goldens, encode + "logvar"), bound,
                 label + " " + encode + "logvar");
    expect_close(posterior.std, golden_tensor(goldens, encode + "std"), bound,
                 label + " " + encode + "std");
  }
}

TEST(StableDiffusionGolden, Sd1FromDiffusersFolder) {
  const fs::path folder = golden_dir() / "sd1/diffusers";
  DOPPEL_REQUIRE_PATH(folder);
  StableDiffusionCheckpoint model = load(folder);
  EXPECT_EQ(model.family, ModelFamily::kSd1);
  EXPECT_EQ(model.layout, ModelLayout::kDiffusers);
  EXPECT_FALSE(model.inpainting);
  EXPECT_EQ(model.prediction_type, "epsilon");
  EXPECT_EQ(model.scheduler_config.at("_class_name"), "PNDMScheduler");
  EXPECT_FALSE(model.scheduler_config.contains("timestep_spacing"));  // kept verbatim
  ASSERT_EQ(model.text_encoders.size(), 1u);
  EXPECT_EQ(model.text_encoders[0].pad_token_id, 49407);
  ASSERT_TRUE(model.text_encoders[0].tokenizer_path.has_value());
  EXPECT_TRUE(fs::exists(*model.text_encoders[0].tokenizer_path / "vocab.json"));
  EXPECT_TRUE(model.report.unused.empty()) << model.report.unused.front();
  EXPECT_EQ(model.unet->config().num_heads, 8);
  check_unet_cases(model.unet, golden_dir() / "sd1/goldens/unet.safetensors", 3, "sd1 diffusers");
  check_vae(model.vae, "sd1 diffusers vae");
}

TEST(StableDiffusionGolden, Sd1FromSingleFileWithDiffusersConfig) {
  const fs::path file = golden_dir() / "sd1/sd1_tiny_single_file_fp16.safetensors";
  DOPPEL_REQUIRE_PATH(file);
  StableDiffusionCheckpoint model = load(file, golden_dir() / "sd1/diffusers");
  EXPECT_EQ(model.family, ModelFamily::kSd1);
  EXPECT_EQ(model.layout, ModelLayout::kSingleFile);
  EXPECT_EQ(model.conditioning_clip_skip, 1);
  EXPECT_TRUE(model.report.unused.empty()) << model.report.unused.front();
  check_unet_cases(model.unet, golden_dir() / "sd1/goldens/unet.safetensors", 3, "sd1 single");
  check_vae(model.vae, "sd1 single-file vae");
}

TEST(StableDiffusionGolden, Sd1SingleFileHashIsSha256Prefix) {
  const fs::path file = golden_dir() / "sd1/sd1_tiny_single_file_fp16.safetensors";
  DOPPEL_REQUIRE_PATH(file);
  ModelLoadOptions options;
  options.path = file;
  options.config_path = golden_dir() / "sd1/diffusers";
  StableDiffusionCheckpoint model = load_stable_diffusion(options);
  // The manifest records every golden file's sha256.
  std::ifstream manifest(golden_dir() / "manifest.json");
  const std::string text((std::istreambuf_iterator<char>(manifest)), {});
  ASSERT_EQ(model.sha256.size(), 64u);
  EXPECT_NE(text.find(model.sha256), std::string::npos) << model.sha256;
  EXPECT_EQ(model.model_hash, model.sha256.substr(0, 10));
}

TEST(StableDiffusionGolden, Sd2FromDiffusersFp16Folder) {
  const fs::path folder = golden_dir() / "sd2/diffusers";
  DOPPEL_REQUIRE_PATH(folder);
  StableDiffusionCheckpoint model = load(folder);
  EXPECT_EQ(model.family, ModelFamily::kSd2);
  EXPECT_EQ(model.prediction_type, "v_prediction");
  EXPECT_EQ(model.scheduler_config.at("_class_name"), "DDIMScheduler");
  EXPECT_TRUE(model.unet->config().use_linear_projection);
  EXPECT_TRUE(model.unet->config().upcast_attention);
  EXPECT_EQ(model.unet->config().num_head_channels, 16);
  ASSERT_EQ(model.text_encoders.size(), 1u);
  EXPECT_TRUE(model.text_encoders[0].open_clip);
  EXPECT_EQ(model.text_encoders[0].pad_token_id, 0);
  EXPECT_EQ(model.conditioning_clip_skip, 1);
  check_unet_cases(model.unet, golden_dir() / "sd2/goldens/unet.safetensors", 3, "sd2 diffusers");
}

TEST(StableDiffusionGolden, SdxlFromDiffusersFolder) {
  const fs::path folder = golden_dir() / "sdxl/diffusers";
  DOPPEL_REQUIRE_PATH(folder);
  StableDiffusionCheckpoint model = load(folder);
  EXPECT_EQ(model.family, ModelFamily::kSdxl);
  EXPECT_EQ(model.prediction_type, "epsilon");
  EXPECT_EQ(model.scheduler_config.at("timestep_spacing"), "leading");
  EXPECT_DOUBLE_EQ(model.vae->config().scaling_factor, 0.13025);
  ASSERT_EQ(model.text_encoders.size(), 2u);
  EXPECT_FALSE(model.text_encoders[0].open_clip);
  EXPECT_TRUE(model.text_encoders[1].open_clip);
  EXPECT_TRUE(model.report.unused.empty()) << model.report.unused.front();
  const UNetConfig& config = model.unet->config();
  EXPECT_EQ(config.adm_in_channels, 72);
  EXPECT_EQ(config.transformer_depth, (std::vector<int64_t>{0, 1, 2}));
  check_unet_cases(model.unet, golden_dir() / "sdxl/goldens/unet.safetensors", 2, "sdxl diffusers",
                   kSingleCallBound, config.addition_time_embed_dim);
}

TEST(StableDiffusionGolden, SdxlFromSingleFileWithDiffusersConfig) {
  const fs::path file = golden_dir() / "sdxl/sdxl_tiny_single_file_fp16.safetensors";
  DOPPEL_REQUIRE_PATH(file);
  StableDiffusionCheckpoint model = load(file, golden_dir() / "sdxl/diffusers");
  EXPECT_EQ(model.family, ModelFamily::kSdxl);
  EXPECT_EQ(model.unet->config().addition_time_embed_dim, 8);
  EXPECT_TRUE(model.report.unused.empty()) << model.report.unused.front();
  check_unet_cases(model.unet, golden_dir() / "sdxl/goldens/unet.safetensors", 2, "sdxl single",
                   kSingleCallBound, model.unet->config().addition_time_embed_dim);
}

TEST(StableDiffusionGolden, InpaintUNetFromBothLayouts) {
  const fs::path file = golden_dir() / "inpaint/inpaint_unet_single_file_fp16.safetensors";
  DOPPEL_REQUIRE_PATH(file);
  const ModelSidecar sidecar = read_diffusers_configs(golden_dir() / "sd1/diffusers");
  for (const fs::path& path : {file, golden_dir() / "inpaint/diffusers"}) {
    const TensorSource canonical = open_checkpoint_tensors(path);
    const ModelDetection detection = detect_model(canonical);
    EXPECT_EQ(detection.family, ModelFamily::kSd1);
    EXPECT_TRUE(detection.inpainting);
    EXPECT_EQ(detection.unet_in_channels, 9);
    LoadReport report;
    UNetModel unet =
        load_unet(canonical, detection.family, &sidecar, at::kFloat, at::kCPU, &report);
    EXPECT_TRUE(report.unused.empty());
    check_unet_cases(unet, golden_dir() / "inpaint/goldens/unet9.safetensors", 1,
                     "inpaint " + path.filename().string());
  }
}

// The text encoders as the loader builds them (SD2/SDXL-G diffusers encoders
// renamed to open_clip), with conditioning_clip_skip selecting the layer.
TEST(StableDiffusionGolden, TextEncodersThroughTheLoader) {
  DOPPEL_REQUIRE_PATH(golden_dir() / "sd1/diffusers");
  at::NoGradGuard no_grad;
  {
    const SafetensorsFile goldens =
        SafetensorsFile::open(golden_dir() / "sd1/goldens/text_encoder.safetensors");
    for (const fs::path& path : {golden_dir() / "sd1/diffusers",
                                 golden_dir() / "sd1/sd1_tiny_single_file_fp16.safetensors"}) {
      StableDiffusionCheckpoint model = load(path, golden_dir() / "sd1/diffusers");
      auto& encoder = *model.text_encoders[0].encoder;
      const ClipTextOutput output = encoder.forward(golden_tensor(goldens, "input_ids"));
      expect_close(encoder.skip_layers(output, model.conditioning_clip_skip),
                   golden_tensor(goldens, "last_hidden_state"), kSingleCallBound,
                   "sd1 text " + path.filename().string());
    }
  }
  {
    const SafetensorsFile goldens =
        SafetensorsFile::open(golden_dir() / "sd2/goldens/text_encoder.safetensors");
    StableDiffusionCheckpoint model = load(golden_dir() / "sd2/diffusers");
    auto& encoder = *model.text_encoders[0].encoder;
    const ClipTextOutput output = encoder.forward(golden_tensor(goldens, "input_ids"));
    expect_close(encoder.skip_layers(output, model.conditioning_clip_skip),
                 golden_tensor(goldens, "last_hidden_state"), kSingleCallBound, "sd2 text");
  }
  {
    const SafetensorsFile goldens =
        SafetensorsFile::open(golden_dir() / "sdxl/goldens/conditioning.safetensors");
    for (const fs::path& path : {golden_dir() / "sdxl/diffusers",
                                 golden_dir() / "sdxl/sdxl_tiny_single_file_fp16.safetensors"}) {
      StableDiffusionCheckpoint model = load(path, golden_dir() / "sdxl/diffusers");
      const std::string label = "sdxl " + path.filename().string();
      auto& clip_l = *model.text_encoders[0].encoder;
      auto& clip_g = *model.text_encoders[1].encoder;
      const ClipTextOutput first = clip_l.forward(golden_tensor(goldens, "p0.input_ids_1"));
      const ClipTextOutput second = clip_g.forward(golden_tensor(goldens, "p0.input_ids_2"));
      expect_close(ClipTextEncoder::penultimate(first),
                   golden_tensor(goldens, "p0.te1_penultimate"), kSingleCallBound, label + " te1");
      expect_close(ClipTextEncoder::penultimate(second),
                   golden_tensor(goldens, "p0.te2_penultimate"), kSingleCallBound, label + " te2");
      expect_close(second.text_embeds, golden_tensor(goldens, "p0.te2_text_embeds"),
                   kSingleCallBound, label + " te2 pooled");
    }
  }
}

TEST(StableDiffusionGolden, Bf16UNetAndVaeStayClose) {
  const fs::path folder = golden_dir() / "sd1/diffusers";
  DOPPEL_REQUIRE_PATH(folder);
  StableDiffusionCheckpoint model = load(folder, {}, at::kBFloat16);
  EXPECT_EQ(model.unet->out_conv->weight.scalar_type(), at::kBFloat16);
  // bf16 keeps 8 mantissa bits: measured 1.6-2.8% of max|golden|; bound 5%.
  check_unet_cases(model.unet, golden_dir() / "sd1/goldens/unet.safetensors", 3, "sd1 bf16", 5e-2);
  check_vae(model.vae, "sd1 bf16 vae", 5e-2);
}

}  // namespace
}  // namespace doppel

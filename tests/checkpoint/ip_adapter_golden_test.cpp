// IP-Adapter against ../shared/golden/ipadapter (its README): CLIPImageProcessor
// preprocessing, the tiny CLIP image encoder from both layouts, the adapters from both file
// formats (projected image tokens), refusals, and UNet calls with decoupled cross-attention.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <iterator>
#include <map>

#include "doppel/checkpoint/clip_vision.hpp"
#include "doppel/checkpoint/ip_adapter.hpp"
#include "doppel/checkpoint/stable_diffusion.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/safetensors.hpp"
#include "doppel/models/unet.hpp"
#include "golden_support.hpp"
#include "support/shared_data.hpp"

namespace doppel {
namespace {

namespace fs = std::filesystem;
using test::expect_close;
using test::golden_tensor;

// README "Tolerances": encoder outputs, ip_tokens, single UNet calls, attn2_probe within
// kSingleCallBound; pixel_values <= 1e-6 absolute with the exact resize.
using test::kSingleCallBound;

fs::path folder() {
  return test::golden_dir() / "ipadapter";
}

Image photo() {
  return read_image(folder() / "images/angelina_jolie__deepface_img10.jpg");
}

std::vector<uint8_t> bytes_of(const at::Tensor& tensor) {
  const at::Tensor t = tensor.contiguous();
  return {t.data_ptr<uint8_t>(), t.data_ptr<uint8_t>() + t.numel()};
}

StableDiffusionCheckpoint load_base(const std::string& family) {
  ModelLoadOptions options;
  options.path = test::golden_dir() / family / "diffusers";
  options.compute_hash = false;
  return load_stable_diffusion(options);
}

TEST(ClipImagePreprocessing, MatchesCLIPImageProcessor) {
  DOPPEL_REQUIRE_PATH(folder());
  const SafetensorsFile golden = SafetensorsFile::open(folder() / "goldens/preprocess.safetensors");
  const ClipImagePreprocessing stages = preprocess_clip_image(photo(), 224);
  EXPECT_EQ(stages.resized.width, 224);
  EXPECT_EQ(stages.resized.height, 326);
  EXPECT_EQ(stages.resized.rgb, bytes_of(golden.tensor("resized_rgb")));
  EXPECT_EQ(stages.cropped.rgb, bytes_of(golden.tensor("cropped_rgb")));
  const at::Tensor top_left = golden.tensor("crop_top_left");
  EXPECT_EQ(stages.crop_top, top_left[0].item<int64_t>());
  EXPECT_EQ(stages.crop_left, top_left[1].item<int64_t>());
  const at::Tensor expected = golden_tensor(golden, "pixel_values");
  const double worst = (stages.pixel_values - expected).abs().max().item<double>();
  std::printf("[ parity   ] CLIP pixel_values max abs %.3g\n", worst);
  EXPECT_LE(worst, 1e-6);
}

void check_encoder(ClipVisionModel& encoder, const std::string& label) {
  at::NoGradGuard no_grad;
  const SafetensorsFile golden =
      SafetensorsFile::open(folder() / "goldens/image_encoder.safetensors");
  const SafetensorsFile pixels = SafetensorsFile::open(folder() / "goldens/preprocess.safetensors");
  const ClipVisionOutput out = encoder->forward(golden_tensor(pixels, "pixel_values"));
  expect_close(out.embeddings, golden_tensor(golden, "embeddings"), kSingleCallBound,
               label + " embeddings");
  for (size_t i = 0; i < out.hidden_states.size(); ++i)
    expect_close(out.hidden_states[i], golden_tensor(golden, "hidden_states." + std::to_string(i)),
                 kSingleCallBound, label + " hidden_states." + std::to_string(i));
  expect_close(out.penultimate, golden_tensor(golden, "penultimate_hidden_state"), kSingleCallBound,
               label + " penultimate");
  expect_close(out.pooled, golden_tensor(golden, "pooled_output"), kSingleCallBound,
               label + " pooled");
  expect_close(out.image_embeds, golden_tensor(golden, "image_embeds"), kSingleCallBound,
               label + " image_embeds");
  const ClipVisionOutput zeros = encoder->forward(at::zeros({1, 3, 224, 224}));
  expect_close(zeros.image_embeds, golden_tensor(golden, "zeros.image_embeds"), kSingleCallBound,
               label + " zeros.image_embeds");
  expect_close(zeros.penultimate, golden_tensor(golden, "zeros.penultimate_hidden_state"),
               kSingleCallBound, label + " zeros.penultimate");
}

TEST(ClipVisionLoading, HuggingFaceFolderMatchesGolden) {
  DOPPEL_REQUIRE_PATH(folder());
  LoadedClipVision loaded = load_clip_vision_encoder(folder() / "models/image_encoder");
  EXPECT_EQ(loaded.layout, ClipVisionLayout::kHuggingFace);
  const ClipVisionConfig& config = loaded.model->config();
  EXPECT_EQ(config.hidden_size, 40);
  EXPECT_EQ(config.num_heads, 4);
  EXPECT_EQ(config.num_layers, 3);
  EXPECT_EQ(config.intermediate_size, 80);
  EXPECT_EQ(config.projection_dim, 24);
  EXPECT_EQ(config.image_size, 224);
  EXPECT_TRUE(loaded.report.unused.empty());
  check_encoder(loaded.model, "HF encoder");
}

TEST(ClipVisionLoading, OpenClipVisualLayoutMatchesGolden) {
  DOPPEL_REQUIRE_PATH(folder());
  ClipVisionLoadOptions options;
  options.path = folder() / "open_clip/image_encoder_visual.safetensors";
  // A 40-wide encoder is not a known size: its heads come from a config.json.
  EXPECT_THROW(load_clip_vision_encoder(options), Error);
  options.config_path = folder() / "models/image_encoder/config.json";
  LoadedClipVision loaded = load_clip_vision_encoder(options);
  EXPECT_EQ(loaded.layout, ClipVisionLayout::kOpenClip);
  EXPECT_TRUE(loaded.report.unused.empty());
  check_encoder(loaded.model, "open_clip encoder");
}

TEST(ClipVisionLoading, RefusesOtherFiles) {
  DOPPEL_REQUIRE_PATH(folder());
  try {
    load_clip_vision_encoder(folder() / "models/ip-adapter_sd15.safetensors");
    FAIL() << "an IP-Adapter loaded as an image encoder";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidFile);
    EXPECT_NE(std::string(error.what()).find("IP-Adapter"), std::string::npos) << error.what();
  }
  EXPECT_THROW(load_clip_vision_encoder(folder() / "no_such_encoder"), Error);
}

struct AdapterCase {
  const char* golden;  // goldens/<golden>.safetensors
  const char* file;    // adapter path without extension
  const char* family;  // sd1 / sdxl
  ImageProjectionKind kind;
  int64_t tokens;
  size_t layers;
};

const AdapterCase kCases[] = {
    {"sd15_base", "models/ip-adapter_sd15", "sd1", ImageProjectionKind::kLinear, 4, 6},
    {"sd15_plus", "models/ip-adapter-plus_sd15", "sd1", ImageProjectionKind::kResampler, 16, 6},
    {"sd15_plus_face", "models/ip-adapter-plus-face_sd15", "sd1", ImageProjectionKind::kResampler,
     16, 6},
    {"sdxl_plus_face", "sdxl_models/ip-adapter-plus-face_sdxl_vit-h", "sdxl",
     ImageProjectionKind::kResampler, 16, 17},
};

class IpAdapterGolden : public ::testing::TestWithParam<AdapterCase> {};

TEST_P(IpAdapterGolden, BothFileFormatsProjectTheGoldenTokens) {
  DOPPEL_REQUIRE_PATH(folder());
  const AdapterCase& c = GetParam();
  at::NoGradGuard no_grad;
  const StableDiffusionCheckpoint base = load_base(c.family);
  const SafetensorsFile golden =
      SafetensorsFile::open(folder() / "goldens" / (std::string(c.golden) + ".safetensors"));
  const at::Tensor image_embeds = golden_tensor(golden, "image_embeds");  // [2, 1, ...]
  const at::Tensor expected = golden_tensor(golden, "ip_tokens");         // [2, 1, T, C]
  at::Tensor first_tokens;
  for (const char* extension : {".safetensors", ".bin"}) {
    const fs::path path = folder() / (std::string(c.file) + extension);
    LoadedIpAdapter adapter = load_ip_adapter(path, base.unet->config());
    const IpAdapterConfig& config = adapter.model->config();
    EXPECT_EQ(config.kind, c.kind) << path;
    EXPECT_EQ(config.tokens, c.tokens) << path;
    EXPECT_EQ(config.layer_widths.size(), c.layers) << path;
    EXPECT_EQ(config.layer_widths, base.unet->image_prompt_layer_widths());
    EXPECT_TRUE(adapter.report.unused.empty());
    EXPECT_EQ(adapter.short_hash.size(), 8u);
    const at::Tensor tokens = adapter.model->project(image_embeds.flatten(0, 1));
    expect_close(tokens.unsqueeze(1), expected, kSingleCallBound,
                 std::string(c.golden) + extension + " ip_tokens");
    if (first_tokens.defined()) {
      EXPECT_TRUE(at::equal(tokens, first_tokens)) << ".bin and .safetensors differ";
    }
    first_tokens = tokens;
  }
}

TEST_P(IpAdapterGolden, UNetWithDecoupledCrossAttentionMatchesGolden) {
  DOPPEL_REQUIRE_PATH(folder());
  const AdapterCase& c = GetParam();
  at::NoGradGuard no_grad;
  StableDiffusionCheckpoint base = load_base(c.family);
  LoadedIpAdapter adapter =
      load_ip_adapter(folder() / (std::string(c.file) + ".safetensors"), base.unet->config());
  const SafetensorsFile golden =
      SafetensorsFile::open(folder() / "goldens" / (std::string(c.golden) + ".safetensors"));
  const at::Tensor tokens =
      adapter.model->project(golden_tensor(golden, "image_embeds").flatten(0, 1));
  UNetExtraInputs plain;
  if (base.unet->config().adm_in_channels > 0) {
    plain.vector_conditioning = sdxl_vector_conditioning(
        golden_tensor(golden, "unet.text_embeds"), golden_tensor(golden, "unet.time_ids"),
        base.unet->config().addition_time_embed_dim);
  }
  auto run = [&](const UNetExtraInputs& extra) {
    return base.unet->forward(golden_tensor(golden, "unet.sample"),
                              golden_tensor(golden, "unet.timestep").to(at::kFloat),
                              golden_tensor(golden, "unet.encoder_hidden_states"), extra);
  };
  const at::Tensor without = run(plain);
  expect_close(without, golden_tensor(golden, "unet.out.no_ip_adapter"), kSingleCallBound,
               std::string(c.golden) + " unet without adapter");
  for (const char* scale_name : {"0.6", "1.0", "0.0"}) {
    const double scale = std::stod(scale_name);
    auto prompt = std::make_shared<ImagePromptAttention>();
    for (ImagePromptBranch& branch : adapter.model->keys_values(tokens, scale))
      prompt->layers.push_back({branch});
    UNetExtraInputs extra = plain;
    extra.image_prompt = prompt;
    const at::Tensor out = run(extra);
    expect_close(out, golden_tensor(golden, std::string("unet.out.scale") + scale_name),
                 kSingleCallBound, std::string(c.golden) + " unet scale " + scale_name);
    if (scale == 0.0) {
      EXPECT_TRUE(at::equal(out, without)) << "scale 0 must skip the branch";
    }
  }
  // The first IP layer alone (k = 1), at scale 0.6.
  CrossAttention first = nullptr;
  for (auto& module : base.unet->modules(false)) {
    if (auto* attention = module->as<CrossAttentionImpl>();
        attention && attention->image_prompt_layer == 0)
      first = CrossAttention(std::dynamic_pointer_cast<CrossAttentionImpl>(module));
  }
  ASSERT_TRUE(first);
  const at::Tensor probe_tokens = golden_tensor(golden, "attn2_probe.ip_tokens").flatten(1, 2);
  ImagePromptAttention probe;
  probe.layers.resize(base.unet->image_prompt_layer_widths().size());
  probe.layers[0].push_back(adapter.model->keys_values(probe_tokens, 0.6).front());
  const at::Tensor hidden = golden_tensor(golden, "attn2_probe.hidden_states");
  const at::Tensor context = golden_tensor(golden, "attn2_probe.text_context");
  expect_close(first->forward(hidden, context, &probe), golden_tensor(golden, "attn2_probe.out"),
               kSingleCallBound, std::string(c.golden) + " attn2_probe.out");
  expect_close(first->forward(hidden, context), golden_tensor(golden, "attn2_probe.out_without_ip"),
               kSingleCallBound, std::string(c.golden) + " attn2_probe.out_without_ip");
}

INSTANTIATE_TEST_SUITE_P(Adapters, IpAdapterGolden, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.golden); });

TEST(IpAdapterLoading, RefusesAnAdapterForAnotherBaseModel) {
  DOPPEL_REQUIRE_PATH(folder());
  const UNetConfig sdxl = load_base("sdxl").unet->config();
  const UNetConfig sd1 = load_base("sd1").unet->config();
  for (const char* file : {"models/ip-adapter_sd15.safetensors", "models/ip-adapter_sd15.bin"}) {
    try {
      load_ip_adapter(folder() / file, sdxl);
      FAIL() << file << " loaded for SDXL";
    } catch (const Error& error) {
      EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(error.what()).find("does not fit this model"), std::string::npos)
          << error.what();
    }
  }
  EXPECT_THROW(
      load_ip_adapter(folder() / "sdxl_models/ip-adapter-plus-face_sdxl_vit-h.safetensors", sd1),
      Error);
  UNetConfig fewer_layers = sd1;
  fewer_layers.transformer_depth_middle = 0;
  try {
    load_ip_adapter(folder() / "models/ip-adapter_sd15.safetensors", fewer_layers);
    FAIL() << "loaded for a UNet with fewer cross-attention layers";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("cross-attention layers"), std::string::npos)
        << error.what();
  }
}

TEST(IpAdapterLoading, RefusesFilesThatAreNotIpAdapters) {
  DOPPEL_REQUIRE_PATH(folder());
  const UNetConfig sd1 = load_base("sd1").unet->config();
  try {
    load_ip_adapter(folder() / "models/image_encoder/model.safetensors", sd1);
    FAIL();
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidFile);
    EXPECT_NE(std::string(error.what()).find("image encoder"), std::string::npos) << error.what();
  }
  EXPECT_THROW(load_ip_adapter(folder() / "models/missing.safetensors", sd1), Error);
  // A damaged .bin (truncated zip) is refused, not crashed on.
  const fs::path damaged = fs::temp_directory_path() / "doppel_ip_adapter_damaged.bin";
  {
    std::ifstream in(folder() / "models/ip-adapter_sd15.bin", std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    std::ofstream(damaged, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  }
  EXPECT_THROW(load_ip_adapter(damaged, sd1), Error);
  fs::remove(damaged);
}

// Writes `adapter`'s parameters as an h94-style .safetensors (its names are h94's).
fs::path write_adapter(IpAdapterImpl& adapter, const std::string& name,
                       const std::function<void(std::map<std::string, at::Tensor>&)>& edit = {}) {
  std::map<std::string, at::Tensor> tensors;
  for (const auto& item : adapter.named_parameters())
    tensors[item.key()] = item.value().to(at::kHalf);
  if (edit) edit(tensors);
  const fs::path path = fs::temp_directory_path() / ("doppel_test_" + name + ".safetensors");
  save_safetensors(path, tensors);
  return path;
}

TEST(IpAdapterLoading, FullFaceAndRefusedVariantsFromTheirTensors) {
  DOPPEL_REQUIRE_PATH(folder());
  at::NoGradGuard no_grad;
  const UNetConfig sd1 = load_base("sd1").unet->config();
  IpAdapterConfig config;
  config.kind = ImageProjectionKind::kMlp;
  config.image_embed_dim = 40;
  config.mlp_hidden = 40;
  config.cross_attention_dim = sd1.context_dim;
  config.layer_widths = image_prompt_layer_widths(sd1);
  for (size_t i = 0; i < config.layer_widths.size(); ++i)
    config.layer_keys.push_back(static_cast<int64_t>(2 * i + 1));
  IpAdapter full_face(config);
  layers::randomize_parameters(*full_face, 4);
  // ip-adapter-full-face: an MLP on every penultimate token (257 image tokens here).
  const fs::path path = write_adapter(*full_face, "full_face");
  LoadedIpAdapter loaded = load_ip_adapter(path, sd1);
  EXPECT_EQ(loaded.model->config().kind, ImageProjectionKind::kMlp);
  LoadedClipVision encoder = load_clip_vision_encoder(folder() / "models/image_encoder");
  const at::Tensor hidden = encoder.model->forward(at::zeros({1, 3, 224, 224})).penultimate;
  const at::Tensor tokens = loaded.model->project(hidden);
  EXPECT_EQ(tokens.sizes(), (std::vector<int64_t>{1, 257, 32}));
  EXPECT_TRUE(
      at::allclose(tokens, full_face->project(hidden).to(at::kHalf).to(at::kFloat), 1e-2, 1e-2));
  fs::remove(path);

  auto refused = [&](const std::string& name,
                     const std::function<void(std::map<std::string, at::Tensor>&)>& edit,
                     ErrorCode code, const std::string& words) {
    const fs::path file = write_adapter(*full_face, name, edit);
    std::string message;
    try {
      load_ip_adapter(file, sd1);
      ADD_FAILURE() << name << " loaded";
    } catch (const Error& error) {
      EXPECT_EQ(error.code(), code) << name;
      message = error.what();
    }
    EXPECT_NE(message.find(words), std::string::npos) << message;
    fs::remove(file);
  };
  // FaceID: proj.0 / proj.2 / norm (InsightFace embeddings in), and FaceID Plus.
  refused(
      "faceid",
      [](auto& t) {
        t.erase("image_proj.proj.3.weight");
        t["image_proj.norm.weight"] = t["image_proj.proj.3.bias"];
        t.erase("image_proj.proj.3.bias");
      },
      ErrorCode::kUnsupported, "FaceID");
  refused(
      "faceid_plus",
      [](auto& t) {
        t["image_proj.perceiver_resampler.proj_in.weight"] = at::zeros({4, 4});
      },
      ErrorCode::kUnsupported, "FaceID Plus");
  // Layer keys out of diffusers' order, and a key/value pair of different widths.
  refused(
      "keys",
      [](auto& t) {
        t["ip_adapter.4.to_k_ip.weight"] = t["ip_adapter.3.to_k_ip.weight"];
        t["ip_adapter.4.to_v_ip.weight"] = t["ip_adapter.3.to_v_ip.weight"];
        t.erase("ip_adapter.3.to_k_ip.weight");
        t.erase("ip_adapter.3.to_v_ip.weight");
      },
      ErrorCode::kInvalidFile, "1, 3, 5");
  refused(
      "widths",
      [](auto& t) {
        t["ip_adapter.1.to_v_ip.weight"] = at::zeros({8, 32});
      },
      ErrorCode::kInvalidFile, "differ in width");
}

TEST(IpAdapterLoading, FindsTheImageEncoderAsH94LaysThemOut) {
  DOPPEL_REQUIRE_PATH(folder());
  const UNetConfig sd1 = load_base("sd1").unet->config();
  const UNetConfig sdxl = load_base("sdxl").unet->config();
  const fs::path beside = folder() / "models/ip-adapter-plus-face_sd15.safetensors";
  EXPECT_EQ(find_image_encoder(beside, load_ip_adapter(beside, sd1).model->config()),
            (folder() / "models/image_encoder").lexically_normal());
  // sdxl_models/*_vit-h use the ViT-H in models/.
  const fs::path vit_h = folder() / "sdxl_models/ip-adapter-plus-face_sdxl_vit-h.bin";
  EXPECT_EQ(find_image_encoder(vit_h, load_ip_adapter(vit_h, sdxl).model->config()),
            (folder() / "models/image_encoder").lexically_normal());
  // An adapter reading features no encoder around gives: refused, naming where it looked.
  IpAdapterConfig wider = load_ip_adapter(beside, sd1).model->config();
  wider.image_embed_dim = 1280;
  try {
    find_image_encoder(beside, wider);
    FAIL();
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kNotFound);
    EXPECT_NE(std::string(error.what()).find("gives 40-wide features"), std::string::npos)
        << error.what();
  }
  EXPECT_EQ(read_clip_vision_config(folder() / "open_clip/image_encoder_visual.safetensors")
                .projection_dim,
            24);
}

}  // namespace
}  // namespace doppel

// Loading tiny Stable Diffusion checkpoints built in code: detection, family
// defaults, sidecars (.json, LDM .yaml), external VAE, dtype conversion, the
// load report, the model hash, and bad input (missing or mis-shaped tensors,
// files that are not models, truncated files, unsupported architectures).
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <random>

#include "doppel/checkpoint/load_state.hpp"
#include "doppel/checkpoint/model_hash.hpp"
#include "doppel/checkpoint/stable_diffusion.hpp"
#include "doppel/checkpoint/tensor_names.hpp"
#include "doppel/core/atomic_file.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/safetensors.hpp"
#include "doppel/models/layers.hpp"
#include "support/shared_data.hpp"

namespace doppel {
namespace {

namespace fs = std::filesystem;
using Tensors = std::map<std::string, at::Tensor>;

UNetConfig tiny_unet() {
  UNetConfig config;
  config.model_channels = 32;
  config.block_out_channels = {32, 64};
  config.transformer_depth = {1, 0};
  config.num_heads = 8;  // SD1's standard, so no config is needed
  config.context_dim = 64;
  return config;
}

VaeConfig tiny_vae() {
  VaeConfig config;
  config.base_channels = 32;
  config.channel_mult = {1, 2};
  config.num_res_blocks = 1;
  return config;
}

ClipTextConfig tiny_clip() {
  ClipTextConfig config;
  config.vocab_size = 1000;
  config.hidden_size = 64;  // one 64-wide head: inferable without a config
  config.num_heads = 1;
  config.num_layers = 1;
  config.intermediate_size = 37;
  return config;
}

void add_module(Tensors& tensors, torch::nn::Module& module, const std::string& prefix,
                at::ScalarType storage) {
  for (const auto& item : module.named_parameters()) {
    tensors[prefix + item.key()] = item.value().detach().to(storage);
  }
}

// A complete SD1-style single file: UNet, VAE and CLIP text encoder, random weights.
Tensors tiny_sd1_tensors(at::ScalarType storage = at::kHalf) {
  UNetModel unet(tiny_unet());
  layers::randomize_parameters(*unet, 1);
  AutoencoderKL vae(tiny_vae());
  layers::randomize_parameters(*vae, 2);
  ClipTextModel text(tiny_clip());
  layers::randomize_parameters(*text, 3);
  Tensors tensors;
  add_module(tensors, *unet, kUNetPrefix, storage);
  add_module(tensors, *vae, kVaePrefix, storage);
  add_module(tensors, *text, kSd1TextEncoderPrefix, storage);
  return tensors;
}

class CheckpointLoading : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device device;
    folder_ = fs::temp_directory_path() /
              ("doppel_checkpoint_test_" + std::to_string(device()) + std::to_string(device()));
    fs::create_directories(folder_);
  }
  void TearDown() override { fs::remove_all(folder_); }

  fs::path write(const std::string& name, const Tensors& tensors) {
    const fs::path path = folder_ / name;
    save_safetensors(path, tensors);
    return path;
  }
  fs::path write_text(const std::string& name, const std::string& text) {
    const fs::path path = folder_ / name;
    std::ofstream(path) << text;
    return path;
  }
  static ModelLoadOptions options_for(const fs::path& path) {
    ModelLoadOptions options;
    options.path = path;
    options.compute_hash = false;
    return options;
  }
  // Runs `load` and returns the doppel::Error it must throw.
  template <typename Function>
  static Error error_of(Function load) {
    try {
      load();
    } catch (const Error& error) {
      return error;
    }
    ADD_FAILURE() << "no doppel::Error thrown";
    return Error(ErrorCode::kInternal, "");
  }

  fs::path folder_;
};

TEST_F(CheckpointLoading, TinySd1SingleFileLoadsWithFamilyDefaults) {
  const Tensors tensors = tiny_sd1_tensors();
  ModelLoadOptions options = options_for(write("tiny.safetensors", tensors));
  options.compute_hash = true;
  StableDiffusionCheckpoint model = load_stable_diffusion(options);
  EXPECT_EQ(model.family, ModelFamily::kSd1);
  EXPECT_EQ(model.layout, ModelLayout::kSingleFile);
  EXPECT_EQ(model.config_origin, "family defaults");
  EXPECT_EQ(model.prediction_type, "epsilon");
  EXPECT_EQ(model.scheduler_config.at("_class_name"), "PNDMScheduler");
  EXPECT_EQ(model.scheduler_config.at("steps_offset"), 1);
  EXPECT_EQ(model.scheduler_config.at("beta_schedule"), "scaled_linear");
  EXPECT_DOUBLE_EQ(model.vae->config().scaling_factor, 0.18215);
  EXPECT_TRUE(model.report.unused.empty());
  EXPECT_EQ(model.sha256, sha256_file_hex(options.path));
  EXPECT_EQ(model.model_hash, model.sha256.substr(0, 10));
  // Every parameter holds the file's F16 values, now fp32.
  for (auto* module : std::vector<torch::nn::Module*>{model.unet.get(), model.vae.get()}) {
    const std::string prefix = module == model.unet.get() ? kUNetPrefix : kVaePrefix;
    for (const auto& item : module->named_parameters()) {
      ASSERT_EQ(item.value().scalar_type(), at::kFloat);
      ASSERT_TRUE(at::equal(item.value(), tensors.at(prefix + item.key()).to(at::kFloat)))
          << item.key();
    }
  }
}

// Level widths need not be multiples of the first (diffusers' block_out_channels 64, 96).
TEST_F(CheckpointLoading, LevelWidthsAreReadAsGivenInBothLayouts) {
  auto uneven_unet = [](int64_t context_dim) {
    UNetConfig config = tiny_unet();
    config.model_channels = 64;
    config.block_out_channels = {64, 96};
    config.context_dim = context_dim;
    UNetModel unet(config);
    layers::randomize_parameters(*unet, 4);
    Tensors tensors;
    add_module(tensors, *unet, kUNetPrefix, at::kHalf);
    return tensors;
  };
  auto expect_weights = [](StableDiffusionCheckpoint& model, const Tensors& tensors) {
    EXPECT_EQ(model.unet->config().block_out_channels, (std::vector<int64_t>{64, 96}));
    for (const auto& item : model.unet->named_parameters())
      ASSERT_TRUE(at::equal(item.value(), tensors.at(kUNetPrefix + item.key()).to(at::kFloat)))
          << item.key();
  };
  Tensors single = tiny_sd1_tensors();
  for (auto it = single.begin(); it != single.end();)
    it = it->first.starts_with(kUNetPrefix) ? single.erase(it) : std::next(it);
  const Tensors unet_64 = uneven_unet(64);  // tiny_clip's width
  single.insert(unet_64.begin(), unet_64.end());
  StableDiffusionCheckpoint from_file =
      load_stable_diffusion(options_for(write("uneven.safetensors", single)));
  expect_weights(from_file, unet_64);

  // The diffusers folder: the golden tiny SD1 (same structure, widths 32, 64) with such a
  // UNet's weights under diffusers names, found by inverting the name map over its names.
  const fs::path golden = test::golden_dir() / "sd1" / "diffusers";
  DOPPEL_REQUIRE_PATH(golden);
  const fs::path folder = folder_ / "uneven_diffusers";
  fs::copy(golden, folder, fs::copy_options::recursive);
  fs::permissions(folder / "unet", fs::perms::owner_all, fs::perm_options::add);
  const fs::path weights = folder / "unet" / "diffusion_pytorch_model.safetensors";
  const std::vector<std::string> names = TensorSource::from_file(weights).names();
  const DiffusersUNetLayout layout = diffusers_unet_layout(names);
  const Tensors unet_32 = uneven_unet(32);  // the golden text encoder's width
  Tensors diffusers;
  for (const std::string& name : names) {
    const auto canonical = diffusers_unet_name_to_ldm(name, layout);
    ASSERT_TRUE(canonical) << name;
    diffusers[name] = unet_32.at(kUNetPrefix + *canonical);
  }
  ASSERT_EQ(diffusers.size(), unet_32.size());
  fs::remove(weights);
  save_safetensors(weights, diffusers);
  const fs::path config = folder / "unet" / "config.json";
  std::string text = read_file(config);
  const size_t at = text.find("\"block_out_channels\"");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, text.find(']', at) + 1 - at, "\"block_out_channels\": [64, 96]");
  fs::remove(config);
  write_file_atomically(config, text);
  StableDiffusionCheckpoint from_folder = load_stable_diffusion(options_for(folder));
  EXPECT_EQ(from_folder.layout, ModelLayout::kDiffusers);
  expect_weights(from_folder, unet_32);
}

TEST_F(CheckpointLoading, Bf16ComputeDtypeConvertsAtLoad) {
  ModelLoadOptions options = options_for(write("tiny.safetensors", tiny_sd1_tensors()));
  options.dtype = at::kBFloat16;
  options.vae_dtype = at::kFloat;
  StableDiffusionCheckpoint model = load_stable_diffusion(options);
  EXPECT_EQ(model.unet->out_conv->weight.scalar_type(), at::kBFloat16);
  EXPECT_EQ(model.text_encoders[0].encoder->parameters().front().scalar_type(), at::kBFloat16);
  EXPECT_EQ(model.vae->post_quant_conv->weight.scalar_type(), at::kFloat);
  at::NoGradGuard no_grad;
  at::Tensor out =
      model.unet->forward(at::randn({1, 4, 8, 8}), at::tensor({10.0f}), at::randn({1, 3, 64}));
  EXPECT_EQ(out.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::isfinite(out).all().item<bool>());
}

TEST_F(CheckpointLoading, ExtraTensorsAreReportedUnused) {
  Tensors tensors = tiny_sd1_tensors();
  tensors["alphas_cumprod"] = at::ones({1000});
  tensors["model_ema.decay"] = at::ones({});
  tensors["cond_stage_model.transformer.text_model.embeddings.position_ids"] =
      at::arange(77, at::kLong).unsqueeze(0);
  StableDiffusionCheckpoint model =
      load_stable_diffusion(options_for(write("extra.safetensors", tensors)));
  std::set<std::string> unused(model.report.unused.begin(), model.report.unused.end());
  EXPECT_EQ(unused, (std::set<std::string>{
                        "alphas_cumprod", "model_ema.decay",
                        "cond_stage_model.transformer.text_model.embeddings.position_ids"}));
}

TEST_F(CheckpointLoading, JsonSidecarBesideTheFileSetsPredictionAndHeads) {
  write("model.safetensors", tiny_sd1_tensors());
  write_text("model.json", R"({
    "prediction_type": "v_prediction",
    "unet": {"block_out_channels": [32, 64], "attention_head_dim": 4,
             "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
             "upcast_attention": true},
    "vae": {"scaling_factor": 0.5}
  })");
  StableDiffusionCheckpoint model =
      load_stable_diffusion(options_for(folder_ / "model.safetensors"));
  EXPECT_EQ(model.config_origin, (folder_ / "model.json").string());
  EXPECT_EQ(model.prediction_type, "v_prediction");
  EXPECT_EQ(model.scheduler_config.at("prediction_type"), "v_prediction");
  EXPECT_EQ(model.unet->config().num_heads, 4);
  EXPECT_TRUE(model.unet->config().upcast_attention);
  EXPECT_DOUBLE_EQ(model.vae->config().scaling_factor, 0.5);
}

TEST_F(CheckpointLoading, LdmYamlSidecarIsRead) {
  write("model.safetensors", tiny_sd1_tensors());
  write_text("model.yaml", R"(model:
  target: ldm.models.diffusion.ddpm.LatentDiffusion
  params:
    parameterization: "v"
    linear_start: 0.001
    linear_end: 0.02
    timesteps: 1000
    scale_factor: 0.3
    unet_config:
      target: ldm.modules.diffusionmodules.openaimodel.UNetModel
      params:
        model_channels: 32
        num_head_channels: 16
        use_linear_in_transformer: False
)");
  StableDiffusionCheckpoint model =
      load_stable_diffusion(options_for(folder_ / "model.safetensors"));
  EXPECT_EQ(model.prediction_type, "v_prediction");
  EXPECT_EQ(model.unet->config().num_head_channels, 16);
  EXPECT_EQ(model.unet->config().heads_for(32), 2);
  EXPECT_DOUBLE_EQ(model.vae->config().scaling_factor, 0.3);
  EXPECT_DOUBLE_EQ(model.scheduler_config.at("beta_start").get<double>(), 0.001);
  EXPECT_DOUBLE_EQ(model.scheduler_config.at("beta_end").get<double>(), 0.02);
  EXPECT_EQ(model.scheduler_config.at("_class_name"), "PNDMScheduler");

  // An explicit config_path wins over the sidecar.
  write_text("other.json", R"({"prediction_type": "epsilon"})");
  ModelLoadOptions options = options_for(folder_ / "model.safetensors");
  options.config_path = folder_ / "other.json";
  EXPECT_EQ(load_stable_diffusion(options).prediction_type, "epsilon");
}

TEST_F(CheckpointLoading, ExternalVaeReplacesTheCheckpointVae) {
  Tensors tensors = tiny_sd1_tensors();
  Tensors vae_only;
  for (const auto& [name, tensor] : tensors) {
    if (name.rfind(kVaePrefix, 0) == 0)
      vae_only[name.substr(std::string(kVaePrefix).size())] = tensor * 0.5;
  }
  ModelLoadOptions options = options_for(write("model.safetensors", tensors));
  options.vae_path = write("vae.safetensors", vae_only);  // bare LDM names, no prefix
  StableDiffusionCheckpoint model = load_stable_diffusion(options);
  EXPECT_TRUE(model.report.unused.empty());
  EXPECT_TRUE(
      at::equal(model.vae->quant_conv->weight, vae_only.at("quant_conv.weight").to(at::kFloat)));
}

TEST_F(CheckpointLoading, MissingTensorIsNamed) {
  Tensors tensors = tiny_sd1_tensors();
  tensors.erase("model.diffusion_model.input_blocks.1.1.transformer_blocks.0.norm2.bias");
  const Error error =
      error_of([&] { load_stable_diffusion(options_for(write("missing.safetensors", tensors))); });
  EXPECT_EQ(error.code(), ErrorCode::kNotFound);
  EXPECT_NE(std::string(error.what())
                .find("model.diffusion_model.input_blocks.1.1.transformer_blocks.0.norm2.bias"),
            std::string::npos)
      << error.what();
}

TEST_F(CheckpointLoading, MissingComponentIsNamed) {
  Tensors tensors = tiny_sd1_tensors();
  for (auto it = tensors.begin(); it != tensors.end();) {
    it = it->first.rfind(kVaePrefix, 0) == 0 ? tensors.erase(it) : std::next(it);
  }
  const Error error =
      error_of([&] { load_stable_diffusion(options_for(write("no_vae.safetensors", tensors))); });
  EXPECT_EQ(error.code(), ErrorCode::kNotFound);
  EXPECT_NE(std::string(error.what()).find("VAE"), std::string::npos) << error.what();
}

TEST_F(CheckpointLoading, WrongShapeNamesTheTensorAndBothShapes) {
  Tensors tensors = tiny_sd1_tensors();
  const std::string name = "model.diffusion_model.middle_block.0.emb_layers.1.weight";
  tensors[name] = at::zeros({64, 100}, at::kHalf);
  const Error error =
      error_of([&] { load_stable_diffusion(options_for(write("shape.safetensors", tensors))); });
  EXPECT_EQ(error.code(), ErrorCode::kInvalidFile);
  const std::string message = error.what();
  EXPECT_NE(message.find(name), std::string::npos) << message;
  EXPECT_NE(message.find("[64, 100]"), std::string::npos) << message;
  EXPECT_NE(message.find("[64, 128]"), std::string::npos) << message;
}

TEST_F(CheckpointLoading, NanWeightsAreRejected) {
  Tensors tensors = tiny_sd1_tensors();
  tensors["first_stage_model.decoder.conv_out.bias"][1] = NAN;
  const Error error =
      error_of([&] { load_stable_diffusion(options_for(write("nan.safetensors", tensors))); });
  EXPECT_EQ(error.code(), ErrorCode::kInvalidFile);
  EXPECT_NE(std::string(error.what()).find("decoder.conv_out.bias"), std::string::npos);
}

TEST_F(CheckpointLoading, FilesThatAreNotModels) {
  // A valid safetensors file with unrelated tensors.
  Error error = error_of([&] {
    load_stable_diffusion(options_for(write("other.safetensors", {{"weight", at::ones({3})}})));
  });
  EXPECT_EQ(error.code(), ErrorCode::kInvalidFile);
  EXPECT_NE(std::string(error.what()).find("model.diffusion_model.input_blocks.0.0.weight"),
            std::string::npos)
      << error.what();
  // Text with a .safetensors name.
  error = error_of([&] {
    load_stable_diffusion(options_for(write_text("text.safetensors", "hello, not a model")));
  });
  EXPECT_EQ(error.code(), ErrorCode::kInvalidFile);
  // Pickles are refused, not parsed.
  error = error_of([&] { load_stable_diffusion(options_for(write_text("m.ckpt", "PK"))); });
  EXPECT_EQ(error.code(), ErrorCode::kUnsupported);
  // Nothing there.
  error = error_of([&] { load_stable_diffusion(options_for(folder_ / "absent.safetensors")); });
  EXPECT_EQ(error.code(), ErrorCode::kNotFound);
  // A folder without unet/.
  error = error_of([&] { load_stable_diffusion(options_for(folder_)); });
  EXPECT_EQ(error.code(), ErrorCode::kInvalidFile);
}

TEST_F(CheckpointLoading, InspectionTellsWhatAModelIsFromItsHeadersAndConfig) {
  const fs::path path = write("inspected.safetensors", tiny_sd1_tensors());
  ModelInspection inspection = inspect_stable_diffusion(path);
  EXPECT_EQ(inspection.family, ModelFamily::kSd1);
  EXPECT_EQ(inspection.layout, ModelLayout::kSingleFile);
  EXPECT_FALSE(inspection.inpainting);
  EXPECT_EQ(inspection.prediction_type, "epsilon");
  EXPECT_EQ(inspection.config_origin, "family defaults");
  // The same sidecar lookup as loading.
  write_text("inspected.json", R"({"prediction_type": "v_prediction"})");
  inspection = inspect_stable_diffusion(path);
  EXPECT_EQ(inspection.prediction_type, "v_prediction");
  EXPECT_EQ(inspection.config_origin, (folder_ / "inspected.json").string());

  // What loading would refuse, inspection refuses alike.
  Tensors no_text = tiny_sd1_tensors();
  for (auto it = no_text.begin(); it != no_text.end();)
    it = it->first.rfind(kSd1TextEncoderPrefix, 0) == 0 ? no_text.erase(it) : std::next(it);
  Error error = error_of([&] { inspect_stable_diffusion(write("no_text.safetensors", no_text)); });
  EXPECT_EQ(error.code(), ErrorCode::kNotFound);
  EXPECT_NE(std::string(error.what()).find("text encoder"), std::string::npos) << error.what();
  error = error_of([&] {
    inspect_stable_diffusion(write("other.safetensors", {{"weight", at::ones({3})}}));
  });
  EXPECT_EQ(error.code(), ErrorCode::kInvalidFile);
  error = error_of([&] { inspect_stable_diffusion(write_text("m.ckpt", "PK")); });
  EXPECT_EQ(error.code(), ErrorCode::kUnsupported);
  error = error_of([&] { inspect_stable_diffusion(folder_ / "absent.safetensors"); });
  EXPECT_EQ(error.code(), ErrorCode::kNotFound);
}

TEST_F(CheckpointLoading, TruncatedFileIsRejected) {
  const std::string bytes = serialize_safetensors(tiny_sd1_tensors());
  for (size_t keep : {size_t{6}, bytes.size() / 2, bytes.size() - 1}) {
    write_text("cut.safetensors", bytes.substr(0, keep));
    const Error error =
        error_of([&] { load_stable_diffusion(options_for(folder_ / "cut.safetensors")); });
    EXPECT_EQ(error.code(), ErrorCode::kInvalidFile) << keep << ": " << error.what();
  }
}

TEST_F(CheckpointLoading, UnsupportedArchitecturesAreNamed) {
  Tensors sd3 = {
      {"model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight", at::ones({3, 1})}};
  Error error =
      error_of([&] { load_stable_diffusion(options_for(write("sd3.safetensors", sd3))); });
  EXPECT_EQ(error.code(), ErrorCode::kUnsupported);

  Tensors refiner = tiny_sd1_tensors();
  refiner["conditioner.embedders.0.model.ln_final.weight"] = at::ones({4});
  error =
      error_of([&] { load_stable_diffusion(options_for(write("refiner.safetensors", refiner))); });
  EXPECT_EQ(error.code(), ErrorCode::kUnsupported);
  EXPECT_NE(std::string(error.what()).find("refiner"), std::string::npos);
}

TEST(LoadModuleState, ReportsMissingWhenNotStrictAndLeavesModuleUntouchedOnError) {
  layers::Linear linear(2, 3, at::TensorOptions());
  linear->weight.detach().fill_(7.0);
  TensorSource source;
  source.add_tensor("p.weight", at::ones({3, 2}));
  source.add_tensor("p.extra", at::ones({1}));
  EXPECT_THROW(load_module_state(*linear, source, "p.", at::kFloat), Error);
  EXPECT_EQ(linear->weight[0][0].item<float>(), 7.0f);  // nothing copied
  const LoadReport report = load_module_state(*linear, source, "p.", at::kFloat, at::kCPU, false);
  EXPECT_EQ(report.missing, (std::vector<std::string>{"p.bias"}));
  EXPECT_EQ(report.unused, (std::vector<std::string>{"p.extra"}));
  EXPECT_EQ(report.loaded, (std::vector<std::string>{"p.weight"}));
  EXPECT_EQ(linear->weight[0][0].item<float>(), 1.0f);
}

TEST(ModelHash, Sha256OfAKnownFile) {
  const fs::path path = fs::temp_directory_path() / "doppel_hash_test.txt";
  std::ofstream(path) << "abc";
  EXPECT_EQ(sha256_file_hex(path),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(a1111_short_hash(sha256_file_hex(path)), "ba7816bf8f");
  fs::remove(path);
}

// A file longer than the 4 MiB the hash reads at a time, against coreutils' sha256sum; and
// A1111's legacy hash, the first 8 hex digits of the 64 KiB at 1 MiB.
TEST(ModelHash, Sha256OfAFileReadInManyPiecesMatchesSha256sum) {
  const fs::path path = fs::temp_directory_path() / "doppel_hash_test_large.bin";
  std::string bytes(9 * 1024 * 1024 + 17, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>((i * 2654435761u) >> 13);
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  const auto sha256sum = [](const std::string& command) {
    std::string output(64, ' ');
    FILE* pipe = popen(command.c_str(), "r");
    if (!pipe) return std::string();
    const size_t read = std::fread(output.data(), 1, output.size(), pipe);
    pclose(pipe);
    return output.substr(0, read);
  };
  EXPECT_EQ(sha256_file_hex(path), sha256sum("sha256sum " + path.string()));
  EXPECT_EQ(
      a1111_legacy_model_hash(path),
      sha256sum("tail -c +1048577 " + path.string() + " | head -c 65536 | sha256sum").substr(0, 8));
  fs::remove(path);
}

}  // namespace
}  // namespace doppel

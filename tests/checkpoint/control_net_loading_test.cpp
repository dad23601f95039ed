// ControlNet loading: both layouts against the reference's residuals and UNet output
// (golden/controlnet), name mapping, and files that are not (or not quite) ControlNets.
#include "doppel/checkpoint/control_net.hpp"

#include <gtest/gtest.h>

#include "checkpoint/golden_support.hpp"
#include "doppel/checkpoint/tensor_names.hpp"
#include "doppel/checkpoint/stable_diffusion.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/safetensors.hpp"
#include "support/shared_data.hpp"

namespace doppel {
namespace {

namespace fs = std::filesystem;

// The golden README's bar for single module calls (fp32 noise floor ~1e-6).
constexpr double kModuleTolerance = 1e-5;

fs::path control_dir() {
  return test::golden_dir() / "controlnet";
}

UNetModel golden_unet() {
  ModelLoadOptions options;
  options.path = test::golden_dir() / "sd1" / "diffusers";
  options.compute_hash = false;
  return load_stable_diffusion(options).unet;
}

LoadedControlNet load(const fs::path& path, const UNetConfig& base) {
  ControlNetLoadOptions options;
  options.path = path;
  options.base = base;
  return load_control_net(options);
}

void expect_golden_parity(const fs::path& control_path, const std::string& label) {
  DOPPEL_REQUIRE_PATH(control_path);
  DOPPEL_REQUIRE_PATH(test::golden_dir() / "sd1" / "diffusers");
  at::set_num_threads(2);
  UNetModel unet = golden_unet();
  LoadedControlNet control = load(control_path, unet->config());
  EXPECT_TRUE(control.report.unused.empty()) << control.report.unused.front();
  control.model->check_fits(unet->config());
  SafetensorsFile golden =
      SafetensorsFile::open(control_dir() / "goldens" / "unet_with_control_scale0.8.safetensors");
  at::NoGradGuard no_grad;
  for (const std::string run : {"case0", "case1"}) {
    const at::Tensor x = test::golden_tensor(golden, run + ".sample");
    const at::Tensor t = test::golden_tensor(golden, run + ".timestep");
    const at::Tensor context = test::golden_tensor(golden, run + ".encoder_hidden_states");
    const at::Tensor hint = test::golden_tensor(golden, run + ".controlnet_cond");
    UNetExtraInputs residuals = control.model->forward(x, t, context, hint, 0.8);
    ASSERT_EQ(residuals.skip_residuals.size(), 6u);
    for (size_t i = 0; i < 6; ++i) {
      const std::string name = run + ".down_block_res_samples." + std::to_string(i);
      test::expect_close(residuals.skip_residuals[i], test::golden_tensor(golden, name),
                         kModuleTolerance, label + " " + name);
    }
    test::expect_close(residuals.middle_residual,
                       test::golden_tensor(golden, run + ".mid_block_res_sample"), kModuleTolerance,
                       label + " " + run + ".mid_block_res_sample");
    test::expect_close(unet->forward(x, t, context, residuals),
                       test::golden_tensor(golden, run + ".out"), kModuleTolerance,
                       label + " " + run + ".out");
  }
}

TEST(ControlNetGolden, LdmSingleFileFp16MatchesReference) {
  expect_golden_parity(control_dir() / "controlnet_tiny_ldm_single_file_fp16.safetensors",
                       "single file");
}

TEST(ControlNetGolden, DiffusersFolderMatchesReference) {
  expect_golden_parity(control_dir() / "diffusers", "diffusers");
}

TEST(ControlNetGolden, LayoutsAgreeAndRecordNameAndHash) {
  const fs::path single = control_dir() / "controlnet_tiny_ldm_single_file_fp16.safetensors";
  DOPPEL_REQUIRE_PATH(single);
  DOPPEL_REQUIRE_PATH(control_dir() / "diffusers");
  UNetConfig base = UNetConfig::sd15();
  base.context_dim = 32;
  LoadedControlNet from_file = load(single, base);
  LoadedControlNet from_folder = load(control_dir() / "diffusers", base);
  EXPECT_EQ(from_file.layout, ModelLayout::kSingleFile);
  EXPECT_EQ(from_folder.layout, ModelLayout::kDiffusers);
  EXPECT_EQ(from_file.name, "controlnet_tiny_ldm_single_file_fp16");
  EXPECT_EQ(from_folder.name, "diffusers");
  EXPECT_EQ(from_file.short_hash.size(), 8u);
  EXPECT_EQ(from_file.model->config().hint_channels, (std::vector<int64_t>{16, 16, 32, 32}));
  auto a = from_file.model->named_parameters();
  auto b = from_folder.model->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& item : a) EXPECT_TRUE(at::equal(item.value(), b[item.key()])) << item.key();
}

TEST(ControlNetLoading, UnprefixedSingleFileLoadsToo) {
  const fs::path single = control_dir() / "controlnet_tiny_ldm_single_file_fp16.safetensors";
  DOPPEL_REQUIRE_PATH(single);
  std::map<std::string, at::Tensor> bare;
  for (const auto& [name, tensor] : TensorSource::from_file(single).tensors(kControlNetPrefix))
    bare[name] = tensor;
  const fs::path path = fs::temp_directory_path() / "doppel_controlnet_bare.safetensors";
  save_safetensors(path, bare);
  UNetConfig base = UNetConfig::sd15();
  base.context_dim = 32;
  LoadedControlNet loaded = load(path, base);
  EXPECT_EQ(loaded.model->config().unet.model_channels, 32);
  EXPECT_EQ(loaded.name, "doppel_controlnet_bare");
}

TEST(ControlNetLoading, DiffusersNamesMapToLdmNames) {
  DiffusersUNetLayout layout;
  auto map = [&](const std::string& name) {
    return diffusers_control_net_name_to_ldm(name, layout, 6).value_or("<none>");
  };
  EXPECT_EQ(map("controlnet_cond_embedding.conv_in.weight"), "input_hint_block.0.weight");
  EXPECT_EQ(map("controlnet_cond_embedding.blocks.0.bias"), "input_hint_block.2.bias");
  EXPECT_EQ(map("controlnet_cond_embedding.blocks.5.weight"), "input_hint_block.12.weight");
  EXPECT_EQ(map("controlnet_cond_embedding.conv_out.weight"), "input_hint_block.14.weight");
  EXPECT_EQ(map("controlnet_down_blocks.11.weight"), "zero_convs.11.0.weight");
  EXPECT_EQ(map("controlnet_mid_block.bias"), "middle_block_out.0.bias");
  EXPECT_EQ(map("conv_in.weight"), "input_blocks.0.0.weight");
  EXPECT_EQ(map("down_blocks.0.attentions.1.proj_in.weight"), "input_blocks.2.1.proj_in.weight");
  EXPECT_EQ(map("time_embedding.linear_2.bias"), "time_embed.2.bias");
}

std::string error_of(const std::function<void()>& action, ErrorCode* code = nullptr) {
  try {
    action();
  } catch (const Error& error) {
    if (code) *code = error.code();
    return error.what();
  }
  return "<no error>";
}

TEST(ControlNetLoading, AStableDiffusionCheckpointIsNotAControlNet) {
  const fs::path model = test::golden_dir() / "sd1" / "sd1_tiny_single_file_fp16.safetensors";
  DOPPEL_REQUIRE_PATH(model);
  ErrorCode code{};
  const std::string message = error_of([&] { load(model, UNetConfig::sd15()); }, &code);
  EXPECT_EQ(code, ErrorCode::kInvalidFile);
  EXPECT_NE(message.find("is not a ControlNet"), std::string::npos) << message;
  EXPECT_NE(message.find("Stable Diffusion model"), std::string::npos) << message;
  const std::string folder =
      error_of([&] { load(test::golden_dir() / "sd1" / "diffusers", UNetConfig::sd15()); });
  EXPECT_NE(folder.find("not a ControlNet"), std::string::npos) << folder;
}

TEST(ControlNetLoading, ArbitraryTensorsAndMissingFilesAreClearErrors) {
  const fs::path path = fs::temp_directory_path() / "doppel_not_a_controlnet.safetensors";
  save_safetensors(path, {{"lora_unet_down.lora_up.weight", at::zeros({4, 4})}});
  const std::string lora = error_of([&] { load(path, UNetConfig::sd15()); });
  EXPECT_NE(lora.find("not a ControlNet"), std::string::npos) << lora;
  EXPECT_NE(lora.find("LoRA"), std::string::npos) << lora;
  ErrorCode code{};
  error_of([&] { load("/nonexistent/controlnet.safetensors", UNetConfig::sd15()); }, &code);
  EXPECT_EQ(code, ErrorCode::kNotFound);
}

TEST(ControlNetLoading, MissingTensorsAreNamed) {
  const fs::path single = control_dir() / "controlnet_tiny_ldm_single_file_fp16.safetensors";
  DOPPEL_REQUIRE_PATH(single);
  auto tensors = TensorSource::from_file(single).tensors();
  tensors.erase("control_model.zero_convs.3.0.weight");
  tensors.erase("control_model.middle_block_out.0.bias");
  const fs::path path = fs::temp_directory_path() / "doppel_controlnet_incomplete.safetensors";
  save_safetensors(path, tensors);
  UNetConfig base = UNetConfig::sd15();
  base.context_dim = 32;
  ErrorCode code{};
  const std::string message = error_of([&] { load(path, base); }, &code);
  EXPECT_EQ(code, ErrorCode::kNotFound);
  EXPECT_NE(message.find("zero_convs.3.0.weight"), std::string::npos) << message;
  EXPECT_NE(message.find("middle_block_out.0.bias"), std::string::npos) << message;

  // A hint embedding cut short cannot be a ControlNet's.
  tensors = TensorSource::from_file(single).tensors();
  tensors.erase("control_model.input_hint_block.14.weight");
  tensors.erase("control_model.input_hint_block.14.bias");
  save_safetensors(path, tensors);
  const std::string cut = error_of([&] { load(path, base); }, &code);
  EXPECT_EQ(code, ErrorCode::kInvalidFile);
  EXPECT_NE(cut.find("hint embedding"), std::string::npos) << cut;
}

TEST(ControlNetLoading, ShapesThatDisagreeNameBothShapes) {
  const fs::path single = control_dir() / "controlnet_tiny_ldm_single_file_fp16.safetensors";
  DOPPEL_REQUIRE_PATH(single);
  auto tensors = TensorSource::from_file(single).tensors();
  tensors["control_model.zero_convs.2.0.weight"] = at::zeros({32, 16, 1, 1}, at::kHalf);
  const fs::path path = fs::temp_directory_path() / "doppel_controlnet_bad_shape.safetensors";
  save_safetensors(path, tensors);
  UNetConfig base = UNetConfig::sd15();
  base.context_dim = 32;
  const std::string message = error_of([&] { load(path, base); });
  EXPECT_NE(message.find("zero_convs.2.0.weight"), std::string::npos) << message;
  EXPECT_NE(message.find("[32, 16, 1, 1]"), std::string::npos) << message;
}

TEST(ControlNetLoading, AControlNetForAnotherModelDoesNotFit) {
  const fs::path single = control_dir() / "controlnet_tiny_ldm_single_file_fp16.safetensors";
  DOPPEL_REQUIRE_PATH(single);
  UNetConfig base = UNetConfig::sd15();
  base.context_dim = 32;
  LoadedControlNet loaded = load(single, base);
  const std::string message = error_of([&] { loaded.model->check_fits(UNetConfig::sd15()); });
  EXPECT_NE(message.find("different"), std::string::npos) << message;
}

}  // namespace
}  // namespace doppel

// ControlNet built in code with random weights: residual shapes, the scale, and what the
// UNet does with the residuals.
#include "doppel/models/control_net.hpp"

#include <gtest/gtest.h>

#include "doppel/core/error.hpp"
#include "doppel/models/unet.hpp"

namespace doppel {
namespace {

UNetConfig tiny_unet_config() {
  UNetConfig config;
  config.model_channels = 32;
  config.block_out_channels = {32, 64};
  config.transformer_depth = {1, 0};
  config.num_heads = 8;
  config.context_dim = 32;
  return config;
}

ControlNetConfig tiny_control_config() {
  ControlNetConfig config;
  config.unet = tiny_unet_config();
  config.hint_channels = {16, 16, 32, 32};
  return config;
}

struct Inputs {
  at::Tensor x = at::randn({2, 4, 8, 12});
  at::Tensor t = at::tensor({500.0f, 20.0f});
  at::Tensor context = at::randn({2, 77, 32});
  at::Tensor hint = at::rand({2, 3, 64, 96});
};

TEST(ControlNet, ParameterNamesAreTheLdmCheckpointKeys) {
  ControlNetModel control(tiny_control_config());
  auto parameters = control->named_parameters();
  for (const char* name :
       {"time_embed.0.weight", "time_embed.2.bias", "input_blocks.0.0.weight",
        "input_blocks.1.1.proj_in.weight", "middle_block.1.transformer_blocks.0.attn2.to_k.weight",
        "input_hint_block.0.weight", "input_hint_block.2.weight", "input_hint_block.8.weight",
        "input_hint_block.14.bias", "zero_convs.0.0.weight", "zero_convs.5.0.bias",
        "middle_block_out.0.weight"})
    EXPECT_TRUE(parameters.contains(name)) << name;
  EXPECT_FALSE(parameters.contains("input_hint_block.16.weight"));
  EXPECT_FALSE(parameters.contains("zero_convs.6.0.weight"));
  EXPECT_FALSE(parameters.contains("out.2.weight"));
  EXPECT_EQ(parameters["input_hint_block.4.weight"].sizes(), (at::IntArrayRef{16, 16, 3, 3}));
  EXPECT_EQ(parameters["input_hint_block.8.weight"].sizes(), (at::IntArrayRef{32, 16, 3, 3}));
  EXPECT_EQ(parameters["input_hint_block.14.weight"].sizes(), (at::IntArrayRef{32, 32, 3, 3}));
  EXPECT_EQ(control->hint_downscale_factor(), 8);
}

TEST(ControlNet, FullSizeSd15HasTheReleasedShapes) {
  // Meta tensors: shapes only, no memory for 361M parameters.
  ControlNetModel control(ControlNetConfig::sd15(), at::TensorOptions().device(at::kMeta));
  auto parameters = control->named_parameters();
  EXPECT_EQ(parameters["input_hint_block.0.weight"].sizes(), (at::IntArrayRef{16, 3, 3, 3}));
  EXPECT_EQ(parameters["input_hint_block.10.weight"].sizes(), (at::IntArrayRef{96, 96, 3, 3}));
  EXPECT_EQ(parameters["input_hint_block.14.weight"].sizes(), (at::IntArrayRef{320, 256, 3, 3}));
  EXPECT_EQ(parameters["zero_convs.11.0.weight"].sizes(), (at::IntArrayRef{1280, 1280, 1, 1}));
  EXPECT_EQ(control->skip_channels().size(), 12u);
}

TEST(ControlNet, ResidualsHaveTheShapesOfTheUNetSkips) {
  at::manual_seed(0);
  ControlNetModel control(tiny_control_config());
  layers::randomize_parameters(*control, 11);
  UNetModel unet(tiny_unet_config());
  layers::randomize_parameters(*unet, 12);
  Inputs in;
  at::NoGradGuard no_grad;
  UNetExtraInputs residuals = control->forward(in.x, in.t, in.context, in.hint, 0.8);
  ASSERT_EQ(residuals.skip_residuals.size(), unet->skip_channels().size());
  const std::vector<std::vector<int64_t>> spatial = {{8, 12}, {8, 12}, {8, 12},
                                                     {4, 6},  {4, 6},  {4, 6}};
  for (size_t i = 0; i < residuals.skip_residuals.size(); ++i) {
    EXPECT_EQ(residuals.skip_residuals[i].sizes(),
              (at::IntArrayRef{2, unet->skip_channels()[i], spatial[i][0], spatial[i][1]}))
        << i;
  }
  EXPECT_EQ(residuals.middle_residual.sizes(), (at::IntArrayRef{2, 64, 4, 6}));
  // The scale multiplies every residual.
  UNetExtraInputs unit = control->forward(in.x, in.t, in.context, in.hint, 1.0);
  EXPECT_TRUE(at::allclose(residuals.middle_residual, unit.middle_residual * 0.8, 1e-5, 1e-6));
  EXPECT_TRUE(at::allclose(residuals.skip_residuals[3], unit.skip_residuals[3] * 0.8, 1e-5, 1e-6));
  // The residuals change the UNet's output.
  const at::Tensor plain = unet->forward(in.x, in.t, in.context);
  const at::Tensor steered = unet->forward(in.x, in.t, in.context, residuals);
  EXPECT_GT((plain - steered).abs().max().item<double>(), 1e-3);
}

TEST(ControlNet, ScaleZeroLeavesTheUNetUnchanged) {
  ControlNetModel control(tiny_control_config());
  layers::randomize_parameters(*control, 21);
  UNetModel unet(tiny_unet_config());
  layers::randomize_parameters(*unet, 22);
  Inputs in;
  at::NoGradGuard no_grad;
  UNetExtraInputs residuals = control->forward(in.x, in.t, in.context, in.hint, 0.0);
  for (const auto& residual : residuals.skip_residuals)
    EXPECT_EQ(residual.abs().max().item<double>(), 0.0);
  EXPECT_EQ(residuals.middle_residual.abs().max().item<double>(), 0.0);
  EXPECT_TRUE(at::equal(unet->forward(in.x, in.t, in.context),
                        unet->forward(in.x, in.t, in.context, residuals)));
}

TEST(ControlNet, OneControlImageServesTheWholeBatch) {
  ControlNetModel control(tiny_control_config());
  layers::randomize_parameters(*control, 31);
  Inputs in;
  at::NoGradGuard no_grad;
  const at::Tensor hint = in.hint.slice(0, 0, 1);
  UNetExtraInputs shared = control->forward(in.x, in.t, in.context, hint, 1.0);
  UNetExtraInputs repeated =
      control->forward(in.x, in.t, in.context, hint.expand({2, -1, -1, -1}), 1.0);
  // Equal up to the batch size's effect on convolution rounding.
  EXPECT_TRUE(at::allclose(shared.middle_residual, repeated.middle_residual, 1e-5, 1e-5));
  EXPECT_TRUE(at::allclose(shared.skip_residuals[0], repeated.skip_residuals[0], 1e-5, 1e-5));
}

TEST(ControlNet, WrongInputsAndMisfitsAreClearErrors) {
  ControlNetModel control(tiny_control_config());
  layers::randomize_parameters(*control, 41);
  Inputs in;
  at::NoGradGuard no_grad;
  try {
    control->forward(in.x, in.t, in.context, at::rand({2, 3, 64, 64}), 1.0);
    FAIL() << "a control image of the wrong size was accepted";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(error.what()).find("[N, 3, 64, 96]"), std::string::npos) << error.what();
  }
  EXPECT_THROW(control->forward(in.x, in.t, at::randn({2, 77, 768}), in.hint, 1.0), Error);

  EXPECT_NO_THROW(control->check_fits(tiny_unet_config()));
  try {
    control->check_fits(UNetConfig::sd15());
    FAIL() << "an SD1 tiny ControlNet fit the full-size UNet";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(error.what()).find("768"), std::string::npos) << error.what();
  }
  UNetConfig wider = tiny_unet_config();
  wider.block_out_channels = {32, 32};
  try {
    control->check_fits(wider);
    FAIL() << "a ControlNet with other channels fit";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("[32, 32, 32, 32, 64, 64]"), std::string::npos)
        << error.what();
  }
}

}  // namespace
}  // namespace doppel

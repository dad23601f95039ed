// LoRA merging: golden parity with kohya-ss's merge for the kohya and the PEFT
// file of ../shared/golden/lora (README §5), bit-exact removal, and tiny LoRAs
// built in code for every naming, LoHa, the 3x3 conv formula and bad input.
#include "doppel/checkpoint/lora.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "doppel/checkpoint/tiny_model.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/safetensors.hpp"
#include "doppel/models/layers.hpp"
#include "golden_support.hpp"
#include "support/shared_data.hpp"

// OpenBLAS's thread count, when libtorch's BLAS is OpenBLAS (apply_loras changes it meanwhile).
extern "C" __attribute__((weak)) int openblas_get_num_threads();

namespace doppel {
namespace {

namespace fs = std::filesystem;
using test::expect_close;
using test::golden_dir;
using test::golden_tensor;

using test::kSingleCallBound;

using Tensors = std::map<std::string, at::Tensor>;

StableDiffusionCheckpoint load_sd1(at::ScalarType dtype = at::kFloat) {
  ModelLoadOptions options;
  options.path = golden_dir() / "sd1/diffusers";
  options.dtype = dtype;
  options.compute_hash = false;
  return load_stable_diffusion(options);
}

// Every parameter of the UNet and text encoder, copied.
Tensors snapshot(StableDiffusionCheckpoint& model) {
  Tensors copy;
  for (const auto& item : model.unet->named_parameters()) {
    copy["unet." + item.key()] = item.value().detach().clone();
  }
  for (const auto& item : model.text_encoders[0].encoder->named_parameters()) {
    copy["te." + item.key()] = item.value().detach().clone();
  }
  return copy;
}

at::Tensor parameter(torch::nn::Module& module, const std::string& name) {
  return module.named_parameters()[name];
}

// Text encoder and UNet outputs against golden files (names with `te_key` /
// `unet_key` before "last_hidden_state" / "case0.out"; input_ids unprefixed).
void check_outputs(StableDiffusionCheckpoint& model, const SafetensorsFile& te_goldens,
                   const std::string& te_key, const SafetensorsFile& unet_goldens,
                   const std::string& unet_key, const std::string& label) {
  at::NoGradGuard no_grad;
  const ClipTextOutput text =
      model.text_encoders[0].encoder->forward(golden_tensor(te_goldens, "input_ids"));
  expect_close(text.last_hidden_state, golden_tensor(te_goldens, te_key + "last_hidden_state"),
               kSingleCallBound, label + " te.last_hidden_state");
  for (int i = 0; i < 3; ++i) {
    const std::string key = unet_key + "case" + std::to_string(i) + ".";
    at::Tensor out =
        model.unet->forward(golden_tensor(unet_goldens, key + "sample"),
                            golden_tensor(unet_goldens, key + "timestep").to(at::kFloat),
                            golden_tensor(unet_goldens, key + "encoder_hidden_states"));
    expect_close(out, golden_tensor(unet_goldens, key + "out"), kSingleCallBound,
                 label + " unet.case" + std::to_string(i) + ".out");
  }
}

void check_golden_merge(const std::string& lora_file) {
  const fs::path lora_path = golden_dir() / "lora" / lora_file;
  DOPPEL_REQUIRE_PATH(lora_path);
  DOPPEL_REQUIRE_PATH(golden_dir() / "sd1/diffusers");
  StableDiffusionCheckpoint model = load_sd1();
  const Tensors base = snapshot(model);
  const SafetensorsFile merged =
      SafetensorsFile::open(golden_dir() / "lora/goldens_merged_0.7.safetensors");
  {
    AppliedLoras applied = apply_loras(model, {{load_lora(lora_path), 0.7}});
    ASSERT_EQ(applied.reports().size(), 1u);
    const LoraMergeReport& report = applied.reports()[0];
    EXPECT_TRUE(report.unmatched.empty()) << report.unmatched.front();
    EXPECT_EQ(report.applied.size(), 135u);  // 117 UNet + 18 text-encoder modules
    check_outputs(model, merged, "te.", merged, "unet.", lora_file + " merged");
    {
      at::NoGradGuard no_grad;
      const ClipTextOutput text =
          model.text_encoders[0].encoder->forward(golden_tensor(merged, "input_ids"));
      expect_close(text.hidden_states[text.hidden_states.size() - 2],
                   golden_tensor(merged, "te.penultimate_hidden_state"), kSingleCallBound,
                   lora_file + " merged te.penultimate_hidden_state");
    }
    applied.remove();
    EXPECT_FALSE(applied.active());
  }
  // Removal copies the originals back: bit-identical base weights and outputs.
  const Tensors restored = snapshot(model);
  for (const auto& [name, tensor] : base) {
    ASSERT_TRUE(at::equal(tensor, restored.at(name))) << name;
  }
  const SafetensorsFile te =
      SafetensorsFile::open(golden_dir() / "sd1/goldens/text_encoder.safetensors");
  const SafetensorsFile unet = SafetensorsFile::open(golden_dir() / "sd1/goldens/unet.safetensors");
  check_outputs(model, te, "", unet, "", lora_file + " removed");
}

TEST(LoraGolden, KohyaFileMatchesKohyaMerge) {
  check_golden_merge("sd1_tiny_lora_kohya.safetensors");
}

TEST(LoraGolden, PeftFileMatchesKohyaMerge) {
  check_golden_merge("sd1_tiny_lora_peft.safetensors");
}

TEST(LoraGolden, RemovalIsExactInBf16AndSubtractingWouldNotBe) {
  const fs::path lora_path = golden_dir() / "lora/sd1_tiny_lora_kohya.safetensors";
  DOPPEL_REQUIRE_PATH(lora_path);
  DOPPEL_REQUIRE_PATH(golden_dir() / "sd1/diffusers");
  const LoraFile lora = load_lora(lora_path);
  StableDiffusionCheckpoint model = load_sd1(at::kBFloat16);
  const Tensors base = snapshot(model);
  {
    AppliedLoras applied = apply_loras(model, {{lora, 0.7}});
    EXPECT_EQ(parameter(*model.unet, "out.2.weight").scalar_type(), at::kBFloat16);
  }  // destruction removes
  for (const auto& [name, tensor] : snapshot(model)) {
    ASSERT_TRUE(at::equal(tensor, base.at(name))) << name;
  }

  // The alternative, subtracting the same fp32 delta, measured on every touched
  // weight: fp32 deltas from an fp32 merge, bf16 weights rounded twice.
  StableDiffusionCheckpoint reference = load_sd1();
  const Tensors reference_base = snapshot(reference);
  AppliedLoras applied = apply_loras(reference, {{lora, 0.7}});
  double worst_relative = 0;
  int64_t changed = 0, total = 0;
  for (const auto& [name, merged] : snapshot(reference)) {
    const at::Tensor delta = merged - reference_base.at(name);
    if (!delta.abs().max().item<double>()) continue;
    const at::Tensor weight = base.at(name).to(at::kFloat);
    const at::Tensor merged_bf16 = (weight + delta).to(at::kBFloat16);
    const at::Tensor back = (merged_bf16.to(at::kFloat) - delta).to(at::kBFloat16).to(at::kFloat);
    worst_relative =
        std::max(worst_relative, ((back - weight).abs().max() / weight.abs().max()).item<double>());
    changed += (back != weight).sum().item<int64_t>();
    total += weight.numel();
  }
  std::printf(
      "[ restore  ] bf16 subtract-delta: %lld of %lld touched weights differ, "
      "max %.3g of max|W|; saved originals: 0\n",
      static_cast<long long>(changed), static_cast<long long>(total), worst_relative);
  EXPECT_GT(changed, 0);  // why doppel keeps the originals instead
}

// ----------------------------------------------------------- tiny LoRAs in code

LoraFile lora_from(const Tensors& tensors) {
  return LoraFile::parse(std::make_shared<const SafetensorsFile>(
      SafetensorsFile::from_bytes(serialize_safetensors(tensors), "test-lora")));
}

at::Tensor randn(at::IntArrayRef shape, uint64_t seed) {
  at::Generator generator = at::detail::createCPUGenerator(seed);
  return at::randn(shape, generator);
}

void add_low_rank(Tensors& tensors, const std::string& module, at::Tensor down, at::Tensor up,
                  double alpha) {
  tensors[module + ".lora_down.weight"] = down;
  tensors[module + ".lora_up.weight"] = up;
  tensors[module + ".alpha"] = at::scalar_tensor(alpha, at::kHalf);
}

TEST(Lora, KohyaNamesResolveThroughTheDiffusersMap) {
  StableDiffusionCheckpoint model = make_tiny_stable_diffusion(5);
  Tensors tensors;
  // Diffusers paths with '_' (ambiguous to split), one LDM path and an encoder path.
  add_low_rank(tensors, "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_ff_net_0_proj",
               randn({2, 32}, 1), randn({256, 2}, 2), 1.0);
  add_low_rank(tensors, "lora_unet_down_blocks_0_downsamplers_0_conv", randn({2, 32, 3, 3}, 3),
               randn({32, 2, 1, 1}, 4), 1.0);
  add_low_rank(tensors, "lora_unet_up_blocks_0_upsamplers_0_conv", randn({2, 64, 3, 3}, 5),
               randn({64, 2, 1, 1}, 6), 1.0);
  add_low_rank(tensors, "lora_unet_mid_block_resnets_1_time_emb_proj", randn({2, 128}, 7),
               randn({64, 2}, 8), 1.0);
  add_low_rank(tensors, "lora_unet_up_blocks_0_resnets_0_conv_shortcut", randn({2, 128, 1, 1}, 9),
               randn({64, 2, 1, 1}, 10), 1.0);
  add_low_rank(tensors, "lora_unet_input_blocks_1_1_proj_in", randn({2, 32, 1, 1}, 11),
               randn({32, 2, 1, 1}, 12), 1.0);
  add_low_rank(tensors, "lora_te_text_model_encoder_layers_1_mlp_fc2", randn({2, 37}, 13),
               randn({32, 2}, 14), 1.0);
  AppliedLoras applied = apply_loras(model, {{lora_from(tensors), 1.0}});
  const LoraMergeReport& report = applied.reports().at(0);
  EXPECT_TRUE(report.unmatched.empty());
  const std::vector<std::string> expected = {
      "cond_stage_model.transformer.text_model.encoder.layers.1.mlp.fc2.weight",
      "model.diffusion_model.input_blocks.1.1.proj_in.weight",
      "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.ff.net.0.proj.weight",
      "model.diffusion_model.input_blocks.3.0.op.weight",
      "model.diffusion_model.middle_block.2.emb_layers.1.weight",
      "model.diffusion_model.output_blocks.0.0.skip_connection.weight",
      "model.diffusion_model.output_blocks.2.1.conv.weight",
  };
  std::vector<std::string> names = report.applied;
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, expected);
}

TEST(Lora, PrePeftDiffusersNamesResolve) {
  StableDiffusionCheckpoint model = make_tiny_stable_diffusion(11);
  Tensors tensors;
  const std::string attention =
      "unet.up_blocks.1.attentions.2.transformer_blocks.0.attn2.processor.";
  tensors[attention + "to_out_lora.down.weight"] = randn({2, 32}, 1);
  tensors[attention + "to_out_lora.up.weight"] = randn({32, 2}, 2);
  tensors[attention + "to_k_lora.down.weight"] = randn({2, 32}, 3);
  tensors[attention + "to_k_lora.up.weight"] = randn({32, 2}, 4);
  const std::string encoder = "text_encoder.text_model.encoder.layers.1.self_attn.v_proj.";
  tensors[encoder + "lora_linear_layer.down.weight"] = randn({2, 32}, 5);
  tensors[encoder + "lora_linear_layer.up.weight"] = randn({32, 2}, 6);
  AppliedLoras applied = apply_loras(model, {{lora_from(tensors), 1.0}});
  std::vector<std::string> names = applied.reports().at(0).applied;
  std::sort(names.begin(), names.end());
  EXPECT_EQ(
      names,
      (std::vector<std::string>{
          "cond_stage_model.transformer.text_model.encoder.layers.1.self_attn.v_proj.weight",
          "model.diffusion_model.output_blocks.5.1.transformer_blocks.0.attn2.to_k.weight",
          "model.diffusion_model.output_blocks.5.1.transformer_blocks.0.attn2.to_out.0.weight",
      }));
}

TEST(Lora, ConvDeltaMatchesTheConvolutionFormAndMultipliersAdd) {
  StableDiffusionCheckpoint model = make_tiny_stable_diffusion(6);
  const std::string ldm = "input_blocks.2.0.in_layers.2.weight";  // 3x3 conv [32, 32, 3, 3]
  const at::Tensor weight = parameter(*model.unet, ldm).detach().clone();
  const at::Tensor down = randn({4, 32, 3, 3}, 20).to(at::kHalf);
  const at::Tensor up = randn({32, 4, 1, 1}, 21).to(at::kHalf);
  Tensors first, second;
  add_low_rank(first, "lora_unet_down_blocks_0_resnets_1_conv1", down, up, 1.0);
  // The same layer in PEFT naming, no alpha (scale 1), another multiplier.
  const at::Tensor down_b = randn({3, 32, 3, 3}, 22), up_b = randn({32, 3, 1, 1}, 23);
  second["unet.down_blocks.0.resnets.1.conv1.lora_A.weight"] = down_b;
  second["unet.down_blocks.0.resnets.1.conv1.lora_B.weight"] = up_b;
  AppliedLoras applied = apply_loras(model, {{lora_from(first), 0.7}, {lora_from(second), -0.3}});
  // kohya: conv2d(down.permute(1, 0, 2, 3), up).permute(1, 0, 2, 3), padding 0 on the 3x3 down.
  const auto conv_delta = [](const at::Tensor& d, const at::Tensor& u) {
    return at::conv2d(d.to(at::kFloat).permute({1, 0, 2, 3}), u.to(at::kFloat))
        .permute({1, 0, 2, 3});
  };
  const at::Tensor expected =
      weight + 0.7 * (1.0 / 4) * conv_delta(down, up) - 0.3 * conv_delta(down_b, up_b);
  const at::Tensor merged = parameter(*model.unet, ldm);
  EXPECT_LT((merged - expected).abs().max().item<double>(), 1e-5);
  EXPECT_EQ(applied.reports().at(0).applied.size(), 1u);
  EXPECT_EQ(applied.reports().at(1).applied.size(), 1u);
  applied.remove();
  EXPECT_TRUE(at::equal(parameter(*model.unet, ldm), weight));
}

// A bf16 layer changed by several LoRAs gets their changes summed in fp32 and is rounded once:
// within half a bf16 step of the exact sum, where rounding after each LoRA is not.
TEST(Lora, Bf16WeightsTakeEveryLorasChangeSummedAndRoundedOnce) {
  StableDiffusionCheckpoint model = make_tiny_stable_diffusion(8);
  model.unet->to(at::kBFloat16);
  model.text_encoders[0].encoder->to(at::kBFloat16);
  const std::string conv = "input_blocks.2.0.in_layers.2.weight";  // [32, 32, 3, 3]
  const std::string linear = "text_model.encoder.layers.0.self_attn.q_proj.weight";  // [32, 32]
  torch::nn::Module& encoder = *model.text_encoders[0].encoder;
  const at::Tensor conv_before = parameter(*model.unet, conv).detach().to(at::kDouble);
  const at::Tensor linear_before = parameter(encoder, linear).detach().to(at::kDouble);
  Tensors first, second;
  // First: a kohya conv LoRA (fp16, alpha 1 of rank 4) and a LoHa on the linear layer.
  const at::Tensor down = randn({4, 32, 3, 3}, 60).to(at::kHalf);
  const at::Tensor up = randn({32, 4, 1, 1}, 61).to(at::kHalf);
  add_low_rank(first, "lora_unet_down_blocks_0_resnets_1_conv1", down, up, 1.0);
  const std::string loha = "lora_te_text_model_encoder_layers_0_self_attn_q_proj";
  first[loha + ".hada_w1_a"] = randn({32, 2}, 62);
  first[loha + ".hada_w1_b"] = randn({2, 32}, 63);
  first[loha + ".hada_w2_a"] = randn({32, 2}, 64);
  first[loha + ".hada_w2_b"] = randn({2, 32}, 65);
  // Second: PEFT LoRAs on both layers (no alpha: scale 1).
  const at::Tensor conv_down = randn({3, 32, 3, 3}, 66), conv_up = randn({32, 3, 1, 1}, 67);
  const at::Tensor linear_down = randn({2, 32}, 68), linear_up = randn({32, 2}, 69);
  second["unet.down_blocks.0.resnets.1.conv1.lora_A.weight"] = conv_down;
  second["unet.down_blocks.0.resnets.1.conv1.lora_B.weight"] = conv_up;
  second["text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight"] = linear_down;
  second["text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight"] = linear_up;
  const auto product = [](const at::Tensor& a, const at::Tensor& b) {
    return a.to(at::kDouble).flatten(1).matmul(b.to(at::kDouble).flatten(1));
  };
  const double first_scale = 0.9, second_scale = -0.6;
  const at::Tensor conv_first = (first_scale / 4) * product(up, down).reshape({32, 32, 3, 3});
  const at::Tensor conv_second = second_scale * product(conv_up, conv_down).reshape({32, 32, 3, 3});
  const at::Tensor linear_first =  // no alpha: scale 1
      first_scale * product(first[loha + ".hada_w1_a"], first[loha + ".hada_w1_b"]) *
      product(first[loha + ".hada_w2_a"], first[loha + ".hada_w2_b"]);
  const at::Tensor linear_second = second_scale * product(linear_up, linear_down);

  AppliedLoras applied =
      apply_loras(model, {{lora_from(first), first_scale}, {lora_from(second), second_scale}});
  // Half a bf16 step (8 significant bits) of the exact value, and what fp32 sums may add.
  const auto rounding_errors = [](const at::Tensor& result, const at::Tensor& exact,
                                  const at::Tensor& magnitude) {
    const at::Tensor half_step = at::exp2(at::floor(at::log2(exact.abs())) - 8);
    return ((result.to(at::kDouble) - exact).abs() > half_step * 1.001 + 1e-6 * magnitude)
        .sum()
        .item<int64_t>();
  };
  const auto check = [&](const at::Tensor& merged, const at::Tensor& before, const at::Tensor& one,
                         const at::Tensor& two, const std::string& name) {
    EXPECT_EQ(merged.scalar_type(), at::kBFloat16) << name;
    const at::Tensor exact = before + one + two;
    const at::Tensor magnitude = before.abs() + one.abs() + two.abs();
    EXPECT_EQ(rounding_errors(merged, exact, magnitude), 0) << name;
    // Rounding after each LoRA, as merging them one by one would, misses that bound.
    const at::Tensor twice = ((before + one).to(at::kFloat).to(at::kBFloat16).to(at::kDouble) + two)
                                 .to(at::kFloat)
                                 .to(at::kBFloat16);
    EXPECT_GT(rounding_errors(twice, exact, magnitude), 0) << name;
  };
  check(parameter(*model.unet, conv), conv_before, conv_first, conv_second, conv);
  check(parameter(encoder, linear), linear_before, linear_first, linear_second, linear);
  applied.remove();
  EXPECT_TRUE(at::equal(parameter(*model.unet, conv).to(at::kDouble), conv_before));
  EXPECT_TRUE(at::equal(parameter(encoder, linear).to(at::kDouble), linear_before));
}

// LoCon with a Tucker core: the merged delta must act like the three convs
// (1x1 down, kxk mid, 1x1 up) it factorises.
TEST(Lora, LoconTuckerDeltaActsLikeItsThreeConvs) {
  StableDiffusionCheckpoint model = make_tiny_stable_diffusion(12);
  const std::string ldm = "input_blocks.2.0.in_layers.2.weight";  // [32, 32, 3, 3]
  const at::Tensor before = parameter(*model.unet, ldm).detach().clone();
  const at::Tensor down = randn({3, 32, 1, 1}, 60), mid = randn({2, 3, 3, 3}, 61),
                   up = randn({32, 2, 1, 1}, 62);
  Tensors tensors = {{"lora_unet_down_blocks_0_resnets_1_conv1.lora_down.weight", down},
                     {"lora_unet_down_blocks_0_resnets_1_conv1.lora_mid.weight", mid},
                     {"lora_unet_down_blocks_0_resnets_1_conv1.lora_up.weight", up}};
  AppliedLoras applied = apply_loras(model, {{lora_from(tensors), 1.0}});  // no alpha: scale 1
  ASSERT_EQ(applied.reports().at(0).applied.size(), 1u);
  const at::Tensor delta = parameter(*model.unet, ldm).detach() - before;
  const at::Tensor x = randn({1, 32, 6, 6}, 63);
  const at::Tensor factored = at::conv2d(at::conv2d(at::conv2d(x, down), mid, {}, 1, 1), up);
  const at::Tensor merged = at::conv2d(x, delta, {}, 1, 1);
  EXPECT_LT((merged - factored).abs().max().item<double>(),
            1e-4 * factored.abs().max().item<double>());
  // A mid core on a Linear layer does not fit.
  Tensors linear = {
      {"lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight", randn({3, 32}, 1)},
      {"lora_te_text_model_encoder_layers_0_mlp_fc1.lora_mid.weight", mid},
      {"lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight", randn({37, 2}, 2)}};
  EXPECT_THROW(apply_loras(model, {{lora_from(linear), 1.0}}), Error);
}

TEST(Lora, LohaOnLinearAndConv) {
  StableDiffusionCheckpoint model = make_tiny_stable_diffusion(7);
  const std::string linear = "text_model.encoder.layers.0.self_attn.q_proj.weight";  // [32, 32]
  const std::string conv = "output_blocks.1.0.in_layers.2.weight";  // [64, 128, 3, 3]
  torch::nn::Module& encoder = *model.text_encoders[0].encoder;
  const at::Tensor linear_before = parameter(encoder, linear).detach().clone();
  const at::Tensor conv_before = parameter(*model.unet, conv).detach().clone();
  Tensors tensors;
  const auto add_loha = [&](const std::string& module, int64_t out, int64_t in, int64_t rank,
                            uint64_t seed) {
    tensors[module + ".hada_w1_a"] = randn({out, rank}, seed);
    tensors[module + ".hada_w1_b"] = randn({rank, in}, seed + 1);
    tensors[module + ".hada_w2_a"] = randn({out, rank}, seed + 2);
    tensors[module + ".hada_w2_b"] = randn({rank, in}, seed + 3);
    tensors[module + ".alpha"] = at::scalar_tensor(2.0);
    return (tensors[module + ".hada_w1_a"].matmul(tensors[module + ".hada_w1_b"])) *
           (tensors[module + ".hada_w2_a"].matmul(tensors[module + ".hada_w2_b"])) *
           (2.0 / static_cast<double>(rank));
  };
  const at::Tensor linear_delta =
      add_loha("lora_te_text_model_encoder_layers_0_self_attn_q_proj", 32, 32, 4, 30);
  const at::Tensor conv_delta =
      add_loha("lora_unet_up_blocks_0_resnets_1_conv1", 64, 128 * 9, 8, 40);
  const LoraFile lora = lora_from(tensors);
  ASSERT_EQ(lora.modules().size(), 2u);
  EXPECT_EQ(lora.modules()[0].kind, LoraModuleKind::kLoha);
  AppliedLoras applied = apply_loras(model, {{lora, 0.5}});
  EXPECT_TRUE(applied.reports()[0].unmatched.empty());
  EXPECT_LT((parameter(encoder, linear) - (linear_before + 0.5 * linear_delta))
                .abs()
                .max()
                .item<double>(),
            1e-5);
  EXPECT_LT(
      (parameter(*model.unet, conv) - (conv_before + 0.5 * conv_delta.reshape({64, 128, 3, 3})))
          .abs()
          .max()
          .item<double>(),
      1e-4);
}

TEST(Lora, OpenClipQkvChangeRowsOfThePackedProjection) {
  ClipTextConfig config;
  config.vocab_size = 64;
  config.hidden_size = 16;
  config.num_heads = 2;
  config.num_layers = 2;
  config.intermediate_size = 24;
  config.max_positions = 8;
  config.activation = ClipActivation::kGelu;
  auto encoder = std::make_shared<OpenClipTextModelImpl>(config);
  layers::randomize_parameters(*encoder, 3);
  StableDiffusionCheckpoint model;
  model.text_encoders.push_back({encoder, kSd2TextEncoderPrefix, true, 0, std::nullopt});
  const std::string packed = "transformer.resblocks.1.attn.in_proj_weight";
  const at::Tensor before = parameter(*encoder, packed).detach().clone();
  const at::Tensor fc1_before =
      parameter(*encoder, "transformer.resblocks.1.mlp.c_fc.weight").detach().clone();
  Tensors tensors;
  const at::Tensor down = randn({2, 16}, 50), up = randn({16, 2}, 51);
  tensors["text_encoder.text_model.encoder.layers.1.self_attn.k_proj.lora_A.weight"] = down;
  tensors["text_encoder.text_model.encoder.layers.1.self_attn.k_proj.lora_B.weight"] = up;
  add_low_rank(tensors, "lora_te_text_model_encoder_layers_1_mlp_fc1", randn({2, 16}, 52),
               randn({24, 2}, 53), 2.0);
  AppliedLoras applied = apply_loras(model, {{lora_from(tensors), 1.0}});
  EXPECT_TRUE(applied.reports()[0].unmatched.empty());
  const at::Tensor after = parameter(*encoder, packed);
  EXPECT_TRUE(at::equal(after.slice(0, 0, 16), before.slice(0, 0, 16)));    // q
  EXPECT_TRUE(at::equal(after.slice(0, 32, 48), before.slice(0, 32, 48)));  // v
  EXPECT_LT((after.slice(0, 16, 32) - before.slice(0, 16, 32) - up.matmul(down))
                .abs()
                .max()
                .item<double>(),
            1e-5);
  EXPECT_FALSE(
      at::equal(parameter(*encoder, "transformer.resblocks.1.mlp.c_fc.weight"), fc1_before));
  applied.remove();
  EXPECT_TRUE(at::equal(parameter(*encoder, packed), before));
}

// A rank-1 LoRA on every weight module of a diffusers folder's UNet and the
// encoder layers of its text encoders, named kohya-style or PEFT-style.
LoraFile every_module_lora(const fs::path& folder, bool kohya) {
  Tensors tensors;
  const auto add = [&](const std::string& kohya_prefix, const std::string& peft_prefix,
                       const fs::path& file, const std::string& only_under) {
    if (!fs::exists(file)) return;
    const SafetensorsFile weights = SafetensorsFile::open(file);
    for (const auto& entry : weights.entries()) {
      const std::string& name = entry.name;
      if (entry.shape.size() < 2 || name.size() < 7 ||
          name.compare(name.size() - 7, 7, ".weight") != 0 ||
          name.compare(0, only_under.size(), only_under) != 0) {
        continue;
      }
      std::string path = name.substr(0, name.size() - 7);
      std::vector<int64_t> down = entry.shape, up = {entry.shape[0], 1};
      down[0] = 1;
      if (entry.shape.size() == 4) up = {entry.shape[0], 1, 1, 1};
      if (kohya) {
        std::replace(path.begin(), path.end(), '.', '_');
        tensors[kohya_prefix + path + ".lora_down.weight"] = at::full(down, 0.01);
        tensors[kohya_prefix + path + ".lora_up.weight"] = at::full(up, 0.01);
      } else {
        tensors[peft_prefix + path + ".lora_A.weight"] = at::full(down, 0.01);
        tensors[peft_prefix + path + ".lora_B.weight"] = at::full(up, 0.01);
      }
    }
  };
  add("lora_unet_", "unet.", folder / "unet/diffusion_pytorch_model.safetensors", "");
  const bool two_encoders = fs::exists(folder / "text_encoder_2");
  add(two_encoders ? "lora_te1_" : "lora_te_", "text_encoder.",
      folder / "text_encoder/model.safetensors", "text_model.encoder.");
  add("lora_te2_", "text_encoder_2.", folder / "text_encoder_2/model.safetensors",
      "text_model.encoder.");
  return lora_from(tensors);
}

// Every module name of the SD1, SD2 (Linear projections, OpenCLIP encoder) and
// SDXL (two encoders, depth-2 transformers) tiny models resolves, both namings.
TEST(LoraGolden, EveryModuleOfEveryFamilyResolves) {
  for (const char* family : {"sd1", "sd2", "sdxl"}) {
    const fs::path folder = golden_dir() / family / "diffusers";
    DOPPEL_REQUIRE_PATH(folder);
    ModelLoadOptions options;
    options.path = folder;
    options.compute_hash = false;
    StableDiffusionCheckpoint model = load_stable_diffusion(options);
    for (bool kohya : {true, false}) {
      const LoraFile lora = every_module_lora(folder, kohya);
      AppliedLoras applied = apply_loras(model, {{lora, 1.0}});
      const LoraMergeReport& report = applied.reports().at(0);
      EXPECT_TRUE(report.unmatched.empty())
          << family << (kohya ? " kohya: " : " peft: ") << report.unmatched.size()
          << " unmatched, first " << report.unmatched.front();
      EXPECT_EQ(report.applied.size(), lora.modules().size()) << family;
      std::printf("[ names    ] %-4s %-5s %zu modules resolved\n", family, kohya ? "kohya" : "peft",
                  report.applied.size());
    }
  }
}

// ------------------------------------------------------------------ bad input

TEST(LoraBadInput, UnknownModulesAndStrayTensorsAreReportedByName) {
  StableDiffusionCheckpoint model = make_tiny_stable_diffusion(8);
  Tensors tensors;
  add_low_rank(tensors, "lora_unet_down_blocks_7_resnets_0_conv1", randn({2, 32, 3, 3}, 1),
               randn({32, 2, 1, 1}, 2), 1.0);
  add_low_rank(tensors, "lora_te_text_model_encoder_layers_0_mlp_fc1", randn({2, 32}, 3),
               randn({37, 2}, 4), 1.0);
  tensors["unet.no_such_block.lora_A.weight"] = randn({2, 4}, 5);
  tensors["unet.no_such_block.lora_B.weight"] = randn({4, 2}, 6);
  tensors["some_metadata_tensor"] = randn({3}, 7);
  AppliedLoras applied = apply_loras(model, {{lora_from(tensors), 1.0}});
  const LoraMergeReport& report = applied.reports().at(0);
  EXPECT_EQ(report.applied.size(), 1u);
  std::vector<std::string> unmatched = report.unmatched;
  std::sort(unmatched.begin(), unmatched.end());
  EXPECT_EQ(unmatched, (std::vector<std::string>{"lora_unet_down_blocks_7_resnets_0_conv1",
                                                 "some_metadata_tensor", "unet.no_such_block"}));
}

TEST(LoraBadInput, ShapeMismatchNamesTensorAndBothShapesAndLeavesModelUnchanged) {
  StableDiffusionCheckpoint model = make_tiny_stable_diffusion(9);
  const Tensors before = snapshot(model);
  Tensors tensors;
  add_low_rank(tensors, "lora_te_text_model_encoder_layers_0_mlp_fc1", randn({2, 32}, 3),
               randn({37, 2}, 4), 1.0);
  // An SD2-sized proj_in: 320 channels where the model has 32.
  add_low_rank(tensors, "lora_unet_down_blocks_0_attentions_0_proj_in", randn({4, 320, 1, 1}, 1),
               randn({32, 4, 1, 1}, 2), 1.0);
  try {
    apply_loras(model, {{lora_from(tensors), 1.0}});
    FAIL() << "expected a shape error";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidFile);
    const std::string message = error.what();
    EXPECT_NE(message.find("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"),
              std::string::npos)
        << message;
    EXPECT_NE(message.find("[4, 320, 1, 1]"), std::string::npos) << message;
    EXPECT_NE(message.find("input_blocks.1.1.proj_in.weight [32, 32, 1, 1]"), std::string::npos)
        << message;
  }
  for (const auto& [name, tensor] : snapshot(model)) {
    ASSERT_TRUE(at::equal(tensor, before.at(name))) << name;
  }
}

// The merge runs OpenBLAS on one thread; every other product needs its threads back, after a
// merge and after a refused one.
TEST(LoraBadInput, BlasThreadsAreRestoredAfterAMergeAndARefusedOne) {
  if (!openblas_get_num_threads) GTEST_SKIP() << "libtorch's BLAS is not OpenBLAS";
  const int threads = openblas_get_num_threads();
  StableDiffusionCheckpoint model = make_tiny_stable_diffusion(10);
  Tensors good, poisoned;
  add_low_rank(good, "lora_unet_conv_in", randn({2, 4, 3, 3}, 70), randn({32, 2, 1, 1}, 71), 1.0);
  {
    AppliedLoras applied = apply_loras(model, {{lora_from(good), 1.0}});
    EXPECT_EQ(openblas_get_num_threads(), threads);
  }
  add_low_rank(poisoned, "lora_unet_conv_in", at::full({2, 4, 3, 3}, 3e38),
               at::full({32, 2, 1, 1}, 3e38), 1.0);
  EXPECT_THROW(apply_loras(model, {{lora_from(good), 1.0}, {lora_from(poisoned), 1.0}}), Error);
  EXPECT_EQ(openblas_get_num_threads(), threads);
}

// Finite factors can still multiply past fp32's range: that change is refused like NaN, while
// large factors whose change fits are merged.
TEST(LoraBadInput, FactorsWhoseProductOverflowsAreRefused) {
  StableDiffusionCheckpoint model = make_tiny_stable_diffusion(9);
  const std::string conv = "input_blocks.0.0.weight";
  const at::Tensor before = parameter(*model.unet, conv).detach().clone();
  Tensors overflowing;
  add_low_rank(overflowing, "lora_unet_conv_in", at::full({1, 4, 3, 3}, 1e20),
               at::full({32, 1, 1, 1}, 1e20), 1.0);
  try {
    apply_loras(model, {{lora_from(overflowing), 1.0}});
    FAIL() << "a change of 1e40 was merged";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidFile);
    EXPECT_NE(std::string(error.what()).find("lora_unet_conv_in"), std::string::npos)
        << error.what();
  }
  EXPECT_TRUE(at::equal(parameter(*model.unet, conv), before));
  Tensors large;
  add_low_rank(large, "lora_unet_conv_in", at::full({1, 4, 3, 3}, 1e16),
               at::full({32, 1, 1, 1}, 1e16), 1.0);
  AppliedLoras applied = apply_loras(model, {{lora_from(large), 1.0}});
  const at::Tensor merged = parameter(*model.unet, conv);
  EXPECT_TRUE(merged.isfinite().all().item<bool>());
  EXPECT_NEAR(merged[0][0][0][0].item<double>(), 1e32, 1e26);
}

TEST(LoraBadInput, FilesThatAreNotUsableLoras) {
  StableDiffusionCheckpoint model = make_tiny_stable_diffusion(10);
  // A model checkpoint.
  Tensors checkpoint = {{"model.diffusion_model.out.2.weight", randn({4, 32, 3, 3}, 1)}};
  EXPECT_THROW(
      {
        try {
          lora_from(checkpoint);
        } catch (const Error& error) {
          EXPECT_EQ(error.code(), ErrorCode::kInvalidFile);
          EXPECT_NE(std::string(error.what()).find("not a LoRA"), std::string::npos);
          throw;
        }
      },
      Error);
  // A module without its up matrix.
  Tensors half = {{"lora_unet_conv_in.lora_down.weight", randn({2, 4, 3, 3}, 2)}};
  EXPECT_THROW(lora_from(half), Error);
  // LyCORIS LoKr.
  Tensors lokr = {{"lora_unet_conv_in.lokr_w1", randn({2, 2}, 3)}};
  try {
    lora_from(lokr);
    FAIL();
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kUnsupported);
  }
  // NaN weights: refused, model untouched.
  Tensors poisoned;
  add_low_rank(poisoned, "lora_unet_conv_in", randn({2, 4, 3, 3}, 6), randn({32, 2, 1, 1}, 7), 1.0);
  poisoned["lora_unet_conv_in.lora_up.weight"][0][0][0][0] = std::nan("");
  const at::Tensor conv_in = parameter(*model.unet, "input_blocks.0.0.weight").detach().clone();
  EXPECT_THROW(apply_loras(model, {{lora_from(poisoned), 1.0}}), Error);
  EXPECT_TRUE(at::equal(parameter(*model.unet, "input_blocks.0.0.weight"), conv_in));
  // A truncated file and a missing one.
  Tensors good;
  add_low_rank(good, "lora_unet_conv_in", randn({2, 4, 3, 3}, 4), randn({32, 2, 1, 1}, 5), 1.0);
  const std::string bytes = serialize_safetensors(good);
  const fs::path path = fs::temp_directory_path() / "doppel_lora_truncated.safetensors";
  {
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size() - 10));
  }
  try {
    load_lora(path);
    FAIL();
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidFile) << error.what();
  }
  fs::remove(path);
  try {
    load_lora(path);
    FAIL();
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kNotFound);
  }
  EXPECT_NO_THROW(apply_loras(model, {{lora_from(good), 1.0}}));
}

}  // namespace
}  // namespace doppel

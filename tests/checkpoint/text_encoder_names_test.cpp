#include "doppel/checkpoint/tensor_names.hpp"
#include "doppel/checkpoint/text_encoder_config.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <set>

#include "doppel/core/atomic_file.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/safetensors.hpp"
#include "doppel/models/layers.hpp"
#include "models/clip_text_test_support.hpp"
#include "support/shared_data.hpp"

namespace doppel {
namespace {

using clip_text_test::load_parameters;
using clip_text_test::read_tensors;
using clip_text_test::strip_prefix;
using test::golden_dir;

constexpr double kFp32Tolerance = 1e-5;

ClipTextConfig tiny_config() {
  ClipTextConfig config;
  config.vocab_size = 100;
  config.hidden_size = 16;
  config.num_heads = 2;
  config.num_layers = 2;
  config.intermediate_size = 24;
  config.max_positions = 10;
  config.activation = ClipActivation::kGelu;
  config.projection_dim = 8;
  return config;
}

at::Tensor tiny_ids() {
  return at::tensor({98, 5, 17, 3, 99, 99, 99, 99, 99, 99, 98, 42, 7, 7, 61, 2, 30, 99, 99, 99},
                    at::kLong)
      .view({2, 10});
}

std::map<std::string, at::Tensor> parameters_of(torch::nn::Module& module,
                                                const std::string& prefix = "") {
  std::map<std::string, at::Tensor> tensors;
  for (const auto& item : module.named_parameters()) tensors[prefix + item.key()] = item.value();
  return tensors;
}

TensorShapes file_shapes(const std::filesystem::path& path) {
  TensorShapes shapes;
  const SafetensorsFile file = SafetensorsFile::open(path);
  for (const SafetensorsEntry& entry : file.entries()) {
    shapes[entry.name] = entry.shape;
  }
  return shapes;
}

nlohmann::json read_json(const std::filesystem::path& path) {
  return nlohmann::json::parse(read_file(path));
}

void expect_same_config(const ClipTextConfig& actual, const ClipTextConfig& expected) {
  EXPECT_EQ(actual.vocab_size, expected.vocab_size);
  EXPECT_EQ(actual.hidden_size, expected.hidden_size);
  EXPECT_EQ(actual.num_heads, expected.num_heads);
  EXPECT_EQ(actual.num_layers, expected.num_layers);
  EXPECT_EQ(actual.intermediate_size, expected.intermediate_size);
  EXPECT_EQ(actual.max_positions, expected.max_positions);
  EXPECT_DOUBLE_EQ(actual.layer_norm_eps, expected.layer_norm_eps);
  EXPECT_EQ(actual.activation, expected.activation);
  EXPECT_EQ(actual.projection_dim, expected.projection_dim);
}

template <typename Function>
void expect_error(ErrorCode code, const std::string& fragment, const Function& function) {
  try {
    function();
    ADD_FAILURE() << "no error; expected one mentioning " << fragment;
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), code) << error.what();
    EXPECT_NE(std::string(error.what()).find(fragment), std::string::npos) << error.what();
  }
}

TEST(TextEncoderNamesTest, HuggingFaceWeightsRunIdenticallyInOpenClipNaming) {
  ClipTextModel hf(tiny_config());
  layers::randomize_parameters(*hf, 21);
  auto tensors = parameters_of(*hf, "conditioner.embedders.1.model.");
  tensors["conditioner.embedders.1.model.text_model.embeddings.position_ids"] =
      at::arange(10, at::kLong).view({1, 10});
  tensors["conditioner.embedders.1.model.logit_scale"] = at::ones({});
  tensors["other.tensor"] = at::zeros({1});
  const auto mapped = hf_clip_to_open_clip(tensors, "conditioner.embedders.1.model.", "prefix.");

  OpenClipTextModel open_clip(tiny_config());
  std::set<std::string> expected = {
      "prefix.logit_scale"};  // unknown: kept for the loader to report
  for (const auto& item : open_clip->named_parameters()) expected.insert("prefix." + item.key());
  std::set<std::string> produced;
  for (const auto& [name, tensor] : mapped) produced.insert(name);
  EXPECT_EQ(produced, expected);  // position_ids dropped, tensors outside the prefix ignored
  EXPECT_EQ(mapped.at("prefix.text_projection").sizes(), at::IntArrayRef({16, 8}));

  const std::vector<std::string> unused =
      load_parameters(*open_clip, strip_prefix(mapped, "prefix."));
  EXPECT_EQ(unused, std::vector<std::string>{"logit_scale"});
  at::NoGradGuard no_grad;
  const ClipTextOutput hf_output = hf->forward(tiny_ids());
  const ClipTextOutput open_clip_output = open_clip->forward(tiny_ids());
  clip_text_test::expect_close(open_clip_output.last_hidden_state, hf_output.last_hidden_state,
                               1e-6, "tiny open_clip vs hf last_hidden_state");
  clip_text_test::expect_close(open_clip_output.text_embeds, hf_output.text_embeds, 1e-6,
                               "tiny open_clip vs hf text_embeds");
}

TEST(TextEncoderNamesTest, RoundTripRestoresHuggingFaceNames) {
  ClipTextModel hf(tiny_config());
  layers::randomize_parameters(*hf, 22);
  const auto original = parameters_of(*hf, "te.");
  const auto round_trip =
      open_clip_to_hf_clip(hf_clip_to_open_clip(original, "te.", "oc."), "oc.", "te.");
  ASSERT_EQ(round_trip.size(), original.size());
  for (const auto& [name, tensor] : original) {
    ASSERT_TRUE(round_trip.contains(name)) << name;
    EXPECT_TRUE(at::equal(round_trip.at(name), tensor)) << name;
  }
}

TEST(TextEncoderNamesTest, IncompleteAttentionIsRejected) {
  ClipTextModel hf(tiny_config());
  auto tensors = parameters_of(*hf);
  tensors.erase("text_model.encoder.layers.1.self_attn.k_proj.weight");
  expect_error(ErrorCode::kInvalidFile, "layer 1", [&] { hf_clip_to_open_clip(tensors); });
  expect_error(ErrorCode::kInvalidFile, "self_attn.k_proj.weight",
               [&] { hf_clip_to_open_clip(tensors); });
  std::map<std::string, at::Tensor> odd = {
      {"transformer.resblocks.0.attn.in_proj_bias", at::zeros({7})}};
  expect_error(ErrorCode::kInvalidFile, "q, k, v", [&] { open_clip_to_hf_clip(odd); });
}

TEST(TextEncoderNamesTest, InfersTinyConfigsFromShapesAndConfigJson) {
  ClipTextModel hf(tiny_config());
  OpenClipTextModel open_clip(tiny_config());
  const TensorShapes hf_shapes = tensor_shapes(parameters_of(*hf, "cond_stage_model.transformer."));
  const TensorShapes open_clip_shapes = tensor_shapes(parameters_of(*open_clip, "model."));
  const nlohmann::json config = {{"num_attention_heads", 2}, {"hidden_act", "gelu"}};
  expect_same_config(infer_clip_text_config(hf_shapes, "cond_stage_model.transformer.", &config),
                     tiny_config());
  expect_same_config(infer_open_clip_text_config(open_clip_shapes, "model.", &config),
                     tiny_config());
  // 16 wide: heads cannot be guessed without config.json.
  expect_error(ErrorCode::kUnsupported, "num_attention_heads",
               [&] { infer_clip_text_config(hf_shapes, "cond_stage_model.transformer."); });
  const nlohmann::json unknown_activation = {{"num_attention_heads", 2}, {"hidden_act", "relu"}};
  expect_error(ErrorCode::kUnsupported, "relu", [&] {
    infer_clip_text_config(hf_shapes, "cond_stage_model.transformer.", &unknown_activation);
  });
  TensorShapes missing = hf_shapes;
  missing.erase("cond_stage_model.transformer.text_model.embeddings.token_embedding.weight");
  expect_error(ErrorCode::kInvalidFile,
               "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
               [&] { infer_clip_text_config(missing, "cond_stage_model.transformer.", &config); });
  TensorShapes gap = hf_shapes;  // layer 0 lost, layer 1 present
  gap.erase("cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight");
  expect_error(ErrorCode::kInvalidFile, "layers.0.self_attn.q_proj.weight",
               [&] { infer_clip_text_config(gap, "cond_stage_model.transformer.", &config); });
}

TEST(TextEncoderNamesTest, InfersReleasedArchitecturesWithoutConfigJson) {
  // Meta tensors: shapes without memory.
  const at::TensorOptions meta = at::TensorOptions().device(at::kMeta);
  ClipTextModel large(ClipTextConfig::vit_l14(), meta);
  expect_same_config(
      infer_clip_text_config(tensor_shapes(parameters_of(*large, "cond_stage_model.transformer.")),
                             "cond_stage_model.transformer."),
      ClipTextConfig::vit_l14());
  OpenClipTextModel huge(ClipTextConfig::open_clip_vit_h14(), meta);
  expect_same_config(
      infer_open_clip_text_config(tensor_shapes(parameters_of(*huge, "cond_stage_model.model.")),
                                  "cond_stage_model.model."),
      ClipTextConfig::open_clip_vit_h14());
  OpenClipTextModel big_g(ClipTextConfig::open_clip_vit_bigg14(), meta);
  expect_same_config(infer_open_clip_text_config(
                         tensor_shapes(parameters_of(*big_g, "conditioner.embedders.1.model.")),
                         "conditioner.embedders.1.model."),
                     ClipTextConfig::open_clip_vit_bigg14());
}

// ---------------------------------------------------------------- goldens

TEST(TextEncoderNamesGoldenTest, Sd2DiffusersEncoderThroughOpenClipNames) {
  const auto folder = golden_dir() / "sd2" / "diffusers" / "text_encoder";
  const auto goldens = golden_dir() / "sd2" / "goldens" / "text_encoder.safetensors";
  DOPPEL_REQUIRE_PATH(folder);
  DOPPEL_REQUIRE_PATH(goldens);
  const auto hf = read_tensors(folder / "model.safetensors");
  const nlohmann::json config_json = read_json(folder / "config.json");
  const ClipTextConfig config = infer_clip_text_config(tensor_shapes(hf), "", &config_json);
  EXPECT_EQ(config.num_layers, 2);
  EXPECT_EQ(config.activation, ClipActivation::kGelu);
  OpenClipTextModel model(config);
  EXPECT_TRUE(load_parameters(*model, hf_clip_to_open_clip(hf)).empty());

  const auto golden = read_tensors(goldens);
  at::NoGradGuard no_grad;
  const ClipTextOutput output = model->forward(golden.at("input_ids"));
  clip_text_test::expect_close(output.last_hidden_state, golden.at("last_hidden_state"),
                               kFp32Tolerance, "sd2 last_hidden_state");
  for (size_t i = 0; i < output.hidden_states.size(); ++i) {
    clip_text_test::expect_close(output.hidden_states[i],
                                 golden.at("hidden_states." + std::to_string(i)), kFp32Tolerance,
                                 "sd2 hidden_states." + std::to_string(i));
  }
}

TEST(TextEncoderNamesGoldenTest, Sd2TowerWithItsUnusedLastBlockUsesThePenultimate) {
  // The single file's open_clip tower has one more block than the diffusers
  // encoder; SD2 conditions on final_norm(penultimate), so that block's
  // weights must not matter.
  const auto folder = golden_dir() / "sd2" / "diffusers" / "text_encoder";
  const auto goldens = golden_dir() / "sd2" / "goldens" / "text_encoder.safetensors";
  DOPPEL_REQUIRE_PATH(folder);
  DOPPEL_REQUIRE_PATH(goldens);
  const auto hf = read_tensors(folder / "model.safetensors");
  const nlohmann::json config_json = read_json(folder / "config.json");
  ClipTextConfig config = infer_clip_text_config(tensor_shapes(hf), "", &config_json);
  config.num_layers = 3;
  OpenClipTextModel model(config);
  layers::randomize_parameters(*model, 23);  // block 2 stays random
  const auto mapped = hf_clip_to_open_clip(hf);
  {
    at::NoGradGuard no_grad;
    for (auto& item : model->named_parameters()) {
      if (mapped.contains(item.key())) item.value().copy_(mapped.at(item.key()));
    }
  }
  const auto golden = read_tensors(goldens);
  at::NoGradGuard no_grad;
  const ClipTextOutput output = model->forward(golden.at("input_ids"));
  ASSERT_EQ(output.hidden_states.size(), 4u);
  clip_text_test::expect_close(model->skip_layers(output, 2), golden.at("last_hidden_state"),
                               kFp32Tolerance, "sd2 penultimate + ln_final");
}

TEST(TextEncoderNamesGoldenTest, SdxlSecondEncoderMapsOntoTheSingleFileNames) {
  const auto folder = golden_dir() / "sdxl" / "diffusers" / "text_encoder_2";
  const auto single_file = golden_dir() / "sdxl" / "sdxl_tiny_single_file_fp16.safetensors";
  const auto goldens = golden_dir() / "sdxl" / "goldens" / "conditioning.safetensors";
  DOPPEL_REQUIRE_PATH(folder);
  DOPPEL_REQUIRE_PATH(single_file);
  DOPPEL_REQUIRE_PATH(goldens);
  const auto hf = read_tensors(folder / "model.safetensors");
  const auto mapped = hf_clip_to_open_clip(hf, "", "conditioner.embedders.1.model.");
  const auto canonical = read_tensors(single_file);
  size_t compared = 0;
  for (const auto& [name, tensor] : canonical) {
    if (name.rfind("conditioner.embedders.1.model.", 0) != 0) continue;
    ASSERT_TRUE(mapped.contains(name)) << name;
    EXPECT_TRUE(at::equal(mapped.at(name), tensor)) << name;
    ++compared;
  }
  EXPECT_EQ(compared, mapped.size());

  const nlohmann::json config_json = read_json(folder / "config.json");
  const ClipTextConfig config = infer_clip_text_config(tensor_shapes(hf), "", &config_json);
  EXPECT_EQ(config.projection_dim, 24);
  OpenClipTextModel model(config);
  EXPECT_TRUE(
      load_parameters(*model, strip_prefix(mapped, "conditioner.embedders.1.model.")).empty());
  const auto golden = read_tensors(goldens);
  at::NoGradGuard no_grad;
  const ClipTextOutput output = model->forward(golden.at("p1.input_ids_2"));
  clip_text_test::expect_close(output.text_embeds, golden.at("p1.te2_text_embeds"), kFp32Tolerance,
                               "sdxl te2 text_embeds (diffusers)");
  clip_text_test::expect_close(ClipTextEncoder::penultimate(output),
                               golden.at("p1.te2_penultimate"), kFp32Tolerance,
                               "sdxl te2 penultimate (diffusers)");
}

TEST(TextEncoderNamesGoldenTest, InfersGoldenConfigsFromSingleFiles) {
  const auto sd1 = golden_dir() / "sd1" / "sd1_tiny_single_file_fp16.safetensors";
  const auto sdxl = golden_dir() / "sdxl" / "sdxl_tiny_single_file_fp16.safetensors";
  DOPPEL_REQUIRE_PATH(sd1);
  DOPPEL_REQUIRE_PATH(sdxl);
  // Tiny widths need config.json for the head count; the shapes give the rest.
  const nlohmann::json sd1_json =
      read_json(golden_dir() / "sd1" / "diffusers" / "text_encoder" / "config.json");
  const ClipTextConfig sd1_config =
      infer_clip_text_config(file_shapes(sd1), "cond_stage_model.transformer.", &sd1_json);
  ClipTextConfig expected;
  expected.hidden_size = 32;
  expected.num_heads = 4;
  expected.num_layers = 3;
  expected.intermediate_size = 37;
  expect_same_config(sd1_config, expected);

  const TensorShapes sdxl_shapes = file_shapes(sdxl);
  const nlohmann::json first_json =
      read_json(golden_dir() / "sdxl" / "diffusers" / "text_encoder" / "config.json");
  const ClipTextConfig first =
      infer_clip_text_config(sdxl_shapes, "conditioner.embedders.0.transformer.", &first_json);
  EXPECT_EQ(first.hidden_size, 16);
  EXPECT_EQ(first.num_heads, 2);
  EXPECT_EQ(first.num_layers, 3);
  EXPECT_EQ(first.projection_dim, 0);
  const nlohmann::json second_json =
      read_json(golden_dir() / "sdxl" / "diffusers" / "text_encoder_2" / "config.json");
  const ClipTextConfig second =
      infer_open_clip_text_config(sdxl_shapes, "conditioner.embedders.1.model.", &second_json);
  EXPECT_EQ(second.hidden_size, 32);
  EXPECT_EQ(second.num_heads, 4);
  EXPECT_EQ(second.num_layers, 3);
  EXPECT_EQ(second.intermediate_size, 64);
  EXPECT_EQ(second.projection_dim, 24);
  EXPECT_EQ(second.activation, ClipActivation::kGelu);
}

}  // namespace
}  // namespace doppel

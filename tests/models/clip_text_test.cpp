#include "doppel/models/clip_text.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "doppel/core/error.hpp"
#include "doppel/core/safetensors.hpp"
#include "doppel/models/layers.hpp"
#include "models/clip_text_test_support.hpp"
#include "support/shared_data.hpp"

namespace doppel {
namespace {

using clip_text_test::expect_close;
using clip_text_test::load_parameters;
using clip_text_test::read_tensors;
using test::golden_dir;

// fp32 golden bar from the golden README: 1e-5 of max |golden|.
constexpr double kFp32Tolerance = 1e-5;
// bf16 keeps 8 mantissa bits; through 3 layers the error stays near 1e-2 of the range.
constexpr double kBf16Tolerance = 5e-2;

ClipTextConfig tiny_config() {
  ClipTextConfig config;
  config.vocab_size = 100;
  config.hidden_size = 16;
  config.num_heads = 2;
  config.num_layers = 2;
  config.intermediate_size = 24;
  config.max_positions = 10;
  config.projection_dim = 8;
  return config;
}

// Two windows of 10; 99 (the largest id) plays <|endoftext|>.
at::Tensor tiny_ids() {
  return at::tensor({98, 5,  17, 3, 99, 99, 99, 99, 99, 99,  //
                     98, 42, 7,  7, 61, 2,  30, 99, 99, 99},
                    at::kLong)
      .view({2, 10});
}

std::set<std::string> parameter_names(torch::nn::Module& module) {
  std::set<std::string> names;
  for (const auto& item : module.named_parameters()) names.insert(item.key());
  return names;
}

TEST(ClipTextModelTest, ParametersHaveHuggingFaceNames) {
  ClipTextModel model(tiny_config());
  std::set<std::string> expected = {"text_model.embeddings.token_embedding.weight",
                                    "text_model.embeddings.position_embedding.weight",
                                    "text_model.final_layer_norm.weight",
                                    "text_model.final_layer_norm.bias", "text_projection.weight"};
  for (int layer = 0; layer < 2; ++layer) {
    const std::string base = "text_model.encoder.layers." + std::to_string(layer) + ".";
    for (const char* name :
         {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
          "layer_norm1", "layer_norm2", "mlp.fc1", "mlp.fc2"}) {
      expected.insert(base + name + ".weight");
      expected.insert(base + name + ".bias");
    }
  }
  EXPECT_EQ(parameter_names(*model), expected);
  const auto parameters = model->named_parameters();
  EXPECT_EQ(parameters["text_model.encoder.layers.1.mlp.fc1.weight"].sizes(),
            at::IntArrayRef({24, 16}));
  EXPECT_EQ(parameters["text_projection.weight"].sizes(), at::IntArrayRef({8, 16}));
}

TEST(ClipTextModelTest, ParametersHaveOpenClipNames) {
  OpenClipTextModel model(tiny_config());
  std::set<std::string> expected = {"token_embedding.weight", "positional_embedding",
                                    "ln_final.weight", "ln_final.bias", "text_projection"};
  for (int block = 0; block < 2; ++block) {
    const std::string base = "transformer.resblocks." + std::to_string(block) + ".";
    expected.insert(base + "attn.in_proj_weight");
    expected.insert(base + "attn.in_proj_bias");
    for (const char* name : {"attn.out_proj", "ln_1", "ln_2", "mlp.c_fc", "mlp.c_proj"}) {
      expected.insert(base + name + ".weight");
      expected.insert(base + name + ".bias");
    }
  }
  EXPECT_EQ(parameter_names(*model), expected);
  const auto parameters = model->named_parameters();
  EXPECT_EQ(parameters["transformer.resblocks.0.attn.in_proj_weight"].sizes(),
            at::IntArrayRef({48, 16}));
  EXPECT_EQ(parameters["text_projection"].sizes(), at::IntArrayRef({16, 8}));
}

TEST(ClipTextModelTest, OutputsHaveDocumentedShapesAndPooling) {
  ClipTextModel model(tiny_config());
  layers::randomize_parameters(*model, 11);
  at::NoGradGuard no_grad;
  const ClipTextOutput output = model->forward(tiny_ids());
  ASSERT_EQ(output.hidden_states.size(), 3u);
  for (const at::Tensor& state : output.hidden_states) {
    EXPECT_EQ(state.sizes(), at::IntArrayRef({2, 10, 16}));
  }
  EXPECT_TRUE(at::equal(output.last_hidden_state, model->final_norm(output.hidden_states[2])));
  ASSERT_EQ(output.pooled.sizes(), at::IntArrayRef({2, 16}));
  // Pooled at the first end-of-text token: positions 4 and 7.
  EXPECT_TRUE(at::equal(output.pooled[0], output.last_hidden_state[0][4]));
  EXPECT_TRUE(at::equal(output.pooled[1], output.last_hidden_state[1][7]));
  const at::Tensor projection = model->named_parameters()["text_projection.weight"];
  EXPECT_TRUE(
      at::allclose(output.text_embeds, at::matmul(output.pooled, projection.t()), 1e-6, 1e-6));
  // Embeddings: token row + position row.
  const auto parameters = model->named_parameters();
  const at::Tensor expected_embedding =
      parameters["text_model.embeddings.token_embedding.weight"][42] +
      parameters["text_model.embeddings.position_embedding.weight"][1];
  EXPECT_TRUE(at::allclose(output.hidden_states[0][1][1], expected_embedding));
}

TEST(ClipTextModelTest, AttentionIsCausal) {
  for (const bool open_clip : {false, true}) {
    std::shared_ptr<ClipTextEncoder> model;
    if (open_clip) {
      model = OpenClipTextModel(tiny_config()).ptr();
    } else {
      model = ClipTextModel(tiny_config()).ptr();
    }
    layers::randomize_parameters(*model, 12);
    at::NoGradGuard no_grad;
    const at::Tensor ids = tiny_ids();
    at::Tensor changed = ids.clone();
    changed[1][5] = 77;
    const ClipTextOutput before = model->forward(ids);
    const ClipTextOutput after = model->forward(changed);
    const auto prefix = at::indexing::Slice(0, 5);
    EXPECT_TRUE(at::allclose(before.last_hidden_state[1].index({prefix}),
                             after.last_hidden_state[1].index({prefix}), 0, 1e-6))
        << (open_clip ? "open_clip" : "hf");
    EXPECT_FALSE(at::allclose(before.last_hidden_state[1][5], after.last_hidden_state[1][5]));
    EXPECT_TRUE(at::equal(before.last_hidden_state[0], after.last_hidden_state[0]));
  }
}

TEST(ClipTextModelTest, ClipSkipAndPenultimate) {
  ClipTextModel model(tiny_config());
  layers::randomize_parameters(*model, 13);
  at::NoGradGuard no_grad;
  const ClipTextOutput output = model->forward(tiny_ids());
  EXPECT_TRUE(at::equal(model->skip_layers(output, 1), output.last_hidden_state));
  EXPECT_TRUE(at::equal(model->skip_layers(output, 2), model->final_norm(output.hidden_states[1])));
  EXPECT_TRUE(at::equal(ClipTextEncoder::penultimate(output), output.hidden_states[1]));
  EXPECT_THROW(model->skip_layers(output, 0), Error);
  EXPECT_THROW(model->skip_layers(output, 3), Error);
}

TEST(ClipTextModelTest, RejectsBadInputWithClearErrors) {
  ClipTextModel model(tiny_config());
  layers::randomize_parameters(*model, 14);
  at::NoGradGuard no_grad;
  auto expect_invalid = [&](const at::Tensor& ids, const std::string& fragment) {
    try {
      model->forward(ids);
      ADD_FAILURE() << "no error for " << fragment;
    } catch (const Error& error) {
      EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(error.what()).find(fragment), std::string::npos) << error.what();
    }
  };
  expect_invalid(at::full({1, 4}, 100, at::kLong), "outside the vocabulary");
  expect_invalid(at::full({1, 4}, -1, at::kLong), "outside the vocabulary");
  expect_invalid(at::zeros({1, 11}, at::kLong), "exceeds");
  expect_invalid(at::zeros({1, 4}, at::kFloat), "integers");
  expect_invalid(at::zeros({4}, at::kLong), "[batch, tokens]");
  // int32 ids are accepted and give the same result as int64.
  EXPECT_TRUE(at::equal(model->forward(tiny_ids().to(at::kInt)).last_hidden_state,
                        model->forward(tiny_ids()).last_hidden_state));
}

// Textual inversion feeds token embeddings in: forward_embedded with the model's own rows is
// forward bit for bit (both namings); replaced rows change the output; bad shapes are errors.
TEST(ClipTextModelTest, ForwardEmbeddedTakesTokenEmbeddings) {
  at::NoGradGuard no_grad;
  ClipTextModel hf(tiny_config());
  OpenClipTextModel open_clip(tiny_config());
  layers::randomize_parameters(*hf, 15);
  layers::randomize_parameters(*open_clip, 16);
  for (ClipTextEncoder* encoder :
       {static_cast<ClipTextEncoder*>(hf.get()), static_cast<ClipTextEncoder*>(open_clip.get())}) {
    const at::Tensor embedded = encoder->embed_tokens(tiny_ids());
    ASSERT_EQ(embedded.sizes(), at::IntArrayRef({2, 10, 16}));
    const ClipTextOutput plain = encoder->forward(tiny_ids());
    const ClipTextOutput given = encoder->forward_embedded(tiny_ids(), embedded);
    EXPECT_TRUE(at::equal(plain.last_hidden_state, given.last_hidden_state));
    EXPECT_TRUE(at::equal(plain.pooled, given.pooled));
    at::Tensor replaced = embedded.clone();
    replaced[0][1] = embedded[1][1];  // token 5 -> token 42's vector
    at::Tensor ids = tiny_ids().clone();
    ids[0][1] = 42;
    EXPECT_TRUE(at::equal(encoder->forward_embedded(tiny_ids(), replaced).last_hidden_state,
                          encoder->forward(ids).last_hidden_state));
    try {
      encoder->forward_embedded(tiny_ids(), at::zeros({2, 10, 15}));
      ADD_FAILURE() << "accepted 15-wide token embeddings";
    } catch (const Error& error) {
      EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
    }
  }
}

TEST(ClipTextModelTest, ConfigsValidateAndMatchTheReleasedModels) {
  ClipTextConfig bad = tiny_config();
  bad.num_heads = 3;
  EXPECT_THROW(ClipTextModel{bad}, Error);
  const ClipTextConfig large = ClipTextConfig::vit_l14();
  EXPECT_EQ(large.hidden_size, 768);
  EXPECT_EQ(large.num_layers, 12);
  EXPECT_EQ(large.intermediate_size, 3072);
  EXPECT_EQ(large.activation, ClipActivation::kQuickGelu);
  EXPECT_EQ(large.projection_dim, 0);
  const ClipTextConfig huge = ClipTextConfig::open_clip_vit_h14();
  EXPECT_EQ(huge.hidden_size / huge.num_heads, 64);
  EXPECT_EQ(huge.num_layers, 24);
  const ClipTextConfig big_g = ClipTextConfig::open_clip_vit_bigg14();
  EXPECT_EQ(big_g.hidden_size, 1280);
  EXPECT_EQ(big_g.num_heads, 20);
  EXPECT_EQ(big_g.num_layers, 32);
  EXPECT_EQ(big_g.intermediate_size, 5120);
  EXPECT_EQ(big_g.projection_dim, 1280);
  EXPECT_EQ(big_g.activation, ClipActivation::kGelu);
}

TEST(ClipTextModelTest, Bfloat16FollowsFloat32) {
  OpenClipTextModel model(tiny_config());
  layers::randomize_parameters(*model, 15);
  at::NoGradGuard no_grad;
  const ClipTextOutput reference = model->forward(tiny_ids());
  model->to(at::kBFloat16);
  const ClipTextOutput reduced = model->forward(tiny_ids());
  EXPECT_EQ(reduced.last_hidden_state.scalar_type(), at::kBFloat16);
  expect_close(reduced.last_hidden_state, reference.last_hidden_state, kBf16Tolerance,
               "tiny bf16 last_hidden_state");
  expect_close(reduced.text_embeds, reference.text_embeds, kBf16Tolerance, "tiny bf16 text_embeds");
}

// ---------------------------------------------------------------- goldens

ClipTextConfig sd1_tiny_config() {
  ClipTextConfig config;  // golden README section 2
  config.hidden_size = 32;
  config.num_heads = 4;
  config.num_layers = 3;
  config.intermediate_size = 37;
  return config;
}

void check_sd1_golden(ClipTextModel& model, const std::string& source, double tolerance) {
  const auto golden = read_tensors(golden_dir() / "sd1" / "goldens" / "text_encoder.safetensors");
  at::NoGradGuard no_grad;
  const ClipTextOutput output = model->forward(golden.at("input_ids"));
  expect_close(output.last_hidden_state, golden.at("last_hidden_state"), tolerance,
               source + " last_hidden_state");
  expect_close(output.pooled, golden.at("pooler_output"), tolerance, source + " pooler_output");
  for (size_t i = 0; i < output.hidden_states.size(); ++i) {
    expect_close(output.hidden_states[i], golden.at("hidden_states." + std::to_string(i)),
                 tolerance, source + " hidden_states." + std::to_string(i));
  }
  expect_close(ClipTextEncoder::penultimate(output), golden.at("penultimate_hidden_state"),
               tolerance, source + " penultimate");
  expect_close(model->skip_layers(output, 2), golden.at("clip_skip2_hidden_state"), tolerance,
               source + " clip skip 2");
}

TEST(ClipTextGoldenTest, Sd1FromDiffusersFolder) {
  const auto weights = golden_dir() / "sd1" / "diffusers" / "text_encoder" / "model.safetensors";
  DOPPEL_REQUIRE_PATH(weights);
  ClipTextModel model(sd1_tiny_config());
  EXPECT_TRUE(load_parameters(*model, read_tensors(weights)).empty());
  check_sd1_golden(model, "sd1 diffusers", kFp32Tolerance);
}

TEST(ClipTextGoldenTest, Sd1FromSingleFile) {
  const auto file = golden_dir() / "sd1" / "sd1_tiny_single_file_fp16.safetensors";
  DOPPEL_REQUIRE_PATH(file);
  ClipTextModel model(sd1_tiny_config());
  // The canonical names load with no table.
  EXPECT_TRUE(load_parameters(*model, read_tensors(file, "cond_stage_model.transformer.")).empty());
  check_sd1_golden(model, "sd1 single file", kFp32Tolerance);
}

TEST(ClipTextGoldenTest, Sd1InBfloat16) {
  const auto weights = golden_dir() / "sd1" / "diffusers" / "text_encoder" / "model.safetensors";
  DOPPEL_REQUIRE_PATH(weights);
  ClipTextModel model(sd1_tiny_config(), at::TensorOptions().dtype(at::kBFloat16));
  load_parameters(*model, read_tensors(weights));
  check_sd1_golden(model, "sd1 bf16", kBf16Tolerance);
}

TEST(ClipTextGoldenTest, SdxlEncodersFromSingleFile) {
  const auto file = golden_dir() / "sdxl" / "sdxl_tiny_single_file_fp16.safetensors";
  const auto goldens = golden_dir() / "sdxl" / "goldens" / "conditioning.safetensors";
  DOPPEL_REQUIRE_PATH(file);
  DOPPEL_REQUIRE_PATH(goldens);
  ClipTextConfig first_config;  // golden README section 6
  first_config.hidden_size = 16;
  first_config.num_heads = 2;
  first_config.num_layers = 3;
  first_config.intermediate_size = 37;
  ClipTextConfig second_config;
  second_config.hidden_size = 32;
  second_config.num_heads = 4;
  second_config.num_layers = 3;
  second_config.intermediate_size = 64;
  second_config.activation = ClipActivation::kGelu;
  second_config.projection_dim = 24;
  ClipTextModel first(first_config);
  OpenClipTextModel second(second_config);
  EXPECT_TRUE(
      load_parameters(*first, read_tensors(file, "conditioner.embedders.0.transformer.")).empty());
  EXPECT_TRUE(
      load_parameters(*second, read_tensors(file, "conditioner.embedders.1.model.")).empty());

  const auto golden = read_tensors(goldens);
  at::NoGradGuard no_grad;
  for (const std::string prompt : {"p0", "p1"}) {
    const ClipTextOutput first_output = first->forward(golden.at(prompt + ".input_ids_1"));
    const ClipTextOutput second_output = second->forward(golden.at(prompt + ".input_ids_2"));
    const at::Tensor first_penultimate = ClipTextEncoder::penultimate(first_output);
    const at::Tensor second_penultimate = ClipTextEncoder::penultimate(second_output);
    expect_close(first_penultimate, golden.at(prompt + ".te1_penultimate"), kFp32Tolerance,
                 prompt + " te1_penultimate");
    expect_close(second_penultimate, golden.at(prompt + ".te2_penultimate"), kFp32Tolerance,
                 prompt + " te2_penultimate");
    expect_close(second_output.last_hidden_state, golden.at(prompt + ".te2_last_hidden_state"),
                 kFp32Tolerance, prompt + " te2_last_hidden_state");
    expect_close(second_output.text_embeds, golden.at(prompt + ".te2_text_embeds"), kFp32Tolerance,
                 prompt + " te2_text_embeds");
    // SDXL's prompt embedding: [first (16), second (32)] along channels.
    expect_close(at::cat({first_penultimate, second_penultimate}, -1),
                 golden.at(prompt + ".prompt_embeds"), kFp32Tolerance, prompt + " prompt_embeds");
  }
}

}  // namespace
}  // namespace doppel

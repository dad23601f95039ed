// GenerationSession on the tiny model built in code: LoRAs scoped to their request, prompt
// tags, the model cache, and refusals.
#include "doppel/diffusion/generation_session.hpp"

#include <gtest/gtest.h>

#include "doppel/checkpoint/lora.hpp"
#include "doppel/core/generation_parameters.hpp"
#include "doppel/core/safetensors.hpp"
#include "support/error_code.hpp"
#include "support/temp_folder.hpp"

namespace doppel {
namespace {

using test::temp_folder;

namespace fs = std::filesystem;
using test::code_of;

at::Tensor randn(at::IntArrayRef shape, uint64_t seed) {
  at::Generator generator = at::detail::createCPUGenerator(seed);
  return at::randn(shape, generator);
}

// A kohya LoRA for the tiny model's attention and first text-encoder layer, strong enough to
// change the picture visibly.
fs::path write_lora(const fs::path& folder, const std::string& name, uint64_t seed) {
  std::map<std::string, at::Tensor> tensors;
  auto add = [&](const std::string& module, at::IntArrayRef down, at::IntArrayRef up) {
    tensors[module + ".lora_down.weight"] = randn(down, seed * 10 + tensors.size());
    tensors[module + ".lora_up.weight"] = randn(up, seed * 10 + tensors.size() + 1);
    tensors[module + ".alpha"] = at::scalar_tensor(2.0);
  };
  add("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q", {2, 32}, {32, 2});
  add("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_ff_net_2", {2, 128}, {32, 2});
  add("lora_unet_mid_block_resnets_1_time_emb_proj", {2, 128}, {64, 2});
  add("lora_te_text_model_encoder_layers_0_mlp_fc2", {2, 37}, {32, 2});
  const fs::path path = folder / (name + ".safetensors");
  save_safetensors(path, tensors);
  return path;
}

SessionRequest portrait(const std::string& prompt = "a portrait of a person") {
  SessionRequest request;
  GenerationRequest& generation = request.generation;
  generation.prompt = prompt;
  generation.negative_prompt = "blurry";
  generation.width = generation.height = 64;
  generation.steps = 4;
  generation.seed = 7;
  return request;
}

std::vector<uint8_t> pixels(GenerationSession& session, const SessionRequest& request) {
  std::vector<GeneratedImage> images = session.generate(request);
  EXPECT_EQ(images.size(), 1u);
  return images.at(0).image.rgb;
}

std::vector<uint8_t> fresh_session_pixels(const SessionRequest& request) {
  GenerationSession session(SessionOptions{});
  return pixels(session, request);
}

TEST(GenerationSession, RequestsWithOtherLorasGiveWhatFreshSessionsGive) {
  const fs::path folder = temp_folder("doppel_session_loras");
  SessionRequest plain = portrait();
  SessionRequest with_a = portrait();
  with_a.loras.push_back({write_lora(folder, "a", 1), 0.8});
  SessionRequest with_b = portrait();
  with_b.loras.push_back({write_lora(folder, "b", 2), 1.0});
  SessionRequest with_both = portrait();
  with_both.loras = {with_a.loras[0], with_b.loras[0]};

  GenerationSession session(SessionOptions{});
  const auto a = pixels(session, with_a);
  const auto b = pixels(session, with_b);
  const auto both = pixels(session, with_both);
  const auto none = pixels(session, plain);
  const auto a_again = pixels(session, with_a);

  EXPECT_EQ(a, fresh_session_pixels(with_a));
  EXPECT_EQ(b, fresh_session_pixels(with_b));
  EXPECT_EQ(both, fresh_session_pixels(with_both));
  EXPECT_EQ(none, fresh_session_pixels(plain));
  EXPECT_EQ(a_again, a);
  // The LoRAs matter, so equal pixels above are not trivially equal.
  EXPECT_NE(a, none);
  EXPECT_NE(b, none);
  EXPECT_NE(a, b);
  fs::remove_all(folder);
}

TEST(GenerationSession, PromptTagsResolveInTheLoraFolderAndAreRecorded) {
  const fs::path folder = temp_folder("doppel_session_tags");
  const fs::path lora = write_lora(folder, "face", 3);
  SessionOptions options;
  options.lora_dir = folder;
  GenerationSession session(options);

  SessionRequest by_tag = portrait("a portrait of a person <lora:face:0.7>");
  SessionRequest by_file = portrait();
  by_file.loras.push_back({lora, 0.7});
  const std::vector<GeneratedImage> tagged = session.generate(by_tag);
  EXPECT_EQ(tagged.at(0).image.rgb, pixels(session, by_file));

  const GenerationParameters& recorded = tagged.at(0).parameters;
  EXPECT_NE(recorded.prompt.find("<lora:face:0.7>"), std::string::npos) << recorded.prompt;
  EXPECT_EQ(recorded.get("Lora hashes").value_or("").rfind("face: ", 0), 0u);
  EXPECT_EQ(recorded.get("Model").value_or(""), kTinyModelName);
  // The one PNG writer keeps the parameters text.
  const PngTextChunks chunks = read_png_text(encode_generated_png(tagged.at(0)));
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0], std::make_pair(std::string("parameters"), recorded.to_text()));

  std::string message;
  EXPECT_EQ(code_of([&] { session.generate(portrait("me <lora:nobody:1>")); }, &message),
            ErrorCode::kNotFound);
  EXPECT_NE(message.find("nobody.safetensors"), std::string::npos) << message;
  fs::remove_all(folder);
}

TEST(GenerationSession, ModelCacheKeepsModelsWithinItsBudget) {
  SessionOptions options;
  options.model = ModelRef::built_in_tiny(0);
  GenerationSession unbudgeted(options);
  const auto first_unet = unbudgeted.model().unet.ptr();
  unbudgeted.select_model(ModelRef::built_in_tiny(1));
  EXPECT_NE(unbudgeted.model().unet.ptr(), first_unet);
  unbudgeted.select_model(ModelRef::built_in_tiny(0));
  EXPECT_NE(unbudgeted.model().unet.ptr(), first_unet);  // let go of, loaded again

  options.model_cache_bytes = int64_t{1} << 30;
  GenerationSession cached(options);
  const auto cached_unet = cached.model().unet.ptr();
  cached.select_model(ModelRef::built_in_tiny(1));
  EXPECT_GT(cached.model_info().parameter_bytes, 0);
  cached.select_model(ModelRef::built_in_tiny(0));
  EXPECT_EQ(cached.model().unet.ptr(), cached_unet);  // kept
  EXPECT_EQ(cached.native_size(), 64);
}

TEST(GenerationSession, RefusesWhatItCannotDo) {
  GenerationSession session(SessionOptions{});
  std::string message;

  SessionRequest preview = portrait();
  preview.preview = [](const Image&, int64_t, int64_t) {};
  preview.preview_method = PreviewMethod::kTaesd;
  EXPECT_EQ(code_of([&] { session.generate(preview); }, &message), ErrorCode::kInvalidArgument);
  EXPECT_NE(message.find("TAESD"), std::string::npos) << message;

  SessionRequest control = portrait();
  Image black{64, 64, std::vector<uint8_t>(64 * 64 * 3, 0)};
  control.controls.push_back({"missing.safetensors", black, "openpose"});
  EXPECT_EQ(code_of([&] { session.generate(control); }, &message), ErrorCode::kInvalidArgument);
  EXPECT_NE(message.find("canny"), std::string::npos) << message;

  EXPECT_EQ(code_of([] { ModelRef::file(""); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(ModelRef::file("/models/sd15.safetensors").display_name(), "sd15");
}

}  // namespace
}  // namespace doppel

// A1111 prompt conditioning: token chunks (BREAK, last-comma back-off, embeddings),
// emphasis with mean restoration against hand computations on a transparent fake encoder,
// schedules that switch at A1111's step and encode each distinct text once, AND guidance,
// and, on the tiny CLIP built in code, bit-identity of plain prompts with the plain
// tokenizer path and textual inversion through the real encoder.
#include "doppel/diffusion/prompt_conditioning.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>

#include "doppel/checkpoint/tiny_model.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/safetensors.hpp"
#include "doppel/diffusion/stable_diffusion_pipeline.hpp"
#include "support/shared_data.hpp"
#include "support/test_tokenizer.hpp"
#include "support/tiny_pipeline.hpp"

namespace doppel {
namespace {

using test::tiny_pipeline;

using test::test_tokenizer;

// A transparent "encoder": z[b, p] = (id / 1000 + 0.25, (p + 1) / 10, 1), where textual-
// inversion rows replace the first component's source with vector[0] and so on: z[b, p] =
// vector + (0, (p + 1) / 10, 0). Hand computations stay exact.
struct FakeEncoder {
  int64_t calls = 0;
  std::vector<at::Tensor> inputs;
  ChunkEncoder function() {
    return [this](const at::Tensor& ids, const std::vector<EmbeddingRows>& rows) {
      ++calls;
      inputs.push_back(ids.clone());
      const int64_t batch = ids.size(0), length = ids.size(1);
      at::Tensor z = at::empty({batch, length, 3}, at::kFloat);
      auto id = ids.accessor<int64_t, 2>();
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t p = 0; p < length; ++p) {
          z[b][p][0] = static_cast<double>(id[b][p]) / 1000.0 + 0.25;
          z[b][p][1] = static_cast<double>(p + 1) / 10.0;
          z[b][p][2] = 1.0;
        }
      for (const EmbeddingRows& row : rows)
        for (int64_t i = 0; i < row.vectors.size(0); ++i)
          z[row.batch][row.position + i] =
              row.vectors[i] +
              at::tensor({0.0f, static_cast<float>(row.position + i + 1) / 10, 0.0f});
      return z;
    };
  }
};

std::vector<WeightedText> plain(const std::string& text) {
  return {{text, 1.0}};
}

TEST(PromptConditioning, PlainTokenChunksEqualTheTokenizersChunks) {
  ClipTokenizer tokenizer = test_tokenizer();
  FakeEncoder encoder;
  PromptConditioner conditioner(tokenizer, encoder.function(), 3);
  std::string long_prompt;
  for (int i = 0; i < 40; ++i) long_prompt += "portrait photo of a person, soft light ";
  std::string comma_heavy;
  for (int i = 0; i < 30; ++i) comma_heavy += "red, green blue, ";
  for (const std::string& text :
       {std::string(""), std::string("a cat"), long_prompt, comma_heavy}) {
    std::vector<TokenChunk> chunks = conditioner.tokenize(plain(text));
    std::vector<std::vector<int64_t>> expected = tokenizer.encode_chunks(text);
    ASSERT_EQ(chunks.size(), expected.size()) << text;
    for (size_t i = 0; i < chunks.size(); ++i) {
      EXPECT_EQ(chunks[i].tokens, expected[i]) << text;
      EXPECT_EQ(chunks[i].multipliers, std::vector<double>(77, 1.0));
    }
  }
}

TEST(PromptConditioning, BreakStartsANewChunk) {
  ClipTokenizer tokenizer = test_tokenizer();
  FakeEncoder encoder;
  PromptConditioner conditioner(tokenizer, encoder.function(), 3);
  const int64_t a = tokenizer.token_id("a</w>"), b = tokenizer.token_id("b</w>");
  auto chunks = conditioner.tokenize(parse_prompt_attention("a BREAK b"));
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(std::vector<int64_t>(chunks[0].tokens.begin(), chunks[0].tokens.begin() + 3),
            (std::vector<int64_t>{49406, a, 49407}));
  EXPECT_EQ(std::vector<int64_t>(chunks[1].tokens.begin(), chunks[1].tokens.begin() + 3),
            (std::vector<int64_t>{49406, b, 49407}));
  // A1111: a leading BREAK closes an empty chunk; a trailing one adds nothing.
  EXPECT_EQ(conditioner.tokenize(parse_prompt_attention("BREAK b")).size(), 2u);
  EXPECT_EQ(conditioner.tokenize(parse_prompt_attention("a BREAK")).size(), 1u);
  // Exactly 75 tokens then BREAK: no empty chunk in between.
  std::string full;
  for (int i = 0; i < 75; ++i) full += "a ";
  EXPECT_EQ(conditioner.tokenize(parse_prompt_attention(full + "BREAK b")).size(), 2u);
  // Weighted BREAK (inside brackets) is text for A1111: one chunk.
  EXPECT_EQ(conditioner.tokenize(parse_prompt_attention("(a BREAK b)")).size(), 1u);
}

TEST(PromptConditioning, ChunkEndsAfterTheLastCommaWithinTwentyTokens) {
  ClipTokenizer tokenizer = test_tokenizer();
  FakeEncoder encoder;
  PromptConditioner conditioner(tokenizer, encoder.function(), 3);
  const int64_t a = tokenizer.token_id("a</w>"), b = tokenizer.token_id("b</w>");
  const int64_t comma = tokenizer.token_id(",</w>");
  std::string text;
  for (int i = 0; i < 70; ++i) text += "a ";
  text += ", ";
  for (int i = 0; i < 10; ++i) text += "(b:1.5) ";
  auto chunks = conditioner.tokenize(parse_prompt_attention(text));
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[0].tokens[70], a);
  EXPECT_EQ(chunks[0].tokens[71], comma);
  EXPECT_EQ(chunks[0].tokens[72], 49407);  // the 4 b's moved on
  for (int i = 1; i <= 10; ++i) {
    EXPECT_EQ(chunks[1].tokens[static_cast<size_t>(i)], b);
    EXPECT_EQ(chunks[1].multipliers[static_cast<size_t>(i)], 1.5);  // weights move along
  }
  EXPECT_EQ(chunks[1].tokens[11], 49407);
  // Back-off disabled: a hard cut at 75.
  PromptConditioner hard(tokenizer, encoder.function(), 3, nullptr, 0);
  auto cut = hard.tokenize(parse_prompt_attention(text));
  EXPECT_EQ(cut[0].tokens[75], b);
  EXPECT_EQ(cut[1].tokens[6], b);
  EXPECT_EQ(cut[1].tokens[7], 49407);
}

// z' = z * m * mean(z) / mean(z * m), computed by hand in double.
TEST(PromptConditioning, EmphasisMultipliesTokensAndRestoresTheMean) {
  ClipTokenizer tokenizer = test_tokenizer();
  FakeEncoder encoder;
  PromptConditioner conditioner(tokenizer, encoder.function(), 3);
  PromptConditioning result = conditioner.condition("a (cat:1.5) [dog]", "", 10);
  ASSERT_EQ(result.positive.size(), 1u);
  const at::Tensor weighted = result.positive[0].schedule[0].hidden.squeeze(0).to(at::kDouble);
  // Rebuild the raw z and multipliers by hand.
  const std::vector<int64_t> ids = tokenizer.encode_chunks("a cat dog").front();
  std::vector<double> multipliers(77, 1.0);
  multipliers[2] = 1.5;
  multipliers[3] = 1.0 / 1.1;
  double raw_sum = 0, weighted_sum = 0;
  std::vector<std::array<double, 3>> z(77);
  for (size_t p = 0; p < 77; ++p) {
    z[p] = {static_cast<double>(ids[p]) / 1000.0 + 0.25, static_cast<double>(p + 1) / 10.0, 1.0};
    for (double v : z[p]) {
      raw_sum += v;
      weighted_sum += v * multipliers[p];
    }
  }
  const double factor = raw_sum / weighted_sum;
  double max_error = 0;
  for (size_t p = 0; p < 77; ++p)
    for (size_t d = 0; d < 3; ++d)
      max_error = std::max(
          max_error,
          std::abs(weighted[static_cast<int64_t>(p)][static_cast<int64_t>(d)].item<double>() -
                   z[p][d] * multipliers[p] * factor));
  EXPECT_LT(max_error, 1e-5);
  const double raw_mean = raw_sum / (77 * 3);
  EXPECT_NEAR(weighted.mean().item<double>(), raw_mean, 1e-6 * raw_mean);  // mean restored
  // The negative prompt has no weights: exactly the encoder's output.
  FakeEncoder reference;
  at::Tensor empty =
      reference.function()(at::tensor(tokenizer.encode_chunks("").front()).reshape({1, 77}), {})
          .hidden;
  EXPECT_TRUE(at::equal(result.negative[0].hidden, empty.reshape({1, 77, 3})));
}

TEST(PromptConditioning, UnweightedPromptsAreTheEncoderOutputBitForBit) {
  ClipTokenizer tokenizer = test_tokenizer();
  FakeEncoder encoder;
  PromptConditioner conditioner(tokenizer, encoder.function(), 3);
  PromptConditioning result = conditioner.condition("a photo of a cat", "blurry", 10);
  ASSERT_EQ(encoder.calls, 2);
  FakeEncoder reference;
  at::Tensor direct =
      reference
          .function()(
              at::tensor(tokenizer.encode_chunks("a photo of a cat").front()).reshape({1, 77}), {})
          .hidden;
  EXPECT_TRUE(at::equal(result.positive[0].schedule[0].hidden, direct.reshape({1, 77, 3})));
}

TEST(PromptConditioning, SchedulesEncodeEachDistinctTextOnceAndSwitchAtA1111sStep) {
  ClipTokenizer tokenizer = test_tokenizer();
  FakeEncoder encoder;
  PromptConditioner conditioner(tokenizer, encoder.function(), 3);
  PromptConditioning edit = conditioner.condition("a [cat:dog:3]", "[ugly|blurry]", 10);
  EXPECT_EQ(encoder.calls, 4);  // "a cat", "a dog", "ugly", "blurry"
  EXPECT_EQ(conditioner.encoder_calls(), 4);
  const auto& schedule = edit.positive[0].schedule;
  ASSERT_EQ(schedule.size(), 2u);
  // A1111 picks the first entry with current_step (0-based) <= end_at_step: "a cat" for
  // steps 0..3, "a dog" from step 4.
  for (int64_t step = 0; step < 10; ++step)
    EXPECT_TRUE(
        PromptConditioning::at_step(schedule, step).is_same(schedule[step <= 3 ? 0 : 1].hidden))
        << step;
  EXPECT_EQ(edit.negative.size(), 10u);  // alternation: one entry per step, two tensors
  EXPECT_TRUE(edit.negative[0].hidden.is_same(edit.negative[2].hidden));
  EXPECT_FALSE(edit.negative[0].hidden.is_same(edit.negative[1].hidden));
  // Texts that tokenize alike ("x", " x" after AND) are encoded once.
  FakeEncoder plain_encoder;
  PromptConditioner again(tokenizer, plain_encoder.function(), 3);
  again.condition("x AND x:0.5", "x", 20);
  EXPECT_EQ(plain_encoder.calls, 1);
}

TEST(PromptConditioning, ShorterTextsArePaddedWithEmptyChunks) {
  ClipTokenizer tokenizer = test_tokenizer();
  FakeEncoder encoder;
  PromptConditioner conditioner(tokenizer, encoder.function(), 3);
  PromptConditioning result = conditioner.condition("a BREAK b BREAK c AND d", "e", 5);
  for (const auto& part : result.positive) EXPECT_EQ(part.schedule[0].hidden.size(1), 3 * 77);
  EXPECT_EQ(result.negative[0].hidden.size(1), 3 * 77);
  const std::vector<int64_t> empty = tokenizer.encode_chunks("").front();
  for (const at::Tensor& input : encoder.inputs) {
    if (input[0][1].item<int64_t>() == tokenizer.token_id("e</w>")) {
      EXPECT_EQ(
          std::vector<int64_t>(input[1].data_ptr<int64_t>(), input[1].data_ptr<int64_t>() + 77),
          empty);
    }
  }
}

TextualInversionEmbedding embedding_named(const std::string& name, const at::Tensor& vectors) {
  TextualInversionEmbedding embedding;
  embedding.name = name;
  embedding.file = name + ".safetensors";
  embedding.vectors = vectors;
  embedding.short_hash = "0123456789ab";
  return embedding;
}

TEST(PromptConditioning, EmbeddingWordsBecomeTheirVectors) {
  ClipTokenizer tokenizer = test_tokenizer();
  FakeEncoder encoder;
  TextualInversionLibrary library;
  const at::Tensor vectors = at::tensor({9.0f, 8.0f, 7.0f, 6.0f, 5.0f, 4.0f}).reshape({2, 3});
  library.add(embedding_named("my-face", vectors));
  PromptConditioner conditioner(tokenizer, encoder.function(), 3, &library);
  auto chunks = conditioner.tokenize(parse_prompt_attention("a (my-face:1.2) b"));
  ASSERT_EQ(chunks.size(), 1u);
  const int64_t a = tokenizer.token_id("a</w>"), b = tokenizer.token_id("b</w>");
  EXPECT_EQ(std::vector<int64_t>(chunks[0].tokens.begin(), chunks[0].tokens.begin() + 6),
            (std::vector<int64_t>{49406, a, 0, 0, b, 49407}));
  EXPECT_EQ(chunks[0].multipliers[2], 1.2);
  EXPECT_EQ(chunks[0].multipliers[3], 1.2);
  ASSERT_EQ(chunks[0].embeddings.size(), 1u);
  EXPECT_EQ(chunks[0].embeddings[0], (std::pair<int64_t, std::string>{2, "my-face"}));

  PromptConditioning result = conditioner.condition("a my-face b", "", 4);
  const at::Tensor z = result.positive[0].schedule[0].hidden.squeeze(0);
  EXPECT_TRUE(at::equal(z[2], vectors[0] + at::tensor({0.0f, 0.3f, 0.0f})));
  EXPECT_TRUE(at::equal(z[3], vectors[1] + at::tensor({0.0f, 0.4f, 0.0f})));
  EXPECT_EQ(result.embeddings, (std::map<std::string, std::string>{{"my-face", "0123456789ab"}}));

  // An embedding never straddles two chunks: 74 words, then 2 vectors -> next chunk.
  std::string filler;
  for (int i = 0; i < 74; ++i) filler += "a ";
  auto moved = conditioner.tokenize(parse_prompt_attention(filler + "my-face"));
  ASSERT_EQ(moved.size(), 2u);
  EXPECT_EQ(moved[0].tokens[75], 49407);
  EXPECT_EQ(moved[1].embeddings[0].first, 1);
}

TEST(PromptConditioning, EmbeddingOfTheWrongWidthIsAClearError) {
  ClipTokenizer tokenizer = test_tokenizer();
  FakeEncoder encoder;
  TextualInversionLibrary library;
  library.add(embedding_named("wide", at::zeros({1, 5})));
  PromptConditioner conditioner(tokenizer, encoder.function(), 3, &library);
  try {
    conditioner.condition("a wide b", "", 4);
    ADD_FAILURE() << "accepted a 5-wide embedding for a 3-wide encoder";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
    const std::string message = error.what();
    EXPECT_NE(message.find("wide.safetensors"), std::string::npos) << message;
    EXPECT_NE(message.find("5 wide"), std::string::npos) << message;
    EXPECT_NE(message.find("3 wide"), std::string::npos) << message;
  }
  EXPECT_NO_THROW(conditioner.condition("a b", "", 4));  // unused: no error
}

// A denoiser whose output for each batch item is the context's value at token 1 (the
// first prompt token), so guidance arithmetic can be checked by hand.
DenoiserFunction first_token_denoiser(std::vector<at::Tensor>* contexts = nullptr) {
  return [contexts](const at::Tensor& x, const at::Tensor&, const at::Tensor& context,
                    const at::Tensor&) {
    if (contexts) contexts->push_back(context.clone());
    return at::zeros_like(x) + context.select(1, 1).select(1, 0).reshape({-1, 1, 1, 1});
  };
}

TEST(PromptConditioning, ComposablePartsCombineAsA1111) {
  ClipTokenizer tokenizer = test_tokenizer();
  FakeEncoder encoder;
  PromptConditioner conditioner(tokenizer, encoder.function(), 3);
  PromptConditioning conditioning =
      conditioner.condition("cat AND dog:0.5 AND bird:-0.25", "ugly", 4);
  ASSERT_EQ(conditioning.positive.size(), 3u);
  SamplingPlan plan =
      make_sampling_plan("euler", SchedulerConfig::stable_diffusion(PredictionType::kEpsilon), 4);
  std::vector<at::Tensor> contexts;
  ModelFunction model = guided_denoiser(first_token_denoiser(&contexts), conditioning, 7.0, plan);
  at::Tensor out = model(at::zeros({1, 4, 2, 2}), at::tensor({999.0f}));
  auto value = [&](const char* word) {
    return static_cast<double>(static_cast<float>(tokenizer.token_id(word) / 1000.0 + 0.25));
  };
  const double u = value("ugly</w>");
  const double expected = u + 7.0 * (value("cat</w>") - u) + 0.5 * 7.0 * (value("dog</w>") - u) -
                          0.25 * 7.0 * (value("bird</w>") - u);
  EXPECT_NEAR(out[0][0][0][0].item<double>(), expected, 1e-4);
  ASSERT_EQ(contexts.size(), 1u);
  EXPECT_EQ(contexts[0].size(0), 4);  // [negative, cat, dog, bird] in one batch
}

TEST(PromptConditioning, GuidedDenoiserSwitchesConditioningAtTheScheduledStep) {
  ClipTokenizer tokenizer = test_tokenizer();
  FakeEncoder encoder;
  PromptConditioner conditioner(tokenizer, encoder.function(), 3);
  PromptConditioning conditioning = conditioner.condition("[cat:dog:0.5]", "", 10);
  const double cat = static_cast<float>(tokenizer.token_id("cat</w>") / 1000.0 + 0.25);
  const double dog = static_cast<float>(tokenizer.token_id("dog</w>") / 1000.0 + 0.25);
  for (const std::string sampler : {"euler", "pndm", "heun"}) {
    SamplingPlan plan = make_sampling_plan(
        sampler, SchedulerConfig::stable_diffusion(PredictionType::kEpsilon), 10);
    std::vector<int64_t> steps = steps_of_model_calls(plan);
    ASSERT_EQ(static_cast<int64_t>(steps.size()), plan.model_calls()) << sampler;
    EXPECT_EQ(steps.front(), 0);
    EXPECT_EQ(steps.back(), 9) << sampler;  // PNDM's 11 and Heun's 19 calls: 10 steps
    std::vector<at::Tensor> contexts;
    ModelFunction model = guided_denoiser(first_token_denoiser(&contexts), conditioning, 1.0, plan);
    for (int64_t call = 0; call < plan.model_calls(); ++call) {
      const double seen =
          model(at::zeros({1, 1, 1, 1}), at::tensor({1.0f}))[0][0][0][0].item<double>();
      // [cat:dog:0.5] of 10 steps ends "cat" at step 5: A1111 uses it for steps 0..5.
      EXPECT_EQ(seen, steps[static_cast<size_t>(call)] <= 5 ? cat : dog)
          << sampler << " call " << call;
    }
  }
  // img2img: the steps continue the full schedule, so strength 0.3 runs steps 7..9 only.
  SamplingPlan plan =
      make_sampling_plan("ddim", SchedulerConfig::stable_diffusion(PredictionType::kEpsilon), 10);
  std::vector<int64_t> steps = steps_of_model_calls(plan.truncated_for_strength(0.3));
  EXPECT_EQ(steps, (std::vector<int64_t>{7, 8, 9}));
}

// ------------------------------------------------- the real (tiny) CLIP encoder

// The conditioning before the prompt language was wired in: chunks from the tokenizer,
// one encoder batch each, the shorter padded with empty chunks.
std::pair<at::Tensor, at::Tensor> plain_tokenizer_conditioning(StableDiffusionPipeline& pipeline,
                                                               const std::string& prompt,
                                                               const std::string& negative) {
  c10::InferenceMode inference;
  ClipTokenizer tokenizer = test_tokenizer();
  auto positive_chunks = tokenizer.encode_chunks(prompt);
  auto negative_chunks = tokenizer.encode_chunks(negative);
  const auto empty = tokenizer.encode_chunks("").front();
  while (positive_chunks.size() < negative_chunks.size()) positive_chunks.push_back(empty);
  while (negative_chunks.size() < positive_chunks.size()) negative_chunks.push_back(empty);
  ClipTextEncoder& encoder = *pipeline.model().text_encoders.front().encoder;
  auto encode = [&](const std::vector<std::vector<int64_t>>& chunks) {
    std::vector<int64_t> flat;
    for (const auto& chunk : chunks) flat.insert(flat.end(), chunk.begin(), chunk.end());
    at::Tensor ids = at::tensor(flat).reshape({static_cast<int64_t>(chunks.size()), -1});
    at::Tensor hidden = encoder.skip_layers(encoder.forward(ids), 1);
    return hidden.reshape({1, -1, hidden.size(-1)});
  };
  return {encode(negative_chunks), encode(positive_chunks)};
}

TEST(PromptConditioningTinyClip, PlainPromptsAreBitIdenticalToThePlainTokenizerPath) {
  StableDiffusionPipeline pipeline = tiny_pipeline();
  std::string long_prompt;
  for (int i = 0; i < 30; ++i) long_prompt += "studio portrait, rim light, ";
  for (const auto& [prompt, negative] : std::vector<std::pair<std::string, std::string>>{
           {"a photograph of an astronaut", "blurry, low quality"},
           {long_prompt, "blurry"},
           {"", long_prompt}}) {
    auto [negative_new, positive_new] = pipeline.encode_prompt_pair(prompt, negative);
    auto [negative_old, positive_old] = plain_tokenizer_conditioning(pipeline, prompt, negative);
    EXPECT_TRUE(at::equal(positive_new, positive_old)) << prompt.substr(0, 30);
    EXPECT_TRUE(at::equal(negative_new, negative_old)) << negative.substr(0, 30);
  }
}

// An embedding whose one vector is the token embedding of "cat" conditions exactly like
// the word "cat": the vectors go through the real encoder's forward_embedded.
TEST(PromptConditioningTinyClip, EmbeddingWithCatsTokenVectorEqualsTheWordCat) {
  StableDiffusionPipeline pipeline = tiny_pipeline();
  ClipTokenizer tokenizer = test_tokenizer();
  ClipTextEncoder& encoder = *pipeline.model().text_encoders.front().encoder;
  at::Tensor cat_vector;
  {
    c10::InferenceMode inference;
    cat_vector = encoder.embed_tokens(at::tensor({tokenizer.token_id("cat</w>")}).reshape({1, 1}))
                     .reshape({1, -1})
                     .clone();
  }
  TextualInversionLibrary library;
  library.add(embedding_named("kitty", cat_vector));
  pipeline.set_embeddings(library);
  at::Tensor with_embedding = pipeline.encode_prompt("a kitty on a sofa");
  at::Tensor with_word = pipeline.encode_prompt("a cat on a sofa");
  EXPECT_LT((with_embedding - with_word).abs().max().item<double>(), 1e-6);
  EXPECT_FALSE(at::equal(pipeline.encode_prompt("a dog on a sofa"), with_word));
}

TEST(PromptConditioningTinyClip, GenerationRecordsEmbeddingAndVaeHashes) {
  StableDiffusionPipeline pipeline = tiny_pipeline();
  TextualInversionLibrary library;
  library.add(embedding_named("kitty", at::zeros({1, 32})));
  pipeline.set_embeddings(library);
  GenerationRequest request;
  request.prompt = "a (kitty:1.2) [on:in:2] a sofa AND a dog:0.3";
  request.negative_prompt = "[blurry|ugly]";
  request.width = request.height = 64;
  request.steps = 3;
  request.sampler = "euler";
  request.vae = VaeReference{"vae-ft-mse.safetensors", "735e4c3a44"};
  GeneratedImage image = pipeline.generate(request).front();
  EXPECT_EQ(image.parameters.get("TI hashes").value_or(""), "kitty: 0123456789ab");
  EXPECT_EQ(image.parameters.get("VAE hash").value_or(""), "735e4c3a44");
  EXPECT_EQ(image.parameters.get("VAE").value_or(""), "vae-ft-mse.safetensors");
  EXPECT_EQ(image.parameters.prompt, request.prompt);
  // The same request without AND/schedules gives another image (the language matters).
  GenerationRequest simple = request;
  simple.prompt = "a kitty on a sofa";
  EXPECT_NE(pipeline.generate(simple).front().image.rgb, image.image.rgb);
}

TEST(PromptConditioningTinyClip, MalformedPromptsAreErrorsNotCrashes) {
  StableDiffusionPipeline pipeline = tiny_pipeline();
  GenerationRequest request;
  request.width = request.height = 64;
  request.steps = 2;
  for (const char* prompt : {"(a:1.2.3)", "<lora:x:strong> a"}) {
    request.prompt = prompt;
    try {
      pipeline.generate(request);
      ADD_FAILURE() << prompt;
    } catch (const Error& error) {
      EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument) << prompt;
    }
  }
  for (const char* lenient : {"[a:b:2.5.1]", "((unbalanced", "a ] b ) c", "[a|b"}) {
    request.prompt = lenient;
    EXPECT_NO_THROW(pipeline.generate(request)) << lenient;
  }
}

// Golden parity through AND: two half-weight copies of the golden prompt give
// uncond + 0.5 g (c - u) + 0.5 g (c - u), the reference's uncond + g (c - u) up to rounding,
// with a UNet batch of three.
TEST(PromptConditioningGolden, HalfWeightAndPartsReproduceTheReferenceRun) {
  const auto folder = test::golden_dir() / "sd1";
  DOPPEL_REQUIRE_PATH(folder / "goldens" / "txt2img" / "euler.safetensors");
  ModelLoadOptions options;
  options.path = folder / "diffusers";
  options.compute_hash = false;
  StableDiffusionPipeline pipeline(load_stable_diffusion(options),
                                   ClipTokenizer::from_bpe_file(test::golden_dir() / "tokenizer" /
                                                                "bpe_simple_vocab_16e6.txt.gz"),
                                   "sd1");
  const std::string prompt = "a photograph of an astronaut riding a horse";
  PromptConditioning conditioning = pipeline.condition_prompts(
      prompt + " :0.5 AND " + prompt + ":0.5", "blurry, low quality", 10);
  ASSERT_EQ(conditioning.positive.size(), 2u);
  auto golden = SafetensorsFile::open(folder / "goldens" / "txt2img" / "euler.safetensors");
  const at::Tensor expected = golden.tensor("final_latents");
  auto run = [&](const PromptConditioning& prompts) {
    SamplingPlan plan = make_sampling_plan("euler", pipeline.scheduler_config(), 10);
    Generator generator(1234);
    at::Tensor latents = scale_initial_noise(plan, golden.tensor("initial_noise"));
    latents = sample(plan, pipeline.guided_model(prompts, 7.5, plan), latents, generator);
    return (latents - expected).abs().max().item<double>() / expected.abs().max().item<double>();
  };
  const double and_parts = run(conditioning);
  const double plain = run(pipeline.condition_prompts(prompt, "blurry, low quality", 10));
  std::printf("[ golden   ] euler final rel: plain prompt %.3g, AND 0.5+0.5 %.3g\n", plain,
              and_parts);
  EXPECT_LT(plain, 1e-4);
  EXPECT_LT(and_parts, 1e-4);
}

}  // namespace
}  // namespace doppel

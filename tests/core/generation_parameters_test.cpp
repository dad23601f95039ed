#include "doppel/core/generation_parameters.hpp"

#include <gtest/gtest.h>

namespace doppel {
namespace {

TEST(GenerationParameters, WritesAutomatic1111Text) {
  GenerationParameters p;
  p.prompt = "a portrait of sks person, (smiling:1.2)";
  p.negative_prompt = "blurry";
  p.set("Steps", "20");
  p.set("Sampler", "Euler a");
  p.set("CFG scale", "7");
  p.set("Seed", "1234");
  p.set("Size", "512x512");
  p.set("Lora hashes", "face: abc, style: def");
  EXPECT_EQ(p.to_text(),
            "a portrait of sks person, (smiling:1.2)\nNegative prompt: blurry\n"
            "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 512x512, "
            "Lora hashes: \"face: abc, style: def\"");
}

TEST(GenerationParameters, ParsesWhatItWritesAndA1111Text) {
  GenerationParameters p;
  p.prompt = "line one\nline two";
  p.negative_prompt = "bad\nworse";
  p.settings = {{"Steps", "30"},
                {"Sampler", "DPM++ 2M Karras"},
                {"Seed", "5"},
                {"Note", "a \"quoted\", tricky: value"}};
  GenerationParameters back = GenerationParameters::parse(p.to_text());
  EXPECT_EQ(back.prompt, p.prompt);
  EXPECT_EQ(back.negative_prompt, p.negative_prompt);
  EXPECT_EQ(back.settings, p.settings);

  auto a1111 = GenerationParameters::parse(
      "masterpiece, 1girl\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x768, "
      "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly");
  EXPECT_EQ(a1111.prompt, "masterpiece, 1girl");
  EXPECT_EQ(a1111.negative_prompt, "");
  EXPECT_EQ(a1111.get("Model hash").value(), "6ce0161689");
  EXPECT_EQ(a1111.get("Size").value(), "512x768");
}

TEST(GenerationParameters, TextWithoutSettingsIsAllPrompt) {
  auto p = GenerationParameters::parse("just a prompt: with colon");
  EXPECT_EQ(p.prompt, "just a prompt: with colon");
  EXPECT_TRUE(p.settings.empty());
  auto broken =
      GenerationParameters::parse("x\nSteps: 1, Size: 8x8, Sampler: \"unterminated, Seed: 2");
  EXPECT_EQ(broken.prompt, "x");
  EXPECT_EQ(broken.get("Steps").value(), "1");
}

}  // namespace
}  // namespace doppel

// A1111's hr_sampler_name / hr_prompt / hr_negative_prompt: the hires fix's second pass with
// its own sampler and prompts, recorded as A1111 records them.
#include <gtest/gtest.h>

#include "support/error_code.hpp"
#include "support/tiny_pipeline.hpp"

namespace doppel {
namespace {

GenerationRequest hires_request() {
  GenerationRequest request = test::tiny_request();
  request.sampler = "euler";
  request.hires = HiresFix{};
  request.hires->scale = 1.5;
  request.hires->steps = 3;
  return request;
}

TEST(HiresOverrides, SecondPassTakesItsOwnSamplerAndPrompts) {
  StableDiffusionPipeline pipeline = test::tiny_pipeline();
  const GeneratedImage plain = pipeline.generate(hires_request()).front();
  EXPECT_FALSE(plain.parameters.get("Hires sampler"));
  EXPECT_FALSE(plain.parameters.get("Hires prompt"));

  GenerationRequest sampler = hires_request();
  sampler.hires->sampler = "dpmpp_2m";
  sampler.hires->karras = true;
  const GeneratedImage by_sampler = pipeline.generate(sampler).front();
  EXPECT_NE(by_sampler.image.rgb, plain.image.rgb);
  EXPECT_EQ(by_sampler.parameters.get("Hires sampler").value_or(""), "DPM++ 2M Karras");
  EXPECT_EQ(by_sampler.parameters.get("Sampler").value_or(""), "Euler");
  // Naming the first pass's sampler changes nothing and is not recorded.
  GenerationRequest same = hires_request();
  same.hires->sampler = "euler";
  const GeneratedImage by_same = pipeline.generate(same).front();
  EXPECT_EQ(by_same.image.rgb, plain.image.rgb);
  EXPECT_FALSE(by_same.parameters.get("Hires sampler"));

  GenerationRequest prompts = hires_request();
  prompts.hires->prompt = "a landscape at night";
  prompts.hires->negative_prompt = "people";
  const GeneratedImage by_prompt = pipeline.generate(prompts).front();
  EXPECT_NE(by_prompt.image.rgb, plain.image.rgb);
  EXPECT_EQ(by_prompt.parameters.get("Hires prompt").value_or(""), "a landscape at night");
  EXPECT_EQ(by_prompt.parameters.get("Hires negative prompt").value_or(""), "people");
  EXPECT_EQ(by_prompt.parameters.prompt, plain.parameters.prompt);

  GenerationRequest unknown = hires_request();
  unknown.hires->sampler = "no_such_sampler";
  EXPECT_EQ(test::code_of([&] { pipeline.generate(unknown); }), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace doppel

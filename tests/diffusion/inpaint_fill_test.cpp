// A1111's "Masked content" (inpainting_fill): fill, original, latent noise, latent nothing —
// what the masked area starts from, with the unmasked pixels kept.
#include <gtest/gtest.h>

#include "doppel/diffusion/inpainting.hpp"
#include "support/error_code.hpp"
#include "support/test_images.hpp"
#include "support/tiny_pipeline.hpp"

namespace doppel {
namespace {

using test::pixel;

using test::code_of;

void paint(Image& image, int x1, int y1, int x2, int y2, uint8_t r, uint8_t g, uint8_t b) {
  for (int y = y1; y < y2; ++y)
    for (int x = x1; x < x2; ++x) {
      uint8_t* p = &image.rgb[(size_t(y) * image.width + x) * 3];
      p[0] = r;
      p[1] = g;
      p[2] = b;
    }
}

// Left half red, right half blue, a green square at [16, 32)^2 (in the red half).
Image two_halves_with_a_square() {
  Image image = test::solid_image(64, 64, 200, 20, 20);
  paint(image, 32, 0, 64, 64, 20, 20, 200);
  paint(image, 16, 16, 32, 32, 20, 220, 20);
  return image;
}

Image square_mask() {
  Image mask = test::solid_image(64, 64, 0, 0, 0);
  paint(mask, 16, 16, 32, 32, 255, 255, 255);
  return mask;
}

TEST(InpaintFill, FillPaintsTheMaskWithTheSurroundingColours) {
  const Image image = two_halves_with_a_square();
  const Mask mask = mask_from_image(square_mask());
  const Image filled = fill_masked_area(image, mask);
  ASSERT_EQ(filled.width, 64);
  ASSERT_EQ(filled.height, 64);
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x) {
      const bool masked = x >= 16 && x < 32 && y >= 16 && y < 32;
      if (!masked) {
        ASSERT_TRUE(std::equal(pixel(image, x, y), pixel(image, x, y) + 3, pixel(filled, x, y)))
            << x << "," << y;
      }
    }
  // The green square is gone: its middle takes the red around it (some blue from afar).
  const uint8_t* middle = pixel(filled, 24, 24);
  EXPECT_GT(middle[0], 120);
  EXPECT_LT(middle[1], 60);
  EXPECT_LT(middle[2], middle[0]);
  // Deterministic, and what was under the mask does not matter.
  Image other = image;
  paint(other, 16, 16, 32, 32, 250, 250, 250);
  EXPECT_EQ(fill_masked_area(other, mask).rgb, filled.rgb);

  EXPECT_EQ(code_of([&] { fill_masked_area(image, resize_mask(mask, 32, 32)); }),
            ErrorCode::kInvalidArgument);
}

TEST(InpaintFill, LatentFillsReplaceOnlyTheMaskedLatents) {
  const at::Tensor latents = at::full({1, 4, 4, 4}, 2.0);
  at::Tensor repaint = at::zeros({1, 1, 4, 4});
  repaint.narrow(2, 0, 2).fill_(1.0);  // top half
  const at::Tensor noise = at::full({1, 4, 4, 4}, -3.0);
  const at::Tensor noised = fill_masked_latents(latents, repaint, InpaintFill::kLatentNoise, noise);
  EXPECT_TRUE(noised.narrow(2, 0, 2).eq(-3.0).all().item<bool>());
  EXPECT_TRUE(noised.narrow(2, 2, 2).eq(2.0).all().item<bool>());
  const at::Tensor nothing =
      fill_masked_latents(latents, repaint, InpaintFill::kLatentNothing, noise);
  EXPECT_TRUE(nothing.narrow(2, 0, 2).eq(0.0).all().item<bool>());
  EXPECT_TRUE(nothing.narrow(2, 2, 2).eq(2.0).all().item<bool>());
  for (InpaintFill fill : {InpaintFill::kFill, InpaintFill::kOriginal})
    EXPECT_TRUE(fill_masked_latents(latents, repaint, fill, noise).equal(latents));
}

TEST(InpaintFill, NamesAsA1111) {
  EXPECT_EQ(parse_inpaint_fill("0"), InpaintFill::kFill);
  EXPECT_EQ(parse_inpaint_fill("Latent Noise"), InpaintFill::kLatentNoise);
  EXPECT_EQ(parse_inpaint_fill("3"), InpaintFill::kLatentNothing);
  EXPECT_STREQ(inpaint_fill_name(InpaintFill::kOriginal), "original");
  std::string message;
  EXPECT_EQ(code_of([] { parse_inpaint_fill("4"); }, &message), ErrorCode::kInvalidArgument);
  EXPECT_NE(message.find("latent nothing"), std::string::npos);
}

TEST(InpaintFill, EachModeStartsTheMaskFromItsOwnPictureAndKeepsTheRest) {
  StableDiffusionPipeline pipeline = test::tiny_pipeline();
  const Image init = two_halves_with_a_square();
  Image repainted_square = init;  // the same picture with something else under the mask
  paint(repainted_square, 16, 16, 32, 32, 250, 250, 250);
  std::map<InpaintFill, Image> results;
  for (InpaintFill fill : {InpaintFill::kFill, InpaintFill::kOriginal, InpaintFill::kLatentNoise,
                           InpaintFill::kLatentNothing}) {
    GenerationRequest request = test::tiny_request();
    request.sampler = "euler";
    request.strength = 0.6;
    request.init_image = init;
    InpaintOptions inpaint;
    inpaint.mask = square_mask();
    inpaint.mask_blur = 0;  // a hard mask: every pixel is kept or repainted
    inpaint.fill = fill;
    request.inpaint = inpaint;
    const Image result = pipeline.generate(request).front().image;
    for (int y = 0; y < 64; ++y)
      for (int x = 0; x < 64; ++x)
        if (!(x >= 16 && x < 32 && y >= 16 && y < 32)) {
          ASSERT_TRUE(std::equal(pixel(init, x, y), pixel(init, x, y) + 3, pixel(result, x, y)))
              << inpaint_fill_name(fill) << " " << x << "," << y;
        }
    EXPECT_EQ(pipeline.generate(request).front().image.rgb, result.rgb);  // deterministic
    // Only "original" starts from what is under the mask.
    request.init_image = repainted_square;
    const Image other = pipeline.generate(request).front().image;
    if (fill == InpaintFill::kOriginal)
      EXPECT_NE(other.rgb, result.rgb);
    else
      EXPECT_EQ(other.rgb, result.rgb) << inpaint_fill_name(fill);
    results[fill] = result;
  }
  // Four different starts, four different pictures.
  for (auto a = results.begin(); a != results.end(); ++a)
    for (auto b = std::next(a); b != results.end(); ++b)
      EXPECT_NE(a->second.rgb, b->second.rgb)
          << inpaint_fill_name(a->first) << " vs " << inpaint_fill_name(b->first);
}

}  // namespace
}  // namespace doppel

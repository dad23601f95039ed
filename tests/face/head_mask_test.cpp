// Head masks for repainting a face (grown, feathered inside the grown outline, the skin for
// colour statistics) and colour matching of a repainted face to the picture.
#include "doppel/face/head_mask.hpp"

#include <gtest/gtest.h>

#include "doppel/core/error.hpp"
#include "doppel/face/face_colour_match.hpp"
#include "support/error_code.hpp"
#include "support/synthetic_face.hpp"

namespace doppel {
namespace {

uint8_t value_at(const Mask& mask, int x, int y) {
  return mask
      .values[static_cast<size_t>(y) * static_cast<size_t>(mask.width) + static_cast<size_t>(x)];
}

int64_t count_set(const Mask& mask) {
  int64_t count = 0;
  for (const uint8_t value : mask.values) count += value > 0;
  return count;
}

TEST(HeadMask, CoversFaceAndHairlineAndFeathersInsideTheGrownOutline) {
  const auto landmarks = test::synthetic_landmarks(100, 100, 40);
  const HeadMask mask = head_mask(landmarks, 200, 240);
  ASSERT_EQ(mask.grown.width, 200);
  ASSERT_EQ(mask.grown.height, 240);
  for (size_t i = 0; i < mask.soft.values.size(); ++i) {
    // The soft edge never reaches past the grown outline, and the skin is all inside it.
    if (mask.grown.values[i] == 0) {
      ASSERT_EQ(mask.soft.values[i], 0) << "pixel " << i;
    }
    if (mask.skin.values[i] > 0) {
      ASSERT_EQ(mask.grown.values[i], 255) << "pixel " << i;
    }
  }
  EXPECT_EQ(value_at(mask.soft, 100, 120), 255);  // the middle of the face
  EXPECT_EQ(value_at(mask.skin, 100, 120), 255);
  // The forehead up to the hairline: above the brows (y = 86) by about half the face height.
  EXPECT_EQ(value_at(mask.grown, 100, 60), 255);
  EXPECT_EQ(value_at(mask.skin, 100, 60), 0);
  // Grown past the jaw (chin at y = 148) by the margin, not to the picture's corners.
  EXPECT_EQ(value_at(mask.grown, 100, 150), 255);
  EXPECT_EQ(value_at(mask.grown, 5, 5), 0);
  EXPECT_EQ(value_at(mask.grown, 100, 230), 0);
  // A soft edge: values between 0 and 255 exist.
  int64_t partial = 0;
  for (const uint8_t value : mask.soft.values) partial += value > 0 && value < 255;
  EXPECT_GT(partial, 100);
}

TEST(HeadMask, MarginAndHairlineGrowTheMask) {
  const auto landmarks = test::synthetic_landmarks(100, 100, 30);
  HeadMaskOptions tight;
  tight.margin = 0;
  tight.hairline = 0;
  HeadMaskOptions wide;
  wide.margin = 0.3;
  wide.hairline = 1.0;
  const int64_t small = count_set(head_mask(landmarks, 200, 200, tight).grown);
  const int64_t large = count_set(head_mask(landmarks, 200, 200, wide).grown);
  EXPECT_GT(large, small * 3 / 2);
  // With no margin and no hairline the grown mask is the skin.
  const HeadMask skin_only = head_mask(landmarks, 200, 200, tight);
  EXPECT_EQ(skin_only.grown.values, skin_only.skin.values);
}

TEST(HeadMask, FaceAtThePictureEdgeIsClipped) {
  const HeadMask mask = head_mask(test::synthetic_landmarks(10, 20, 40), 100, 100);
  EXPECT_EQ(value_at(mask.grown, 0, 30), 255);
  EXPECT_EQ(mask.grown.values.size(), 100u * 100u);
}

TEST(HeadMask, RefusesBadInput) {
  auto landmarks = test::synthetic_landmarks(50, 50, 20);
  EXPECT_EQ(test::code_of([&] {
              head_mask({landmarks.begin(), landmarks.begin() + 5}, 100, 100);
            }),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(test::code_of([&] { head_mask(landmarks, 0, 100); }), ErrorCode::kInvalidArgument);
  HeadMaskOptions options;
  options.margin = 2;
  EXPECT_EQ(test::code_of([&] { head_mask(landmarks, 100, 100, options); }),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(test::code_of([&] { combine_masks({}); }), ErrorCode::kInvalidArgument);
}

TEST(HeadMask, CombinedMasksTakeTheLargestValue) {
  const HeadMask left = head_mask(test::synthetic_landmarks(50, 60, 20), 200, 120);
  const HeadMask right = head_mask(test::synthetic_landmarks(150, 60, 20), 200, 120);
  const Mask both = combine_masks({left.grown, right.grown});
  EXPECT_EQ(count_set(both), count_set(left.grown) + count_set(right.grown));  // apart
  EXPECT_EQ(value_at(both, 50, 70), 255);
  EXPECT_EQ(value_at(both, 150, 70), 255);
}

Image flat(int width, int height, uint8_t red, uint8_t green, uint8_t blue) {
  Image image{width, height, {}};
  for (int i = 0; i < width * height; ++i) image.rgb.insert(image.rgb.end(), {red, green, blue});
  return image;
}

TEST(FaceColourMatch, MovesTheFaceToTheReferenceToneAndLeavesTheRestAlone) {
  Image image = flat(40, 40, 120, 120, 120);
  for (size_t i = 0; i < image.rgb.size(); i += 3)
    image.rgb[i] = static_cast<uint8_t>(100 + i % 40);
  const Image reference = flat(40, 40, 210, 150, 120);  // warm skin
  Mask measured{40, 40, std::vector<uint8_t>(1600, 0)};
  Mask applied = measured;
  for (int y = 10; y < 30; ++y)
    for (int x = 10; x < 30; ++x) {
      measured.values[static_cast<size_t>(y * 40 + x)] = 255;
      applied.values[static_cast<size_t>(y * 40 + x)] = 255;
    }
  for (int x = 0; x < 40; ++x) applied.values[static_cast<size_t>(35 * 40 + x)] = 0;
  const Image matched = match_face_colour(image, reference, measured, applied);
  double red = 0, green = 0, blue = 0;
  for (int y = 10; y < 30; ++y)
    for (int x = 10; x < 30; ++x) {
      const size_t index = static_cast<size_t>(y * 40 + x) * 3;
      red += matched.rgb[index];
      green += matched.rgb[index + 1];
      blue += matched.rgb[index + 2];
    }
  EXPECT_NEAR(red / 400, 210, 6);
  EXPECT_NEAR(green / 400, 150, 6);
  EXPECT_NEAR(blue / 400, 120, 6);
  for (size_t i = 0; i < applied.values.size(); ++i)
    if (applied.values[i] == 0) {
      for (size_t c = 0; c < 3; ++c) ASSERT_EQ(matched.rgb[i * 3 + c], image.rgb[i * 3 + c]);
    }
  EXPECT_EQ(match_face_colour(image, reference, measured, applied, 0).rgb, image.rgb);
}

TEST(FaceColourMatch, RefusesMismatchedSizesAndEmptyRegions) {
  const Image image = flat(10, 10, 1, 2, 3);
  const Mask empty{10, 10, std::vector<uint8_t>(100, 0)};
  EXPECT_EQ(test::code_of([&] { match_face_colour(image, image, empty, empty); }),
            ErrorCode::kInvalidArgument);
  const Mask small{5, 5, std::vector<uint8_t>(25, 255)};
  EXPECT_EQ(test::code_of([&] { match_face_colour(image, image, small, small); }),
            ErrorCode::kInvalidArgument);
  Mask full{10, 10, std::vector<uint8_t>(100, 255)};
  EXPECT_EQ(test::code_of([&] { match_face_colour(image, image, full, full, 1.5); }),
            ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace doppel

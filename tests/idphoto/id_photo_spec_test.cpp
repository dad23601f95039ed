#include "doppel/idphoto/id_photo_spec.hpp"

#include <gtest/gtest.h>

#include <set>

#include "doppel/core/error.hpp"

namespace doppel {
namespace {

ErrorCode code_of(const std::function<void()>& action, std::string* message = nullptr) {
  try {
    action();
  } catch (const Error& e) {
    if (message) *message = e.what();
    return e.code();
  }
  ADD_FAILURE() << "no doppel::Error was thrown";
  return ErrorCode::kInternal;
}

TEST(IdPhotoSpec, TheBuiltInFileHasEveryDocumentTheIssueNames) {
  const auto& specs = built_in_id_photo_specs();
  std::set<std::string> ids;
  for (const auto& spec : specs) ids.insert(spec.id);
  for (const char* id : {"cn-id-card", "one-inch", "two-inch", "small-two-inch", "us-passport",
                         "us-visa", "schengen-visa", "uk-passport", "japan-passport"})
    EXPECT_TRUE(ids.count(id)) << id;
  const IdPhotoSpec& card = find_id_photo_spec(specs, "cn-id-card");
  EXPECT_EQ(card.width_px, 358);
  EXPECT_EQ(card.height_px, 441);
  EXPECT_DOUBLE_EQ(card.width_mm, 26);
  EXPECT_DOUBLE_EQ(card.height_mm, 32);
  EXPECT_DOUBLE_EQ(card.dpi, 350);
  EXPECT_EQ(card.backgrounds.front().name, "white");
  EXPECT_EQ(card.name_zh, "居民身份证");  // the studio names documents in both languages
  const IdPhotoSpec& us = find_id_photo_spec(specs, "us-passport");
  EXPECT_EQ(us.width_px, 600);
  EXPECT_NEAR(us.head_height_mm.min, 25.4, 0.05);  // 1 inch
  EXPECT_NEAR(us.eye_line_mm.min, 28.6, 0.05);     // 1 1/8 inch
  EXPECT_EQ(find_id_photo_spec(specs, "one-inch").width_px, 295);
  EXPECT_EQ(find_id_photo_spec(specs, "two-inch").height_px, 626);
  // Every spec prints at its size and states where its numbers come from.
  for (const auto& spec : specs) {
    EXPECT_NEAR(spec.width_mm / 25.4 * spec.dpi, spec.width_px, 1.0) << spec.id;
    EXPECT_NEAR(spec.height_mm / 25.4 * spec.dpi, spec.height_px, 1.0) << spec.id;
    EXPECT_FALSE(spec.authority.empty()) << spec.id;
    EXPECT_FALSE(spec.source.empty()) << spec.id;
    EXPECT_LT(spec.head_height_mm.max, spec.height_mm) << spec.id;
  }
}

TEST(IdPhotoSpec, UnknownIdsAndColoursAreRefusedWithTheChoices) {
  const auto& specs = built_in_id_photo_specs();
  std::string message;
  EXPECT_EQ(code_of([&] { find_id_photo_spec(specs, "us-pasport"); }, &message),
            ErrorCode::kNotFound);
  EXPECT_NE(message.find("did you mean us-passport"), std::string::npos) << message;
  EXPECT_NE(message.find("japan-passport"), std::string::npos) << message;
  const IdPhotoSpec& one_inch = find_id_photo_spec(specs, "one-inch");
  EXPECT_EQ(choose_background(one_inch, "").name, "white");
  EXPECT_EQ(choose_background(one_inch, "blue").name, "blue");
  EXPECT_EQ(code_of([&] { choose_background(find_id_photo_spec(specs, "us-passport"), "red"); },
                    &message),
            ErrorCode::kInvalidArgument);
  EXPECT_NE(message.find("allows: white"), std::string::npos) << message;
}

TEST(IdPhotoSpec, AMalformedFileIsRefusedNamingTheSpecAndField) {
  const std::string colours = "colours:\n  white: {rgb: \"#FFFFFF\", tolerance: 10}\n";
  const std::string good =
      colours +
      "specs:\n  - id: test-card\n    name: T\n    authority: A\n    source: S\n"
      "    size_mm: [25, 35]\n    pixels: [295, 413]\n    dpi: 300\n"
      "    head_height_mm: [20, 25]\n    eye_line_mm: [18, 24]\n    backgrounds: [white]\n";
  EXPECT_EQ(parse_id_photo_specs(good, "t.yaml").front().id, "test-card");
  const std::vector<std::pair<std::string, std::string>> broken = {
      {"pixels: [295, 413]", "pixels: [300, 413]"},  // does not print at 25 mm
      {"head_height_mm: [20, 25]", "head_height_mm: [25, 20]"},
      {"backgrounds: [white]", "backgrounds: [green]"},    // not a listed colour
      {"id: test-card", "id: Test_Card"},                  // not kebab case
      {"    dpi: 300\n", ""},                              // missing field
      {"eye_line_mm: [18, 24]", "eye_line_mm: [18, 40]"},  // beyond the photo
  };
  for (const auto& [from, to] : broken) {
    std::string text = good;
    text.replace(text.find(from), from.size(), to);
    std::string message;
    EXPECT_EQ(code_of([&] { parse_id_photo_specs(text, "t.yaml"); }, &message),
              ErrorCode::kInvalidFile)
        << to;
    EXPECT_NE(message.find("t.yaml"), std::string::npos) << message;
  }
  EXPECT_EQ(code_of([&] { parse_id_photo_specs("specs: [", "t.yaml"); }), ErrorCode::kInvalidFile);
  EXPECT_EQ(code_of([&] { parse_id_photo_specs(colours + "specs: []\n", "t.yaml"); }),
            ErrorCode::kInvalidFile);
}

}  // namespace
}  // namespace doppel

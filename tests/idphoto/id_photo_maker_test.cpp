// Making ID photos from real portraits: the result is the spec's exact size with its DPI
// in the file, the head height and eye line measured again on the written file fall in
// the spec's ranges, the background is the exact colour, and photos that cannot make a
// compliant ID photo come back with the reasons.
#include "doppel/idphoto/id_photo_maker.hpp"

#include <filesystem>

#include "doppel/core/atomic_file.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/image_density.hpp"
#include "idphoto/id_photo_test_support.hpp"

namespace doppel {
namespace {

using test::spec;

using test::id_photo_detector;

std::string failed(const IdPhotoVerdict& verdict) {
  std::string text;
  for (const auto& reason : verdict.reasons()) text += reason + "\n";
  return text;
}

class IdPhotoMakerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    DOPPEL_REQUIRE_LANDMARK_MODEL();
    DOPPEL_REQUIRE_PATH(test::faces_dir() / "labels.csv");
  }
};

struct Case {
  const char* photo;
  const char* spec;
  const char* background;
};

TEST_F(IdPhotoMakerTest, RealPortraitsBecomeCompliantPhotosMeasuredAgainFromTheFile) {
  const auto folder = std::filesystem::temp_directory_path() / "doppel_id_photo_maker_test";
  std::filesystem::create_directories(folder);
  // A tilted head (angelina img11 leans 16 degrees) is levelled; several documents and colours.
  for (const Case& c : {Case{"matt_damon__deepface_img33.jpg", "cn-id-card", ""},
                        Case{"angelina_jolie__deepface_img11.jpg", "us-passport", ""},
                        Case{"scarlett_johansson__deepface_img8.jpg", "one-inch", "blue"},
                        Case{"matt_damon__deepface_img33.jpg", "uk-passport", "light-grey"}}) {
    SCOPED_TRACE(std::string(c.photo) + " as " + c.spec);
    const IdPhotoSpec& s = spec(c.spec);
    IdPhotoMakeOptions options;
    options.background = c.background;
    const IdPhotoResult result =
        make_id_photo(id_photo_detector(), test::test_photo(c.photo), s, options);
    ASSERT_TRUE(result.verdict.compliant) << failed(result.verdict);
    ASSERT_EQ(result.image.width, s.width_px);
    ASSERT_EQ(result.image.height, s.height_px);
    const IdPhotoColour& colour = choose_background(s, c.background);
    EXPECT_EQ(result.background, colour.name);
    // The corners are background: exactly the spec's colour.
    for (auto [x, y] : {std::pair{0, 0}, std::pair{s.width_px - 1, 0}}) {
      const uint8_t* p = result.image.rgb.data() + (size_t(y) * s.width_px + x) * 3;
      EXPECT_EQ(p[0], colour.rgb[0]);
      EXPECT_EQ(p[1], colour.rgb[1]);
      EXPECT_EQ(p[2], colour.rgb[2]);
    }
    // Written with its DPI, read back, and judged from scratch (no matte handed over).
    const auto file = folder / (std::string(c.spec) + ".png");
    write_image_with_density(file, result.image, s.dpi);
    const std::string bytes = read_file(file);
    EXPECT_NEAR(*read_print_density(bytes), s.dpi, 0.05);
    const IdPhotoVerdict again = check_id_photo(decode_image(bytes), s, id_photo_detector());
    EXPECT_TRUE(again.compliant) << failed(again);
    EXPECT_TRUE(s.head_height_mm.contains(again.measures.head_height_mm))
        << again.measures.head_height_mm;
    EXPECT_TRUE(s.eye_line_mm.contains(again.measures.eye_line_mm)) << again.measures.eye_line_mm;
    EXPECT_LT(std::abs(again.measures.roll_degrees), 2.0);
    EXPECT_LT(std::abs(again.measures.centre_offset), 0.02);
    if (s.top_margin_mm) {
      EXPECT_TRUE(s.top_margin_mm->contains(again.measures.top_margin_mm))
          << again.measures.top_margin_mm;
    }
  }
  std::filesystem::remove_all(folder);
}

TEST_F(IdPhotoMakerTest, PhotosThatCannotBeMadeCompliantSayWhy) {
  const IdPhotoSpec& s = spec("schengen-visa");
  const IdPhotoResult closed = make_id_photo(
      id_photo_detector(), test::test_photo("eyesclosed__insightface_close_eyes.jpg"), s);
  EXPECT_FALSE(closed.verdict.compliant);
  EXPECT_FALSE(closed.verdict.find("eyes_open")->pass) << failed(closed.verdict);

  const IdPhotoResult two =
      make_id_photo(id_photo_detector(), test::test_photo("multi__facerec_two_people.jpg"), s);
  EXPECT_FALSE(two.verdict.compliant);
  EXPECT_TRUE(two.image.rgb.empty());
  EXPECT_FALSE(two.verdict.find("one_face")->pass);

  // A face of ~30 px would have to be enlarged far beyond what stays sharp.
  const IdPhotoResult tiny = make_id_photo(
      id_photo_detector(), test::test_photo("scarlett_johansson__synthetic_tiny_img47.jpg"), s);
  EXPECT_FALSE(tiny.verdict.compliant);
  if (!tiny.image.rgb.empty()) {
    EXPECT_FALSE(tiny.verdict.find("resolution")->pass) << failed(tiny.verdict);
    EXPECT_GT(tiny.enlargement, 3.0);
  }
}

TEST_F(IdPhotoMakerTest, BadArgumentsAreRefused) {
  EXPECT_THROW(make_id_photo(id_photo_detector(), Image{}, spec("us-visa")), Error);
  Image photo{64, 64, std::vector<uint8_t>(64 * 64 * 3, 200)};
  try {
    IdPhotoMakeOptions red;
    red.background = "red";
    make_id_photo(id_photo_detector(), photo, spec("us-visa"), red);
    FAIL() << "a red US visa photo was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("white"), std::string::npos);
  }
}

}  // namespace
}  // namespace doppel

// Every check against real photos from ../shared/testdata/faces: a compliant ID photo
// made from a real portrait passes them all, and a copy transformed to break one rule
// (rotated, shifted, shrunk, recoloured, darkened on one side, blurred) fails that one.
#include "doppel/idphoto/id_photo_check.hpp"

#include <opencv2/imgproc.hpp>

#include "doppel/core/error.hpp"
#include "doppel/idphoto/id_photo_maker.hpp"
#include "idphoto/id_photo_test_support.hpp"

namespace doppel {
namespace {

using test::spec;

using test::id_photo_detector;
using test::image_of;
using test::mat_of;

// A compliant small-two-inch photo made once from a real portrait (white background).
const Image& compliant_photo() {
  static const Image photo = [] {
    const IdPhotoResult result = make_id_photo(
        id_photo_detector(), test::test_photo("scarlett_johansson__deepface_img8.jpg"),
        spec("small-two-inch"));
    EXPECT_TRUE(result.verdict.compliant);
    return result.image;
  }();
  return photo;
}

bool passes(const IdPhotoVerdict& verdict, const std::string& check) {
  const IdPhotoCheck* found = verdict.find(check);
  EXPECT_NE(found, nullptr) << check;
  return found && found->pass;
}

std::string all_messages(const IdPhotoVerdict& verdict) {
  std::string text;
  for (const auto& c : verdict.checks)
    text += c.id + (c.pass ? " ok: " : " FAIL: ") + c.message + "\n";
  return text;
}

IdPhotoVerdict judge(const Image& photo, const std::string& spec_id = "small-two-inch") {
  return check_id_photo(photo, spec(spec_id), id_photo_detector());
}

// The photo's content moved by (dx, dy) and scaled by `scale` about the centre; what
// comes in at the edges is the background colour.
Image moved(const Image& photo, double dx, double dy, double scale = 1.0) {
  Image copy = photo;
  cv::Mat m = cv::getRotationMatrix2D(cv::Point2f(photo.width / 2.f, photo.height / 2.f), 0, scale);
  m.at<double>(0, 2) += dx;
  m.at<double>(1, 2) += dy;
  cv::Mat out;
  cv::warpAffine(mat_of(copy), out, m, mat_of(copy).size(), cv::INTER_LINEAR, cv::BORDER_CONSTANT,
                 cv::Scalar(255, 255, 255));
  return image_of(out);
}

class IdPhotoCheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    DOPPEL_REQUIRE_LANDMARK_MODEL();
    DOPPEL_REQUIRE_PATH(test::faces_dir() / "scarlett_johansson__deepface_img8.jpg");
  }
};

TEST_F(IdPhotoCheckTest, ACompliantPhotoPassesEveryCheck) {
  const IdPhotoVerdict verdict = judge(compliant_photo());
  EXPECT_TRUE(verdict.compliant) << all_messages(verdict);
  for (const char* id :
       {"one_face", "frontal", "eyes_open", "head_height", "eye_line", "centred",
        "background_uniform", "background_colour", "even_lighting", "sharpness", "size"})
    EXPECT_TRUE(passes(verdict, id)) << id << "\n" << all_messages(verdict);
  EXPECT_TRUE(verdict.measures.crown_from_matte);
  EXPECT_EQ(verdict.measures.nearest_colour, "white");
  // The JSON verdict carries every check with pass and message.
  const nlohmann::json json = id_photo_verdict_json(verdict);
  EXPECT_EQ(json["compliant"], true);
  EXPECT_EQ(json["checks"].size(), verdict.checks.size());
  for (const auto& check : json["checks"]) {
    EXPECT_TRUE(check.contains("pass"));
    EXPECT_FALSE(check["message"].get<std::string>().empty());
  }
}

TEST_F(IdPhotoCheckTest, NoFaceOrTwoFacesFailOneFace) {
  Image blank{413, 531, std::vector<uint8_t>(413 * 531 * 3, 255)};
  const IdPhotoVerdict none = judge(blank);
  EXPECT_FALSE(none.compliant);
  EXPECT_FALSE(passes(none, "one_face"));
  EXPECT_NE(none.find("one_face")->message.find("no face"), std::string::npos);
  // Two people side by side, scaled back to the spec's shape.
  Image photo = compliant_photo();
  cv::Mat pair, shaped;
  cv::hconcat(mat_of(photo), mat_of(photo), pair);
  cv::Mat canvas(pair.cols * 531 / 413, pair.cols, CV_8UC3, cv::Scalar(255, 255, 255));
  pair.copyTo(canvas(cv::Rect(0, canvas.rows - pair.rows, pair.cols, pair.rows)));
  const IdPhotoVerdict two = judge(image_of(canvas));
  EXPECT_FALSE(passes(two, "one_face"));
  EXPECT_NE(two.find("one_face")->message.find("2 faces"), std::string::npos);
}

TEST_F(IdPhotoCheckTest, ATiltedHeadFailsFrontal) {
  Image photo = compliant_photo();
  cv::Mat tilted;
  const cv::Mat m =
      cv::getRotationMatrix2D(cv::Point2f(photo.width / 2.f, photo.height * 0.45f), 15, 1.0);
  cv::warpAffine(mat_of(photo), tilted, m, mat_of(photo).size(), cv::INTER_LINEAR,
                 cv::BORDER_CONSTANT, cv::Scalar(255, 255, 255));
  const IdPhotoVerdict verdict = judge(image_of(tilted));
  EXPECT_FALSE(passes(verdict, "frontal")) << all_messages(verdict);
  EXPECT_NEAR(std::abs(verdict.measures.roll_degrees), 15, 3);
  EXPECT_NE(verdict.find("frontal")->message.find("leans"), std::string::npos);
}

TEST_F(IdPhotoCheckTest, RealTurnedAndDownwardHeadsFailFrontal) {
  DOPPEL_REQUIRE_PATH(test::faces_dir() / "kit_harington__facerec_john2.jpg");
  const IdPhotoVerdict turned = judge(test::test_photo("kit_harington__facerec_john2.jpg"));
  EXPECT_FALSE(passes(turned, "frontal")) << all_messages(turned);
  EXPECT_NE(turned.find("frontal")->message.find("turned"), std::string::npos);
  const IdPhotoVerdict down = judge(test::test_photo("pose__insightface_lower_face.jpg"));
  EXPECT_FALSE(passes(down, "frontal")) << all_messages(down);
}

TEST_F(IdPhotoCheckTest, ClosedEyesFailEyesOpen) {
  const IdPhotoVerdict verdict = judge(test::test_photo("eyesclosed__insightface_close_eyes.jpg"));
  EXPECT_FALSE(passes(verdict, "eyes_open")) << all_messages(verdict);
  EXPECT_LT(verdict.measures.eye_openness, 0.15);
}

TEST_F(IdPhotoCheckTest, AShrunkOrEnlargedHeadFailsHeadHeight) {
  const double head = judge(compliant_photo()).measures.head_height_mm;
  const IdPhotoVerdict small = judge(moved(compliant_photo(), 0, 40, 0.75));
  EXPECT_FALSE(passes(small, "head_height")) << all_messages(small);
  EXPECT_NEAR(small.measures.head_height_mm, head * 0.75, 2.0);
  EXPECT_NE(small.find("head_height")->message.find("too small"), std::string::npos);
  const IdPhotoVerdict large = judge(moved(compliant_photo(), 0, 30, 1.25));
  EXPECT_FALSE(passes(large, "head_height")) << all_messages(large);
}

TEST_F(IdPhotoCheckTest, AShiftedPhotoFailsEyeLineAndCentred) {
  const IdPhotoVerdict low = judge(moved(compliant_photo(), 0, 0.15 * 531));
  EXPECT_FALSE(passes(low, "eye_line")) << all_messages(low);
  EXPECT_NE(low.find("eye_line")->message.find("too low"), std::string::npos);
  EXPECT_TRUE(passes(low, "centred"));
  const IdPhotoVerdict aside = judge(moved(compliant_photo(), 0.12 * 413, 0));
  EXPECT_FALSE(passes(aside, "centred")) << all_messages(aside);
  EXPECT_NE(aside.find("centred")->message.find("right"), std::string::npos);
  EXPECT_TRUE(passes(aside, "eye_line"));
}

TEST_F(IdPhotoCheckTest, ARecolouredBackgroundFailsTheColourCheck) {
  // Green where the photo is white: the person stays, the background turns green.
  Image photo = compliant_photo();
  cv::Mat rgb = mat_of(photo).clone();
  cv::Mat white;
  cv::inRange(rgb, cv::Scalar(250, 250, 250), cv::Scalar(255, 255, 255), white);
  rgb.setTo(cv::Scalar(120, 200, 120), white);
  const IdPhotoVerdict green = judge(image_of(rgb));
  EXPECT_FALSE(passes(green, "background_colour")) << all_messages(green);
  EXPECT_NE(green.find("background_colour")->message.find("allows white"), std::string::npos);
  // Blue is allowed for one-inch style specs, but not for a US passport.
  rgb = mat_of(photo).clone();
  rgb.setTo(cv::Scalar(0x43, 0x8E, 0xDB), white);
  EXPECT_TRUE(passes(judge(image_of(rgb)), "background_colour"));
}

TEST_F(IdPhotoCheckTest, AShadowOrTextureBehindThePersonFailsBackgroundUniform) {
  Image photo = compliant_photo();
  cv::Mat rgb = mat_of(photo).clone();
  cv::Mat white;
  cv::inRange(rgb, cv::Scalar(250, 250, 250), cv::Scalar(255, 255, 255), white);
  // A shadow: the background darkens towards the right.
  cv::Mat shaded = rgb.clone();
  for (int y = 0; y < rgb.rows; ++y)
    for (int x = 0; x < rgb.cols; ++x)
      if (white.at<uint8_t>(y, x))
        shaded.at<cv::Vec3b>(y, x) = cv::Vec3b::all(255 - x * 110 / rgb.cols);
  const IdPhotoVerdict shadow = judge(image_of(shaded));
  EXPECT_FALSE(passes(shadow, "background_uniform")) << all_messages(shadow);
  // Texture: noise over the background.
  cv::Mat noisy = rgb.clone(), noise(rgb.size(), CV_8UC3);
  cv::randu(noise, 0, 90);
  cv::subtract(noisy, noise, noisy, white);
  const IdPhotoVerdict textured = judge(image_of(noisy));
  EXPECT_FALSE(passes(textured, "background_uniform")) << all_messages(textured);
  EXPECT_NE(textured.find("background_uniform")->message.find("not plain"), std::string::npos);
}

TEST_F(IdPhotoCheckTest, ADarkenedHalfFaceFailsEvenLighting) {
  Image photo = compliant_photo();
  cv::Mat rgb = mat_of(photo).clone();
  const cv::Rect left_half(0, 0, rgb.cols / 2, rgb.rows);
  rgb(left_half).convertTo(rgb(left_half), -1, 0.55);
  const IdPhotoVerdict verdict = judge(image_of(rgb));
  EXPECT_FALSE(passes(verdict, "even_lighting")) << all_messages(verdict);
  EXPECT_NE(verdict.find("even_lighting")->message.find("left side"), std::string::npos);
}

TEST_F(IdPhotoCheckTest, ABlurredCopyFailsSharpness) {
  Image photo = compliant_photo();
  cv::Mat blurred;
  cv::GaussianBlur(mat_of(photo), blurred, cv::Size(), 3.5);
  const IdPhotoVerdict verdict = judge(image_of(blurred));
  EXPECT_FALSE(passes(verdict, "sharpness")) << all_messages(verdict);
  EXPECT_TRUE(passes(verdict, "head_height"));
  // The real defocused photo of the test set fails too.
  EXPECT_FALSE(passes(judge(test::test_photo("blurred__insightface_blur.jpg")), "sharpness"));
}

TEST_F(IdPhotoCheckTest, TheWrongShapeOrAFewPixelsFailSize) {
  Image photo = compliant_photo();
  cv::Mat wide;
  cv::resize(mat_of(photo), wide, cv::Size(500, 531));
  EXPECT_FALSE(passes(judge(image_of(wide)), "size"));
  cv::Mat small;
  cv::resize(mat_of(photo), small, cv::Size(206, 265), 0, 0, cv::INTER_AREA);
  const IdPhotoVerdict verdict = judge(image_of(small));
  EXPECT_FALSE(passes(verdict, "size"));
  EXPECT_NE(verdict.find("size")->message.find("413x531"), std::string::npos);
}

TEST_F(IdPhotoCheckTest, AnEmptyImageIsRefused) {
  EXPECT_THROW(judge(Image{}), Error);
}

}  // namespace
}  // namespace doppel

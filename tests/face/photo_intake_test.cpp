// Photo intake gates: every gate trips on a real photo of the test set (or a
// transformation of one), and the clean photos of every person stay accepted.
#include <gtest/gtest.h>

#include <unistd.h>
#include <algorithm>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <bit>
#include <set>

#include "doppel/core/atomic_file.hpp"
#include "doppel/face/photo_intake.hpp"
#include "face_test_support.hpp"

namespace doppel::test {
namespace {

// ---- Transformations of real photos ----

cv::Mat as_mat(Image& image) {
  return cv::Mat(image.height, image.width, CV_8UC3, image.rgb.data());
}

Image from_mat(const cv::Mat& mat) {
  Image image;
  image.width = mat.cols;
  image.height = mat.rows;
  image.rgb.assign(mat.datastart, mat.dataend);
  if (!mat.isContinuous()) {
    image.rgb.clear();
    for (int y = 0; y < mat.rows; ++y)
      image.rgb.insert(image.rgb.end(), mat.ptr(y), mat.ptr(y) + mat.cols * 3);
  }
  return image;
}

Image photo(const std::string& file) {
  return product_analyzer().read(faces_dir() / file);
}

Image blurred(Image image, double sigma) {
  cv::Mat out;
  cv::GaussianBlur(as_mat(image), out, cv::Size(), sigma);
  return from_mat(out);
}

Image brightness_scaled(Image image, double factor) {
  cv::Mat out;
  as_mat(image).convertTo(out, CV_8UC3, factor);  // saturates at 255
  return from_mat(out);
}

Image resized(Image image, double factor) {
  cv::Mat out;
  cv::resize(as_mat(image), out, cv::Size(), factor, factor, cv::INTER_AREA);
  return from_mat(out);
}

// `inset` scaled by `scale` pasted into `base` at (x, y).
Image pasted(Image base, Image inset, double scale, int x, int y) {
  cv::Mat small;
  cv::resize(as_mat(inset), small, cv::Size(), scale, scale, cv::INTER_AREA);
  cv::Mat canvas = as_mat(base).clone();
  small.copyTo(canvas(cv::Rect(x, y, small.cols, small.rows)));
  return from_mat(canvas);
}

Image side_by_side(Image left, Image right) {
  cv::Mat l = as_mat(left), r;
  cv::resize(as_mat(right), r,
             cv::Size(int(right.width * double(left.height) / right.height), left.height));
  cv::Mat canvas;
  cv::hconcat(l, r, canvas);
  return from_mat(canvas);
}

// A flat patch over the mouth and chin, coloured like the cheek next to it
// (what a surgical mask or a hand leaves of the lower face).
Image mouth_covered(Image image) {
  const std::vector<AnalyzedFace> faces = product_analyzer().analyze(image);
  EXPECT_EQ(faces.size(), 1u);
  const auto& p = faces.at(0).detection.landmarks;
  cv::Mat canvas = as_mat(image).clone();
  const cv::Vec3b cheek = canvas.at<cv::Vec3b>(p[29].y, (p[1].x + p[29].x) / 2);
  std::vector<cv::Point> outline;
  for (int i : {2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 29})
    outline.emplace_back(p[i].x, p[i].y);
  cv::fillConvexPoly(canvas, outline, cv::Scalar(cheek[0], cheek[1], cheek[2]));
  return from_mat(canvas);
}

IntakeOptions fast_options() {
  IntakeOptions options;
  options.measure_brisque = false;  // not a gate; keeps the table below quick
  return options;
}

std::string codes_of(const PhotoVerdict& v) {
  std::string out;
  for (const auto& r : v.reasons) out += r.code + (r.rejects ? "" : "(note)") + " ";
  return out;
}

// ---- Each gate ----

struct GateCase {
  std::string description;
  std::function<Image()> make;
  std::string expected_code;
};

TEST(PhotoIntakeGates, EachGateTripsOnARealOrTransformedPhoto) {
  DOPPEL_REQUIRE_PATH(faces_dir() / "labels.csv");
  DOPPEL_REQUIRE_FACE_MODELS();
  const std::vector<GateCase> cases = {
      {"dogs", [] { return photo("noface__dlib_dogs.jpg"); }, "no_face"},
      {"blank white", [] { return photo("noface__faceapi_white.png"); }, "no_face"},
      {"couple", [] { return photo("multi__deepface_couple.jpg"); }, "multiple_faces"},
      {"two photos pasted side by side",
       [] {
         return side_by_side(photo("angelina_jolie__deepface_img10.jpg"),
                             photo("scarlett_johansson__deepface_img50.jpg"));
       },
       "multiple_faces"},
      {"tiny face (synthetic)",
       [] { return photo("scarlett_johansson__synthetic_tiny_img47.jpg"); }, "face_too_small"},
      {"downscaled to 40 %",
       [] { return resized(photo("angelina_jolie__deepface_img10.jpg"), 0.4); }, "face_too_small"},
      {"real defocus", [] { return photo("blurred__insightface_blur.jpg"); }, "blurred"},
      {"synthetic blur", [] { return photo("matt_damon__synthetic_blur_img30.jpg"); }, "blurred"},
      {"gaussian blur sigma 5",
       [] { return blurred(photo("scarlett_johansson__deepface_img8.jpg"), 5); }, "blurred"},
      {"looking down", [] { return photo("pose__insightface_lower_face.jpg"); }, "extreme_pose"},
      {"underexposed (synthetic)",
       [] { return photo("jennifer_aniston__synthetic_dark_img53.jpg"); }, "too_dark"},
      {"brightness x0.25",
       [] { return brightness_scaled(photo("rose_leslie__facerec_img2.jpg"), 0.25); }, "too_dark"},
      {"brightness x2.5",
       [] { return brightness_scaled(photo("jennifer_aniston__deepface_img55.jpg"), 2.5); },
       "overexposed"},
      {"eyes closed", [] { return photo("eyesclosed__insightface_close_eyes.jpg"); },
       "eyes_closed"},
      {"face mask", [] { return photo("masked__insightface_mask2.jpg"); }, "occluded"},
      {"mouth covered by a flat patch",
       [] { return mouth_covered(photo("matt_damon__deepface_img30.jpg")); }, "occluded"},
  };
  PhotoIntake intake(product_analyzer(), fast_options());
  for (const auto& c : cases) {
    SCOPED_TRACE(c.description);
    const PhotoVerdict verdict = intake.examine(c.make(), c.description);
    EXPECT_FALSE(verdict.accepted) << codes_of(verdict);
    EXPECT_TRUE(verdict.has_reason(c.expected_code)) << "got: " << codes_of(verdict);
    for (const auto& reason : verdict.reasons) {
      EXPECT_FALSE(reason.message.empty());
      // Plain words for the person (issue 24): what is wrong and what to do, no measurements;
      // the numbers are in the detail line and, by name, in the figures.
      EXPECT_EQ(reason.message.find_first_of("0123456789"), std::string::npos) << reason.message;
      if (reason.rejects) {
        EXPECT_NE(reason.message.find("Use "), std::string::npos) << reason.message;
      }
      if (reason.code != "no_face" && reason.code != "unreadable") {
        EXPECT_NE(reason.detail.find_first_of("0123456789"), std::string::npos)
            << reason.code << ": " << reason.detail;
        EXPECT_FALSE(reason.figures.empty()) << reason.code;
      }
    }
    if (c.expected_code == "blurred") {
      const auto blurred = std::find_if(verdict.reasons.begin(), verdict.reasons.end(),
                                        [](const auto& r) { return r.code == "blurred"; });
      ASSERT_NE(blurred, verdict.reasons.end());
      EXPECT_EQ(blurred->figures.at("limit"), 200);
      EXPECT_LT(blurred->figures.at("value"), 200);
      EXPECT_NE(blurred->detail.find("at least 200 needed"), std::string::npos) << blurred->detail;
    }
  }
}

TEST(PhotoIntakeGates, SmallBackgroundFaceIsIgnoredWithANote) {
  DOPPEL_REQUIRE_PATH(faces_dir() / "labels.csv");
  DOPPEL_REQUIRE_FACE_MODELS();
  PhotoIntake intake(product_analyzer(), fast_options());
  // Jennifer Aniston's face is 772 px wide; a 130 px face in the corner is a bystander.
  const Image image = pasted(photo("jennifer_aniston__deepface_img3.jpg"),
                             photo("scarlett_johansson__deepface_img50.jpg"), 0.72, 20, 20);
  const PhotoVerdict verdict = intake.examine(image, "bystander");
  EXPECT_EQ(verdict.faces, 2);
  EXPECT_TRUE(verdict.accepted) << codes_of(verdict);
  EXPECT_TRUE(verdict.has_reason("extra_faces")) << codes_of(verdict);
  ASSERT_TRUE(verdict.face.has_value());
  EXPECT_GT(verdict.face->detection.box.width(), 600);
}

TEST(PhotoIntakeGates, UnreadableFileGivesAVerdictNotAnException) {
  DOPPEL_REQUIRE_PATH(faces_dir() / "labels.csv");
  DOPPEL_REQUIRE_FACE_MODELS();
  const std::string bytes = read_file(faces_dir() / "matt_damon__deepface_img29.jpg");
  const auto path = std::filesystem::temp_directory_path() /
                    ("doppel_truncated_" + std::to_string(::getpid()) + ".jpg");
  write_file_atomically(path, bytes.substr(0, 600));
  PhotoIntake intake(product_analyzer(), fast_options());
  const PhotoVerdict verdict = intake.examine_file(path);
  std::filesystem::remove(path);
  EXPECT_FALSE(verdict.accepted);
  ASSERT_TRUE(verdict.has_reason("unreadable")) << codes_of(verdict);
  EXPECT_NE(verdict.reasons[0].message.find(path.string()), std::string::npos);
}

// ---- Set gates ----

TEST(PhotoIntakeSetGates, DuplicatesAreFlaggedKeepingTheBetterCopy) {
  DOPPEL_REQUIRE_PATH(faces_dir() / "labels.csv");
  DOPPEL_REQUIRE_FACE_MODELS();
  PhotoIntake intake(product_analyzer(), fast_options());
  const Image original = photo("scarlett_johansson__deepface_img8.jpg");
  // A re-encoded, slightly smaller copy of the same shot.
  Image copy = original;
  std::vector<uint8_t> jpeg;
  cv::Mat bgr;
  cv::cvtColor(as_mat(copy), bgr, cv::COLOR_RGB2BGR);
  cv::imencode(".jpg", bgr, jpeg, {cv::IMWRITE_JPEG_QUALITY, 70});
  copy = resized(decode_image(std::string(jpeg.begin(), jpeg.end())), 0.8);

  std::vector<PhotoVerdict> verdicts;
  verdicts.push_back(intake.examine(copy, "copy.jpg"));
  verdicts.push_back(intake.examine(original, "original.jpg"));
  verdicts.push_back(intake.examine(original, "same-file.jpg"));
  verdicts.push_back(intake.examine(photo("scarlett_johansson__deepface_img49.jpg"), "other.jpg"));
  verdicts.push_back(intake.examine(photo("barack_obama__facerec_obama2.jpg"), "obama2.jpg"));
  verdicts.push_back(intake.examine(photo("barack_obama__facerec_32bit.png"), "obama-rgba.png"));
  intake.apply_set_gates(verdicts);
  EXPECT_TRUE(verdicts[0].has_reason("duplicate")) << codes_of(verdicts[0]);  // smaller copy
  EXPECT_FALSE(verdicts[1].has_reason("duplicate")) << codes_of(verdicts[1]);
  EXPECT_TRUE(verdicts[2].has_reason("duplicate")) << codes_of(verdicts[2]);  // exact
  EXPECT_NE(verdicts[2].reasons.back().message.find("original.jpg"), std::string::npos);
  EXPECT_FALSE(verdicts[3].has_reason("duplicate")) << codes_of(verdicts[3]);
  // Same photo as PNG and JPEG: exactly one of the two is flagged.
  EXPECT_NE(verdicts[4].has_reason("duplicate"), verdicts[5].has_reason("duplicate"));
}

TEST(PhotoIntakeSetGates, AStrangerInTheSetIsFlagged) {
  DOPPEL_REQUIRE_PATH(faces_dir() / "labels.csv");
  DOPPEL_REQUIRE_FACE_MODELS();
  PhotoIntake intake(product_analyzer(), fast_options());
  std::vector<std::filesystem::path> files;
  for (const char* f : {"matt_damon__deepface_img29.jpg", "matt_damon__deepface_img30.jpg",
                        "matt_damon__deepface_img31.jpg", "matt_damon__deepface_img33.jpg",
                        "jeff_bezos__deepface_img20.jpg"})
    files.push_back(faces_dir() / f);
  const std::vector<PhotoVerdict> verdicts = intake.examine_set(files);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_TRUE(verdicts[i].accepted) << verdicts[i].label << ": " << codes_of(verdicts[i]);
  }
  EXPECT_TRUE(verdicts[4].has_reason("different_person")) << codes_of(verdicts[4]);
  EXPECT_FALSE(verdicts[4].accepted);

  // Three photos of one man and two strangers: the majority stays accepted.
  std::vector<PhotoVerdict> mixed = {
      verdicts[0], verdicts[1], verdicts[2], verdicts[4],
      intake.examine_file(faces_dir() / "rose_leslie__facerec_img1.jpg")};
  for (auto& v : mixed) {
    v.reasons.clear();
    v.accepted = true;
  }
  intake.apply_set_gates(mixed);
  for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(mixed[i].accepted) << codes_of(mixed[i]);
  EXPECT_TRUE(mixed[3].has_reason("different_person")) << codes_of(mixed[3]);
  EXPECT_TRUE(mixed[4].has_reason("different_person")) << codes_of(mixed[4]);

  // Two photos of different people: a note on both, nobody is "the" stranger.
  std::vector<PhotoVerdict> pair = {verdicts[0], verdicts[4]};
  pair[0].reasons.clear();
  pair[1].reasons.clear();
  intake.apply_set_gates(pair);
  for (const auto& v : pair) {
    ASSERT_TRUE(v.has_reason("different_person")) << codes_of(v);
    EXPECT_FALSE(v.reasons.back().rejects);
  }
}

// ---- No false rejections ----

// The clean photos of every labelled person (labels.csv without derived or
// duplicate images), examined as one set per person. Only the rejections
// listed here are expected, each for a true reason.
TEST(PhotoIntakeSetGates, CleanPhotosOfEachPersonStayAccepted) {
  DOPPEL_REQUIRE_PATH(faces_dir() / "labels.csv");
  DOPPEL_REQUIRE_FACE_MODELS();
  const std::map<std::string, std::string> expected_rejections = {
      {"human_vlado__human_person-vlado1.jpg", "face_too_small"},  // 88 px face
      {"human_vlado__human_person-vlado5.jpg", "face_too_small"},  // 87 px face
      // Not marked in labels.csv, but a downscaled copy of obama.jpg (distance 0.06).
      {"barack_obama__facerec_obama_small.jpg", "duplicate"},
  };
  std::map<std::string, std::vector<std::string>> by_person;
  for (const auto& label : clean_single_identity_photos())
    by_person[label.identity].push_back(label.file);

  std::vector<std::string> files;
  for (const auto& [person, list] : by_person) files.insert(files.end(), list.begin(), list.end());
  // The full product intake (BRISQUE included), two workers.
  std::vector<PhotoVerdict> verdicts(files.size());
  std::atomic<size_t> cursor{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < 2; ++w)
    workers.emplace_back([&] {
      FaceAnalyzer analyzer = product_analyzer();
      PhotoIntake intake(analyzer);
      for (size_t i = cursor.fetch_add(1); i < files.size(); i = cursor.fetch_add(1))
        verdicts[i] = intake.examine_file(faces_dir() / files[i]);
    });
  for (auto& worker : workers) worker.join();

  size_t next = 0, accepted = 0, sets = 0;
  int min_hash_bits = 64;
  double min_duplicate_distance = 10;
  for (const auto& [person, list] : by_person) {
    std::vector<PhotoVerdict> set(verdicts.begin() + long(next),
                                  verdicts.begin() + long(next + list.size()));
    next += list.size();
    PhotoIntake(product_analyzer(), fast_options()).apply_set_gates(set);
    ++sets;
    for (size_t a = 0; a < set.size(); ++a) {
      SCOPED_TRACE(set[a].label);
      ASSERT_TRUE(set[a].face.has_value()) << codes_of(set[a]);
      const auto expected = expected_rejections.find(set[a].label);
      if (expected == expected_rejections.end()) {
        EXPECT_TRUE(set[a].accepted) << codes_of(set[a]);
        accepted += set[a].accepted;
      } else {
        EXPECT_FALSE(set[a].accepted);
        EXPECT_TRUE(set[a].has_reason(expected->second)) << codes_of(set[a]);
      }
      // Calibration margin of the near-duplicate gate among distinct shots.
      for (size_t b = a + 1; b < set.size(); ++b) {
        if (expected_rejections.count(set[a].label) || expected_rejections.count(set[b].label))
          continue;
        min_hash_bits = std::min(min_hash_bits, std::popcount(set[a].crop_hash ^ set[b].crop_hash));
        min_duplicate_distance =
            std::min(min_duplicate_distance,
                     descriptor_distance(set[a].face->descriptor, set[b].face->descriptor));
      }
    }
  }
  std::cout << "[ intake   ] " << files.size() << " clean photos of " << sets
            << " people: " << accepted << " accepted; closest distinct shots: " << min_hash_bits
            << " hash bits, descriptor distance " << min_duplicate_distance << "\n";
}

}  // namespace
}  // namespace doppel::test

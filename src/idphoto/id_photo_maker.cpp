#include "doppel/idphoto/id_photo_maker.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <opencv2/imgproc.hpp>

#include "doppel/core/error.hpp"
#include "idphoto/face_geometry.hpp"

namespace doppel {
namespace {

cv::Mat as_mat(const Image& image) {
  return cv::Mat(image.height, image.width, CV_8UC3, const_cast<uint8_t*>(image.rgb.data()));
}

Image to_image(const cv::Mat& rgb) {
  Image image;
  image.width = rgb.cols;
  image.height = rgb.rows;
  const cv::Mat continuous = rgb.isContinuous() ? rgb : rgb.clone();
  image.rgb.assign(continuous.datastart, continuous.dataend);
  return image;
}

std::string fixed(double value, int digits = 1) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", digits, value);
  return text;
}

// Source pixel -> finished photo: rotate about the eyes so they are level, scale, move.
cv::Matx23d placement(const FaceGeometry& g, double scale, cv::Point2d eyes_to) {
  const double angle = g.roll_degrees * CV_PI / 180;
  const double c = std::cos(angle) * scale, s = std::sin(angle) * scale;
  // [c s; -s c] turns the eye line level (rotation by -roll), then translate eyes_to.
  return {c,  s, eyes_to.x - (c * g.eye_mid.x + s * g.eye_mid.y),
          -s, c, eyes_to.y - (-s * g.eye_mid.x + c * g.eye_mid.y)};
}

FaceDetection transform_face(const FaceDetection& face, const cv::Matx23d& m) {
  FaceDetection out = face;
  for (auto& p : out.landmarks) {
    const cv::Vec3d v(p.x, p.y, 1);
    const cv::Vec2d q = m * v;
    p.x = int(std::lround(q[0]));
    p.y = int(std::lround(q[1]));
  }
  return out;
}

// Where the finished photo puts the eyes, given the head's height above the eyes in the
// output (crown_above_eyes px): inside the eye-line range, and inside the top-margin range
// when the spec has one; the middle of what both allow.
double eye_line_row(const IdPhotoSpec& spec, double crown_above_eyes) {
  const double ppmm = spec.pixels_per_mm();
  double low = spec.height_px - spec.eye_line_mm.max * ppmm;  // rows from the top
  double high = spec.height_px - spec.eye_line_mm.min * ppmm;
  // The crown must stay inside the photo with some air: at least 2 % of the height.
  low = std::max(low, crown_above_eyes + 0.02 * spec.height_px);
  if (spec.top_margin_mm) {
    low = std::max(low, spec.top_margin_mm->min * ppmm + crown_above_eyes);
    high = std::min(high, spec.top_margin_mm->max * ppmm + crown_above_eyes);
  }
  if (low > high) return spec.height_px - spec.eye_line_mm.middle() * ppmm;
  return (low + high) / 2;
}

// The background colour bleeds into semi-transparent hair; take the colour of each edge
// pixel from the person's nearby opaque pixels instead before blending.
cv::Mat composite(const cv::Mat& rgb, const cv::Mat& alpha, const cv::Vec3b& colour,
                  double radius) {
  cv::Mat image;
  rgb.convertTo(image, CV_32FC3);
  cv::Mat solid = alpha.clone();
  cv::threshold(solid, solid, 0.9, 1.0, cv::THRESH_TOZERO);
  cv::Mat solid3;
  cv::merge(std::vector<cv::Mat>{solid, solid, solid}, solid3);
  cv::Mat weighted = image.mul(solid3), weight;
  const cv::Size kernel(2 * int(radius) + 1, 2 * int(radius) + 1);
  cv::blur(weighted, weighted, kernel);
  cv::blur(solid, weight, kernel);
  cv::Mat out(rgb.size(), CV_8UC3);
  for (int y = 0; y < rgb.rows; ++y)
    for (int x = 0; x < rgb.cols; ++x) {
      const float a = alpha.at<float>(y, x);
      cv::Vec3f person = image.at<cv::Vec3f>(y, x);
      if (a < 0.9f && weight.at<float>(y, x) > 1e-3f)
        person = weighted.at<cv::Vec3f>(y, x) / weight.at<float>(y, x);
      cv::Vec3b& o = out.at<cv::Vec3b>(y, x);
      for (int c = 0; c < 3; ++c)
        o[c] = cv::saturate_cast<uint8_t>(a * person[c] + (1 - a) * colour[c]);
    }
  return out;
}

}  // namespace

IdPhotoResult make_id_photo(FaceDetector& detector, const Image& photo, const IdPhotoSpec& spec,
                            const IdPhotoMakeOptions& options) {
  if (photo.width <= 0 || photo.height <= 0 ||
      photo.rgb.size() != size_t(photo.width) * photo.height * 3)
    throw Error(ErrorCode::kInvalidArgument, "cannot make an ID photo from an empty image");
  const IdPhotoColour& colour = choose_background(spec, options.background);
  IdPhotoResult result;
  result.background = colour.name;
  const std::vector<FaceDetection> faces = detect_id_photo_faces(detector, photo);
  if (faces.size() != 1) {
    result.verdict = check_id_photo_face(photo, spec, faces, options.limits, nullptr);
    return result;
  }
  const FaceDetection& face = faces.front();
  const FaceGeometry g = face_geometry(face);

  // The matte of the region the finished photo can come from (cheaper and finer than
  // the whole photo): a generous box around the head and shoulders.
  const double reach = 2.6 * g.eye_to_chin;
  const cv::Rect region =
      cv::Rect(cvFloor(g.eye_mid.x - 2.2 * reach), cvFloor(g.eye_mid.y - 1.4 * reach),
               cvCeil(4.4 * reach), cvCeil(3.4 * reach)) &
      cv::Rect(0, 0, photo.width, photo.height);
  const Image part = to_image(as_mat(photo)(region).clone());
  FaceDetection face_in_part = face;
  for (auto& p : face_in_part.landmarks) p.x -= region.x, p.y -= region.y;
  const PersonMatte part_matte = estimate_person_matte(part, face_in_part, options.matte);
  const FaceGeometry part_geometry = face_geometry(face_in_part);
  // The top of the head from the matte where it is clear; else about as far above the eyes
  // as the chin is below them.
  bool touches_top = false;
  const std::optional<double> crown_row =
      crown_row_from_matte(part_matte, part_geometry, &touches_top);
  const double crown_above_eyes =
      crown_row && !touches_top ? part_geometry.eye_mid.y - *crown_row : 1.0 * g.eye_to_chin;
  const bool head_cut = touches_top && region.y == 0;

  // Scale so the head is the middle of the spec's range; place eyes and centre.
  const double head_px = crown_above_eyes + g.eye_to_chin;
  const double target_head = spec.head_height_mm.middle() * spec.pixels_per_mm();
  const double scale = target_head / head_px;
  result.enlargement = scale;
  const double eye_row = eye_line_row(spec, crown_above_eyes * scale);
  // The face's centre relative to the eyes, measured along the levelled eye line.
  const double centre_shift = (g.centre_x - g.eye_mid.x) * std::cos(g.roll_degrees * CV_PI / 180);
  const cv::Point2d eyes_to(spec.width_px / 2.0 - centre_shift * scale, eye_row);
  const cv::Matx23d to_output = placement(g, scale, eyes_to);
  const cv::Matx23d part_to_output = placement(part_geometry, scale, eyes_to);

  // Shrinking by more than ~1.4x through warpAffine aliases; area-average first.
  cv::Mat source = as_mat(part);
  cv::Mat source_alpha(part_matte.height, part_matte.width, CV_32F,
                       const_cast<float*>(part_matte.alpha.data()));
  cv::Matx23d warp = part_to_output;
  if (scale < 0.7) {
    const double pre = scale / 0.7 * 1.0;
    cv::Mat smaller, smaller_alpha;
    cv::resize(source, smaller, cv::Size(), pre, pre, cv::INTER_AREA);
    cv::resize(source_alpha, smaller_alpha, smaller.size(), 0, 0, cv::INTER_AREA);
    source = smaller;
    source_alpha = smaller_alpha;
    for (int r = 0; r < 2; ++r) warp(r, 0) /= pre, warp(r, 1) /= pre;
  }
  const cv::Size size(spec.width_px, spec.height_px);
  cv::Mat placed, placed_alpha;
  cv::warpAffine(source, placed, cv::Mat(warp), size, cv::INTER_CUBIC, cv::BORDER_REPLICATE);
  cv::warpAffine(source_alpha, placed_alpha, cv::Mat(warp), size, cv::INTER_LINEAR,
                 cv::BORDER_REPLICATE);
  const Image placed_image = to_image(placed);
  const FaceDetection placed_face = transform_face(face, to_output);
  PersonMatte rough;
  rough.width = placed_alpha.cols;
  rough.height = placed_alpha.rows;
  rough.alpha.assign(placed_alpha.begin<float>(), placed_alpha.end<float>());
  const PersonMatte matte = refine_person_matte(placed_image, rough, placed_face);
  cv::Mat alpha(matte.height, matte.width, CV_32F, const_cast<float*>(matte.alpha.data()));
  const cv::Vec3b fill(colour.rgb[0], colour.rgb[1], colour.rgb[2]);
  const cv::Mat finished =
      composite(placed, alpha, fill, std::max(2.0, face_geometry(placed_face).face_width * 0.04));
  result.image = to_image(finished);

  // Judge what was made from its own pixels, as `check` would judge the file: the face is
  // found again and the person separated afresh, so background the matte above kept by
  // mistake shows up here.
  result.verdict = check_id_photo_face(
      result.image, spec, detect_id_photo_faces(detector, result.image), options.limits, nullptr);
  const bool enough_resolution = scale <= options.max_enlargement;
  result.verdict.checks.push_back(
      {"resolution",
       enough_resolution,
       enough_resolution
           ? "the photo has enough pixels for " + spec.id + " (scaled " + fixed(scale, 2) + "x)"
           : "the face in the photo is too small for " + spec.id + ": it would be enlarged " +
                 fixed(scale, 1) + "x (at most " + fixed(options.max_enlargement, 1) +
                 "x); use a photo where the head is at least " +
                 std::to_string(int(std::ceil(target_head / options.max_enlargement))) + " px tall",
       {{"enlargement", scale}}});
  result.verdict.checks.push_back(
      {"source_framing",
       !head_cut,
       head_cut ? "the top of the head is cut off in the photo: take it with space above the head"
                : "the photo shows the whole head",
       {}});
  result.verdict.compliant = std::all_of(result.verdict.checks.begin(), result.verdict.checks.end(),
                                         [](const IdPhotoCheck& c) { return c.pass; });
  return result;
}

}  // namespace doppel

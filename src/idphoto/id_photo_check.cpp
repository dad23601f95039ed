#include "doppel/idphoto/id_photo_check.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <opencv2/imgproc.hpp>

#include "doppel/core/error.hpp"
#include "doppel/face/head_pose.hpp"
#include "idphoto/face_geometry.hpp"

namespace doppel {
namespace {

cv::Mat as_mat(const Image& image) {
  return cv::Mat(image.height, image.width, CV_8UC3, const_cast<uint8_t*>(image.rgb.data()));
}

std::string fixed(double value, int digits = 1) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", digits, value);
  return text;
}

std::string range_text(const MillimetreRange& range) {
  return fixed(range.min) + "-" + fixed(range.max) + " mm";
}

cv::Vec3d srgb_to_lab(const std::array<double, 3>& rgb) {
  cv::Mat pixel(1, 1, CV_32FC3,
                cv::Scalar(float(rgb[0] / 255), float(rgb[1] / 255), float(rgb[2] / 255)));
  cv::Mat lab;
  cv::cvtColor(pixel, lab, cv::COLOR_RGB2Lab);
  const cv::Vec3f v = lab.at<cv::Vec3f>(0, 0);
  return {v[0], v[1], v[2]};
}

double eye_aspect_ratio(const std::vector<cv::Point2d>& p, int first) {
  const double width = cv::norm(p[first] - p[first + 3]);
  if (width <= 0) return 0;
  return (cv::norm(p[first + 1] - p[first + 5]) + cv::norm(p[first + 2] - p[first + 4])) /
         (2 * width);
}

// Mean Lab lightness (0-100) inside a landmark polygon.
double mean_lightness(const cv::Mat& lab, const FaceGeometry& g, std::initializer_list<int> ids) {
  std::vector<cv::Point> polygon;
  for (int i : ids) polygon.emplace_back(cvRound(g.points[i].x), cvRound(g.points[i].y));
  cv::Mat mask(lab.size(), CV_8U, cv::Scalar(0));
  cv::fillPoly(mask, std::vector<std::vector<cv::Point>>{polygon}, cv::Scalar(255));
  if (cv::countNonZero(mask) == 0) return std::numeric_limits<double>::quiet_NaN();
  return cv::mean(lab, mask)[0];
}

// Detail of the face at a fixed scale (64 px between the eyes): the variance of the
// Laplacian inside the face outline, so the number does not depend on the photo's size.
double face_sharpness(const cv::Mat& rgb, const FaceGeometry& g) {
  constexpr double kEyeDistance = 64;
  constexpr int kSide = 192;
  const double scale = kEyeDistance / g.eye_distance;
  cv::Mat to_crop = cv::getRotationMatrix2D(g.eye_mid, g.roll_degrees, scale);
  to_crop.at<double>(0, 2) += kSide / 2.0 - g.eye_mid.x;
  to_crop.at<double>(1, 2) += kSide * 0.4 - g.eye_mid.y;
  cv::Mat source = rgb;
  if (scale < 0.7) {  // shrink with area averaging first: warpAffine alone would alias
    cv::resize(rgb, source, cv::Size(), scale, scale, cv::INTER_AREA);
    to_crop.at<double>(0, 0) /= scale, to_crop.at<double>(0, 1) /= scale;
    to_crop.at<double>(1, 0) /= scale, to_crop.at<double>(1, 1) /= scale;
  }
  cv::Mat crop, grey, laplacian;
  cv::warpAffine(source, crop, to_crop, cv::Size(kSide, kSide), cv::INTER_LINEAR,
                 cv::BORDER_REPLICATE);
  cv::cvtColor(crop, grey, cv::COLOR_RGB2GRAY);
  cv::Laplacian(grey, laplacian, CV_64F);
  // The inner face: brows, eyes, nose, mouth (jaw edges and hair would add background).
  cv::Mat full_to_crop =
      cv::getRotationMatrix2D(g.eye_mid, g.roll_degrees, kEyeDistance / g.eye_distance);
  full_to_crop.at<double>(0, 2) += kSide / 2.0 - g.eye_mid.x;
  full_to_crop.at<double>(1, 2) += kSide * 0.4 - g.eye_mid.y;
  std::vector<cv::Point> inner;
  for (int i = 17; i < 68; ++i) {
    const cv::Point2d& p = g.points[i];
    inner.emplace_back(
        cvRound(full_to_crop.at<double>(0, 0) * p.x + full_to_crop.at<double>(0, 1) * p.y +
                full_to_crop.at<double>(0, 2)),
        cvRound(full_to_crop.at<double>(1, 0) * p.x + full_to_crop.at<double>(1, 1) * p.y +
                full_to_crop.at<double>(1, 2)));
  }
  std::vector<cv::Point> hull;
  cv::convexHull(inner, hull);
  cv::Mat mask(crop.size(), CV_8U, cv::Scalar(0));
  cv::fillConvexPoly(mask, hull, cv::Scalar(255));
  cv::Scalar mean, deviation;
  cv::meanStdDev(laplacian, mean, deviation, mask);
  return deviation[0] * deviation[0];
}

struct BackgroundMeasures {
  double fraction = 0;
  std::array<double, 3> rgb{};
  double spread = 0, unevenness = 0;
};

// The background: pixels the matte gives to nobody, kept a margin away from the person
// so hair edges and shadows on the shoulders do not count.
BackgroundMeasures measure_background(const cv::Mat& rgb, const PersonMatte& matte) {
  cv::Mat alpha(matte.height, matte.width, CV_32F, const_cast<float*>(matte.alpha.data()));
  cv::Mat person = alpha > 0.05f;
  const int margin = std::max(1, int(std::lround(0.02 * std::max(rgb.cols, rgb.rows))));
  cv::dilate(
      person, person,
      cv::getStructuringElement(cv::MORPH_ELLIPSE, cv::Size(2 * margin + 1, 2 * margin + 1)));
  cv::Mat background = person == 0;
  BackgroundMeasures m;
  const int count = cv::countNonZero(background);
  m.fraction = double(count) / (double(rgb.cols) * rgb.rows);
  if (count == 0) return m;
  cv::Mat linear, lab;
  rgb.convertTo(linear, CV_32FC3, 1.0 / 255);
  cv::cvtColor(linear, lab, cv::COLOR_RGB2Lab);
  const cv::Scalar mean_rgb = cv::mean(rgb, background);
  m.rgb = {mean_rgb[0], mean_rgb[1], mean_rgb[2]};
  cv::Scalar mean_lab, deviation;
  cv::meanStdDev(lab, mean_lab, deviation, background);
  m.spread = std::sqrt(deviation[0] * deviation[0] + deviation[1] * deviation[1] +
                       deviation[2] * deviation[2]);
  // Shadows and gradients: the mean colour of each of 4x4 regions against the whole.
  constexpr int kGrid = 4;
  // Only regions that are mostly background: a sliver beside the hair says little.
  const int minimum = std::max(16, rgb.cols * rgb.rows / (kGrid * kGrid) / 3);
  for (int gy = 0; gy < kGrid; ++gy)
    for (int gx = 0; gx < kGrid; ++gx) {
      const cv::Rect cell(gx * rgb.cols / kGrid, gy * rgb.rows / kGrid,
                          (gx + 1) * rgb.cols / kGrid - gx * rgb.cols / kGrid,
                          (gy + 1) * rgb.rows / kGrid - gy * rgb.rows / kGrid);
      if (cv::countNonZero(background(cell)) < minimum) continue;
      const cv::Scalar cell_lab = cv::mean(lab(cell), background(cell));
      m.unevenness = std::max(m.unevenness, cv::norm(cell_lab - mean_lab));
    }
  return m;
}

IdPhotoCheck make_check(std::string id, bool pass, std::string message,
                        std::vector<std::pair<std::string, double>> figures = {}) {
  return {std::move(id), pass, std::move(message), std::move(figures)};
}

}  // namespace

double colour_difference(const std::array<double, 3>& rgb_a, const std::array<uint8_t, 3>& rgb_b) {
  return cv::norm(srgb_to_lab(rgb_a) -
                  srgb_to_lab({double(rgb_b[0]), double(rgb_b[1]), double(rgb_b[2])}));
}

std::vector<std::string> IdPhotoVerdict::reasons() const {
  std::vector<std::string> out;
  for (const auto& check : checks)
    if (!check.pass) out.push_back(check.message);
  return out;
}

const IdPhotoCheck* IdPhotoVerdict::find(const std::string& id) const {
  for (const auto& check : checks)
    if (check.id == id) return &check;
  return nullptr;
}

std::vector<FaceDetection> detect_id_photo_faces(FaceDetector& detector, const Image& photo) {
  std::vector<FaceDetection> faces = detector.detect(photo);
  // dlib's detector misses faces under ~80 px; small photos get one look at 2x.
  if (faces.empty() && int64_t(photo.width) * photo.height <= 1'500'000) {
    FaceDetectorOptions upsampled;
    upsampled.upsample = 1;
    faces = detector.detect(photo, upsampled);
  }
  return faces;
}

IdPhotoVerdict check_id_photo(const Image& photo, const IdPhotoSpec& spec, FaceDetector& detector,
                              const IdPhotoLimits& limits, const PersonMatte* matte) {
  if (photo.width <= 0 || photo.height <= 0 ||
      photo.rgb.size() != size_t(photo.width) * photo.height * 3)
    throw Error(ErrorCode::kInvalidArgument, "cannot check an empty or inconsistent image");
  return check_id_photo_face(photo, spec, detect_id_photo_faces(detector, photo), limits, matte);
}

IdPhotoVerdict check_id_photo_face(const Image& photo, const IdPhotoSpec& spec,
                                   const std::vector<FaceDetection>& faces,
                                   const IdPhotoLimits& limits, const PersonMatte* given_matte) {
  if (photo.width <= 0 || photo.height <= 0 ||
      photo.rgb.size() != size_t(photo.width) * photo.height * 3)
    throw Error(ErrorCode::kInvalidArgument, "cannot check an empty or inconsistent image");
  IdPhotoVerdict verdict;
  verdict.spec_id = spec.id;
  IdPhotoMeasures& m = verdict.measures;
  m.faces = int(faces.size());
  auto& checks = verdict.checks;

  // The file's size is judged even without a face.
  const double aspect = double(photo.width) / photo.height;
  const double spec_aspect = double(spec.width_px) / spec.height_px;
  const bool size_ok = std::abs(aspect / spec_aspect - 1) <= 0.01 && photo.width >= spec.width_px &&
                       photo.height >= spec.height_px;
  checks.push_back(make_check(
      "size", size_ok,
      size_ok ? "the photo is " + std::to_string(photo.width) + "x" + std::to_string(photo.height) +
                    " px, the shape of " + spec.id + " (" + std::to_string(spec.width_px) + "x" +
                    std::to_string(spec.height_px) + " px)"
              : "the photo is " + std::to_string(photo.width) + "x" + std::to_string(photo.height) +
                    " px; " + spec.id + " needs " + std::to_string(spec.width_px) + "x" +
                    std::to_string(spec.height_px) +
                    " px (or larger in that shape): `doppel idphoto make` crops and scales it",
      {{"width_px", photo.width}, {"height_px", photo.height}}));

  if (faces.size() != 1) {
    checks.insert(checks.begin(),
                  make_check("one_face", false,
                             faces.empty() ? "no face was found: the face must be clearly visible, "
                                             "facing the camera"
                                           : std::to_string(faces.size()) +
                                                 " faces were found: an ID photo shows one person "
                                                 "alone",
                             {{"faces", double(faces.size())}}));
    verdict.compliant = false;
    return verdict;
  }
  checks.insert(checks.begin(), make_check("one_face", true, "one face", {{"faces", 1}}));
  m.face = faces.front();
  const FaceGeometry g = face_geometry(m.face);
  const cv::Mat rgb = as_mat(photo);
  const PersonMatte matte = given_matte ? *given_matte : estimate_person_matte(photo, m.face);
  if (matte.width != photo.width || matte.height != photo.height)
    throw Error(ErrorCode::kInvalidArgument, "the person matte and the photo differ in size");

  // Pose: yaw and pitch from the landmarks' 3D fit, roll from the eye line itself.
  const HeadPose pose = estimate_head_pose(m.face, photo.width, photo.height);
  m.yaw_degrees = pose.yaw_degrees;
  m.pitch_degrees = pose.pitch_degrees;
  m.roll_degrees = g.roll_degrees;
  {
    std::vector<std::string> problems;
    if (std::abs(m.yaw_degrees) > limits.max_yaw_degrees)
      problems.push_back("the head is turned " + fixed(std::abs(m.yaw_degrees), 0) +
                         " degrees to the side (at most " + fixed(limits.max_yaw_degrees, 0) + ")");
    if (std::abs(m.pitch_degrees) > limits.max_pitch_degrees)
      problems.push_back("the head is tilted " + fixed(std::abs(m.pitch_degrees), 0) + " degrees " +
                         (m.pitch_degrees > 0 ? "down" : "up") + " (at most " +
                         fixed(limits.max_pitch_degrees, 0) + ")");
    if (std::abs(m.roll_degrees) > limits.max_roll_degrees)
      problems.push_back("the head leans " + fixed(std::abs(m.roll_degrees), 0) +
                         " degrees to one shoulder (at most " + fixed(limits.max_roll_degrees, 0) +
                         "; `make` levels the eyes)");
    std::string message = "facing the camera squarely";
    if (!problems.empty()) {
      message = problems.front();
      for (size_t i = 1; i < problems.size(); ++i) message += "; " + problems[i];
      message += ": look straight into the camera";
    }
    checks.push_back(make_check("frontal", problems.empty(), message,
                                {{"yaw_degrees", m.yaw_degrees},
                                 {"pitch_degrees", m.pitch_degrees},
                                 {"roll_degrees", m.roll_degrees}}));
  }

  m.eye_openness = std::min(eye_aspect_ratio(g.points, landmark::kRightEyeFirst),
                            eye_aspect_ratio(g.points, landmark::kLeftEyeFirst));
  const bool eyes_open = m.eye_openness >= limits.min_eye_openness;
  checks.push_back(make_check(
      "eyes_open", eyes_open,
      eyes_open ? "both eyes open"
                : "the eyes look closed or half closed (openness " + fixed(m.eye_openness, 2) +
                      ", needs " + fixed(limits.min_eye_openness, 2) + "): keep both eyes open",
      {{"eye_openness", m.eye_openness}}));

  // Head height and eye line, in millimetres of the printed photo.
  const double mm_per_px = spec.height_mm / photo.height;
  const std::optional<double> crown_matte = crown_row_from_matte(matte, g);
  m.crown_from_matte = crown_matte.has_value();
  // Without the matte: the crown sits about as far above the eyes as the chin below them.
  const double crown = crown_matte ? *crown_matte : g.eye_mid.y - 1.0 * g.eye_to_chin;
  m.head_height_mm = (g.chin.y - crown) * mm_per_px;
  m.eye_line_mm = (photo.height - g.eye_mid.y) * mm_per_px;
  m.top_margin_mm = crown * mm_per_px;
  const bool head_cut = crown <= 0.5;
  {
    const bool pass = spec.head_height_mm.contains(m.head_height_mm) && !head_cut;
    std::string message = "the head is " + fixed(m.head_height_mm) + " mm from chin to crown";
    if (head_cut)
      message = "the top of the head is cut off by the photo's top edge";
    else if (!pass)
      message += "; " + spec.id + " needs " + range_text(spec.head_height_mm) + " (" +
                 (m.head_height_mm < spec.head_height_mm.min ? "too small" : "too large") +
                 "): `doppel idphoto make` crops it to size";
    else
      message += " (" + range_text(spec.head_height_mm) + ")";
    if (!m.crown_from_matte) message += " [top of the head estimated from the face]";
    checks.push_back(make_check("head_height", pass, message,
                                {{"head_height_mm", m.head_height_mm},
                                 {"min_mm", spec.head_height_mm.min},
                                 {"max_mm", spec.head_height_mm.max}}));
  }
  {
    const bool pass = spec.eye_line_mm.contains(m.eye_line_mm);
    std::string message = "the eyes are " + fixed(m.eye_line_mm) + " mm above the bottom edge";
    if (!pass)
      message += "; " + spec.id + " needs " + range_text(spec.eye_line_mm) + " (" +
                 (m.eye_line_mm < spec.eye_line_mm.min ? "too low" : "too high") +
                 "): `doppel idphoto make` places them";
    else
      message += " (" + range_text(spec.eye_line_mm) + ")";
    checks.push_back(make_check("eye_line", pass, message,
                                {{"eye_line_mm", m.eye_line_mm},
                                 {"min_mm", spec.eye_line_mm.min},
                                 {"max_mm", spec.eye_line_mm.max}}));
  }
  if (spec.top_margin_mm) {
    const bool pass = spec.top_margin_mm->contains(m.top_margin_mm) && !head_cut;
    std::string message =
        "the top of the head is " + fixed(m.top_margin_mm) + " mm below the top edge";
    message += pass ? " (" + range_text(*spec.top_margin_mm) + ")"
                    : "; " + spec.id + " needs " + range_text(*spec.top_margin_mm);
    checks.push_back(make_check("head_top", pass, message,
                                {{"top_margin_mm", m.top_margin_mm},
                                 {"min_mm", spec.top_margin_mm->min},
                                 {"max_mm", spec.top_margin_mm->max}}));
  }

  m.centre_offset = (g.centre_x - photo.width / 2.0) / photo.width;
  {
    const bool pass = std::abs(m.centre_offset) <= limits.max_centre_offset;
    const std::string side = m.centre_offset > 0 ? "right" : "left";
    checks.push_back(make_check("centred", pass,
                                pass ? "the face is centred"
                                     : "the face is " + fixed(std::abs(m.centre_offset) * 100, 0) +
                                           " % of the width " + "to the " + side +
                                           " of the centre (at most " +
                                           fixed(limits.max_centre_offset * 100, 0) + " %)",
                                {{"centre_offset", m.centre_offset}}));
  }

  const BackgroundMeasures background = measure_background(rgb, matte);
  m.background_fraction = background.fraction;
  m.background_rgb = background.rgb;
  m.background_spread = background.spread;
  m.background_unevenness = background.unevenness;
  const bool enough_background = background.fraction >= limits.min_background_fraction;
  {
    const bool pass = enough_background && background.spread <= limits.max_background_spread &&
                      background.unevenness <= limits.max_background_unevenness;
    std::string message = "the background is plain and evenly lit";
    if (!enough_background)
      message = "too little background shows around the person to judge it (" +
                fixed(background.fraction * 100, 1) + " % of the photo)";
    else if (background.spread > limits.max_background_spread)
      message = "the background is not plain: its colour varies by " + fixed(background.spread) +
                " (at most " + fixed(limits.max_background_spread) +
                "): objects, patterns or texture behind the person";
    else if (!pass)
      message = "the background is unevenly lit: one part differs by " +
                fixed(background.unevenness) + " from the rest (at most " +
                fixed(limits.max_background_unevenness) + "): shadows or a gradient";
    checks.push_back(make_check("background_uniform", pass, message,
                                {{"spread", background.spread},
                                 {"unevenness", background.unevenness},
                                 {"fraction", background.fraction}}));
  }
  {
    double best = std::numeric_limits<double>::infinity();
    const IdPhotoColour* nearest = nullptr;
    for (const auto& colour : spec.backgrounds) {
      const double distance = colour_difference(background.rgb, colour.rgb);
      if (distance - colour.tolerance < best - (nearest ? nearest->tolerance : 0))
        best = distance, nearest = &colour;
    }
    m.nearest_colour = nearest->name;
    m.nearest_colour_distance = best;
    const bool pass = enough_background && best <= nearest->tolerance;
    std::string allowed;
    for (const auto& colour : spec.backgrounds)
      allowed += (allowed.empty() ? "" : ", ") + colour.name;
    char hex[8];
    std::snprintf(hex, sizeof hex, "#%02X%02X%02X", int(std::lround(background.rgb[0])),
                  int(std::lround(background.rgb[1])), int(std::lround(background.rgb[2])));
    std::string message = pass ? "the background is " + nearest->name + " (" + hex + ")"
                               : "the background is " + std::string(hex) + ", " + fixed(best) +
                                     " from " + nearest->name + " (at most " +
                                     fixed(nearest->tolerance) + "); " + spec.id + " allows " +
                                     allowed + ": `doppel idphoto make` replaces it";
    if (!enough_background) message = "the background's colour cannot be judged: too little shows";
    checks.push_back(make_check("background_colour", pass, message,
                                {{"red", background.rgb[0]},
                                 {"green", background.rgb[1]},
                                 {"blue", background.rgb[2]},
                                 {"difference", best}}));
  }

  {
    cv::Mat linear, lab;
    rgb.convertTo(linear, CV_32FC3, 1.0 / 255);
    cv::cvtColor(linear, lab, cv::COLOR_RGB2Lab);
    // Cheeks between the jaw line, the lower eyelid, the nose and the mouth corner.
    const double left = mean_lightness(lab, g, {1, 2, 3, 4, 48, 31, 40, 41, 36});
    const double right = mean_lightness(lab, g, {15, 14, 13, 12, 54, 35, 47, 46, 45});
    m.lighting_difference = left - right;
    const bool pass = std::isfinite(m.lighting_difference) &&
                      std::abs(m.lighting_difference) <= limits.max_lighting_difference;
    checks.push_back(make_check(
        "even_lighting", pass,
        pass ? "the face is evenly lit"
             : std::string("the face is lit unevenly: its ") +
                   (m.lighting_difference < 0 ? "left" : "right") + " side (in the photo) is " +
                   fixed(std::abs(m.lighting_difference), 0) + " lightness units darker (at most " +
                   fixed(limits.max_lighting_difference, 0) +
                   "): light the face from the front, without side shadows",
        {{"lightness_difference", m.lighting_difference}}));
  }

  m.sharpness = face_sharpness(rgb, g);
  {
    const bool pass = m.sharpness >= limits.min_sharpness;
    checks.push_back(
        make_check("sharpness", pass,
                   pass ? "the face is sharp"
                        : "the face is blurred or too low in resolution (detail " +
                              fixed(m.sharpness, 0) + ", needs " + fixed(limits.min_sharpness, 0) +
                              "): hold the camera still, focus on the eyes, use a larger photo",
                   {{"sharpness", m.sharpness}}));
  }

  verdict.compliant =
      std::all_of(checks.begin(), checks.end(), [](const auto& c) { return c.pass; });
  return verdict;
}

nlohmann::json id_photo_verdict_json(const IdPhotoVerdict& verdict) {
  nlohmann::json checks = nlohmann::json::array();
  for (const auto& check : verdict.checks) {
    nlohmann::json figures = nlohmann::json::object();
    for (const auto& [name, value] : check.figures)
      figures[name] = std::isfinite(value) ? nlohmann::json(value) : nlohmann::json(nullptr);
    checks.push_back(
        {{"id", check.id}, {"pass", check.pass}, {"message", check.message}, {"figures", figures}});
  }
  nlohmann::json out = {{"spec", verdict.spec_id},
                        {"compliant", verdict.compliant},
                        {"checks", checks},
                        {"reasons", verdict.reasons()}};
  if (verdict.measures.faces == 1) {
    const FaceBox& box = verdict.measures.face.box;
    out["face"] = {
        {"left", box.left}, {"top", box.top}, {"right", box.right}, {"bottom", box.bottom}};
  }
  return out;
}

}  // namespace doppel

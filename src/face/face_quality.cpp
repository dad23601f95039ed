#include "doppel/face/face_quality.hpp"

#include <opencv2/imgproc.hpp>
#include <opencv2/quality/qualitybrisque.hpp>

#include <cmath>

#include "doppel/core/error.hpp"
#include "doppel/face/face_aligner.hpp"

namespace doppel {
namespace {

cv::Mat as_mat(const Image& image) {
  return cv::Mat(image.height, image.width, CV_8UC3, const_cast<uint8_t*>(image.rgb.data()));
}

double distance(const FacePoint& a, const FacePoint& b) {
  return std::hypot(double(a.x - b.x), double(a.y - b.y));
}

// Eye aspect ratio (Soukupova & Cech 2016) of the six points of one eye.
double eye_aspect_ratio(const std::vector<FacePoint>& p, int first) {
  const double width = distance(p[first], p[first + 3]);
  if (width <= 0) return 0;
  return (distance(p[first + 1], p[first + 5]) + distance(p[first + 2], p[first + 4])) /
         (2 * width);
}

// Landmarks of the face in the 150x150 crop's coordinates.
std::vector<cv::Point2f> landmarks_in_chip(const FaceDetection& face) {
  const CropGeometry g = face_crop_geometry(face, 150, 0.25);
  const double c = std::cos(g.angle_rad), s = std::sin(g.angle_rad);
  const double step = (g.right - g.left) / (g.size - 1);
  std::vector<cv::Point2f> points;
  for (const auto& p : face.landmarks) {
    const double dx = p.x - g.center_x, dy = p.y - g.center_y;
    // Undo the rotation about the centre, then the scaling of the rectangle.
    const double x = g.center_x + c * dx + s * dy, y = g.center_y - s * dx + c * dy;
    points.emplace_back(float((x - g.left) / step), float((y - g.top) / step));
  }
  return points;
}

cv::Mat polygon_mask(cv::Size size, const std::vector<cv::Point2f>& points,
                     std::initializer_list<int> indices) {
  std::vector<cv::Point> polygon;
  for (int i : indices) polygon.emplace_back(cvRound(points[i].x), cvRound(points[i].y));
  cv::Mat mask = cv::Mat::zeros(size, CV_8U);
  std::vector<cv::Point> hull;
  cv::convexHull(polygon, hull);
  cv::fillConvexPoly(mask, hull, 255);
  return mask;
}

}  // namespace

FaceQualityMeasures measure_face_quality(const Image& photo, const AnalyzedFace& face) {
  const FaceDetection& d = face.detection;
  if (d.landmarks.size() != size_t(landmark::kCount) || face.chip.width != 150 ||
      face.chip.height != 150)
    throw Error(ErrorCode::kInvalidArgument, "face quality needs landmarks and a 150x150 crop");
  FaceQualityMeasures m;
  m.face_width_px = d.box.width();
  const auto eye_centre = [&](int first) {
    double x = 0, y = 0;
    for (int i = first; i < first + 6; ++i) x += d.landmarks[i].x, y += d.landmarks[i].y;
    return cv::Point2d(x / 6, y / 6);
  };
  m.eye_distance_px =
      cv::norm(eye_centre(landmark::kRightEyeFirst) - eye_centre(landmark::kLeftEyeFirst));
  m.eye_openness = (eye_aspect_ratio(d.landmarks, landmark::kRightEyeFirst) +
                    eye_aspect_ratio(d.landmarks, landmark::kLeftEyeFirst)) /
                   2;
  m.pose = estimate_head_pose(d, photo.width, photo.height);

  // Face region of the aligned crop: the hull of jaw, brows and nose.
  const cv::Mat chip = as_mat(face.chip);
  const std::vector<cv::Point2f> points = landmarks_in_chip(d);
  std::vector<cv::Point> outline;
  for (int i = 0; i < 27; ++i) outline.emplace_back(cvRound(points[i].x), cvRound(points[i].y));
  std::vector<cv::Point> hull;
  cv::convexHull(outline, hull);
  cv::Mat face_mask = cv::Mat::zeros(chip.size(), CV_8U);
  cv::fillConvexPoly(face_mask, hull, 255);
  // Pixels the crop took from outside the photo are black; leave them out.
  cv::Mat gray;
  cv::cvtColor(chip, gray, cv::COLOR_RGB2GRAY);
  cv::Mat inside;
  cv::Mat any_channel;
  cv::reduce(chip.reshape(1, chip.rows * chip.cols), any_channel, 1, cv::REDUCE_MAX);
  inside = any_channel.reshape(1, chip.rows) > 0;
  face_mask &= inside;
  const double face_pixels = std::max(1, cv::countNonZero(face_mask));

  m.brightness = cv::mean(gray, face_mask)[0];
  m.dark_fraction = cv::countNonZero((gray < 40) & face_mask) / face_pixels;
  m.clipped_fraction = cv::countNonZero((gray >= 250) & face_mask) / face_pixels;

  cv::Mat laplacian;
  cv::Laplacian(gray, laplacian, CV_64F, 3);
  cv::Mat eroded;  // keep the hull's own edge out of the detail measure
  cv::erode(face_mask, eroded, cv::Mat(), cv::Point(-1, -1), 2);
  cv::Scalar mean, stddev;
  cv::meanStdDev(laplacian, mean, stddev, eroded);
  m.sharpness = stddev[0] * stddev[0];

  // Mouth occlusion: a visible mouth always has a dark line or opening
  // between the lips; a mask or a hand leaves an even surface there.
  const cv::Mat outer_lips =
      polygon_mask(chip.size(), points, {48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59});
  cv::Mat mouth_area;
  cv::dilate(outer_lips, mouth_area, cv::Mat(), cv::Point(-1, -1), 3);
  mouth_area &= inside;
  std::vector<uint8_t> mouth_luma;
  for (int y = 0; y < gray.rows; ++y)
    for (int x = 0; x < gray.cols; ++x)
      if (mouth_area.at<uint8_t>(y, x)) mouth_luma.push_back(gray.at<uint8_t>(y, x));
  const cv::Mat cheeks = polygon_mask(chip.size(), points, {1, 2, 28, 14, 15, 29}) & inside;
  cv::Scalar cheek_mean, cheek_spread;
  cv::meanStdDev(gray, cheek_mean, cheek_spread, cheeks);
  if (mouth_luma.size() >= 20) {
    const auto tenth = mouth_luma.begin() + mouth_luma.size() / 10;
    const auto middle = mouth_luma.begin() + mouth_luma.size() / 2;
    std::nth_element(mouth_luma.begin(), middle, mouth_luma.end());
    const double median = *middle;
    std::nth_element(mouth_luma.begin(), tenth, mouth_luma.end());
    m.mouth_contrast = (median - *tenth) / std::max(1.0, cheek_spread[0]);
  }
  return m;
}

struct BrisqueScorer::State {
  cv::Ptr<cv::quality::QualityBRISQUE> model;
};

std::filesystem::path BrisqueScorer::default_model_dir() {
  return "/usr/share/opencv4/quality";
}

BrisqueScorer::BrisqueScorer(const std::filesystem::path& model_dir)
    : state_(std::make_unique<State>()) {
  const auto model = model_dir / "brisque_model_live.yml";
  const auto range = model_dir / "brisque_range_live.yml";
  if (!std::filesystem::is_regular_file(model) || !std::filesystem::is_regular_file(range))
    throw Error(ErrorCode::kNotFound, "BRISQUE model not found in " + model_dir.string() +
                                          "; install Debian's opencv-data");
  try {
    state_->model = cv::quality::QualityBRISQUE::create(model.string(), range.string());
  } catch (const cv::Exception& e) {
    throw Error(ErrorCode::kInvalidFile,
                model.string() + ": cannot load BRISQUE model (" + e.err + ")");
  }
}

BrisqueScorer::~BrisqueScorer() = default;
BrisqueScorer::BrisqueScorer(BrisqueScorer&&) noexcept = default;

double BrisqueScorer::score(const Image& image) {
  if (image.width < 16 || image.height < 16)
    throw Error(ErrorCode::kInvalidArgument, "BRISQUE needs an image of at least 16x16 pixels");
  cv::Mat bgr;
  cv::cvtColor(as_mat(image), bgr, cv::COLOR_RGB2BGR);
  return state_->model->compute(bgr)[0];
}

}  // namespace doppel

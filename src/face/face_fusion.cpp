#include "doppel/face/face_fusion.hpp"

#include <opencv2/calib3d.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/photo.hpp>

#include <algorithm>
#include <memory>

#include "doppel/core/error.hpp"

namespace doppel {

namespace {

// Landmarks that place a face (brows, nose, eyes, mouth): the jaw line follows the head's turn
// and the chin's shape, which are the portrait's to keep.
constexpr int kAlignFirst = 17;
// The mask's jaw points are pulled this share of the way to the nose tip, so the clone's edge
// lies on skin, not on the hair or background just outside the jaw.
constexpr double kJawInset = 0.08;

cv::Mat view(const Image& image) {
  return cv::Mat(image.height, image.width, CV_8UC3, const_cast<uint8_t*>(image.rgb.data()));
}

Image image_of(const cv::Mat& mat) {
  Image image;
  image.width = mat.cols;
  image.height = mat.rows;
  image.rgb.assign(mat.data, mat.data + mat.total() * 3);
  return image;
}

void check_image(const Image& image, const char* what) {
  if (image.width <= 0 || image.height <= 0 ||
      image.rgb.size() != size_t(image.width) * image.height * 3)
    throw Error(ErrorCode::kInvalidArgument,
                std::string("face fusion: the ") + what + " is empty or damaged");
}

void check_landmarks(const FaceDetection& face, const char* what) {
  if (face.landmarks.size() != size_t(landmark::kCount))
    throw Error(ErrorCode::kInvalidArgument,
                std::string("face fusion: the ") + what +
                    "'s face has no 68 landmarks; detect it with the face layer's detector");
}

std::vector<cv::Point2f> points_of(const FaceDetection& face, int first, int last) {
  std::vector<cv::Point2f> points;
  for (int i = first; i <= last; ++i)
    points.emplace_back(float(face.landmarks[i].x), float(face.landmarks[i].y));
  return points;
}

// The inner face's outline: the jaw (inset towards the nose) and the eyebrows.
std::vector<cv::Point> inner_face_outline(const std::vector<cv::Point2f>& landmarks) {
  const cv::Point2f nose = landmarks[landmark::kNoseTip];
  std::vector<cv::Point> outline;
  for (int i = landmark::kJawFirst; i <= landmark::kJawLast; ++i) {
    const cv::Point2f point = landmarks[i] + (nose - landmarks[i]) * kJawInset;
    outline.emplace_back(cvRound(point.x), cvRound(point.y));
  }
  for (int i = 17; i <= 26; ++i)
    outline.emplace_back(cvRound(landmarks[i].x), cvRound(landmarks[i].y));
  std::vector<cv::Point> hull;
  cv::convexHull(outline, hull);
  return hull;
}

// Reinhard's colour transfer in Lab: `source`'s pixels under `mask` get the mean and deviation
// of `target`'s pixels under the same mask.
cv::Mat transfer_colour(const cv::Mat& source_rgb, const cv::Mat& target_rgb, const cv::Mat& mask) {
  cv::Mat source_lab, target_lab;
  cv::cvtColor(source_rgb, source_lab, cv::COLOR_RGB2Lab);
  cv::cvtColor(target_rgb, target_lab, cv::COLOR_RGB2Lab);
  source_lab.convertTo(source_lab, CV_32FC3);
  target_lab.convertTo(target_lab, CV_32FC3);
  cv::Scalar source_mean, source_deviation, target_mean, target_deviation;
  cv::meanStdDev(source_lab, source_mean, source_deviation, mask);
  cv::meanStdDev(target_lab, target_mean, target_deviation, mask);
  std::vector<cv::Mat> channels;
  cv::split(source_lab, channels);
  for (int c = 0; c < 3; ++c) {
    const double gain = target_deviation[c] / std::max(source_deviation[c], 1e-3);
    channels[c] = (channels[c] - source_mean[c]) * std::clamp(gain, 0.25, 4.0) + target_mean[c];
  }
  cv::Mat merged, result;
  cv::merge(channels, merged);
  merged.convertTo(merged, CV_8UC3);  // saturates to 0-255
  cv::cvtColor(merged, result, cv::COLOR_Lab2RGB);
  return result;
}

}  // namespace

FaceFusionResult fuse_face(const Image& portrait, const FaceDetection& portrait_face,
                           const Image& identity, const FaceDetection& identity_face,
                           const FaceFusionOptions& options) {
  check_image(portrait, "portrait");
  check_image(identity, "identity photo");
  check_landmarks(portrait_face, "portrait");
  check_landmarks(identity_face, "identity photo");
  if (!(options.strength >= 0 && options.strength <= 1))
    throw Error(ErrorCode::kInvalidArgument,
                "face fusion: the strength must be between 0 and 1 (got " +
                    std::to_string(options.strength) + ")");

  // 1. Align: the similarity transform (rotation, uniform scale, shift) that best carries the
  // photo's inner landmarks onto the portrait's.
  const std::vector<cv::Point2f> from = points_of(identity_face, kAlignFirst, landmark::kCount - 1);
  const std::vector<cv::Point2f> to = points_of(portrait_face, kAlignFirst, landmark::kCount - 1);
  cv::Mat transform = cv::estimateAffinePartial2D(from, to, cv::noArray(), cv::LMEDS);
  if (transform.empty())
    throw Error(ErrorCode::kInvalidArgument,
                "face fusion: the two faces' landmarks could not be aligned");
  const cv::Mat portrait_rgb = view(portrait);
  cv::Mat warped;
  cv::warpAffine(view(identity), warped, transform, portrait_rgb.size(), cv::INTER_LINEAR,
                 cv::BORDER_REFLECT);

  // 2. Mask: the portrait's inner face, within the photo's face as warped there, kept two
  // pixels off the border (Poisson blending needs a frame around the mask).
  const std::vector<cv::Point2f> portrait_points =
      points_of(portrait_face, 0, landmark::kCount - 1);
  std::vector<cv::Point2f> warped_points;
  cv::transform(points_of(identity_face, 0, landmark::kCount - 1), warped_points, transform);
  cv::Mat mask(portrait_rgb.size(), CV_8UC1, cv::Scalar(0));
  cv::Mat warped_mask(portrait_rgb.size(), CV_8UC1, cv::Scalar(0));
  cv::fillConvexPoly(mask, inner_face_outline(portrait_points), cv::Scalar(255));
  cv::fillConvexPoly(warped_mask, inner_face_outline(warped_points), cv::Scalar(255));
  mask &= warped_mask;
  const int frame = 2;
  mask.rowRange(0, std::min(frame, mask.rows)).setTo(0);
  mask.rowRange(std::max(0, mask.rows - frame), mask.rows).setTo(0);
  mask.colRange(0, std::min(frame, mask.cols)).setTo(0);
  mask.colRange(std::max(0, mask.cols - frame), mask.cols).setTo(0);
  FaceFusionResult result;
  const cv::Rect bounds = cv::boundingRect(mask);
  if (bounds.area() == 0 || cv::countNonZero(mask) < 16) {
    result.image = portrait;  // the faces do not overlap enough to clone anything
    result.mask = image_of(cv::Mat(portrait_rgb.size(), CV_8UC3, cv::Scalar(0, 0, 0)));
    return result;
  }

  // 3. Colour: the photo's face takes on the portrait's skin tone and lighting.
  if (options.colour_transfer) warped = transfer_colour(warped, portrait_rgb, mask);

  // 4. Poisson blending: the face's gradients inside, the portrait's colours at the edge.
  cv::Mat cloned;
  const cv::Point centre(bounds.x + bounds.width / 2, bounds.y + bounds.height / 2);
  cv::seamlessClone(warped, portrait_rgb, mask, centre, cloned, cv::NORMAL_CLONE);
  // OpenCV solves over the mask's whole box and rounds the pixels around the mask a level off;
  // only the face itself is taken from the clone.
  cv::Mat face_only = portrait_rgb.clone();
  cloned.copyTo(face_only, mask);
  cloned = face_only;

  // 5. Strength: mix the clone with the portrait's own face.
  cv::Mat fused;
  cv::addWeighted(cloned, options.strength, portrait_rgb, 1.0 - options.strength, 0.0, fused);
  result.image = image_of(fused);
  cv::Mat mask_rgb;
  cv::cvtColor(mask, mask_rgb, cv::COLOR_GRAY2RGB);
  result.mask = image_of(mask_rgb);
  return result;
}

FaceFuser make_face_fuser(const FaceModelPaths& models) {
  struct Loaded {
    std::filesystem::path landmark_model;
    std::unique_ptr<FaceDetector> detector;
  };
  auto loaded = std::make_shared<Loaded>();
  loaded->landmark_model = models.landmark_model;
  return [loaded](const Image& portrait, const Image& identity,
                  double strength) -> std::optional<Image> {
    if (!loaded->detector)
      loaded->detector = std::make_unique<FaceDetector>(loaded->landmark_model);
    auto largest = [](const std::vector<FaceDetection>& faces) {
      return std::max_element(
          faces.begin(), faces.end(), [](const FaceDetection& a, const FaceDetection& b) {
            return a.box.width() * a.box.height() < b.box.width() * b.box.height();
          });
    };
    const std::vector<FaceDetection> identity_faces = loaded->detector->detect(identity);
    if (identity_faces.empty())
      throw Error(ErrorCode::kInvalidArgument,
                  "face fusion: no face found in the subject's photo; choose a photo where the "
                  "face is clearly visible");
    const std::vector<FaceDetection> portrait_faces = loaded->detector->detect(portrait);
    if (portrait_faces.empty()) return std::nullopt;
    FaceFusionOptions options;
    options.strength = strength;
    return fuse_face(portrait, *largest(portrait_faces), identity, *largest(identity_faces),
                     options)
        .image;
  };
}

}  // namespace doppel

#include "doppel/idphoto/person_matte.hpp"

#include <algorithm>
#include <cmath>
#include <opencv2/imgproc.hpp>
#include <opencv2/ximgproc/edge_filter.hpp>

#include "doppel/core/error.hpp"
#include "idphoto/face_geometry.hpp"

namespace doppel {
namespace {

cv::Mat as_mat(const Image& image) {
  return cv::Mat(image.height, image.width, CV_8UC3, const_cast<uint8_t*>(image.rgb.data()));
}

PersonMatte to_matte(const cv::Mat& alpha) {
  PersonMatte matte;
  matte.width = alpha.cols;
  matte.height = alpha.rows;
  matte.alpha.resize(size_t(alpha.cols) * alpha.rows);
  cv::Mat wrapped(alpha.rows, alpha.cols, CV_32F, matte.alpha.data());
  alpha.convertTo(wrapped, CV_32F);
  return matte;
}

// The seeds, in the working image's pixels (scale = working / photo).
cv::Mat grabcut_seeds(cv::Size size, const FaceGeometry& g, double scale) {
  auto at = [&](cv::Point2d p) { return cv::Point(cvRound(p.x * scale), cvRound(p.y * scale)); };
  const double face_width = g.face_width * scale;
  const double eye_to_chin = g.eye_to_chin * scale;
  const cv::Point eyes = at(g.eye_mid);
  const cv::Point chin = at(g.chin);
  const double up_x = g.up.x, up_y = g.up.y;  // unit vector from the chin to the crown
  auto along = [&](cv::Point from, double up, double right) {
    return cv::Point(cvRound(from.x + up_x * up - up_y * right),
                     cvRound(from.y + up_y * up + up_x * right));
  };
  // Everything starts as probable background; far from the head and body it is sure.
  cv::Mat mask(size, CV_8U, cv::Scalar(cv::GC_BGD));
  // The envelope a head and shoulders can occupy: a head ellipse and everything below the
  // chin. The top of a head sits 0.8-1.4 eye-to-chin distances above the eyes (bald to big
  // hair): probable person up to 1.45, probable background to 1.75, sure background beyond.
  const cv::Point head_centre = along(eyes, 0.25 * eye_to_chin, 0);
  const double angle = std::atan2(g.up.x, -g.up.y) * 180 / CV_PI;
  cv::ellipse(mask, head_centre, cv::Size(cvRound(1.2 * face_width), cvRound(1.5 * eye_to_chin)),
              angle, 0, 360, cv::Scalar(cv::GC_PR_BGD), cv::FILLED);
  const int far = size.width + size.height;
  std::vector<cv::Point> below = {along(chin, 0.4 * eye_to_chin, -1.3 * face_width),
                                  along(chin, 0.4 * eye_to_chin, 1.3 * face_width),
                                  along(chin, -far, 3.5 * face_width + far),
                                  along(chin, -far, -3.5 * face_width - far)};
  cv::fillConvexPoly(mask, below, cv::Scalar(cv::GC_PR_BGD));
  // Probable person: the head with its hair, the neck and the shoulders.
  cv::ellipse(mask, head_centre, cv::Size(cvRound(0.66 * face_width), cvRound(1.2 * eye_to_chin)),
              angle, 0, 360, cv::Scalar(cv::GC_PR_FGD), cv::FILLED);
  std::vector<cv::Point> shoulders = {along(chin, 0.2 * eye_to_chin, -0.45 * face_width),
                                      along(chin, 0.2 * eye_to_chin, 0.45 * face_width),
                                      along(chin, -0.9 * eye_to_chin, 1.6 * face_width),
                                      along(chin, -far, 1.8 * face_width),
                                      along(chin, -far, -1.8 * face_width),
                                      along(chin, -0.9 * eye_to_chin, -1.6 * face_width)};
  cv::fillConvexPoly(mask, shoulders, cv::Scalar(cv::GC_PR_FGD));
  // Sure person: the face inside its jaw line and brows, the neck, the chest.
  std::vector<cv::Point> face;
  for (int i = landmark::kJawFirst; i <= landmark::kJawLast; ++i) face.push_back(at(g.points[i]));
  for (int i = 26; i >= 17; --i) face.push_back(at(g.points[i]));
  std::vector<cv::Point> hull;
  cv::convexHull(face, hull);
  cv::fillConvexPoly(mask, hull, cv::Scalar(cv::GC_FGD));
  std::vector<cv::Point> neck_and_chest = {along(chin, 0.1 * eye_to_chin, -0.25 * face_width),
                                           along(chin, 0.1 * eye_to_chin, 0.25 * face_width),
                                           along(chin, -0.9 * eye_to_chin, 0.6 * face_width),
                                           along(chin, -far, 0.6 * face_width),
                                           along(chin, -far, -0.6 * face_width),
                                           along(chin, -0.9 * eye_to_chin, -0.6 * face_width)};
  cv::fillConvexPoly(mask, neck_and_chest, cv::Scalar(cv::GC_FGD));
  return mask;
}

// The connected part of `person` that holds `seed`, with its holes filled.
cv::Mat keep_component(const cv::Mat& person, cv::Point seed) {
  cv::Mat labels;
  cv::connectedComponents(person, labels, 8, CV_32S);
  seed.x = std::clamp(seed.x, 0, person.cols - 1);
  seed.y = std::clamp(seed.y, 0, person.rows - 1);
  const int keep = labels.at<int>(seed);
  cv::Mat kept = keep == 0 ? person.clone() : (labels == keep);
  // Holes: background regions not connected to the border through the background.
  cv::Mat padded;
  cv::copyMakeBorder(kept, padded, 1, 1, 1, 1, cv::BORDER_CONSTANT, cv::Scalar(0));
  cv::floodFill(padded, cv::Point(0, 0), cv::Scalar(128));
  cv::Mat filled = padded(cv::Rect(1, 1, kept.cols, kept.rows)) != 128;
  return filled;
}

}  // namespace

PersonMatte estimate_person_matte(const Image& photo, const FaceDetection& face,
                                  const PersonMatteOptions& options) {
  const FaceGeometry g = face_geometry(face);
  if (g.eye_mid.x < 0 || g.eye_mid.y < 0 || g.eye_mid.x >= photo.width ||
      g.eye_mid.y >= photo.height)
    throw Error(ErrorCode::kInvalidArgument, "the face's eyes lie outside the photo");
  const double scale =
      std::min(1.0, double(options.max_work_side) / std::max(photo.width, photo.height));
  cv::Mat work;
  cv::resize(as_mat(photo), work, cv::Size(), scale, scale, cv::INTER_AREA);
  if (work.cols < 8 || work.rows < 8)
    throw Error(ErrorCode::kInvalidArgument, "the photo is too small to separate the person");
  cv::Mat bgr;
  cv::cvtColor(work, bgr, cv::COLOR_RGB2BGR);
  cv::Mat mask = grabcut_seeds(work.size(), g, scale);
  // GrabCut needs both sure classes to fit its colour models.
  const bool has_background =
      cv::countNonZero(mask == cv::GC_BGD) > 0 || cv::countNonZero(mask == cv::GC_PR_BGD) > 0;
  if (has_background) {
    cv::Mat background_model, foreground_model;
    cv::grabCut(bgr, mask, cv::Rect(), background_model, foreground_model, options.iterations,
                cv::GC_INIT_WITH_MASK);
  }
  cv::Mat person = (mask == cv::GC_FGD) | (mask == cv::GC_PR_FGD);
  person = keep_component(person, cv::Point(cvRound(g.nose.x * scale), cvRound(g.nose.y * scale)));
  cv::Mat rough;
  person.convertTo(rough, CV_32F, 1.0 / 255);
  cv::Mat full;
  cv::resize(rough, full, cv::Size(photo.width, photo.height), 0, 0, cv::INTER_LINEAR);
  return refine_person_matte(photo, to_matte(full), face);
}

PersonMatte refine_person_matte(const Image& photo, const PersonMatte& rough,
                                const FaceDetection& face) {
  if (rough.width != photo.width || rough.height != photo.height)
    throw Error(ErrorCode::kInvalidArgument, "the matte and the photo differ in size");
  const FaceGeometry g = face_geometry(face);
  cv::Mat guide = as_mat(photo);
  cv::Mat alpha(rough.height, rough.width, CV_32F, const_cast<float*>(rough.alpha.data()));
  // He et al.'s guided filter: the matte takes the photo's edges within the radius. A
  // small radius keeps the shoulders crisp; hair gets a wider, softer pass.
  const int body_radius = std::max(2, cvRound(g.face_width * 0.03));
  const int hair_radius = std::max(4, cvRound(g.face_width * 0.08));
  cv::Mat body, hair;
  cv::ximgproc::guidedFilter(guide, alpha, body, body_radius, 1e-4 * 255 * 255, CV_32F);
  cv::ximgproc::guidedFilter(guide, alpha, hair, hair_radius, 4e-3 * 255 * 255, CV_32F);
  // Where the hair is: above the eye line, within a band around the head's outline.
  cv::Mat hair_zone(alpha.size(), CV_32F, cv::Scalar(0));
  const cv::Point2d centre = g.eye_mid + g.up * (0.35 * g.eye_to_chin);
  const double angle = std::atan2(g.up.x, -g.up.y) * 180 / CV_PI;
  cv::ellipse(hair_zone, cv::Point(cvRound(centre.x), cvRound(centre.y)),
              cv::Size(cvRound(0.9 * g.face_width), cvRound(1.7 * g.eye_to_chin)), angle, 180, 360,
              cv::Scalar(1), cv::FILLED);
  cv::GaussianBlur(hair_zone, hair_zone, cv::Size(), std::max(1.0, g.face_width * 0.1));
  cv::Mat refined = body.mul(1 - hair_zone) + hair.mul(hair_zone);
  cv::min(cv::max(refined, 0), 1, refined);
  return to_matte(refined);
}

}  // namespace doppel

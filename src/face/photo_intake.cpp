#include "doppel/face/photo_intake.hpp"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>

#include "doppel/core/error.hpp"
#include "doppel/face/subject_profile.hpp"

namespace doppel {
namespace {

std::string format(const char* pattern, double value) {
  const int length = std::snprintf(nullptr, 0, pattern, value);
  std::string text(size_t(std::max(length, 0)) + 1, '\0');
  std::snprintf(text.data(), text.size(), pattern, value);
  text.pop_back();
  return text;
}

void reject(PhotoVerdict& verdict, std::string code, std::string message, std::string detail = "",
            std::map<std::string, double> figures = {}) {
  verdict.reasons.push_back(
      {std::move(code), std::move(message), true, std::move(detail), std::move(figures)});
}

void note(PhotoVerdict& verdict, std::string code, std::string message, std::string detail = "",
          std::map<std::string, double> figures = {}) {
  verdict.reasons.push_back(
      {std::move(code), std::move(message), false, std::move(detail), std::move(figures)});
}

// FNV-1a over the size and pixels: equal hashes mean the same decoded picture.
uint64_t pixel_hash(const Image& image) {
  uint64_t h = 1469598103934665603ull;
  const auto mix = [&h](uint8_t byte) { h = (h ^ byte) * 1099511628211ull; };
  for (int v : {image.width, image.height})
    for (int shift = 0; shift < 32; shift += 8) mix(uint8_t(v >> shift));
  for (uint8_t byte : image.rgb) mix(byte);
  return h;
}

// Difference hash (64 bits: is each of 8x8 cells brighter than its right
// neighbour) of the aligned crop: re-encodes, resizes and mild edits of one
// shot keep it within a few bits.
uint64_t difference_hash(const Image& chip) {
  const cv::Mat rgb(chip.height, chip.width, CV_8UC3, const_cast<uint8_t*>(chip.rgb.data()));
  cv::Mat gray, small;
  cv::cvtColor(rgb, gray, cv::COLOR_RGB2GRAY);
  cv::resize(gray, small, cv::Size(9, 8), 0, 0, cv::INTER_AREA);
  uint64_t hash = 0;
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 8; ++x)
      hash = (hash << 1) | (small.at<uint8_t>(y, x) < small.at<uint8_t>(y, x + 1) ? 1 : 0);
  return hash;
}

double face_area(const FaceDetection& d) {
  return double(d.box.width()) * d.box.height();
}

}  // namespace

bool PhotoVerdict::has_reason(const std::string& code) const {
  return std::any_of(reasons.begin(), reasons.end(),
                     [&](const IntakeReason& r) { return r.code == code; });
}

PhotoIntake::PhotoIntake(FaceAnalyzer& analyzer, const IntakeOptions& options)
    : analyzer_(analyzer), options_(options) {
  if (options.measure_brisque)
    brisque_ = std::make_unique<BrisqueScorer>(options.brisque_model_dir);
}

PhotoIntake::~PhotoIntake() = default;

PhotoVerdict PhotoIntake::examine(const Image& photo, const std::string& label) {
  const IntakeThresholds& t = options_.thresholds;
  PhotoVerdict verdict;
  verdict.label = label;
  verdict.pixel_hash = pixel_hash(photo);
  std::vector<AnalyzedFace> faces = analyzer_.analyze(photo);
  verdict.faces = static_cast<int>(faces.size());
  if (faces.empty()) {
    reject(verdict, "no_face",
           "No face was found. Use a photo where your face is clearly visible and turned "
           "towards the camera.");
    return verdict;
  }

  // The largest face is the subject; others matter only if they compete with it.
  size_t chosen = 0;
  for (size_t i = 1; i < faces.size(); ++i)
    if (face_area(faces[i].detection) > face_area(faces[chosen].detection)) chosen = i;
  verdict.chosen_face = static_cast<int>(chosen);
  const double chosen_width = faces[chosen].detection.box.width();
  int competing = 0;
  for (size_t i = 0; i < faces.size(); ++i)
    if (i != chosen && faces[i].detection.box.width() >= t.competing_face_ratio * chosen_width)
      ++competing;
  if (competing > 0) {
    reject(verdict, "multiple_faces",
           "There is more than one person in this photo, so it is unclear who it is of. Use a "
           "photo of you alone, or crop it to your face.",
           std::to_string(competing + 1) + " faces of similar size",
           {{"faces", static_cast<double>(competing + 1)}});
  } else if (faces.size() > 1) {
    note(verdict, "extra_faces",
         "Smaller faces in the background were ignored; the largest face was used.",
         std::to_string(faces.size() - 1) +
             (faces.size() == 2 ? " smaller face ignored" : " smaller faces ignored"),
         {{"faces", static_cast<double>(faces.size() - 1)}});
  }

  const AnalyzedFace& face = faces[chosen];
  FaceQualityMeasures m = measure_face_quality(photo, face);
  verdict.measures = m;
  verdict.crop_hash = difference_hash(face.chip);

  if (m.face_width_px < t.min_face_width_px)
    reject(verdict, "face_too_small",
           "The face is too small in this photo. Use a closer or higher-resolution photo where "
           "the face fills more of the picture.",
           format("face %.0f pixels wide", m.face_width_px) +
               format(", at least %.0f needed", t.min_face_width_px),
           {{"value", std::round(m.face_width_px)}, {"limit", t.min_face_width_px}});
  if (m.sharpness < t.min_sharpness)
    reject(
        verdict, "blurred",
        "The face is blurred or out of focus. Use a sharp photo: hold the camera still, and "
        "avoid screenshots and small copies.",
        format("sharpness %.0f", m.sharpness) + format(", at least %.0f needed", t.min_sharpness),
        {{"value", std::round(m.sharpness)}, {"limit", t.min_sharpness}});
  const double head_turn = std::hypot(m.pose.yaw_degrees, m.pose.pitch_degrees);
  if (head_turn > t.max_head_turn_degrees)
    reject(verdict, "extreme_pose",
           std::string(std::abs(m.pose.yaw_degrees) >= std::abs(m.pose.pitch_degrees)
                           ? "The head is turned too far to the side."
                           : "The head is tilted too far up or down.") +
               " Use a photo where you face the camera or are turned only slightly.",
           format("about %.0f degrees from facing the camera", head_turn) +
               format(", at most %.0f", t.max_head_turn_degrees),
           {{"value", std::round(head_turn)}, {"limit", t.max_head_turn_degrees}});
  if (m.brightness < t.min_brightness)
    reject(verdict, "too_dark",
           "The face is too dark. Use a photo taken in daylight or good indoor light.",
           format("brightness %.0f of 255", m.brightness) +
               format(", at least %.0f needed", t.min_brightness),
           {{"value", std::round(m.brightness)}, {"limit", t.min_brightness}});
  else if (m.brightness > t.max_brightness || m.clipped_fraction > t.max_clipped_fraction)
    reject(
        verdict, "overexposed",
        "The face is too bright: flash or harsh light washed it out. Use a photo in softer "
        "light.",
        format("brightness %.0f of 255", m.brightness) +
            format(", %.0f%% of the face pure white", 100 * m.clipped_fraction),
        {{"value", std::round(m.brightness)}, {"percent", std::round(100 * m.clipped_fraction)}});
  if (m.eye_openness < t.min_eye_openness)
    reject(verdict, "eyes_closed", "The eyes look closed. Use a photo with your eyes open.",
           format("eye openness %.2f", m.eye_openness) +
               format(", at least %.2f needed", t.min_eye_openness),
           {{"value", m.eye_openness}, {"limit", t.min_eye_openness}});
  if (m.mouth_contrast < t.min_mouth_contrast)
    reject(verdict, "occluded",
           "The mouth seems covered (a mask, a hand or an object). Use a photo with the whole "
           "face visible.",
           format("mouth contrast %.2f", m.mouth_contrast) +
               format(", at least %.2f needed", t.min_mouth_contrast),
           {{"value", m.mouth_contrast}, {"limit", t.min_mouth_contrast}});

  if (options_.portrait.size > 0) {
    verdict.portrait = extract_portrait_crop(photo, face.detection, options_.portrait);
    if (verdict.portrait.outside_fraction > t.max_portrait_outside_fraction)
      note(verdict, "face_near_edge",
           "The face is close to the photo's edge, so part of the portrait had to be filled in. "
           "A photo with more room around the face works better.",
           format("%.0f%% of the portrait crop filled in by mirroring",
                  100 * verdict.portrait.outside_fraction),
           {{"percent", std::round(100 * verdict.portrait.outside_fraction)}});
    if (brisque_) verdict.brisque = brisque_->score(verdict.portrait.image);
    if (std::isfinite(verdict.brisque)) {
      verdict.quality_score = std::clamp(100.0 - verdict.brisque, 0.0, 100.0);
      if (verdict.brisque > t.max_brisque)
        note(verdict, "low_quality",
             "The image quality is low (noise, compression or blur). A cleaner photo would "
             "train better.",
             format("BRISQUE %.0f", verdict.brisque) + format(", above %.0f", t.max_brisque),
             {{"value", std::round(verdict.brisque)}, {"limit", t.max_brisque}});
    }
  }
  verdict.face = std::move(faces[chosen]);
  verdict.accepted = std::none_of(verdict.reasons.begin(), verdict.reasons.end(),
                                  [](const IntakeReason& r) { return r.rejects; });
  return verdict;
}

PhotoVerdict PhotoIntake::examine_file(const std::filesystem::path& path) {
  Image photo;
  try {
    photo = analyzer_.read(path);
  } catch (const Error& e) {
    PhotoVerdict verdict;
    verdict.label = path.filename().string();
    reject(verdict, "unreadable",
           std::string("The file could not be read as a photo: ") + e.what());
    return verdict;
  }
  return examine(photo, path.filename().string());
}

std::vector<PhotoVerdict> PhotoIntake::examine_set(
    const std::vector<std::filesystem::path>& paths) {
  std::vector<PhotoVerdict> verdicts;
  verdicts.reserve(paths.size());
  for (const auto& path : paths) verdicts.push_back(examine_file(path));
  apply_set_gates(verdicts);
  return verdicts;
}

void PhotoIntake::apply_set_gates(std::vector<PhotoVerdict>& verdicts) const {
  const IntakeThresholds& t = options_.thresholds;
  std::vector<size_t> with_face;
  for (size_t i = 0; i < verdicts.size(); ++i)
    if (verdicts[i].face) with_face.push_back(i);

  // Duplicates: keep the photo with the larger face (the better copy), or the
  // earlier one on a tie; flag the other.
  std::vector<bool> duplicate(verdicts.size(), false);
  for (size_t a = 0; a < verdicts.size(); ++a) {
    for (size_t b = a + 1; b < verdicts.size(); ++b) {
      PhotoVerdict& first = verdicts[a];
      PhotoVerdict& second = verdicts[b];
      if (duplicate[a] || duplicate[b]) continue;
      const bool exact = first.pixel_hash != 0 && first.pixel_hash == second.pixel_hash;
      bool near = false;
      if (!exact && first.face && second.face) {
        near = std::popcount(first.crop_hash ^ second.crop_hash) <= t.max_duplicate_hash_bits &&
               descriptor_distance(first.face->descriptor, second.face->descriptor) <=
                   t.max_duplicate_descriptor_distance;
      }
      if (!exact && !near) continue;
      size_t drop = b;
      if (!exact && first.measures.face_width_px < second.measures.face_width_px) drop = a;
      const size_t keep = drop == a ? b : a;
      duplicate[drop] = true;
      reject(verdicts[drop], "duplicate",
             exact ? "This is the same picture as " + verdicts[keep].label +
                         "; each photo should be a different shot."
                   : "This is nearly the same photo as " + verdicts[keep].label +
                         " (a copy, crop or edit of one shot); each photo should be a different "
                         "shot.");
      verdicts[drop].accepted = false;
    }
  }

  // Identity outliers: distance of each face to the robust centre of all of
  // them, which a minority of strangers cannot pull away from the majority.
  std::vector<size_t> members;
  for (size_t i : with_face)
    if (!duplicate[i]) members.push_back(i);
  if (members.size() == 2) {
    const double d = descriptor_distance(verdicts[members[0]].face->descriptor,
                                         verdicts[members[1]].face->descriptor);
    if (d > t.max_pair_distance)
      for (size_t i : members)
        note(verdicts[i], "different_person",
             "The two photos may show different people. Use only photos of the same person.",
             format("distance %.2f between the two faces", d) +
                 format("; the same person is usually below %.2f", t.max_pair_distance),
             {{"value", d}, {"limit", t.max_pair_distance}});
  } else if (members.size() >= 3) {
    std::vector<FaceDescriptor> descriptors;
    for (size_t i : members) descriptors.push_back(verdicts[i].face->descriptor);
    const SubjectProfile centre = SubjectProfile::from_descriptors(descriptors);
    for (size_t i : members) {
      const double d = centre.distance(verdicts[i].face->descriptor);
      if (d <= t.max_identity_distance) continue;
      reject(verdicts[i], "different_person",
             "This face does not match the other photos; it seems to show someone else. Use "
             "only photos of the same person.",
             format("distance %.2f from the typical face of the other photos", d) +
                 format("; the same person is usually below %.2f", t.max_identity_distance),
             {{"value", d}, {"limit", t.max_identity_distance}});
      verdicts[i].accepted = false;
    }
  }
}

}  // namespace doppel

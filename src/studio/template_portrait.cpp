#include "doppel/studio/template_portrait.hpp"

#include <algorithm>
#include <cmath>
#include <set>

#include "doppel/core/error.hpp"
#include "doppel/core/paths.hpp"
#include "doppel/diffusion/inpainting.hpp"
#include "doppel/face/face_colour_match.hpp"
#include "doppel/face/face_fusion.hpp"
#include "doppel/face/face_pose_map.hpp"

namespace doppel {
namespace {

[[noreturn]] void invalid(const std::string& message) {
  throw Error(ErrorCode::kInvalidArgument, message);
}

// The size the face crop is repainted at: its aspect ratio, the longer side `longest`, both
// multiples of 8 (what the VAE needs) and at least 64.
std::pair<int64_t, int64_t> processing_size(const PixelRegion& region, int64_t longest) {
  const double scale = static_cast<double>(longest) / std::max(region.width(), region.height());
  auto side = [&](int pixels) {
    return std::max<int64_t>(64, static_cast<int64_t>(std::lround(pixels * scale / 8.0)) * 8);
  };
  return {side(region.width()), side(region.height())};
}

// `over` with `painted` blended in by `alpha` (0 keeps `over` exactly).
Image blend(const Image& over, const Image& painted, const Mask& alpha) {
  Image result = over;
  for (size_t i = 0; i < alpha.values.size(); ++i) {
    const uint8_t weight = alpha.values[i];
    if (weight == 0) continue;
    for (size_t c = 0; c < 3; ++c) {
      const double value = (over.rgb[i * 3 + c] * (255.0 - weight) +
                            painted.rgb[i * 3 + c] * static_cast<double>(weight)) /
                           255.0;
      result.rgb[i * 3 + c] = static_cast<uint8_t>(std::lround(value));
    }
  }
  return result;
}

std::filesystem::path control_path(const TemplatePortraitRequest& request,
                                   const std::string& model) {
  const std::filesystem::path folder =
      request.controlnet_dir.empty() ? default_models_dir() / "controlnet" : request.controlnet_dir;
  return std::filesystem::path(model).is_absolute() ? std::filesystem::path(model) : folder / model;
}

}  // namespace

std::vector<TemplateFace> template_faces_from_landmarks(
    const std::vector<std::vector<FacePoint>>& landmarks, int width, int height,
    const HeadMaskOptions& options) {
  std::vector<TemplateFace> faces;
  for (const auto& points : landmarks) {
    TemplateFace face;
    face.landmarks = points;
    face.mask = head_mask(points, width, height, options);
    face.box = {points.front().x, points.front().y, points.front().x, points.front().y};
    for (const FacePoint& point : points) {
      face.box.left = std::min(face.box.left, point.x);
      face.box.top = std::min(face.box.top, point.y);
      face.box.right = std::max(face.box.right, point.x);
      face.box.bottom = std::max(face.box.bottom, point.y);
    }
    faces.push_back(std::move(face));
  }
  std::stable_sort(faces.begin(), faces.end(), [](const TemplateFace& a, const TemplateFace& b) {
    return a.box.left + a.box.right < b.box.left + b.box.right;
  });
  for (size_t i = 0; i < faces.size(); ++i) faces[i].index = static_cast<int>(i);
  return faces;
}

std::vector<TemplateFace> find_template_faces(const Image& picture, FaceDetector& detector,
                                              const HeadMaskOptions& options) {
  std::vector<FaceDetection> detections = detector.detect(picture);
  if (detections.empty()) {
    // Small faces in a wide scene: look once more at twice the resolution.
    FaceDetectorOptions upsampled;
    upsampled.upsample = 1;
    if (static_cast<int64_t>(picture.width) * picture.height <= 2'000'000)
      detections = detector.detect(picture, upsampled);
  }
  if (detections.empty())
    invalid(
        "the template picture has no face this studio can find; use a picture with a "
        "visible, roughly frontal face at least 80 pixels wide");
  std::vector<std::vector<FacePoint>> landmarks;
  std::vector<FaceBox> boxes;
  for (const FaceDetection& detection : detections) landmarks.push_back(detection.landmarks);
  std::vector<TemplateFace> faces =
      template_faces_from_landmarks(landmarks, picture.width, picture.height, options);
  // Keep the detector's boxes (landmarks can stray outside them).
  for (TemplateFace& face : faces)
    for (const FaceDetection& detection : detections)
      if (detection.landmarks.size() == face.landmarks.size() &&
          detection.landmarks.front().x == face.landmarks.front().x &&
          detection.landmarks.front().y == face.landmarks.front().y)
        face.box = detection.box;
  return faces;
}

Image template_mask_preview(const Image& picture, const std::vector<TemplateFace>& faces) {
  std::vector<Mask> masks;
  for (const TemplateFace& face : faces) masks.push_back(face.mask.soft);
  const Mask soft = combine_masks(masks);
  if (soft.width != picture.width || soft.height != picture.height)
    invalid("the faces were found on a picture of another size");
  Image preview = picture;
  for (size_t i = 0; i < soft.values.size(); ++i) {
    const double keep = 0.3 + 0.7 * soft.values[i] / 255.0;
    for (size_t c = 0; c < 3; ++c) {
      const double tint = c == 0 ? 40 : 0;  // a red cast outside shows the boundary
      preview.rgb[i * 3 + c] =
          static_cast<uint8_t>(std::min(255.0, preview.rgb[i * 3 + c] * keep + tint * (1 - keep)));
    }
  }
  return preview;
}

std::vector<std::pair<int, int>> assign_template_faces(const PortraitTemplate& settings,
                                                       size_t face_count, size_t subject_count,
                                                       const std::vector<int>& assignment) {
  if (subject_count == 0) invalid("a template portrait needs at least one subject");
  auto check_face = [&](int face) {
    if (face < 0 || static_cast<size_t>(face) >= face_count)
      invalid("the template has " + std::to_string(face_count) + " face" +
              (face_count == 1 ? "" : "s") + " (numbered 0 to " + std::to_string(face_count - 1) +
              " from the left); there is no face " + std::to_string(face));
  };
  std::vector<std::pair<int, int>> pairs;
  if (!assignment.empty()) {
    if (assignment.size() != subject_count)
      invalid("the face assignment names " + std::to_string(assignment.size()) + " faces for " +
              std::to_string(subject_count) + " subjects; give one face each");
    std::set<int> seen;
    for (size_t subject = 0; subject < assignment.size(); ++subject) {
      check_face(assignment[subject]);
      if (!seen.insert(assignment[subject]).second)
        invalid("face " + std::to_string(assignment[subject]) + " is given two subjects");
      pairs.emplace_back(assignment[subject], static_cast<int>(subject));
    }
  } else {
    std::vector<int> chosen = settings.faces;
    if (chosen.empty())
      for (size_t face = 0; face < face_count; ++face) chosen.push_back(static_cast<int>(face));
    for (int face : chosen) check_face(face);
    if (chosen.size() != subject_count)
      invalid("the template has " + std::to_string(chosen.size()) + " face" +
              (chosen.size() == 1 ? "" : "s") + " to replace but " + std::to_string(subject_count) +
              " subject" + (subject_count == 1 ? " was" : "s were") +
              " given; give one subject per face, or choose the faces (assignment)");
    for (size_t subject = 0; subject < chosen.size(); ++subject)
      pairs.emplace_back(chosen[subject], static_cast<int>(subject));
  }
  // Left to right, so a later face's feathered edge lies over the earlier one the same way
  // every time.
  std::sort(pairs.begin(), pairs.end());
  return pairs;
}

SessionRequest template_face_request(const TemplatePortraitRequest& request,
                                     const TemplateFace& face, const TemplateSubject& subject,
                                     const Image& current, int64_t longest, uint64_t seed) {
  const PortraitTemplate& settings = request.settings;
  InpaintOptions inpaint;
  inpaint.mask = mask_to_image(face.mask.grown);
  // The feather is the head mask's own (inside the grown outline); A1111's blur would spread
  // the repaint past it.
  inpaint.mask_blur = 0;
  inpaint.only_masked = true;
  inpaint.only_masked_padding = settings.padding;
  const auto bounds = mask_bounds(face.mask.grown, settings.padding);
  if (!bounds) invalid("face " + std::to_string(face.index) + " has an empty head mask");
  const auto [width, height] = processing_size(*bounds, longest);
  // The crop the pipeline will repaint: the control maps are cut to the same place.
  const InpaintPlan plan =
      plan_inpaint(current, inpaint, static_cast<int>(width), static_cast<int>(height));

  SessionRequest face_request;
  GenerationRequest& generation = face_request.generation;
  generation.prompt = fill_prompt_template(settings.prompt, subject.phrase);
  generation.negative_prompt = settings.negative_prompt;
  generation.width = width;
  generation.height = height;
  generation.steps = settings.steps;
  generation.sampler = settings.sampler;
  generation.karras = settings.karras;
  generation.guidance_scale = settings.guidance;
  generation.seed = seed;
  generation.init_image = current;
  generation.strength = settings.strength;
  generation.inpaint = inpaint;
  face_request.loras = subject.loras;
  face_request.ip_adapters = subject.ip_adapters;
  if (settings.face_pose) {
    const Image pose =
        draw_face_landmarks(request.picture.width, request.picture.height, {face.landmarks});
    face_request.controls.push_back(
        {control_path(request, settings.face_pose->model), crop_image(pose, *plan.region), "none",
         settings.face_pose->weight, settings.face_pose->start, settings.face_pose->end});
  }
  if (settings.canny)
    face_request.controls.push_back(
        {control_path(request, settings.canny->model), crop_image(request.picture, *plan.region),
         "canny", settings.canny->weight, settings.canny->start, settings.canny->end});
  return face_request;
}

TemplatePortrait render_template_portrait(GenerationSession& session,
                                          const TemplatePortraitRequest& request,
                                          const std::vector<TemplateFace>& faces,
                                          const ProgressCallback& progress) {
  const PortraitTemplate& settings = request.settings;
  const Image& picture = request.picture;
  if (picture.width <= 0 || picture.height <= 0 ||
      picture.rgb.size() != static_cast<size_t>(picture.width) * picture.height * 3)
    invalid("the template picture is empty or malformed");
  for (const TemplateFace& face : faces)
    if (face.mask.grown.width != picture.width || face.mask.grown.height != picture.height)
      invalid("the template's faces were found on a picture of another size");
  const auto pairs =
      assign_template_faces(settings, faces.size(), request.subjects.size(), request.assignment);
  const int64_t longest =
      settings.processing_size > 0 ? settings.processing_size : session.native_size();

  TemplatePortrait result;
  Image current = picture;
  std::vector<Mask> grown;
  for (size_t pass = 0; pass < pairs.size(); ++pass) {
    const TemplateFace& face = faces[static_cast<size_t>(pairs[pass].first)];
    const TemplateSubject& subject = request.subjects[static_cast<size_t>(pairs[pass].second)];

    const SessionRequest face_request =
        template_face_request(request, face, subject, current, longest, request.seed + pass);
    const std::string stage =
        "face " + std::to_string(pass + 1) + "/" + std::to_string(pairs.size());
    std::vector<GeneratedImage> images =
        session.generate(face_request, [&](const ProgressEvent& event) {
          if (!progress) return true;
          ProgressEvent named = event;
          named.stage = stage + " " + event.stage;
          return progress(named);
        });
    if (images.empty()) throw Error(ErrorCode::kInternal, "the face pass returned no image");
    Image painted = std::move(images.front().image);
    std::optional<double> detail_strength = settings.face_detail;
    if (settings.fusion) {
      if (!subject.fusion)
        invalid("template '" + settings.id +
                "' fuses the subject's photo into the face (fusion); the subject has no photo "
                "with a face to take it from");
      // Onto the template's landmarks of this face: the face pass kept its pose.
      FaceDetection target;
      target.box = face.box;
      target.landmarks = face.landmarks;
      FaceFusionOptions fusion;
      fusion.strength = *settings.fusion;
      painted =
          fuse_face(painted, target, subject.fusion->photo, subject.fusion->face, fusion).image;
      images.front().parameters.set("Face fusion strength", format_number(*settings.fusion));
      // The cloned face is harmonised with the picture by a light pass, as a style's fusion is.
      if (!detail_strength) detail_strength = kFusionDetailStrength;
    }
    if (detail_strength) {
      // On the face's own crop, where it is the largest face: the pass must not pick another
      // face of a group picture. Its result counts only inside this face's mask (below).
      const InpaintPlan plan = plan_inpaint(current, *face_request.generation.inpaint,
                                            static_cast<int>(face_request.generation.width),
                                            static_cast<int>(face_request.generation.height));
      SessionRequest detail = face_request;
      detail.controls.clear();
      detail.generation.inpaint.reset();
      detail.generation.init_image.reset();
      FaceDetailOptions options;
      options.strength = *detail_strength;
      options.faces = FaceChoice::kLargest;
      detail.face_detail = options;
      GeneratedImage crop{crop_image(painted, *plan.region), face_request.generation.seed,
                          images.front().parameters};
      const GeneratedImage detailed = session.detail_faces(crop, detail);
      painted = composite_inpainted(
          painted, detailed.image,
          Mask{painted.width, painted.height, std::vector<uint8_t>(painted.rgb.size() / 3, 255)},
          plan.region);
      images.front().parameters = detailed.parameters;
    }
    if (settings.colour_match > 0)
      painted = match_face_colour(painted, picture, face.mask.skin, face.mask.soft,
                                  settings.colour_match);
    current = blend(current, painted, face.mask.soft);

    result.image.parameters = std::move(images.front().parameters);
    result.faces.push_back(face);
    result.subjects.push_back(pairs[pass].second);
    grown.push_back(face.mask.grown);
  }
  result.image.image = std::move(current);
  result.image.seed = request.seed;
  GenerationParameters& parameters = result.image.parameters;
  parameters.set("Seed", std::to_string(request.seed));
  parameters.set("Size", std::to_string(picture.width) + "x" + std::to_string(picture.height));
  parameters.set("Template", settings.id);
  if (!request.picture_sha256.empty())
    parameters.set("Template hash", request.picture_sha256.substr(0, 10));
  parameters.set("Template faces", std::to_string(pairs.size()));
  result.changed = combine_masks(grown);
  return result;
}

}  // namespace doppel

// Template portraits: the subject's face put into a template picture. Each chosen face of the
// template is repainted inside its head mask (face and hairline, grown and feathered) with the
// subject's identity (LoRA and/or IP-Adapter), "only masked" at full resolution, steered by a
// face-pose ControlNet from the template's landmarks and a Canny ControlNet of the template so
// the scene stays; the new face is colour-matched to the template's skin and light. Pixels
// outside the grown masks stay exactly the template's. Every generation goes through the
// caller's GenerationSession.
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "doppel/diffusion/generation_session.hpp"
#include "doppel/face/face_detector.hpp"
#include "doppel/face/head_mask.hpp"
#include "doppel/studio/portrait_template.hpp"
#include "doppel/studio/style_pack.hpp"

namespace doppel {

// One face of a template picture.
struct TemplateFace {
  int index = 0;  // position counted left to right (by the centre of the face box), from 0
  FaceBox box;
  std::vector<FacePoint> landmarks;  // 68 points
  HeadMask mask;                     // at the picture's size
};

// The faces of `picture` left to right, each with its head mask. Throws kInvalidArgument when
// there is none ("use a picture with a visible face").
std::vector<TemplateFace> find_template_faces(const Image& picture, FaceDetector& detector,
                                              const HeadMaskOptions& options = {});
// The same from known landmarks (another detector, a test): sorted and indexed left to right.
std::vector<TemplateFace> template_faces_from_landmarks(
    const std::vector<std::vector<FacePoint>>& landmarks, int width, int height,
    const HeadMaskOptions& options = {});

// What a template will repaint, for a person to check: the picture dimmed (and tinted red)
// outside the faces' soft masks. Throws kInvalidArgument for no faces.
Image template_mask_preview(const Image& picture, const std::vector<TemplateFace>& faces);

// The subject's photo that face fusion takes the face from (a template's `fusion`).
struct FusionIdentity {
  Image photo;
  FaceDetection face;  // with its 68 landmarks
};

// Who goes into a face.
struct TemplateSubject {
  std::string phrase = "person";     // replaces {subject} in the template's prompt ("ohwx woman")
  std::vector<LoraSelection> loras;  // the subject's trained LoRA
  std::vector<ImagePromptSelection> ip_adapters;  // or a photo through an IP-Adapter
  std::optional<FusionIdentity> fusion;           // needed by a template with `fusion`
};

struct TemplatePortraitRequest {
  PortraitTemplate settings;
  Image picture;               // the template's picture
  std::string picture_sha256;  // recorded in the metadata ("Template hash")
  std::vector<TemplateSubject> subjects;
  // The face (left-to-right number) each subject goes into, in subject order; empty: the
  // template's chosen faces (settings.faces, else all) are given to the subjects left to right.
  std::vector<int> assignment;
  uint64_t seed = 0;  // face pass k uses seed + k
  // Where the settings' ControlNet file names are; empty: models/controlnet.
  std::filesystem::path controlnet_dir;
};

struct TemplatePortrait {
  GeneratedImage image;             // the finished picture with A1111 metadata plus the template's
  std::vector<TemplateFace> faces;  // the faces repainted, in painting order
  std::vector<int> subjects;        // the subject painted into each of `faces`
  Mask changed;                     // union of their grown masks: no other pixel changed
};

// Which subject goes into which face: pairs (face number, subject number) in painting order.
// Throws kInvalidArgument for a face that does not exist, a face given twice, or a number of
// subjects that does not match the faces to replace (the message says how many are needed).
std::vector<std::pair<int, int>> assign_template_faces(const PortraitTemplate& settings,
                                                       size_t face_count, size_t subject_count,
                                                       const std::vector<int>& assignment);

// The request of one face pass: `subject` into `face` of `current` (the picture with the faces
// painted so far), "only masked" inside the face's grown mask at `longest` pixels on the longer
// side, with the template's face-pose map and Canny control cut to the crop being repainted.
SessionRequest template_face_request(const TemplatePortraitRequest& request,
                                     const TemplateFace& face, const TemplateSubject& subject,
                                     const Image& current, int64_t longest, uint64_t seed);

// Repaints the assigned faces one after another. `faces` are the picture's faces as
// find_template_faces returns them. Throws doppel::Error from the assignment, the session
// (missing LoRA, ControlNet), or kInvalidArgument for a picture that does not match the faces.
TemplatePortrait render_template_portrait(GenerationSession& session,
                                          const TemplatePortraitRequest& request,
                                          const std::vector<TemplateFace>& faces,
                                          const ProgressCallback& progress = {});

}  // namespace doppel

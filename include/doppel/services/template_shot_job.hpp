// A shoot's template shot, as a worker runs it: the template's picture (an account's upload from
// the blob store, or a built-in template's file or drawn picture), its faces, and the subject
// painted into them through the worker's GenerationSession (studio/template_portrait).
#pragma once
#include <filesystem>
#include <optional>
#include <vector>

#include "doppel/diffusion/generation_session.hpp"
#include "doppel/face/face_detector.hpp"
#include "doppel/store/blob_store.hpp"
#include "doppel/studio/template_picture.hpp"
#include "doppel/studio/template_shot.hpp"

namespace doppel::services {

// Where a worker finds the pictures of template shots.
struct TemplatePictureSources {
  const store::BlobStore* blobs = nullptr;  // uploaded templates, by digest
  std::filesystem::path templates_dir;      // the built-in templates (<styles>/templates)
  std::filesystem::path keep_dir;           // where drawn pictures are kept
};

// The picture of `shot`: the blob of its digest when the store has it, else the built-in
// template of its id (its file, or its picture drawn with `session` and kept). Throws kNotFound
// when neither exists or when the picture found is not the one the recipe names (an uploaded
// template deleted, a built-in picture replaced): "again" would not repaint the same picture.
// A drawn picture not drawn yet (empty digest) is drawn and accepted.
TemplatePicture template_shot_picture(const TemplateShot& shot,
                                      const TemplatePictureSources& sources,
                                      GenerationSession& session);

// The subject's photo for a template with `fusion`: the first of `photos` (aligned crops, best
// first) where `detector` finds a face. nullopt when none has one.
std::optional<FusionIdentity> fusion_identity(const std::vector<Image>& photos,
                                              FaceDetector& detector);

// Paints the shot's people (template_shot_subjects) into the picture's faces: finds them with
// `detector` (kInvalidArgument "no face" for a picture without one), then
// render_template_portrait.
GeneratedImage render_template_shot(GenerationSession& session, FaceDetector& detector,
                                    const TemplateShot& shot, const TemplatePicture& picture,
                                    std::vector<TemplateSubject> subjects,
                                    const ProgressCallback& progress);

}  // namespace doppel::services

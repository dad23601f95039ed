#include "doppel/services/template_shot_job.hpp"

#include "doppel/core/error.hpp"
#include "doppel/studio/style_pack.hpp"
#include "doppel/studio/template_portrait.hpp"

namespace doppel::services {

TemplatePicture template_shot_picture(const TemplateShot& shot,
                                      const TemplatePictureSources& sources,
                                      GenerationSession& session) {
  const std::string& wanted = shot.picture_sha256;
  if (!wanted.empty() && sources.blobs && sources.blobs->exists(wanted))
    return decode_template_picture(sources.blobs->get(wanted),
                                   "template '" + shot.settings.id + "' picture");
  std::vector<PortraitTemplate> built_in;
  try {
    built_in = load_portrait_templates(sources.templates_dir);
  } catch (const Error& error) {
    throw Error(ErrorCode::kNotFound,
                std::string("the built-in templates could not be read: ") + error.what());
  }
  const auto found = std::find_if(built_in.begin(), built_in.end(), [&](const auto& candidate) {
    return candidate.id == shot.settings.id;
  });
  if (found == built_in.end())
    throw Error(ErrorCode::kNotFound,
                "the picture of template '" + shot.settings.id +
                    "' is gone (an uploaded template deleted, or a built-in one removed); choose "
                    "another template");
  std::vector<StylePack> packs;
  if (found->generate && found->generate->prompt.empty())
    packs = load_style_packs(sources.templates_dir.parent_path());
  TemplatePicture picture = template_picture(*found, &session, packs, sources.keep_dir);
  if (!wanted.empty() && picture.sha256 != wanted)
    throw Error(ErrorCode::kNotFound,
                "template '" + shot.settings.id + "' has another picture now (" +
                    picture.sha256.substr(0, 10) + ", the recipe's is " + wanted.substr(0, 10) +
                    "), so this shot cannot be repainted the same way");
  return picture;
}

std::optional<FusionIdentity> fusion_identity(const std::vector<Image>& photos,
                                              FaceDetector& detector) {
  for (const Image& photo : photos) {
    std::vector<FaceDetection> faces = detector.detect(photo);
    if (faces.empty()) continue;
    const auto largest =
        std::max_element(faces.begin(), faces.end(), [](const auto& a, const auto& b) {
          return a.box.width() * a.box.height() < b.box.width() * b.box.height();
        });
    return FusionIdentity{photo, *largest};
  }
  return std::nullopt;
}

GeneratedImage render_template_shot(GenerationSession& session, FaceDetector& detector,
                                    const TemplateShot& shot, const TemplatePicture& picture,
                                    std::vector<TemplateSubject> subjects,
                                    const ProgressCallback& progress) {
  TemplatePortraitRequest request = template_shot_request(shot, picture.image, {});
  request.subjects = std::move(subjects);
  request.picture_sha256 = picture.sha256;
  const std::vector<TemplateFace> faces =
      find_template_faces(picture.image, detector, shot.settings.mask);
  return render_template_portrait(session, request, faces, progress).image;
}

}  // namespace doppel::services

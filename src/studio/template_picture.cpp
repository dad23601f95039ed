#include "doppel/studio/template_picture.hpp"

#include <algorithm>
#include <cmath>

#include "doppel/core/atomic_file.hpp"
#include "doppel/core/error.hpp"

namespace doppel {

TemplatePicture decode_template_picture(std::string bytes, const std::string& label) {
  TemplatePicture picture;
  ImageReadOptions options;
  options.max_pixels = kMaxTemplatePixels;
  picture.image = decode_image(bytes, options, label);
  picture.sha256 = template_picture_sha256(bytes);
  picture.bytes = std::move(bytes);
  return picture;
}

GenerationRequest drawn_template_request(const PortraitTemplate& portrait_template,
                                         const std::vector<StylePack>& packs) {
  if (!portrait_template.generate)
    throw Error(ErrorCode::kInvalidArgument,
                "template '" + portrait_template.id + "' has a picture file; it is not drawn");
  const TemplateGeneration& settings = *portrait_template.generate;
  GenerationRequest request;
  request.prompt = settings.prompt;
  request.negative_prompt = settings.negative_prompt;
  if (request.prompt.empty()) {
    const StylePack& pack = find_style_pack(packs, portrait_template.pack);
    request.prompt = fill_prompt_template(pack.prompt, settings.subject);
    if (request.negative_prompt.empty()) request.negative_prompt = pack.negative_prompt;
  }
  request.width = settings.width;
  request.height = settings.height;
  request.steps = settings.steps;
  request.sampler = settings.sampler;
  request.karras = settings.karras;
  request.guidance_scale = settings.guidance;
  request.seed = settings.seed;
  return request;
}

std::string drawn_template_settings_sha256(const PortraitTemplate& portrait_template,
                                           const std::vector<StylePack>& packs) {
  const GenerationRequest request = drawn_template_request(portrait_template, packs);
  return template_picture_sha256(
      nlohmann::json{{"prompt", request.prompt},
                     {"negative_prompt", request.negative_prompt},
                     {"settings", portrait_template_to_json(portrait_template)["generate"]}}
          .dump());
}

PortraitTemplate drawn_on_tiny_model(PortraitTemplate portrait_template) {
  if (!portrait_template.generate) return portrait_template;
  TemplateGeneration& settings = *portrait_template.generate;
  const double scale =
      std::min(1.0, 128.0 / static_cast<double>(std::max(settings.width, settings.height)));
  const auto shrink = [&](int64_t side) {
    return std::max<int64_t>(64, static_cast<int64_t>(std::lround(side * scale / 8.0)) * 8);
  };
  settings.width = shrink(settings.width);
  settings.height = shrink(settings.height);
  settings.steps = std::min<int64_t>(settings.steps, 8);
  return portrait_template;
}

TemplatePicture template_picture(const PortraitTemplate& requested_template,
                                 GenerationSession* session, const std::vector<StylePack>& packs,
                                 const std::filesystem::path& keep_dir) {
  const bool tiny = session && session->model_info().name == kTinyModelName &&
                    session->model_info().sha256.empty();
  const PortraitTemplate portrait_template =
      tiny ? drawn_on_tiny_model(requested_template) : requested_template;
  if (!portrait_template.generate) {
    if (!std::filesystem::is_regular_file(portrait_template.image))
      throw Error(ErrorCode::kNotFound, "template '" + portrait_template.id + "': its picture " +
                                            portrait_template.image.string() + " does not exist");
    TemplatePicture picture = decode_template_picture(read_file(portrait_template.image),
                                                      portrait_template.image.string());
    picture.path = portrait_template.image;
    return picture;
  }
  const GenerationRequest request = drawn_template_request(portrait_template, packs);
  if (!session)
    throw Error(ErrorCode::kInvalidArgument,
                "template '" + portrait_template.id + "' is drawn by the model; load a model");
  const LoadedModelInfo& model = session->model_info();
  if (model.family != portrait_template.family)
    throw Error(ErrorCode::kInvalidArgument,
                "template '" + portrait_template.id + "' is made for " +
                    model_family_name(portrait_template.family) + " models, but the model is " +
                    model_family_name(model.family));
  // Kept per model and settings: another model or seed draws another picture.
  const std::string key = template_picture_sha256(nlohmann::json{
      {"prompt", request.prompt},
      {"negative_prompt", request.negative_prompt},
      {"settings", portrait_template_to_json(portrait_template)["generate"]},
      {"model", model.name},
      {"model_sha256", model.sha256}}.dump());
  const std::filesystem::path kept =
      keep_dir / (portrait_template.id + "-" + key.substr(0, 16) + ".png");
  if (std::filesystem::is_regular_file(kept)) {
    TemplatePicture picture = decode_template_picture(read_file(kept), kept.string());
    picture.path = kept;
    return picture;
  }
  SessionRequest session_request;
  session_request.generation = request;
  const std::vector<GeneratedImage> images = session->generate(session_request);
  if (images.empty()) throw Error(ErrorCode::kInternal, "the template picture was not drawn");
  std::filesystem::create_directories(keep_dir);
  std::string bytes = encode_generated_png(images.front());
  write_file_atomically(kept, bytes);
  TemplatePicture picture = decode_template_picture(std::move(bytes), kept.string());
  picture.path = kept;
  return picture;
}

}  // namespace doppel

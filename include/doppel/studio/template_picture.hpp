// The picture of a portrait template: its file, or, for a template with a `generate` section,
// the picture drawn once from its prompt (or its pack's) at its fixed seed and kept, so every
// pack can offer templates without shipping photos and every later shot starts from the same
// bytes.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "doppel/core/image.hpp"
#include "doppel/diffusion/generation_session.hpp"
#include "doppel/studio/portrait_template.hpp"
#include "doppel/studio/style_pack.hpp"

namespace doppel {

struct TemplatePicture {
  std::string bytes;  // the file as stored (what the hash is of)
  Image image;
  std::string sha256;          // template_picture_sha256(bytes)
  std::filesystem::path path;  // where it was read from or kept
};

// The largest template picture accepted (pixels): a 4096x4096 photo.
inline constexpr int64_t kMaxTemplatePixels = 4096LL * 4096;

// Decodes an uploaded or stored picture; kInvalidFile naming `label` for anything that is not
// a PNG, JPEG or WebP up to kMaxTemplatePixels.
TemplatePicture decode_template_picture(std::string bytes, const std::string& label);

// What a `generate` template draws: its prompt, or its pack's (from `packs`, "{subject}" filled
// with its `subject`), its size, sampler and fixed seed. Throws kInvalidArgument for a template
// with a picture file, kNotFound for a pack that is not in `packs`.
GenerationRequest drawn_template_request(const PortraitTemplate& portrait_template,
                                         const std::vector<StylePack>& packs);

// The digest of what a drawn picture depends on besides the model (the prompt and settings
// drawn_template_request resolves): the studio keeps one picture per template, model and this
// digest, so an edited template or pack prompt is drawn anew.
std::string drawn_template_settings_sha256(const PortraitTemplate& portrait_template,
                                           const std::vector<StylePack>& packs);

// The built-in tiny model draws small, as its text shots are 64 px in at most 8 steps: a drawn
// template's picture at most 128 px on its longer side (multiples of 8, at least 64) in at most 8
// steps, so an idle worker draws one in moments. Other templates are returned unchanged.
PortraitTemplate drawn_on_tiny_model(PortraitTemplate portrait_template);

// The template's picture. A `generate` template is drawn with `session` (whose model must be of
// the template's family; on the built-in tiny model drawn_on_tiny_model's size) the first time and
// kept in `keep_dir` under a name made of the settings and the model's hash, written atomically;
// `packs` gives the prompt of a template that names only its pack. Throws kNotFound for a missing
// picture file or pack, kInvalidArgument for a model of another family.
TemplatePicture template_picture(const PortraitTemplate& portrait_template,
                                 GenerationSession* session, const std::vector<StylePack>& packs,
                                 const std::filesystem::path& keep_dir);

}  // namespace doppel

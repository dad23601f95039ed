// Portrait templates over HTTP: the built-in templates (per style pack), and a picture a person
// uploads checked as a template: its faces numbered from the left and a preview of what would be
// repainted.
#include "doppel/face/face_detector.hpp"
#include "doppel/studio/portrait_template.hpp"
#include "doppel/studio/template_picture.hpp"
#include "doppel/studio/template_portrait.hpp"
#include "server/api_state.hpp"

namespace doppel::server {
namespace {

std::filesystem::path templates_dir(const ServerOptions& options) {
  return (options.styles_dir.empty() ? default_styles_dir() : options.styles_dir) / "templates";
}

json template_json(const PortraitTemplate& portrait_template) {
  json entry = portrait_template_to_json(portrait_template);
  entry["picture"] = portrait_template.generate ? "drawn" : "file";
  return entry;
}

}  // namespace

void ApiServer::State::register_template_routes() {
  add("GET", "/api/templates", "Built-in portrait templates (optionally ?pack= a style pack's)",
      true, "", [this](Call& call) {
        const std::string pack = call.request.get_param_value("pack");
        json list = json::array();
        for (const PortraitTemplate& portrait_template :
             load_portrait_templates(templates_dir(options)))
          if (pack.empty() || portrait_template.pack == pack)
            list.push_back(template_json(portrait_template));
        send_json(call.response, 200, {{"templates", list}});
      });
  add("POST", "/api/templates/check",
      "Check a picture as a template (multipart field 'picture'): its faces from the left; "
      "?preview=png answers the mask preview instead",
      true, "multipart", [this](Call& call) {
        if (!call.request.is_multipart_form_data())
          bad_request("upload the picture as multipart/form-data in the field 'picture'");
        const httplib::MultipartFormData* upload = nullptr;
        for (const auto& [name, file] : call.request.files) {
          if (name != "picture")
            bad_request("unknown form field '" + name + "'; send the picture in 'picture'");
          if (upload) bad_request("send one picture in the field 'picture'");
          upload = &file;
        }
        if (!upload) bad_request("no picture in the upload; send it in the field 'picture'");
        ImageHeader header;
        try {
          header = sniff_image_header(upload->content, "the picture");
        } catch (const Error&) {
          throw HttpError(415, "unsupported_media_type",
                          "the picture is not a PNG, JPEG or WebP image (judged by its content)");
        }
        if (static_cast<int64_t>(header.width) * header.height > kMaxTemplatePixels)
          throw HttpError(413, "too_large",
                          "the picture has " + std::to_string(header.width) + "x" +
                              std::to_string(header.height) + " pixels; at most " +
                              std::to_string(kMaxTemplatePixels) + " are accepted");
        check_decode_budget(header, "the picture");
        WorkSlot slot(photo_decode_slots(), std::chrono::seconds(30));
        if (!slot.held())
          throw HttpError(503, "busy", "the server is decoding other photos; try again shortly");
        const TemplatePicture picture = decode_template_picture(upload->content, "the picture");
        FaceDetector detector(default_landmark_model_path());
        std::vector<TemplateFace> faces;
        try {
          faces = find_template_faces(picture.image, detector);
        } catch (const Error& error) {
          throw HttpError(422, "no_face", error.what());
        }
        if (call.request.get_param_value("preview") == "png") {
          call.response.set_content(encode_png(template_mask_preview(picture.image, faces)),
                                    "image/png");
          return;
        }
        json list = json::array();
        for (const TemplateFace& face : faces)
          list.push_back({{"index", face.index},
                          {"box",
                           {{"left", face.box.left},
                            {"top", face.box.top},
                            {"width", face.box.width()},
                            {"height", face.box.height()}}}});
        send_json(call.response, 200,
                  {{"sha256", picture.sha256},
                   {"width", picture.image.width},
                   {"height", picture.image.height},
                   {"faces", list},
                   {"subjects_needed", faces.size()}});
      });
}

}  // namespace doppel::server

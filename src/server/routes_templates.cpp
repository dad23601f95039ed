// Portrait templates over HTTP: the built-in templates (per style pack) and the account's
// uploaded ones, a picture checked as a template (its faces numbered from the left and a preview
// of what would be repainted), uploads kept per account, and the template shots a shoot adds
// beside its text styles.
#include "doppel/core/atomic_file.hpp"
#include "doppel/face/face_detector.hpp"
#include "doppel/services/template_picture_job.hpp"
#include "doppel/store/account_templates.hpp"
#include "doppel/store/template_pictures.hpp"
#include "doppel/studio/portrait_template.hpp"
#include "doppel/studio/template_picture.hpp"
#include "doppel/studio/template_portrait.hpp"
#include "doppel/studio/template_shot.hpp"
#include "server/api_state.hpp"

namespace doppel::server {
namespace {

// At most this many templates in one shoot, and uploaded per account.
constexpr size_t kMaxTemplatesPerShoot = 10;
constexpr size_t kMaxTemplatesPerAccount = 200;

std::filesystem::path templates_dir(const ServerOptions& options) {
  return (options.styles_dir.empty() ? default_styles_dir() : options.styles_dir) / "templates";
}

json face_boxes_json(const std::vector<TemplateFace>& faces) {
  json list = json::array();
  for (const TemplateFace& face : faces)
    list.push_back({{"index", face.index},
                    {"box",
                     {{"left", face.box.left},
                      {"top", face.box.top},
                      {"width", face.box.width()},
                      {"height", face.box.height()}}}});
  return list;
}

// An uploaded template as the API shows it: its settings, with the id and name of its record,
// its picture's size and faces, and where to fetch the picture.
json uploaded_template_json(const store::AccountTemplate& entry) {
  const json stored = parse_stored_json(entry.settings_json);
  json answer = stored.value("settings", json::object());
  answer["id"] = entry.id;
  answer["name"] = entry.name;
  answer["picture"] = "uploaded";
  answer["source"] = "uploaded";
  answer["sha256"] = entry.picture_blob;
  answer["width"] = stored.value("width", 0);
  answer["height"] = stored.value("height", 0);
  answer["faces_found"] = stored.value("faces_found", json::array());
  answer["picture_url"] = "/api/templates/" + entry.id + "/picture";
  answer["created_at"] = entry.created_at;
  return answer;
}

// The ControlNets an uploaded template is steered by: the usual SD 1.5 files when the server has
// them (the scene's lines and the face's pose stay), none otherwise.
void add_installed_controls(PortraitTemplate& settings) {
  if (settings.family != ModelFamily::kSd1) return;
  const std::filesystem::path folder = default_models_dir() / "controlnet";
  if (std::filesystem::exists(folder / "control_v11p_sd15_openpose.safetensors"))
    settings.face_pose = TemplateControl{"control_v11p_sd15_openpose.safetensors", 1.0, 0.0, 1.0};
  if (std::filesystem::exists(folder / "control_v11p_sd15_canny.safetensors"))
    settings.canny = TemplateControl{"control_v11p_sd15_canny.safetensors", 0.5, 0.0, 0.8};
}

// "1,2" (face numbers from the left, from 1 as the studio shows them) -> indices from 0.
std::vector<int> chosen_faces(const std::string& text, size_t face_count) {
  std::vector<int> faces;
  std::stringstream list(text);
  for (std::string item; std::getline(list, item, ',');) {
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (item.empty() || item.size() > 3 ||
        item.find_first_not_of("0123456789") != std::string::npos)
      bad_request("field 'faces' must list face numbers from the left, e.g. \"1\" or \"1,2\"");
    const int number = std::stoi(item);
    if (number < 1 || static_cast<size_t>(number) > face_count)
      bad_request("field 'faces': the picture has " + std::to_string(face_count) +
                  " face(s); face " + item + " does not exist");
    if (std::find(faces.begin(), faces.end(), number - 1) != faces.end())
      bad_request("field 'faces' lists face " + item + " twice");
    faces.push_back(number - 1);
  }
  std::sort(faces.begin(), faces.end());
  return faces;
}

}  // namespace

std::optional<std::string> ApiServer::State::drawn_template_picture(
    const PortraitTemplate& portrait_template, const store::Model& model) {
  if (!portrait_template.generate) return std::nullopt;
  std::string settings;
  try {
    settings = drawn_template_settings_sha256(
        model.builtin ? drawn_on_tiny_model(portrait_template) : portrait_template, styles);
  } catch (const Error&) {
    return std::nullopt;  // its pack is not installed: nothing can have been drawn from it
  }
  for (const store::DrawnTemplatePicture& picture :
       store::list_drawn_template_pictures(repository->database(), model.id))
    if (picture.template_id == portrait_template.id && picture.settings_sha256 == settings)
      return picture.blob_sha256;
  return std::nullopt;
}

json ApiServer::State::builtin_templates_json(Call& call, const std::string& pack,
                                              bool draw_missing) {
  const store::Model model = repository->default_model();
  json list = json::array();
  for (const PortraitTemplate& portrait_template :
       load_portrait_templates(templates_dir(options))) {
    if (!pack.empty() && portrait_template.pack != pack) continue;
    json entry = portrait_template_to_json(portrait_template);
    entry["picture"] = portrait_template.generate ? "drawn" : "file";
    entry["source"] = "builtin";
    const auto ready = [&](const std::string& url) {
      entry["picture_status"] = "ready";
      entry["picture_url"] = url;
    };
    if (!portrait_template.generate) {
      if (std::filesystem::is_regular_file(portrait_template.image))
        ready("/api/template-pictures?template=" + portrait_template.id);
      else
        entry["picture_status"] = "failed";  // its file is missing
    } else if (portrait_template.family != parse_model_family(model.family)) {
      entry["picture_status"] = "other_family";  // drawn once a model of its family is the default
    } else if (std::find_if(styles.begin(), styles.end(),
                            [&](const StylePack& each) {
                              return each.id == portrait_template.pack;
                            }) == styles.end() &&
               portrait_template.generate->prompt.empty()) {
      entry["picture_status"] = "failed";  // drawn from a style pack this server does not have
    } else if (const auto digest = drawn_template_picture(portrait_template, model)) {
      ready("/api/template-pictures?sha256=" + *digest);
    } else {
      // One job per template, model and drawing settings for the whole installation.
      const std::string key =
          "template-picture:" + portrait_template.id + ":" + model.id + ":" +
          drawn_template_settings_sha256(
              model.builtin ? drawn_on_tiny_model(portrait_template) : portrait_template, styles)
              .substr(0, 16);
      if (const auto pending = installation_job_pending(services::kTemplatePictureJobKind, key)) {
        entry["picture_status"] = *pending ? "drawing" : "failed";
      } else if (draw_missing) {
        queue::NewJob job;
        job.kind = services::kTemplatePictureJobKind;
        job.payload_json = services::template_picture_payload_to_json(
                               {portrait_template.id, model.id, model.path, templates_dir(options)})
                               .dump();
        job.idempotency_key = key;
        job.max_attempts = 2;
        jobs->enqueue(call.account_id(), job);
        entry["picture_status"] = "drawing";
      } else {
        entry["picture_status"] = "missing";
      }
    }
    list.push_back(std::move(entry));
  }
  return list;
}

void ApiServer::State::template_picture_file(Call& call) {
  std::string bytes;
  if (call.request.has_param("sha256")) {
    // Only the drawn templates' pictures: a digest of anything else in the blob store is not
    // found.
    const std::string digest = call.request.get_param_value("sha256");
    if (!store::is_sha256_hex(digest) ||
        repository->database()
            .execute("SELECT 1 FROM template_pictures WHERE blob_sha256 = ?", {digest})
            .rows.empty())
      not_found("template picture");
    bytes = blobs->get(digest);
    call.response.set_header("Cache-Control", "private, max-age=31536000, immutable");
  } else {
    const std::string id = call.request.get_param_value("template");
    const std::vector<PortraitTemplate> built_in = load_portrait_templates(templates_dir(options));
    const auto found = std::find_if(built_in.begin(), built_in.end(), [&](const auto& each) {
      return each.id == id && !each.generate;
    });
    if (id.empty() || found == built_in.end() || !std::filesystem::is_regular_file(found->image))
      not_found("template picture");
    bytes = read_file(found->image);
    // The file may be replaced: cached for a while, not forever.
    call.response.set_header("Cache-Control", "private, max-age=3600");
  }
  const ImageHeader header = sniff_image_header(bytes, "the template's picture");
  call.response.set_header("X-Content-Type-Options", "nosniff");
  call.response.set_content(bytes, header.format == ImageFormat::kPng    ? "image/png"
                                   : header.format == ImageFormat::kJpeg ? "image/jpeg"
                                                                         : "image/webp");
}

struct ApiServer::State::CheckedTemplatePicture {
  TemplatePicture picture;
  std::vector<TemplateFace> faces;
};

ApiServer::State::CheckedTemplatePicture ApiServer::State::check_template_picture(
    const httplib::MultipartFormData& upload) {
  check_uploaded_picture(upload.content, "the picture", kMaxTemplatePixels);
  WorkSlot slot(photo_decode_slots(), std::chrono::seconds(30));
  if (!slot.held())
    throw HttpError(503, "busy", "the server is decoding other photos; try again shortly");
  CheckedTemplatePicture checked;
  checked.picture = decode_template_picture(upload.content, "the picture");
  FaceDetector detector(default_landmark_model_path());
  try {
    checked.faces = find_template_faces(checked.picture.image, detector);
  } catch (const Error& error) {
    if (error.code() != ErrorCode::kInvalidArgument) throw;
    throw HttpError(422, "no_face", error.what());
  }
  return checked;
}

void ApiServer::State::register_template_routes() {
  add("GET", "/api/templates",
      "Portrait templates: the built-in ones and the account's uploads (optionally ?pack= a "
      "style pack's built-in ones)",
      true, "", [this](Call& call) {
        const std::string pack = call.request.get_param_value("pack");
        json list = builtin_templates_json(call, pack, false);
        if (pack.empty())
          for (const store::AccountTemplate& entry :
               store::list_account_templates(repository->database(), call.account_id()))
            list.push_back(uploaded_template_json(entry));
        send_json(call.response, 200, {{"templates", list}});
      });
  add("POST", "/api/template-pictures",
      "Draw the built-in templates' missing pictures with the default model (queues jobs that an "
      "idle worker runs); answers the built-in templates as GET /api/templates lists them",
      true, "", [this](Call& call) {
        send_json(call.response, 202, {{"templates", builtin_templates_json(call, "", true)}});
      });
  add("GET", "/api/template-pictures",
      "A built-in template's picture: a drawn one by ?sha256=, a file by ?template= (the "
      "picture_url of GET /api/templates)",
      true, "", [this](Call& call) { template_picture_file(call); });
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
        const CheckedTemplatePicture checked = check_template_picture(*upload);
        if (call.request.get_param_value("preview") == "png") {
          call.response.set_content(
              encode_png(template_mask_preview(checked.picture.image, checked.faces)), "image/png");
          return;
        }
        send_json(call.response, 200,
                  {{"sha256", checked.picture.sha256},
                   {"width", checked.picture.image.width},
                   {"height", checked.picture.image.height},
                   {"faces", face_boxes_json(checked.faces)},
                   {"subjects_needed", checked.faces.size()}});
      });
  add("POST", "/api/templates",
      "Keep a picture as one of the account's templates (multipart: 'picture', 'name', and "
      "'faces', the face numbers from the left to replace, e.g. \"1\"; default all)",
      true, "multipart", [this](Call& call) { upload_template(call); });
  add("GET", "/api/templates/{template_id}/picture", "An uploaded template's picture", true, "",
      [this](Call& call) {
        const auto entry = store::get_account_template(repository->database(), call.account_id(),
                                                       call.id(1, "template"));
        if (!entry) not_found("template");
        const std::string bytes = blobs->get(entry->picture_blob);
        ImageHeader header = sniff_image_header(bytes, "the template's picture");
        call.response.set_header("Cache-Control", "private, max-age=31536000, immutable");
        call.response.set_header("X-Content-Type-Options", "nosniff");
        call.response.set_content(bytes, header.format == ImageFormat::kPng    ? "image/png"
                                         : header.format == ImageFormat::kJpeg ? "image/jpeg"
                                                                               : "image/webp");
      });
  add("DELETE", "/api/templates/{template_id}",
      "Delete one of the account's templates (portraits made with it stay)", true, "",
      [this](Call& call) {
        const store::Deletion deletion = store::delete_account_template(
            repository->database(), *repository, call.account_id(), call.id(1, "template"));
        if (!deletion.found) not_found("template");
        remove_blobs(deletion);
        send_json(call.response, 200, {{"deleted", true}});
      });
}

void ApiServer::State::upload_template(Call& call) {
  if (!call.request.is_multipart_form_data())
    bad_request("upload the picture as multipart/form-data in the field 'picture'");
  const httplib::MultipartFormData* upload = nullptr;
  std::string name;
  std::optional<std::string> faces_text;
  for (const auto& [field, part] : call.request.files) {
    if (field == "picture") {
      if (upload) bad_request("send one picture in the field 'picture'");
      upload = &part;
    } else if (field == "name") {
      name = part.content;
    } else if (field == "faces") {
      faces_text = part.content;
    } else {
      bad_request("unknown form field '" + field + "'; the fields are picture, name and faces");
    }
  }
  if (!upload) bad_request("no picture in the upload; send it in the field 'picture'");
  name = check_name(name);
  if (name.size() > 80) bad_request("field 'name' is longer than 80 bytes");
  if (std::any_of(name.begin(), name.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }))
    bad_request("field 'name' must not contain control characters");
  if (store::list_account_templates(repository->database(), call.account_id()).size() >=
      kMaxTemplatesPerAccount)
    throw HttpError(409, "conflict",
                    "you have " + std::to_string(kMaxTemplatesPerAccount) +
                        " templates, the most an account keeps; delete some first");
  const CheckedTemplatePicture checked = check_template_picture(*upload);
  PortraitTemplate settings;
  settings.id = "upload";  // the record's id replaces it when the template is used
  settings.name = name;
  settings.family = parse_model_family(repository->default_model().family);
  if (faces_text) settings.faces = chosen_faces(*faces_text, checked.faces.size());
  add_installed_controls(settings);
  store::AccountTemplate entry;
  entry.account_id = call.account_id();
  entry.name = name;
  entry.picture_blob = blobs->put(checked.picture.bytes);
  entry.settings_json = json{{"settings", portrait_template_to_json(settings)},
                             {"width", checked.picture.image.width},
                             {"height", checked.picture.image.height},
                             {"faces_found", face_boxes_json(checked.faces)}}
                            .dump();
  entry = store::add_account_template(repository->database(), entry);
  send_json(call.response, 201, uploaded_template_json(entry));
}

void ApiServer::State::add_template_shots(Call& call, const json& body,
                                          const store::Subject& subject,
                                          const ShootRequest& request, const store::Model& model,
                                          std::vector<Shot>& shots) {
  if (!body.contains("templates")) return;
  const json& list = body["templates"];
  if (!list.is_array() || list.size() > kMaxTemplatesPerShoot)
    bad_request("field 'templates' must be a list of up to " +
                std::to_string(kMaxTemplatesPerShoot) +
                " templates, each {\"id\": ...} (GET /api/templates)");
  // A person of a template with several faces: their words and newest LoRA on the model, or for
  // an instant person their photo through IP-Adapter plus-face (checked now, as for the shoot's
  // subject).
  const auto person = [&](const json& value) {
    if (!value.is_string()) bad_request("'templates[].subjects' must list subject ids");
    const std::string id = value.get<std::string>();
    if (!is_record_id(id)) not_found("subject");
    const auto found = repository->get_subject(call.account_id(), id);
    if (!found) not_found("subject");
    TemplateShotSubject chosen_person;
    chosen_person.subject_id = id;
    chosen_person.subject.trigger_word = found->trigger_word;
    chosen_person.subject.class_word = found->class_word;
    if (found->identity_source == store::kIdentityInstant) {
      // Shot from their photo, even with a LoRA kept from before.
      require_identity_files(*found, model, true, true);
      chosen_person.ip_adapter_scale = services::kInstantIpAdapterScale;
      return chosen_person;
    }
    std::optional<store::LoraVersion> newest;
    for (const auto& version : repository->list_lora_versions(call.account_id(), id)) {
      const json trained = parse_stored_json(version.settings_json);
      const json path = trained.is_object() ? trained.value("model_path", json()) : json();
      if (version.blob_sha256 && (!path.is_string() || path.get<std::string>() == model.path) &&
          (!newest || version.created_at >= newest->created_at))
        newest = version;
    }
    if (newest) {
      chosen_person.subject.lora = lora_cache_path(options.data_dir, *newest->blob_sha256);
      chosen_person.subject.lora_sha256 = *newest->blob_sha256;
      const json trained = parse_stored_json(newest->settings_json);
      if (trained.is_object() && trained.value("class_word", json()).is_string())
        chosen_person.subject.class_word = trained["class_word"].get<std::string>();
    }
    return chosen_person;
  };
  std::vector<PortraitTemplate> built_in;
  std::vector<ShootTemplate> chosen;
  for (const json& item : list) {
    if (!item.is_object())
      bad_request("field 'templates' must list objects such as {\"id\": \"beach\"}");
    for (const auto& [key, value] : item.items())
      if (key != "id" && key != "subjects")
        bad_request("unknown field 'templates[]." + key + "'; the fields are id and subjects");
    const std::string id = *string_field(item, "id", true, 64);
    std::vector<TemplateShotSubject> people;
    if (item.contains("subjects")) {
      const json& ids = item["subjects"];
      if (!ids.is_array() || ids.empty() || ids.size() > 8)
        bad_request("'templates[].subjects' must list 1-8 subject ids, one per face from the left");
      for (const json& value : ids) people.push_back(person(value));
    }
    const size_t people_count = people.empty() ? 1 : people.size();
    for (const ShootTemplate& earlier : chosen)
      if (earlier.settings.id == id)
        bad_request("template '" + id + "' is listed twice; raise the count instead");
    ShootTemplate shoot_template;
    if (is_record_id(id)) {
      const auto entry = store::get_account_template(repository->database(), call.account_id(), id);
      if (!entry) not_found("template");
      const json stored = parse_stored_json(entry->settings_json);
      shoot_template.settings = portrait_template_from_json(stored.at("settings"));
      shoot_template.settings.id = entry->id;
      shoot_template.settings.name = entry->name;
      shoot_template.picture_sha256 = entry->picture_blob;
      const size_t found = stored.value("faces_found", json::array()).size();
      const size_t replaced =
          shoot_template.settings.faces.empty() ? found : shoot_template.settings.faces.size();
      if (replaced != people_count)
        bad_request("template '" + entry->name + "' replaces " + std::to_string(replaced) +
                    " face(s) but " + std::to_string(people_count) +
                    " person(s) were given; give one subject per face from the left "
                    "('templates[].subjects'), or upload it again choosing the faces");
    } else {
      if (built_in.empty()) built_in = load_portrait_templates(templates_dir(options));
      const auto found = std::find_if(built_in.begin(), built_in.end(),
                                      [&](const PortraitTemplate& t) { return t.id == id; });
      if (found == built_in.end())
        bad_request("unknown template '" + id + "'; GET /api/templates lists them");
      shoot_template.settings = *found;
      // A picture file is named by its digest; a drawn one by the digest of the picture kept for
      // this model (the one the gallery shows), else the worker draws (and names) it.
      if (!found->generate)
        shoot_template.picture_sha256 = template_picture_sha256(read_file(found->image));
      else if (const auto drawn = drawn_template_picture(*found, model))
        shoot_template.picture_sha256 = *drawn;
    }
    for (const auto* control : {&shoot_template.settings.face_pose, &shoot_template.settings.canny})
      if (*control &&
          !std::filesystem::exists(std::filesystem::path((*control)->model).is_absolute()
                                       ? std::filesystem::path((*control)->model)
                                       : default_models_dir() / "controlnet" / (*control)->model))
        throw HttpError(409, "template_not_installed",
                        "template '" + id + "' needs the ControlNet " + (*control)->model +
                            ", which the server does not have; put it in " +
                            (default_models_dir() / "controlnet").string() +
                            " or choose another template");
    if (shoot_template.settings.family != request.family)
      bad_request("template '" + id + "' is made for " +
                  model_family_name(shoot_template.settings.family) +
                  " models, but the default model is " + model_family_name(request.family));
    shoot_template.subjects = std::move(people);
    chosen.push_back(std::move(shoot_template));
  }
  if (chosen.empty()) return;
  // The shoot's subject alone in a template: an instant person's likeness is their photo through
  // IP-Adapter plus-face, as in their text shots (apply_identity_source).
  const bool instant_alone = subject.identity_source == store::kIdentityInstant &&
                             std::any_of(chosen.begin(), chosen.end(),
                                         [](const auto& each) { return each.subjects.empty(); });
  if (instant_alone) require_identity_files(subject, model, true, !request.subject.lora);
  for (TemplateShot& planned :
       plan_template_shots(request, chosen, static_cast<int>(shots.size()))) {
    json recipe = planned.shot.recipe;
    recipe["model"]["path"] = model.path;
    if (instant_alone && planned.subjects.empty())
      recipe["ip_adapter"] = {{"scale", services::kInstantIpAdapterScale}};
    if (model.builtin) {
      // The tiny model repaints 64-pixel face crops in a few steps (as its text shots are small).
      recipe["width"] = 64;
      recipe["height"] = 64;
      recipe["steps"] = std::min<int64_t>(recipe["steps"].get<int64_t>(), 8);
    }
    shots.push_back(template_shot_from_recipe(recipe).shot);
  }
}

}  // namespace doppel::server

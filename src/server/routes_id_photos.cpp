// ID photos over HTTP (docs/id-photos.md "In the studio"): the document specifications, making
// or checking an ID photo from one of a person's accepted photos, a generated portrait of them
// or an uploaded photo, and the downloads a compliant photo earns (the photo at the document's
// pixels with its DPI, and a print sheet as PNG or PDF). Making one takes 2-4 s of this
// machine's CPU (landmarks, GrabCut matte, guided filter), so it runs as an "id_photo" job;
// the answer names the job, and its result (and the stored image's recipe) holds the verdict.
#include <cctype>
#include <cstdio>

#include "doppel/core/image_density.hpp"
#include "doppel/idphoto/id_photo_spec.hpp"
#include "doppel/idphoto/print_sheet.hpp"
#include "doppel/services/id_photo_job.hpp"
#include "server/api_state.hpp"

namespace doppel::server {
namespace {

std::string hex_colour(const std::array<uint8_t, 3>& rgb) {
  char text[8];
  std::snprintf(text, sizeof text, "#%02X%02X%02X", rgb[0], rgb[1], rgb[2]);
  return text;
}

json range_json(const MillimetreRange& range) {
  return {range.min, range.max};
}

json spec_view(const IdPhotoSpec& spec) {
  json backgrounds = json::array();
  for (const IdPhotoColour& colour : spec.backgrounds)
    backgrounds.push_back({{"name", colour.name}, {"rgb", hex_colour(colour.rgb)}});
  json view = {{"id", spec.id},
               {"name", spec.name},
               {"name_zh", spec.name_zh.empty() ? json(nullptr) : json(spec.name_zh)},
               {"size_mm", {spec.width_mm, spec.height_mm}},
               {"pixels", {spec.width_px, spec.height_px}},
               {"dpi", spec.dpi},
               {"head_height_mm", range_json(spec.head_height_mm)},
               {"eye_line_mm", range_json(spec.eye_line_mm)},
               {"top_margin_mm", spec.top_margin_mm ? range_json(*spec.top_margin_mm) : json()},
               {"backgrounds", backgrounds},
               {"authority", spec.authority},
               {"source", spec.source}};
  return view;
}

// The spec a request names; 400 naming the valid ids when there is none such.
const IdPhotoSpec& requested_spec(const std::string& id) {
  try {
    return find_id_photo_spec(built_in_id_photo_specs(), id);
  } catch (const Error& error) {
    bad_request(std::string("field 'spec': ") + error.what());
  }
}

// The background colour's name; 400 naming the document's colours for any other.
std::string requested_background(const IdPhotoSpec& spec, const std::string& name) {
  try {
    return choose_background(spec, name).name;
  } catch (const Error& error) {
    bad_request(std::string("field 'background': ") + error.what());
  }
}

// The verdict of an image made as an ID photo, or 404 when the image is no such photo.
json id_photo_record(const store::Image& image) {
  const json recipe = parse_stored_json(image.recipe_json);
  if (!recipe.is_object() || !recipe.contains("id_photo") ||
      !recipe["id_photo"].contains("verdict"))
    throw HttpError(404, "not_found", "this image is not an ID photo");
  return recipe["id_photo"];
}

// Only a compliant photo is offered as an ID photo; otherwise 409 with the reasons.
void require_compliant(const json& record) {
  if (record.value("compliant", false) && record.value("made", false)) return;
  std::string reasons;
  const json verdict = record.value("verdict", json::object());
  for (const json& reason : verdict.value("reasons", json::array()))
    if (reason.is_string()) reasons += (reasons.empty() ? "" : "; ") + reason.get<std::string>();
  throw HttpError(409, "not_compliant",
                  "this photo does not pass the rules of " + record.value("spec", "the document") +
                      (reasons.empty() ? "" : ": " + reasons) +
                      ", so it is not offered as an ID photo; make one from another photo");
}

std::string download_format(const httplib::Request& request, const std::set<std::string>& allowed) {
  const std::string format =
      request.has_param("format") ? lowercase(request.get_param_value("format")) : "png";
  if (!allowed.contains(format)) {
    std::string names;
    for (const std::string& name : allowed) names += (names.empty() ? "" : ", ") + name;
    bad_request("format '" + format + "' is not offered; choose one of " + names);
  }
  return format;
}

}  // namespace

void ApiServer::State::register_id_photo_routes() {
  add("GET", "/api/id-photo/specs",
      "ID-photo document specifications (sizes, DPI, head and eye ranges, backgrounds) and the "
      "print-sheet papers",
      true, "", [](Call& call) {
        json specs = json::array();
        for (const IdPhotoSpec& spec : built_in_id_photo_specs()) specs.push_back(spec_view(spec));
        json papers = json::array();
        for (const PrintSheetPaper& paper : print_sheet_papers())
          papers.push_back({{"id", paper.id},
                            {"name", paper.name},
                            {"size_mm", {paper.short_side_mm, paper.long_side_mm}}});
        send_json(call.response, 200, {{"specs", specs}, {"papers", papers}});
      });
  const char* body =
      "spec:string!,subject_id:string!,photo_id:string,image_id:string,background:string,"
      "idempotency_key:string";
  add("POST", "/api/id-photo/make",
      "Make an ID photo from a subject's accepted photo (photo_id) or generated portrait "
      "(image_id); queues an id_photo job whose result holds the verdict",
      true, JsonBody{body}, [this](Call& call) { queue_id_photo_from_record(call, "make"); });
  add("POST", "/api/id-photo/check",
      "Check a subject's photo or portrait as a finished ID photo (queues an id_photo job)", true,
      JsonBody{body}, [this](Call& call) { queue_id_photo_from_record(call, "check"); });
  add("POST", "/api/id-photo/upload",
      "Make (or with ?action=check, check) an ID photo from an uploaded photo (multipart field "
      "'photo'; ?spec=, ?subject_id=, ?background=)",
      true, "multipart", [this](Call& call) { queue_id_photo_from_upload(call); });
  add("GET", "/api/images/{image_id}/id-photo",
      "Download a compliant ID photo at the document's pixels with its DPI (?format=png|jpg)", true,
      "", [this](Call& call) {
        const auto image = repository->get_image(call.account_id(), call.id(1, "image"));
        if (!image) not_found("image");
        const json record = id_photo_record(*image);
        require_compliant(record);
        const std::string format = download_format(call.request, {"png", "jpg"});
        std::string bytes = blobs->get(image->blob_sha256);
        if (format == "jpg")
          bytes = encode_jpeg(decode_image(bytes), record.value("dpi", 300.0), 95);
        call.response.set_header(
            "Content-Disposition",
            attachment_header("id-photo-" + record.value("spec", std::string("photo")) + "-" +
                              image->id.substr(0, 8) + "." + format));
        call.response.set_header("X-Content-Type-Options", "nosniff");
        call.response.set_content(std::move(bytes), format == "jpg" ? "image/jpeg" : "image/png");
      });
  add("GET", "/api/images/{image_id}/id-photo-sheet",
      "Download a print sheet of a compliant ID photo (?paper=4r|5r|a6|a4|letter, ?copies=, "
      "?format=png|pdf)",
      true, "", [this](Call& call) {
        const auto image = repository->get_image(call.account_id(), call.id(1, "image"));
        if (!image) not_found("image");
        const json record = id_photo_record(*image);
        require_compliant(record);
        const std::string format = download_format(call.request, {"png", "pdf"});
        const std::string paper_id =
            call.request.has_param("paper") ? call.request.get_param_value("paper") : "4r";
        const PrintSheetPaper* paper = nullptr;
        try {
          paper = &find_print_sheet_paper(paper_id);
        } catch (const Error& error) {
          bad_request(std::string("paper: ") + error.what());
        }
        PrintSheetOptions options;
        if (call.request.has_param("copies")) {
          const std::string copies = call.request.get_param_value("copies");
          const bool digits = !copies.empty() && copies.size() <= 3 &&
                              std::all_of(copies.begin(), copies.end(), ::isdigit);
          if (!digits || std::stoi(copies) < 1 || std::stoi(copies) > 100)
            bad_request("copies must be a whole number from 1 to 100");
          options.copies = std::stoi(copies);
        }
        const IdPhotoSpec& spec = requested_spec(record.value("spec", ""));
        const PrintSheet sheet = compose_print_sheet(decode_image(blobs->get(image->blob_sha256)),
                                                     spec, *paper, options);
        const std::string name = "id-photo-" + spec.id + "-" + paper->id + "-sheet." + format;
        call.response.set_header("Content-Disposition", attachment_header(name));
        call.response.set_header("X-Content-Type-Options", "nosniff");
        if (format == "pdf")
          call.response.set_content(
              encode_image_pdf(sheet.image, sheet.width_mm, sheet.height_mm,
                               spec.name + " x" + std::to_string(sheet.copies)),
              "application/pdf");
        else
          call.response.set_content(encode_png_with_density(sheet.image, sheet.dpi), "image/png");
      });
}

void ApiServer::State::queue_id_photo_from_record(Call& call, const std::string& action) {
  const json& body = call.body;
  const IdPhotoSpec& spec = requested_spec(*string_field(body, "spec", true, 64));
  const std::string background =
      requested_background(spec, string_field(body, "background", false, 32).value_or(""));
  const std::string subject_id = *string_field(body, "subject_id", true, 64);
  if (!is_record_id(subject_id)) not_found("subject");
  const auto subject = repository->get_subject(call.account_id(), subject_id);
  if (!subject) not_found("subject");
  const auto photo_id = string_field(body, "photo_id", false, 64);
  const auto image_id = string_field(body, "image_id", false, 64);
  if (photo_id.has_value() == image_id.has_value())
    bad_request(
        "name the source: either 'photo_id' (one of the person's accepted photos) or "
        "'image_id' (a portrait of them); to use another photo, upload it to "
        "/api/id-photo/upload");
  std::string source_sha256;
  json source;
  if (photo_id) {
    const auto photo = is_record_id(*photo_id) ? repository->get_photo(call.account_id(), *photo_id)
                                               : std::nullopt;
    if (!photo || photo->subject_id != subject->id) not_found("photo");
    if (photo->verdict != store::PhotoVerdict::kAccepted)
      throw HttpError(409, "not_accepted",
                      "this photo was not accepted as a clear photo of the face; choose one of "
                      "the person's accepted photos");
    source_sha256 = photo->blob_sha256;
    source = {{"kind", "photo"}, {"id", photo->id}};
  } else {
    const auto image = is_record_id(*image_id) ? repository->get_image(call.account_id(), *image_id)
                                               : std::nullopt;
    const auto shoot =
        image ? repository->get_shoot(call.account_id(), image->shoot_id) : std::nullopt;
    if (!image || !shoot || shoot->subject_id != subject->id) not_found("image");
    source_sha256 = image->blob_sha256;
    source = {{"kind", "image"}, {"id", image->id}};
  }
  queue_id_photo(call, action, *subject, spec, background, source_sha256, source,
                 string_field(body, "idempotency_key", false, 100));
}

void ApiServer::State::queue_id_photo_from_upload(Call& call) {
  const httplib::Request& request = call.request;
  auto param = [&](const char* name) {
    return request.has_param(name) ? request.get_param_value(name) : std::string();
  };
  const std::string action = param("action").empty() ? "make" : param("action");
  if (action != "make" && action != "check")
    bad_request("action must be 'make' (the default) or 'check'");
  if (param("spec").empty()) bad_request("name the document with ?spec= (GET /api/id-photo/specs)");
  const IdPhotoSpec& spec = requested_spec(param("spec"));
  const std::string background = requested_background(spec, param("background"));
  const std::string subject_id = param("subject_id");
  if (!is_record_id(subject_id)) not_found("subject");
  const auto subject = repository->get_subject(call.account_id(), subject_id);
  if (!subject) not_found("subject");
  if (!request.is_multipart_form_data())
    throw HttpError(415, "unsupported_media_type",
                    "upload the photo as multipart/form-data in the field 'photo'");
  const httplib::MultipartFormData* upload = nullptr;
  for (const auto& [name, file] : request.files) {
    if (name != "photo")
      bad_request("unknown form field '" + name + "'; send the photo in the field 'photo'");
    if (upload) bad_request("send one photo in the field 'photo'");
    upload = &file;
  }
  if (!upload) bad_request("no photo in the upload; send it in the field 'photo'");
  // Refused as the subject's photo upload refuses a file (same codes and words).
  const std::string name = upload_file_name(upload->filename, 0);
  check_uploaded_picture(upload->content, name, options.max_photo_pixels);
  {
    WorkSlot slot(photo_decode_slots(), std::chrono::seconds(30));
    if (!slot.held())
      throw HttpError(503, "busy", "the server is decoding other photos; try again in a minute");
    ImageReadOptions read;
    read.max_pixels = options.max_photo_pixels;
    read.max_decoded_bytes = options.max_photo_decode_bytes;
    read.max_side = 1024;  // proves the file whole; the worker decodes it in full
    try {
      decode_image(upload->content, read, name);
    } catch (const Error& error) {
      throw HttpError(422, "invalid_file", error.what());
    }
  }
  // Kept in the blob store for the worker; a made photo is stored as the shoot's image.
  const std::string digest = blobs->put(upload->content);
  queue_id_photo(call, action, *subject, spec, background, digest,
                 {{"kind", "upload"}, {"file", name}}, std::nullopt);
}

void ApiServer::State::queue_id_photo(Call& call, const std::string& action,
                                      const store::Subject& subject, const IdPhotoSpec& spec,
                                      const std::string& background,
                                      const std::string& source_sha256, const json& source,
                                      const std::optional<std::string>& idempotency_key) {
  services::IdPhotoPayload payload;
  payload.action = action;
  payload.spec_id = spec.id;
  payload.background = background;
  payload.source_sha256 = source_sha256;
  payload.source = source;
  std::optional<store::Shoot> shoot;
  if (action == "make") {
    // The made photo is an image of a one-image shoot of the person: listed, downloaded and
    // deleted with their other portraits.
    store::Shoot record;
    record.subject_id = subject.id;
    record.styles_json = json::array({"id-photo:" + spec.id}).dump();
    record.image_count = 1;
    record.status = store::ShootStatus::kQueued;
    shoot = repository->create_shoot(call.account_id(), record);
    payload.shoot_id = shoot->id;
  }
  queue::NewJob job;
  job.kind = services::kIdPhotoJobKind;
  job.subject_id = subject.id;
  job.payload_json = services::id_photo_payload_to_json(payload).dump();
  if (idempotency_key) job.idempotency_key = "id-photo:" + action + ":" + *idempotency_key;
  job.max_attempts = 2;
  const store::Job queued = jobs->enqueue(call.account_id(), job);
  const std::string queued_shoot = parse_stored_json(queued.payload_json).value("shoot_id", "");
  if (shoot && queued_shoot != shoot->id) {
    // A repeated request: the first one's job and shoot stand.
    repository->delete_shoot(call.account_id(), shoot->id);
    shoot = repository->get_shoot(call.account_id(), queued_shoot);
  }
  send_json(call.response, 202,
            {{"job", job_json(queued)}, {"shoot", shoot ? shoot_json(*shoot) : json(nullptr)}});
}

std::optional<json> ApiServer::State::id_photo_of_shoot(const json& body) {
  const auto spec_id = string_field(body, "id_photo", false, 64);
  if (!spec_id) {
    if (body.contains("id_photo_background"))
      bad_request("field 'id_photo_background' goes with 'id_photo' (the document's spec id)");
    return std::nullopt;
  }
  const IdPhotoSpec& spec = requested_spec(*spec_id);
  const std::string background =
      requested_background(spec, string_field(body, "id_photo_background", false, 32).value_or(""));
  return json{{"spec", spec.id}, {"background", background}};
}

std::string ApiServer::State::id_photo_style(const json& id_photo) const {
  // The built-in ID-photo styles draw a plain light or blue backdrop; the maker then fills
  // the document's exact colour.
  const std::string wanted =
      id_photo.value("background", "") == "blue" ? "id_photo_blue" : "id_photo_white";
  for (const StylePack& pack : styles)
    if (pack.id == wanted) return pack.id;
  throw HttpError(409, "style_not_installed",
                  "the built-in style " + wanted +
                      " is missing from the server's styles folder; name a style in 'styles'");
}

}  // namespace doppel::server

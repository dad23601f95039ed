// Subjects, their photos (upload and intake), training, LoRA versions and their training
// samples.
#include <limits>

#include "doppel/store/training_samples.hpp"
#include "server/api_state.hpp"

namespace doppel::server {
namespace {

// At most this many sample images per training: each costs a generation, and the card shows a
// handful.
constexpr int64_t kMaxTrainingSamples = 20;

// Steps between the training's sample images: a quarter of the run unless the request says
// (0: none).
int64_t sample_interval(const json& body, int64_t steps) {
  const auto asked =
      optional_integer_field(body, "sample_every", std::numeric_limits<int64_t>::min(),
                             std::numeric_limits<int64_t>::max());
  if (!asked) return std::max<int64_t>(1, steps / 4);
  if (*asked < 0 || *asked > steps)
    bad_request("field 'sample_every' must be from 0 (no samples) to the training steps (" +
                std::to_string(steps) + ")");
  if (*asked > 0 && steps / *asked > kMaxTrainingSamples)
    bad_request("field 'sample_every': a sample every " + std::to_string(*asked) + " of " +
                std::to_string(steps) + " steps would make " + std::to_string(steps / *asked) +
                " images; make it at least " +
                std::to_string((steps + kMaxTrainingSamples - 1) / kMaxTrainingSamples) +
                " (at most " + std::to_string(kMaxTrainingSamples) +
                " samples per training), or 0 for none");
  return *asked;
}

json training_sample_json(const store::TrainingSample& sample) {
  return {{"step", sample.step},
          {"index", sample.sample_index},
          {"sha256", sample.blob_sha256},
          {"png_url", "/api/loras/" + sample.lora_version_id + "/samples/" + sample.blob_sha256},
          {"created_at", sample.created_at}};
}

}  // namespace

void ApiServer::State::list_subjects(Call& call) {
  json list = json::array();
  for (const store::Subject& subject : repository->list_subjects(call.account_id()))
    list.push_back(subject_view(call, subject));
  send_json(call.response, 200, {{"subjects", list}});
}

void ApiServer::State::create_subject(Call& call) {
  const json& body = call.body;
  const std::string name = check_name(string_field(body, "name", true, 100));
  const std::string trigger = string_field(body, "trigger_word", false, 24).value_or("ohwx");
  check_trigger_word(trigger);
  // What the person is: in every prompt ("ohwx woman") and the training captions.
  const std::string class_word = check_class_word(string_field(body, "class_word", false, 40));
  // How the studio learns their likeness: a trained double, or instant portraits from one photo.
  const std::string identity_source = check_identity_source(
      string_field(body, "identity_source", false, 20).value_or(store::kIdentityTrained));
  const store::Subject subject =
      repository->create_subject(call.account_id(), name, trigger, class_word, identity_source);
  send_json(call.response, 201, subject_view(call, subject));
}

void ApiServer::State::get_subject(Call& call) {
  send_json(call.response, 200, subject_view(call, subject_of(call, 1)));
}

void ApiServer::State::update_subject(Call& call) {
  store::Subject subject = subject_of(call, 1);
  const json& body = call.body;
  if (!body.contains("name") && !body.contains("class_word") && !body.contains("identity_source"))
    bad_request(
        "send the new 'name', 'class_word' (woman, man, girl, boy, person) or "
        "'identity_source' (trained, instant)");
  if (body.contains("name")) subject.name = check_name(string_field(body, "name", true, 100));
  if (body.contains("class_word"))
    subject.class_word = check_class_word(string_field(body, "class_word", true, 40));
  // Either way at any time: an instant person's shoots use IP-Adapter from their best photo, a
  // trained one's their newest LoRA (kept while they are instant).
  if (body.contains("identity_source"))
    subject.identity_source =
        check_identity_source(string_field(body, "identity_source", true, 20).value());
  if (!repository->update_subject(call.account_id(), subject)) not_found("subject");
  send_json(call.response, 200,
            subject_json(*repository->get_subject(call.account_id(), subject.id)));
}

void ApiServer::State::delete_subject(Call& call) {
  const store::Deletion deletion =
      repository->delete_subject(call.account_id(), call.id(1, "subject"));
  if (!deletion.found) not_found("subject");
  remove_blobs(deletion);
  send_json(call.response, 200, {{"deleted", true}});
}

void ApiServer::State::list_photos(Call& call) {
  const store::Subject subject = subject_of(call, 1);
  json list = json::array();
  for (const store::Photo& photo : repository->list_photos(call.account_id(), subject.id))
    list.push_back(photo_json(photo));
  // Readiness needs the verdicts as the face layer describes them: rebuild from the store.
  std::vector<PhotoVerdict> verdicts;
  for (const store::Photo& photo : repository->list_photos(call.account_id(), subject.id)) {
    PhotoVerdict verdict;
    verdict.label = photo.id;
    verdict.accepted = photo.verdict == store::PhotoVerdict::kAccepted;
    const json reasons = parse_stored_json(photo.reasons_json);
    if (reasons.is_array()) {
      for (const json& reason : reasons) {
        if (reason.is_object() && reason.value("code", json()).is_string())
          verdict.reasons.push_back({reason.value("code", ""), reason.value("message", ""),
                                     reason.value("rejects", true)});
      }
    }
    verdicts.push_back(std::move(verdict));
  }
  send_json(call.response, 200,
            {{"photos", list},
             {"readiness", readiness_to_json(assess_subject_readiness(
                               verdicts, readiness_thresholds_of(subject)))}});
}

void ApiServer::State::upload_photos(Call& call) {
  const store::Subject subject = subject_of(call, 1);
  if (!call.request.is_multipart_form_data())
    throw HttpError(415, "unsupported_media_type",
                    "upload photos as multipart/form-data in the field 'photos'");
  std::vector<const httplib::MultipartFormData*> files;
  for (const auto& [name, file] : call.request.files) {
    if (name != "photos")
      bad_request("unknown form field '" + name + "'; send the photos in the field 'photos'");
    files.push_back(&file);
  }
  if (files.empty()) bad_request("no photos in the upload; send them in the field 'photos'");
  if (static_cast<int>(files.size()) > options.max_photos_per_upload)
    bad_request("at most " + std::to_string(options.max_photos_per_upload) +
                " photos per upload; send the rest in another request");
  // Each file is judged on its own: the good ones are stored, every bad one is reported by
  // its file name (one bad file in a batch must not lose the others).
  ImageReadOptions read;
  read.max_pixels = options.max_photo_pixels;
  read.max_decoded_bytes = options.max_photo_decode_bytes;
  read.max_side = 1024;  // this decode only proves the file whole: a large JPEG is read shrunk
  json added = json::array();
  json refused = json::array();
  // The same file twice for one person (a retried upload, say) is kept once.
  std::set<std::string> digests;
  for (const store::Photo& photo : repository->list_photos(call.account_id(), subject.id))
    digests.insert(photo.blob_sha256);
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string name = upload_file_name(files[i]->filename, i);
    try {
      if (!digests.insert(store::sha256_hex(files[i]->content)).second)
        throw HttpError(409, "duplicate",
                        name +
                            " is the same file as a photo this person has already; it was "
                            "not added again");
      check_uploaded_picture(files[i]->content, name, options.max_photo_pixels);
      WorkSlot slot(photo_decode_slots(), std::chrono::seconds(30));
      if (!slot.held())
        throw HttpError(503, "busy", "the server is decoding other photos; try again in a minute");
      decode_image(files[i]->content, read, name);  // throws kInvalidFile for a broken file
    } catch (const HttpError& error) {
      refused.push_back({{"file", name}, {"code", error.code()}, {"message", error.what()}});
      continue;
    } catch (const Error& error) {
      refused.push_back({{"file", name}, {"code", "invalid_file"}, {"message", error.what()}});
      continue;
    }
    store::Photo photo;
    photo.subject_id = subject.id;
    photo.blob_sha256 = blobs->put(files[i]->content);  // stored by digest, never the client's name
    photo.original_size = static_cast<int64_t>(files[i]->content.size());
    photo = repository->add_photo(call.account_id(), photo);
    added.push_back(photo.id);
  }
  if (added.empty()) {
    // Nothing usable: an error naming every file, with the list for the studio.
    std::string message;
    for (const json& each : refused)
      message += (message.empty() ? "" : "; ") + each["message"].get<std::string>();
    json body = {{"error",
                  {{"code", refused.size() == 1 ? refused[0]["code"] : json("invalid_file")},
                   {"message", message}}},
                 {"refused", refused}};
    const json only_code = refused.size() == 1 ? refused[0]["code"] : json();
    const int status = only_code == "too_large"      ? 413
                       : only_code == "invalid_file" ? 422
                       : only_code == "duplicate"    ? 409
                                                     : 415;
    send_json(call.response, status, body);
    return;
  }
  const json readiness = intake->refresh(call.account_id(), subject.id);
  json photos = json::array();
  for (const store::Photo& photo : repository->list_photos(call.account_id(), subject.id))
    photos.push_back(photo_json(photo));
  send_json(call.response, 201,
            {{"added", added}, {"refused", refused}, {"photos", photos}, {"readiness", readiness}});
}

void ApiServer::State::photo_file(Call& call) {
  const auto photo = repository->get_photo(call.account_id(), call.id(1, "photo"));
  if (!photo) not_found("photo");
  std::string bytes = blobs->get(photo->blob_sha256);
  const ImageHeader header = sniff_image_header(bytes, "photo");
  const std::string type = header.format == ImageFormat::kPng    ? "image/png"
                           : header.format == ImageFormat::kJpeg ? "image/jpeg"
                                                                 : "image/webp";
  call.response.set_header("X-Content-Type-Options", "nosniff");
  call.response.set_content(std::move(bytes), type);
}

void ApiServer::State::photo_crop(Call& call) {
  const auto photo = repository->get_photo(call.account_id(), call.id(1, "photo"));
  if (!photo) not_found("photo");
  if (!photo->crop_blob)
    throw HttpError(404, "not_found", "this photo has no face crop (it was not accepted)");
  call.response.set_header("X-Content-Type-Options", "nosniff");
  call.response.set_content(blobs->get(*photo->crop_blob), "image/png");
}

void ApiServer::State::delete_photo(Call& call) {
  const auto photo = repository->get_photo(call.account_id(), call.id(1, "photo"));
  if (!photo) not_found("photo");
  const store::Deletion deletion = repository->delete_photo(call.account_id(), photo->id);
  if (!deletion.found) not_found("photo");
  remove_blobs(deletion);
  const json readiness = intake->refresh(call.account_id(), photo->subject_id);
  send_json(call.response, 200, {{"deleted", true}, {"readiness", readiness}});
}

void ApiServer::State::train(Call& call) {
  store::Subject subject = subject_of(call, 1);
  const json& body = call.body;
  // Trained on the model that is the default now; the job names it.
  const store::Model model = repository->default_model();
  if (model.family == model_family_name(ModelFamily::kSdxl))
    throw HttpError(409, "training_unsupported",
                    "the default model, " + model.name +
                        ", is an SDXL model, and doppel trains a person's LoRA on SD 1.x and 2.x "
                        "models only; make an SD 1.x or 2.x model the default to train, or shoot "
                        "SDXL styles without training");
  const TrainingDefaults defaults = training_defaults(model);
  TrainPayload payload;
  payload.steps = integer_field(body, "steps", 1, 5000, defaults.steps);
  payload.rank = integer_field(body, "rank", 1, 128, defaults.rank);
  payload.resolution = defaults.resolution;
  payload.model_path = model.path;
  payload.seed = integer_field(body, "seed", 0, kMaxSeed, 0);
  payload.sample_every = sample_interval(body, payload.steps);
  // The person's class unless the request trains with another word.
  payload.class_word = body.contains("class_word")
                           ? check_class_word(string_field(body, "class_word", false, 40))
                           : subject.class_word;
  payload.trigger_word = subject.trigger_word;
  const auto key = string_field(body, "idempotency_key", false, 100);

  auto photos = repository->list_photos(call.account_id(), subject.id);
  // Photos an interrupted upload left unjudged are judged now, not at the next upload.
  if (std::any_of(photos.begin(), photos.end(), [](const store::Photo& photo) {
        return photo.verdict == store::PhotoVerdict::kPending;
      })) {
    intake->refresh(call.account_id(), subject.id);
    photos = repository->list_photos(call.account_id(), subject.id);
  }
  const auto accepted = std::count_if(photos.begin(), photos.end(), [](const store::Photo& photo) {
    return photo.verdict == store::PhotoVerdict::kAccepted && photo.crop_blob;
  });
  if (accepted < kMinimumPhotosToTrain)
    throw HttpError(409, "not_ready",
                    "training needs at least " + std::to_string(kMinimumPhotosToTrain) +
                        " accepted photos; this subject has " + std::to_string(accepted) +
                        ". Add more clear photos of the face");

  store::LoraVersion version;
  version.subject_id = subject.id;
  version.settings_json = train_payload_settings(payload).dump();
  version = repository->add_lora_version(call.account_id(), version);
  payload.lora_version_id = version.id;
  queue::NewJob job;
  job.kind = "train";
  job.payload_json = train_payload_to_json(payload).dump();
  job.subject_id = subject.id;
  job.idempotency_key = key ? std::optional<std::string>("train:" + *key) : std::nullopt;
  job.max_attempts = 3;
  const store::Job queued = jobs->enqueue(call.account_id(), job);
  if (train_payload_from_json(parse_stored_json(queued.payload_json)).lora_version_id !=
      version.id) {
    // The same request was made before: answer with its job, keep nothing new.
    remove_blobs(repository->delete_lora_version(call.account_id(), version.id));
    const auto earlier = train_payload_from_json(parse_stored_json(queued.payload_json));
    const auto earlier_version =
        repository->get_lora_version(call.account_id(), earlier.lora_version_id);
    send_json(call.response, 202,
              {{"job", job_json(queued)},
               {"lora_version", earlier_version ? lora_json(*earlier_version) : json(nullptr)}});
    return;
  }
  subject.status = store::SubjectStatus::kTraining;
  repository->update_subject(call.account_id(), subject);
  send_json(call.response, 202, {{"job", job_json(queued)}, {"lora_version", lora_json(version)}});
}

void ApiServer::State::list_loras(Call& call) {
  const store::Subject subject = subject_of(call, 1);
  json list = json::array();
  for (const auto& version : repository->list_lora_versions(call.account_id(), subject.id))
    list.push_back(lora_json(version));
  send_json(call.response, 200, {{"loras", list}});
}

void ApiServer::State::lora_file(Call& call) {
  const auto version = repository->get_lora_version(call.account_id(), call.id(1, "LoRA"));
  if (!version) not_found("LoRA");
  if (!version->blob_sha256)
    throw HttpError(409, "not_ready", "this LoRA version has not finished training");
  // Named as the images' metadata names it (<lora:alice:0.8>), so the same tag works in
  // AUTOMATIC1111 and ComfyUI once the file is in their LoRA folder.
  const auto subject = repository->get_subject(call.account_id(), version->subject_id);
  call.response.set_header(
      "Content-Disposition",
      attachment_header(services::subject_lora_name(subject ? subject->name : "") +
                        ".safetensors"));
  call.response.set_content(blobs->get(*version->blob_sha256), "application/octet-stream");
}

void ApiServer::State::lora_samples(Call& call) {
  const auto version = repository->get_lora_version(call.account_id(), call.id(1, "LoRA"));
  if (!version) not_found("LoRA");
  const json settings = parse_stored_json(version->settings_json);
  json list = json::array();
  for (const store::TrainingSample& sample :
       store::list_training_samples(repository->database(), call.account_id(), version->id))
    list.push_back(training_sample_json(sample));
  send_json(
      call.response, 200,
      {{"lora_version_id", version->id},
       {"status", store::lora_status_name(version->status)},
       {"steps", settings.is_object() ? settings.value("steps", json(nullptr)) : json()},
       {"sample_every", settings.is_object() ? settings.value("sample_every", json(0)) : json(0)},
       {"samples", list}});
}

void ApiServer::State::lora_sample_png(Call& call) {
  const auto version = repository->get_lora_version(call.account_id(), call.id(1, "LoRA"));
  if (!version) not_found("LoRA");
  const std::string digest = call.request.matches[2];
  // Only this version's samples: a digest of anything else in the blob store is not found.
  bool found = false;
  if (store::is_sha256_hex(digest))
    for (const store::TrainingSample& sample :
         store::list_training_samples(repository->database(), call.account_id(), version->id))
      found = found || sample.blob_sha256 == digest;
  if (!found) not_found("training sample");
  call.response.set_header("Cache-Control", "private, max-age=31536000, immutable");
  call.response.set_header("X-Content-Type-Options", "nosniff");
  call.response.set_content(blobs->get(digest), "image/png");
}

}  // namespace doppel::server

#include "doppel/services/id_photo_job.hpp"

#include "doppel/core/error.hpp"
#include "doppel/core/image_density.hpp"
#include "doppel/idphoto/id_photo_check.hpp"
#include "doppel/idphoto/id_photo_maker.hpp"
#include "doppel/idphoto/id_photo_spec.hpp"

namespace doppel::services {

using nlohmann::json;

namespace {

[[noreturn]] void malformed(const std::string& what) {
  throw Error(ErrorCode::kInvalidArgument, "malformed ID photo job: " + what);
}

json verdict_record(const IdPhotoVerdict& verdict) {
  json record = id_photo_verdict_json(verdict);
  record["reasons"] = verdict.reasons();
  return record;
}

}  // namespace

json id_photo_payload_to_json(const IdPhotoPayload& payload) {
  return {{"action", payload.action},         {"spec", payload.spec_id},
          {"background", payload.background}, {"source_sha256", payload.source_sha256},
          {"source", payload.source},         {"shoot_id", payload.shoot_id}};
}

IdPhotoPayload id_photo_payload_from_json(const json& json) {
  auto text = [&](const char* key) {
    if (!json.is_object() || !json.contains(key) || !json[key].is_string())
      malformed(std::string("'") + key + "' must be a string");
    return json[key].get<std::string>();
  };
  IdPhotoPayload payload;
  payload.action = text("action");
  if (payload.action != "make" && payload.action != "check")
    malformed("'action' must be \"make\" or \"check\"");
  payload.spec_id = text("spec");
  payload.background = text("background");
  payload.source_sha256 = text("source_sha256");
  payload.shoot_id = text("shoot_id");
  if (payload.action == "make" && payload.shoot_id.empty()) malformed("a make needs 'shoot_id'");
  payload.source = json.value("source", json::object());
  if (!payload.source.is_object()) malformed("'source' must be an object");
  return payload;
}

IdPhotoOutcome make_id_photo_outcome(FaceDetector& detector, const Image& portrait,
                                     const std::string& portrait_png, const std::string& spec_id,
                                     const std::string& background, const PngTextChunks& text) {
  const IdPhotoSpec& spec = find_id_photo_spec(built_in_id_photo_specs(), spec_id);
  IdPhotoMakeOptions options;
  options.background = choose_background(spec, background).name;
  const IdPhotoResult result = make_id_photo(detector, portrait, spec, options);
  IdPhotoOutcome outcome;
  outcome.compliant = result.verdict.compliant;
  const bool made = !result.image.rgb.empty();
  outcome.png = made ? encode_png_with_density(result.image, spec.dpi, text) : portrait_png;
  outcome.record = {
      {"spec", spec.id},
      {"background", result.background.empty() ? options.background : result.background},
      {"compliant", outcome.compliant},
      {"made", made},
      {"pixels", {spec.width_px, spec.height_px}},
      {"dpi", spec.dpi},
      {"verdict", verdict_record(result.verdict)}};
  return outcome;
}

json id_photo_request_of_recipe(json recipe) {
  if (recipe.is_object() && recipe.contains("id_photo") && recipe["id_photo"].is_object()) {
    const json& record = recipe["id_photo"];
    recipe["id_photo"] = {{"spec", record.value("spec", "")},
                          {"background", record.value("background", "")}};
  }
  return recipe;
}

json run_id_photo_job(const std::string& account_id, const IdPhotoPayload& payload,
                      store::Repository& repository, store::BlobStore& blobs,
                      FaceDetector& detector, const IdPhotoProgress& progress) {
  const IdPhotoSpec& spec = find_id_photo_spec(built_in_id_photo_specs(), payload.spec_id);
  std::optional<store::Shoot> shoot;
  if (payload.action == "make") {
    shoot = repository.get_shoot(account_id, payload.shoot_id);
    if (!shoot) throw Error(ErrorCode::kNotFound, "the ID photo's shoot was deleted");
    // Exactly once: an earlier attempt stored the photo and died before completing the job.
    for (const store::Image& image : repository.list_images(account_id, shoot->id)) {
      const json recipe = json::parse(image.recipe_json, nullptr, false);
      if (!recipe.is_object() || !recipe.contains("id_photo")) continue;
      return {{"action", "make"},
              {"spec", spec.id},
              {"compliant", recipe["id_photo"].value("compliant", false)},
              {"verdict", recipe["id_photo"].value("verdict", json())},
              {"image_id", image.id},
              {"shoot_id", shoot->id}};
    }
  }
  if (!blobs.exists(payload.source_sha256))
    throw Error(ErrorCode::kNotFound,
                "the photo to make the ID photo from was deleted before it was made; choose it "
                "or upload it again");
  const std::string source_bytes = blobs.get(payload.source_sha256);
  const Image photo = decode_image(source_bytes, {}, "the source photo");
  progress(0.1, payload.action == "make" ? "making the ID photo" : "checking the photo", true);

  if (payload.action == "check") {
    const IdPhotoVerdict verdict = check_id_photo(photo, spec, detector);
    return {{"action", "check"},
            {"spec", spec.id},
            {"compliant", verdict.compliant},
            {"verdict", verdict_record(verdict)},
            {"source", payload.source}};
  }

  IdPhotoOutcome outcome =
      make_id_photo_outcome(detector, photo, source_bytes, spec.id, payload.background);
  if (!progress(0.9, "saving", true))
    throw Error(ErrorCode::kCancelled, "the job was cancelled or taken over");
  outcome.record["source"] = payload.source;
  store::Image record;
  record.shoot_id = shoot->id;
  record.recipe_json = json{{"id_photo", outcome.record}}.dump();
  record.blob_sha256 = blobs.put(outcome.png);
  record = repository.add_image(account_id, record);
  repository.update_shoot_status(account_id, shoot->id, store::ShootStatus::kDone);
  return {{"action", "make"},
          {"spec", spec.id},
          {"compliant", outcome.compliant},
          {"verdict", outcome.record["verdict"]},
          {"image_id", record.id},
          {"shoot_id", shoot->id}};
}

}  // namespace doppel::services

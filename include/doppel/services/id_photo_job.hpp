// ID photos in the studio (docs/id-photos.md "In the studio"): an "id_photo" job makes a
// document photo from one of a person's accepted photos, a generated portrait of them or an
// uploaded photo (or only checks it), and an ID-photo shoot's portraits are made into ID
// photos as they are generated. Both keep the verdict — compliant, and every check with pass
// and a message — in the image's recipe under "id_photo", so the gallery shows why a photo
// passes or not and the server offers only compliant ones for download.
#pragma once
#include <nlohmann/json.hpp>

#include <functional>
#include <string>

#include "doppel/core/image.hpp"
#include "doppel/face/face_detector.hpp"
#include "doppel/store/blob_store.hpp"
#include "doppel/store/repository.hpp"

namespace doppel::services {

inline constexpr const char* kIdPhotoJobKind = "id_photo";

struct IdPhotoPayload {
  // "make": crop, scale, recolour, judge and store the photo in `shoot_id`;
  // "check": judge the source as a finished ID photo, store nothing new.
  std::string action = "make";
  std::string spec_id;
  std::string background;     // one of the spec's colours; "" = the spec's first
  std::string source_sha256;  // the source photo in the blob store
  // What the source was, kept in the record: {"kind": "photo" | "image" | "upload", "id"?}.
  nlohmann::json source = nlohmann::json::object();
  std::string shoot_id;  // make: the shoot the photo is stored in
};

nlohmann::json id_photo_payload_to_json(const IdPhotoPayload& payload);
// Throws doppel::Error (kInvalidArgument) naming a missing or mistyped field.
IdPhotoPayload id_photo_payload_from_json(const nlohmann::json& json);

// An ID photo made from a portrait: the PNG to store (the made photo at the spec's pixels with
// its DPI in pHYs when the maker produced one, else the portrait as it was) and the record
// kept under the recipe's "id_photo": {"spec", "background", "compliant", "made", "pixels",
// "dpi", "verdict": {the CLI's verdict JSON}}.
struct IdPhotoOutcome {
  std::string png;
  nlohmann::json record;
  bool compliant = false;
};

// `portrait_png` is stored when no photo could be made (no single usable face); `text` goes
// into the made photo's PNG (a generated portrait's A1111 parameters). Throws doppel::Error
// kNotFound for an unknown spec and kInvalidArgument for a colour the spec does not allow.
IdPhotoOutcome make_id_photo_outcome(FaceDetector& detector, const Image& portrait,
                                     const std::string& portrait_png, const std::string& spec_id,
                                     const std::string& background, const PngTextChunks& text = {});

// A recipe without the outcome the worker added ("id_photo" keeps only what was asked:
// spec and background), so a retried or repeated shot compares equal to its stored image.
nlohmann::json id_photo_request_of_recipe(nlohmann::json recipe);

// Progress of a running job: fraction, message, `force` (a stage change); false stops it.
using IdPhotoProgress = std::function<bool(double, const std::string&, bool)>;

// Runs one "id_photo" job of `account_id`. Result: {"action", "spec", "compliant", "verdict",
// "image_id"?, "shoot_id"?}. Exactly once: a make that already stored its image answers it.
nlohmann::json run_id_photo_job(const std::string& account_id, const IdPhotoPayload& payload,
                                store::Repository& repository, store::BlobStore& blobs,
                                FaceDetector& detector, const IdPhotoProgress& progress);

}  // namespace doppel::services

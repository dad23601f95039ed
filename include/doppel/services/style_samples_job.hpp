// A "style_samples" job: the example images of one style pack for one model (the style cards'
// pictures), made by a worker through its GenerationSession when it has nothing else to do,
// stored as blobs and recorded in the style_samples table. The server queues one per style and
// default model on first use; a new default model gets its own.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "doppel/diffusion/generation_session.hpp"
#include "doppel/store/blob_store.hpp"
#include "doppel/store/database.hpp"

namespace doppel::services {

inline constexpr const char* kStyleSamplesJobKind = "style_samples";
// A few seeds per style (the A1111 batch rule from the first), the same for every model.
inline constexpr int kStyleSamplesPerStyle = 3;
inline constexpr uint64_t kStyleSamplesFirstSeed = 1000;

struct StyleSamplesPayload {
  std::string style_id;
  std::string model_key;   // the models registry's id
  std::string model_path;  // "" for the tiny built-in model
  // One planned recipe per seed (no subject: "{subject}" is "person"), as shot_from_recipe reads.
  std::vector<nlohmann::json> recipes;
};

nlohmann::json style_samples_payload_to_json(const StyleSamplesPayload& payload);
// Throws doppel::Error (kInvalidArgument) naming a missing or mistyped field.
StyleSamplesPayload style_samples_payload_from_json(const nlohmann::json& json);

// Progress of a running job: fraction, message, `force` (a stage change); false stops it.
using StyleSamplesProgress = std::function<bool(double, const std::string&, bool)>;

// Makes the payload's samples that are not stored yet on `session` (whose model the caller
// selected: payload.model_path, with the first recipe's VAE), stores each PNG in `blobs` and
// its row in `database`. Result: {"style_id", "made", "kept"}.
nlohmann::json run_style_samples_job(const StyleSamplesPayload& payload, GenerationSession& session,
                                     store::Database& database, store::BlobStore& blobs,
                                     const StyleSamplesProgress& progress);

}  // namespace doppel::services

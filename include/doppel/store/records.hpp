// Plain records stored by the repository. Ids are random 128-bit values written as 32
// lowercase hex characters; times are milliseconds since the Unix epoch (UTC); fields
// named *_json hold JSON text; blob references are sha256 hex digests (see blob_store.hpp).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace doppel::store {

struct Account {
  std::string id{};
  std::string email{};  // unique, compared exactly (callers normalise case)
  std::string display_name{};
  std::string password_hash{};  // Argon2id string from libsodium's crypto_pwhash_str
  int64_t created_at = 0;
};

// A browser session. Only a hash of the cookie token is stored.
struct Session {
  std::string id{};
  std::string account_id{};
  std::string token_hash{};
  std::string csrf_secret{};
  int64_t created_at = 0;
  int64_t expires_at = 0;
};

// A bearer token for the API. Only a hash of the token is stored.
struct ApiToken {
  std::string id{};
  std::string account_id{};
  std::string name{};
  std::string token_hash{};
  int64_t created_at = 0;
  std::optional<int64_t> expires_at{};  // none: valid until deleted
};

// Where a person's training stands: no LoRA asked for yet, one training, one trained.
enum class SubjectStatus { kNew, kTraining, kTrained };
const char* subject_status_name(SubjectStatus status);  // "new", "training", "trained"
// Throws doppel::Error (kInvalidFile) for an unknown name.
SubjectStatus parse_subject_status(const std::string& name);

// A person whose likeness doppel learns; owned by one account.
struct Subject {
  std::string id{};
  std::string account_id{};
  std::string name{};
  std::string trigger_word{};
  SubjectStatus status = SubjectStatus::kNew;
  std::optional<std::string> face_profile_blob{};
  int64_t created_at = 0;
  int64_t updated_at = 0;
  // What the person is: "woman", "man", "girl", "boy" or "person" (prompts, training captions).
  std::string class_word = "person";
  // How the studio brings out their likeness: kIdentityTrained (a LoRA trained on their photos)
  // or kIdentityInstant (their best photo through IP-Adapter plus-face, no training).
  std::string identity_source = "trained";
};

inline constexpr const char* kIdentityTrained = "trained";
inline constexpr const char* kIdentityInstant = "instant";

// A photo's intake verdict: judged by the face checks, or waiting for them.
enum class PhotoVerdict { kPending, kAccepted, kRejected };
const char* photo_verdict_name(PhotoVerdict verdict);  // "pending", "accepted", "rejected"
// Throws doppel::Error (kInvalidFile) for an unknown name.
PhotoVerdict parse_photo_verdict(const std::string& name);

struct Photo {
  std::string id{};
  std::string account_id{};
  std::string subject_id{};
  std::string blob_sha256{};
  int64_t original_size = 0;  // bytes of the upload
  PhotoVerdict verdict = PhotoVerdict::kPending;
  std::string reasons_json = "[]";
  std::optional<std::string> crop_blob{};  // the aligned face crop
  int64_t created_at = 0;
};

// Where a LoRA version's training stands.
enum class LoraStatus { kQueued, kTraining, kReady, kFailed, kCancelled };
const char* lora_status_name(LoraStatus status);  // "queued", "training", "ready", ...
// Throws doppel::Error (kInvalidFile) for an unknown name.
LoraStatus parse_lora_status(const std::string& name);

struct LoraVersion {
  std::string id{};
  std::string account_id{};
  std::string subject_id{};
  std::optional<std::string> blob_sha256{};  // set once training produced the file
  std::string settings_json = "{}";
  std::optional<double> validation_likeness{};
  LoraStatus status = LoraStatus::kQueued;
  int64_t created_at = 0;
  int64_t updated_at = 0;
};

// A shoot is waiting for its first image, has some, or has them all.
enum class ShootStatus { kQueued, kRunning, kDone };
const char* shoot_status_name(ShootStatus status);  // "queued", "running", "done"
// Throws doppel::Error (kInvalidFile) for an unknown name.
ShootStatus parse_shoot_status(const std::string& name);

// A batch of generations of one subject in one or more styles.
struct Shoot {
  std::string id{};
  std::string account_id{};
  std::string subject_id{};
  std::string styles_json = "[]";
  int64_t image_count = 0;
  ShootStatus status = ShootStatus::kQueued;
  int64_t created_at = 0;
  int64_t updated_at = 0;
};

struct Image {
  std::string id{};
  std::string account_id{};
  std::string shoot_id{};
  std::string blob_sha256{};
  // How it was made: model hash, prompt, negative prompt, seed, sampler, steps, guidance,
  // size, LoRAs and weights.
  std::string recipe_json = "{}";
  std::optional<double> likeness{};
  std::optional<double> quality{};
  bool favourite = false;
  int64_t created_at = 0;
};

// A model file of the installation (shared by every account, not owned): a Stable Diffusion
// checkpoint, an IP-Adapter or a CLIP image encoder (`kind`). The built-in tiny model is the
// row with id kBuiltinModelId and an empty path.
struct Model {
  std::string id{};
  std::string name{};
  std::string path{};          // absolute; "" for the built-in model
  std::string family = "sd1";  // checkpoints and IP-Adapters: the base model, "sd1" | "sd2" |
                               // "sdxl"; image encoders: "vit-h-14" | "vit-bigg-14" | "clip-vision"
  // Checkpoints: "epsilon" | "v_prediction". IP-Adapters: their variant, "base" | "plus" |
  // "plus-face" | "full-face". Image encoders: the width of their features, e.g. "1280".
  std::string prediction = "epsilon";
  bool builtin = false;
  bool is_default = false;          // exactly one model is the default (always a checkpoint)
  int64_t added_at = 0;             // 0 for the built-in model
  std::string kind = "checkpoint";  // kModelCheckpoint | kModelIpAdapter | kModelImageEncoder
};

inline constexpr const char* kModelCheckpoint = "checkpoint";
inline constexpr const char* kModelIpAdapter = "ip_adapter";
inline constexpr const char* kModelImageEncoder = "image_encoder";

inline constexpr const char* kBuiltinModelId = "builtin";

// One kind of an account's records and the distinct blobs they reference.
struct BlobUse {
  int64_t records = 0;
  std::vector<std::string> blobs;  // sha256 digests, each once
};

// What an account's photos (uploads and face crops), images and LoRA versions reference.
struct StorageUse {
  BlobUse photos;
  BlobUse images;
  BlobUse loras;
};

enum class JobStatus {
  kQueued,     // waiting (possibly until available_at, after a failed attempt)
  kRunning,    // leased by a worker
  kSucceeded,  // completed with a result
  kDead,       // failed max_attempts times (or permanently): dead-lettered
  kCancelled,  // cancelled by its owner
};

const char* job_status_name(JobStatus status);
// Throws doppel::Error (kInvalidFile) for an unknown name.
JobStatus parse_job_status(const std::string& name);

// A durable unit of work (see doppel/queue/job_queue.hpp).
struct Job {
  std::string id{};
  std::string account_id{};
  std::optional<std::string> subject_id{};  // deleting the subject deletes the job
  std::string kind{};                       // e.g. "train", "shoot"
  std::string payload_json = "{}";
  std::optional<std::string> idempotency_key{};
  JobStatus status = JobStatus::kQueued;
  int64_t attempts = 0;  // leases handed out so far
  int64_t max_attempts = 5;
  int64_t available_at = 0;                  // not leased before this time
  std::optional<std::string> lease_owner{};  // worker id
  std::optional<std::string> lease_token{};  // only filled in lease()'s answer
  std::optional<int64_t> lease_expires_at{};
  bool cancel_requested = false;
  double progress = 0.0;  // 0..1
  std::string progress_message{};
  std::optional<std::string> result_json{};
  std::optional<std::string> error{};  // the last failure
  int64_t created_at = 0;
  int64_t updated_at = 0;
  std::optional<int64_t> finished_at{};
};

}  // namespace doppel::store

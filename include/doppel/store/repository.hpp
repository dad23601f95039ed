// The repository: every persistent record of doppel behind one interface, with SQLite and
// PostgreSQL implementations. Per-account isolation is enforced here: every call on owned
// data takes the owning account id, and another account's rows are simply not found
// (std::nullopt / false / empty), never an error that reveals they exist. Thread-safe:
// calls serialise on the underlying Database. Invalid input (empty names, malformed *_json)
// is doppel::Error (kInvalidArgument) and nothing is written.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "doppel/store/database.hpp"
#include "doppel/store/records.hpp"

namespace doppel::store {

// What a deletion removed. `orphaned_blobs` are the sha256 digests that no row references
// any more; the caller removes them from the BlobStore after the call returns (the rows are
// committed first, so a crash in between leaves only unreferenced files, never dangling rows).
struct Deletion {
  bool found = false;
  std::vector<std::string> orphaned_blobs;
};

class Repository {
 public:
  virtual ~Repository() = default;

  // The connection underneath, shared with the job queue.
  virtual Database& database() = 0;

  // --- accounts (not owned data: looked up by id or email) ---
  // Creates an account; throws doppel::Error (kInvalidArgument) if the email is taken.
  virtual Account create_account(const std::string& email, const std::string& display_name,
                                 const std::string& password_hash) = 0;
  virtual std::optional<Account> get_account(const std::string& account_id) = 0;
  virtual std::optional<Account> find_account_by_email(const std::string& email) = 0;
  virtual int64_t count_accounts() = 0;
  virtual bool update_password_hash(const std::string& account_id, const std::string& hash) = 0;
  // Deletes the account and everything it owns (sessions, tokens, subjects, jobs, ...).
  virtual Deletion delete_account(const std::string& account_id) = 0;

  // --- sessions and API tokens (callers pass hashes, never the secrets) ---
  // Fills id and created_at; the caller sets account_id, token_hash, csrf_secret, expires_at.
  virtual Session create_session(Session session) = 0;
  // The unexpired session with this token hash at time `now`.
  virtual std::optional<Session> find_session(const std::string& token_hash, int64_t now) = 0;
  virtual bool delete_session(const std::string& account_id, const std::string& session_id) = 0;
  virtual int64_t delete_expired_sessions(int64_t now) = 0;
  virtual ApiToken create_api_token(ApiToken token) = 0;
  virtual std::optional<ApiToken> find_api_token(const std::string& token_hash, int64_t now) = 0;
  virtual std::vector<ApiToken> list_api_tokens(const std::string& account_id) = 0;
  virtual bool delete_api_token(const std::string& account_id, const std::string& token_id) = 0;

  // --- subjects ---
  // `class_word`: what the person is ("woman", "man", "girl", "boy", "person");
  // `identity_source`: kIdentityTrained or kIdentityInstant (else kInvalidArgument).
  virtual Subject create_subject(const std::string& account_id, const std::string& name,
                                 const std::string& trigger_word,
                                 const std::string& class_word = "person",
                                 const std::string& identity_source = kIdentityTrained) = 0;
  virtual std::optional<Subject> get_subject(const std::string& account_id,
                                             const std::string& subject_id) = 0;
  virtual std::vector<Subject> list_subjects(const std::string& account_id) = 0;  // oldest first
  // Saves name, trigger_word, class_word, identity_source, status and face_profile_blob of
  // `subject` (matched by subject.id within account_id); false when no such subject.
  virtual bool update_subject(const std::string& account_id, const Subject& subject) = 0;
  // Deletes the subject with its photos, LoRA versions, shoots, images and jobs.
  virtual Deletion delete_subject(const std::string& account_id, const std::string& subject_id) = 0;

  // --- photos ---
  // Fills id, account_id and created_at; throws kNotFound when photo.subject_id is not one of
  // the account's subjects.
  virtual Photo add_photo(const std::string& account_id, Photo photo) = 0;
  virtual std::optional<Photo> get_photo(const std::string& account_id,
                                         const std::string& photo_id) = 0;
  virtual std::vector<Photo> list_photos(const std::string& account_id,
                                         const std::string& subject_id) = 0;
  virtual bool update_photo_verdict(const std::string& account_id, const std::string& photo_id,
                                    PhotoVerdict verdict, const std::string& reasons_json,
                                    const std::optional<std::string>& crop_blob) = 0;
  virtual Deletion delete_photo(const std::string& account_id, const std::string& photo_id) = 0;

  // --- LoRA versions ---
  virtual LoraVersion add_lora_version(const std::string& account_id, LoraVersion version) = 0;
  virtual std::optional<LoraVersion> get_lora_version(const std::string& account_id,
                                                      const std::string& version_id) = 0;
  virtual std::vector<LoraVersion> list_lora_versions(const std::string& account_id,
                                                      const std::string& subject_id) = 0;
  // Saves blob_sha256, settings_json, validation_likeness and status.
  virtual bool update_lora_version(const std::string& account_id, const LoraVersion& version) = 0;
  virtual Deletion delete_lora_version(const std::string& account_id,
                                       const std::string& version_id) = 0;

  // --- shoots and images ---
  virtual Shoot create_shoot(const std::string& account_id, Shoot shoot) = 0;
  virtual std::optional<Shoot> get_shoot(const std::string& account_id,
                                         const std::string& shoot_id) = 0;
  // The subject's shoots, newest first; an empty subject_id lists all of the account's.
  virtual std::vector<Shoot> list_shoots(const std::string& account_id,
                                         const std::string& subject_id) = 0;
  virtual bool update_shoot_status(const std::string& account_id, const std::string& shoot_id,
                                   ShootStatus status) = 0;
  virtual Deletion delete_shoot(const std::string& account_id, const std::string& shoot_id) = 0;

  // Fills id, account_id and created_at; throws kNotFound for a shoot of another account.
  virtual Image add_image(const std::string& account_id, Image image) = 0;
  virtual std::optional<Image> get_image(const std::string& account_id,
                                         const std::string& image_id) = 0;
  // Ranked best first: favourites, then likeness, then quality (unscored last).
  virtual std::vector<Image> list_images(const std::string& account_id,
                                         const std::string& shoot_id) = 0;
  virtual bool set_image_favourite(const std::string& account_id, const std::string& image_id,
                                   bool favourite) = 0;
  virtual bool set_image_scores(const std::string& account_id, const std::string& image_id,
                                std::optional<double> likeness, std::optional<double> quality) = 0;
  virtual Deletion delete_image(const std::string& account_id, const std::string& image_id) = 0;

  // --- models (installation-wide: not owned by any account) ---
  // Every registered model of every kind: the built-in one first, then oldest first.
  virtual std::vector<Model> list_models() = 0;
  virtual std::optional<Model> get_model(const std::string& model_id) = 0;
  virtual std::optional<Model> find_model_by_path(const std::string& path) = 0;
  // The one default model (the built-in one unless another was made the default).
  virtual Model default_model() = 0;
  // Fills id and added_at; the new model is neither built in nor the default. Throws
  // kInvalidArgument for an empty path or name, an unknown kind, or a path that is registered
  // already.
  virtual Model add_model(Model model) = 0;
  // Makes the model the only default; false when there is no such model or it is not a
  // checkpoint (IP-Adapters and image encoders only help one).
  virtual bool set_default_model(const std::string& model_id) = 0;
  // Removes a model that is neither built in nor the default; false otherwise.
  virtual bool delete_model(const std::string& model_id) = 0;

  // --- storage ---
  // The account's photos, images and LoRA versions with the blobs they reference (sizes are
  // the blob store's to tell).
  virtual StorageUse storage_use(const std::string& account_id) = 0;

  // --- blobs ---
  // Every blob digest some row references (for garbage-collecting files a crash left behind).
  virtual std::vector<std::string> referenced_blobs() = 0;
};

// The SQL repository over an open database (SQLite or PostgreSQL, already migrated).
std::unique_ptr<Repository> make_repository(std::shared_ptr<Database> database);

// open_database(url) + make_repository.
std::unique_ptr<Repository> open_repository(const std::string& url);

// A new random 128-bit id as 32 lowercase hex characters (also used for lease tokens).
std::string new_random_id();

// Milliseconds since the Unix epoch.
int64_t unix_millis_now();

}  // namespace doppel::store

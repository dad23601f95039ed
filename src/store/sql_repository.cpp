// The repository over SQL. The schema and every statement are dialect-neutral, so SQLite
// and PostgreSQL share this code; they differ only in their Database back end.
#include <sodium.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <set>

#include "doppel/core/error.hpp"
#include "doppel/store/repository.hpp"
#include "store/sql_rows.hpp"

namespace doppel::store {
namespace {

using namespace rows;

class SqlRepository final : public Repository {
 public:
  explicit SqlRepository(std::shared_ptr<Database> database) : database_(std::move(database)) {
    if (!database_) throw Error(ErrorCode::kInvalidArgument, "make_repository: no database");
  }

  Database& database() override { return *database_; }

  // --- accounts ---

  Account create_account(const std::string& email, const std::string& display_name,
                         const std::string& password_hash) override {
    require_text(email, "account email");
    require_text(password_hash, "account password hash");
    Account account{new_random_id(), email, display_name, password_hash, unix_millis_now()};
    database_->transaction([&] {
      if (!db().execute("SELECT 1 FROM accounts WHERE email = ?", {email}).rows.empty())
        throw Error(ErrorCode::kInvalidArgument,
                    "an account with the email '" + email + "' already exists");
      db().execute(
          "INSERT INTO accounts (id, email, display_name, password_hash, created_at) VALUES (?, "
          "?, ?, ?, ?)",
          {account.id, account.email, account.display_name, account.password_hash,
           account.created_at});
    });
    return account;
  }

  std::optional<Account> get_account(const std::string& account_id) override {
    return first<Account>(
        db().execute(select_from(kAccountColumns, "accounts", "id = ?"), {account_id}),
        read_account);
  }

  std::optional<Account> find_account_by_email(const std::string& email) override {
    return first<Account>(
        db().execute(select_from(kAccountColumns, "accounts", "email = ?"), {email}), read_account);
  }

  int64_t count_accounts() override {
    return db().execute("SELECT COUNT(*) FROM accounts", {}).rows.at(0).integer(0);
  }

  bool update_password_hash(const std::string& account_id, const std::string& hash) override {
    require_text(hash, "password hash");
    return db().execute("UPDATE accounts SET password_hash = ? WHERE id = ?", {hash, account_id})
               .affected_rows > 0;
  }

  Deletion delete_account(const std::string& account_id) override {
    Deletion deletion;
    database_->transaction([&] {
      std::set<std::string> candidates = blobs_of("account_id = ?", account_id);
      deletion.found =
          db().execute("DELETE FROM accounts WHERE id = ?", {account_id}).affected_rows > 0;
      deletion.orphaned_blobs = unreferenced(candidates);
    });
    return deletion;
  }

  // --- sessions and tokens ---

  Session create_session(Session session) override {
    require_text(session.token_hash, "session token hash");
    session.id = new_random_id();
    session.created_at = unix_millis_now();
    db().execute(
        "INSERT INTO sessions (id, account_id, token_hash, csrf_secret, created_at, expires_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        {session.id, session.account_id, session.token_hash, session.csrf_secret,
         session.created_at, session.expires_at});
    return session;
  }

  std::optional<Session> find_session(const std::string& token_hash, int64_t now) override {
    return first<Session>(
        db().execute(select_from(kSessionColumns, "sessions", "token_hash = ? AND expires_at > ?"),
                     {token_hash, now}),
        read_session);
  }

  bool delete_session(const std::string& account_id, const std::string& session_id) override {
    return db().execute("DELETE FROM sessions WHERE id = ? AND account_id = ?",
                        {session_id, account_id})
               .affected_rows > 0;
  }

  int64_t delete_expired_sessions(int64_t now) override {
    return db().execute("DELETE FROM sessions WHERE expires_at <= ?", {now}).affected_rows;
  }

  ApiToken create_api_token(ApiToken token) override {
    require_text(token.token_hash, "API token hash");
    token.id = new_random_id();
    token.created_at = unix_millis_now();
    db().execute(
        "INSERT INTO api_tokens (id, account_id, name, token_hash, created_at, expires_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        {token.id, token.account_id, token.name, token.token_hash, token.created_at,
         optional_value(token.expires_at)});
    return token;
  }

  std::optional<ApiToken> find_api_token(const std::string& token_hash, int64_t now) override {
    return first<ApiToken>(
        db().execute(select_from(kApiTokenColumns, "api_tokens",
                                 "token_hash = ? AND (expires_at IS NULL OR expires_at > ?)"),
                     {token_hash, now}),
        read_api_token);
  }

  std::vector<ApiToken> list_api_tokens(const std::string& account_id) override {
    return all<ApiToken>(db().execute(select_from(kApiTokenColumns, "api_tokens",
                                                  "account_id = ? ORDER BY created_at, id"),
                                      {account_id}),
                         read_api_token);
  }

  bool delete_api_token(const std::string& account_id, const std::string& token_id) override {
    return db().execute("DELETE FROM api_tokens WHERE id = ? AND account_id = ?",
                        {token_id, account_id})
               .affected_rows > 0;
  }

  // --- subjects ---

  Subject create_subject(const std::string& account_id, const std::string& name,
                         const std::string& trigger_word, const std::string& class_word,
                         const std::string& identity_source) override {
    require_text(name, "subject name");
    require_text(class_word, "subject class word");
    require_identity_source(identity_source);
    int64_t now = unix_millis_now();
    Subject subject{new_random_id(), account_id, name, trigger_word, SubjectStatus::kNew,
                    std::nullopt,    now,        now,  class_word,   identity_source};
    database_->transaction([&] {
      require_account(account_id);
      db().execute(
          "INSERT INTO subjects (id, account_id, name, trigger_word, status, face_profile_blob, "
          "created_at, updated_at, class_word, identity_source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
          "?, ?)",
          {subject.id, subject.account_id, subject.name, subject.trigger_word,
           subject_status_name(subject.status), nullptr, subject.created_at, subject.updated_at,
           subject.class_word, subject.identity_source});
    });
    return subject;
  }

  std::optional<Subject> get_subject(const std::string& account_id,
                                     const std::string& subject_id) override {
    return first<Subject>(
        db().execute(select_from(kSubjectColumns, "subjects", "id = ? AND account_id = ?"),
                     {subject_id, account_id}),
        read_subject);
  }

  std::vector<Subject> list_subjects(const std::string& account_id) override {
    return all<Subject>(db().execute(select_from(kSubjectColumns, "subjects",
                                                 "account_id = ? ORDER BY created_at, id"),
                                     {account_id}),
                        read_subject);
  }

  bool update_subject(const std::string& account_id, const Subject& subject) override {
    require_text(subject.name, "subject name");
    require_text(subject.class_word, "subject class word");
    require_identity_source(subject.identity_source);
    return db().execute(
                   "UPDATE subjects SET name = ?, trigger_word = ?, status = ?, "
                   "face_profile_blob = ?, class_word = ?, identity_source = ?, updated_at = ? "
                   "WHERE id = ? AND account_id = ?",
                   {subject.name, subject.trigger_word, subject_status_name(subject.status),
                    optional_value(subject.face_profile_blob), subject.class_word,
                    subject.identity_source, unix_millis_now(), subject.id, account_id})
               .affected_rows > 0;
  }

  Deletion delete_subject(const std::string& account_id, const std::string& subject_id) override {
    Deletion deletion;
    database_->transaction([&] {
      if (!get_subject(account_id, subject_id)) return;
      std::set<std::string> candidates = blobs_of_subject(subject_id);
      // Children go through ON DELETE CASCADE (photos, LoRA versions, shoots -> images, jobs).
      deletion.found = db().execute("DELETE FROM subjects WHERE id = ? AND account_id = ?",
                                    {subject_id, account_id})
                           .affected_rows > 0;
      deletion.orphaned_blobs = unreferenced(candidates);
    });
    return deletion;
  }

  // --- photos ---

  Photo add_photo(const std::string& account_id, Photo photo) override {
    require_text(photo.blob_sha256, "photo blob");
    require_json(photo.reasons_json, "photo reasons_json");
    photo.id = new_random_id();
    photo.account_id = account_id;
    photo.created_at = unix_millis_now();
    database_->transaction([&] {
      require_subject(account_id, photo.subject_id);
      db().execute(
          "INSERT INTO photos (id, account_id, subject_id, blob_sha256, original_size, verdict, "
          "reasons_json, crop_blob, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
          {photo.id, photo.account_id, photo.subject_id, photo.blob_sha256, photo.original_size,
           photo_verdict_name(photo.verdict), photo.reasons_json, optional_value(photo.crop_blob),
           photo.created_at});
    });
    return photo;
  }

  std::optional<Photo> get_photo(const std::string& account_id,
                                 const std::string& photo_id) override {
    return first<Photo>(
        db().execute(select_from(kPhotoColumns, "photos", "id = ? AND account_id = ?"),
                     {photo_id, account_id}),
        read_photo);
  }

  std::vector<Photo> list_photos(const std::string& account_id,
                                 const std::string& subject_id) override {
    return all<Photo>(
        db().execute(select_from(kPhotoColumns, "photos",
                                 "subject_id = ? AND account_id = ? ORDER BY created_at, id"),
                     {subject_id, account_id}),
        read_photo);
  }

  bool update_photo_verdict(const std::string& account_id, const std::string& photo_id,
                            PhotoVerdict verdict, const std::string& reasons_json,
                            const std::optional<std::string>& crop_blob) override {
    require_json(reasons_json, "photo reasons_json");
    return db().execute(
                   "UPDATE photos SET verdict = ?, reasons_json = ?, crop_blob = ? WHERE id = ? "
                   "AND account_id = ?",
                   {photo_verdict_name(verdict), reasons_json, optional_value(crop_blob), photo_id,
                    account_id})
               .affected_rows > 0;
  }

  Deletion delete_photo(const std::string& account_id, const std::string& photo_id) override {
    return delete_owned("photos", "SELECT blob_sha256, crop_blob FROM photos", account_id,
                        photo_id);
  }

  // --- LoRA versions ---

  LoraVersion add_lora_version(const std::string& account_id, LoraVersion version) override {
    require_json(version.settings_json, "LoRA settings_json");
    version.id = new_random_id();
    version.account_id = account_id;
    version.created_at = version.updated_at = unix_millis_now();
    database_->transaction([&] {
      require_subject(account_id, version.subject_id);
      db().execute(
          "INSERT INTO lora_versions (id, account_id, subject_id, blob_sha256, settings_json, "
          "validation_likeness, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
          "?)",
          {version.id, version.account_id, version.subject_id, optional_value(version.blob_sha256),
           version.settings_json, optional_value(version.validation_likeness),
           lora_status_name(version.status), version.created_at, version.updated_at});
    });
    return version;
  }

  std::optional<LoraVersion> get_lora_version(const std::string& account_id,
                                              const std::string& version_id) override {
    return first<LoraVersion>(
        db().execute(select_from(kLoraColumns, "lora_versions", "id = ? AND account_id = ?"),
                     {version_id, account_id}),
        read_lora);
  }

  std::vector<LoraVersion> list_lora_versions(const std::string& account_id,
                                              const std::string& subject_id) override {
    return all<LoraVersion>(
        db().execute(select_from(kLoraColumns, "lora_versions",
                                 "subject_id = ? AND account_id = ? ORDER BY created_at, id"),
                     {subject_id, account_id}),
        read_lora);
  }

  bool update_lora_version(const std::string& account_id, const LoraVersion& version) override {
    require_json(version.settings_json, "LoRA settings_json");
    // The old file may become unreferenced; that is for the caller's blob GC, not an error.
    return db().execute(
                   "UPDATE lora_versions SET blob_sha256 = ?, settings_json = ?, "
                   "validation_likeness = ?, status = ?, updated_at = ? WHERE id = ? AND "
                   "account_id = ?",
                   {optional_value(version.blob_sha256), version.settings_json,
                    optional_value(version.validation_likeness), lora_status_name(version.status),
                    unix_millis_now(), version.id, account_id})
               .affected_rows > 0;
  }

  Deletion delete_lora_version(const std::string& account_id,
                               const std::string& version_id) override {
    // Its training samples go with it (ON DELETE CASCADE), and their blobs when unused.
    return delete_owned("lora_versions",
                        "SELECT lora_versions.blob_sha256, training_samples.blob_sha256 FROM "
                        "lora_versions LEFT JOIN training_samples ON "
                        "training_samples.lora_version_id = lora_versions.id",
                        account_id, version_id, "lora_versions.");
  }

  // --- shoots ---

  Shoot create_shoot(const std::string& account_id, Shoot shoot) override {
    require_json(shoot.styles_json, "shoot styles_json");
    if (shoot.image_count < 0)
      throw Error(ErrorCode::kInvalidArgument, "a shoot cannot have a negative image count");
    shoot.id = new_random_id();
    shoot.account_id = account_id;
    shoot.created_at = shoot.updated_at = unix_millis_now();
    database_->transaction([&] {
      require_subject(account_id, shoot.subject_id);
      db().execute(
          "INSERT INTO shoots (id, account_id, subject_id, styles_json, image_count, status, "
          "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
          {shoot.id, shoot.account_id, shoot.subject_id, shoot.styles_json, shoot.image_count,
           shoot_status_name(shoot.status), shoot.created_at, shoot.updated_at});
    });
    return shoot;
  }

  std::optional<Shoot> get_shoot(const std::string& account_id,
                                 const std::string& shoot_id) override {
    return first<Shoot>(
        db().execute(select_from(kShootColumns, "shoots", "id = ? AND account_id = ?"),
                     {shoot_id, account_id}),
        read_shoot);
  }

  std::vector<Shoot> list_shoots(const std::string& account_id,
                                 const std::string& subject_id) override {
    if (subject_id.empty())
      return all<Shoot>(db().execute(select_from(kShootColumns, "shoots",
                                                 "account_id = ? ORDER BY created_at DESC, id"),
                                     {account_id}),
                        read_shoot);
    return all<Shoot>(
        db().execute(select_from(kShootColumns, "shoots",
                                 "subject_id = ? AND account_id = ? ORDER BY created_at DESC, id"),
                     {subject_id, account_id}),
        read_shoot);
  }

  bool update_shoot_status(const std::string& account_id, const std::string& shoot_id,
                           ShootStatus status) override {
    return db().execute(
                   "UPDATE shoots SET status = ?, updated_at = ? WHERE id = ? AND "
                   "account_id = ?",
                   {shoot_status_name(status), unix_millis_now(), shoot_id, account_id})
               .affected_rows > 0;
  }

  Deletion delete_shoot(const std::string& account_id, const std::string& shoot_id) override {
    return delete_owned("shoots",
                        "SELECT images.blob_sha256 FROM images JOIN shoots ON images.shoot_id = "
                        "shoots.id",
                        account_id, shoot_id, "shoots.");
  }

  // --- images ---

  Image add_image(const std::string& account_id, Image image) override {
    require_text(image.blob_sha256, "image blob");
    require_json(image.recipe_json, "image recipe_json");
    image.id = new_random_id();
    image.account_id = account_id;
    image.created_at = unix_millis_now();
    database_->transaction([&] {
      if (!get_shoot(account_id, image.shoot_id))
        throw Error(ErrorCode::kNotFound, "shoot " + image.shoot_id + " not found");
      db().execute(
          "INSERT INTO images (id, account_id, shoot_id, blob_sha256, recipe_json, likeness, "
          "quality, favourite, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
          {image.id, image.account_id, image.shoot_id, image.blob_sha256, image.recipe_json,
           optional_value(image.likeness), optional_value(image.quality),
           int64_t{image.favourite ? 1 : 0}, image.created_at});
    });
    return image;
  }

  std::optional<Image> get_image(const std::string& account_id,
                                 const std::string& image_id) override {
    return first<Image>(
        db().execute(select_from(kImageColumns, "images", "id = ? AND account_id = ?"),
                     {image_id, account_id}),
        read_image);
  }

  std::vector<Image> list_images(const std::string& account_id,
                                 const std::string& shoot_id) override {
    // NULL scores sort last on both back ends via the IS NULL keys.
    return all<Image>(
        db().execute(select_from(kImageColumns, "images",
                                 "shoot_id = ? AND account_id = ? ORDER BY favourite DESC, "
                                 "likeness IS NULL, likeness DESC, quality IS NULL, quality "
                                 "DESC, created_at, id"),
                     {shoot_id, account_id}),
        read_image);
  }

  bool set_image_favourite(const std::string& account_id, const std::string& image_id,
                           bool favourite) override {
    return db().execute("UPDATE images SET favourite = ? WHERE id = ? AND account_id = ?",
                        {int64_t{favourite ? 1 : 0}, image_id, account_id})
               .affected_rows > 0;
  }

  bool set_image_scores(const std::string& account_id, const std::string& image_id,
                        std::optional<double> likeness, std::optional<double> quality) override {
    return db().execute(
                   "UPDATE images SET likeness = ?, quality = ? WHERE id = ? AND account_id = ?",
                   {optional_value(likeness), optional_value(quality), image_id, account_id})
               .affected_rows > 0;
  }

  Deletion delete_image(const std::string& account_id, const std::string& image_id) override {
    return delete_owned("images", "SELECT blob_sha256 FROM images", account_id, image_id);
  }

  // --- models ---

  std::vector<Model> list_models() override {
    return all<Model>(db().execute(std::string("SELECT ") + kModelColumns +
                                       " FROM models ORDER BY builtin DESC, added_at, id",
                                   {}),
                      read_model);
  }

  std::optional<Model> get_model(const std::string& model_id) override {
    return first<Model>(db().execute(select_from(kModelColumns, "models", "id = ?"), {model_id}),
                        read_model);
  }

  std::optional<Model> find_model_by_path(const std::string& path) override {
    return first<Model>(db().execute(select_from(kModelColumns, "models", "path = ?"), {path}),
                        read_model);
  }

  Model default_model() override {
    auto model = first<Model>(
        db().execute(select_from(kModelColumns, "models", "is_default = 1"), {}), read_model);
    if (!model) model = get_model(kBuiltinModelId);
    if (!model)
      throw Error(ErrorCode::kInternal, "the models table has lost its built-in model row");
    return *model;
  }

  Model add_model(Model model) override {
    require_text(model.path, "model path");
    require_text(model.name, "model name");
    if (model.kind != kModelCheckpoint && model.kind != kModelIpAdapter &&
        model.kind != kModelImageEncoder)
      throw Error(ErrorCode::kInvalidArgument, "model kind '" + model.kind +
                                                   "' is not one of checkpoint, ip_adapter, "
                                                   "image_encoder");
    model.id = new_random_id();
    model.builtin = false;
    model.is_default = false;
    model.added_at = unix_millis_now();
    database_->transaction([&] {
      if (find_model_by_path(model.path))
        throw Error(ErrorCode::kInvalidArgument,
                    "the model " + model.path + " is registered already");
      db().execute(
          "INSERT INTO models (id, name, path, family, prediction, builtin, is_default, "
          "added_at, kind) VALUES (?, ?, ?, ?, ?, 0, 0, ?, ?)",
          {model.id, model.name, model.path, model.family, model.prediction, model.added_at,
           model.kind});
    });
    return model;
  }

  bool set_default_model(const std::string& model_id) override {
    bool found = false;
    database_->transaction([&] {
      // Locks the built-in row first, so concurrent changes of the default queue up here on
      // PostgreSQL and each then sees the other's result (SQLite's write lock already does).
      db().execute("UPDATE models SET builtin = builtin WHERE id = ?", {kBuiltinModelId});
      const auto model = get_model(model_id);
      if (!model || model->kind != kModelCheckpoint) return;  // only checkpoints shoot
      db().execute("UPDATE models SET is_default = 0 WHERE is_default = 1 AND id <> ?", {model_id});
      db().execute("UPDATE models SET is_default = 1 WHERE id = ?", {model_id});
      found = true;
    });
    return found;
  }

  bool delete_model(const std::string& model_id) override {
    return db().execute("DELETE FROM models WHERE id = ? AND builtin = 0 AND is_default = 0",
                        {model_id})
               .affected_rows > 0;
  }

  // --- storage ---

  StorageUse storage_use(const std::string& account_id) override {
    StorageUse use;
    use.photos = blob_use("SELECT COUNT(*) FROM photos WHERE account_id = ?",
                          "SELECT blob_sha256 FROM photos WHERE account_id = ? UNION SELECT "
                          "crop_blob FROM photos WHERE account_id = ? AND crop_blob IS NOT NULL",
                          account_id, 2);
    use.images =
        blob_use("SELECT COUNT(*) FROM images WHERE account_id = ?",
                 "SELECT DISTINCT blob_sha256 FROM images WHERE account_id = ?", account_id, 1);
    // A LoRA's size includes the sample images its training made.
    use.loras = blob_use("SELECT COUNT(*) FROM lora_versions WHERE account_id = ?",
                         "SELECT blob_sha256 FROM lora_versions WHERE account_id = ? AND "
                         "blob_sha256 IS NOT NULL UNION SELECT training_samples.blob_sha256 FROM "
                         "training_samples JOIN lora_versions ON lora_versions.id = "
                         "training_samples.lora_version_id WHERE lora_versions.account_id = ?",
                         account_id, 2);
    return use;
  }

  std::vector<std::string> referenced_blobs() override {
    SqlResult result = db().execute(
        "SELECT face_profile_blob FROM subjects WHERE face_profile_blob IS NOT NULL "
        "UNION SELECT blob_sha256 FROM photos "
        "UNION SELECT crop_blob FROM photos WHERE crop_blob IS NOT NULL "
        "UNION SELECT blob_sha256 FROM lora_versions WHERE blob_sha256 IS NOT NULL "
        "UNION SELECT blob_sha256 FROM images "
        "UNION SELECT blob_sha256 FROM training_samples "
        "UNION SELECT blob_sha256 FROM style_samples "
        "UNION SELECT blob_sha256 FROM template_pictures "
        "UNION SELECT picture_blob FROM templates",
        {});
    std::vector<std::string> hashes;
    for (const SqlRow& row : result.rows) hashes.push_back(row.text(0));
    std::sort(hashes.begin(), hashes.end());
    return hashes;
  }

 private:
  Database& db() { return *database_; }

  void require_account(const std::string& account_id) {
    if (db().execute("SELECT 1 FROM accounts WHERE id = ?", {account_id}).rows.empty())
      throw Error(ErrorCode::kNotFound, "account " + account_id + " not found");
  }

  static void require_identity_source(const std::string& source) {
    if (source != kIdentityTrained && source != kIdentityInstant)
      throw Error(ErrorCode::kInvalidArgument,
                  "identity source '" + source + "' is not 'trained' or 'instant'");
  }

  void require_subject(const std::string& account_id, const std::string& subject_id) {
    if (db().execute("SELECT 1 FROM subjects WHERE id = ? AND account_id = ?",
                     {subject_id, account_id})
            .rows.empty())
      throw Error(ErrorCode::kNotFound, "subject " + subject_id + " not found");
  }

  // A record count and the distinct digests of `blobs_query`, both filtered by the account
  // (`blobs_query` takes the account id `placeholders` times).
  BlobUse blob_use(const char* count_query, const char* blobs_query, const std::string& account_id,
                   int placeholders) {
    BlobUse use;
    use.records = db().execute(count_query, {account_id}).rows.at(0).integer(0);
    const std::vector<SqlValue> parameters(static_cast<size_t>(placeholders), account_id);
    std::set<std::string> hashes;
    collect(db().execute(blobs_query, parameters), hashes);
    use.blobs.assign(hashes.begin(), hashes.end());
    return use;
  }

  static void collect(const SqlResult& result, std::set<std::string>& hashes) {
    for (const SqlRow& row : result.rows)
      for (size_t column = 0; column < row.size(); ++column)
        if (!row.is_null(column)) hashes.insert(row.text(column));
  }

  // Blob digests referenced by rows matching `filter` (e.g. "account_id = ?") in every table.
  std::set<std::string> blobs_of(const std::string& filter, const std::string& value) {
    std::set<std::string> hashes;
    collect(db().execute("SELECT face_profile_blob FROM subjects WHERE " + filter, {value}),
            hashes);
    collect(db().execute("SELECT blob_sha256, crop_blob FROM photos WHERE " + filter, {value}),
            hashes);
    collect(db().execute("SELECT blob_sha256 FROM lora_versions WHERE " + filter, {value}), hashes);
    collect(db().execute("SELECT training_samples.blob_sha256 FROM training_samples JOIN "
                         "lora_versions ON lora_versions.id = training_samples.lora_version_id "
                         "WHERE lora_versions." +
                             filter,
                         {value}),
            hashes);
    collect(db().execute("SELECT blob_sha256 FROM images WHERE " + filter, {value}), hashes);
    collect(db().execute("SELECT picture_blob FROM templates WHERE " + filter, {value}), hashes);
    return hashes;
  }

  std::set<std::string> blobs_of_subject(const std::string& subject_id) {
    std::set<std::string> hashes;
    collect(db().execute("SELECT face_profile_blob FROM subjects WHERE id = ?", {subject_id}),
            hashes);
    collect(db().execute("SELECT blob_sha256, crop_blob FROM photos WHERE subject_id = ?",
                         {subject_id}),
            hashes);
    collect(
        db().execute("SELECT blob_sha256 FROM lora_versions WHERE subject_id = ?", {subject_id}),
        hashes);
    collect(db().execute("SELECT training_samples.blob_sha256 FROM training_samples JOIN "
                         "lora_versions ON lora_versions.id = training_samples.lora_version_id "
                         "WHERE lora_versions.subject_id = ?",
                         {subject_id}),
            hashes);
    collect(db().execute("SELECT images.blob_sha256 FROM images JOIN shoots ON images.shoot_id "
                         "= shoots.id WHERE shoots.subject_id = ?",
                         {subject_id}),
            hashes);
    return hashes;
  }

  // The candidates that no row references any more (content-addressed blobs are shared
  // between rows and even accounts, so a file is removed only when its last user goes).
  std::vector<std::string> unreferenced(const std::set<std::string>& candidates) {
    std::vector<std::string> orphans;
    for (const std::string& hash : candidates) {
      SqlResult result = db().execute(
          "SELECT 1 FROM subjects WHERE face_profile_blob = ? "
          "UNION ALL SELECT 1 FROM photos WHERE blob_sha256 = ? OR crop_blob = ? "
          "UNION ALL SELECT 1 FROM lora_versions WHERE blob_sha256 = ? "
          "UNION ALL SELECT 1 FROM images WHERE blob_sha256 = ? "
          "UNION ALL SELECT 1 FROM training_samples WHERE blob_sha256 = ? "
          "UNION ALL SELECT 1 FROM style_samples WHERE blob_sha256 = ? "
          "UNION ALL SELECT 1 FROM template_pictures WHERE blob_sha256 = ? "
          "UNION ALL SELECT 1 FROM templates WHERE picture_blob = ?",
          {hash, hash, hash, hash, hash, hash, hash, hash, hash});
      if (result.rows.empty()) orphans.push_back(hash);
    }
    return orphans;
  }

  // Deletes one owned row (and its cascade); `blob_query` selects the blobs it references,
  // filtered here by id and account (`prefix` qualifies the columns in a join).
  Deletion delete_owned(const std::string& table, const std::string& blob_query,
                        const std::string& account_id, const std::string& id,
                        const std::string& prefix = "") {
    Deletion deletion;
    database_->transaction([&] {
      std::set<std::string> candidates;
      collect(
          db().execute(blob_query + " WHERE " + prefix + "id = ? AND " + prefix + "account_id = ?",
                       {id, account_id}),
          candidates);
      deletion.found = db().execute("DELETE FROM " + table + " WHERE id = ? AND account_id = ?",
                                    {id, account_id})
                           .affected_rows > 0;
      deletion.orphaned_blobs = unreferenced(candidates);
    });
    return deletion;
  }

  std::shared_ptr<Database> database_;
};

}  // namespace

std::unique_ptr<Repository> make_repository(std::shared_ptr<Database> database) {
  return std::make_unique<SqlRepository>(std::move(database));
}

std::unique_ptr<Repository> open_repository(const std::string& url) {
  return make_repository(open_database(url));
}

}  // namespace doppel::store

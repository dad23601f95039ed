// The store's SQL row plumbing: each record's column list next to its row reader (so they cannot
// drift apart), optional values, and small query helpers. Internal to store/.
#pragma once
#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "doppel/core/error.hpp"
#include "doppel/store/repository.hpp"

namespace doppel::store::rows {

inline SqlValue optional_value(const std::optional<std::string>& value) {
  if (value) return *value;
  return nullptr;
}

inline SqlValue optional_value(const std::optional<double>& value) {
  if (value) return *value;
  return nullptr;
}

inline SqlValue optional_value(const std::optional<int64_t>& value) {
  if (value) return *value;
  return nullptr;
}

inline void require_json(const std::string& text, const char* field) {
  if (!nlohmann::json::accept(text))
    throw Error(ErrorCode::kInvalidArgument,
                std::string(field) + " is not valid JSON: '" + text.substr(0, 80) + "'");
}

inline void require_text(const std::string& text, const char* field) {
  if (text.empty()) throw Error(ErrorCode::kInvalidArgument, std::string(field) + " is empty");
}

// --- column lists and row readers (kept next to each other so they cannot drift) ---

inline constexpr const char* kAccountColumns = "id, email, display_name, password_hash, created_at";
inline Account read_account(const SqlRow& row) {
  return Account{row.text(0), row.text(1), row.text(2), row.text(3), row.integer(4)};
}

inline constexpr const char* kSessionColumns =
    "id, account_id, token_hash, csrf_secret, created_at, expires_at";
inline Session read_session(const SqlRow& row) {
  return Session{row.text(0), row.text(1),    row.text(2),
                 row.text(3), row.integer(4), row.integer(5)};
}

inline constexpr const char* kApiTokenColumns =
    "id, account_id, name, token_hash, created_at, expires_at";
inline ApiToken read_api_token(const SqlRow& row) {
  return ApiToken{row.text(0), row.text(1),    row.text(2),
                  row.text(3), row.integer(4), row.optional_integer(5)};
}

inline constexpr const char* kSubjectColumns =
    "id, account_id, name, trigger_word, status, face_profile_blob, created_at, updated_at, "
    "class_word, identity_source";
inline Subject read_subject(const SqlRow& row) {
  return Subject{row.text(0),
                 row.text(1),
                 row.text(2),
                 row.text(3),
                 parse_subject_status(row.text(4)),
                 row.optional_text(5),
                 row.integer(6),
                 row.integer(7),
                 row.text(8),
                 row.text(9)};
}

inline constexpr const char* kPhotoColumns =
    "id, account_id, subject_id, blob_sha256, original_size, verdict, reasons_json, crop_blob, "
    "created_at";
inline Photo read_photo(const SqlRow& row) {
  return Photo{row.text(0), row.text(1),          row.text(2),
               row.text(3), row.integer(4),       parse_photo_verdict(row.text(5)),
               row.text(6), row.optional_text(7), row.integer(8)};
}

inline constexpr const char* kLoraColumns =
    "id, account_id, subject_id, blob_sha256, settings_json, validation_likeness, status, "
    "created_at, updated_at";
inline LoraVersion read_lora(const SqlRow& row) {
  return LoraVersion{row.text(0),
                     row.text(1),
                     row.text(2),
                     row.optional_text(3),
                     row.text(4),
                     row.optional_real(5),
                     parse_lora_status(row.text(6)),
                     row.integer(7),
                     row.integer(8)};
}

inline constexpr const char* kShootColumns =
    "id, account_id, subject_id, styles_json, image_count, status, created_at, updated_at";
inline Shoot read_shoot(const SqlRow& row) {
  return Shoot{row.text(0),    row.text(1),    row.text(2),
               row.text(3),    row.integer(4), parse_shoot_status(row.text(5)),
               row.integer(6), row.integer(7)};
}

inline constexpr const char* kImageColumns =
    "id, account_id, shoot_id, blob_sha256, recipe_json, likeness, quality, favourite, "
    "created_at";
inline Image read_image(const SqlRow& row) {
  return Image{row.text(0),          row.text(1),         row.text(2),
               row.text(3),          row.text(4),         row.optional_real(5),
               row.optional_real(6), row.integer(7) != 0, row.integer(8)};
}

inline constexpr const char* kModelColumns =
    "id, name, path, family, prediction, builtin, is_default, added_at, kind";
inline Model read_model(const SqlRow& row) {
  return Model{row.text(0),         row.text(1),         row.text(2),    row.text(3), row.text(4),
               row.integer(5) != 0, row.integer(6) != 0, row.integer(7), row.text(8)};
}

template <typename Record, typename Reader>
std::optional<Record> first(const SqlResult& result, Reader read) {
  if (result.rows.empty()) return std::nullopt;
  return read(result.rows.front());
}

template <typename Record, typename Reader>
std::vector<Record> all(const SqlResult& result, Reader read) {
  std::vector<Record> records;
  records.reserve(result.rows.size());
  for (const SqlRow& row : result.rows) records.push_back(read(row));
  return records;
}

inline std::string select_from(const char* columns, const char* table, const char* where) {
  return std::string("SELECT ") + columns + " FROM " + table + " WHERE " + where;
}

}  // namespace doppel::store::rows

#include "doppel/store/account_templates.hpp"

#include <algorithm>

#include "doppel/core/error.hpp"

namespace doppel::store {
namespace {

AccountTemplate template_from_row(const SqlRow& row) {
  return {row.text(0), row.text(1), row.text(2), row.text(3), row.text(4), row.integer(5)};
}

constexpr const char* kColumns =
    "SELECT id, account_id, name, picture_blob, settings_json, created_at FROM templates ";

}  // namespace

AccountTemplate add_account_template(Database& database, AccountTemplate entry) {
  for (const auto& [value, what] :
       {std::pair{&entry.name, "name"}, std::pair{&entry.picture_blob, "picture digest"},
        std::pair{&entry.settings_json, "settings"}})
    if (value->empty())
      throw Error(ErrorCode::kInvalidArgument, std::string("a template's ") + what + " is empty");
  entry.id = new_random_id();
  entry.created_at = unix_millis_now();
  database.transaction([&] {
    if (database.execute("SELECT 1 FROM accounts WHERE id = ?", {entry.account_id}).rows.empty())
      throw Error(ErrorCode::kNotFound, "account " + entry.account_id + " not found");
    database.execute(
        "INSERT INTO templates (id, account_id, name, picture_blob, settings_json, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        {entry.id, entry.account_id, entry.name, entry.picture_blob, entry.settings_json,
         entry.created_at});
  });
  return entry;
}

std::vector<AccountTemplate> list_account_templates(Database& database,
                                                    const std::string& account_id) {
  const SqlResult result = database.execute(
      std::string(kColumns) + "WHERE account_id = ? ORDER BY created_at, name, id", {account_id});
  std::vector<AccountTemplate> entries;
  for (const SqlRow& row : result.rows) entries.push_back(template_from_row(row));
  return entries;
}

std::optional<AccountTemplate> get_account_template(Database& database,
                                                    const std::string& account_id,
                                                    const std::string& id) {
  const SqlResult result =
      database.execute(std::string(kColumns) + "WHERE id = ? AND account_id = ?", {id, account_id});
  if (result.rows.empty()) return std::nullopt;
  return template_from_row(result.rows.front());
}

Deletion delete_account_template(Database& database, Repository& repository,
                                 const std::string& account_id, const std::string& id) {
  Deletion deletion;
  std::string picture;
  database.transaction([&] {
    const auto entry = get_account_template(database, account_id, id);
    if (!entry) return;
    picture = entry->picture_blob;
    deletion.found =
        database.execute("DELETE FROM templates WHERE id = ? AND account_id = ?", {id, account_id})
            .affected_rows > 0;
  });
  if (!deletion.found) return deletion;
  // Pictures are content-addressed: the same picture uploaded twice (or by two accounts) is one
  // file, removed with its last user.
  const std::vector<std::string> referenced = repository.referenced_blobs();
  if (!std::binary_search(referenced.begin(), referenced.end(), picture))
    deletion.orphaned_blobs.push_back(picture);
  return deletion;
}

}  // namespace doppel::store

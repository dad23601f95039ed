// Portrait templates an account uploaded: a picture (a blob) whose faces the studio replaces
// with a person's, and the template's settings as the template YAML names them. They belong to
// the account that uploaded them: every read and delete is filtered by it.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "doppel/store/database.hpp"
#include "doppel/store/repository.hpp"

namespace doppel::store {

struct AccountTemplate {
  std::string id;
  std::string account_id;
  std::string name;
  std::string picture_blob;   // sha256 of the picture's bytes in the blob store
  std::string settings_json;  // portrait_template_to_json of the template
  int64_t created_at = 0;
};

// Records a template for its account (fills id and created_at). Throws kInvalidArgument for an
// empty name, digest or settings, kNotFound for an unknown account.
AccountTemplate add_account_template(Database& database, AccountTemplate entry);

// The account's templates, oldest first (then by name).
std::vector<AccountTemplate> list_account_templates(Database& database,
                                                    const std::string& account_id);

// One of the account's templates; nullopt for another account's or a missing one.
std::optional<AccountTemplate> get_account_template(Database& database,
                                                    const std::string& account_id,
                                                    const std::string& id);

// Deletes one of the account's templates; orphaned_blobs holds its picture when no row
// references it any more (the caller removes the file).
Deletion delete_account_template(Database& database, Repository& repository,
                                 const std::string& account_id, const std::string& id);

}  // namespace doppel::store

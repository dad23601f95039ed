// Versioned schema migrations: numbered .sql files under src/store/migrations, embedded
// into the binary at build time and applied in order at open, each recorded in
// schema_migrations (version, name, applied_at).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "doppel/store/database.hpp"

namespace doppel::store {

struct Migration {
  int64_t version = 0;  // from the file name: 0001_initial.sql -> 1
  std::string name;     // "0001_initial"
  std::string sql;
};

// The migrations compiled into this binary, sorted by version (1, 2, 3, ... without gaps).
const std::vector<Migration>& builtin_migrations();

// Highest version this binary knows.
int64_t latest_schema_version();

// Applies the pending migrations inside one transaction and returns the resulting version.
// Throws doppel::Error (kUnsupported) naming both versions when the database is newer.
int64_t migrate(Database& database);

// The version recorded in the database (0 for an empty one).
int64_t current_schema_version(Database& database);

}  // namespace doppel::store

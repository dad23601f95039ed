// The two SQL back ends behind doppel::store::Database (internal to the store layer).
#pragma once
#include <filesystem>
#include <memory>
#include <string>

#include "doppel/store/database.hpp"

namespace doppel::store {

// Opens (creating if absent) an SQLite file with WAL, a busy timeout and foreign keys on.
std::unique_ptr<Database> connect_sqlite(const std::filesystem::path& path);

// Refuses text that would not survive both back ends alike (PostgreSQL text cannot hold NUL
// bytes; libpq would silently cut the value there). Throws doppel::Error (kInvalidArgument).
void require_storable_text(const std::string& text);

// Connects with a libpq connection string or URI.
std::unique_ptr<Database> connect_postgres(const std::string& connection_string);

}  // namespace doppel::store

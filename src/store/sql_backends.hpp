// The two SQL back ends behind doppel::store::Database (internal to the store layer).
#pragma once
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "doppel/store/database.hpp"

namespace doppel::store {

// Opens (creating if absent) an SQLite file with WAL, a busy timeout and foreign keys on.
std::unique_ptr<Database> connect_sqlite(const std::filesystem::path& path);

// Refuses text that would not survive both back ends alike (PostgreSQL text cannot hold NUL
// bytes; libpq would silently cut the value there). Throws doppel::Error (kInvalidArgument).
void require_storable_text(const std::string& text);

// Runs `work` in a transaction; nested calls (depth > 0) join the outer one. `rollback` runs
// only when the outermost `work` or its commit throws, and must not throw itself.
void run_nested_transaction(int& depth, const std::function<void()>& work,
                            const std::function<void()>& begin, const std::function<void()>& commit,
                            const std::function<void()>& rollback);

// Connects with a libpq connection string or URI.
std::unique_ptr<Database> connect_postgres(const std::string& connection_string);

}  // namespace doppel::store

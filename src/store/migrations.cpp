#include "doppel/store/migrations.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <utility>

#include "doppel/core/error.hpp"

namespace doppel::store {

// Defined in the .cpp that CMake generates from migrations/*.sql.
const std::vector<std::pair<std::string, std::string>>& embedded_migration_files();

namespace {

// Serialises concurrent migrators on PostgreSQL (several machines starting at once).
constexpr int64_t kMigrationLockKey = 0x646f7070656c;  // "doppel"

std::vector<Migration> parse_embedded() {
  std::vector<Migration> migrations;
  for (const auto& [file_name, sql] : embedded_migration_files()) {
    size_t digits = 0;
    while (digits < file_name.size() && std::isdigit(static_cast<unsigned char>(file_name[digits])))
      ++digits;
    if (digits == 0 || file_name.size() < 4 || file_name.substr(file_name.size() - 4) != ".sql")
      throw Error(ErrorCode::kInternal,
                  "migration file " + file_name + " must be named NNNN_description.sql");
    Migration migration;
    migration.version = std::stoll(file_name.substr(0, digits));
    migration.name = file_name.substr(0, file_name.size() - 4);
    migration.sql = sql;
    migrations.push_back(std::move(migration));
  }
  std::sort(migrations.begin(), migrations.end(),
            [](const Migration& a, const Migration& b) { return a.version < b.version; });
  for (size_t index = 0; index < migrations.size(); ++index) {
    if (migrations[index].version != static_cast<int64_t>(index) + 1)
      throw Error(ErrorCode::kInternal, "migrations must be numbered 1, 2, 3, ... without gaps; " +
                                            migrations[index].name + " breaks the sequence");
  }
  return migrations;
}

void create_migrations_table(Database& database) {
  database.execute(
      "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT "
      "NULL, applied_at BIGINT NOT NULL)",
      {});
}

int64_t recorded_version(Database& database) {
  SqlResult result = database.execute("SELECT MAX(version) FROM schema_migrations", {});
  if (result.rows.empty() || result.rows[0].is_null(0)) return 0;
  return result.rows[0].integer(0);
}

}  // namespace

const std::vector<Migration>& builtin_migrations() {
  static const std::vector<Migration> migrations = parse_embedded();
  return migrations;
}

int64_t latest_schema_version() {
  return builtin_migrations().empty() ? 0 : builtin_migrations().back().version;
}

int64_t current_schema_version(Database& database) {
  int64_t version = 0;
  database.transaction([&] {
    create_migrations_table(database);
    version = recorded_version(database);
  });
  return version;
}

int64_t migrate(Database& database) {
  int64_t version = 0;
  database.transaction([&] {
    if (database.dialect() == SqlDialect::kPostgres)
      database.execute("SELECT pg_advisory_xact_lock(?)", {kMigrationLockKey});
    create_migrations_table(database);
    version = recorded_version(database);
    if (version > latest_schema_version())
      throw Error(ErrorCode::kUnsupported, "the database " + database.description() +
                                               " has schema version " + std::to_string(version) +
                                               ", newer than this doppel build knows (" +
                                               std::to_string(latest_schema_version()) +
                                               "); upgrade doppel or point it at another database");
    int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
    for (const Migration& migration : builtin_migrations()) {
      if (migration.version <= version) continue;
      database.execute_script(migration.sql);
      database.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                       {migration.version, migration.name, now});
      version = migration.version;
    }
  });
  return version;
}

}  // namespace doppel::store

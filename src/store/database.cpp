#include "doppel/store/database.hpp"

#include <filesystem>

#include "doppel/core/error.hpp"
#include "doppel/store/migrations.hpp"
#include "store/sql_backends.hpp"

namespace doppel::store {
namespace {

std::unique_ptr<Database> open_sqlite_file(const std::filesystem::path& path) {
  if (path.empty())
    throw Error(ErrorCode::kInvalidArgument, "the SQLite database path is empty (use sqlite:PATH)");
  std::error_code status;
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), status);
  if (status)
    throw Error(ErrorCode::kIo, "cannot create the folder " + path.parent_path().string() +
                                    " for the database: " + status.message());
  return connect_sqlite(path);
}

}  // namespace

std::shared_ptr<Database> open_database(const std::string& url) {
  std::shared_ptr<Database> database;
  if (url.starts_with("postgres://") || url.starts_with("postgresql://")) {
    database = connect_postgres(url);
  } else if (url.starts_with("sqlite:")) {
    database = open_sqlite_file(url.substr(7));
  } else if (url.ends_with(".db") || url.ends_with(".sqlite") || url.ends_with(".sqlite3")) {
    database = open_sqlite_file(url);
  } else {
    throw Error(
        ErrorCode::kInvalidArgument,
        "unknown database '" + url + "': use sqlite:PATH or postgres://user@host:port/database");
  }
  migrate(*database);
  return database;
}

std::shared_ptr<Database> open_database(const std::string& url,
                                        const std::filesystem::path& data_dir) {
  return open_database(url.empty() ? "sqlite:" + (data_dir / "doppel.db").string() : url);
}

void run_nested_transaction(int& depth, const std::function<void()>& work,
                            const std::function<void()>& begin, const std::function<void()>& commit,
                            const std::function<void()>& rollback) {
  if (depth > 0) {
    ++depth;
    try {
      work();
    } catch (...) {
      --depth;
      throw;
    }
    --depth;
    return;
  }
  begin();
  depth = 1;
  try {
    work();
    depth = 0;
    commit();
  } catch (...) {
    depth = 0;
    rollback();
    throw;
  }
}

}  // namespace doppel::store

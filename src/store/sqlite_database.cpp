#include <sqlite3.h>

#include <chrono>
#include <mutex>
#include <thread>

#include "doppel/core/error.hpp"
#include "store/sql_backends.hpp"

namespace doppel::store {
namespace {

// Writers wait this long for another connection's write transaction before failing.
constexpr int kBusyTimeoutMilliseconds = 10000;

class SqliteDatabase final : public Database {
 public:
  explicit SqliteDatabase(const std::filesystem::path& path) : path_(path) {
    int status =
        sqlite3_open_v2(path.c_str(), &connection_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (status != SQLITE_OK) {
      std::string reason = connection_ ? sqlite3_errmsg(connection_) : sqlite3_errstr(status);
      sqlite3_close(connection_);
      connection_ = nullptr;
      throw Error(ErrorCode::kIo, "cannot open the SQLite database " + path.string() + ": " +
                                      reason + " (check the folder exists and is writable)");
    }
    sqlite3_busy_timeout(connection_, kBusyTimeoutMilliseconds);
    sqlite3_extended_result_codes(connection_, 1);
    try {
      // WAL lets readers proceed while one writer commits; NORMAL sync is crash-safe in
      // WAL mode (a power loss may drop the last commits, a killed process never does).
      enable_write_ahead_log();
      execute_script("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;");
      SqlResult check = execute("PRAGMA foreign_keys", {});
      if (check.rows.empty() || check.rows[0].integer(0) != 1)
        throw Error(ErrorCode::kUnsupported,
                    "this SQLite build cannot enforce foreign keys; doppel needs them");
    } catch (...) {
      sqlite3_close(connection_);
      throw;
    }
  }

  ~SqliteDatabase() override { sqlite3_close(connection_); }

  SqlDialect dialect() const override { return SqlDialect::kSqlite; }

  std::string description() const override { return "sqlite:" + path_.string(); }

  SqlResult execute(std::string_view sql, const std::vector<SqlValue>& parameters) override {
    std::lock_guard lock(mutex_);
    sqlite3_stmt* raw_statement = nullptr;
    const char* tail = nullptr;
    int status = sqlite3_prepare_v2(connection_, sql.data(), static_cast<int>(sql.size()),
                                    &raw_statement, &tail);
    if (status != SQLITE_OK) fail(status, sql);
    // A second statement would be ignored silently; only execute_script runs several.
    if (tail &&
        std::string_view(tail, sql.data() + sql.size() - tail).find_first_not_of(" \t\r\n;") !=
            std::string_view::npos) {
      sqlite3_finalize(raw_statement);
      throw Error(ErrorCode::kInternal,
                  "execute() got more than one SQL statement: " + std::string(sql.substr(0, 120)));
    }
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> statement(raw_statement,
                                                                    sqlite3_finalize);
    if (static_cast<size_t>(sqlite3_bind_parameter_count(statement.get())) != parameters.size())
      throw Error(
          ErrorCode::kInternal,
          "SQL statement expects " + std::to_string(sqlite3_bind_parameter_count(statement.get())) +
              " parameters, got " + std::to_string(parameters.size()) + ": " + std::string(sql));
    for (size_t index = 0; index < parameters.size(); ++index)
      bind(statement.get(), index, parameters[index], sql);

    SqlResult result;
    int columns = sqlite3_column_count(statement.get());
    while (true) {
      status = sqlite3_step(statement.get());
      if (status == SQLITE_DONE) break;
      if (status != SQLITE_ROW) fail(status, sql);
      std::vector<SqlValue> values;
      values.reserve(static_cast<size_t>(columns));
      for (int column = 0; column < columns; ++column)
        values.push_back(read(statement.get(), column));
      result.rows.emplace_back(std::move(values));
    }
    result.affected_rows = sqlite3_changes64(connection_);
    return result;
  }

  void execute_script(std::string_view sql) override {
    std::lock_guard lock(mutex_);
    std::string text(sql);
    char* message = nullptr;
    int status = sqlite3_exec(connection_, text.c_str(), nullptr, nullptr, &message);
    if (status != SQLITE_OK) {
      std::string reason = message ? message : sqlite3_errstr(status);
      sqlite3_free(message);
      throw Error(ErrorCode::kIo, "SQLite script failed on " + path_.string() + ": " + reason);
    }
  }

  void transaction(const std::function<void()>& work) override {
    std::lock_guard lock(mutex_);
    run_nested_transaction(
        depth_, work, [&] { execute("BEGIN IMMEDIATE", {}); }, [&] { execute("COMMIT", {}); },
        [&] {
          if (!sqlite3_get_autocommit(connection_))
            sqlite3_exec(connection_, "ROLLBACK", nullptr, nullptr, nullptr);
        });
  }

 private:
  // Switching a fresh file to WAL needs an exclusive lock, and SQLite reports "locked" at
  // once (without its busy handler) when another connection is opening the same new file:
  // retry for as long as the busy timeout. Once set, WAL is a property of the file.
  void enable_write_ahead_log() {
    auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(kBusyTimeoutMilliseconds);
    while (true) {
      int status =
          sqlite3_exec(connection_, "PRAGMA journal_mode = WAL", nullptr, nullptr, nullptr);
      if (status == SQLITE_OK) return;
      int primary = status & 0xff;
      if ((primary != SQLITE_BUSY && primary != SQLITE_LOCKED) ||
          std::chrono::steady_clock::now() > deadline)
        fail(status, "PRAGMA journal_mode = WAL");
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  void bind(sqlite3_stmt* statement, size_t index, const SqlValue& value, std::string_view sql) {
    int position = static_cast<int>(index) + 1;
    int status = SQLITE_OK;
    if (std::holds_alternative<std::nullptr_t>(value)) {
      status = sqlite3_bind_null(statement, position);
    } else if (auto* number = std::get_if<int64_t>(&value)) {
      status = sqlite3_bind_int64(statement, position, *number);
    } else if (auto* real = std::get_if<double>(&value)) {
      status = sqlite3_bind_double(statement, position, *real);
    } else {
      const std::string& text = std::get<std::string>(value);
      require_storable_text(text);
      status = sqlite3_bind_text64(statement, position, text.data(), text.size(), SQLITE_TRANSIENT,
                                   SQLITE_UTF8);
    }
    if (status != SQLITE_OK) fail(status, sql);
  }

  static SqlValue read(sqlite3_stmt* statement, int column) {
    switch (sqlite3_column_type(statement, column)) {
      case SQLITE_INTEGER:
        return static_cast<int64_t>(sqlite3_column_int64(statement, column));
      case SQLITE_FLOAT:
        return sqlite3_column_double(statement, column);
      case SQLITE_NULL:
        return nullptr;
      default: {
        const void* bytes = sqlite3_column_blob(statement, column);
        int size = sqlite3_column_bytes(statement, column);
        return std::string(static_cast<const char*>(bytes), static_cast<size_t>(size));
      }
    }
  }

  [[noreturn]] void fail(int status, std::string_view sql) {
    std::string message = "SQLite error on " + path_.string() + ": " + sqlite3_errmsg(connection_) +
                          " (in: " + std::string(sql.substr(0, 120)) + ")";
    if ((status & 0xff) == SQLITE_CONSTRAINT) throw Error(ErrorCode::kInvalidArgument, message);
    throw Error(ErrorCode::kIo, message);
  }

  std::filesystem::path path_;
  sqlite3* connection_ = nullptr;
  std::recursive_mutex mutex_;
  int depth_ = 0;
};

}  // namespace

std::unique_ptr<Database> connect_sqlite(const std::filesystem::path& path) {
  return std::make_unique<SqliteDatabase>(path);
}

}  // namespace doppel::store

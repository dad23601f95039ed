// A minimal SQL connection shared by the repository and the job queue: '?' placeholders,
// typed parameters, one transaction at a time. Two back ends: SQLite and PostgreSQL.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace doppel::store {

enum class SqlDialect { kSqlite, kPostgres };

// A bound parameter or a returned value. PostgreSQL returns every value as text;
// the accessors of SqlRow convert, so callers never look at the alternative held.
using SqlValue = std::variant<std::nullptr_t, int64_t, double, std::string>;

class SqlRow {
 public:
  explicit SqlRow(std::vector<SqlValue> values) : values_(std::move(values)) {}
  size_t size() const { return values_.size(); }
  bool is_null(size_t column) const;
  int64_t integer(size_t column) const;  // throws doppel::Error on NULL or non-numbers
  double real(size_t column) const;
  std::string text(size_t column) const;  // NULL reads as ""
  std::optional<std::string> optional_text(size_t column) const;
  std::optional<double> optional_real(size_t column) const;
  std::optional<int64_t> optional_integer(size_t column) const;

 private:
  const SqlValue& at(size_t column) const;
  std::vector<SqlValue> values_;
};

struct SqlResult {
  std::vector<SqlRow> rows;
  int64_t affected_rows = 0;  // for INSERT / UPDATE / DELETE
};

// One connection. Thread-safe: calls are serialised, and a transaction holds the
// connection for its whole duration. For parallel workers open one Database each.
class Database {
 public:
  virtual ~Database() = default;
  virtual SqlDialect dialect() const = 0;

  // Runs one statement with '?' placeholders. Errors are doppel::Error: kInvalidArgument
  // for constraint violations (unique, foreign key, check), kIo for everything else.
  virtual SqlResult execute(std::string_view sql, const std::vector<SqlValue>& parameters = {}) = 0;

  // Runs several ';'-separated statements without parameters (migrations).
  virtual void execute_script(std::string_view sql) = 0;

  // Runs `work` in one transaction: commit when it returns, roll back when it throws (the
  // exception is rethrown). Nested calls join the outermost transaction. SQLite takes the
  // write lock at the start (BEGIN IMMEDIATE), so two writers never deadlock on upgrade.
  virtual void transaction(const std::function<void()>& work) = 0;

  // Where this connection points, without any password (for logs and errors).
  virtual std::string description() const = 0;
};

// Opens "sqlite:PATH" (or a plain path ending in .db / .sqlite) or "postgres://..." /
// "postgresql://..." (libpq URI) and applies pending migrations. Throws doppel::Error
// (kUnsupported) when the database's schema is newer than this build knows.
std::shared_ptr<Database> open_database(const std::string& url);

// `url`, or when it is empty the embedded SQLite file <data_dir>/doppel.db (created with its
// folder if absent): what the server and its workers open.
std::shared_ptr<Database> open_database(const std::string& url,
                                        const std::filesystem::path& data_dir);

}  // namespace doppel::store

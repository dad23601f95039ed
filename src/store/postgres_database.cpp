#include <libpq-fe.h>

#include <charconv>
#include <mutex>

#include "doppel/core/error.hpp"
#include "store/sql_backends.hpp"

namespace doppel::store {
namespace {

// Rewrites '?' placeholders to PostgreSQL's $1, $2, ... outside quoted text and comments,
// so one SQL text serves both back ends.
std::string to_numbered_placeholders(std::string_view sql) {
  std::string out;
  out.reserve(sql.size() + 16);
  int next = 1;
  for (size_t i = 0; i < sql.size(); ++i) {
    char c = sql[i];
    if (c == '\'' || c == '"') {
      size_t end = sql.find(c, i + 1);
      if (end == std::string_view::npos) end = sql.size() - 1;
      out.append(sql.substr(i, end - i + 1));
      i = end;
    } else if (c == '-' && i + 1 < sql.size() && sql[i + 1] == '-') {
      size_t end = sql.find('\n', i);
      if (end == std::string_view::npos) end = sql.size() - 1;
      out.append(sql.substr(i, end - i + 1));
      i = end;
    } else if (c == '?') {
      out += '$';
      out += std::to_string(next++);
    } else {
      out += c;
    }
  }
  return out;
}

std::string value_as_text(const SqlValue& value) {
  if (auto* number = std::get_if<int64_t>(&value)) return std::to_string(*number);
  if (auto* real = std::get_if<double>(&value)) {
    char buffer[64];
    auto [end, status] = std::to_chars(buffer, buffer + sizeof buffer, *real);
    return std::string(buffer, end);
  }
  return std::get<std::string>(value);
}

void ignore_notice(void*, const char*) {}

class PostgresDatabase final : public Database {
 public:
  explicit PostgresDatabase(const std::string& connection_string) {
    connection_ = PQconnectdb(connection_string.c_str());
    if (PQstatus(connection_) != CONNECTION_OK) {
      std::string reason = PQerrorMessage(connection_);
      PQfinish(connection_);
      throw Error(ErrorCode::kIo, "cannot connect to PostgreSQL: " + trim(reason) +
                                      " (check the postgres:// URL, that the server runs and "
                                      "that the database exists)");
    }
    PQsetNoticeProcessor(connection_, ignore_notice, nullptr);
    auto safe = [](const char* text) { return std::string(text ? text : ""); };
    description_ = "postgres://" + safe(PQuser(connection_)) + "@" + safe(PQhost(connection_)) +
                   ":" + safe(PQport(connection_)) + "/" + safe(PQdb(connection_));
  }

  ~PostgresDatabase() override { PQfinish(connection_); }

  SqlDialect dialect() const override { return SqlDialect::kPostgres; }

  std::string description() const override { return description_; }

  SqlResult execute(std::string_view sql, const std::vector<SqlValue>& parameters) override {
    std::lock_guard lock(mutex_);
    reconnect_if_broken();
    std::string numbered = to_numbered_placeholders(sql);
    std::vector<std::string> texts;
    std::vector<const char*> pointers;
    texts.reserve(parameters.size());
    for (const SqlValue& value : parameters) {
      if (std::holds_alternative<std::nullptr_t>(value)) {
        texts.emplace_back();
        pointers.push_back(nullptr);
      } else {
        if (auto* text = std::get_if<std::string>(&value)) require_storable_text(*text);
        texts.push_back(value_as_text(value));
        pointers.push_back(texts.back().c_str());
      }
    }
    // reserve() above keeps c_str() pointers valid while texts grows.
    std::unique_ptr<PGresult, void (*)(PGresult*)> result(
        PQexecParams(connection_, numbered.c_str(), static_cast<int>(parameters.size()), nullptr,
                     pointers.data(), nullptr, nullptr, 0),
        PQclear);
    check(result.get(), sql);

    SqlResult out;
    int rows = PQntuples(result.get());
    int columns = PQnfields(result.get());
    out.rows.reserve(static_cast<size_t>(rows));
    for (int row = 0; row < rows; ++row) {
      std::vector<SqlValue> values;
      values.reserve(static_cast<size_t>(columns));
      for (int column = 0; column < columns; ++column) {
        if (PQgetisnull(result.get(), row, column)) {
          values.emplace_back(nullptr);
        } else {
          values.emplace_back(
              std::string(PQgetvalue(result.get(), row, column),
                          static_cast<size_t>(PQgetlength(result.get(), row, column))));
        }
      }
      out.rows.emplace_back(std::move(values));
    }
    const char* affected = PQcmdTuples(result.get());
    if (affected && *affected) out.affected_rows = std::stoll(affected);
    return out;
  }

  void execute_script(std::string_view sql) override {
    std::lock_guard lock(mutex_);
    reconnect_if_broken();
    std::string text(sql);
    std::unique_ptr<PGresult, void (*)(PGresult*)> result(PQexec(connection_, text.c_str()),
                                                          PQclear);
    check(result.get(), sql);
  }

  void transaction(const std::function<void()>& work) override {
    std::lock_guard lock(mutex_);
    run_nested_transaction(
        depth_, work, [&] { execute("BEGIN", {}); }, [&] { execute("COMMIT", {}); },
        [&] {
          if (PQtransactionStatus(connection_) != PQTRANS_IDLE)
            PQclear(PQexec(connection_, "ROLLBACK"));
        });
  }

 private:
  static std::string trim(std::string text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    return text;
  }

  // A dropped connection is re-established between transactions, never inside one.
  void reconnect_if_broken() {
    if (PQstatus(connection_) == CONNECTION_OK) return;
    if (depth_ > 0)
      throw Error(ErrorCode::kIo, "the PostgreSQL connection to " + description_ +
                                      " was lost inside a transaction");
    PQreset(connection_);
    if (PQstatus(connection_) != CONNECTION_OK)
      throw Error(ErrorCode::kIo, "the PostgreSQL connection to " + description_ +
                                      " was lost and could not be re-established: " +
                                      trim(PQerrorMessage(connection_)));
  }

  void check(PGresult* result, std::string_view sql) {
    ExecStatusType status = result ? PQresultStatus(result) : PGRES_FATAL_ERROR;
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK || status == PGRES_EMPTY_QUERY)
      return;
    // The primary message only: the DETAIL line of a constraint error quotes row values,
    // which must not reach logs or API answers.
    const char* primary = result ? PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
    std::string reason = trim(primary ? primary : PQerrorMessage(connection_));
    const char* state = result ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
    std::string message = "PostgreSQL error on " + description_ + ": " + reason +
                          " (in: " + std::string(sql.substr(0, 120)) + ")";
    // SQLSTATE class 23: integrity constraint violation; class 22: data exception (a value
    // the column cannot hold, e.g. invalid UTF-8).
    if (state && state[0] == '2' && (state[1] == '3' || state[1] == '2'))
      throw Error(ErrorCode::kInvalidArgument, message);
    throw Error(ErrorCode::kIo, message);
  }

  PGconn* connection_ = nullptr;
  std::string description_;
  std::recursive_mutex mutex_;
  int depth_ = 0;
};

}  // namespace

std::unique_ptr<Database> connect_postgres(const std::string& connection_string) {
  return std::make_unique<PostgresDatabase>(connection_string);
}

}  // namespace doppel::store

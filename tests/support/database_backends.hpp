// Test databases for the store and queue suites: every test runs against SQLite and
// PostgreSQL. For PostgreSQL a private server is started on first use (initdb + pg_ctl in a
// temporary folder, listening only on a unix socket there, so parallel test processes never
// collide) and stopped and deleted when the process exits. When PostgreSQL's binaries are
// absent the PostgreSQL tests are skipped with the reason, never passed.
#pragma once
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>

namespace doppel::test {

// A fresh folder under the system temp dir, deleted with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "doppel-test-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

enum class Backend { kSqlite, kPostgres };

inline void PrintTo(Backend backend, std::ostream* out) {
  *out << (backend == Backend::kSqlite ? "SQLite" : "PostgreSQL");
}

inline std::string backend_name(const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::kSqlite ? "Sqlite" : "Postgres";
}

class PostgresTestServer {
 public:
  // The process's server, started on first call; nullptr with `reason` when PostgreSQL is not
  // installed. A server that is installed but fails to start is a test failure (throws).
  static PostgresTestServer* instance(std::string& reason) {
    static std::mutex mutex;
    static std::unique_ptr<PostgresTestServer> server;
    static std::string unavailable;
    std::lock_guard lock(mutex);
    if (!server && unavailable.empty()) {
      std::filesystem::path bin = find_binaries();
      if (bin.empty()) {
        unavailable =
            "PostgreSQL server binaries not found (install Debian's postgresql, or set "
            "DOPPEL_PG_BIN to the folder holding initdb and pg_ctl)";
      } else {
        server.reset(new PostgresTestServer(bin));
      }
    }
    reason = unavailable;
    return server.get();
  }

  ~PostgresTestServer() {
    run(pg_ctl_ + " -D " + (folder_ / "data").string() + " -m immediate -w stop");
    std::error_code ignored;
    std::filesystem::remove_all(folder_, ignored);
  }

  // A new empty database on this server; returns its postgres:// URL.
  std::string create_database() { return create_database_at(folder_); }

  // A new empty schema on the server whose socket is in `socket_folder`, as a URL whose
  // search_path points at it. A schema costs nothing to create, unlike a database
  // (CREATE DATABASE copies a 7 MB template), and isolates tests just as well.
  static std::string create_database_at(const std::filesystem::path& socket_folder) {
    static std::atomic<int> counter{0};
    std::string name =
        "doppel_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
    std::string url = url_for(socket_folder, "postgres");
    PGconn* connection = PQconnectdb(url.c_str());
    std::string error;
    if (PQstatus(connection) != CONNECTION_OK) {
      error = PQerrorMessage(connection);
    } else {
      PGresult* result = PQexec(connection, ("CREATE SCHEMA " + name).c_str());
      if (PQresultStatus(result) != PGRES_COMMAND_OK) error = PQresultErrorMessage(result);
      PQclear(result);
    }
    PQfinish(connection);
    if (!error.empty()) throw std::runtime_error("cannot create test schema: " + error);
    return url + "&options=-csearch_path%3D" + name;
  }

 private:
  explicit PostgresTestServer(const std::filesystem::path& bin) {
    std::string pattern = "/tmp/doppel-pg-XXXXXX";
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    folder_ = pattern;
    // initdb refuses to run as root: run the server as the postgres user in a folder it owns.
    std::string prefix;
    if (::geteuid() == 0) {
      const passwd* user = ::getpwnam("postgres");
      if (!user) {
        std::filesystem::remove_all(folder_);
        throw std::runtime_error("running as root but there is no 'postgres' user for initdb");
      }
      if (::chown(folder_.c_str(), user->pw_uid, user->pw_gid) != 0)
        throw std::runtime_error("cannot chown " + folder_.string());
      prefix = "runuser -u postgres -- ";
    }
    std::string data = (folder_ / "data").string();
    std::string log = (folder_ / "server.log").string();
    pg_ctl_ = prefix + (bin / "pg_ctl").string();
    if (!run(prefix + (bin / "initdb").string() + " -D " + data +
             " -U postgres -A trust -E UTF8 --no-locale --no-sync"))
      fail_start("initdb failed");
    // Unix socket only (listen_addresses=''), in our own folder: no port clashes.
    if (!run(pg_ctl_ + " -D " + data + " -l " + log + " -w -t 30 -o \"-c listen_addresses='' " +
             "-c unix_socket_directories='" + folder_.string() +
             "' -c fsync=off -c synchronous_commit=off -c full_page_writes=off\" start"))
      fail_start("pg_ctl start failed");
  }

  [[noreturn]] void fail_start(const std::string& what) {
    std::ifstream log(folder_ / "server.log");
    std::stringstream text;
    text << log.rdbuf();
    std::error_code ignored;
    std::filesystem::remove_all(folder_, ignored);
    throw std::runtime_error("PostgreSQL test server: " + what + "\n" + text.str());
  }

  static bool run(const std::string& command) {
    return std::system((command + " > /dev/null 2>&1").c_str()) == 0;
  }

  static std::filesystem::path find_binaries() {
    if (const char* env = std::getenv("DOPPEL_PG_BIN"); env && *env) {
      if (std::filesystem::exists(std::filesystem::path(env) / "initdb")) return env;
      return {};
    }
    std::error_code status;
    std::filesystem::path best;
    for (const auto& entry : std::filesystem::directory_iterator("/usr/lib/postgresql", status)) {
      std::filesystem::path bin = entry.path() / "bin";
      if (std::filesystem::exists(bin / "initdb") && std::filesystem::exists(bin / "pg_ctl") &&
          (best.empty() || bin > best))
        best = bin;
    }
    return best;
  }

  static std::string url_for(const std::filesystem::path& socket_folder,
                             const std::string& database) {
    return "postgresql://postgres@/" + database + "?host=" + socket_folder.string();
  }

  std::filesystem::path folder_;
  std::string pg_ctl_;
};

// A URL for a new, empty database of `backend` (SQLite: a file in `folder`). Returns nullopt
// with `skip_reason` when the back end is unavailable.
inline std::optional<std::string> new_test_database(Backend backend,
                                                    const std::filesystem::path& folder,
                                                    std::string& skip_reason) {
  if (backend == Backend::kSqlite) return "sqlite:" + (folder / "doppel.db").string();
  // Under CTest one server serves the whole run (tests/support/postgres_fixture.cmake).
  if (const char* shared = std::getenv("DOPPEL_TEST_POSTGRES_DIR");
      shared && std::filesystem::exists(std::filesystem::path(shared) / ".s.PGSQL.5432"))
    return PostgresTestServer::create_database_at(shared);
  PostgresTestServer* server = PostgresTestServer::instance(skip_reason);
  if (!server) return std::nullopt;
  return server->create_database();
}

}  // namespace doppel::test

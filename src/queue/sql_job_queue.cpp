// The job queue over the store's SQL database. Statements are shared by SQLite and
// PostgreSQL except the row-locking clause: PostgreSQL claims rows with
// FOR UPDATE SKIP LOCKED so concurrent workers pass each other by; SQLite's transactions
// take the database write lock up front (BEGIN IMMEDIATE), which serialises claims.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "doppel/core/error.hpp"
#include "doppel/queue/job_queue.hpp"
#include "doppel/store/repository.hpp"

namespace doppel::queue {
namespace {

using store::Database;
using store::SqlDialect;
using store::SqlResult;
using store::SqlRow;

// jobs.cancel_requested: 0 nothing asked, 1 cancel the job, 2 skip the item being made.
constexpr int64_t kCancelRequested = 1;
constexpr int64_t kSkipRequested = 2;
using store::SqlValue;

constexpr const char* kJobColumns =
    "id, account_id, subject_id, kind, payload_json, idempotency_key, status, attempts, "
    "max_attempts, available_at, lease_owner, lease_token, lease_expires_at, cancel_requested, "
    "progress, progress_message, result_json, error, created_at, updated_at, finished_at";

Job read_job(const SqlRow& row) {
  Job job;
  job.id = row.text(0);
  job.account_id = row.text(1);
  job.subject_id = row.optional_text(2);
  job.kind = row.text(3);
  job.payload_json = row.text(4);
  job.idempotency_key = row.optional_text(5);
  job.status = store::parse_job_status(row.text(6));
  job.attempts = row.integer(7);
  job.max_attempts = row.integer(8);
  job.available_at = row.integer(9);
  job.lease_owner = row.optional_text(10);
  job.lease_token = row.optional_text(11);
  job.lease_expires_at = row.optional_integer(12);
  job.cancel_requested = row.integer(13) == kCancelRequested;
  job.progress = row.real(14);
  job.progress_message = row.text(15);
  job.result_json = row.optional_text(16);
  job.error = row.optional_text(17);
  job.created_at = row.integer(18);
  job.updated_at = row.integer(19);
  job.finished_at = row.optional_integer(20);
  return job;
}

SqlValue optional_value(const std::optional<std::string>& value) {
  if (value) return *value;
  return nullptr;
}

void require_json(const std::string& text, const char* what) {
  if (!nlohmann::json::accept(text))
    throw Error(ErrorCode::kInvalidArgument,
                std::string(what) + " is not valid JSON: '" + text.substr(0, 80) + "'");
}

// How the current lease holder stands, read inside the caller's transaction.
enum class Standing { kHolds, kLost, kCancelRequested };

class SqlJobQueue final : public JobQueue {
 public:
  SqlJobQueue(std::shared_ptr<Database> database, QueueOptions options)
      : database_(std::move(database)), options_(std::move(options)) {
    if (!database_) throw Error(ErrorCode::kInvalidArgument, "make_job_queue: no database");
    if (options_.max_attempts < 1 || options_.base_backoff_ms < 0 ||
        options_.max_backoff_ms < options_.base_backoff_ms)
      throw Error(ErrorCode::kInvalidArgument,
                  "queue options need max_attempts >= 1 and 0 <= base_backoff_ms <= "
                  "max_backoff_ms");
    if (!options_.clock) options_.clock = store::unix_millis_now;
    lock_clause_ = database_->dialect() == SqlDialect::kPostgres ? " FOR UPDATE SKIP LOCKED" : "";
  }

  Job enqueue(const std::string& account_id, const NewJob& request) override {
    if (request.kind.empty()) throw Error(ErrorCode::kInvalidArgument, "a job needs a kind");
    require_json(request.payload_json, "job payload");
    if (request.idempotency_key && request.idempotency_key->empty())
      throw Error(ErrorCode::kInvalidArgument, "an idempotency key must not be empty");
    int64_t max_attempts = request.max_attempts.value_or(options_.max_attempts);
    if (max_attempts < 1) throw Error(ErrorCode::kInvalidArgument, "a job needs max_attempts >= 1");
    std::optional<Job> job;
    database_->transaction([&] {
      if (request.idempotency_key && (job = find_by_key(account_id, *request.idempotency_key)))
        return;
      if (db().execute("SELECT 1 FROM accounts WHERE id = ?", {account_id}).rows.empty())
        throw Error(ErrorCode::kNotFound, "account " + account_id + " not found");
      if (request.subject_id && db().execute("SELECT 1 FROM subjects WHERE id = ? AND "
                                             "account_id = ?",
                                             {*request.subject_id, account_id})
                                    .rows.empty())
        throw Error(ErrorCode::kNotFound, "subject " + *request.subject_id + " not found");
      int64_t now = options_.clock();
      std::string id = store::new_random_id();
      // ON CONFLICT: a concurrent enqueue with the same key won; return its job below.
      int64_t inserted =
          db().execute(
                  "INSERT INTO jobs (id, account_id, subject_id, kind, payload_json, "
                  "idempotency_key, status, attempts, max_attempts, available_at, "
                  "cancel_requested, progress, progress_message, created_at, updated_at) VALUES "
                  "(?, ?, ?, ?, ?, ?, 'queued', 0, ?, ?, 0, 0, '', ?, ?) ON CONFLICT DO NOTHING",
                  {id, account_id, optional_value(request.subject_id), request.kind,
                   request.payload_json, optional_value(request.idempotency_key), max_attempts, now,
                   now, now})
              .affected_rows;
      job = inserted > 0 ? find(id) : find_by_key(account_id, request.idempotency_key.value_or(""));
    });
    if (!job) throw Error(ErrorCode::kInternal, "enqueue: the new job cannot be read back");
    job->lease_token.reset();
    return *job;
  }

  std::optional<Job> lease(const std::string& worker_id, const std::vector<std::string>& kinds,
                           int64_t lease_ms) override {
    if (worker_id.empty()) throw Error(ErrorCode::kInvalidArgument, "lease: empty worker id");
    if (lease_ms <= 0) throw Error(ErrorCode::kInvalidArgument, "lease: duration must be > 0");
    std::optional<Job> leased;
    database_->transaction([&] {
      int64_t now = options_.clock();
      sweep_expired(now);
      std::string sql =
          "SELECT id FROM jobs WHERE ((status = 'queued' AND available_at <= ?) OR "
          "(status = 'running' AND lease_expires_at <= ? AND attempts < "
          "max_attempts AND cancel_requested <> 1))";
      std::vector<SqlValue> parameters = {now, now};
      if (!kinds.empty()) {
        sql += " AND kind IN (";
        for (size_t index = 0; index < kinds.size(); ++index) {
          sql += index ? ", ?" : "?";
          parameters.emplace_back(kinds[index]);
        }
        sql += ")";
      }
      sql += " ORDER BY available_at, created_at, id LIMIT 1";
      sql += lock_clause_;
      SqlResult candidate = db().execute(sql, parameters);
      if (candidate.rows.empty()) return;
      std::string id = candidate.rows[0].text(0);
      std::string token = store::new_random_id();
      int64_t claimed =
          db().execute(
                  "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_owner = ?, "
                  "lease_token = ?, lease_expires_at = ?, updated_at = ?, cancel_requested = 0 "
                  "WHERE id = ? AND "
                  "((status = 'queued' AND available_at <= ?) OR (status = 'running' AND "
                  "lease_expires_at <= ?))",
                  {worker_id, token, now + lease_ms, now, id, now, now})
              .affected_rows;
      if (claimed == 1) leased = find(id);
    });
    return leased;
  }

  LeaseState heartbeat(const std::string& job_id, const std::string& lease_token,
                       int64_t lease_ms) override {
    if (lease_ms <= 0) throw Error(ErrorCode::kInvalidArgument, "heartbeat: duration must be > 0");
    LeaseState state = LeaseState::kLost;
    database_->transaction([&] {
      int64_t now = options_.clock();
      state = check_in(job_id, lease_token, now, true);
      if (state != LeaseState::kHeld && state != LeaseState::kSkipCurrent) return;
      db().execute(
          "UPDATE jobs SET lease_expires_at = ?, updated_at = ? WHERE id = ? AND "
          "lease_token = ?",
          {now + lease_ms, now, job_id, lease_token});
    });
    return state;
  }

  LeaseState progress(const std::string& job_id, const std::string& lease_token, double fraction,
                      const std::string& message) override {
    if (!(fraction >= 0.0)) fraction = 0.0;  // also maps NaN to 0
    fraction = std::min(fraction, 1.0);
    LeaseState state = LeaseState::kLost;
    database_->transaction([&] {
      int64_t now = options_.clock();
      state = check_in(job_id, lease_token, now, true);
      if (state != LeaseState::kHeld && state != LeaseState::kSkipCurrent) return;
      db().execute(
          "UPDATE jobs SET progress = ?, progress_message = ?, updated_at = ? WHERE id "
          "= ? AND lease_token = ?",
          {fraction, message, now, job_id, lease_token});
    });
    return state;
  }

  void complete(const std::string& job_id, const std::string& lease_token,
                const std::string& result_json) override {
    require_json(result_json, "job result");
    LeaseState state = LeaseState::kLost;
    database_->transaction([&] {
      int64_t now = options_.clock();
      if ((state = check_in(job_id, lease_token, now)) != LeaseState::kHeld) return;
      int64_t updated =
          db().execute(
                  "UPDATE jobs SET status = 'succeeded', result_json = ?, progress = 1, "
                  "lease_token = NULL, lease_expires_at = NULL, updated_at = ?, "
                  "finished_at = ? WHERE id = ? AND lease_token = ? AND status = 'running'",
                  {result_json, now, now, job_id, lease_token})
              .affected_rows;
      if (updated != 1)
        throw Error(ErrorCode::kInternal, "job " + job_id + " changed while being completed");
    });
    throw_unless_held(state, job_id);
  }

  Job fail(const std::string& job_id, const std::string& lease_token, const std::string& error,
           bool retryable) override {
    std::optional<Job> result;
    LeaseState state = LeaseState::kLost;
    database_->transaction([&] {
      int64_t now = options_.clock();
      if ((state = check_in(job_id, lease_token, now)) != LeaseState::kHeld) return;
      Job job = *find(job_id);
      if (!retryable || job.attempts >= job.max_attempts) {
        db().execute(
            "UPDATE jobs SET status = 'dead', error = ?, lease_token = NULL, "
            "lease_expires_at = NULL, updated_at = ?, finished_at = ? WHERE id = ?",
            {error, now, now, job_id});
      } else {
        db().execute(
            "UPDATE jobs SET status = 'queued', error = ?, available_at = ?, "
            "lease_token = NULL, lease_expires_at = NULL, updated_at = ? WHERE id = ?",
            {error, now + backoff_ms(job.attempts), now, job_id});
      }
      result = find(job_id);
    });
    throw_unless_held(state, job_id);
    result->lease_token.reset();
    return *result;
  }

  bool cancel(const std::string& account_id, const std::string& job_id) override {
    bool cancelled = false;
    database_->transaction([&] {
      int64_t now = options_.clock();
      std::optional<Job> job = get(account_id, job_id);
      if (!job) return;
      if (job->status == JobStatus::kQueued) {
        db().execute(
            "UPDATE jobs SET status = 'cancelled', cancel_requested = 1, updated_at = ?, "
            "finished_at = ? WHERE id = ?",
            {now, now, job_id});
        cancelled = true;
      } else if (job->status == JobStatus::kRunning) {
        db().execute("UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE id = ?",
                     {now, job_id});
        cancelled = true;
      }
    });
    return cancelled;
  }

  bool skip_current(const std::string& account_id, const std::string& job_id) override {
    return db().execute(
                   "UPDATE jobs SET cancel_requested = 2, updated_at = ? WHERE id = ? AND "
                   "account_id = ? AND status = 'running' AND cancel_requested = 0",
                   {options_.clock(), job_id, account_id})
               .affected_rows > 0;
  }

  bool retry(const std::string& account_id, const std::string& job_id) override {
    int64_t now = options_.clock();
    return db().execute(
                   "UPDATE jobs SET status = 'queued', attempts = 0, available_at = ?, "
                   "cancel_requested = 0, progress = 0, progress_message = '', "
                   "result_json = NULL, finished_at = NULL, lease_owner = NULL, "
                   "updated_at = ? WHERE id = ? AND account_id = ? AND status IN ('dead', "
                   "'cancelled')",
                   {now, now, job_id, account_id})
               .affected_rows > 0;
  }

  std::optional<Job> get(const std::string& account_id, const std::string& job_id) override {
    SqlResult result = db().execute(
        std::string("SELECT ") + kJobColumns + " FROM jobs WHERE id = ? AND account_id = ?",
        {job_id, account_id});
    if (result.rows.empty()) return std::nullopt;
    Job job = read_job(result.rows[0]);
    job.lease_token.reset();  // tokens are for the worker that leased, never for readers
    return job;
  }

  std::vector<Job> list(const std::string& account_id, std::optional<JobStatus> status,
                        int64_t limit) override {
    std::string sql = std::string("SELECT ") + kJobColumns + " FROM jobs WHERE account_id = ?";
    std::vector<SqlValue> parameters = {account_id};
    if (status) {
      sql += " AND status = ?";
      parameters.emplace_back(std::string(store::job_status_name(*status)));
    }
    sql += " ORDER BY created_at DESC, id LIMIT ?";
    parameters.emplace_back(std::max<int64_t>(0, limit));
    std::vector<Job> jobs;
    for (const SqlRow& row : db().execute(sql, parameters).rows) {
      jobs.push_back(read_job(row));
      jobs.back().lease_token.reset();
    }
    return jobs;
  }

  std::vector<Job> list_changed(const std::string& account_id, int64_t since,
                                int64_t limit) override {
    std::vector<Job> jobs;
    for (const SqlRow& row :
         db().execute(std::string("SELECT ") + kJobColumns +
                          " FROM jobs WHERE account_id = ? AND updated_at >= ? ORDER BY "
                          "updated_at, id LIMIT ?",
                      {account_id, since, std::max<int64_t>(0, limit)})
             .rows) {
      jobs.push_back(read_job(row));
      jobs.back().lease_token.reset();
    }
    return jobs;
  }

  int64_t count(JobStatus status) override {
    return db()
        .execute("SELECT COUNT(*) FROM jobs WHERE status = ?",
                 {std::string(store::job_status_name(status))})
        .rows.at(0)
        .integer(0);
  }

  int64_t backoff_ms(int64_t attempts) const override {
    int64_t delay = options_.base_backoff_ms;
    for (int64_t step = 1; step < attempts && delay < options_.max_backoff_ms; ++step) delay *= 2;
    return std::min(delay, options_.max_backoff_ms);
  }

 private:
  Database& db() { return *database_; }

  std::optional<Job> find(const std::string& job_id) {
    SqlResult result =
        db().execute(std::string("SELECT ") + kJobColumns + " FROM jobs WHERE id = ?", {job_id});
    if (result.rows.empty()) return std::nullopt;
    return read_job(result.rows[0]);
  }

  std::optional<Job> find_by_key(const std::string& account_id, const std::string& key) {
    SqlResult result = db().execute(std::string("SELECT ") + kJobColumns +
                                        " FROM jobs WHERE account_id = ? AND idempotency_key = ?",
                                    {account_id, key});
    if (result.rows.empty()) return std::nullopt;
    return read_job(result.rows[0]);
  }

  // Finishes jobs whose lease expired and that may not run again: used up (dead) or
  // cancelled while their worker was gone.
  void sweep_expired(int64_t now) {
    db().execute(std::string("UPDATE jobs SET status = 'cancelled', lease_token = NULL, "
                             "lease_expires_at = NULL, updated_at = ?, finished_at = ? WHERE id "
                             "IN (SELECT id FROM jobs WHERE status = 'running' AND "
                             "lease_expires_at <= ? AND cancel_requested = 1") +
                     lock_clause_ + ")",
                 {now, now, now});
    db().execute(std::string("UPDATE jobs SET status = 'dead', error = 'the worker stopped "
                             "responding on the last allowed attempt (lease expired)', "
                             "lease_token = NULL, lease_expires_at = NULL, updated_at = ?, "
                             "finished_at = ? WHERE id IN (SELECT id FROM jobs WHERE status = "
                             "'running' AND lease_expires_at <= ? AND attempts >= max_attempts") +
                     lock_clause_ + ")",
                 {now, now, now});
  }

  // Reads the job's lease inside the caller's transaction. A cancel request is honoured
  // here: the job becomes "cancelled" and its lease is released.
  LeaseState check_in(const std::string& job_id, const std::string& lease_token, int64_t now,
                      bool report_skip = false) {
    SqlResult result = db().execute(
        std::string("SELECT status, lease_token, cancel_requested FROM jobs WHERE id = ?") +
            lock_clause_no_skip(),
        {job_id});
    if (result.rows.empty()) return LeaseState::kLost;
    const SqlRow& row = result.rows[0];
    if (row.text(0) != "running" || row.optional_text(1) != lease_token) return LeaseState::kLost;
    if (row.integer(2) == kSkipRequested) {  // told once; a finishing job has nothing to skip
      db().execute("UPDATE jobs SET cancel_requested = 0 WHERE id = ?", {job_id});
      return report_skip ? LeaseState::kSkipCurrent : LeaseState::kHeld;
    }
    if (row.integer(2) == kCancelRequested) {
      db().execute(
          "UPDATE jobs SET status = 'cancelled', lease_token = NULL, lease_expires_at = "
          "NULL, updated_at = ?, finished_at = ? WHERE id = ?",
          {now, now, job_id});
      return LeaseState::kCancelled;
    }
    return LeaseState::kHeld;
  }

  // Thrown after the transaction, so that honouring a cancel request is committed first.
  static void throw_unless_held(LeaseState state, const std::string& job_id) {
    switch (state) {
      case LeaseState::kHeld:
      case LeaseState::kSkipCurrent:
        return;
      case LeaseState::kCancelled:
        throw Error(ErrorCode::kCancelled,
                    "job " + job_id + " was cancelled by its owner; its result is discarded");
      case LeaseState::kLost:
        throw Error(ErrorCode::kCancelled,
                    "job " + job_id +
                        ": this worker no longer holds its lease (it expired and "
                        "another worker took the job, or the job already "
                        "finished); the result is discarded");
    }
  }

  // A plain row lock: the holder's own updates must wait for a concurrent claim, not skip.
  std::string lock_clause_no_skip() const {
    return database_->dialect() == SqlDialect::kPostgres ? " FOR UPDATE" : "";
  }

  std::shared_ptr<Database> database_;
  QueueOptions options_;
  std::string lock_clause_;
};

}  // namespace

std::unique_ptr<JobQueue> make_job_queue(std::shared_ptr<store::Database> database,
                                         QueueOptions options) {
  return std::make_unique<SqlJobQueue>(std::move(database), std::move(options));
}

}  // namespace doppel::queue

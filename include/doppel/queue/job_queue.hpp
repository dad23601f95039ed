// Durable jobs on the store's database. Workers lease jobs for a while and renew the lease
// with heartbeats; a worker that dies simply stops renewing, the lease expires and another
// worker takes the job over. Every lease carries a fresh token, and only the current token
// can report progress or finish the job, so a result is written exactly once. Thread-safe
// (calls serialise on the Database); give each worker process or thread pool its own
// connection for parallel claiming. See docs/store.md for the state machine.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "doppel/store/database.hpp"
#include "doppel/store/records.hpp"

namespace doppel::queue {

using store::Job;
using store::JobStatus;

struct QueueOptions {
  int64_t max_attempts = 5;              // leases per job before it is dead-lettered
  int64_t base_backoff_ms = 2'000;       // delay after the first failure; doubles each time
  int64_t max_backoff_ms = 15 * 60'000;  // cap of the exponential back-off
  std::function<int64_t()> clock{};      // ms since the epoch; empty: the system clock
};

// What a lease holder learns when it checks in.
enum class LeaseState {
  kHeld,         // carry on
  kLost,         // the lease expired and another worker took the job, or it already finished
  kCancelled,    // the owner cancelled the job; it is now "cancelled", stop and drop the work
  kSkipCurrent,  // held, and the owner asked to drop the item being made and go on (A1111 skip)
};

struct NewJob {
  std::string kind{};
  std::string payload_json = "{}";
  std::optional<std::string> subject_id{};       // the job is deleted with its subject
  std::optional<std::string> idempotency_key{};  // unique per account
  std::optional<int64_t> max_attempts{};         // default: QueueOptions::max_attempts
};

class JobQueue {
 public:
  virtual ~JobQueue() = default;

  // Adds a job for `account_id`. When the account already has a job with the same
  // idempotency key, returns that job instead (whatever its state) and adds nothing.
  // Throws doppel::Error: kInvalidArgument (empty kind, bad JSON), kNotFound (unknown
  // account, or a subject that is not the account's).
  virtual Job enqueue(const std::string& account_id, const NewJob& job) = 0;

  // Claims the oldest available job of one of `kinds` (all kinds when empty) for
  // `lease_ms`, or nothing. Available: queued and due, or running with an expired lease.
  // Each lease counts one attempt; the answer carries the lease token. Two workers never
  // hold the same job: PostgreSQL claims with FOR UPDATE SKIP LOCKED, SQLite inside one
  // write transaction.
  virtual std::optional<Job> lease(const std::string& worker_id,
                                   const std::vector<std::string>& kinds, int64_t lease_ms) = 0;

  // Extends the lease by `lease_ms` from now, if the token still holds it.
  virtual LeaseState heartbeat(const std::string& job_id, const std::string& lease_token,
                               int64_t lease_ms) = 0;

  // Records progress (fraction clamped to 0..1) if the token still holds the lease.
  virtual LeaseState progress(const std::string& job_id, const std::string& lease_token,
                              double fraction, const std::string& message) = 0;

  // Marks the job succeeded with `result_json`. Throws doppel::Error (kCancelled) when the
  // token no longer holds the lease or the job was cancelled: the result is then discarded,
  // which is what makes completion exactly-once.
  virtual void complete(const std::string& job_id, const std::string& lease_token,
                        const std::string& result_json) = 0;

  // Records a failed attempt. The job is retried after an exponential back-off, or
  // dead-lettered (status "dead") once it used max_attempts or when `retryable` is false.
  // Returns the job's new state; throws kCancelled like complete().
  virtual Job fail(const std::string& job_id, const std::string& lease_token,
                   const std::string& error, bool retryable = true) = 0;

  // Cancels one of the account's jobs: a queued job at once; a running one is flagged, and
  // its worker's next heartbeat or progress call returns kCancelled. False when the job is
  // not the account's or has already finished.
  virtual bool cancel(const std::string& account_id, const std::string& job_id) = 0;

  // Asks the worker of one of the account's running jobs to drop the item it is making and go
  // on with the next (A1111's skip): its next heartbeat or progress call returns kSkipCurrent,
  // once. False when the job is not the account's or is not running.
  virtual bool skip_current(const std::string& account_id, const std::string& job_id) = 0;

  // Puts a dead or cancelled job of the account back in the queue with fresh attempts.
  virtual bool retry(const std::string& account_id, const std::string& job_id) = 0;

  virtual std::optional<Job> get(const std::string& account_id, const std::string& job_id) = 0;
  // The account's jobs, newest first; optionally only those in `status`.
  virtual std::vector<Job> list(const std::string& account_id,
                                std::optional<JobStatus> status = std::nullopt,
                                int64_t limit = 100) = 0;

  // The account's jobs changed at or after `since` (ms), oldest change first: for progress
  // events, poll with the largest updated_at seen (minus a margin for clock skew between
  // workers).
  virtual std::vector<Job> list_changed(const std::string& account_id, int64_t since,
                                        int64_t limit = 100) = 0;

  // Number of jobs in `status` over all accounts (for metrics and tests).
  virtual int64_t count(JobStatus status) = 0;

  // The back-off before attempt `attempts + 1` after `attempts` failures.
  virtual int64_t backoff_ms(int64_t attempts) const = 0;
};

// The queue over an open (migrated) store database, SQLite or PostgreSQL.
std::unique_ptr<JobQueue> make_job_queue(std::shared_ptr<store::Database> database,
                                         QueueOptions options = {});

}  // namespace doppel::queue

// The job queue suite, run against SQLite and a real PostgreSQL server alike. Time is
// mostly a fake clock, so lease expiry and back-off are tested without sleeping.
#include "doppel/queue/job_queue.hpp"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <iostream>
#include <latch>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "doppel/core/error.hpp"
#include "doppel/store/repository.hpp"
#include "support/database_backends.hpp"

namespace doppel::queue {
namespace {

using test::Backend;

int64_t unix_now() {
  return store::unix_millis_now();
}

class JobQueueTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    std::string reason;
    std::optional<std::string> url = test::new_test_database(GetParam(), folder_.path(), reason);
    if (!url) GTEST_SKIP() << reason;
    url_ = *url;
    database_ = store::open_database(url_);
    repository_ = store::make_repository(database_);
    alice_ = repository_->create_account("alice@example.com", "Alice", "hash").id;
    bob_ = repository_->create_account("bob@example.com", "Bob", "hash").id;
    queue_ = make_job_queue(database_, options());
  }

  QueueOptions options() {
    QueueOptions options;
    options.max_attempts = 3;
    options.base_backoff_ms = 100;
    options.max_backoff_ms = 1000;
    options.clock = [this] { return now_.load(); };
    return options;
  }

  Job enqueue(const std::string& kind = "shoot", std::optional<std::string> key = std::nullopt) {
    return queue_->enqueue(alice_, NewJob{.kind = kind, .idempotency_key = key});
  }

  void expect_cancelled_error(const std::function<void()>& work) {
    try {
      work();
      ADD_FAILURE() << "expected doppel::Error (kCancelled)";
    } catch (const Error& error) {
      EXPECT_EQ(error.code(), ErrorCode::kCancelled) << error.what();
    }
  }

  test::TempDir folder_;
  std::string url_;
  std::shared_ptr<store::Database> database_;
  std::unique_ptr<store::Repository> repository_;
  std::unique_ptr<JobQueue> queue_;
  std::string alice_;
  std::string bob_;
  std::atomic<int64_t> now_{1'000'000};
};

TEST_P(JobQueueTest, RepeatedIdempotencyKeyReturnsTheExistingJob) {
  Job first = queue_->enqueue(
      alice_, NewJob{.kind = "train", .payload_json = R"({"steps":400})", .idempotency_key = "k1"});
  Job again = queue_->enqueue(
      alice_, NewJob{.kind = "train", .payload_json = R"({"steps":999})", .idempotency_key = "k1"});
  EXPECT_EQ(again.id, first.id);
  EXPECT_EQ(again.payload_json, R"({"steps":400})");
  EXPECT_NE(enqueue("train", "k2").id, first.id);
  // Keys are per account: Bob's "k1" is his own job.
  EXPECT_NE(queue_->enqueue(bob_, NewJob{.kind = "train", .idempotency_key = "k1"}).id, first.id);
  EXPECT_EQ(queue_->count(JobStatus::kQueued), 3);
  EXPECT_EQ(first.status, JobStatus::kQueued);
  EXPECT_FALSE(first.lease_token);
}

TEST_P(JobQueueTest, BadRequestsAreRejected) {
  EXPECT_THROW(queue_->enqueue(alice_, NewJob{.kind = ""}), Error);
  EXPECT_THROW(queue_->enqueue(alice_, NewJob{.kind = "x", .payload_json = "{oops"}), Error);
  EXPECT_THROW(queue_->enqueue("no-such-account", NewJob{.kind = "x"}), Error);
  std::string subject = repository_->create_subject(bob_, "Bob", "sks").id;
  try {
    queue_->enqueue(alice_, NewJob{.kind = "train", .subject_id = subject});
    FAIL() << "a job for another account's subject was accepted";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kNotFound);
  }
  EXPECT_EQ(queue_->count(JobStatus::kQueued), 0);
}

TEST_P(JobQueueTest, CompletionIsWrittenExactlyOnce) {
  Job job = enqueue();
  std::optional<Job> leased = queue_->lease("worker-1", {}, 30'000);
  ASSERT_TRUE(leased);
  EXPECT_EQ(leased->id, job.id);
  ASSERT_TRUE(leased->lease_token);
  EXPECT_EQ(leased->attempts, 1);
  EXPECT_EQ(leased->status, JobStatus::kRunning);
  EXPECT_EQ(*leased->lease_expires_at, now_ + 30'000);
  EXPECT_FALSE(queue_->lease("worker-2", {}, 30'000));  // nobody else gets it

  queue_->complete(job.id, *leased->lease_token, R"({"images":["a"]})");
  expect_cancelled_error(
      [&] { queue_->complete(job.id, *leased->lease_token, R"({"images":[]})"); });
  Job done = *queue_->get(alice_, job.id);
  EXPECT_EQ(done.status, JobStatus::kSucceeded);
  EXPECT_EQ(done.result_json, R"({"images":["a"]})");
  EXPECT_DOUBLE_EQ(done.progress, 1.0);
  EXPECT_TRUE(done.finished_at);
  EXPECT_FALSE(done.lease_token);  // readers never see tokens
  EXPECT_FALSE(queue_->lease("worker-2", {}, 30'000));
  EXPECT_EQ(queue_->heartbeat(job.id, *leased->lease_token, 1000), LeaseState::kLost);
}

// A worker that dies stops heartbeating; its lease expires, another worker takes the job,
// and the dead worker's token can no longer touch it.
TEST_P(JobQueueTest, ExpiredLeaseIsTakenOverAndTheStaleTokenCannotComplete) {
  Job job = enqueue();
  Job first = *queue_->lease("worker-1", {}, 1000);
  now_ += 999;
  EXPECT_FALSE(queue_->lease("worker-2", {}, 1000));
  now_ += 1;
  Job second = *queue_->lease("worker-2", {}, 1000);
  EXPECT_EQ(second.id, job.id);
  EXPECT_EQ(second.attempts, 2);
  EXPECT_EQ(second.lease_owner, "worker-2");
  EXPECT_NE(second.lease_token, first.lease_token);

  EXPECT_EQ(queue_->heartbeat(job.id, *first.lease_token, 1000), LeaseState::kLost);
  EXPECT_EQ(queue_->progress(job.id, *first.lease_token, 0.5, "late"), LeaseState::kLost);
  expect_cancelled_error([&] { queue_->complete(job.id, *first.lease_token, R"("stale")"); });
  expect_cancelled_error([&] { queue_->fail(job.id, *first.lease_token, "stale"); });

  queue_->complete(job.id, *second.lease_token, R"("fresh")");
  Job done = *queue_->get(alice_, job.id);
  EXPECT_EQ(done.result_json, R"("fresh")");
  EXPECT_EQ(done.status, JobStatus::kSucceeded);
  EXPECT_EQ(queue_->count(JobStatus::kRunning), 0);
}

TEST_P(JobQueueTest, HeartbeatsKeepTheLeaseAndProgressIsRecorded) {
  Job job = enqueue();
  Job leased = *queue_->lease("worker-1", {}, 1000);
  for (int beat = 0; beat < 5; ++beat) {
    now_ += 900;
    EXPECT_EQ(queue_->heartbeat(job.id, *leased.lease_token, 1000), LeaseState::kHeld);
    EXPECT_FALSE(queue_->lease("worker-2", {}, 1000));
  }
  EXPECT_EQ(queue_->progress(job.id, *leased.lease_token, 0.25, "step 5 of 20"), LeaseState::kHeld);
  Job running = *queue_->get(alice_, job.id);
  EXPECT_DOUBLE_EQ(running.progress, 0.25);
  EXPECT_EQ(running.progress_message, "step 5 of 20");
  EXPECT_EQ(*running.lease_expires_at, now_ + 1000);
  EXPECT_EQ(queue_->progress(job.id, *leased.lease_token, 7.0, "clamped"), LeaseState::kHeld);
  EXPECT_DOUBLE_EQ(queue_->get(alice_, job.id)->progress, 1.0);
  now_ += 1000;
  EXPECT_TRUE(queue_->lease("worker-2", {}, 1000));
}

TEST_P(JobQueueTest, FailuresBackOffExponentiallyThenDeadLetter) {
  EXPECT_EQ(queue_->backoff_ms(1), 100);
  EXPECT_EQ(queue_->backoff_ms(2), 200);
  EXPECT_EQ(queue_->backoff_ms(3), 400);
  EXPECT_EQ(queue_->backoff_ms(60), 1000);  // capped

  Job job = enqueue();
  Job attempt = *queue_->lease("w", {}, 5000);
  Job after_first = queue_->fail(job.id, *attempt.lease_token, "out of memory");
  EXPECT_EQ(after_first.status, JobStatus::kQueued);
  EXPECT_EQ(after_first.available_at, now_ + 100);
  EXPECT_EQ(after_first.error, "out of memory");
  EXPECT_FALSE(queue_->lease("w", {}, 5000));  // not before the back-off
  now_ += 100;
  attempt = *queue_->lease("w", {}, 5000);
  EXPECT_EQ(attempt.attempts, 2);
  EXPECT_EQ(queue_->fail(job.id, *attempt.lease_token, "again").available_at, now_ + 200);
  now_ += 200;
  attempt = *queue_->lease("w", {}, 5000);
  Job dead = queue_->fail(job.id, *attempt.lease_token, "third strike");
  EXPECT_EQ(dead.status, JobStatus::kDead);
  EXPECT_EQ(dead.attempts, 3);
  EXPECT_TRUE(dead.finished_at);
  now_ += 1'000'000;
  EXPECT_FALSE(queue_->lease("w", {}, 5000));
  EXPECT_EQ(queue_->count(JobStatus::kDead), 1);
  EXPECT_EQ(queue_->list(alice_, JobStatus::kDead).size(), 1u);

  // A permanent failure skips the retries; retry() brings a dead job back.
  Job broken = enqueue("train");
  Job lease = *queue_->lease("w", {}, 5000);
  EXPECT_EQ(queue_->fail(broken.id, *lease.lease_token, "bad model file", false).status,
            JobStatus::kDead);
  EXPECT_FALSE(queue_->retry(bob_, broken.id));
  EXPECT_TRUE(queue_->retry(alice_, broken.id));
  Job again = *queue_->lease("w", {}, 5000);
  EXPECT_EQ(again.id, broken.id);
  EXPECT_EQ(again.attempts, 1);
}

TEST_P(JobQueueTest, AWorkerThatDiesOnTheLastAttemptDeadLettersTheJob) {
  Job job = queue_->enqueue(alice_, NewJob{.kind = "shoot", .max_attempts = 2});
  queue_->lease("w1", {}, 100);
  now_ += 100;
  EXPECT_EQ(queue_->lease("w2", {}, 100)->attempts, 2);
  now_ += 100;
  EXPECT_FALSE(queue_->lease("w3", {}, 100));
  Job dead = *queue_->get(alice_, job.id);
  EXPECT_EQ(dead.status, JobStatus::kDead);
  EXPECT_NE(dead.error->find("lease expired"), std::string::npos);
}

// A1111's skip: the running worker hears it once, keeps its lease, and the job goes on.
TEST_P(JobQueueTest, SkipIsToldToTheRunningWorkerOnceAndTheJobGoesOn) {
  Job waiting = enqueue();
  EXPECT_FALSE(queue_->skip_current(alice_, waiting.id));  // nothing is being made yet
  Job leased = *queue_->lease("w", {}, 1000);
  EXPECT_FALSE(queue_->skip_current(bob_, leased.id));
  EXPECT_TRUE(queue_->skip_current(alice_, leased.id));
  EXPECT_FALSE(queue_->get(alice_, leased.id)->cancel_requested);  // not a cancel
  EXPECT_EQ(queue_->progress(leased.id, *leased.lease_token, 0.5, "image 1/3"),
            LeaseState::kSkipCurrent);
  EXPECT_EQ(queue_->heartbeat(leased.id, *leased.lease_token, 1000), LeaseState::kHeld);
  EXPECT_EQ(queue_->get(alice_, leased.id)->status, JobStatus::kRunning);

  // A skip that arrives as the job finishes changes nothing.
  EXPECT_TRUE(queue_->skip_current(alice_, leased.id));
  queue_->complete(leased.id, *leased.lease_token, "{}");
  EXPECT_EQ(queue_->get(alice_, leased.id)->status, JobStatus::kSucceeded);
  EXPECT_FALSE(queue_->skip_current(alice_, leased.id));

  // A skip left by a worker that vanished is not told to the next one.
  Job second = enqueue();
  Job first_lease = *queue_->lease("w1", {}, 1000);
  EXPECT_TRUE(queue_->skip_current(alice_, second.id));
  now_ += 5000;
  Job taken = *queue_->lease("w2", {}, 1000);
  EXPECT_EQ(taken.id, second.id);
  EXPECT_EQ(queue_->heartbeat(taken.id, *taken.lease_token, 1000), LeaseState::kHeld);
  (void)first_lease;
}

TEST_P(JobQueueTest, CancelStopsQueuedJobsAndTellsRunningWorkers) {
  Job waiting = enqueue();
  EXPECT_FALSE(queue_->cancel(bob_, waiting.id));
  EXPECT_TRUE(queue_->cancel(alice_, waiting.id));
  EXPECT_EQ(queue_->get(alice_, waiting.id)->status, JobStatus::kCancelled);
  EXPECT_FALSE(queue_->lease("w", {}, 1000));

  Job running = enqueue();
  Job leased = *queue_->lease("w", {}, 1000);
  EXPECT_TRUE(queue_->cancel(alice_, running.id));
  EXPECT_TRUE(queue_->get(alice_, running.id)->cancel_requested);
  EXPECT_EQ(queue_->heartbeat(running.id, *leased.lease_token, 1000), LeaseState::kCancelled);
  EXPECT_EQ(queue_->get(alice_, running.id)->status, JobStatus::kCancelled);
  expect_cancelled_error([&] { queue_->complete(running.id, *leased.lease_token, "{}"); });
  EXPECT_FALSE(queue_->get(alice_, running.id)->result_json);
  EXPECT_FALSE(queue_->cancel(alice_, running.id));  // already finished

  // A cancelled job whose worker vanished is finished by the next lease sweep.
  Job orphan = enqueue();
  queue_->lease("w", {}, 1000);
  queue_->cancel(alice_, orphan.id);
  now_ += 1000;
  EXPECT_FALSE(queue_->lease("w", {}, 1000));
  EXPECT_EQ(queue_->get(alice_, orphan.id)->status, JobStatus::kCancelled);
  EXPECT_EQ(queue_->count(JobStatus::kRunning), 0);
}

TEST_P(JobQueueTest, CompletingACancelledJobIsRejected) {
  Job job = enqueue();
  Job leased = *queue_->lease("w", {}, 1000);
  queue_->cancel(alice_, job.id);
  expect_cancelled_error([&] { queue_->complete(job.id, *leased.lease_token, "{}"); });
  EXPECT_EQ(queue_->get(alice_, job.id)->status, JobStatus::kCancelled);
}

TEST_P(JobQueueTest, LeaseHonoursKindsAndOrder) {
  Job train = enqueue("train");
  now_ += 1;
  Job shoot_1 = enqueue("shoot");
  now_ += 1;
  Job shoot_2 = enqueue("shoot");
  EXPECT_EQ(queue_->lease("w", {"shoot"}, 1000)->id, shoot_1.id);
  EXPECT_EQ(queue_->lease("w", {"shoot", "upscale"}, 1000)->id, shoot_2.id);
  EXPECT_FALSE(queue_->lease("w", {"shoot"}, 1000));
  EXPECT_EQ(queue_->lease("w", {}, 1000)->id, train.id);
}

TEST_P(JobQueueTest, JobsAreListedPerAccountOnly) {
  Job mine = enqueue();
  Job theirs = queue_->enqueue(bob_, NewJob{.kind = "shoot"});
  EXPECT_FALSE(queue_->get(bob_, mine.id));
  EXPECT_FALSE(queue_->get(alice_, theirs.id));
  ASSERT_EQ(queue_->list(alice_).size(), 1u);
  EXPECT_EQ(queue_->list(alice_)[0].id, mine.id);
  EXPECT_EQ(queue_->list(bob_)[0].id, theirs.id);
  EXPECT_TRUE(queue_->list(alice_, JobStatus::kSucceeded).empty());
  EXPECT_FALSE(queue_->cancel(bob_, mine.id));
  EXPECT_EQ(queue_->get(alice_, mine.id)->status, JobStatus::kQueued);
}

TEST_P(JobQueueTest, ChangedJobsCanBePolledForProgressEvents) {
  Job working = enqueue();
  now_ += 10;
  Job waiting = enqueue();
  int64_t seen = now_;
  now_ += 10;
  Job leased = *queue_->lease("w", {}, 1000);  // the older job
  EXPECT_EQ(leased.id, working.id);
  now_ += 10;
  queue_->progress(working.id, *leased.lease_token, 0.5, "half");
  queue_->enqueue(bob_, NewJob{.kind = "shoot"});
  std::vector<Job> changed = queue_->list_changed(alice_, seen + 1);
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(changed[0].id, working.id);
  EXPECT_EQ(changed[0].progress_message, "half");
  EXPECT_FALSE(changed[0].lease_token);
  std::vector<Job> since_seen = queue_->list_changed(alice_, seen);
  ASSERT_EQ(since_seen.size(), 2u);
  EXPECT_EQ(since_seen[0].id, waiting.id);  // created at `seen`, oldest change first
  EXPECT_EQ(since_seen[1].id, working.id);
  EXPECT_TRUE(queue_->list_changed(alice_, now_ + 1).empty());
}

TEST_P(JobQueueTest, DeletingTheSubjectDeletesItsJobs) {
  std::string subject = repository_->create_subject(alice_, "Me", "ohwx").id;
  Job job = queue_->enqueue(alice_, NewJob{.kind = "train", .subject_id = subject});
  Job other = enqueue();
  EXPECT_TRUE(repository_->delete_subject(alice_, subject).found);
  EXPECT_FALSE(queue_->get(alice_, job.id));
  EXPECT_TRUE(queue_->get(alice_, other.id));
}

// A worker process killed mid-job (SIGKILL: no clean-up at all) loses nothing: once its
// lease expires another worker redoes the job and the result is written once.
TEST_P(JobQueueTest, AWorkerProcessKilledMidJobLosesNothing) {
  auto real_clock = make_job_queue(database_);
  Job job = real_clock->enqueue(alice_, NewJob{.kind = "shoot", .idempotency_key = "shoot-1"});
  constexpr int64_t kLeaseMs = 400;
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The doomed worker: its own connection, as a separate machine would have. Whatever
    // happens it must never return into the test runner.
    try {
      auto queue = make_job_queue(store::open_database(url_));
      std::optional<Job> mine = queue->lease("doomed", {}, kLeaseMs);
      if (mine) queue->progress(mine->id, *mine->lease_token, 0.5, "halfway");
    } catch (...) {
      ::_exit(1);
    }
    ::raise(SIGKILL);
    ::_exit(1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));

  Job orphaned = *real_clock->get(alice_, job.id);
  ASSERT_EQ(orphaned.status, JobStatus::kRunning);
  EXPECT_EQ(orphaned.lease_owner, "doomed");
  EXPECT_DOUBLE_EQ(orphaned.progress, 0.5);
  std::optional<Job> taken_over;
  for (int wait = 0; wait < 100 && !taken_over; ++wait) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    taken_over = real_clock->lease("survivor", {}, 60'000);
  }
  ASSERT_TRUE(taken_over) << "the dead worker's lease never expired";
  EXPECT_GE(unix_now(), *orphaned.lease_expires_at);
  EXPECT_EQ(taken_over->attempts, 2);
  real_clock->complete(job.id, *taken_over->lease_token, R"({"images":1})");
  EXPECT_EQ(real_clock->get(alice_, job.id)->result_json, R"({"images":1})");
  EXPECT_EQ(real_clock->enqueue(alice_, NewJob{.kind = "shoot", .idempotency_key = "shoot-1"}).id,
            job.id);  // a client retrying its request does not create a second job
  EXPECT_EQ(real_clock->count(JobStatus::kRunning), 0);
  EXPECT_EQ(real_clock->count(JobStatus::kQueued), 0);
}

// Several workers, each on its own connection (as separate processes or machines would be),
// race for the same jobs: every job is handed to exactly one of them and completed once.
void race_workers(const std::string& url, const std::string& account, int workers,
                  bool shared_connection, std::shared_ptr<store::Database> shared) {
  std::mutex mutex;
  std::map<std::string, std::string> owner_of;  // job id -> worker
  std::vector<std::string> duplicates;
  std::vector<std::string> errors;
  std::vector<std::thread> threads;
  std::latch all_connected(workers);  // start racing together, not one after another
  for (int index = 0; index < workers; ++index) {
    threads.emplace_back([&, index] {
      std::shared_ptr<store::Database> database;
      try {
        database = shared_connection ? shared : store::open_database(url);
      } catch (const std::exception& error) {
        std::lock_guard lock(mutex);
        errors.push_back(error.what());
      }
      all_connected.arrive_and_wait();
      if (!database) return;
      try {
        auto queue = make_job_queue(database);
        std::string name = "worker-" + std::to_string(index);
        while (std::optional<Job> job = queue->lease(name, {}, 60'000)) {
          {
            std::lock_guard lock(mutex);
            if (!owner_of.emplace(job->id, name).second) duplicates.push_back(job->id);
          }
          // The "work": holding no transaction, so the other workers get their turn.
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
          queue->complete(job->id, *job->lease_token, "{\"by\":\"" + name + "\"}");
        }
      } catch (const std::exception& error) {
        std::lock_guard lock(mutex);
        errors.push_back(error.what());
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_TRUE(errors.empty()) << errors.front();
  EXPECT_TRUE(duplicates.empty()) << duplicates.size() << " jobs were leased twice";
  auto queue = make_job_queue(shared ? shared : store::open_database(url));
  std::vector<Job> jobs = queue->list(account, std::nullopt, 1000);
  for (const Job& job : jobs) {
    EXPECT_EQ(job.status, JobStatus::kSucceeded);
    EXPECT_EQ(job.attempts, 1);
    EXPECT_EQ(job.result_json, "{\"by\":\"" + owner_of[job.id] + "\"}");
  }
  EXPECT_EQ(owner_of.size(), jobs.size());
  std::map<std::string, int> per_worker;
  for (const auto& [job, worker] : owner_of) ++per_worker[worker];
  std::string spread;
  for (const auto& [worker, done] : per_worker) spread += " " + worker + "=" + std::to_string(done);
  std::cout << "jobs per worker:" << spread << "\n";
}

TEST_P(JobQueueTest, ConcurrentWorkersOnSeparateConnectionsNeverShareAJob) {
  auto real_clock = make_job_queue(database_);  // workers use the system clock
  for (int index = 0; index < 60; ++index)
    real_clock->enqueue(alice_, NewJob{.kind = "shoot", .payload_json = std::to_string(index)});
  race_workers(url_, alice_, 4, false, nullptr);
}

TEST_P(JobQueueTest, ConcurrentWorkersSharingOneConnectionNeverShareAJob) {
  auto real_clock = make_job_queue(database_);
  for (int index = 0; index < 40; ++index)
    real_clock->enqueue(alice_, NewJob{.kind = "shoot", .payload_json = std::to_string(index)});
  race_workers(url_, alice_, 3, true, database_);
}

INSTANTIATE_TEST_SUITE_P(Backends, JobQueueTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         test::backend_name);

}  // namespace
}  // namespace doppel::queue

// Several machines sharing the work: a server on PostgreSQL and three `doppel worker`
// processes on the same database and data folder run 30 shoot jobs of the tiny model; one
// worker is SIGKILLed mid-job. Every job finishes exactly once, every image is there, and
// nothing is left leased.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>
#include <algorithm>
#include <chrono>
#include <iostream>
#include <set>
#include <thread>

#include "doppel/queue/job_queue.hpp"
#include "doppel/store/blob_store.hpp"
#include "doppel/store/database.hpp"
#include "server/server_test_support.hpp"
#include "support/database_backends.hpp"

namespace doppel::test {
namespace {

pid_t start_worker(const std::string& database_url, const std::filesystem::path& data) {
  std::vector<std::string> args = {DOPPEL_BINARY,     "worker",          "--db",
                                   database_url,      "--data",          data.string(),
                                   "--no-face-check", "--lease-seconds", "2"};
  const pid_t pid = fork();
  if (pid == 0) {
    const int null = open("/dev/null", O_WRONLY);
    dup2(null, STDOUT_FILENO);
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

int stop_process(pid_t pid, int signal) {
  kill(pid, signal);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(MultiMachine, ThreeWorkerProcessesOnPostgresFinishEveryJobOnceDespiteAKill) {
  std::string skip_reason;
  const std::filesystem::path scratch = fresh_data_dir();
  const std::optional<std::string> url =
      new_test_database(Backend::kPostgres, scratch, skip_reason);
  if (!url) GTEST_SKIP() << skip_reason;
  server::ServerOptions options;
  options.database_url = *url;
  options.face_analysis = false;
  TestServer server(options);
  ApiClient client = first_account(server);
  const std::string subject = client.post("/api/subjects", {{"name", "Ada"}}).body["id"];
  const Answer shoot = client.post("/api/shoots", {{"subject_id", subject},
                                                   {"styles", {"anime", "film_noir", "hanfu"}},
                                                   {"count", 10},
                                                   {"seed", 100}});
  ASSERT_EQ(shoot.status, 202) << shoot.raw;
  ASSERT_EQ(shoot.body["image_count"], 30);
  const std::string images_path = "/api/shoots/" + shoot.body["id"].get<std::string>() + "/images";

  std::vector<pid_t> workers;
  for (int i = 0; i < 3; ++i) workers.push_back(start_worker(*url, server.data_dir()));
  // Kill a worker while it holds a job: find a running job and the worker leasing it.
  auto jobs = queue::make_job_queue(store::open_database(*url));
  const std::string account = server.repository()->find_account_by_email("ada@example.com")->id;
  std::optional<store::Job> victim_job;
  pid_t victim = -1;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (victim < 0 && std::chrono::steady_clock::now() < deadline) {
    for (const store::Job& job : jobs->list(account, store::JobStatus::kRunning)) {
      // worker ids are host:pid:n
      const std::string owner = job.lease_owner.value_or("");
      const size_t first = owner.find(':');
      const size_t second = owner.find(':', first + 1);
      if (first == std::string::npos || second == std::string::npos) continue;
      const pid_t pid = std::stoi(owner.substr(first + 1, second - first - 1));
      if (std::find(workers.begin(), workers.end(), pid) == workers.end()) continue;
      EXPECT_EQ(stop_process(pid, SIGKILL), 128 + SIGKILL);
      victim = pid;
      victim_job = job;
      break;
    }
  }
  ASSERT_GT(victim, 0) << "no worker was seen running a job";
  const int64_t killed_at = store::unix_millis_now();

  deadline = std::chrono::steady_clock::now() + std::chrono::seconds(180);
  while (std::chrono::steady_clock::now() < deadline &&
         client.get("/api/jobs?status=succeeded").body["jobs"].size() < 30)
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  for (pid_t pid : workers) {
    if (pid == victim) continue;
    EXPECT_EQ(stop_process(pid, SIGTERM), 0);
  }

  EXPECT_EQ(client.get("/api/jobs?status=succeeded").body["jobs"].size(), 30u)
      << client.get("/api/jobs").raw;
  EXPECT_TRUE(client.get("/api/jobs?status=running").body["jobs"].empty());
  EXPECT_TRUE(client.get("/api/jobs?status=queued").body["jobs"].empty());
  EXPECT_TRUE(client.get("/api/jobs?status=dead").body["jobs"].empty());
  const Answer images = client.get(images_path);
  ASSERT_EQ(images.body["images"].size(), 30u);
  std::set<int64_t> seeds;
  const store::BlobStore blobs = store::BlobStore::open(server.data_dir());
  for (const json& image : images.body["images"]) {
    seeds.insert(image["recipe"]["seed"].get<int64_t>());
    EXPECT_TRUE(blobs.exists(image["sha256"].get<std::string>()));
  }
  EXPECT_EQ(seeds.size(), 30u);  // exactly once: no image twice
  // The killed worker's job was taken over by another (unless it had just finished).
  const std::optional<store::Job> after = jobs->get(account, victim_job->id);
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->status, store::JobStatus::kSucceeded);
  const bool finished_before_kill = after->finished_at && *after->finished_at <= killed_at;
  EXPECT_TRUE(after->attempts >= 2 || finished_before_kill)
      << "attempts " << after->attempts << ", owner " << after->lease_owner.value_or("");
  std::cout << "killed worker " << victim << " holding job " << victim_job->id << "; attempts "
            << after->attempts << "\n";
  EXPECT_EQ(client.get("/api/shoots/" + shoot.body["id"].get<std::string>()).body["status"],
            "done");
}

}  // namespace
}  // namespace doppel::test

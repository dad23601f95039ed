// A shoot job's result says where its portrait's time went (`seconds` by stage), so a slow
// shoot can be explained from the API alone and bench/studio_shoot_bench can split a shoot.
#include <gtest/gtest.h>

#include <set>

#include "server/server_test_support.hpp"

namespace doppel::test {
namespace {

TEST(ShootJobTimings, AShootJobsResultSplitsItsTimeByStage) {
  TestServer server;
  ApiClient client = first_account(server);
  const std::string subject_id = client.post("/api/subjects", {{"name", "Ada"}}).body["id"];
  const Answer shoot =
      client.post("/api/shoots",
                  {{"subject_id", subject_id}, {"styles", {"anime"}}, {"count", 2}, {"seed", 3}});
  ASSERT_EQ(shoot.status, 202) << shoot.raw;
  services::Worker worker(server.worker_options());
  ASSERT_EQ(run_all_jobs(worker), 2);

  const Answer jobs = client.get("/api/jobs");
  int shoot_jobs = 0;
  for (const json& job : jobs.body["jobs"]) {
    if (job["kind"] != "shoot") continue;
    ++shoot_jobs;
    ASSERT_EQ(job["status"], "succeeded") << job;
    const json& seconds = job["result"]["seconds"];
    ASSERT_TRUE(seconds.is_object()) << job;
    std::set<std::string> stages;
    double total = 0;
    for (const auto& [stage, spent] : seconds.items()) {
      stages.insert(stage);
      ASSERT_TRUE(spent.is_number()) << job;
      EXPECT_GE(spent.get<double>(), 0.0) << stage;
      total += spent.get<double>();
    }
    EXPECT_EQ(stages, (std::set<std::string>{"loading", "preparing", "prompt", "sampling",
                                             "decoding", "scoring", "storing"}))
        << seconds;
    EXPECT_GT(seconds["sampling"].get<double>(), 0.0) << seconds;
    // The stages lie inside the job's life in the queue (timestamps in milliseconds).
    const double lifetime =
        static_cast<double>(job["finished_at"].get<int64_t>() - job["created_at"].get<int64_t>()) /
        1000.0;
    EXPECT_LE(total, lifetime + 0.01) << seconds << " in " << lifetime << " s";
  }
  EXPECT_EQ(shoot_jobs, 2);
}

}  // namespace
}  // namespace doppel::test

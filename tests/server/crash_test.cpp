// Crash safety of a real `doppel serve` process: SIGKILL it while photos are being uploaded
// and shoot jobs are running, start it again on the same data folder, and check that every
// upload it had accepted is there, every job finishes exactly once, and every row's blob
// exists. Then SIGTERM stops it cleanly.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <set>
#include <thread>

#include "doppel/queue/job_queue.hpp"
#include "doppel/store/blob_store.hpp"
#include "doppel/store/database.hpp"
#include "server/server_test_support.hpp"

namespace doppel::test {
namespace {

// A `doppel serve` child with its stdout on a pipe.
class ServeProcess {
 public:
  ServeProcess(const std::filesystem::path& data_dir, const std::vector<std::string>& extra) {
    int pipe_fds[2];
    if (pipe(pipe_fds) != 0) throw std::runtime_error("pipe failed");
    std::vector<std::string> args = {DOPPEL_BINARY,     "serve",  "--data",
                                     data_dir.string(), "--port", "0"};
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = fork();
    if (pid_ == 0) {
      dup2(pipe_fds[1], STDOUT_FILENO);
      close(pipe_fds[0]);
      close(pipe_fds[1]);
      std::vector<char*> argv;
      for (std::string& arg : args) argv.push_back(arg.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(pipe_fds[1]);
    output_ = fdopen(pipe_fds[0], "r");
    // Read until the "serving on" line (the set-up link, if any, comes before it).
    char line[1024];
    while (std::fgets(line, sizeof line, output_)) {
      const std::string text = line;
      std::smatch match;
      if (std::regex_search(text, match, std::regex("token=([0-9a-f]{64})"))) token_ = match[1];
      if (std::regex_search(text, match, std::regex("serving on http://127\\.0\\.0\\.1:(\\d+)"))) {
        port_ = std::stoi(match[1]);
        break;
      }
    }
  }
  ~ServeProcess() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (output_) std::fclose(output_);
  }
  int port() const { return port_; }
  const std::string& setup_token() const { return token_; }
  // Freezes the process (SIGSTOP), so what its database says stays true until it is killed.
  void freeze() { kill(pid_, SIGSTOP); }
  // Sends `signal` and returns the exit status (or 128 + signal when killed).
  int stop(int signal) {
    kill(pid_, signal);
    int status = 0;
    waitpid(pid_, &status, 0);
    exited_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  pid_t pid_ = -1;
  FILE* output_ = nullptr;
  int port_ = 0;
  std::string token_;
  bool exited_ = false;
};

TEST(ServerCrash, KilledServeLosesNoAcceptedUploadAndFinishesEveryJobOnce) {
  const std::filesystem::path data = fresh_data_dir();
  const std::vector<std::string> flags = {"--workers", "1", "--no-face-check", "--lease-seconds",
                                          "2"};
  std::string bearer;
  std::string subject_id;
  std::string shoot_id;
  std::map<std::string, std::string> accepted_uploads;  // photo id -> bytes
  int64_t running_at_kill = 0;                          // jobs leased when it was killed
  {
    ServeProcess serve(data, flags);
    ASSERT_GT(serve.port(), 0);
    ApiClient anonymous(serve.port(), {});
    const Answer setup = anonymous.post("/api/setup", {{"token", serve.setup_token()},
                                                       {"email", "ada@example.com"},
                                                       {"password", "long enough password"}});
    ASSERT_EQ(setup.status, 201) << setup.raw;
    std::string cookie;
    for (const auto& [name, value] : setup.headers)
      if (name == "Set-Cookie" && value.rfind("doppel_session=", 0) == 0)
        cookie = value.substr(0, value.find(';'));
    ApiClient browser(serve.port(),
                      {{"Cookie", cookie}, {"X-CSRF-Token", setup.body["csrf_token"]}});
    bearer = browser.post("/api/tokens", {{"name", "crash"}}).body["token"];
    ApiClient client(serve.port(), {{"Authorization", "Bearer " + bearer}});
    subject_id = client.post("/api/subjects", {{"name", "Ada"}}).body["id"];
    const Answer shoot = client.post("/api/shoots", {{"subject_id", subject_id},
                                                     {"styles", {"anime", "film_noir"}},
                                                     {"count", 3},
                                                     {"seed", 5}});
    ASSERT_EQ(shoot.status, 202) << shoot.raw;
    shoot_id = shoot.body["id"];
    // Upload photos one by one until the first image exists (a job ran while uploading),
    // then kill the server in the middle of the next upload.
    std::atomic<bool> uploading{true};
    std::thread uploader([&] {
      ApiClient uploads(serve.port(), {{"Authorization", "Bearer " + bearer}});
      for (int i = 0; uploading && i < 200; ++i) {
        const std::string png = synthetic_png(40 + i % 7, 30, static_cast<uint8_t>(i));
        const Answer answer = uploads.upload("/api/subjects/" + subject_id + "/photos",
                                             {{"photos", png, "p.png", "image/png"}});
        if (answer.status != 201) break;  // the server died mid-request
        accepted_uploads[answer.body["added"][0].get<std::string>()] = png;
      }
    });
    // Wait for a finished image and a job running now, freeze the server and kill it; its
    // database then tells which jobs were leased (running) at that moment.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline &&
           (client.get("/api/shoots/" + shoot_id).body.value("images_done", 0) < 1 ||
            client.get("/api/jobs?status=running").body["jobs"].empty()))
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    serve.freeze();
    EXPECT_EQ(serve.stop(SIGKILL), 128 + SIGKILL);
    uploading = false;
    uploader.join();
  }
  running_at_kill =
      queue::make_job_queue(store::open_database("sqlite:" + (data / "doppel.db").string()))
          ->count(store::JobStatus::kRunning);
  ASSERT_FALSE(accepted_uploads.empty());
  ASSERT_GE(running_at_kill, 1) << "no job was running when the server was killed";

  ServeProcess serve(data, flags);
  ASSERT_GT(serve.port(), 0);
  EXPECT_TRUE(serve.setup_token().empty());  // the account survived: no new set-up link
  ApiClient client(serve.port(), {{"Authorization", "Bearer " + bearer}});
  const Answer photos = client.get("/api/subjects/" + subject_id + "/photos");
  ASSERT_EQ(photos.status, 200) << photos.raw;
  std::set<std::string> listed;
  for (const json& photo : photos.body["photos"]) listed.insert(photo["id"].get<std::string>());
  for (const auto& [id, bytes] : accepted_uploads) {
    EXPECT_TRUE(listed.count(id)) << "accepted upload " << id << " was lost";
    EXPECT_EQ(client.get("/api/photos/" + id + "/file").raw, bytes);
  }

  // The killed worker's job is taken over once its lease expires; all six finish once.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  Answer jobs;
  while (std::chrono::steady_clock::now() < deadline) {
    jobs = client.get("/api/jobs?status=succeeded");
    if (jobs.body["jobs"].size() == 6) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_EQ(jobs.body["jobs"].size(), 6u) << client.get("/api/jobs").raw;
  // The jobs leased at the kill ran again: they finished on a second attempt.
  int64_t taken_over = 0;
  for (const json& job : jobs.body["jobs"]) taken_over += job["attempts"].get<int64_t>() >= 2;
  EXPECT_EQ(taken_over, running_at_kill) << jobs.raw;
  EXPECT_TRUE(client.get("/api/jobs?status=running").body["jobs"].empty());
  EXPECT_TRUE(client.get("/api/jobs?status=queued").body["jobs"].empty());
  const Answer images = client.get("/api/shoots/" + shoot_id + "/images");
  ASSERT_EQ(images.body["images"].size(), 6u) << images.raw;
  std::set<int64_t> seeds;
  for (const json& image : images.body["images"]) {
    seeds.insert(image["recipe"]["seed"].get<int64_t>());
    EXPECT_EQ(client.get(image["png_url"].get<std::string>()).status, 200);
  }
  EXPECT_EQ(seeds.size(), 6u);

  // Every blob a row refers to is on disk.
  const auto repository = store::open_repository("sqlite:" + (data / "doppel.db").string());
  const store::BlobStore blobs = store::BlobStore::open(data);
  for (const std::string& digest : repository->referenced_blobs())
    EXPECT_TRUE(blobs.exists(digest)) << digest;

  EXPECT_EQ(serve.stop(SIGTERM), 0);  // graceful shutdown
}

}  // namespace
}  // namespace doppel::test

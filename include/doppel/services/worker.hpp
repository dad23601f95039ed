// Workers: lease queued jobs and run them. "train" turns a subject's accepted photo crops into
// a LoRA (blob + LoRA version record); "shoot" generates one planned image, scores its
// likeness against the subject's face profile and stores it with its recipe. Each job names
// its model's path ("" for the tiny built-in model). A worker that dies loses nothing: its
// lease expires and another worker redoes the job.
#pragma once
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace doppel::services {

struct WorkerOptions {
  std::filesystem::path data_dir = "data";
  std::string database_url;  // empty: sqlite:<data_dir>/doppel.db
  std::optional<std::filesystem::path> key_file;
  // No model here: every job names the model it runs on (the default model when it was
  // queued, see the models registry), loaded on first use and kept until a job names another.
  std::string worker_id;      // empty: host:pid:thread
  int64_t lease_ms = 60'000;  // renewed by heartbeats while running
  int64_t idle_poll_ms = 500;
  bool face_analysis = true;  // false: images are stored unscored
};

// One worker: its own database connection, model and face analyzer.
class Worker {
 public:
  explicit Worker(WorkerOptions options);
  ~Worker();
  // Leases and runs one job; false when none was available.
  bool run_once();
  // Runs jobs until `stop` becomes true.
  void run(const std::atomic<bool>& stop);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// N workers on background threads (for `doppel serve --workers N` and `doppel worker`).
class WorkerPool {
 public:
  WorkerPool(const WorkerOptions& options, int count);
  ~WorkerPool();  // stops and joins
  void stop();

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

}  // namespace doppel::services

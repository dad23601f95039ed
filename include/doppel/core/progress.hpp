// Progress reporting for every long operation: the library reports steps, the
// CLI draws a bar, the server turns them into events.
#pragma once
#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace doppel {

struct ProgressEvent {
  std::string stage;  // "sampling", "decoding", "training", ...
  int64_t step = 0;   // steps done in this stage
  int64_t total = 0;  // steps in this stage (0 = unknown)
  double elapsed_seconds = 0;
  double eta_seconds = -1;  // < 0 when unknown
  std::string detail;       // e.g. "loss 0.0123"
};

// Receives events; returning false asks the operation to stop (it then
// throws doppel::Error with ErrorCode::kCancelled).
using ProgressCallback = std::function<bool(const ProgressEvent&)>;

// Tracks one stage: computes elapsed time and ETA, forwards to a callback.
class ProgressTracker {
 public:
  // `first_step`: steps already done before this run (a resumed training), so the counts are
  // of the whole stage and the ETA follows this run's speed.
  ProgressTracker(ProgressCallback callback, std::string stage, int64_t total,
                  int64_t first_step = 0);
  // Reports that `step` steps are done; throws kCancelled if the callback says stop.
  void advance(int64_t step, const std::string& detail = "");
  void set_total(int64_t total) { total_ = total; }

 private:
  ProgressCallback callback_;
  std::string stage_;
  int64_t total_;
  int64_t first_step_ = 0;
  std::chrono::steady_clock::time_point start_;
};

// A terminal progress bar ("sampling  12/20 [=====>    ] 3.1s/it ETA 25s")
// written to stderr; redraws in place on a TTY, prints plain lines otherwise.
ProgressCallback make_terminal_progress_bar();

}  // namespace doppel

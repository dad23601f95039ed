#include "doppel/core/progress.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <string>

#include "doppel/core/error.hpp"

namespace doppel {

ProgressTracker::ProgressTracker(ProgressCallback callback, std::string stage, int64_t total,
                                 int64_t first_step)
    : callback_(std::move(callback)),
      stage_(std::move(stage)),
      total_(total),
      first_step_(first_step),
      start_(std::chrono::steady_clock::now()) {
  advance(first_step);
}

void ProgressTracker::advance(int64_t step, const std::string& detail) {
  if (!callback_) return;
  ProgressEvent event;
  event.stage = stage_;
  event.step = step;
  event.total = total_;
  event.detail = detail;
  event.elapsed_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  // The rate of this run alone: steps done before a resume took no time here.
  if (step > first_step_ && total_ > 0)
    event.eta_seconds = event.elapsed_seconds / static_cast<double>(step - first_step_) *
                        static_cast<double>(total_ - step);
  if (!callback_(event))
    throw Error(ErrorCode::kCancelled, stage_ + " was cancelled at step " + std::to_string(step));
}

namespace {

std::string format_duration(double seconds) {
  if (seconds < 0) return "?";
  long total = std::lround(seconds);
  char buffer[32];
  if (total >= 3600)
    std::snprintf(buffer, sizeof buffer, "%ldh%02ldm", total / 3600, (total / 60) % 60);
  else if (total >= 60)
    std::snprintf(buffer, sizeof buffer, "%ldm%02lds", total / 60, total % 60);
  else
    std::snprintf(buffer, sizeof buffer, "%lds", total);
  return buffer;
}

}  // namespace

ProgressCallback make_terminal_progress_bar() {
  bool tty = ::isatty(STDERR_FILENO) != 0;
  return [tty](const ProgressEvent& event) {
    constexpr int kWidth = 28;
    std::string line = event.stage;
    line.resize(std::max<size_t>(line.size(), 10), ' ');
    if (event.total > 0) {
      int filled = static_cast<int>(kWidth * event.step / event.total);
      std::string bar(kWidth, ' ');
      for (int i = 0; i < filled; ++i) bar[i] = '=';
      if (filled < kWidth) bar[filled] = '>';
      line +=
          " " + std::to_string(event.step) + "/" + std::to_string(event.total) + " [" + bar + "]";
    } else {
      line += " " + std::to_string(event.step);
    }
    if (event.step > 0) {
      char rate[48];
      std::snprintf(rate, sizeof rate, " %.2fs/it", event.elapsed_seconds / event.step);
      line += rate;
      line += " elapsed " + format_duration(event.elapsed_seconds);
      if (event.eta_seconds >= 0) line += " ETA " + format_duration(event.eta_seconds);
    }
    if (!event.detail.empty()) line += " " + event.detail;
    bool done = event.total > 0 && event.step >= event.total;
    if (tty) {
      std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), done ? "\n" : "");
    } else if (done || event.step == 0 || event.total <= 0 ||
               event.step % std::max<int64_t>(1, event.total / 10) == 0) {
      std::fprintf(stderr, "%s\n", line.c_str());  // sparse lines for logs and pipes
    }
    std::fflush(stderr);
    return true;
  };
}

}  // namespace doppel

#include "doppel/core/stage_timer.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

namespace doppel {

namespace {

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// "image 2/4 sampling" -> "sampling".
std::string stage_of(const std::string& label) {
  if (label.rfind("image ", 0) != 0) return label;  // core stays C++17 for the fuzz build
  const size_t space = label.find(' ', 6);
  return space == std::string::npos ? label : label.substr(space + 1);
}

std::string format_seconds(double seconds) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f s", seconds);
  return text;
}

}  // namespace

StageTimer::StageTimer(std::string first_stage, std::function<double()> now)
    : now_(now ? std::move(now) : steady_seconds), current_(std::move(first_stage)) {
  since_ = now_();
}

void StageTimer::enter(const std::string& stage) {
  const double now = now_();
  auto entry = std::find_if(seconds_.begin(), seconds_.end(),
                            [&](const auto& pair) { return pair.first == current_; });
  if (entry == seconds_.end()) {
    seconds_.emplace_back(current_, 0.0);
    entry = seconds_.end() - 1;
  }
  entry->second += now - since_;
  since_ = now;
  current_ = stage;
}

ProgressCallback StageTimer::wrap(ProgressCallback inner) {
  return [this, inner = std::move(inner)](const ProgressEvent& event) {
    enter(stage_of(event.stage));
    return inner ? inner(event) : true;
  };
}

void StageTimer::stop() {
  enter(current_);
}

std::string StageTimer::summary() const {
  double total = 0;
  for (const auto& [stage, seconds] : seconds_) total += seconds;
  std::string text;
  for (const auto& [stage, seconds] : seconds_) {
    if (!text.empty()) text += ", ";
    text += stage + " " + format_seconds(seconds);
    if (total > 0)
      text += " (" + std::to_string(static_cast<int>(std::lround(100 * seconds / total))) + " %)";
  }
  return text + "; total " + format_seconds(total);
}

}  // namespace doppel

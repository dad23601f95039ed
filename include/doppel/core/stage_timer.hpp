// Where the time of a long operation went, from its progress events alone: the wall time
// between two events belongs to the stage of the earlier one. `doppel generate --timings` uses
// it to split a portrait into prompt encoding, sampling (the UNet) and decoding (the VAE).
#pragma once
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "doppel/core/progress.hpp"

namespace doppel {

class StageTimer {
 public:
  // `now` returns seconds on any monotonic clock (tests pass their own).
  explicit StageTimer(std::string first_stage, std::function<double()> now = {});

  // Forwards every event to `inner` (which may be empty) after timing it. Batch labels
  // ("image 2/4 sampling") count as their stage ("sampling").
  ProgressCallback wrap(ProgressCallback inner);
  // Ends the current stage: the time since the last event is that stage's.
  void stop();
  // Seconds per stage, in the order the stages first appeared.
  const std::vector<std::pair<std::string, double>>& seconds() const { return seconds_; }
  // "prompt 0.4 s, sampling 95.1 s (92 %), decoding 6.6 s; total 103.2 s".
  std::string summary() const;

 private:
  void enter(const std::string& stage);

  std::function<double()> now_;
  std::string current_;
  double since_ = 0;
  std::vector<std::pair<std::string, double>> seconds_;
};

}  // namespace doppel

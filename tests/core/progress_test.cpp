#include "doppel/core/progress.hpp"

#include <gtest/gtest.h>

#include "doppel/core/error.hpp"

namespace doppel {
namespace {

TEST(Progress, ReportsStepsTotalsAndEta) {
  std::vector<ProgressEvent> events;
  ProgressTracker tracker(
      [&](const ProgressEvent& e) {
        events.push_back(e);
        return true;
      },
      "sampling", 4);
  tracker.advance(1);
  tracker.advance(4, "done");
  ASSERT_EQ(events.size(), 3u);  // the constructor reports step 0
  EXPECT_EQ(events[0].step, 0);
  EXPECT_LT(events[0].eta_seconds, 0);
  EXPECT_EQ(events[1].total, 4);
  EXPECT_GE(events[1].eta_seconds, 0);
  EXPECT_EQ(events[2].detail, "done");
  EXPECT_EQ(events[2].eta_seconds, 0);
}

TEST(Progress, CallbackReturningFalseCancels) {
  ProgressTracker tracker([](const ProgressEvent& e) { return e.step < 2; }, "training", 10);
  tracker.advance(1);
  try {
    tracker.advance(2);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCancelled);
  }
}

TEST(Progress, NoCallbackIsFine) {
  ProgressTracker tracker(nullptr, "x", 3);
  EXPECT_NO_THROW(tracker.advance(3));
}

}  // namespace
}  // namespace doppel

#include "doppel/core/stage_timer.hpp"

#include <gtest/gtest.h>

namespace doppel {
namespace {

ProgressEvent event(const std::string& stage, int64_t step) {
  ProgressEvent result;
  result.stage = stage;
  result.step = step;
  return result;
}

TEST(StageTimer, TimeBetweenEventsBelongsToTheEarlierEventsStage) {
  double clock = 100;
  StageTimer timer("prompt", [&] { return clock; });
  int forwarded = 0;
  ProgressCallback callback = timer.wrap([&](const ProgressEvent&) {
    ++forwarded;
    return true;
  });
  clock += 0.5;  // prompt encoding
  callback(event("image 1/2 sampling", 0));
  clock += 3;
  callback(event("image 1/2 sampling", 1));
  clock += 3;
  callback(event("image 1/2 decoding", 0));
  clock += 1;
  callback(event("image 2/2 sampling", 0));  // batch labels count as their stage
  clock += 2;
  callback(event("image 2/2 decoding", 0));
  clock += 1;
  timer.stop();

  ASSERT_EQ(timer.seconds().size(), 3u);
  EXPECT_EQ(timer.seconds()[0].first, "prompt");
  EXPECT_DOUBLE_EQ(timer.seconds()[0].second, 0.5);
  EXPECT_EQ(timer.seconds()[1].first, "sampling");
  EXPECT_DOUBLE_EQ(timer.seconds()[1].second, 8);
  EXPECT_EQ(timer.seconds()[2].first, "decoding");
  EXPECT_DOUBLE_EQ(timer.seconds()[2].second, 2);
  EXPECT_EQ(forwarded, 5);
  EXPECT_EQ(timer.summary(),
            "prompt 0.5 s (5 %), sampling 8.0 s (76 %), decoding 2.0 s (19 %); total 10.5 s");
}

TEST(StageTimer, ACancelFromTheInnerCallbackStillReachesTheCaller) {
  StageTimer timer("prompt");
  ProgressCallback callback = timer.wrap([](const ProgressEvent&) { return false; });
  EXPECT_FALSE(callback(event("sampling", 0)));
  ProgressCallback without_inner = timer.wrap({});
  EXPECT_TRUE(without_inner(event("sampling", 1)));
}

}  // namespace
}  // namespace doppel

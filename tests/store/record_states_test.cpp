// The records' states are enums stored by name: every name reads back as its state, and a
// name the code never writes (a damaged or newer database) is refused with the column named.
#include <gtest/gtest.h>

#include "doppel/store/records.hpp"
#include "support/error_code.hpp"

namespace doppel::store {
namespace {

template <typename State, typename Name, typename Parse>
void expect_round_trip(std::initializer_list<State> states, Name name, Parse parse,
                       const std::string& what) {
  for (State state : states) EXPECT_EQ(parse(name(state)), state) << name(state);
  std::string message;
  EXPECT_EQ(test::code_of([&] { parse("finished-ish"); }, &message), ErrorCode::kInvalidFile);
  EXPECT_NE(message.find(what), std::string::npos) << message;
  EXPECT_NE(message.find("finished-ish"), std::string::npos) << message;
}

TEST(RecordStates, EveryStateReadsBackByNameAndUnknownNamesAreRefused) {
  expect_round_trip({SubjectStatus::kNew, SubjectStatus::kTraining, SubjectStatus::kTrained},
                    subject_status_name, parse_subject_status, "subject status");
  expect_round_trip({ShootStatus::kQueued, ShootStatus::kRunning, ShootStatus::kDone},
                    shoot_status_name, parse_shoot_status, "shoot status");
  expect_round_trip({LoraStatus::kQueued, LoraStatus::kTraining, LoraStatus::kReady,
                     LoraStatus::kFailed, LoraStatus::kCancelled},
                    lora_status_name, parse_lora_status, "LoRA status");
  expect_round_trip({PhotoVerdict::kPending, PhotoVerdict::kAccepted, PhotoVerdict::kRejected},
                    photo_verdict_name, parse_photo_verdict, "verdict");
  expect_round_trip({JobStatus::kQueued, JobStatus::kRunning, JobStatus::kSucceeded,
                     JobStatus::kDead, JobStatus::kCancelled},
                    job_status_name, parse_job_status, "status");
  EXPECT_STREQ(shoot_status_name(ShootStatus::kDone), "done");  // the API's and web's word
  EXPECT_STREQ(subject_status_name(SubjectStatus::kTrained), "trained");
}

}  // namespace
}  // namespace doppel::store

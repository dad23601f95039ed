// The record types' names as the database writes them, new record ids and the clock.
#include <sodium.h>

#include <chrono>

#include "doppel/core/error.hpp"
#include "doppel/store/repository.hpp"

namespace doppel::store {

const char* job_status_name(JobStatus status) {
  switch (status) {
    case JobStatus::kQueued:
      return "queued";
    case JobStatus::kRunning:
      return "running";
    case JobStatus::kSucceeded:
      return "succeeded";
    case JobStatus::kDead:
      return "dead";
    case JobStatus::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

JobStatus parse_job_status(const std::string& name) {
  for (JobStatus status : {JobStatus::kQueued, JobStatus::kRunning, JobStatus::kSucceeded,
                           JobStatus::kDead, JobStatus::kCancelled})
    if (name == job_status_name(status)) return status;
  throw Error(ErrorCode::kInvalidFile, "unknown job status '" + name + "' in the database");
}

const char* photo_verdict_name(PhotoVerdict verdict) {
  switch (verdict) {
    case PhotoVerdict::kPending:
      return "pending";
    case PhotoVerdict::kAccepted:
      return "accepted";
    case PhotoVerdict::kRejected:
      return "rejected";
  }
  return "unknown";
}

const char* subject_status_name(SubjectStatus status) {
  switch (status) {
    case SubjectStatus::kNew:
      return "new";
    case SubjectStatus::kTraining:
      return "training";
    case SubjectStatus::kTrained:
      return "trained";
  }
  return "unknown";
}

SubjectStatus parse_subject_status(const std::string& name) {
  for (SubjectStatus status :
       {SubjectStatus::kNew, SubjectStatus::kTraining, SubjectStatus::kTrained})
    if (name == subject_status_name(status)) return status;
  throw Error(ErrorCode::kInvalidFile, "unknown subject status '" + name + "' in the database");
}

const char* shoot_status_name(ShootStatus status) {
  switch (status) {
    case ShootStatus::kQueued:
      return "queued";
    case ShootStatus::kRunning:
      return "running";
    case ShootStatus::kDone:
      return "done";
  }
  return "unknown";
}

ShootStatus parse_shoot_status(const std::string& name) {
  for (ShootStatus status : {ShootStatus::kQueued, ShootStatus::kRunning, ShootStatus::kDone})
    if (name == shoot_status_name(status)) return status;
  throw Error(ErrorCode::kInvalidFile, "unknown shoot status '" + name + "' in the database");
}

const char* lora_status_name(LoraStatus status) {
  switch (status) {
    case LoraStatus::kQueued:
      return "queued";
    case LoraStatus::kTraining:
      return "training";
    case LoraStatus::kReady:
      return "ready";
    case LoraStatus::kFailed:
      return "failed";
    case LoraStatus::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

LoraStatus parse_lora_status(const std::string& name) {
  for (LoraStatus status : {LoraStatus::kQueued, LoraStatus::kTraining, LoraStatus::kReady,
                            LoraStatus::kFailed, LoraStatus::kCancelled})
    if (name == lora_status_name(status)) return status;
  throw Error(ErrorCode::kInvalidFile, "unknown LoRA status '" + name + "' in the database");
}

PhotoVerdict parse_photo_verdict(const std::string& name) {
  for (PhotoVerdict verdict :
       {PhotoVerdict::kPending, PhotoVerdict::kAccepted, PhotoVerdict::kRejected})
    if (name == photo_verdict_name(verdict)) return verdict;
  throw Error(ErrorCode::kInvalidFile, "unknown photo verdict '" + name + "' in the database");
}

std::string new_random_id() {
  if (sodium_init() < 0)
    throw Error(ErrorCode::kInternal, "libsodium failed to initialise (no entropy source?)");
  unsigned char bytes[16];
  randombytes_buf(bytes, sizeof bytes);
  char hex[sizeof bytes * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, bytes, sizeof bytes);
  return std::string(hex, sizeof bytes * 2);
}

int64_t unix_millis_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace doppel::store

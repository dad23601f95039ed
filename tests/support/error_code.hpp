// The doppel::Error an action throws, for bad-input tests.
#pragma once
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "doppel/core/error.hpp"

namespace doppel::test {

// The code of the doppel::Error `action` throws (its message into `message` when given); a test
// failure and kInternal when it throws none.
inline ErrorCode code_of(const std::function<void()>& action, std::string* message = nullptr) {
  try {
    action();
  } catch (const Error& error) {
    if (message) *message = error.what();
    return error.code();
  }
  ADD_FAILURE() << "expected doppel::Error";
  return ErrorCode::kInternal;
}

}  // namespace doppel::test

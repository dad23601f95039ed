// doppel::Error: the one exception type that crosses layer boundaries.
#pragma once
#include <stdexcept>
#include <string>

namespace doppel {

enum class ErrorCode {
  kInvalidArgument,  // a parameter or request the caller can fix
  kInvalidFile,      // a file exists but its contents are malformed
  kNotFound,         // a file, model, tensor or record is missing
  kUnsupported,      // well-formed input we do not handle (yet)
  kIo,               // the operating system refused a read or write
  kCancelled,        // the user or a job lease stopped the work
  kNumerical,        // NaN/Inf appeared during computation
  kInternal,         // a broken invariant: a bug in doppel
};

// Stable lowercase name of a code, used in JSON errors and logs.
const char* error_code_name(ErrorCode code);

// A failure with a message written for the user: it names what is wrong and,
// where possible, what to do next.
class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace doppel

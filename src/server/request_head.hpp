// The first look at an HTTP/1.1 request, before cpp-httplib parses it: where its head ends,
// how long its body is, and whether it breaks a limit. The server's connection front
// (connection_front.hpp) reads heads and bodies with this, without holding a worker thread,
// so slow or oversized requests are refused before they cost more than a small buffer.
// C++17 and free of httplib, so the libFuzzer build compiles it directly.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace doppel::server {

struct RequestHeadLimits {
  size_t max_line_bytes = 8192;        // request line (414) or one header line (400)
  size_t max_head_bytes = 64 * 1024;   // the whole head, blank line included (431)
  size_t max_header_count = 100;       // header lines (431)
  uint64_t max_body_bytes = 20 << 20;  // Content-Length (413)
};

struct RequestHead {
  enum class State {
    kIncomplete,  // read more bytes (the limits hold so far)
    kComplete,    // the head ends at `head_bytes`
    kRefused,     // answer `status` with `message` and close the connection
  };
  State state = State::kIncomplete;
  size_t head_bytes = 0;        // through the blank line
  uint64_t content_length = 0;  // 0 without a Content-Length header
  // "Expect: 100-continue": the front answers it itself and removes this header line
  // ([expect_begin, expect_end) of the head) so the client is not told twice.
  bool expect_continue = false;
  size_t expect_begin = 0;
  size_t expect_end = 0;
  int status = 0;
  std::string code;  // the JSON error code: "header_too_large", "bad_request", ...
  std::string message;
};

// Scans the bytes received so far on a connection, from the start of a request. Lines end in
// CRLF; Content-Length must be one whole number (repeated only with the same value);
// Transfer-Encoding is refused (411: send a Content-Length), as is a body larger than
// `limits.max_body_bytes` (413).
RequestHead scan_request_head(std::string_view bytes, const RequestHeadLimits& limits);

}  // namespace doppel::server

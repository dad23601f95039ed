// libFuzzer target: the server's own first look at HTTP requests (src/server/request_head.cpp),
// which decides where a head ends, how long the body is and which limit is broken before
// cpp-httplib sees a byte. Fed whole and in two parts, as bytes arrive on a connection.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "server/request_head.hpp"

namespace {

void check(const doppel::server::RequestHead& head, std::string_view bytes,
           const doppel::server::RequestHeadLimits& limits) {
  using State = doppel::server::RequestHead::State;
  if (head.state == State::kComplete) {
    if (head.head_bytes > bytes.size() || head.head_bytes > limits.max_head_bytes) __builtin_trap();
    if (head.content_length > limits.max_body_bytes) __builtin_trap();
    if (bytes.substr(0, head.head_bytes).substr(head.head_bytes - 4) != "\r\n\r\n")
      __builtin_trap();
    if (head.expect_continue &&
        (head.expect_begin >= head.expect_end || head.expect_end > head.head_bytes))
      __builtin_trap();
  } else if (head.state == State::kRefused) {
    if (head.status < 400 || head.status > 499 || head.message.empty()) __builtin_trap();
  } else if (bytes.size() > limits.max_head_bytes) {
    __builtin_trap();  // an incomplete head may never grow past the limit
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  doppel::server::RequestHeadLimits limits;
  limits.max_line_bytes = 256;  // small limits, so the fuzzer reaches them
  limits.max_head_bytes = 2048;
  limits.max_header_count = 16;
  limits.max_body_bytes = 1 << 20;
  check(doppel::server::scan_request_head(bytes, limits), bytes, limits);
  // A prefix is what the front sees before the rest arrives: never complete with more data
  // than a complete head of the whole.
  const auto prefix = bytes.substr(0, size / 2);
  check(doppel::server::scan_request_head(prefix, limits), prefix, limits);
  return 0;
}

#include "server/request_head.hpp"

#include <algorithm>
#include <cctype>

namespace doppel::server {
namespace {

RequestHead refused(int status, const char* code, std::string message) {
  RequestHead head;
  head.state = RequestHead::State::kRefused;
  head.status = status;
  head.code = code;
  head.message = std::move(message);
  return head;
}

bool is_token_char(unsigned char c) {
  // RFC 9110 tchar
  return std::isalnum(c) ||
         std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// "METHOD SP target SP HTTP/1.x", nothing else.
bool valid_request_line(std::string_view line) {
  const size_t first = line.find(' ');
  if (first == 0 || first == std::string_view::npos) return false;
  const size_t second = line.find(' ', first + 1);
  if (second == std::string_view::npos || second == first + 1) return false;
  if (!std::all_of(line.begin(), line.begin() + first,
                   [](char c) { return is_token_char(static_cast<unsigned char>(c)); }))
    return false;
  const std::string_view target = line.substr(first + 1, second - first - 1);
  if (std::any_of(target.begin(), target.end(),
                  [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; }))
    return false;
  const std::string_view version = line.substr(second + 1);
  return version == "HTTP/1.1" || version == "HTTP/1.0";
}

}  // namespace

RequestHead scan_request_head(std::string_view bytes, const RequestHeadLimits& limits) {
  RequestHead head;
  size_t start = 0;
  size_t header_count = 0;
  bool has_length = false;
  while (true) {
    const size_t newline = bytes.find('\n', start);
    const size_t line_end = newline == std::string_view::npos ? bytes.size() : newline + 1;
    if (line_end > limits.max_head_bytes)
      return refused(431, "header_too_large",
                     "the request's headers are larger than " +
                         std::to_string(limits.max_head_bytes) + " bytes");
    const size_t line_bytes = line_end - start;
    if (line_bytes > limits.max_line_bytes + 2) {
      return start == 0 ? refused(414, "uri_too_long",
                                  "the request line is longer than " +
                                      std::to_string(limits.max_line_bytes) + " bytes")
                        : refused(400, "header_line_too_long",
                                  "a request header line is longer than " +
                                      std::to_string(limits.max_line_bytes) + " bytes");
    }
    if (newline == std::string_view::npos) return head;  // kIncomplete
    if (newline == start || bytes[newline - 1] != '\r')
      return refused(400, "bad_request", "request lines must end with CR LF");
    const std::string_view line = bytes.substr(start, newline - 1 - start);
    const size_t line_start = start;
    start = newline + 1;
    if (line_start == 0) {
      if (!valid_request_line(line))
        return refused(400, "bad_request", "the request line must read 'METHOD /path HTTP/1.1'");
      continue;
    }
    if (line.empty()) break;  // the blank line: the head is complete
    if (++header_count > limits.max_header_count)
      return refused(
          431, "header_too_large",
          "the request has more than " + std::to_string(limits.max_header_count) + " header lines");
    const size_t colon = line.find(':');
    const std::string_view name = line.substr(0, colon == std::string_view::npos ? 0 : colon);
    if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) {
          return is_token_char(static_cast<unsigned char>(c));
        }))
      return refused(400, "bad_request", "a request header line is not 'Name: value'");
    const std::string_view value = trim(line.substr(colon + 1));
    if (std::any_of(value.begin(), value.end(), [](char c) {
          return (static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f;
        }))
      return refused(400, "bad_request", "a request header holds control characters");
    if (equals_ignoring_case(name, "Content-Length")) {
      const bool digits =
          !value.empty() && value.size() <= 18 &&
          std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
      if (!digits)
        return refused(400, "bad_request",
                       "Content-Length must be a whole number of bytes, not '" +
                           std::string(value.substr(0, 40)) + "'");
      const uint64_t length = std::stoull(std::string(value));
      if (has_length && length != head.content_length)
        return refused(400, "bad_request", "the request has two different Content-Lengths");
      has_length = true;
      head.content_length = length;
    } else if (equals_ignoring_case(name, "Transfer-Encoding")) {
      return refused(411, "length_required",
                     "request bodies must be sent with a Content-Length, not a "
                     "Transfer-Encoding");
    } else if (equals_ignoring_case(name, "Expect")) {
      if (!equals_ignoring_case(value, "100-continue"))
        return refused(417, "expectation_failed", "only 'Expect: 100-continue' is understood");
      head.expect_continue = true;
      head.expect_begin = line_start;
      head.expect_end = start;
    }
  }
  if (head.content_length > limits.max_body_bytes)
    return refused(413, "too_large",
                   "the request body is " + std::to_string(head.content_length) +
                       " bytes; at most " + std::to_string(limits.max_body_bytes) +
                       " are accepted");
  head.state = RequestHead::State::kComplete;
  head.head_bytes = start;
  return head;
}

}  // namespace doppel::server

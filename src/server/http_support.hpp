// Small pieces shared by the API's handlers: JSON error answers, request-body validation
// and the mapping of doppel::ErrorCode onto HTTP status codes.
#pragma once
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>

#include "doppel/core/error.hpp"

namespace doppel::server {

// An answer other than success, thrown by handlers and turned into {"error": {...}}.
class HttpError : public std::runtime_error {
 public:
  HttpError(int status, std::string code, const std::string& message)
      : std::runtime_error(message), status_(status), code_(std::move(code)) {}
  int status() const { return status_; }
  const std::string& code() const { return code_; }

 private:
  int status_;
  std::string code_;
};

// 400 invalid_argument with `message`.
[[noreturn]] void bad_request(const std::string& message);
// 404 not_found: "no such <what>" (also for another account's ids).
[[noreturn]] void not_found(const std::string& what);

void send_json(httplib::Response& response, int status, const nlohmann::json& body);
void send_error(httplib::Response& response, int status, const std::string& code,
                const std::string& message);

// 400 for arguments, 404 for missing records, 409 for cancelled work, 422 for unusable
// files, 500 for the rest.
int http_status_for(ErrorCode code);

// True for an I/O error of a full disk or an exhausted quota (ENOSPC, EDQUOT): the client
// is told so (507 disk_full) instead of a generic failure.
bool is_disk_full(const Error& error);

// The text of an HTTP status ("Not Found") for error answers httplib produced itself.
std::string status_code_name(int status);

// The request body as a JSON object (an empty body is {}); 413 above `max_bytes`,
// 400 for malformed JSON or another type.
nlohmann::json parse_json_body(const httplib::Request& request, int64_t max_bytes);

// 400 naming the first field of `body` that is not in `allowed`.
// Refuses (400) a field the route's `fields` ("name:type!,name:type") does not declare, naming
// the ones it does.
void check_body_fields(const nlohmann::json& body, const std::string& fields);

// A string field: 400 when missing (required), not a string, longer than `max_length`
// characters (bytes) or holding control characters.
std::optional<std::string> string_field(const nlohmann::json& body, const char* key, bool required,
                                        size_t max_length);
// An integer field in [min, max]; `fallback` when absent.
int64_t integer_field(const nlohmann::json& body, const char* key, int64_t min, int64_t max,
                      int64_t fallback);
std::optional<int64_t> optional_integer_field(const nlohmann::json& body, const char* key,
                                              int64_t min, int64_t max);
bool boolean_field(const nlohmann::json& body, const char* key, bool required, bool fallback);

// True for a store id (32 lowercase hex characters).
bool is_record_id(const std::string& text);

}  // namespace doppel::server

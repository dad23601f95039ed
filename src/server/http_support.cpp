#include "server/http_support.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sstream>

namespace doppel::server {

void bad_request(const std::string& message) {
  throw HttpError(400, "invalid_argument", message);
}

void not_found(const std::string& what) {
  throw HttpError(404, "not_found", "no such " + what);
}

void send_json(httplib::Response& response, int status, const nlohmann::json& body) {
  response.status = status;
  response.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                       "application/json");
}

void send_error(httplib::Response& response, int status, const std::string& code,
                const std::string& message) {
  send_json(response, status, {{"error", {{"code", code}, {"message", message}}}});
}

int http_status_for(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return 400;
    case ErrorCode::kNotFound:
      return 404;
    case ErrorCode::kCancelled:
      return 409;
    case ErrorCode::kInvalidFile:
    case ErrorCode::kUnsupported:
      return 422;
    case ErrorCode::kIo:
    case ErrorCode::kNumerical:
    case ErrorCode::kInternal:
      return 500;
  }
  return 500;
}

bool is_disk_full(const Error& error) {
  const std::string message = error.what();
  return error.code() == ErrorCode::kIo &&
         (message.find(std::strerror(ENOSPC)) != std::string::npos ||
          message.find(std::strerror(EDQUOT)) != std::string::npos);
}

std::string status_code_name(int status) {
  switch (status) {
    case 400:
      return "bad_request";
    case 401:
      return "unauthorized";
    case 403:
      return "forbidden";
    case 404:
      return "not_found";
    case 405:
      return "method_not_allowed";
    case 413:
      return "too_large";
    case 414:
      return "uri_too_long";
    case 415:
      return "unsupported_media_type";
    case 416:
      return "range_not_satisfiable";
    case 429:
      return "too_many_requests";
    default:
      return status >= 500 ? "internal" : "error";
  }
}

nlohmann::json parse_json_body(const httplib::Request& request, int64_t max_bytes) {
  if (static_cast<int64_t>(request.body.size()) > max_bytes) {
    throw HttpError(413, "too_large",
                    "the request body is " + std::to_string(request.body.size()) +
                        " bytes; at most " + std::to_string(max_bytes) + " are accepted");
  }
  if (request.body.find_first_not_of(" \t\r\n") == std::string::npos)
    return nlohmann::json::object();
  nlohmann::json body = nlohmann::json::parse(request.body, nullptr, false);
  if (body.is_discarded())
    throw HttpError(400, "malformed_json", "the request body is not valid JSON");
  if (!body.is_object()) bad_request("the request body must be a JSON object");
  return body;
}

void check_body_fields(const nlohmann::json& body, const std::string& fields) {
  std::vector<std::string> names;
  std::stringstream list(fields);
  for (std::string field; std::getline(list, field, ',');)
    names.push_back(field.substr(0, field.find(':')));
  for (const auto& item : body.items()) {
    if (std::find(names.begin(), names.end(), item.key()) != names.end()) continue;
    std::string known;
    for (const std::string& name : names) known += (known.empty() ? "" : ", ") + name;
    bad_request("unknown field '" + item.key() + "'; the fields are: " + known);
  }
}

std::optional<std::string> string_field(const nlohmann::json& body, const char* key, bool required,
                                        size_t max_length) {
  const auto it = body.find(key);
  if (it == body.end() || it->is_null()) {
    if (required) bad_request(std::string("field '") + key + "' is required");
    return std::nullopt;
  }
  if (!it->is_string()) bad_request(std::string("field '") + key + "' must be a string");
  std::string value = it->get<std::string>();
  if (value.size() > max_length)
    bad_request(std::string("field '") + key + "' is longer than " + std::to_string(max_length) +
                " bytes");
  if (std::any_of(value.begin(), value.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }))
    bad_request(std::string("field '") + key + "' must not contain control characters");
  return value;
}

std::optional<int64_t> optional_integer_field(const nlohmann::json& body, const char* key,
                                              int64_t min, int64_t max) {
  const auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_integer()) bad_request(std::string("field '") + key + "' must be an integer");
  if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(max))
    bad_request(std::string("field '") + key + "' must be from " + std::to_string(min) + " to " +
                std::to_string(max));
  const int64_t value = it->get<int64_t>();
  if (value < min || value > max)
    bad_request(std::string("field '") + key + "' must be from " + std::to_string(min) + " to " +
                std::to_string(max));
  return value;
}

int64_t integer_field(const nlohmann::json& body, const char* key, int64_t min, int64_t max,
                      int64_t fallback) {
  return optional_integer_field(body, key, min, max).value_or(fallback);
}

bool boolean_field(const nlohmann::json& body, const char* key, bool required, bool fallback) {
  const auto it = body.find(key);
  if (it == body.end() || it->is_null()) {
    if (required) bad_request(std::string("field '") + key + "' is required");
    return fallback;
  }
  if (!it->is_boolean()) bad_request(std::string("field '") + key + "' must be true or false");
  return it->get<bool>();
}

bool is_record_id(const std::string& text) {
  return text.size() == 32 && std::all_of(text.begin(), text.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

}  // namespace doppel::server

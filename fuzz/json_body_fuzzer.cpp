// libFuzzer target: the request checks doppel writes itself around cpp-httplib's parsing —
// JSON body validation of every handler (src/server/http_support.cpp), Origin/Host checks
// (request_guards.cpp) and the password rules. cpp-httplib parses the request line, headers
// and multipart bodies itself (its own code, in Debian's libcpp-httplib); the upload
// handler's per-file checks are image sniffing and decoding, which image_fuzzer covers.
#include <httplib.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "doppel/core/error.hpp"
#include "server/http_support.hpp"
#include "server/password_rules.hpp"
#include "server/request_guards.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  httplib::Request request;
  request.body = text;
  try {
    const nlohmann::json body = doppel::server::parse_json_body(request, 4096);
    try {
      doppel::server::check_body_fields(
          body, "email:string!,password:string!,count:integer,favourite:boolean,styles:strings");
    } catch (const doppel::server::HttpError&) {
    }
    try {
      (void)doppel::server::string_field(body, "email", false, 254);
      (void)doppel::server::integer_field(body, "count", 1, 20, 4);
      (void)doppel::server::boolean_field(body, "favourite", false, false);
    } catch (const doppel::server::HttpError& error) {
      if (error.status() != 400) __builtin_trap();
    }
  } catch (const doppel::server::HttpError& error) {
    if (error.status() != 400 && error.status() != 413) __builtin_trap();
  }
  (void)doppel::server::password_problem(text);
  (void)doppel::server::authority_of_url(text);
  (void)doppel::server::is_loopback_host(text);
  // The same bytes as the headers of a sign-in request.
  httplib::Request sign_in;
  const size_t split = text.find('\n');
  sign_in.set_header("Origin", text.substr(0, split));
  sign_in.set_header("Host", split == std::string::npos ? "" : text.substr(split + 1));
  sign_in.set_header("Content-Type", "application/json");
  try {
    doppel::server::check_same_origin_json(sign_in);
  } catch (const doppel::server::HttpError& error) {
    if (error.status() != 403) __builtin_trap();
  }
  return 0;
}

#include "server/request_guards.hpp"

#include <algorithm>
#include <cctype>

#include "server/http_support.hpp"

namespace doppel::server {
namespace {

std::string lowercase(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

// "example.com:80" -> "example.com" for `default_port` "80".
std::string without_port(const std::string& authority, const std::string& default_port) {
  const size_t colon = authority.rfind(':');
  const bool bracketed_end = !authority.empty() && authority.back() == ']';  // "[::1]"
  if (colon == std::string::npos || bracketed_end) return authority;
  if (authority.substr(colon + 1) == default_port) return authority.substr(0, colon);
  return authority;
}

}  // namespace

std::string authority_of_url(const std::string& url) {
  const std::string lower = lowercase(url);
  std::string scheme;
  if (lower.rfind("http://", 0) == 0) {
    scheme = "http";
  } else if (lower.rfind("https://", 0) == 0) {
    scheme = "https";
  } else {
    return "";
  }
  const size_t start = scheme.size() + 3;
  const size_t end = lower.find_first_of("/?#", start);
  std::string authority = lower.substr(start, end == std::string::npos ? end : end - start);
  if (authority.empty() || authority.find('@') != std::string::npos) return "";
  return without_port(authority, scheme == "http" ? "80" : "443");
}

std::string normalised_host(const std::string& host) {
  return without_port(without_port(lowercase(host), "80"), "443");
}

bool is_loopback_host(const std::string& host) {
  std::string name = lowercase(host);
  if (name.rfind("[::1]", 0) == 0) return name.size() == 5 || name[5] == ':';
  const size_t colon = name.find(':');
  if (colon != std::string::npos) name = name.substr(0, colon);
  if (name == "localhost" || (name.size() > 10 && name.substr(name.size() - 10) == ".localhost"))
    return true;
  if (name.rfind("127.", 0) != 0) return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return std::isdigit(c) || c == '.'; });
}

void check_same_origin_json(const httplib::Request& request) {
  const std::string type = lowercase(request.get_header_value("Content-Type"));
  if (type.rfind("application/json", 0) != 0)
    throw HttpError(415, "unsupported_media_type",
                    "send the request body as JSON (Content-Type: application/json)");
  const std::string host = normalised_host(request.get_header_value("Host"));
  std::string from = request.get_header_value("Origin");
  if (from.empty()) from = request.get_header_value("Referer");
  if (from.empty()) return;  // not a browser (curl, scripts): nothing another site can forge
  if (host.empty() || authority_of_url(from) != host)
    throw HttpError(403, "cross_origin",
                    "this request came from another site's page; sign in on the studio's own "
                    "page");
}

bool check_host(const httplib::Request& request, httplib::Response& response,
                bool bound_to_loopback) {
  if (!bound_to_loopback) return true;
  const std::string host = request.get_header_value("Host");
  if (host.empty() || is_loopback_host(host)) return true;
  send_error(response, 421, "misdirected_request",
             "this server listens on this machine only; open it as http://localhost or "
             "http://127.0.0.1 (another name pointing here is refused, so other sites' pages "
             "cannot reach it)");
  return false;
}

void add_security_headers(const httplib::Request& request, httplib::Response& response) {
  response.set_header("X-Content-Type-Options", "nosniff");
  const bool api = request.path.rfind("/api/", 0) == 0 || request.path == "/metrics";
  if (api) {
    if (!response.has_header("Cache-Control")) response.set_header("Cache-Control", "no-store");
    return;
  }
  response.set_header("Content-Security-Policy",
                      "default-src 'self'; img-src 'self' data: blob:; style-src 'self' "
                      "'unsafe-inline'; script-src 'self'; connect-src 'self'; object-src "
                      "'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'");
  response.set_header("X-Frame-Options", "DENY");
  response.set_header("Referrer-Policy", "same-origin");
}

bool arrived_over_tls(const httplib::Request& request) {
  return lowercase(request.get_header_value("X-Forwarded-Proto")) == "https";
}

}  // namespace doppel::server

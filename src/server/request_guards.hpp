// Checks a request passes before its handler runs, and headers every answer carries
// (issue 23): same-origin JSON for the requests that set cookies (sign-in CSRF), the Host
// header of a server bound to loopback (DNS rebinding), and security headers.
#pragma once
#include <httplib.h>

#include <string>

namespace doppel::server {

// "http://example.com:8080/path" -> "example.com:8080"; the default port of the scheme is
// dropped ("https://example.com:443" -> "example.com"). "" for anything that is no URL.
std::string authority_of_url(const std::string& url);

// A Host header without the default port: "Example.com:80" -> "example.com".
std::string normalised_host(const std::string& host);

// True for localhost, 127.0.0.0/8 and [::1] (with any port).
bool is_loopback_host(const std::string& host);

// For requests that set the session cookie (sign-in, set-up): the body must be JSON (415;
// a form or text/plain body is what a page of another site can send without asking), and
// when the browser says where the request comes from (Origin, else Referer) it must be this
// server (403).
void check_same_origin_json(const httplib::Request& request);

// When the server listens on loopback only, requests must name it by a loopback Host: a
// page of another site whose name was made to point at 127.0.0.1 sends its own name (421).
// True when the request may go on; otherwise `response` holds the refusal.
bool check_host(const httplib::Request& request, httplib::Response& response,
                bool bound_to_loopback);

// Cache-Control: no-store on API answers; Content-Security-Policy, X-Frame-Options and
// Referrer-Policy on pages; X-Content-Type-Options on everything.
void add_security_headers(const httplib::Request& request, httplib::Response& response);

// True when the client reached the server over TLS, as a proxy in front says
// (X-Forwarded-Proto: https): cookies then carry the Secure flag.
bool arrived_over_tls(const httplib::Request& request);

}  // namespace doppel::server

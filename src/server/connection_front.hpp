// The server's front door: cpp-httplib parses and answers requests, but a worker thread of
// its own would wait on each connection's bytes, so slow clients could hold every thread.
// Here one poll() thread receives every request's head and body (with deadlines, a cap on
// connections per client address and the limits of request_head.hpp) and only complete
// requests go to the fixed pool of workers that run httplib's request handling.
#pragma once
#include <httplib.h>

#include <cstdint>
#include <memory>

#include "doppel/server/api_server.hpp"
#include "server/request_head.hpp"

namespace doppel::server {

struct FrontLimits {
  RequestHeadLimits head;
  int workers = 32;
  int max_connections = 1024;                     // in all; beyond: 503 and closed
  int max_connections_per_address = 64;           // per client address; beyond: 503 and closed
  int64_t header_timeout_ms = 10'000;             // a request's head must arrive within this
  int64_t body_min_bytes_per_second = 16 * 1024;  // after the header time, bodies keep this pace
  int64_t write_timeout_ms = 10'000;              // an answer's bytes must leave within this
  int64_t max_buffered_body_bytes = 256LL << 20;  // bodies being received, all together
  int keep_alive_max_requests = 100;
};

// The limits `options` asks for (upload size, threads, timeouts).
FrontLimits front_limits(const ServerOptions& options);

class ConnectionFront;

// An httplib::Server whose accepted connections go through the connection front.
class GuardedHttpServer : public httplib::Server {
 public:
  explicit GuardedHttpServer(FrontLimits limits);
  ~GuardedHttpServer() override;
  // Closes every connection and joins the front's threads (after stop()).
  void shut_down_front();
  // Connections open now (for tests and /metrics).
  int open_connections() const;

  // httplib's handling of one request whose bytes `stream` holds (for the front's workers).
  bool answer_one(httplib::Stream& stream, bool close_connection, bool& connection_closed) {
    return process_request(stream, close_connection, connection_closed, nullptr);
  }

 private:
  bool process_and_close_socket(socket_t sock) override;
  std::unique_ptr<ConnectionFront> front_;
};

}  // namespace doppel::server

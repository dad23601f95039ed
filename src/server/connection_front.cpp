#include "server/connection_front.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "doppel/core/log.hpp"

namespace doppel::server {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int64_t kDrainMs = 1000;          // how long a refused connection's bytes are read
constexpr size_t kMaxDrainBytes = 1 << 20;  // ... at most, before it is closed
constexpr size_t kReceiveChunk = 16 * 1024;
constexpr int kMaxRefusing = 64;  // refused connections still saying why

struct Connection {
  enum class Phase { kHead, kBody, kDraining };
  int fd = -1;
  std::string address;
  int port = 0;
  std::string buffer;   // received bytes not yet handled
  size_t consumed = 0;  // of `buffer`, by httplib on a worker
  Phase phase = Phase::kHead;
  RequestHead head;
  size_t scanned_lines_end = 0;  // after the last '\n' when the head was last scanned
  Clock::time_point deadline;
  int64_t reserved_body = 0;  // counted in ConnectionFront::buffered_body_
  int requests = 0;
  size_t drained = 0;
};

const char* reason_phrase(int status) {
  switch (status) {
    case 400:
      return "Bad Request";
    case 408:
      return "Request Timeout";
    case 411:
      return "Length Required";
    case 413:
      return "Payload Too Large";
    case 414:
      return "URI Too Long";
    case 417:
      return "Expectation Failed";
    case 431:
      return "Request Header Fields Too Large";
    case 503:
      return "Service Unavailable";
    default:
      return "Error";
  }
}

// An error answer in the API's JSON form; the connection closes after it.
std::string error_answer(int status, const std::string& code, const std::string& message) {
  const std::string body = nlohmann::json{{"error", {{"code", code}, {"message", message}}}}.dump(
      -1, ' ', false, nlohmann::json::error_handler_t::replace);
  return "HTTP/1.1 " + std::to_string(status) + " " + reason_phrase(status) +
         "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n" + body;
}

// Waits up to `timeout_ms` for `events` on `fd`.
bool wait_for(int fd, short events, int64_t timeout_ms) {
  pollfd entry{fd, events, 0};
  while (true) {
    const int ready = ::poll(&entry, 1, static_cast<int>(timeout_ms));
    if (ready < 0 && errno == EINTR) continue;
    return ready > 0 && (entry.revents & events) != 0;
  }
}

std::string peer_address(int fd, int& port) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  char host[NI_MAXHOST] = "";
  char service[NI_MAXSERV] = "";
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0 ||
      ::getnameinfo(reinterpret_cast<sockaddr*>(&address), length, host, sizeof host, service,
                    sizeof service, NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return "unknown";
  port = std::atoi(service);
  return host;
}

// One request's bytes as httplib reads them: from the connection's buffer, which holds the
// whole request before a worker sees it; answers go straight to the socket.
class FrontStream : public httplib::Stream {
 public:
  FrontStream(Connection& connection, int64_t write_timeout_ms)
      : connection_(connection), write_timeout_ms_(write_timeout_ms) {}

  bool is_readable() const override { return connection_.consumed < connection_.buffer.size(); }
  bool is_writable() const override {
    return !broken_ && wait_for(connection_.fd, POLLOUT, write_timeout_ms_);
  }
  ssize_t read(char* ptr, size_t size) override {
    const size_t left = connection_.buffer.size() - connection_.consumed;
    if (left == 0) {
      broken_ = true;  // httplib wanted more than the head and Content-Length announced
      return -1;
    }
    const size_t count = std::min(size, left);
    std::memcpy(ptr, connection_.buffer.data() + connection_.consumed, count);
    connection_.consumed += count;
    return static_cast<ssize_t>(count);
  }
  ssize_t write(const char* ptr, size_t size) override {
    size_t sent = 0;
    while (!broken_ && sent < size) {
      if (!wait_for(connection_.fd, POLLOUT, write_timeout_ms_)) break;
      const ssize_t count =
          ::send(connection_.fd, ptr + sent, size - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
      if (count <= 0) break;
      sent += static_cast<size_t>(count);
    }
    if (sent < size) broken_ = true;
    return broken_ ? -1 : static_cast<ssize_t>(size);
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    ip = connection_.address;
    port = connection_.port;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    char host[NI_MAXHOST] = "";
    char service[NI_MAXSERV] = "";
    if (::getsockname(connection_.fd, reinterpret_cast<sockaddr*>(&address), &length) == 0 &&
        ::getnameinfo(reinterpret_cast<sockaddr*>(&address), length, host, sizeof host, service,
                      sizeof service, NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
      ip = host;
      port = std::atoi(service);
    }
  }
  socket_t socket() const override { return connection_.fd; }
  bool broken() const { return broken_; }

 private:
  Connection& connection_;
  int64_t write_timeout_ms_;
  bool broken_ = false;
};

// httplib hands each accepted socket to its task queue; this one passes it on at once
// (GuardedHttpServer::process_and_close_socket gives it to the front).
class InlineTaskQueue : public httplib::TaskQueue {
 public:
  void enqueue(std::function<void()> task) override { task(); }
  void shutdown() override {}
};

}  // namespace

class ConnectionFront {
 public:
  ConnectionFront(GuardedHttpServer& server, FrontLimits limits)
      : server_(server), limits_(limits) {
    if (::pipe2(wake_pipe_, O_CLOEXEC | O_NONBLOCK) != 0)
      throw std::runtime_error("cannot create the connection front's wake-up pipe");
    reactor_ = std::thread([this] { receive_loop(); });
    for (int i = 0; i < std::max(2, limits_.workers); ++i)
      workers_.emplace_back([this] { work_loop(); });
  }
  ~ConnectionFront() {
    shut_down();
    ::close(wake_pipe_[0]);
    ::close(wake_pipe_[1]);
  }

  void accept(int fd) {
    int port = 0;
    auto connection = std::make_unique<Connection>();
    connection->fd = fd;
    connection->address = peer_address(fd, port);
    connection->port = port;
    const int on = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    connection->deadline = Clock::now() + std::chrono::milliseconds(limits_.header_timeout_ms);
    bool over = false;
    {
      std::lock_guard lock(mutex_);
      // Refused connections stay open a moment to say why; beyond that, not even that.
      if (stopping_ || open_ >= limits_.max_connections + kMaxRefusing) {
        ::close(fd);
        return;
      }
      over = open_ >= limits_.max_connections ||
             per_address_[connection->address] >= limits_.max_connections_per_address;
      ++open_;
      ++per_address_[connection->address];
      if (over) connection->phase = Connection::Phase::kDraining;  // refused by the receiver
      inbox_.push_back(std::move(connection));
    }
    wake();
  }

  void shut_down() {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      stopping_ = true;
    }
    ready_signal_.notify_all();
    wake();
    if (reactor_.joinable()) reactor_.join();
    for (std::thread& worker : workers_) worker.join();
    std::lock_guard lock(mutex_);
    for (auto& connection : ready_) ::close(connection->fd);
    for (auto& connection : inbox_) ::close(connection->fd);
    ready_.clear();
    inbox_.clear();
  }

  int open_connections() const {
    std::lock_guard lock(mutex_);
    return open_;
  }

 private:
  void wake() {
    const char byte = 1;
    [[maybe_unused]] const ssize_t ignored = ::write(wake_pipe_[1], &byte, 1);
  }

  void close(std::unique_ptr<Connection> connection) {
    release_body(*connection);
    ::close(connection->fd);
    std::lock_guard lock(mutex_);
    --open_;
    auto it = per_address_.find(connection->address);
    if (it != per_address_.end() && --it->second <= 0) per_address_.erase(it);
  }

  void release_body(Connection& connection) {
    buffered_body_ -= connection.reserved_body;
    connection.reserved_body = 0;
  }

  // Answers with an error, stops writing, and reads (then drops) what the client still sends
  // for a moment, so the answer is not lost to a reset.
  void refuse(Connection& connection, int status, const std::string& code,
              const std::string& message) {
    release_body(connection);
    const std::string answer = error_answer(status, code, message);
    [[maybe_unused]] const ssize_t ignored =
        ::send(connection.fd, answer.data(), answer.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    ::shutdown(connection.fd, SHUT_WR);
    connection.phase = Connection::Phase::kDraining;
    connection.buffer.clear();
    connection.buffer.shrink_to_fit();
    connection.drained = 0;
    connection.deadline = Clock::now() + std::chrono::milliseconds(kDrainMs);
  }

  // The receiving thread: every connection between requests, in one poll().
  void receive_loop() {
    std::map<int, std::unique_ptr<Connection>> waiting;
    std::vector<pollfd> polled;
    while (!stopping_) {
      std::vector<std::unique_ptr<Connection>> arrived;
      {
        std::lock_guard lock(mutex_);
        arrived.swap(inbox_);
      }
      for (auto& connection : arrived) {
        const int fd = connection->fd;
        if (connection->phase == Connection::Phase::kDraining && connection->requests == 0) {
          refuse(*connection, 503, "too_many_connections",
                 "too many open connections from this address; close some and try again");
        }
        auto [it, added] = waiting.emplace(fd, std::move(connection));
        // A kept-alive connection may hold the next request already.
        if (it->second->phase == Connection::Phase::kHead && !it->second->buffer.empty())
          advance(waiting, fd, true);
      }
      polled.assign(1, pollfd{wake_pipe_[0], POLLIN, 0});
      auto next_deadline = Clock::now() + std::chrono::seconds(1);
      for (const auto& [fd, connection] : waiting) {
        polled.push_back(pollfd{fd, POLLIN, 0});
        next_deadline = std::min(next_deadline, connection->deadline);
      }
      const auto wait =
          std::chrono::duration_cast<std::chrono::milliseconds>(next_deadline - Clock::now())
              .count();
      const int ready = ::poll(polled.data(), polled.size(),
                               static_cast<int>(std::clamp<int64_t>(wait + 1, 0, 1000)));
      if (ready < 0 && errno != EINTR) log_error("connection front: poll failed");
      if (polled[0].revents != 0) {
        char drain[64];
        while (::read(wake_pipe_[0], drain, sizeof drain) > 0) {
        }
      }
      for (size_t i = 1; i < polled.size(); ++i) {
        if (polled[i].revents != 0) receive(waiting, polled[i].fd);
      }
      const auto now = Clock::now();
      std::vector<int> expired;
      for (const auto& [fd, connection] : waiting)
        if (connection->deadline <= now) expired.push_back(fd);
      for (int fd : expired) time_out(waiting, fd);
    }
    for (auto& [fd, connection] : waiting) close(std::move(connection));
  }

  void receive(std::map<int, std::unique_ptr<Connection>>& waiting, int fd) {
    auto it = waiting.find(fd);
    if (it == waiting.end()) return;
    Connection& connection = *it->second;
    char chunk[kReceiveChunk];
    size_t wanted = sizeof chunk;
    if (connection.phase == Connection::Phase::kBody) {
      const size_t whole = connection.head.head_bytes + connection.head.content_length;
      wanted = std::min(wanted, whole - std::min(whole, connection.buffer.size()));
      if (wanted == 0) wanted = 1;
    }
    const ssize_t count = ::recv(fd, chunk, wanted, MSG_DONTWAIT);
    if (count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (count <= 0) {  // the client closed (or reset) the connection
      close(std::move(it->second));
      waiting.erase(it);
      return;
    }
    if (connection.phase == Connection::Phase::kDraining) {
      connection.drained += static_cast<size_t>(count);
      if (connection.drained > kMaxDrainBytes) {
        close(std::move(it->second));
        waiting.erase(it);
      }
      return;
    }
    connection.buffer.append(chunk, static_cast<size_t>(count));
    advance(waiting, fd, std::memchr(chunk, '\n', static_cast<size_t>(count)) != nullptr);
  }

  // Scans the head when a line may have ended (or a limit may be broken), then waits for
  // the body and hands the complete request to a worker.
  void advance(std::map<int, std::unique_ptr<Connection>>& waiting, int fd, bool new_line) {
    auto it = waiting.find(fd);
    Connection& connection = *it->second;
    if (connection.phase == Connection::Phase::kHead) {
      const size_t unscanned = connection.buffer.size() - connection.scanned_lines_end;
      if (!new_line && unscanned <= limits_.head.max_line_bytes + 2 &&
          connection.buffer.size() <= limits_.head.max_head_bytes)
        return;
      const size_t last_newline = connection.buffer.rfind('\n');
      connection.scanned_lines_end = last_newline == std::string::npos ? 0 : last_newline + 1;
      RequestHead head = scan_request_head(connection.buffer, limits_.head);
      if (head.state == RequestHead::State::kIncomplete) return;
      if (head.state == RequestHead::State::kRefused) {
        refuse(connection, head.status, head.code, head.message);
        return;
      }
      if (head.expect_continue) {
        connection.buffer.erase(head.expect_begin, head.expect_end - head.expect_begin);
        head.head_bytes -= head.expect_end - head.expect_begin;
        if (connection.buffer.size() < head.head_bytes + head.content_length) {
          static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
          [[maybe_unused]] const ssize_t ignored = ::send(
              connection.fd, kContinue.data(), kContinue.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        }
      }
      const auto length = static_cast<int64_t>(head.content_length);
      if (buffered_body_ + length > limits_.max_buffered_body_bytes) {
        refuse(connection, 503, "busy",
               "the server is receiving too many uploads at once; try again in a minute");
        return;
      }
      buffered_body_ += length;
      connection.reserved_body = length;
      connection.head = head;
      connection.phase = Connection::Phase::kBody;
      connection.deadline =
          Clock::now() +
          std::chrono::milliseconds(limits_.header_timeout_ms +
                                    length * 1000 /
                                        std::max<int64_t>(1, limits_.body_min_bytes_per_second));
    }
    if (connection.phase != Connection::Phase::kBody ||
        connection.buffer.size() < connection.head.head_bytes + connection.head.content_length)
      return;
    std::unique_ptr<Connection> complete = std::move(it->second);
    waiting.erase(it);
    {
      std::lock_guard lock(mutex_);
      if (static_cast<int>(ready_.size()) < 8 * std::max(2, limits_.workers)) {
        ready_.push_back(std::move(complete));
      }
    }
    if (!complete) {
      ready_signal_.notify_one();
      return;
    }
    refuse(*complete, 503, "busy", "the server has too many requests waiting; try again shortly");
    waiting.emplace(fd, std::move(complete));
  }

  void time_out(std::map<int, std::unique_ptr<Connection>>& waiting, int fd) {
    auto it = waiting.find(fd);
    Connection& connection = *it->second;
    if (connection.phase == Connection::Phase::kDraining ||
        (connection.phase == Connection::Phase::kHead && connection.buffer.empty())) {
      close(std::move(it->second));  // refused, or idle between requests
      waiting.erase(it);
      return;
    }
    refuse(connection, 408, "request_timeout",
           connection.phase == Connection::Phase::kHead
               ? "the request's headers did not arrive in time; send them at once"
               : "the request body did not arrive in time (at least " +
                     std::to_string(limits_.body_min_bytes_per_second / 1024) +
                     " KiB per second are needed)");
  }

  // A worker: httplib answers one complete request, then the connection goes back to the
  // receiving thread (kept alive) or closes.
  void work_loop() {
    while (true) {
      std::unique_ptr<Connection> connection;
      {
        std::unique_lock lock(mutex_);
        ready_signal_.wait(lock, [this] { return stopping_ || !ready_.empty(); });
        if (stopping_) return;
        connection = std::move(ready_.front());
        ready_.pop_front();
      }
      serve(std::move(connection));
    }
  }

  void serve(std::unique_ptr<Connection> connection) {
    FrontStream stream(*connection, limits_.write_timeout_ms);
    connection->consumed = 0;
    const bool last = stopping_ || connection->requests + 1 >= limits_.keep_alive_max_requests;
    bool closed = false;
    bool answered = false;
    try {
      answered = server_.answer_one(stream, last, closed);
    } catch (const std::exception& error) {
      log_error(std::string("connection front: ") + error.what());
    }
    ++connection->requests;
    // A body httplib did not read (a GET with one) is dropped with the request.
    const size_t request_end = connection->head.head_bytes + connection->head.content_length;
    connection->buffer.erase(
        0, std::min(connection->buffer.size(), std::max(connection->consumed, request_end)));
    release_body(*connection);
    if (!answered || closed || last || stopping_ || stream.broken()) {
      close(std::move(connection));
      return;
    }
    connection->phase = Connection::Phase::kHead;
    connection->head = RequestHead{};
    connection->scanned_lines_end = 0;
    connection->deadline = Clock::now() + std::chrono::milliseconds(limits_.header_timeout_ms);
    {
      std::lock_guard lock(mutex_);
      inbox_.push_back(std::move(connection));
    }
    wake();
  }

  GuardedHttpServer& server_;
  FrontLimits limits_;
  mutable std::mutex mutex_;                        // guards the members below up to ready_signal_
  std::vector<std::unique_ptr<Connection>> inbox_;  // new and kept-alive connections
  std::deque<std::unique_ptr<Connection>> ready_;   // complete requests for the workers
  std::map<std::string, int> per_address_;
  int open_ = 0;
  std::condition_variable ready_signal_;
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> buffered_body_{0};
  int wake_pipe_[2] = {-1, -1};
  std::thread reactor_;
  std::vector<std::thread> workers_;
};

FrontLimits front_limits(const ServerOptions& options) {
  FrontLimits limits;
  limits.head.max_body_bytes =
      static_cast<uint64_t>(std::max(options.max_upload_bytes, options.max_json_bytes));
  limits.head.max_header_count = static_cast<size_t>(std::max(1, options.max_header_count));
  limits.head.max_head_bytes =
      static_cast<size_t>(std::max<int64_t>(1024, options.max_header_bytes));
  limits.workers = options.http_threads;
  limits.max_connections_per_address = options.max_connections_per_address;
  limits.header_timeout_ms = options.header_timeout_ms;
  limits.body_min_bytes_per_second = options.min_upload_bytes_per_second;
  return limits;
}

GuardedHttpServer::GuardedHttpServer(FrontLimits limits)
    : front_(std::make_unique<ConnectionFront>(*this, limits)) {
  new_task_queue = [] { return new InlineTaskQueue(); };
}

GuardedHttpServer::~GuardedHttpServer() {
  shut_down_front();
}

void GuardedHttpServer::shut_down_front() {
  front_->shut_down();
}

int GuardedHttpServer::open_connections() const {
  return front_->open_connections();
}

bool GuardedHttpServer::process_and_close_socket(socket_t sock) {
  front_->accept(sock);
  return true;
}

}  // namespace doppel::server

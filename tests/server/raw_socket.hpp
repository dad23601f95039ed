// A TCP connection to the test server that sends exactly the bytes a test gives it, for
// requests no HTTP client library would send (slow, malformed or oversized ones).
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>

namespace doppel::test {

class RawSocket {
 public:
  explicit RawSocket(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  }
  ~RawSocket() { close(); }
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;

  bool connected() const { return connected_; }
  // False once the server closed or reset the connection.
  bool send(const std::string& bytes) {
    size_t sent = 0;
    while (sent < bytes.size()) {
      const ssize_t count = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (count <= 0) return false;
      sent += static_cast<size_t>(count);
    }
    return true;
  }
  // Everything the server sends until it closes the connection, or `timeout_ms` passes.
  std::string receive_until_closed(int timeout_ms) {
    std::string bytes;
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    closed_by_server_ = false;
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            end - std::chrono::steady_clock::now())
                            .count();
      if (left <= 0) return bytes;
      pollfd entry{fd_, POLLIN, 0};
      if (::poll(&entry, 1, static_cast<int>(left)) <= 0) continue;
      char chunk[4096];
      const ssize_t count = ::recv(fd_, chunk, sizeof chunk, 0);
      if (count <= 0) {
        closed_by_server_ = true;
        return bytes;
      }
      bytes.append(chunk, static_cast<size_t>(count));
    }
  }
  // What arrives until `needle` is in it (or the server closes, or `timeout_ms` passes).
  std::string receive_until(const std::string& needle, int timeout_ms) {
    std::string bytes;
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (bytes.find(needle) == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            end - std::chrono::steady_clock::now())
                            .count();
      if (left <= 0) break;
      pollfd entry{fd_, POLLIN, 0};
      if (::poll(&entry, 1, static_cast<int>(left)) <= 0) continue;
      char chunk[4096];
      const ssize_t count = ::recv(fd_, chunk, sizeof chunk, 0);
      if (count <= 0) break;
      bytes.append(chunk, static_cast<size_t>(count));
    }
    return bytes;
  }
  bool closed_by_server() const { return closed_by_server_; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool closed_by_server_ = false;
};

// "HTTP/1.1 431 ..." -> 431; 0 when `answer` is no HTTP answer.
inline int status_of(const std::string& answer) {
  if (answer.rfind("HTTP/1.", 0) != 0 || answer.size() < 12) return 0;
  return std::atoi(answer.substr(9, 3).c_str());
}

}  // namespace doppel::test

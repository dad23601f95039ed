// Attacks on the server's front door (issue 23, items 1 and 3): slow clients, bad
// Content-Lengths, too many connections, oversized heads. Loopback only, each in seconds.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <numeric>
#include <thread>
#include <vector>

#include "raw_socket.hpp"
#include "server/request_head.hpp"
#include "server_test_support.hpp"

namespace doppel::test {
namespace {

using Clock = std::chrono::steady_clock;

int64_t millis_since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

int64_t micros_since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
}

TEST(ServerFront, HealthAnswersFastWhileFortySlowSocketsDripTheirHeaders) {
  TestServer server;
  const int port = server.server().port();
  // 40 connections that send a request head one byte at a time, as slowly as the attack.
  std::vector<std::unique_ptr<RawSocket>> slow;
  for (int i = 0; i < 40; ++i) {
    slow.push_back(std::make_unique<RawSocket>(port));
    ASSERT_TRUE(slow.back()->connected());
  }
  const std::string head = "GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
  std::atomic<bool> done{false};
  std::thread drip([&] {
    for (size_t byte = 0; !done && byte < head.size(); ++byte) {
      for (auto& socket : slow) socket->send(std::string(1, head[byte]));
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // all 40 have started
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(3, 0);
  client.set_connection_timeout(3, 0);
  std::vector<int64_t> latencies;
  for (int i = 0; i < 20; ++i) {
    const auto start = Clock::now();
    const auto answer = client.Get("/api/health");
    latencies.push_back(micros_since(start));
    ASSERT_TRUE(answer) << "health did not answer while slow sockets were open";
    EXPECT_EQ(answer->status, 200);
  }
  done = true;
  drip.join();
  std::sort(latencies.begin(), latencies.end());
  std::cout << "[ figure ] /api/health under 40 slow sockets: median " << latencies[10]
            << " us, max " << latencies.back() << " us (20 requests)" << std::endl;
  EXPECT_LT(latencies.back(), 1'000'000);
}

TEST(ServerFront, AHeadThatDoesNotArriveInTimeIsAnswered408AndClosed) {
  server::ServerOptions options;
  options.header_timeout_ms = 800;
  TestServer server(options);
  RawSocket socket(server.server().port());
  const auto start = Clock::now();
  std::thread drip([&] {
    for (char c : std::string("GET /api/health HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaa")) {
      if (!socket.send(std::string(1, c))) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  const std::string answer = socket.receive_until_closed(5000);
  const int64_t elapsed = millis_since(start);
  drip.join();
  EXPECT_EQ(status_of(answer), 408) << answer;
  EXPECT_TRUE(socket.closed_by_server());
  EXPECT_LT(elapsed, 3000);
}

TEST(ServerFront, AnIdleConnectionIsClosedAfterTheHeaderTime) {
  server::ServerOptions options;
  options.header_timeout_ms = 500;
  TestServer server(options);
  RawSocket socket(server.server().port());
  const auto start = Clock::now();
  EXPECT_EQ(socket.receive_until_closed(5000), "");
  EXPECT_TRUE(socket.closed_by_server());
  EXPECT_LT(millis_since(start), 3000);
}

TEST(ServerFront, ABodySentTooSlowlyIsCutOff) {
  server::ServerOptions options;
  options.header_timeout_ms = 500;
  options.min_upload_bytes_per_second = 1 << 20;
  TestServer server(options);
  RawSocket socket(server.server().port());
  const auto start = Clock::now();
  ASSERT_TRUE(socket.send(
      "POST /api/sessions HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: "
      "100000\r\n\r\n{\"email\""));
  const std::string answer = socket.receive_until_closed(5000);
  EXPECT_EQ(status_of(answer), 408) << answer;
  EXPECT_LT(millis_since(start), 3000);
}

TEST(ServerFront, InvalidContentLengthsAreRefusedAtOnce) {
  TestServer server;
  for (const std::string length : {"-5", "abc", "1e3", "99999999999999999999", "5, 6"}) {
    RawSocket socket(server.server().port());
    const auto start = Clock::now();
    ASSERT_TRUE(socket.send("POST /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " +
                            length + "\r\n\r\n"));
    const std::string answer = socket.receive_until_closed(5000);
    EXPECT_EQ(status_of(answer), 400) << length << ": " << answer;
    EXPECT_TRUE(socket.closed_by_server()) << length;
    EXPECT_LT(millis_since(start), 1000) << length;
  }
  RawSocket chunked(server.server().port());
  ASSERT_TRUE(chunked.send(
      "POST /api/sessions HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"));
  EXPECT_EQ(status_of(chunked.receive_until_closed(5000)), 411);
}

TEST(ServerFront, OneAddressMayHoldOnlySoManyConnections) {
  server::ServerOptions options;
  options.max_connections_per_address = 4;
  TestServer server(options);
  const int port = server.server().port();
  std::vector<std::unique_ptr<RawSocket>> held;
  for (int i = 0; i < 4; ++i) held.push_back(std::make_unique<RawSocket>(port));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  RawSocket fifth(port);
  const std::string refused = fifth.receive_until_closed(3000);
  EXPECT_EQ(status_of(refused), 503) << refused;
  EXPECT_NE(refused.find("too_many_connections"), std::string::npos);
  held.clear();  // closing them frees the address's places
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  httplib::Client client("127.0.0.1", port);
  const auto answer = client.Get("/api/health");
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->status, 200);
}

TEST(ServerFront, OversizedHeadsAreRefusedWithoutReadingThemWhole) {
  TestServer server;
  const int port = server.server().port();
  {  // too many header lines
    RawSocket socket(port);
    std::string head = "GET /api/health HTTP/1.1\r\n";
    for (int i = 0; i < 200; ++i) head += "X-Line-" + std::to_string(i) + ": x\r\n";
    socket.send(head + "\r\n");
    EXPECT_EQ(status_of(socket.receive_until_closed(3000)), 431);
  }
  {  // one header line longer than any server accepts
    RawSocket socket(port);
    socket.send("GET /api/health HTTP/1.1\r\nX-Long: " + std::string(20'000, 'a') + "\r\n\r\n");
    EXPECT_EQ(status_of(socket.receive_until_closed(3000)), 400);
  }
  {  // two million header lines, as in the attack: refused after the first 64 KiB
    RawSocket socket(port);
    socket.send("GET /api/health HTTP/1.1\r\n");
    const std::string lines = [] {
      std::string text;
      for (int i = 0; i < 1000; ++i) text += "X-A: " + std::to_string(i) + "\r\n";
      return text;
    }();
    int sent_batches = 0;
    while (sent_batches < 2000 && socket.send(lines)) ++sent_batches;
    EXPECT_LT(sent_batches, 2000) << "the server kept reading an endless head";
    socket.close();
  }
  httplib::Client client("127.0.0.1", port);
  const auto answer = client.Get("/api/health");
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->status, 200);
}

TEST(ServerFront, KeptAliveAndPipelinedRequestsAreAllAnswered) {
  TestServer server;
  RawSocket socket(server.server().port());
  const std::string request = "GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  socket.send(request + request +
              "GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  const std::string answers = socket.receive_until_closed(3000);
  size_t count = 0;
  for (size_t at = answers.find("HTTP/1.1 200"); at != std::string::npos;
       at = answers.find("HTTP/1.1 200", at + 1))
    ++count;
  EXPECT_EQ(count, 3u) << answers;
}

TEST(RequestHead, ScansCompleteHeadsAndRefusesBrokenOnes) {
  server::RequestHeadLimits limits;
  limits.max_body_bytes = 1000;
  using State = server::RequestHead::State;
  auto scan = [&](const std::string& bytes) { return server::scan_request_head(bytes, limits); };
  const auto complete =
      scan("POST /a HTTP/1.1\r\nContent-Length: 12\r\nExpect: 100-continue\r\n\r\n{\"a\": 1}");
  ASSERT_EQ(complete.state, State::kComplete);
  EXPECT_EQ(complete.content_length, 12u);
  EXPECT_TRUE(complete.expect_continue);
  EXPECT_EQ(complete.head_bytes, 62u);
  EXPECT_EQ(scan("GET /a HTTP/1.1\r\nHost: x\r\n").state, State::kIncomplete);
  EXPECT_EQ(scan("GET /a HTTP/1.1\r\nHost: x\n\n").status, 400);
  EXPECT_EQ(scan("GET /a\r\n\r\n").status, 400);
  EXPECT_EQ(scan("POST /a HTTP/1.1\r\nContent-Length: 1001\r\n\r\n").status, 413);
  EXPECT_EQ(scan("POST /a HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n").status, 400);
  EXPECT_EQ(scan("GET /a HTTP/1.1\r\nNo colon here\r\n\r\n").status, 400);
  EXPECT_EQ(scan("GET /" + std::string(9000, 'a') + " HTTP/1.1\r\n").status, 414);
}

}  // namespace
}  // namespace doppel::test

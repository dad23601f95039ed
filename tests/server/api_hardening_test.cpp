// Attacks on signed-in routes and sign-in itself (issue 23, items 5, 6, 7 and 12): parallel
// password guessing, floods of Argon2 work, sign-in CSRF, event streams hogged by one account
// or outliving their token, DNS rebinding, missing security headers.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <thread>
#include <vector>

#include "raw_socket.hpp"
#include "server/http_support.hpp"
#include "server_test_support.hpp"

namespace doppel::test {
namespace {

Answer sign_in(int port, const std::string& email, const std::string& password,
               const httplib::Headers& headers = {}) {
  ApiClient client(port, headers);
  return client.post("/api/sessions", {{"email", email}, {"password", password}});
}

// Runs `attempt` on `count` threads at once; the answers' statuses.
std::vector<int> in_parallel(int count, const std::function<int(int)>& attempt) {
  std::vector<int> statuses(static_cast<size_t>(count));
  std::vector<std::thread> threads;
  std::atomic<bool> go{false};
  for (int i = 0; i < count; ++i) {
    threads.emplace_back([&, i] {
      while (!go) std::this_thread::yield();
      statuses[static_cast<size_t>(i)] = attempt(i);
    });
  }
  go = true;
  for (std::thread& thread : threads) thread.join();
  return statuses;
}

TEST(ServerHardening, ParallelWrongPasswordsShareOneLimit) {
  server::ServerOptions options;
  options.max_concurrent_password_checks = 64;  // only the rate limit answers 429 here
  TestServer server(options);
  first_account(server);
  const int port = server.server().port();
  const auto statuses =
      in_parallel(24, [&](int) { return sign_in(port, "ada@example.com", "wrong guess!").status; });
  const auto count = [&](int status) {
    return std::count(statuses.begin(), statuses.end(), status);
  };
  std::string seen;
  for (const int status : statuses) seen += std::to_string(status) + " ";
  EXPECT_LE(count(401), options.login_attempts) << seen;
  // Every attempt is answered (the listen backlog holds a burst), never with a success, never
  // with anything but "wrong" or "too many".
  EXPECT_EQ(count(401) + count(429), 24) << seen;
  // The right password is limited too until the window passes.
  EXPECT_EQ(sign_in(port, "ada@example.com", "correct horse battery").status, 429);
}

TEST(ServerHardening, WrongPasswordsForDeletingTheAccountAreLimited) {
  TestServer server;
  ApiClient client = first_account(server);
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(client.del("/api/account", {{"password", "not it " + std::to_string(i)}}).status,
              403);
  const Answer limited = client.del("/api/account", {{"password", "correct horse battery"}});
  EXPECT_EQ(limited.status, 429) << limited.raw;
  EXPECT_EQ(client.get("/api/account").status, 200);  // still there
}

TEST(ServerHardening, AFloodOfSignInsIsAnswered429BeyondTheArgonSlots) {
  // Real Argon2id cost (64 MiB, ~0.1 s a check), one check at a time.
  server::ServerOptions options;
  options.data_dir = fresh_data_dir();
  options.port = 0;
  options.max_concurrent_password_checks = 1;
  std::ostringstream announced;
  options.announce = &announced;
  server::ApiServer server(options);
  server.start();
  const auto statuses = in_parallel(12, [&](int i) {
    return sign_in(server.port(), "nobody" + std::to_string(i) + "@example.com", "guess guess")
        .status;
  });
  const auto busy = std::count(statuses.begin(), statuses.end(), 429);
  EXPECT_GT(busy, 0) << "twelve Argon2 checks ran at once";
  EXPECT_EQ(busy + std::count(statuses.begin(), statuses.end(), 401), 12);
  server.stop();
}

TEST(ServerHardening, SignInWantsJsonFromTheServersOwnPages) {
  TestServer server;
  first_account(server);
  const int port = server.server().port();
  const std::string body = R"({"email": "ada@example.com", "password": "correct horse battery"})";
  ApiClient anonymous(port, {});
  // A form or text/plain body is what another site's page can post without asking.
  EXPECT_EQ(anonymous.post_raw("/api/sessions", body, "text/plain").status, 415);
  EXPECT_EQ(anonymous.post_raw("/api/sessions", body, "application/x-www-form-urlencoded").status,
            415);
  const std::string own = "http://127.0.0.1:" + std::to_string(port);
  for (const auto& [header, value] :
       std::vector<std::pair<std::string, std::string>>{{"Origin", "http://evil.example"},
                                                        {"Origin", "null"},
                                                        {"Origin", own + ".evil.example"},
                                                        {"Referer", "http://evil.example/x"}}) {
    const Answer answer = ApiClient(port, {{header, value}}).post_raw("/api/sessions", body);
    EXPECT_EQ(answer.status, 403) << header << ": " << value << " " << answer.raw;
    EXPECT_EQ(answer.error_code(), "cross_origin");
  }
  EXPECT_EQ(ApiClient(port, {{"Origin", own}}).post_raw("/api/sessions", body).status, 200);
  EXPECT_EQ(ApiClient(port, {{"Referer", own + "/login"}}).post_raw("/api/sessions", body).status,
            200);
  // Behind a TLS proxy the cookies are Secure.
  const Answer over_tls =
      ApiClient(port, {{"X-Forwarded-Proto", "https"}}).post_raw("/api/sessions", body);
  ASSERT_EQ(over_tls.status, 200);
  bool secure = false;
  for (const auto& [name, value] : over_tls.headers)
    if (name == "Set-Cookie" && value.rfind("doppel_session=", 0) == 0)
      secure = value.find("; Secure") != std::string::npos;
  EXPECT_TRUE(secure);
}

TEST(ServerHardening, EventStreamsAreLimitedPerAccountAndEndWithTheirToken) {
  TestServer server;
  ApiClient alice = first_account(server);
  ApiClient bob = another_account(server, alice);
  const int port = server.server().port();
  const auto open_stream = [&](ApiClient& client) {
    auto socket = std::make_unique<RawSocket>(port);
    socket->send("GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " +
                 client.headers().find("Authorization")->second + "\r\n\r\n");
    return socket;
  };
  std::vector<std::unique_ptr<RawSocket>> streams;
  for (int i = 0; i < 4; ++i) {
    streams.push_back(open_stream(alice));
    EXPECT_EQ(status_of(streams.back()->receive_until("\r\n\r\n", 3000)), 200);
  }
  auto fifth = open_stream(alice);
  EXPECT_EQ(status_of(fifth->receive_until("\r\n\r\n", 3000)), 429);
  // Another account is not affected by Alice's streams.
  auto bobs = open_stream(bob);
  EXPECT_EQ(status_of(bobs->receive_until("\r\n\r\n", 3000)), 200);
  // Revoking the token that opened a stream ends it.
  const json tokens = bob.get("/api/tokens").body["tokens"];
  ASSERT_EQ(tokens.size(), 1u);
  EXPECT_EQ(bob.del("/api/tokens/" + tokens[0]["id"].get<std::string>()).status, 200);
  const std::string rest = bobs->receive_until("0\r\n\r\n", 5000);
  EXPECT_NE(rest.find("event: signed_out"), std::string::npos) << rest;
}

TEST(ServerHardening, PagesAndAnswersCarrySecurityHeadersAndOtherHostsAreRefused) {
  const auto web = fresh_data_dir();
  std::ofstream(web / "index.html") << "<!doctype html><title>studio</title>";
  server::ServerOptions options;
  options.web_dir = web;
  TestServer server(options);
  const int port = server.server().port();
  httplib::Client client("127.0.0.1", port);
  const auto api = client.Get("/api/health");
  ASSERT_TRUE(api);
  EXPECT_EQ(api->get_header_value("Cache-Control"), "no-store");
  EXPECT_EQ(api->get_header_value("X-Content-Type-Options"), "nosniff");
  const auto page = client.Get("/subjects/abc");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->get_header_value("Content-Security-Policy").find("frame-ancestors 'none'"),
            std::string::npos);
  EXPECT_EQ(page->get_header_value("X-Frame-Options"), "DENY");
  // DNS rebinding: a name of another site pointed at 127.0.0.1.
  const auto rebound =
      client.Get("/api/health", {{"Host", "evil.example:" + std::to_string(port)}});
  ASSERT_TRUE(rebound);
  EXPECT_EQ(rebound->status, 421);
  const auto local = client.Get("/api/health", {{"Host", "localhost:" + std::to_string(port)}});
  ASSERT_TRUE(local);
  EXPECT_EQ(local->status, 200);
}

TEST(ServerHardening, SpacesRepeatsAndCommonPasswordsAreRefusedWithTheReason) {
  TestServer server;
  ApiClient ada = first_account(server);
  const auto refusal = [&](const std::string& password) {
    const Answer answer =
        ada.post("/api/accounts", {{"email", "bob@example.com"}, {"password", password}});
    EXPECT_EQ(answer.status, 400) << password << ": " << answer.raw;
    return answer.body.is_object() ? answer.body["error"].value("message", "") : "";
  };
  EXPECT_NE(refusal("          ").find("only spaces"), std::string::npos);
  EXPECT_NE(refusal("zzzzzzzzzz").find("repeated"), std::string::npos);
  EXPECT_NE(refusal("Password1").find("most common"), std::string::npos);
  EXPECT_NE(refusal(" 12345678 ").find("most common"), std::string::npos);
  EXPECT_NE(refusal("short").find("8 characters"), std::string::npos);
  EXPECT_EQ(
      ada.post("/api/accounts", {{"email", "bob@example.com"}, {"password", "plum kettle orbit"}})
          .status,
      201);
}

TEST(ServerHardening, AFullDiskIsToldApartFromOtherFailures) {
  EXPECT_TRUE(server::is_disk_full(
      Error(ErrorCode::kIo, std::string("cannot write blobs/ab/x.tmp: ") + std::strerror(ENOSPC))));
  EXPECT_TRUE(server::is_disk_full(Error(ErrorCode::kIo, std::strerror(EDQUOT))));
  EXPECT_FALSE(server::is_disk_full(Error(ErrorCode::kIo, "cannot write x: Permission denied")));
  EXPECT_FALSE(server::is_disk_full(Error(ErrorCode::kInvalidFile, std::strerror(ENOSPC))));
}

TEST(ServerHardening, TheDataFolderIsTheOwnersOnly) {
  TestServer server;
  const auto permissions = std::filesystem::status(server.data_dir()).permissions();
  EXPECT_EQ(permissions, std::filesystem::perms::owner_all);
}

}  // namespace
}  // namespace doppel::test

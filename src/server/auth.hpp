// Secrets of the API: Argon2id password hashes, random tokens stored only as hashes, and
// the login rate limiter (per account and client address).
#pragma once
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>

#include "doppel/services/work_slots.hpp"

namespace doppel::server {

// Argon2id string (libsodium crypto_pwhash_str); `fast` uses the minimum cost (tests).
std::string hash_password(const std::string& password, bool fast);
bool verify_password(const std::string& password, const std::string& hash);

// 256 random bits as 64 hex characters (session cookies, API tokens, CSRF secrets).
std::string random_token();

// What the store keeps of a token: its sha256 (the token is random, so no stretching needed).
std::string token_hash(const std::string& token);

// Equal strings, compared in time independent of where they differ.
bool constant_time_equal(const std::string& a, const std::string& b);

// Counts failed sign-ins per key (account + client address) in a sliding window.
class LoginRateLimiter {
 public:
  LoginRateLimiter(int attempts, int64_t window_ms) : attempts_(attempts), window_ms_(window_ms) {}
  // Milliseconds until the next attempt is allowed; 0 when allowed now.
  int64_t retry_after_ms(const std::string& key, int64_t now);
  void record_failure(const std::string& key, int64_t now);
  // Checks and counts an attempt in one step (so attempts in parallel cannot all pass the
  // check before any is counted): 0 when allowed, and the attempt counts as a failure until
  // reset() says it succeeded; else the milliseconds to wait.
  int64_t begin_attempt(const std::string& key, int64_t now);
  void reset(const std::string& key);

 private:
  void prune(std::deque<int64_t>& failures, int64_t now) const;
  int attempts_;
  int64_t window_ms_;
  std::mutex mutex_;
  std::map<std::string, std::deque<int64_t>> failures_;
};

// A bound on the Argon2 work running at once (each check takes tens of MB and a core for a
// tenth of a second): requests beyond it are answered 429 instead of piling up.
using PasswordCheckSlots = services::WorkSlots;

}  // namespace doppel::server

#include "server/auth.hpp"

#include <sodium.h>

#include "doppel/core/error.hpp"
#include "doppel/store/blob_store.hpp"

namespace doppel::server {
namespace {

void ensure_sodium() {
  static const int ready = sodium_init();
  if (ready < 0) throw Error(ErrorCode::kInternal, "libsodium failed to initialise");
}

}  // namespace

std::string hash_password(const std::string& password, bool fast) {
  ensure_sodium();
  char hash[crypto_pwhash_STRBYTES];
  const unsigned long long ops =
      fast ? crypto_pwhash_OPSLIMIT_MIN : crypto_pwhash_OPSLIMIT_INTERACTIVE;
  const size_t memory = fast ? crypto_pwhash_MEMLIMIT_MIN : crypto_pwhash_MEMLIMIT_INTERACTIVE;
  if (crypto_pwhash_str_alg(hash, password.data(), password.size(), ops, memory,
                            crypto_pwhash_ALG_ARGON2ID13) != 0) {
    throw Error(ErrorCode::kInternal, "hashing the password ran out of memory");
  }
  return hash;
}

bool verify_password(const std::string& password, const std::string& hash) {
  ensure_sodium();
  return crypto_pwhash_str_verify(hash.c_str(), password.data(), password.size()) == 0;
}

std::string random_token() {
  ensure_sodium();
  unsigned char bytes[32];
  randombytes_buf(bytes, sizeof bytes);
  char hex[sizeof bytes * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, bytes, sizeof bytes);
  return hex;
}

std::string token_hash(const std::string& token) {
  return store::sha256_hex(token);
}

bool constant_time_equal(const std::string& a, const std::string& b) {
  ensure_sodium();
  if (a.size() != b.size()) return false;
  return a.empty() || sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

void LoginRateLimiter::prune(std::deque<int64_t>& failures, int64_t now) const {
  while (!failures.empty() && failures.front() <= now - window_ms_) failures.pop_front();
}

int64_t LoginRateLimiter::retry_after_ms(const std::string& key, int64_t now) {
  std::lock_guard lock(mutex_);
  auto it = failures_.find(key);
  if (it == failures_.end()) return 0;
  prune(it->second, now);
  if (static_cast<int>(it->second.size()) < attempts_) return 0;
  return it->second.front() + window_ms_ - now;
}

void LoginRateLimiter::record_failure(const std::string& key, int64_t now) {
  std::lock_guard lock(mutex_);
  auto& failures = failures_[key];
  prune(failures, now);
  failures.push_back(now);
  // Bounded memory: only the window's last `attempts_` failures matter.
  while (static_cast<int>(failures.size()) > attempts_) failures.pop_front();
}

int64_t LoginRateLimiter::begin_attempt(const std::string& key, int64_t now) {
  std::lock_guard lock(mutex_);
  auto& failures = failures_[key];
  prune(failures, now);
  if (static_cast<int>(failures.size()) >= attempts_) return failures.front() + window_ms_ - now;
  failures.push_back(now);
  return 0;
}

void LoginRateLimiter::reset(const std::string& key) {
  std::lock_guard lock(mutex_);
  failures_.erase(key);
}

}  // namespace doppel::server

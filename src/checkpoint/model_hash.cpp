#include "doppel/checkpoint/model_hash.hpp"

#include <sodium.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <vector>

#include "doppel/core/error.hpp"

namespace doppel {

std::string sha256_file_hex(const std::filesystem::path& path) {
  std::ifstream stream(path, std::ios::binary);
  if (!stream) throw Error(ErrorCode::kNotFound, "cannot open " + path.string() + " to hash it");
  crypto_hash_sha256_state state;
  crypto_hash_sha256_init(&state);
  std::vector<char> buffer(size_t{4} << 20);
  while (stream) {
    stream.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const auto count = stream.gcount();
    if (count > 0) {
      crypto_hash_sha256_update(&state, reinterpret_cast<const unsigned char*>(buffer.data()),
                                static_cast<unsigned long long>(count));
    }
  }
  if (stream.bad()) throw Error(ErrorCode::kIo, "read error while hashing " + path.string());
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256_final(&state, digest);
  std::string hex;
  char byte_hex[3];
  for (unsigned char byte : digest) {
    std::snprintf(byte_hex, sizeof(byte_hex), "%02x", byte);
    hex += byte_hex;
  }
  return hex;
}

std::string a1111_short_hash(const std::string& sha256_hex) {
  return sha256_hex.substr(0, 10);
}

std::string a1111_legacy_model_hash(const std::filesystem::path& path) {
  std::ifstream stream(path, std::ios::binary);
  if (!stream) throw Error(ErrorCode::kNotFound, "cannot open " + path.string() + " to hash it");
  std::vector<char> buffer(0x10000);
  stream.seekg(0x100000);
  size_t count = 0;
  if (stream) {
    stream.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    count = static_cast<size_t>(std::max<std::streamsize>(stream.gcount(), 0));
  }
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(buffer.data()), count);
  std::string hex;
  char byte_hex[3];
  for (size_t i = 0; i < 4; ++i) {
    std::snprintf(byte_hex, sizeof(byte_hex), "%02x", digest[i]);
    hex += byte_hex;
  }
  return hex;
}

}  // namespace doppel

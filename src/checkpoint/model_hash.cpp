#include "doppel/checkpoint/model_hash.hpp"

#include <sodium.h>

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

}  // namespace doppel

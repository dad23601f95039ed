#include "doppel/store/blob_store.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>

#include "doppel/core/atomic_file.hpp"
#include "doppel/core/error.hpp"

namespace doppel::store {
namespace {

// Encrypted file layout: magic (8) | nonce (24) | ciphertext with its 16-byte tag. The
// associated data is magic + the blob's name, so a file moved under another name fails too.
constexpr std::string_view kMagic = "DOPPELB1";
constexpr size_t kNonceSize = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
constexpr size_t kTagSize = crypto_aead_xchacha20poly1305_ietf_ABYTES;

void ensure_sodium() {
  if (sodium_init() < 0)
    throw Error(ErrorCode::kInternal, "libsodium failed to initialise (no entropy source?)");
}

void require_digest(const std::string& sha256) {
  if (!is_sha256_hex(sha256))
    throw Error(ErrorCode::kInvalidArgument,
                "'" + sha256.substr(0, 80) + "' is not a blob id (64 lowercase hex characters)");
}

bool has_magic(std::string_view bytes) {
  return bytes.size() >= kMagic.size() && bytes.substr(0, kMagic.size()) == kMagic;
}

std::string encrypt(std::string_view plaintext, const std::string& sha256,
                    const EncryptionKey& key) {
  std::string associated = std::string(kMagic) + sha256;
  std::string out(kMagic.size() + kNonceSize + plaintext.size() + kTagSize, '\0');
  auto* bytes = reinterpret_cast<unsigned char*>(out.data());
  std::memcpy(bytes, kMagic.data(), kMagic.size());
  unsigned char* nonce = bytes + kMagic.size();
  randombytes_buf(nonce, kNonceSize);
  unsigned long long written = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(
      nonce + kNonceSize, &written, reinterpret_cast<const unsigned char*>(plaintext.data()),
      plaintext.size(), reinterpret_cast<const unsigned char*>(associated.data()),
      associated.size(), nullptr, nonce, key.bytes().data());
  out.resize(kMagic.size() + kNonceSize + written);
  return out;
}

std::optional<std::string> decrypt(std::string_view file, const std::string& sha256,
                                   const EncryptionKey& key) {
  if (file.size() < kMagic.size() + kNonceSize + kTagSize) return std::nullopt;
  std::string associated = std::string(kMagic) + sha256;
  auto* nonce = reinterpret_cast<const unsigned char*>(file.data()) + kMagic.size();
  const unsigned char* ciphertext = nonce + kNonceSize;
  size_t ciphertext_size = file.size() - kMagic.size() - kNonceSize;
  std::string plaintext(ciphertext_size - kTagSize, '\0');
  unsigned long long written = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          reinterpret_cast<unsigned char*>(plaintext.data()), &written, nullptr, ciphertext,
          ciphertext_size, reinterpret_cast<const unsigned char*>(associated.data()),
          associated.size(), nonce, key.bytes().data()) != 0)
    return std::nullopt;
  plaintext.resize(written);
  return plaintext;
}

}  // namespace

std::string sha256_hex(std::string_view bytes) {
  ensure_sodium();
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  char hex[sizeof digest * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
  return std::string(hex, sizeof digest * 2);
}

bool is_sha256_hex(std::string_view text) {
  if (text.size() != 64) return false;
  for (char c : text)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

// --- EncryptionKey ---

EncryptionKey::~EncryptionKey() {
  sodium_memzero(bytes_.data(), bytes_.size());
}

EncryptionKey EncryptionKey::load(const std::filesystem::path& key_file) {
  ensure_sodium();
  struct stat info {};
  if (::stat(key_file.c_str(), &info) != 0)
    throw Error(ErrorCode::kNotFound, "encryption key file not found: " + key_file.string());
  if (info.st_mode & (S_IRWXG | S_IRWXO))
    throw Error(ErrorCode::kInvalidFile, "the encryption key file " + key_file.string() +
                                             " is readable by other users; run: chmod 600 " +
                                             key_file.string());
  std::string text = read_file(key_file);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' '))
    text.pop_back();
  EncryptionKey key;
  size_t decoded = 0;
  if (text.size() != kSize * 2 ||
      sodium_hex2bin(key.bytes_.data(), key.bytes_.size(), text.data(), text.size(), nullptr,
                     &decoded, nullptr) != 0 ||
      decoded != kSize) {
    sodium_memzero(text.data(), text.size());
    throw Error(ErrorCode::kInvalidFile, "the encryption key file " + key_file.string() +
                                             " must hold 64 hex characters (a 256-bit key)");
  }
  sodium_memzero(text.data(), text.size());
  return key;
}

EncryptionKey EncryptionKey::create(const std::filesystem::path& key_file) {
  ensure_sodium();
  std::error_code status;
  if (key_file.has_parent_path())
    std::filesystem::create_directories(key_file.parent_path(), status);
  int fd = ::open(key_file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    throw Error(
        errno == EEXIST ? ErrorCode::kInvalidArgument : ErrorCode::kIo,
        "cannot create the encryption key file " + key_file.string() + ": " + std::strerror(errno));
  EncryptionKey key;
  randombytes_buf(key.bytes_.data(), key.bytes_.size());
  char hex[kSize * 2 + 2];
  sodium_bin2hex(hex, kSize * 2 + 1, key.bytes_.data(), key.bytes_.size());
  hex[kSize * 2] = '\n';
  bool written =
      ::write(fd, hex, sizeof hex - 1) == static_cast<ssize_t>(sizeof hex - 1) && ::fsync(fd) == 0;
  sodium_memzero(hex, sizeof hex);
  ::close(fd);
  if (!written) {
    ::unlink(key_file.c_str());
    throw Error(ErrorCode::kIo, "cannot write the encryption key file " + key_file.string());
  }
  return key;
}

EncryptionKey EncryptionKey::load_or_create(const std::filesystem::path& key_file) {
  if (std::filesystem::exists(key_file)) return load(key_file);
  return create(key_file);
}

// --- BlobStore ---

struct BlobStore::UsageTally {
  std::mutex mutex;
  bool counted = false;
  BlobUsage usage;

  void add(uint64_t bytes) {
    std::lock_guard lock(mutex);
    usage.bytes_written += bytes;
    if (counted) usage.bytes += bytes;
  }
  void subtract(uint64_t bytes) {
    std::lock_guard lock(mutex);
    usage.bytes_removed += bytes;
    if (counted) usage.bytes -= std::min(bytes, usage.bytes);
  }
};

BlobStore::BlobStore(std::filesystem::path root, std::optional<EncryptionKey> key)
    : root_(std::move(root)), key_(std::move(key)) {
  ensure_sodium();
  std::error_code status;
  std::filesystem::create_directories(root_, status);
  if (status)
    throw Error(ErrorCode::kIo,
                "cannot create the blob folder " + root_.string() + ": " + status.message());
  // One tally per folder, found by its canonical path, however many stores open it.
  static std::mutex tallies_mutex;
  static std::map<std::string, std::weak_ptr<UsageTally>> tallies;
  const std::string folder = std::filesystem::weakly_canonical(root_).string();
  std::lock_guard lock(tallies_mutex);
  tally_ = tallies[folder].lock();
  if (!tally_) {
    tally_ = std::make_shared<UsageTally>();
    tallies[folder] = tally_;
  }
}

BlobStore BlobStore::open(const std::filesystem::path& data_dir,
                          const std::optional<std::filesystem::path>& key_file, bool create_key) {
  std::optional<EncryptionKey> key;
  if (key_file) {
    std::filesystem::path data = std::filesystem::weakly_canonical(data_dir);
    std::filesystem::path file = std::filesystem::weakly_canonical(*key_file);
    auto [data_end, file_it] = std::mismatch(data.begin(), data.end(), file.begin(), file.end());
    if (data_end == data.end())
      throw Error(ErrorCode::kInvalidArgument,
                  "the encryption key file " + key_file->string() + " is inside the data folder " +
                      data_dir.string() +
                      "; keep it elsewhere so a copy of the data does not carry its key");
    key = create_key ? EncryptionKey::load_or_create(*key_file) : EncryptionKey::load(*key_file);
  }
  return BlobStore(data_dir / "blobs", std::move(key));
}

std::filesystem::path BlobStore::path_of(const std::string& sha256) const {
  require_digest(sha256);
  return root_ / sha256.substr(0, 2) / sha256.substr(2);
}

std::string BlobStore::put(std::string_view bytes) {
  std::string sha256 = sha256_hex(bytes);
  std::filesystem::path path = path_of(sha256);
  if (std::filesystem::exists(path)) return sha256;
  std::string file = key_ ? encrypt(bytes, sha256, *key_) : std::string();
  std::string_view contents = key_ ? std::string_view(file) : bytes;
  // A concurrent remove() may delete the empty two-character folder between our
  // create_directories and the write: create it again and retry once.
  for (int attempt = 0;; ++attempt) {
    std::error_code status;
    std::filesystem::create_directories(path.parent_path(), status);
    if (status)
      throw Error(ErrorCode::kIo, "cannot create the blob folder " + path.parent_path().string() +
                                      ": " + status.message());
    try {
      write_file_atomically(path, contents);
      tally_->add(contents.size());
      return sha256;
    } catch (const Error&) {
      if (attempt > 0 || std::filesystem::exists(path.parent_path())) throw;
    }
  }
}

std::string BlobStore::get(const std::string& sha256) const {
  std::filesystem::path path = path_of(sha256);
  if (!std::filesystem::exists(path))
    throw Error(ErrorCode::kNotFound, "blob " + sha256 + " not found in " + root_.string());
  std::string file = read_file(path);
  if (has_magic(file)) {
    if (key_) {
      if (std::optional<std::string> plaintext = decrypt(file, sha256, *key_);
          plaintext && sha256_hex(*plaintext) == sha256)
        return std::move(*plaintext);
    }
    // A plaintext blob may start with the magic by chance; its digest tells.
    if (sha256_hex(file) == sha256) return file;
    if (!key_)
      throw Error(ErrorCode::kInvalidFile,
                  "blob " + sha256 +
                      " is encrypted but no key was given; start doppel with "
                      "its encryption key file");
    throw Error(ErrorCode::kInvalidFile, "blob " + sha256 +
                                             " failed authentication: it was modified on disk or "
                                             "encrypted with another key (" +
                                             path.string() + ")");
  }
  if (sha256_hex(file) != sha256)
    throw Error(ErrorCode::kInvalidFile, "blob " + sha256 +
                                             " does not match its digest: the file was modified "
                                             "or corrupted (" +
                                             path.string() + ")");
  return file;
}

bool BlobStore::exists(const std::string& sha256) const {
  return std::filesystem::is_regular_file(path_of(sha256));
}

uint64_t BlobStore::size_on_disk(const std::string& sha256) const {
  std::error_code status;
  const uintmax_t size = std::filesystem::file_size(path_of(sha256), status);
  return status ? 0 : static_cast<uint64_t>(size);
}

bool BlobStore::remove(const std::string& sha256) {
  std::filesystem::path path = path_of(sha256);
  std::error_code status;
  const uintmax_t size = std::filesystem::file_size(path, status);
  const bool removed = std::filesystem::remove(path, status);
  if (status)
    throw Error(ErrorCode::kIo, "cannot delete blob " + path.string() + ": " + status.message());
  if (removed) tally_->subtract(static_cast<uint64_t>(size));
  // Drop the two-character folder once empty so a deleted subject leaves no trace.
  std::filesystem::remove(path.parent_path(), status);
  return removed;
}

std::vector<std::string> BlobStore::list() const {
  std::vector<std::string> digests;
  std::error_code status;
  for (auto it = std::filesystem::recursive_directory_iterator(root_, status);
       !status && it != std::filesystem::recursive_directory_iterator(); it.increment(status)) {
    if (!it->is_regular_file()) continue;
    // Folder "ab" + file "cdef...". Copied, not moved, into the vector: moving trips
    // GCC 12's -Warray-bounds false positive.
    std::string digest = it->path().parent_path().filename().string();
    digest += it->path().filename().string();
    if (is_sha256_hex(digest)) digests.push_back(digest);
  }
  std::sort(digests.begin(), digests.end());
  return digests;
}

uint64_t BlobStore::total_size() const {
  uint64_t total = 0;
  std::error_code status;
  for (auto it = std::filesystem::recursive_directory_iterator(root_, status);
       !status && it != std::filesystem::recursive_directory_iterator(); it.increment(status)) {
    if (!it->is_regular_file()) continue;
    std::string name = it->path().filename().string();
    if (name.size() != 62 || name[0] == '.') continue;  // skips temp files of interrupted puts
    total += it->file_size();
  }
  return total;
}

BlobUsage BlobStore::usage() const {
  std::lock_guard lock(tally_->mutex);
  if (!tally_->counted) {
    tally_->usage.bytes = total_size();
    tally_->counted = true;
  }
  return tally_->usage;
}

}  // namespace doppel::store

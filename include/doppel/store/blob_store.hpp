// Content-addressed blob store: <root>/ab/cdef... named by the sha256 of the plaintext,
// written atomically, optionally encrypted at rest (XChaCha20-Poly1305, libsodium). Names
// never come from clients: the only way in is put(bytes), which returns the digest.
#pragma once
#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace doppel::store {

// sha256 of `bytes` as 64 lowercase hex characters.
std::string sha256_hex(std::string_view bytes);

// True for exactly 64 lowercase hex characters (the only names the blob store accepts).
bool is_sha256_hex(std::string_view text);

// A 256-bit key for encryption at rest; wiped from memory on destruction.
class EncryptionKey {
 public:
  static constexpr size_t kSize = 32;
  // Reads a key file (64 hex characters). Refuses a file readable by group or others.
  static EncryptionKey load(const std::filesystem::path& key_file);
  // Creates a new random key file with mode 0600; throws if the file already exists.
  static EncryptionKey create(const std::filesystem::path& key_file);
  // load() when the file exists, else create().
  static EncryptionKey load_or_create(const std::filesystem::path& key_file);

  EncryptionKey(const EncryptionKey& other) = default;
  EncryptionKey& operator=(const EncryptionKey& other) = default;
  ~EncryptionKey();
  const std::array<unsigned char, kSize>& bytes() const { return bytes_; }

 private:
  EncryptionKey() = default;
  std::array<unsigned char, kSize> bytes_{};
};

// What a blob folder holds, for monitoring.
struct BlobUsage {
  uint64_t bytes = 0;          // on disk now (after encryption overhead)
  uint64_t bytes_written = 0;  // by this process's puts since the folder was first counted
  uint64_t bytes_removed = 0;  // by this process's removes since then
};

class BlobStore {
 public:
  // Blobs live under `root` (usually <data>/blobs), created if absent. With a key, new blobs
  // are encrypted, and reading a blob written without encryption still works (its digest is
  // verified). Without a key, reading an encrypted blob is an error that says so.
  explicit BlobStore(std::filesystem::path root, std::optional<EncryptionKey> key = std::nullopt);

  // For a data directory: blobs in <data_dir>/blobs; when `key_file` is given it must lie
  // outside data_dir (a backup of the data alone must not hold the key) and is created
  // (0600) if absent and `create_key` is set.
  static BlobStore open(const std::filesystem::path& data_dir,
                        const std::optional<std::filesystem::path>& key_file = std::nullopt,
                        bool create_key = false);

  // Stores `bytes` and returns their sha256; storing the same bytes again is a no-op.
  std::string put(std::string_view bytes);

  // The plaintext of a blob. Throws doppel::Error: kNotFound when absent, kInvalidFile when
  // the file was tampered with, is corrupt, or was encrypted with another key.
  std::string get(const std::string& sha256) const;

  bool exists(const std::string& sha256) const;

  // Bytes on disk of one blob (with any encryption overhead); 0 when it is not there.
  uint64_t size_on_disk(const std::string& sha256) const;

  // Deletes a blob; false when it was not there.
  bool remove(const std::string& sha256);

  // Every stored digest, sorted. For garbage collection against
  // Repository::referenced_blobs(); a blob put moments ago may not have its row yet, so
  // collect only files older than the longest upload.
  std::vector<std::string> list() const;

  // Bytes on disk of all blobs (after encryption overhead), by walking the folder.
  uint64_t total_size() const;

  // The folder's usage without walking it: walked once, the first time any BlobStore of this
  // process on the same folder is asked, then kept by their put() and remove(). Blobs another
  // process (a separate `doppel worker`) writes show up after the next restart.
  BlobUsage usage() const;

  // Where a blob lives (for tests and diagnostics); validates the digest.
  std::filesystem::path path_of(const std::string& sha256) const;

  bool encrypted() const { return key_.has_value(); }
  const std::filesystem::path& root() const { return root_; }

 private:
  struct UsageTally;
  std::filesystem::path root_;
  std::optional<EncryptionKey> key_;
  std::shared_ptr<UsageTally> tally_;  // shared by every BlobStore of the process on root_
};

}  // namespace doppel::store

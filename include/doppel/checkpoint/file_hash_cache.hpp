// Files' sha256 remembered by path, size and modification time, as AUTOMATIC1111 keeps them in
// its cache.json: hashing a 2 GB model takes seconds, and the hash is only needed for the
// image metadata ("Model hash", "Lora hashes").
#pragma once
#include <filesystem>
#include <map>
#include <mutex>
#include <string>

namespace doppel {

class FileHashCache {
 public:
  // `store`: a JSON file kept between runs (read now, rewritten atomically when a hash is
  // added); empty: remembered by this object only. An unreadable or damaged store is logged and
  // started afresh; one that cannot be written is logged, and the hashes are still returned.
  explicit FileHashCache(std::filesystem::path store = {});

  // The lowercase hex sha256 of the file at `path` (throws what sha256_file_hex throws).
  std::string sha256(const std::filesystem::path& path);

 private:
  struct Entry {
    uintmax_t size = 0;
    int64_t modified = 0;  // the file time's ticks
    std::string sha256;
  };
  void read_store();
  void write_store();

  std::filesystem::path store_;
  std::mutex mutex_;
  std::map<std::string, Entry> entries_;  // by absolute path
};

}  // namespace doppel

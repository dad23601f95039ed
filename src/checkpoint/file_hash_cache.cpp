#include "doppel/checkpoint/file_hash_cache.hpp"

#include <nlohmann/json.hpp>

#include "doppel/checkpoint/model_hash.hpp"
#include "doppel/core/atomic_file.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/log.hpp"

namespace doppel {

namespace {

constexpr int kStoreVersion = 1;

}  // namespace

FileHashCache::FileHashCache(std::filesystem::path store) : store_(std::move(store)) {
  if (!store_.empty()) read_store();
}

std::string FileHashCache::sha256(const std::filesystem::path& path) {
  std::error_code error;
  const std::filesystem::path absolute = std::filesystem::absolute(path, error);
  const std::string key = (error ? path : absolute.lexically_normal()).string();
  const uintmax_t size = std::filesystem::file_size(path, error);
  if (error) return sha256_file_hex(path);  // throws, naming the file
  const int64_t modified = std::filesystem::last_write_time(path).time_since_epoch().count();
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    const auto found = entries_.find(key);
    if (found != entries_.end() && found->second.size == size && found->second.modified == modified)
      return found->second.sha256;
  }
  Entry entry{size, modified, sha256_file_hex(path)};
  const std::lock_guard<std::mutex> lock(mutex_);
  if (!store_.empty()) read_store();  // keeps what other processes added meanwhile
  entries_[key] = entry;
  if (!store_.empty()) write_store();
  return entry.sha256;
}

void FileHashCache::read_store() {
  if (!std::filesystem::exists(store_)) return;
  try {
    const nlohmann::json json = nlohmann::json::parse(read_file(store_));
    if (json.value("version", 0) != kStoreVersion) return;
    for (const auto& [path, item] : json.at("files").items()) {
      Entry entry{item.at("size").get<uintmax_t>(), item.at("modified").get<int64_t>(),
                  item.at("sha256").get<std::string>()};
      if (entry.sha256.size() == 64) entries_.emplace(path, std::move(entry));
    }
  } catch (const std::exception& error) {
    log_warning("file hashes " + store_.string() + " could not be read (" + error.what() +
                "); the hashes are computed again");
  }
}

void FileHashCache::write_store() {
  nlohmann::json files = nlohmann::json::object();
  for (const auto& [path, entry] : entries_)
    files[path] = {{"size", entry.size}, {"modified", entry.modified}, {"sha256", entry.sha256}};
  try {
    if (store_.has_parent_path()) std::filesystem::create_directories(store_.parent_path());
    write_file_atomically(store_,
                          nlohmann::json{{"version", kStoreVersion}, {"files", files}}.dump(1));
  } catch (const std::exception& error) {
    log_warning("file hashes could not be kept in " + store_.string() + ": " + error.what());
  }
}

}  // namespace doppel

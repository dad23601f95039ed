#include "doppel/store/blob_garbage.hpp"

#include <algorithm>
#include <chrono>
#include <filesystem>

namespace doppel::store {

std::vector<std::string> remove_unreferenced_blobs(Repository& repository, BlobStore& blobs,
                                                   int64_t min_age_ms) {
  // Files first, references second: a blob written after the listing is not a candidate,
  // and one whose row commits in between is found referenced.
  std::vector<std::string> stored = blobs.list();
  std::vector<std::string> referenced = repository.referenced_blobs();  // sorted
  auto cutoff =
      std::filesystem::file_time_type::clock::now() - std::chrono::milliseconds(min_age_ms);
  std::vector<std::string> removed;
  for (const std::string& digest : stored) {
    if (std::binary_search(referenced.begin(), referenced.end(), digest)) continue;
    std::error_code status;
    auto modified = std::filesystem::last_write_time(blobs.path_of(digest), status);
    if (status || modified > cutoff) continue;
    if (blobs.remove(digest)) removed.push_back(digest);
  }
  return removed;
}

}  // namespace doppel::store

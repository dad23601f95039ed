// Removing blob files that no row references: what a crash between committing a deletion
// and deleting its files, or between writing an upload and committing its row, leaves.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "doppel/store/blob_store.hpp"
#include "doppel/store/repository.hpp"

namespace doppel::store {

// Deletes the blobs that no row references and whose file is older than `min_age_ms` (so an
// upload still on its way to the database is spared). Returns the removed digests.
std::vector<std::string> remove_unreferenced_blobs(Repository& repository, BlobStore& blobs,
                                                   int64_t min_age_ms);

}  // namespace doppel::store

// Atomic file writes: the target is either the old file or the complete new
// one, never a truncated mix (temp file in the same folder, fsync, rename).
#pragma once
#include <filesystem>
#include <string_view>

namespace doppel {

void write_file_atomically(const std::filesystem::path& path, std::string_view bytes);

// Reads a whole file; throws doppel::Error (kNotFound / kIo) naming the path.
std::string read_file(const std::filesystem::path& path);

}  // namespace doppel

// Model hashes as AUTOMATIC1111 writes them into image metadata ("Model hash").
#pragma once
#include <filesystem>
#include <string>

namespace doppel {

// Lowercase hex sha256 of a whole file (streamed; about 0.7 s per GB with SHA instructions).
std::string sha256_file_hex(const std::filesystem::path& path);

// A1111's current short hash: the first 10 hex digits of the file's sha256
// (the "sha256" hash, not the legacy 8-digit hash of 64 KiB at offset 1 MiB).
std::string a1111_short_hash(const std::string& sha256_hex);

// A1111's legacy 8-digit hash (sha256 of the 64 KiB at offset 1 MiB; of nothing for smaller
// files), which the ControlNet extension still shows as "model_name [hash]".
std::string a1111_legacy_model_hash(const std::filesystem::path& path);

}  // namespace doppel

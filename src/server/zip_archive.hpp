// A zip archive written as it goes, every file "stored" (method 0, kept as it is): what a
// download of already-compressed PNGs needs. Plain zip without zip64, so at most
// kMaxZipFiles files and kMaxZipBytes bytes in all (PKWARE APPNOTE 6.3, sections 4.3-4.4).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace doppel::server {

// 0xFFFF and 0xFFFFFFFF would mean "see the zip64 record", so both stay below them.
inline constexpr size_t kMaxZipFiles = 0xFFFE;
inline constexpr uint64_t kMaxZipBytes = 0xFFFFFFFEull;  // just under 4 GiB

// The exact size of a stored archive of `files` files whose names and contents add up to
// `name_bytes` and `data_bytes` (for refusing one that cannot be written before starting).
uint64_t stored_zip_size(uint64_t files, uint64_t name_bytes, uint64_t data_bytes);

class ZipWriter {
 public:
  // Receives the archive piece by piece; returns false to stop (the reader went away).
  using Sink = std::function<bool(std::string_view)>;

  // `max_bytes` (at most kMaxZipBytes) caps the whole archive.
  explicit ZipWriter(Sink sink, uint64_t max_bytes = kMaxZipBytes);

  // Writes one file: `name` uses '/' between folders; `modified_ms` (Unix milliseconds)
  // becomes its DOS date and time (UTC). Throws doppel::Error (kInvalidArgument) for an
  // empty, absolute or ".." name, and when the archive would pass the file count or
  // max_bytes (nothing of that file is written then). False when the sink said stop.
  bool add(const std::string& name, std::string_view bytes, int64_t modified_ms);

  // Writes the central directory and its end record; the archive is then complete.
  bool finish();

  uint64_t bytes_written() const { return written_; }
  size_t files() const { return files_; }

 private:
  bool emit(std::string_view bytes);

  Sink sink_;
  uint64_t max_bytes_;
  uint64_t written_ = 0;
  std::string directory_;  // central directory headers of the files so far
  size_t files_ = 0;
  bool stopped_ = false;
  bool finished_ = false;
};

}  // namespace doppel::server

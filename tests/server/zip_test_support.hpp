// Reading a stored zip back for tests: from the end record to the central directory and from
// each directory entry to its local header, expecting every duplicated field to agree.
#pragma once
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdint>
#include <string>
#include <vector>

namespace doppel::test {

inline uint32_t read16(const std::string& bytes, size_t at) {
  return static_cast<uint8_t>(bytes.at(at)) | (static_cast<uint8_t>(bytes.at(at + 1)) << 8);
}

inline uint32_t read32(const std::string& bytes, size_t at) {
  return read16(bytes, at) | (read16(bytes, at + 2) << 16);
}

inline uint32_t zlib_crc(const std::string& data) {
  return static_cast<uint32_t>(
      crc32(0, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size())));
}

struct ReadEntry {
  std::string name;
  std::string data;
  uint32_t crc = 0;
  uint16_t dos_time = 0;
  uint16_t dos_date = 0;
};

// The files of a stored archive, in directory order.
inline std::vector<ReadEntry> read_zip(const std::string& zip) {
  EXPECT_GE(zip.size(), 22u);
  const size_t end = zip.size() - 22;
  EXPECT_EQ(read32(zip, end), 0x06054b50u);
  const uint32_t count = read16(zip, end + 10);
  EXPECT_EQ(read16(zip, end + 8), count);
  const uint32_t directory_size = read32(zip, end + 12);
  const uint32_t directory_offset = read32(zip, end + 16);
  EXPECT_EQ(directory_offset + directory_size, end);
  std::vector<ReadEntry> entries;
  size_t at = directory_offset;
  for (uint32_t i = 0; i < count; ++i) {
    EXPECT_EQ(read32(zip, at), 0x02014b50u);
    EXPECT_EQ(read16(zip, at + 10), 0u) << "method: stored";
    ReadEntry entry;
    entry.dos_time = static_cast<uint16_t>(read16(zip, at + 12));
    entry.dos_date = static_cast<uint16_t>(read16(zip, at + 14));
    entry.crc = read32(zip, at + 16);
    const uint32_t compressed = read32(zip, at + 20);
    const uint32_t size = read32(zip, at + 24);
    EXPECT_EQ(compressed, size);
    const uint32_t name_length = read16(zip, at + 28);
    const uint32_t extra = read16(zip, at + 30);
    const uint32_t comment = read16(zip, at + 32);
    const uint32_t local = read32(zip, at + 42);
    entry.name = zip.substr(at + 46, name_length);
    at += 46 + name_length + extra + comment;

    EXPECT_EQ(read32(zip, local), 0x04034b50u);
    EXPECT_EQ(read16(zip, local + 8), 0u);
    EXPECT_EQ(read16(zip, local + 10), entry.dos_time);
    EXPECT_EQ(read16(zip, local + 12), entry.dos_date);
    EXPECT_EQ(read32(zip, local + 14), entry.crc);
    EXPECT_EQ(read32(zip, local + 18), size);
    EXPECT_EQ(read32(zip, local + 22), size);
    const uint32_t local_name = read16(zip, local + 26);
    const uint32_t local_extra = read16(zip, local + 28);
    EXPECT_EQ(zip.substr(local + 30, local_name), entry.name);
    entry.data = zip.substr(local + 30 + local_name + local_extra, size);
    entries.push_back(std::move(entry));
  }
  EXPECT_EQ(at, end);
  return entries;
}

}  // namespace doppel::test

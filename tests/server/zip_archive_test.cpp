// The zip writer of the shoot download: archives are read back here field by field (local
// headers, central directory, end record, CRC-32 against zlib), checked by Info-ZIP's unzip
// where it is installed, and refused when they would outgrow zip without zip64.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "doppel/core/error.hpp"
#include "server/server_test_support.hpp"
#include "server/zip_archive.hpp"
#include "server/zip_test_support.hpp"

namespace doppel::server {
namespace {

using test::read_zip;
using test::ReadEntry;
using test::zlib_crc;

std::string write_zip(const std::vector<std::pair<std::string, std::string>>& files,
                      int64_t modified_ms = 0) {
  std::string zip;
  ZipWriter writer([&](std::string_view bytes) {
    zip.append(bytes);
    return true;
  });
  for (const auto& [name, data] : files) EXPECT_TRUE(writer.add(name, data, modified_ms));
  EXPECT_TRUE(writer.finish());
  EXPECT_EQ(writer.bytes_written(), zip.size());
  return zip;
}

std::string binary_bytes(size_t size) {
  std::string bytes(size, '\0');
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>((i * 131 + 7) % 256);
  return bytes;
}

TEST(ZipArchive, FilesReadBackWithTheirNamesBytesAndZlibCrc) {
  const std::vector<std::pair<std::string, std::string>> files = {
      {"01-business_headshot-a.png", test::synthetic_png()},
      {"empty.txt", ""},
      {"folder/binary.bin", binary_bytes(70'000)},
  };
  // 2024-03-05 14:07:09 UTC
  const std::string zip = write_zip(files, 1709647629'000);
  uint64_t name_bytes = 0;
  uint64_t data_bytes = 0;
  for (const auto& [name, data] : files) {
    name_bytes += name.size();
    data_bytes += data.size();
  }
  EXPECT_EQ(zip.size(), stored_zip_size(files.size(), name_bytes, data_bytes));
  const std::vector<ReadEntry> entries = read_zip(zip);
  ASSERT_EQ(entries.size(), files.size());
  for (size_t i = 0; i < files.size(); ++i) {
    EXPECT_EQ(entries[i].name, files[i].first);
    EXPECT_EQ(entries[i].data, files[i].second);
    EXPECT_EQ(entries[i].crc, zlib_crc(files[i].second)) << files[i].first;
    EXPECT_EQ(entries[i].dos_date, ((2024 - 1980) << 9) | (3 << 5) | 5);
    EXPECT_EQ(entries[i].dos_time, (14 << 11) | (7 << 5) | (9 / 2));
  }
  EXPECT_EQ(zlib_crc("123456789"), 0xCBF43926u);  // the CRC-32 check value
}

TEST(ZipArchive, AnEmptyArchiveIsJustTheEndRecord) {
  const std::string zip = write_zip({});
  EXPECT_EQ(zip.size(), 22u);
  EXPECT_TRUE(read_zip(zip).empty());
}

TEST(ZipArchive, InfoZipUnzipTestsTheArchiveClean) {
  if (std::system("command -v unzip > /dev/null 2>&1") != 0)
    GTEST_SKIP() << "Info-ZIP unzip is not installed (apt-get install unzip)";
  const std::filesystem::path folder = test::fresh_data_dir();
  const std::filesystem::path path = folder / "shoot.zip";
  {
    std::ofstream file(path, std::ios::binary);
    file << write_zip({{"01-anime-x.png", test::synthetic_png(40, 30)},
                       {"02-anime-y.png", test::synthetic_png(20, 10, 30)},
                       {"03-noir-z.bin", binary_bytes(1 << 20)}},
                      1'700'000'000'000);
  }
  const std::string command =
      "unzip -tq '" + path.string() + "' > '" + (folder / "unzip.log").string() + "' 2>&1";
  EXPECT_EQ(std::system(command.c_str()), 0) << std::ifstream(folder / "unzip.log").rdbuf();
}

TEST(ZipArchive, UnsafeNamesAreRefused) {
  ZipWriter writer([](std::string_view) { return true; });
  const std::vector<std::string> names = {"",          "/etc/passwd", "../up.png",
                                          "a/../../b", "a\\b.png",    std::string("a\0b", 3)};
  for (const std::string& name : names) {
    try {
      writer.add(name, "x", 0);
      ADD_FAILURE() << "accepted '" << name << "'";
    } catch (const Error& error) {
      EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument) << name;
    }
  }
  EXPECT_EQ(writer.files(), 0u);
  EXPECT_EQ(writer.bytes_written(), 0u);
  EXPECT_TRUE(writer.add("a..b/..c.png", "x", 0));  // dots inside a name are fine
}

TEST(ZipArchive, AnArchivePastItsSizeLimitIsRefusedBeforeTheFileIsWritten) {
  std::string zip;
  // Room for one 100-byte file with a 5-byte name, not for a second.
  ZipWriter writer(
      [&](std::string_view bytes) {
        zip.append(bytes);
        return true;
      },
      stored_zip_size(1, 5, 100) + 10);
  EXPECT_TRUE(writer.add("a.png", std::string(100, 'a'), 0));
  const size_t before = zip.size();
  try {
    writer.add("b.png", std::string(100, 'b'), 0);
    ADD_FAILURE() << "the second file does not fit";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(error.what()).find("zip64"), std::string::npos) << error.what();
  }
  EXPECT_EQ(zip.size(), before);
  EXPECT_TRUE(writer.finish());
  ASSERT_EQ(read_zip(zip).size(), 1u);
}

TEST(ZipArchive, AtMost65534FilesFitWithoutZip64) {
  uint64_t written = 0;
  ZipWriter writer([&](std::string_view bytes) {
    written += bytes.size();
    return true;
  });
  for (size_t i = 0; i < kMaxZipFiles; ++i) ASSERT_TRUE(writer.add("f", "", 0));
  EXPECT_THROW(writer.add("f", "", 0), Error);
  EXPECT_TRUE(writer.finish());
  EXPECT_EQ(written, stored_zip_size(kMaxZipFiles, kMaxZipFiles, 0));
}

TEST(ZipArchive, AReaderThatGoesAwayStopsTheWriting) {
  int calls = 0;
  ZipWriter writer([&](std::string_view) { return ++calls < 2; });
  EXPECT_FALSE(writer.add("a.png", "data", 0));  // header accepted, data refused
  EXPECT_FALSE(writer.add("b.png", "data", 0));
  EXPECT_FALSE(writer.finish());
  EXPECT_EQ(calls, 2);
}

}  // namespace
}  // namespace doppel::server

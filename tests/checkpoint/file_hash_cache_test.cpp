// Files' sha256 kept between runs (A1111's cache.json): a hash is read back while the file's
// size and time stay the same, computed again when either changes, and a damaged or
// unwritable store costs only the time to hash.
#include "doppel/checkpoint/file_hash_cache.hpp"

#include <gtest/gtest.h>

#include <fstream>

#include "doppel/checkpoint/model_hash.hpp"
#include "doppel/core/atomic_file.hpp"
#include "doppel/core/error.hpp"
#include "support/temp_folder.hpp"

namespace doppel {
namespace {

namespace fs = std::filesystem;

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

TEST(FileHashCache, AHashIsKeptBetweenRunsWhileTheFileKeepsItsSizeAndTime) {
  const fs::path folder = test::temp_folder("file_hash_cache");
  const fs::path model = folder / "model.safetensors";
  const fs::path store = folder / "cache" / "file_hashes.json";
  write_text(model, "first weights");
  const std::string first = sha256_file_hex(model);
  EXPECT_EQ(FileHashCache(store).sha256(model), first);
  ASSERT_TRUE(fs::exists(store));

  // Same size and time, other bytes: a new cache (a new run) answers from the store without
  // reading the file, as A1111 does; that is how it saves the seconds a model takes to hash.
  const auto time = fs::last_write_time(model);
  write_text(model, "other weights");
  fs::last_write_time(model, time);
  FileHashCache next_run(store);
  EXPECT_EQ(next_run.sha256(model), first);

  // A new time (or size) is a new file.
  fs::last_write_time(model, time + std::chrono::seconds(5));
  EXPECT_EQ(next_run.sha256(model), sha256_file_hex(model));
  EXPECT_NE(next_run.sha256(model), first);
  EXPECT_EQ(FileHashCache(store).sha256(model), sha256_file_hex(model));

  // Two files, relative and absolute paths are one entry each.
  const fs::path lora = folder / "person.safetensors";
  write_text(lora, "lora");
  EXPECT_EQ(FileHashCache(store).sha256(lora), sha256_file_hex(lora));
  const std::string stored = read_file(store);
  EXPECT_NE(stored.find(fs::absolute(lora).lexically_normal().string()), std::string::npos);
  EXPECT_NE(stored.find(fs::absolute(model).lexically_normal().string()), std::string::npos);
  fs::remove_all(folder);
}

TEST(FileHashCache, ADamagedOrUnwritableStoreOnlyCostsTheHashing) {
  const fs::path folder = test::temp_folder("file_hash_cache_bad");
  const fs::path model = folder / "model.safetensors";
  write_text(model, "weights");
  const std::string expected = sha256_file_hex(model);

  const fs::path damaged = folder / "damaged.json";
  write_text(damaged, "{\"version\": 1, \"files\": {\"x\": {\"size\": \"no\"");
  EXPECT_EQ(FileHashCache(damaged).sha256(model), expected);
  EXPECT_EQ(FileHashCache(damaged).sha256(model), expected);  // rewritten whole
  EXPECT_NE(read_file(damaged).find(expected), std::string::npos);

  write_text(folder / "a-file", "");
  const fs::path unwritable = folder / "a-file" / "file_hashes.json";  // its folder is a file
  FileHashCache cache(unwritable);
  EXPECT_EQ(cache.sha256(model), expected);
  EXPECT_EQ(cache.sha256(model), expected);
  EXPECT_FALSE(fs::exists(unwritable));

  // A missing file is an error naming it, not a cached answer.
  EXPECT_THROW(cache.sha256(folder / "missing.safetensors"), Error);
  fs::remove_all(folder);
}

}  // namespace
}  // namespace doppel

#include "doppel/store/blob_store.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "doppel/core/atomic_file.hpp"
#include "doppel/core/error.hpp"
#include "support/database_backends.hpp"

namespace doppel::store {
namespace {

std::vector<std::filesystem::path> files_under(const std::filesystem::path& root) {
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root))
    if (entry.is_regular_file()) files.push_back(entry.path());
  return files;
}

void expect_error(ErrorCode code, const std::function<void()>& work, const std::string& hint) {
  try {
    work();
    ADD_FAILURE() << "expected an error mentioning '" << hint << "'";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), code) << error.what();
    EXPECT_NE(std::string(error.what()).find(hint), std::string::npos) << error.what();
  }
}

void flip_last_byte(const std::filesystem::path& path) {
  std::string bytes = read_file(path);
  bytes.back() = static_cast<char>(bytes.back() ^ 0x01);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

TEST(Sha256, MatchesKnownDigests) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_TRUE(is_sha256_hex(sha256_hex("x")));
  EXPECT_FALSE(is_sha256_hex("../../etc/passwd"));
  EXPECT_FALSE(is_sha256_hex(std::string(64, 'A')));
}

TEST(BlobStore, StoresByDigestIdempotentlyAndAtomically) {
  test::TempDir folder;
  BlobStore blobs = BlobStore::open(folder.path());
  std::string bytes("portrait\0with a zero byte", 25);
  std::string hash = blobs.put(bytes);
  EXPECT_EQ(hash, sha256_hex(bytes));
  EXPECT_EQ(blobs.path_of(hash), folder.path() / "blobs" / hash.substr(0, 2) / hash.substr(2));
  EXPECT_TRUE(std::filesystem::is_regular_file(blobs.path_of(hash)));
  EXPECT_EQ(blobs.get(hash), bytes);

  struct stat before {};
  ASSERT_EQ(::stat(blobs.path_of(hash).c_str(), &before), 0);
  EXPECT_EQ(blobs.put(bytes), hash);  // a second put does not rewrite the file
  struct stat after {};
  ASSERT_EQ(::stat(blobs.path_of(hash).c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino);
  EXPECT_EQ(files_under(blobs.root()).size(), 1u);  // no temporary files left behind

  std::string other = blobs.put("another");
  std::vector<std::string> expected = {hash, other};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(blobs.list(), expected);
  EXPECT_EQ(blobs.total_size(), bytes.size() + 7);
  EXPECT_TRUE(blobs.exists(other));
  EXPECT_TRUE(blobs.remove(other));
  EXPECT_FALSE(blobs.remove(other));
  EXPECT_FALSE(blobs.exists(other));
  EXPECT_EQ(blobs.total_size(), bytes.size());
  expect_error(
      ErrorCode::kNotFound, [&] { blobs.get(other); }, "not found");
}

// Issue 23: /metrics asked for the blob folder's size by walking it; the usage is now
// counted once and then kept by every store of the process on that folder.
TEST(BlobStore, UsageIsCountedOnceThenKeptByPutsAndRemoves) {
  test::TempDir folder;
  BlobStore first = BlobStore::open(folder.path());
  const std::string before = first.put("written before anyone asked");
  BlobStore second = BlobStore::open(folder.path());  // the same folder: the same tally
  EXPECT_EQ(second.usage().bytes, 27u);
  const std::string added = first.put("twelve bytes");
  EXPECT_EQ(second.usage().bytes, 39u);
  first.put("twelve bytes");  // already there: nothing written
  EXPECT_EQ(second.usage().bytes_written, 39u);
  // A file that appears behind the stores' backs is not seen: the folder is not walked again.
  std::filesystem::create_directories(folder.path() / "blobs" / "ff");
  std::ofstream(folder.path() / "blobs" / "ff" / std::string(62, 'f')) << "outside";
  EXPECT_TRUE(second.remove(added));
  EXPECT_FALSE(first.remove(added));
  const BlobUsage usage = first.usage();
  EXPECT_EQ(usage.bytes, 27u);
  EXPECT_EQ(usage.bytes_removed, 12u);
  EXPECT_EQ(first.total_size(), 27u + 7u);  // the walk does see it
  EXPECT_TRUE(first.remove(before));
  EXPECT_EQ(second.usage().bytes, 0u);
  // Another folder keeps its own count.
  test::TempDir elsewhere;
  EXPECT_EQ(BlobStore::open(elsewhere.path()).usage().bytes, 0u);
}

TEST(BlobStore, RejectsNamesThatAreNotDigests) {
  test::TempDir folder;
  BlobStore blobs(folder.path() / "blobs");
  std::vector<std::string> names = {"../../etc/passwd", "", "ab/../../x"};
  names.push_back(std::string(63, 'a'));
  names.back() += '/';
  names.push_back(std::string(64, 'g'));
  for (const std::string& name : names) {
    expect_error(
        ErrorCode::kInvalidArgument, [&] { blobs.get(name); }, "not a blob id");
    expect_error(
        ErrorCode::kInvalidArgument, [&] { blobs.remove(name); }, "not a blob id");
  }
}

TEST(BlobStore, DetectsAModifiedPlainBlob) {
  test::TempDir folder;
  BlobStore blobs(folder.path() / "blobs");
  std::string hash = blobs.put("original pixels");
  flip_last_byte(blobs.path_of(hash));
  expect_error(
      ErrorCode::kInvalidFile, [&] { blobs.get(hash); }, "does not match");
}

TEST(BlobStore, EncryptsAtRestAndRejectsTamperingAndWrongKeys) {
  test::TempDir folder;
  std::filesystem::path data = folder.path() / "data";
  std::filesystem::path key_file = folder.path() / "secrets" / "blob.key";
  BlobStore blobs = BlobStore::open(data, key_file, /*create_key=*/true);
  EXPECT_TRUE(blobs.encrypted());

  struct stat info {};
  ASSERT_EQ(::stat(key_file.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);

  const std::string secret = "a face that must not be readable on disk";
  std::string hash = blobs.put(secret);
  EXPECT_EQ(hash, sha256_hex(secret));  // addressed by the plaintext
  std::string on_disk = read_file(blobs.path_of(hash));
  EXPECT_EQ(on_disk.find("must not be readable"), std::string::npos);
  EXPECT_GT(on_disk.size(), secret.size());
  EXPECT_EQ(blobs.get(hash), secret);
  EXPECT_EQ(BlobStore::open(data, key_file).get(hash), secret);  // key reloaded from its file

  // Another key, or no key at all, cannot read it.
  std::filesystem::path other_key = folder.path() / "other.key";
  expect_error(
      ErrorCode::kInvalidFile, [&] { BlobStore::open(data, other_key, true).get(hash); },
      "another key");
  expect_error(
      ErrorCode::kInvalidFile, [&] { BlobStore::open(data).get(hash); }, "no key");

  // A ciphertext moved under another blob's name fails authentication.
  std::string decoy = blobs.put("decoy");
  std::filesystem::copy_file(blobs.path_of(hash), blobs.path_of(decoy),
                             std::filesystem::copy_options::overwrite_existing);
  expect_error(
      ErrorCode::kInvalidFile, [&] { blobs.get(decoy); }, "failed authentication");

  flip_last_byte(blobs.path_of(hash));
  expect_error(
      ErrorCode::kInvalidFile, [&] { blobs.get(hash); }, "failed authentication");
}

TEST(BlobStore, KeyFilesAreGuarded) {
  test::TempDir folder;
  std::filesystem::path data = folder.path() / "data";
  expect_error(
      ErrorCode::kInvalidArgument, [&] { BlobStore::open(data, data / "blob.key", true); },
      "inside the data folder");
  expect_error(
      ErrorCode::kNotFound, [&] { BlobStore::open(data, folder.path() / "absent.key"); },
      "not found");

  std::filesystem::path key_file = folder.path() / "blob.key";
  EncryptionKey::create(key_file);
  expect_error(
      ErrorCode::kInvalidArgument, [&] { EncryptionKey::create(key_file); }, "exists");
  ::chmod(key_file.c_str(), 0644);
  expect_error(
      ErrorCode::kInvalidFile, [&] { EncryptionKey::load(key_file); }, "chmod 600");

  std::filesystem::path short_key = folder.path() / "short.key";
  write_file_atomically(short_key, "abcd\n");
  ::chmod(short_key.c_str(), 0600);
  expect_error(
      ErrorCode::kInvalidFile, [&] { EncryptionKey::load(short_key); }, "64 hex");
}

TEST(BlobStore, ReadsPlainBlobsWrittenBeforeEncryptionWasTurnedOn) {
  test::TempDir folder;
  std::filesystem::path data = folder.path() / "data";
  std::string hash = BlobStore::open(data).put("written in the clear");
  BlobStore encrypted = BlobStore::open(data, folder.path() / "blob.key", true);
  EXPECT_EQ(encrypted.get(hash), "written in the clear");
}

}  // namespace
}  // namespace doppel::store

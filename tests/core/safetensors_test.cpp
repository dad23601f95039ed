#include "doppel/core/safetensors.hpp"

#include <gtest/gtest.h>

#include "doppel/core/error.hpp"
#include "support/shared_data.hpp"

namespace doppel {
namespace {

std::string with_header(const std::string& json, const std::string& data) {
  std::string out;
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out.push_back(char((n >> (8 * i)) & 0xff));
  return out + json + data;
}

// Expects a kInvalidFile error whose message contains `fragment`.
void expect_invalid(const std::string& bytes, const std::string& fragment) {
  try {
    SafetensorsFile::from_bytes(bytes, "test.safetensors");
    FAIL() << "expected an error containing: " << fragment;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidFile);
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("test.safetensors"), std::string::npos) << e.what();
  }
}

TEST(Safetensors, RoundTripsEveryDtypeAndMetadata) {
  std::map<std::string, at::Tensor> tensors = {
      {"f32", at::randn({2, 3})},
      {"f16", at::randn({4}).to(at::kHalf)},
      {"bf16", at::randn({3, 1}).to(at::kBFloat16)},
      {"f64", at::randn({2}, at::kDouble)},
      {"i64", at::arange(5, at::kLong)},
      {"i32", at::arange(3, at::kInt)},
      {"u8", at::arange(7, at::kByte)},
      {"bool", at::tensor({1, 0, 1}).to(at::kBool)},
      {"scalar", at::tensor(2.5f)},
      {"empty", at::zeros({0, 4})},
  };
  std::string bytes = serialize_safetensors(tensors, {{"format", "pt"}, {"ss_rank", "4"}});
  auto file = SafetensorsFile::from_bytes(bytes);
  EXPECT_EQ(file.entries().size(), tensors.size());
  EXPECT_EQ(file.metadata().at("ss_rank"), "4");
  for (const auto& [name, expected] : tensors) {
    at::Tensor loaded = file.tensor(name);
    EXPECT_EQ(loaded.scalar_type(), expected.scalar_type()) << name;
    EXPECT_EQ(loaded.sizes(), expected.sizes()) << name;
    EXPECT_TRUE(at::equal(loaded, expected)) << name;
  }
}

TEST(Safetensors, SavesAtomicallyAndMapsZeroCopy) {
  auto folder = std::filesystem::temp_directory_path() / "doppel_safetensors_test";
  std::filesystem::remove_all(folder);
  std::filesystem::create_directories(folder);
  auto path = folder / "model.safetensors";
  at::Tensor weights = at::randn({16, 16});
  save_safetensors(path, {{"w", weights}});
  auto file = SafetensorsFile::open(path);
  EXPECT_TRUE(at::equal(file.tensor("w"), weights));
  // Only the target file exists: no temp file is left behind.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(folder), {}), 1);
  // The tensor outlives the file object (it keeps the mapping alive).
  at::Tensor alias = SafetensorsFile::open(path).tensor("w");
  EXPECT_TRUE(at::equal(alias, weights));
  std::filesystem::remove_all(folder);
}

TEST(Safetensors, RejectsMalformedFilesWithNamedReasons) {
  expect_invalid("", "shorter than the 8-byte");
  expect_invalid(std::string("\x10\x00\x00\x00\x00\x00\x00\x00", 8) + "{}", "runs past the end");
  std::string huge(8, '\0');
  huge[4] = 1;  // 2^32 bytes
  expect_invalid(huge + "{}", "exceeds 100 MB");
  // Another format's first bytes are not read as a length (issue 24: "header length
  // 7808303374018153414 exceeds 100 MB" for a random file).
  expect_invalid("random text that is not a model at all", "not a safetensors file");
  expect_invalid(std::string("PK\x03\x04", 4) + std::string(40, 'x'), "it is a zip archive");
  expect_invalid(std::string("\x89PNG\r\n\x1a\n", 8) + std::string(40, 'x'), "PNG image");
  expect_invalid(with_header("{not json", ""), "not valid JSON");
  expect_invalid(with_header("[1,2]", ""), "not a JSON object");
  expect_invalid(with_header(R"({"a":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}})", "x"),
                 "tensor 'a': unknown dtype 'F8'");
  expect_invalid(with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", "xxxx"),
                 "tensor 'a': shape and dtype need 8 bytes");
  expect_invalid(with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "xxxx"),
                 "tensor 'a': data runs past the end");
  expect_invalid(with_header(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                             R"("b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})",
                             "xxxxxx"),
                 "overlap");
  expect_invalid(with_header(R"({"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}})", "x"),
                 "non-integer or negative");
  expect_invalid(with_header(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[1,0]}})", "x"),
                 "end before they begin");
  expect_invalid(with_header(R"({"a":{"shape":[1],"data_offsets":[0,1]}})", "x"), "missing dtype");
  expect_invalid(with_header(R"({"a":{"dtype":"U8","data_offsets":[0,1]}})", "x"), "missing shape");
  expect_invalid(with_header(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0]}})", "x"),
                 "data_offsets must be");
  expect_invalid(with_header(R"({"__metadata__":{"k":1}})", ""), "not a string");
  expect_invalid(
      with_header(R"({"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,1]}})",
                  "x"),
      "too many elements");
}

TEST(Safetensors, MissingFileAndTensorAreNotFound) {
  try {
    SafetensorsFile::open("/nonexistent/model.safetensors");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
  }
  auto file = SafetensorsFile::from_bytes(serialize_safetensors({{"a", at::ones({1})}}));
  EXPECT_THROW(file.tensor("b"), Error);
}

TEST(Safetensors, ReadsMisalignedDataByCopying) {
  // Header padded to 3 bytes, so F32 data starts at an odd offset.
  std::string data(8, '\0');
  float values[2] = {1.5f, -2.0f};
  std::memcpy(data.data(), values, 8);
  auto file = SafetensorsFile::from_bytes(
      with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}  )", data));
  EXPECT_TRUE(at::equal(file.tensor("a"), at::tensor({1.5f, -2.0f})));
}

TEST(Safetensors, ReadsTheGoldenSingleFileCheckpoint) {
  auto path = test::golden_dir() / "sd1" / "sd1_tiny_single_file_fp16.safetensors";
  DOPPEL_REQUIRE_PATH(path);
  auto file = SafetensorsFile::open(path);
  EXPECT_EQ(file.entries().size(), 600u);
  at::Tensor w = file.tensor("model.diffusion_model.input_blocks.0.0.weight");
  EXPECT_EQ(w.scalar_type(), at::kHalf);
  EXPECT_EQ(w.sizes(), (std::vector<int64_t>{32, 4, 3, 3}));
  EXPECT_TRUE(at::isfinite(w).all().item<bool>());
}

}  // namespace
}  // namespace doppel

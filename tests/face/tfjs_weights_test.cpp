// TensorFlow.js weight manifests: dtypes, quantisation, shards and every way a
// file can be malformed.
#include <gtest/gtest.h>

#include <fstream>

#include "doppel/core/atomic_file.hpp"
#include "doppel/core/error.hpp"
#include "doppel/checkpoint/formats/tfjs_weights.hpp"

namespace doppel {
namespace {

class TfjsWeightsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("doppel_tfjs_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path write(const std::string& name, const std::string& bytes) {
    write_file_atomically(dir_ / name, bytes);
    return dir_ / name;
  }

  static std::string bytes_of(const std::vector<float>& values) {
    return std::string(reinterpret_cast<const char*>(values.data()), values.size() * 4);
  }

  std::filesystem::path dir_;
};

TEST_F(TfjsWeightsTest, DecodesPlainQuantisedAndHalfTensorsAcrossShards) {
  // float32 [2,2], uint8-quantised [3], uint16-quantised [2], float16 [2], int32 [1].
  std::string data = bytes_of({1.5f, -2.0f, 0.25f, 8.0f});
  data += std::string("\x00\x01\xff", 3);
  data += std::string("\x02\x00\x00\x01", 4);  // 2, 256
  data += std::string("\x00\x3c\x00\xc0", 4);  // 1.0, -2.0 in IEEE half
  data += std::string("\xfe\xff\xff\xff", 4);  // -2
  write("shard1", data.substr(0, 10));
  write("shard2", data.substr(10));
  const auto manifest = write("model-weights_manifest.json", R"([{
    "paths": ["shard1", "shard2"],
    "weights": [
      {"name": "a/filters", "shape": [2, 2], "dtype": "float32"},
      {"name": "b", "shape": [3], "dtype": "float32",
       "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
      {"name": "c", "shape": [2], "dtype": "float32",
       "quantization": {"dtype": "uint16", "scale": 0.25, "min": 1.0}},
      {"name": "d", "shape": [2], "dtype": "float32", "quantization": {"dtype": "float16"}},
      {"name": "e", "shape": [1], "dtype": "int32"}
    ]}])");
  const auto tensors = read_tfjs_weights(manifest);
  ASSERT_EQ(tensors.size(), 5u);
  EXPECT_EQ(tensors[0].name, "a/filters");
  EXPECT_EQ(tensors[0].value.sizes(), at::IntArrayRef({2, 2}));
  EXPECT_TRUE(at::equal(tensors[0].value, at::tensor({1.5f, -2.0f, 0.25f, 8.0f}).view({2, 2})));
  // q * scale + min
  EXPECT_TRUE(at::allclose(tensors[1].value, at::tensor({-1.0f, -0.5f, 126.5f})));
  EXPECT_TRUE(at::allclose(tensors[2].value, at::tensor({1.5f, 65.0f})));
  EXPECT_TRUE(at::equal(tensors[3].value, at::tensor({1.0f, -2.0f})));
  EXPECT_EQ(tensors[4].value.scalar_type(), at::kInt);
  EXPECT_EQ(tensors[4].value.item<int>(), -2);
}

TEST_F(TfjsWeightsTest, RejectsTruncatedShardNamingTheTensor) {
  write("shard", bytes_of({1, 2, 3}));
  const auto manifest = write("m.json", R"([{"paths": ["shard"], "weights": [
      {"name": "first", "shape": [2], "dtype": "float32"},
      {"name": "second", "shape": [2], "dtype": "float32"}]}])");
  try {
    read_tfjs_weights(manifest);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidFile);
    EXPECT_NE(std::string(e.what()).find("second"), std::string::npos) << e.what();
  }
}

TEST_F(TfjsWeightsTest, RejectsUndescribedTrailingBytes) {
  write("shard", bytes_of({1, 2, 3}));
  const auto manifest = write(
      "m.json",
      R"([{"paths": ["shard"], "weights": [{"name": "w", "shape": [2], "dtype": "float32"}]}])");
  EXPECT_THROW(read_tfjs_weights(manifest), Error);
}

TEST_F(TfjsWeightsTest, RejectsMalformedManifests) {
  write("shard", bytes_of({1}));
  const char* bad[] = {
      "not json",
      "{}",
      "[]",
      R"([{"paths": ["shard"], "weights": [{"name": "w", "shape": [1], "dtype": "complex64"}]}])",
      R"([{"paths": ["shard"], "weights": [{"name": "w", "shape": [-1], "dtype": "float32"}]}])",
      R"([{"paths": ["shard"], "weights": [{"name": "w", "dtype": "float32"}]}])",
      R"([{"paths": ["shard"], "weights": [{"name": "w", "shape": [4], "dtype": "float32",
          "quantization": {"dtype": "int4", "scale": 1, "min": 0}}]}])",
  };
  for (const char* text : bad) {
    SCOPED_TRACE(text);
    const auto manifest = write("m.json", text);
    try {
      read_tfjs_weights(manifest);
      ADD_FAILURE() << "expected an error";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidFile) << e.what();
    }
  }
}

TEST_F(TfjsWeightsTest, MissingShardIsReportedByPath) {
  const auto manifest = write(
      "m.json",
      R"([{"paths": ["absent.bin"], "weights": [{"name": "w", "shape": [1], "dtype": "float32"}]}])");
  try {
    read_tfjs_weights(manifest);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("absent.bin"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace doppel

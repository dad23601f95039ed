#include "doppel/core/random.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "doppel/core/safetensors.hpp"
#include "support/shared_data.hpp"

namespace doppel {
namespace {

TEST(Random, SameSeedSameStreamAndContinuation) {
  Generator a(7), b(7);
  at::Tensor first = a.randn({3, 5});
  EXPECT_TRUE(at::equal(first, b.randn({3, 5})));
  EXPECT_FALSE(at::equal(first, a.randn({3, 5})));  // the stream moves on
  EXPECT_EQ(Generator(7).randn({2}, at::TensorOptions().dtype(at::kBFloat16)).scalar_type(),
            at::kBFloat16);
}

// Golden: torch.manual_seed(s); torch.randn(shape), compared bit for bit.
TEST(Random, MatchesPyTorchCpuStreamExactly) {
  auto folder = test::golden_dir() / "rng";
  DOPPEL_REQUIRE_PATH(folder / "rng.json");
  auto golden = nlohmann::json::parse(std::ifstream(folder / "rng.json"));
  auto tensors = SafetensorsFile::open(folder / "rng.safetensors");
  int checked_whole = 0;
  for (const auto& c : golden["cases"]) {
    std::vector<int64_t> shape = c["shape"].get<std::vector<int64_t>>();
    at::Tensor x = Generator(c["seed"].get<uint64_t>()).randn(shape);
    at::Tensor flat = x.flatten();
    const std::string name = c["name"];
    auto first = c["first64"].get<std::vector<float>>();
    auto last = c["last64"].get<std::vector<float>>();
    for (size_t i = 0; i < first.size(); ++i)
      ASSERT_EQ(flat[i].item<float>(), first[i]) << name << " index " << i;
    for (size_t i = 0; i < last.size(); ++i)
      ASSERT_EQ(flat[flat.numel() - last.size() + i].item<float>(), last[i]) << name;
    EXPECT_EQ(x.to(at::kDouble).sum().item<double>(), c["sum_f64"].get<double>()) << name;
    EXPECT_EQ(x.to(at::kDouble).pow(2).sum().item<double>(), c["sumsq_f64"].get<double>()) << name;
    if (tensors.contains(name)) {
      EXPECT_TRUE(at::equal(tensors.tensor(name).reshape(x.sizes()), x)) << name;
      ++checked_whole;
    }
  }
  EXPECT_GT(checked_whole, 5);
  Generator sequential(42);
  EXPECT_TRUE(
      at::equal(sequential.randn({1, 4, 8, 8}), tensors.tensor("seed42_seq_draw0_1x4x8x8")));
  EXPECT_TRUE(
      at::equal(sequential.randn({1, 4, 8, 8}), tensors.tensor("seed42_seq_draw1_1x4x8x8")));
}

}  // namespace
}  // namespace doppel

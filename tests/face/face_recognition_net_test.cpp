// The 128-d face network: a tiny random model against a naive reference
// written out in loops, weight loading, and golden parity with face-api.js.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>

#include "doppel/checkpoint/face_recognition_weights.hpp"
#include "doppel/core/error.hpp"
#include "doppel/models/face_recognition_net.hpp"
#include "face_test_support.hpp"

namespace doppel {
namespace {

// ---- A naive double-precision reference of the architecture (README §4) ----

using Volume = std::vector<std::vector<std::vector<double>>>;  // [C][H][W]

Volume zeros(size_t c, size_t h, size_t w) {
  return Volume(c, std::vector<std::vector<double>>(h, std::vector<double>(w, 0.0)));
}

struct ConvWeights {
  at::Tensor filters, bias, scale, shift;  // filters [O, I, k, k]
};

ConvWeights weights_of(FaceRecognitionNet& net, const std::string& prefix) {
  auto p = net->named_parameters();
  return {p[prefix + ".conv.filters"].to(at::kDouble), p[prefix + ".conv.bias"].to(at::kDouble),
          p[prefix + ".scale.weights"].to(at::kDouble),
          p[prefix + ".scale.biases"].to(at::kDouble)};
}

// conv (zero padding `pad`, TensorFlow 'valid' when 0) + bias, scale, optional ReLU.
Volume conv(const Volume& x, const ConvWeights& w, int stride, int pad, bool relu) {
  const auto f = w.filters.accessor<double, 4>();
  const auto b = w.bias.accessor<double, 1>();
  const auto s = w.scale.accessor<double, 1>();
  const auto t = w.shift.accessor<double, 1>();
  const int in_c = int(x.size()), in_h = int(x[0].size()), in_w = int(x[0][0].size());
  const int k = int(w.filters.size(2)), out_c = int(w.filters.size(0));
  const int out_h = (in_h + 2 * pad - k) / stride + 1, out_w = (in_w + 2 * pad - k) / stride + 1;
  Volume y = zeros(out_c, out_h, out_w);
  for (int o = 0; o < out_c; ++o)
    for (int i = 0; i < out_h; ++i)
      for (int j = 0; j < out_w; ++j) {
        double sum = b[o];
        for (int c = 0; c < in_c; ++c)
          for (int u = 0; u < k; ++u)
            for (int v = 0; v < k; ++v) {
              const int yy = i * stride - pad + u, xx = j * stride - pad + v;
              if (yy >= 0 && yy < in_h && xx >= 0 && xx < in_w) sum += f[o][c][u][v] * x[c][yy][xx];
            }
        sum = sum * s[o] + t[o];
        y[o][i][j] = relu ? std::max(0.0, sum) : sum;
      }
  return y;
}

Volume residual(const Volume& x, FaceRecognitionNet& net, const std::string& name, bool down) {
  const ConvWeights w1 = weights_of(net, name + ".conv1"), w2 = weights_of(net, name + ".conv2");
  Volume y = conv(conv(x, w1, down ? 2 : 1, down ? 0 : 1, true), w2, 1, 1, false);
  const size_t out_c = y.size();
  Volume shortcut = x;
  if (down) {  // 2x2 average pool, stride 2, valid
    const size_t h = x[0].size() / 2, w = x[0][0].size() / 2;
    shortcut = zeros(x.size(), h, w);
    for (size_t c = 0; c < x.size(); ++c)
      for (size_t i = 0; i < h; ++i)
        for (size_t j = 0; j < w; ++j)
          shortcut[c][i][j] = (x[c][2 * i][2 * j] + x[c][2 * i + 1][2 * j] +
                               x[c][2 * i][2 * j + 1] + x[c][2 * i + 1][2 * j + 1]) /
                              4;
  }
  // y may be one row/column short (zeros at the bottom/right); the shortcut
  // may have fewer channels (zeros appended).
  const size_t h = shortcut[0].size(), w = shortcut[0][0].size();
  Volume out = zeros(out_c, h, w);
  for (size_t c = 0; c < out_c; ++c)
    for (size_t i = 0; i < h; ++i)
      for (size_t j = 0; j < w; ++j) {
        const double a = (i < y[c].size() && j < y[c][i].size()) ? y[c][i][j] : 0.0;
        const double b = c < shortcut.size() ? shortcut[c][i][j] : 0.0;
        out[c][i][j] = std::max(0.0, a + b);
      }
  return out;
}

std::vector<double> reference_forward(FaceRecognitionNet& net, const at::Tensor& input_chw) {
  const auto in = input_chw.to(at::kDouble).contiguous();
  const auto a = in.accessor<double, 3>();
  Volume x = zeros(in.size(0), in.size(1), in.size(2));
  for (int64_t c = 0; c < in.size(0); ++c)
    for (int64_t i = 0; i < in.size(1); ++i)
      for (int64_t j = 0; j < in.size(2); ++j) x[c][i][j] = a[c][i][j];
  x = conv(x, weights_of(net, "conv32_down"), 2, 0, true);
  {  // 3x3 max pool, stride 2, valid
    const size_t h = (x[0].size() - 3) / 2 + 1, w = (x[0][0].size() - 3) / 2 + 1;
    Volume pooled = zeros(x.size(), h, w);
    for (size_t c = 0; c < x.size(); ++c)
      for (size_t i = 0; i < h; ++i)
        for (size_t j = 0; j < w; ++j) {
          double m = -1e300;
          for (size_t u = 0; u < 3; ++u)
            for (size_t v = 0; v < 3; ++v) m = std::max(m, x[c][2 * i + u][2 * j + v]);
          pooled[c][i][j] = m;
        }
    x = pooled;
  }
  for (const char* name : {"conv32_1", "conv32_2", "conv32_3"}) x = residual(x, net, name, false);
  x = residual(x, net, "conv64_down", true);
  for (const char* name : {"conv64_1", "conv64_2", "conv64_3"}) x = residual(x, net, name, false);
  x = residual(x, net, "conv128_down", true);
  for (const char* name : {"conv128_1", "conv128_2"}) x = residual(x, net, name, false);
  x = residual(x, net, "conv256_down", true);
  for (const char* name : {"conv256_1", "conv256_2"}) x = residual(x, net, name, false);
  x = residual(x, net, "conv256_down_out", true);
  std::vector<double> pooled(x.size(), 0.0);
  for (size_t c = 0; c < x.size(); ++c) {
    for (const auto& row : x[c])
      for (double v : row) pooled[c] += v;
    pooled[c] /= double(x[c].size() * x[c][0].size());
  }
  const at::Tensor fc = net->named_parameters()["fc"].to(at::kDouble);
  const auto f = fc.accessor<double, 2>();
  std::vector<double> out(fc.size(1), 0.0);
  for (int64_t o = 0; o < fc.size(1); ++o)
    for (int64_t c = 0; c < fc.size(0); ++c) out[o] += pooled[c] * f[c][o];
  return out;
}

FaceRecognitionNet tiny_random_net() {
  FaceRecognitionNetConfig config;
  config.stage_channels = {2, 3, 4, 5};  // odd counts exercise the channel zero-padding
  config.descriptor_size = 6;
  FaceRecognitionNet net(config);
  at::manual_seed(7);
  at::NoGradGuard no_grad;
  for (auto& item : net->named_parameters()) {
    at::Tensor& p = item.value();
    if (item.key().find("scale.weights") != std::string::npos)
      p.copy_(1.0 + 0.2 * at::randn(p.sizes()));
    else
      p.copy_(0.3 * at::randn(p.sizes()));
  }
  return net;
}

TEST(FaceRecognitionNet, TinyRandomModelMatchesNaiveReference) {
  FaceRecognitionNet net = tiny_random_net();
  net->eval();
  at::manual_seed(11);
  const at::Tensor input = at::randn({2, 3, 150, 150});
  std::vector<std::pair<std::string, at::Tensor>> blocks;
  at::Tensor output;
  {
    at::NoGradGuard no_grad;
    output = net->forward_with_intermediates(input, blocks);
  }
  ASSERT_EQ(output.sizes(), at::IntArrayRef({2, 6}));
  // Spatial sizes of README §4 (150 -> 72 -> 35 -> 17 -> 8 -> 4 -> 2).
  std::map<std::string, int64_t> expected_side = {
      {"conv32_down", 72}, {"max_pool", 35},    {"conv32_3", 35},       {"conv64_down", 17},
      {"conv128_down", 8}, {"conv256_down", 4}, {"conv256_down_out", 2}};
  for (const auto& [name, tensor] : blocks) {
    if (expected_side.count(name)) {
      EXPECT_EQ(tensor.size(2), expected_side[name]) << name;
    }
  }
  for (int64_t n = 0; n < 2; ++n) {
    const std::vector<double> expected = reference_forward(net, input[n]);
    for (size_t i = 0; i < expected.size(); ++i)
      EXPECT_NEAR(output[n][int64_t(i)].item<double>(), expected[i],
                  1e-4 * std::max(1.0, std::abs(expected[i])))
          << "sample " << n << " component " << i;
  }
}

TEST(FaceRecognitionNet, RejectsWrongInputAndConfig) {
  FaceRecognitionNet net = tiny_random_net();
  EXPECT_THROW(net->forward(at::zeros({1, 1, 150, 150})), Error);
  EXPECT_THROW(net->forward(at::zeros({3, 150, 150})), Error);
  FaceRecognitionNetConfig bad;
  bad.stage_channels = {8, 8};
  EXPECT_THROW({ FaceRecognitionNet rejected(bad); }, Error);
  EXPECT_THROW(normalize_face_crops(at::zeros({1, 150, 150, 3})), Error);  // float, not uint8
}

TEST(FaceRecognitionNet, NormalisesCropsAsFaceApi) {
  at::Tensor crop = at::full({1, 2, 2, 3}, 255, at::kByte);
  const at::Tensor x = normalize_face_crops(crop);
  ASSERT_EQ(x.sizes(), at::IntArrayRef({1, 3, 2, 2}));
  EXPECT_NEAR(x[0][0][0][0].item<double>(), (255 - 122.782) / 255, 1e-6);
  EXPECT_NEAR(x[0][2][1][1].item<double>(), (255 - 104.298) / 255, 1e-6);
}

TEST(FaceRecognitionWeights, ReportsMissingAndUnusedTensorsByName) {
  FaceRecognitionNet net = tiny_random_net();
  std::vector<TfjsTensor> tensors;
  for (const auto& item : net->named_parameters()) {
    std::string name = item.key();
    std::replace(name.begin(), name.end(), '.', '/');
    at::Tensor value = item.value().detach().clone();
    if (value.dim() == 4) value = value.permute({2, 3, 1, 0}).contiguous();  // to HWIO
    tensors.push_back({name, value});
  }
  tensors.push_back({"extra/tensor", at::zeros({3})});
  FaceRecognitionNet copy = tiny_random_net();
  {
    at::NoGradGuard no_grad;
    for (auto& item : copy->named_parameters()) item.value().zero_();
  }
  const LoadReport report = assign_face_recognition_weights(copy, tensors);
  EXPECT_TRUE(report.missing.empty());
  ASSERT_EQ(report.unused, std::vector<std::string>{"extra.tensor"});
  EXPECT_EQ(report.loaded.size(), tensors.size() - 1);  // all but the extra one
  for (const auto& item : net->named_parameters())
    EXPECT_TRUE(at::equal(item.value(), copy->named_parameters()[item.key()])) << item.key();

  // A missing tensor is an error naming it; so is a shape mismatch.
  auto without = tensors;
  without.erase(without.begin() + 3);
  try {
    assign_face_recognition_weights(copy, without);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    std::string dotted = tensors[3].name;
    std::replace(dotted.begin(), dotted.end(), '/', '.');
    EXPECT_NE(std::string(e.what()).find(dotted), std::string::npos) << e.what();
  }
  auto reshaped = tensors;
  reshaped[0].value = at::zeros({1, 2, 3});
  EXPECT_THROW(assign_face_recognition_weights(copy, reshaped), Error);
}

TEST(FaceRecognitionWeights, MissingModelFileSaysHowToGetIt) {
  try {
    load_face_recognition_net("/nonexistent/face_recognition_model-weights_manifest.json");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_NE(std::string(e.what()).find("install.sh"), std::string::npos) << e.what();
  }
}

// ---- Golden parity with the real weights ----

at::Tensor crop_batch(const std::vector<std::filesystem::path>& files) {
  at::Tensor batch = at::empty({int64_t(files.size()), 150, 150, 3}, at::kByte);
  for (size_t i = 0; i < files.size(); ++i) {
    const Image crop = read_image(files[i]);
    EXPECT_EQ(crop.width, 150);
    std::memcpy(batch[int64_t(i)].data_ptr<uint8_t>(), crop.rgb.data(), crop.rgb.size());
  }
  return batch;
}

TEST(FaceRecognitionNetGolden, EveryBlockMatchesLayerChecks) {
  DOPPEL_REQUIRE_PATH(test::face_golden_dir() / "layer_checks.json");
  DOPPEL_REQUIRE_PATH(default_face_recognition_manifest());
  FaceRecognitionNet net = load_face_recognition_net(default_face_recognition_manifest());
  for (const auto& check : test::read_json(test::face_golden_dir() / "layer_checks.json")) {
    const std::string chip = check.at("chip");
    SCOPED_TRACE(chip);
    const at::Tensor input = normalize_face_crops(crop_batch({test::face_golden_dir() / chip}));
    std::vector<std::pair<std::string, at::Tensor>> blocks{{"input", input}};
    {
      at::NoGradGuard no_grad;
      net->forward_with_intermediates(input, blocks);
    }
    ASSERT_EQ(blocks.size(), check.at("layers").size());
    for (size_t i = 0; i < blocks.size(); ++i) {
      const auto& expected = check["layers"][i];
      ASSERT_EQ(blocks[i].first, expected.at("name").get<std::string>());
      // The reference reports HWC order.
      at::Tensor t = blocks[i].second[0];
      if (t.dim() == 3) t = t.permute({1, 2, 0}).contiguous();
      const auto shape = expected.at("shape_hwc").get<std::vector<int64_t>>();
      ASSERT_EQ(t.sizes(), at::IntArrayRef(shape)) << blocks[i].first;
      const double l2 = expected.at("l2");
      EXPECT_NEAR(t.norm().item<double>(), l2, 1e-5 * l2 + 1e-6) << blocks[i].first;
      EXPECT_NEAR(t.abs().mean().item<double>(), expected.at("mean_abs").get<double>(), 1e-5)
          << blocks[i].first;
      EXPECT_NEAR(t.sum().item<double>(), expected.at("sum").get<double>(),
                  1e-5 * std::sqrt(double(t.numel())) * l2 + 1e-4)
          << blocks[i].first;
      const auto first = expected.at("first_values").get<std::vector<double>>();
      const at::Tensor flat = t.flatten();
      for (size_t k = 0; k < first.size(); ++k)
        EXPECT_NEAR(flat[int64_t(k)].item<double>(), first[k], 1e-5) << blocks[i].first;
    }
  }
}

TEST(FaceRecognitionNetGolden, DescriptorsOfAllGoldenCropsWithin1e4) {
  DOPPEL_REQUIRE_PATH(test::face_golden_dir() / "descriptors.json");
  DOPPEL_REQUIRE_PATH(default_face_recognition_manifest());
  FaceRecognitionNet net = load_face_recognition_net(default_face_recognition_manifest());
  const nlohmann::json golden = test::read_json(test::face_golden_dir() / "descriptors.json");
  std::vector<std::filesystem::path> files;
  for (const auto& entry : golden) files.push_back(test::face_golden_dir() / entry.at("chip"));
  ASSERT_EQ(files.size(), 183u);
  at::Tensor descriptors;
  {
    at::InferenceMode inference;
    descriptors = net->forward(normalize_face_crops(crop_batch(files)));
  }
  double max_diff = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    const auto expected = golden[i].at("descriptor").get<std::vector<float>>();
    for (size_t k = 0; k < expected.size(); ++k)
      max_diff = std::max(
          max_diff, std::abs(descriptors[int64_t(i)][int64_t(k)].item<double>() - expected[k]));
  }
  std::cout << "[ golden   ] 183 golden crops: max |descriptor diff| " << max_diff << "\n";
  EXPECT_LE(max_diff, 1e-4);
}

}  // namespace
}  // namespace doppel

// The TAESD decoder: taesd.py's parameter names and shapes, the output range and size, and
// loading from madebyollin's file and from a diffusers AutoencoderTiny, with clear errors.
#include "doppel/checkpoint/taesd.hpp"

#include <c10/core/InferenceMode.h>

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>

#include "doppel/core/error.hpp"
#include "doppel/core/safetensors.hpp"
#include "doppel/models/layers.hpp"
#include "support/error_code.hpp"

namespace doppel {
namespace {

using test::code_of;

namespace fs = std::filesystem;

fs::path temp_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / (name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::map<std::string, at::Tensor> state_of(torch::nn::Module& module, const std::string& prefix,
                                           int offset = 0) {
  std::map<std::string, at::Tensor> tensors;
  for (const auto& item : module.named_parameters()) {
    std::string name = item.key();
    if (offset != 0) {
      const size_t dot = name.find('.');
      name = std::to_string(std::stoll(name.substr(0, dot)) + offset) + name.substr(dot);
    }
    tensors[prefix + name] = item.value().detach().clone();
  }
  return tensors;
}

TEST(TinyAutoencoderDecoder, HasTaesdsNamesAndDecodesToEightTimesTheLatents) {
  TinyAutoencoderDecoder decoder;
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& item : decoder->named_parameters())
    shapes[item.key()] = item.value().sizes().vec();
  EXPECT_EQ(shapes.size(), 2u + 10 * 6 + 3 + 2);  // convs in/out, 10 blocks, 3 bias-free convs
  EXPECT_EQ(shapes.at("1.weight"), (std::vector<int64_t>{64, 4, 3, 3}));
  EXPECT_EQ(shapes.at("3.conv.0.weight"), (std::vector<int64_t>{64, 64, 3, 3}));
  EXPECT_EQ(shapes.at("3.conv.4.bias"), (std::vector<int64_t>{64}));
  EXPECT_EQ(shapes.count("7.weight"), 1u);
  EXPECT_EQ(shapes.count("7.bias"), 0u);  // the convs after upsampling have no bias
  EXPECT_EQ(shapes.count("18.conv.2.weight"), 1u);
  EXPECT_EQ(shapes.at("19.weight"), (std::vector<int64_t>{3, 64, 3, 3}));

  layers::randomize_parameters(*decoder, 4);
  c10::InferenceMode inference;
  const at::Tensor image = decoder->forward(at::randn({2, 4, 5, 7}) * 4);
  EXPECT_EQ(image.sizes(), (at::IntArrayRef{2, 3, 40, 56}));
  EXPECT_EQ(image.scalar_type(), at::kFloat);
  EXPECT_THROW(decoder->forward(at::randn({1, 3, 4, 4})), Error);
}

TEST(TaesdLoading, MadebyollinAndDiffusersFilesGiveTheSameDecoder) {
  const fs::path dir = temp_dir("doppel_taesd");
  TinyAutoencoderDecoder reference;
  layers::randomize_parameters(*reference, 9);
  save_safetensors(dir / "taesd_decoder.safetensors", state_of(*reference, ""));
  // diffusers' DecoderTiny: no clamp module, so every position is one lower; plus an encoder.
  auto diffusers = state_of(*reference, "decoder.layers.", -1);
  diffusers["encoder.layers.0.weight"] = at::zeros({64, 3, 3, 3});
  fs::create_directories(dir / "taesd");
  save_safetensors(dir / "taesd" / "diffusion_pytorch_model.safetensors", diffusers);

  c10::InferenceMode inference;
  const at::Tensor latents = at::randn({1, 4, 4, 4});
  const at::Tensor expected = reference->forward(latents);
  for (const fs::path& path : {dir / "taesd_decoder.safetensors", dir / "taesd"}) {
    TinyAutoencoderDecoder loaded = load_taesd_decoder(path);
    EXPECT_TRUE(at::equal(loaded->forward(latents), expected)) << path;
  }
  EXPECT_LT(
      (load_taesd_decoder(dir / "taesd_decoder.safetensors", at::kBFloat16)->forward(latents) -
       expected)
          .abs()
          .max()
          .item<double>(),
      0.25);
}

TEST(TaesdLoading, BadFilesAreClearErrors) {
  const fs::path dir = temp_dir("doppel_taesd_bad");
  EXPECT_EQ(code_of([&] { load_taesd_decoder(dir / "missing.safetensors"); }),
            ErrorCode::kNotFound);
  save_safetensors(dir / "lora.safetensors", {{"lora_unet_x.lora_up.weight", at::zeros({4, 4})}});
  try {
    load_taesd_decoder(dir / "lora.safetensors");
    ADD_FAILURE() << "a LoRA is not a TAESD decoder";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidFile);
    EXPECT_NE(std::string(e.what()).find("not a TAESD decoder"), std::string::npos) << e.what();
  }
  TinyAutoencoderDecoder reference;
  layers::randomize_parameters(*reference, 9);
  auto incomplete = state_of(*reference, "");
  incomplete.erase("12.weight");
  save_safetensors(dir / "incomplete.safetensors", incomplete);
  try {
    load_taesd_decoder(dir / "incomplete.safetensors");
    ADD_FAILURE() << "a missing tensor must be named";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("12.weight"), std::string::npos) << e.what();
  }
  auto reshaped = state_of(*reference, "");
  reshaped["3.conv.0.weight"] = at::zeros({64, 64, 1, 1});
  save_safetensors(dir / "reshaped.safetensors", reshaped);
  EXPECT_EQ(code_of([&] { load_taesd_decoder(dir / "reshaped.safetensors"); }),
            ErrorCode::kInvalidFile);
}

}  // namespace
}  // namespace doppel

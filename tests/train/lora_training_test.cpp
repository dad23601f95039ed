// LoRA training on the tiny model built in code: exact gradients, learning,
// export that loads back, and resume equal to an uninterrupted run.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "doppel/checkpoint/lora.hpp"
#include "doppel/checkpoint/tiny_model.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/image.hpp"
#include "doppel/core/random.hpp"
#include "doppel/core/safetensors.hpp"
#include "doppel/diffusion/stable_diffusion_pipeline.hpp"
#include "doppel/train/lora_trainer.hpp"
#include "support/temp_folder.hpp"

namespace doppel {
namespace {

using test::temp_folder;

// A 64x64 picture the base model knows nothing about: a warm disc on teal.
Image disc_image(int offset) {
  Image image;
  image.width = image.height = 64;
  image.rgb.resize(64 * 64 * 3);
  for (int y = 0; y < 64; ++y) {
    for (int x = 0; x < 64; ++x) {
      const bool inside = (x - 32 - offset) * (x - 32 - offset) + (y - 30) * (y - 30) < 300;
      uint8_t* pixel = &image.rgb[(y * 64 + x) * 3];
      pixel[0] = inside ? 240 : 20;
      pixel[1] = inside ? 180 : 120;
      pixel[2] = inside ? 40 : 130;
    }
  }
  return image;
}

std::vector<TrainingExample> disc_examples() {
  return {{"a.png", disc_image(-3), "a photo of sks person"},
          {"b.png", disc_image(3), "a photo of sks person"}};
}

LoraTrainingOptions tiny_options() {
  LoraTrainingOptions options;
  options.network.rank = 4;
  options.network.alpha = 4;
  options.resolution = 64;
  options.steps = 6;
  options.learning_rate = 1e-3;
  options.checkpoint_every = 3;
  options.seed = 17;
  return options;
}

double pixel_mse(const Image& a, const Image& b) {
  double sum = 0;
  for (size_t i = 0; i < a.rgb.size(); ++i) {
    const double d = static_cast<double>(a.rgb[i]) - b.rgb[i];
    sum += d * d;
  }
  return sum / static_cast<double>(a.rgb.size());
}

Image generate(StableDiffusionCheckpoint& model, const std::string& prompt) {
  StableDiffusionPipeline pipeline(model, ClipTokenizer::load_default(), "tiny");
  GenerationRequest request;
  request.prompt = prompt;
  request.width = request.height = 64;
  request.steps = 12;
  request.sampler = "euler";
  request.seed = 99;
  request.guidance_scale = 1.0;  // the LoRA's own denoiser, not amplified differences
  // img2img from flat grey at strength 0.6: the random tiny base cannot be taught the
  // high-noise end of sampling by an attention LoRA in a seconds-long test (txt2img from
  // pure noise moves < 1 % closer), the mid-noise range it learns measurably.
  Image grey;
  grey.width = grey.height = 64;
  grey.rgb.assign(64 * 64 * 3, 128);
  request.init_image = grey;
  request.strength = 0.6;
  return pipeline.generate(request).front().image;
}

// ---------------------------------------------------------------- gradients

struct GradientCase {
  StableDiffusionCheckpoint model = make_tiny_stable_diffusion(21);
  std::unique_ptr<LoraNetwork> network;
  at::Tensor latents, noise, timesteps, context, alphas_cumprod;

  explicit GradientCase(PredictionType prediction) : prediction(prediction) {
    model.unet->to(at::kDouble);
    for (auto& parameter : model.unet->parameters()) parameter.requires_grad_(false);
    LoraNetworkOptions options;
    options.rank = 2;
    options.alpha = 3;
    network = std::make_unique<LoraNetwork>(model, options);
    Generator generator(5);
    for (const LoraLayer& layer : network->layers()) {
      // Non-zero up projections, so the down projections have gradients too.
      layer.adapter->down = layer.adapter->down.detach().to(at::kDouble).requires_grad_(true);
      layer.adapter->up =
          (generator.randn(layer.adapter->up.sizes()) * 0.3).to(at::kDouble).requires_grad_(true);
    }
    const auto f64 = at::TensorOptions().dtype(at::kDouble);
    latents = generator.randn({2, 4, 8, 8}, f64);
    noise = generator.randn({2, 4, 8, 8}, f64);
    timesteps = at::tensor(std::vector<int64_t>{40, 730});
    context = generator.randn({2, 77, model.unet->config().context_dim}, f64);
    alphas_cumprod = make_alphas_cumprod(SchedulerConfig::stable_diffusion(prediction));
  }
  at::Tensor loss() {
    return lora_training_loss(*model.unet, latents, noise, timesteps, context, alphas_cumprod,
                              prediction, 5.0);
  }
  PredictionType prediction;
};

void expect_gradients_match_finite_differences(PredictionType prediction) {
  GradientCase test(prediction);
  test.loss().backward();
  const auto& layers = test.network->layers();
  int checked = 0;
  for (size_t index : {size_t{0}, layers.size() / 2, layers.size() - 1}) {
    for (at::Tensor parameter : {layers[index].adapter->down, layers[index].adapter->up}) {
      const at::Tensor gradient = parameter.grad().clone();
      for (int64_t flat : {int64_t{0}, parameter.numel() / 2 + 1}) {
        at::NoGradGuard no_grad;
        at::Tensor entry = parameter.view({-1})[flat];
        const double original = entry.item<double>(), h = 1e-6;
        entry.fill_(original + h);
        const double plus = test.loss().item<double>();
        entry.fill_(original - h);
        const double minus = test.loss().item<double>();
        entry.fill_(original);
        const double numeric = (plus - minus) / (2 * h);
        const double analytic = gradient.view({-1})[flat].item<double>();
        EXPECT_NEAR(analytic, numeric, 1e-6 + 1e-5 * std::abs(numeric))
            << layers[index].name << " entry " << flat;
        EXPECT_NE(analytic, 0.0) << layers[index].name;
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, 12);
}

TEST(LoraGradients, MatchFiniteDifferencesForEpsilonPrediction) {
  expect_gradients_match_finite_differences(PredictionType::kEpsilon);
}

TEST(LoraGradients, MatchFiniteDifferencesForVPrediction) {
  expect_gradients_match_finite_differences(PredictionType::kVPrediction);
}

TEST(LoraGradients, CheckpointingRecomputesTheSameGradients) {
  GradientCase test(PredictionType::kEpsilon);
  test.loss().backward();
  std::vector<at::Tensor> plain;
  for (const auto& [name, parameter] : test.network->named_parameters()) {
    plain.push_back(parameter.grad().clone());
    parameter.mutable_grad() = at::Tensor();
  }
  test.model.unet->set_gradient_checkpointing(true);
  test.loss().backward();
  size_t i = 0;
  for (const auto& [name, parameter] : test.network->named_parameters()) {
    ASSERT_TRUE(parameter.grad().defined()) << name;
    EXPECT_LT((parameter.grad() - plain[i++]).abs().max().item<double>(), 1e-12) << name;
  }
  // The frozen base gets no gradients at all.
  for (const auto& parameter : test.model.unet->parameters()) {
    EXPECT_FALSE(parameter.grad().defined());
  }
}

// ---------------------------------------------------------------- training

// The denoising loss on fixed noise and timesteps (no min-SNR weighting): a
// measure of how well the model knows the training images, free of the
// sampling noise of the training loss itself.
double evaluation_loss(StableDiffusionCheckpoint& model, const std::vector<TrainingExample>& data) {
  at::NoGradGuard no_grad;
  StableDiffusionPipeline pipeline(model, ClipTokenizer::load_default(), "tiny");
  const at::Tensor context = pipeline.encode_prompt(data.front().caption).clone();
  const at::Tensor alphas =
      make_alphas_cumprod(SchedulerConfig::stable_diffusion(PredictionType::kEpsilon));
  Generator generator(123);
  double total = 0;
  for (const TrainingExample& example : data) {
    const at::Tensor latents = model.vae->encode(images_to_tensor({example.image})).mean *
                               model.vae->config().scaling_factor;
    for (int64_t t : {100, 300, 500, 700, 900}) {
      total += lora_training_loss(*model.unet, latents, generator.randn(latents.sizes()),
                                  at::tensor(std::vector<int64_t>{t}), context, alphas,
                                  PredictionType::kEpsilon, 0.0)
                   .item<double>();
    }
  }
  return total / static_cast<double>(data.size() * 5);
}

TEST(LoraTraining, LearnsTheSubjectAndItsExportLoadsBackToTheSameImages) {
  const auto folder = temp_folder("learn");
  StableDiffusionCheckpoint model = make_tiny_stable_diffusion(3);
  const Image before = generate(model, "a photo of sks person");
  const double loss_before = evaluation_loss(model, disc_examples());
  LoraTrainingOptions options = tiny_options();
  options.steps = 240;
  options.learning_rate = 1e-2;
  options.network.rank = 8;
  options.network.alpha = 8;
  options.checkpoint_every = 0;
  LoraTrainer trainer(model, ClipTokenizer::load_default(), disc_examples(), options);
  const LoraTrainingReport report = trainer.train(folder / "subject.safetensors", false);
  ASSERT_EQ(report.losses.size(), static_cast<size_t>(options.steps));
  const double loss_after = evaluation_loss(model, disc_examples());
  EXPECT_LT(loss_after, 0.6 * loss_before) << "the loss should fall substantially";

  const Image with_lora = generate(model, "a photo of sks person");
  // What the model can draw at best: the photo through its own VAE (a random VAE's
  // decoder cannot draw the photo itself, so raw-pixel distances measure the VAE).
  Image target;
  {
    at::NoGradGuard no_grad;
    const at::Tensor pixels = images_to_tensor({disc_image(0)});
    target = tensor_to_images(model.vae->decode(model.vae->encode(pixels).mean)).front();
  }
  EXPECT_LT(pixel_mse(with_lora, target), 0.93 * pixel_mse(before, target));

  // Export -> load -> merge gives the images of the in-memory adapter.
  trainer.network().set_enabled(false);
  EXPECT_EQ(pixel_mse(generate(model, "a photo of sks person"), before), 0.0);
  LoraFile file = load_lora(folder / "subject.safetensors");
  EXPECT_EQ(file.metadata().at("ss_network_dim"), std::to_string(options.network.rank));
  EXPECT_EQ(file.metadata().at("ss_steps"), std::to_string(options.steps));
  EXPECT_EQ(file.metadata().at("ss_resolution"), "(64, 64)");
  AppliedLoras applied = apply_loras(model, {{file, 1.0}});
  EXPECT_TRUE(applied.reports().front().unmatched.empty());
  EXPECT_EQ(applied.reports().front().applied.size(), trainer.network().layers().size());
  const Image merged = generate(model, "a photo of sks person");
  int worst = 0;
  for (size_t i = 0; i < merged.rgb.size(); ++i) {
    worst = std::max(worst, std::abs(int(merged.rgb[i]) - int(with_lora.rgb[i])));
  }
  EXPECT_LE(worst, 1);
  EXPECT_FALSE(std::filesystem::exists(training_state_path(folder / "subject.safetensors")));
  std::filesystem::remove_all(folder);
}

std::map<std::string, at::Tensor> read_all(const std::filesystem::path& path) {
  const SafetensorsFile file = SafetensorsFile::open(path);
  std::map<std::string, at::Tensor> tensors;
  for (const auto& entry : file.entries()) tensors[entry.name] = file.tensor(entry.name).clone();
  return tensors;
}

void expect_identical(const std::filesystem::path& a, const std::filesystem::path& b) {
  const auto first = read_all(a), second = read_all(b);
  ASSERT_EQ(first.size(), second.size());
  for (const auto& [name, tensor] : first) {
    ASSERT_TRUE(second.count(name)) << name;
    EXPECT_TRUE(at::equal(tensor, second.at(name))) << name;
  }
}

TEST(LoraTraining, ResumedRunEndsWithTheUninterruptedRunsWeights) {
  const auto folder = temp_folder("resume");
  for (bool text_encoder : {false, true}) {
    LoraTrainingOptions options = tiny_options();
    options.network.text_encoder = text_encoder;
    options.gradient_accumulation = 2;
    options.batch_size = 2;
    options.noise_offset = 0.05;
    const auto whole = folder / "whole.safetensors", parts = folder / "parts.safetensors";
    std::filesystem::remove(whole);
    std::filesystem::remove(parts);
    {
      LoraTrainer trainer(make_tiny_stable_diffusion(4), ClipTokenizer::load_default(),
                          disc_examples(), options);
      trainer.train(whole, false);
    }
    {
      LoraTrainer trainer(make_tiny_stable_diffusion(4), ClipTokenizer::load_default(),
                          disc_examples(), options);
      auto stop_after_three = [](const ProgressEvent& event) {
        return !(event.stage == "training" && event.step >= 3);
      };
      try {
        trainer.train(parts, false, stop_after_three);
        FAIL() << "the run should have been stopped";
      } catch (const Error& error) {
        EXPECT_EQ(error.code(), ErrorCode::kCancelled);
      }
      ASSERT_TRUE(std::filesystem::exists(training_state_path(parts)));
      EXPECT_FALSE(std::filesystem::exists(parts));
    }
    LoraTrainer resumed(make_tiny_stable_diffusion(4), ClipTokenizer::load_default(),
                        disc_examples(), options);
    // Progress counts the steps of the whole training, not only the resumed part.
    std::vector<std::pair<int64_t, int64_t>> counts;
    const LoraTrainingReport report = resumed.train(parts, true, [&](const ProgressEvent& event) {
      if (event.stage == "training") counts.emplace_back(event.step, event.total);
      return true;
    });
    ASSERT_FALSE(counts.empty());
    EXPECT_EQ(counts.front(), (std::pair<int64_t, int64_t>(3, options.steps)));
    EXPECT_EQ(counts.back(), (std::pair<int64_t, int64_t>(options.steps, options.steps)));
    EXPECT_EQ(report.resumed_from, 3);
    EXPECT_EQ(report.losses.size(), 3u);
    expect_identical(whole, parts);
    const auto metadata = SafetensorsFile::open(parts).metadata();
    EXPECT_EQ(metadata.at("ss_network_train_unet_only"), text_encoder ? "False" : "True");
    EXPECT_TRUE(read_all(parts).count(
                    "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight") ==
                text_encoder);
  }
  std::filesystem::remove_all(folder);
}

// Samples are written every `sample_every` steps and handed over as they are written, before
// the progress of that step is reported (the studio stores each while training runs).
TEST(LoraTraining, SamplesAreReportedAsTheyAreWritten) {
  const auto folder = temp_folder("samples");
  LoraTrainingOptions options = tiny_options();
  options.sample_every = 2;
  options.sample_steps = 2;
  options.sample_seed = 5;
  std::vector<std::pair<int64_t, std::filesystem::path>> handed;
  int64_t last_progress_step = 0;
  options.on_sample = [&](int64_t step, const std::filesystem::path& png) {
    EXPECT_TRUE(std::filesystem::exists(png)) << png;
    EXPECT_EQ(last_progress_step, step - 1) << "the sample comes before its step's progress";
    handed.emplace_back(step, png);
  };
  LoraTrainer trainer(make_tiny_stable_diffusion(4), ClipTokenizer::load_default(), disc_examples(),
                      options);
  const LoraTrainingReport report =
      trainer.train(folder / "x.safetensors", false, [&](const ProgressEvent& event) {
        if (event.stage == "training") last_progress_step = event.step;
        return true;
      });
  ASSERT_EQ(handed.size(), 3u);
  EXPECT_EQ(handed[0].first, 2);
  EXPECT_EQ(handed[2].first, 6);
  ASSERT_EQ(report.samples.size(), 3u);
  EXPECT_EQ(report.samples[1], handed[1].second);
  const Image sample = read_image(handed[2].second);
  EXPECT_EQ(sample.width, options.resolution);
  std::filesystem::remove_all(folder);
}

TEST(LoraTraining, ResumeRefusesOtherSettingsAndMissingState) {
  const auto folder = temp_folder("refuse");
  const auto output = folder / "x.safetensors";
  LoraTrainingOptions options = tiny_options();
  {
    LoraTrainer trainer(make_tiny_stable_diffusion(4), ClipTokenizer::load_default(),
                        disc_examples(), options);
    try {
      trainer.train(output, true);
      FAIL();
    } catch (const Error& error) {
      EXPECT_EQ(error.code(), ErrorCode::kNotFound);
      EXPECT_NE(std::string(error.what()).find("without --resume"), std::string::npos);
    }
    EXPECT_THROW(trainer.train(output, false,
                               [](const ProgressEvent& event) {
                                 return !(event.stage == "training" && event.step >= 3);
                               }),
                 Error);
  }
  options.network.rank = 8;
  LoraTrainer other(make_tiny_stable_diffusion(4), ClipTokenizer::load_default(), disc_examples(),
                    options);
  try {
    other.train(output, true);
    FAIL();
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(error.what()).find("rank"), std::string::npos) << error.what();
  }
  std::filesystem::remove_all(folder);
}

TEST(LoraTraining, BadOptionsAreRejectedWithTheirName) {
  auto expect_rejected = [](LoraTrainingOptions options, const std::string& words) {
    try {
      LoraTrainer trainer(make_tiny_stable_diffusion(4), ClipTokenizer::load_default(),
                          disc_examples(), options);
      FAIL() << words;
    } catch (const Error& error) {
      EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(error.what()).find(words), std::string::npos) << error.what();
    }
  };
  LoraTrainingOptions options = tiny_options();
  options.steps = 0;
  expect_rejected(options, "--steps");
  options = tiny_options();
  options.learning_rate = -1;
  expect_rejected(options, "--lr");
  options = tiny_options();
  options.network.rank = 0;
  expect_rejected(options, "rank");
  options = tiny_options();
  options.resolution = 60;
  expect_rejected(options, "multiple of 8");
}

TEST(LoraNetwork, StartsAtTheBaseModelAndTargetsAttentionAndFeedForward) {
  StableDiffusionCheckpoint model = make_tiny_stable_diffusion(8);
  const Image base = generate(model, "a portrait");
  LoraNetworkOptions options;
  options.text_encoder = true;
  LoraNetwork network(model, options);
  EXPECT_EQ(pixel_mse(generate(model, "a portrait"), base), 0.0);
  int unet = 0, text = 0;
  for (const LoraLayer& layer : network.layers()) {
    (layer.in_text_encoder ? text : unet)++;
    EXPECT_TRUE(layer.name.rfind("lora_unet_", 0) == 0 || layer.name.rfind("lora_te_", 0) == 0)
        << layer.name;
  }
  // Per transformer block: attn1 and attn2 q/k/v/out, ff in and out = 10.
  EXPECT_EQ(unet % 10, 0);
  EXPECT_GT(unet, 0);
  EXPECT_EQ(text, 6 * model.text_encoders[0].encoder->config().num_layers);
}

}  // namespace
}  // namespace doppel

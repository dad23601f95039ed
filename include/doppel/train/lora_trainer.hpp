// DreamBooth-LoRA training on a person's photos: latents and caption
// embeddings computed once, uniform timesteps, eps / v-prediction targets with
// optional min-SNR weighting and noise offset, AdamW with warm-up + cosine,
// gradient accumulation, optional gradient checkpointing, checkpoints that a
// killed run resumes from to the same final weights, and a kohya-format file.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "doppel/checkpoint/stable_diffusion.hpp"
#include "doppel/core/progress.hpp"
#include "doppel/diffusion/clip_tokenizer.hpp"
#include "doppel/diffusion/noise_schedule.hpp"
#include "doppel/models/unet.hpp"
#include "doppel/train/lora_network.hpp"
#include "doppel/train/optimizer.hpp"
#include "doppel/train/training_data.hpp"

namespace doppel {

struct LoraTrainingOptions {
  LoraNetworkOptions network;  // rank, alpha, text encoder, init seed
  int64_t steps = 400;         // optimiser steps
  int64_t batch_size = 1;
  int64_t gradient_accumulation = 1;  // micro-batches per optimiser step
  double learning_rate = 1e-4;
  double text_encoder_learning_rate = 5e-5;
  int64_t warmup_steps = -1;  // < 0: 5% of the steps
  AdamWOptions adamw;
  double min_snr_gamma = 5.0;  // 0 turns min-SNR weighting off (arXiv 2303.09556)
  double noise_offset = 0.0;   // e.g. 0.05 for darker darks and brighter brights
  int resolution = 512;
  bool gradient_checkpointing = false;
  uint64_t seed = 0;              // data order, timesteps and noise
  int64_t checkpoint_every = 50;  // steps between resumable checkpoints (0: none)
  int64_t sample_every = 0;       // steps between sample images (0: none)
  std::string sample_prompt;      // default: the first caption
  uint64_t sample_seed = 0;
  int64_t sample_steps = 20;
  // Called with each sample as soon as it is written (the studio shows them while training
  // runs); not part of the run's settings.
  std::function<void(int64_t step, const std::filesystem::path& png)> on_sample;
  // Recorded in the LoRA's ss_* metadata.
  std::string model_name;
  std::string trigger;
  std::string class_word;
};

struct LoraTrainingReport {
  int64_t steps = 0;           // optimiser steps in the finished LoRA
  int64_t resumed_from = 0;    // step the run continued from (0: a fresh run)
  std::vector<double> losses;  // one per step run in this process
  std::vector<std::filesystem::path> samples;
  std::filesystem::path lora;
  double seconds = 0;
};

// Where a run writes its resumable state: "<output stem>.training-state.safetensors".
std::filesystem::path training_state_path(const std::filesystem::path& output);

// The loss of one batch: latents noised at integer `timesteps` ([B]), the
// UNet's prediction against the eps or v target, per-sample MSE weighted by
// min(SNR, gamma) / SNR (eps) or / (SNR + 1) (v) when gamma > 0, averaged.
// Computed in fp32 whatever the UNet's dtype.
at::Tensor lora_training_loss(UNetModelImpl& unet, const at::Tensor& latents,
                              const at::Tensor& noise, const at::Tensor& timesteps,
                              const at::Tensor& context, const at::Tensor& alphas_cumprod,
                              PredictionType prediction, double min_snr_gamma);

class LoraTrainer {
 public:
  // Validates the options (kInvalidArgument saying which) and attaches a new
  // LoRA to `model` (shared modules: the caller's model sees it too). Photos
  // are centre-cropped and resized to the training resolution.
  LoraTrainer(StableDiffusionCheckpoint model, const ClipTokenizer& tokenizer,
              std::vector<TrainingExample> examples, const LoraTrainingOptions& options);
  ~LoraTrainer();

  // Trains to options.steps and writes the kohya LoRA to `output` (atomically).
  // With `resume`, continues from the state file of an earlier run with the
  // same settings and data (kInvalidArgument when they differ, kNotFound when
  // there is none). Progress stages: "caching", "training" (detail: loss, lr).
  LoraTrainingReport train(const std::filesystem::path& output, bool resume,
                           const ProgressCallback& progress = {});

  LoraNetwork& network() { return *network_; }

 private:
  struct Cache;
  void build_cache(const ProgressCallback& progress);
  at::Tensor encode_captions(const std::vector<int64_t>& indices);
  std::vector<int64_t> batch_indices(int64_t micro_batch) const;
  std::string settings_fingerprint() const;
  void save_state(const std::filesystem::path& path, int64_t step) const;
  int64_t load_state(const std::filesystem::path& path);
  void save_lora(const std::filesystem::path& path, int64_t step, double started_at) const;
  std::filesystem::path write_sample(const std::filesystem::path& output, int64_t step);

  StableDiffusionCheckpoint model_;
  ClipTokenizer tokenizer_;
  std::vector<TrainingExample> examples_;
  LoraTrainingOptions options_;
  std::unique_ptr<LoraNetwork> network_;
  std::unique_ptr<AdamW> unet_optimizer_;
  std::unique_ptr<AdamW> text_encoder_optimizer_;
  std::unique_ptr<Cache> cache_;
  SchedulerConfig scheduler_;
  at::Tensor alphas_cumprod_;
};

}  // namespace doppel

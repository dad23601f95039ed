// doppel train: a person's LoRA from a folder of their photos.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <iostream>

#include "app/command_registry.hpp"
#include "doppel/checkpoint/stable_diffusion.hpp"
#include "doppel/checkpoint/tiny_model.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/log.hpp"
#include "doppel/core/runtime.hpp"
#include "doppel/face/face_analyzer.hpp"
#include "doppel/face/photo_intake.hpp"
#include "doppel/train/lora_trainer.hpp"

namespace doppel::app {
namespace {

struct TrainOptions {
  std::string images;
  std::string model;
  bool tiny_demo = false;
  std::string config;
  std::string tokenizer;
  std::string out;
  std::string trigger = "sks";
  std::string class_word = "person";
  std::string dtype = "auto";
  double alpha = -1;  // < 0: equal to the rank (scale 1)
  bool resume = false;
  bool no_face_crop = false;
  LoraTrainingOptions training;
};

// Replaces each photo by its aligned portrait crop; photos the face intake
// rejects are reported with the reason and left out.
std::vector<TrainingExample> crop_to_portraits(std::vector<TrainingExample> examples,
                                               int resolution) {
  FaceAnalyzer analyzer{FaceAnalyzerOptions{}};
  IntakeOptions options;
  options.portrait.size = resolution;
  PhotoIntake intake(analyzer, options);
  std::vector<PhotoVerdict> verdicts;
  for (const TrainingExample& example : examples) {
    verdicts.push_back(intake.examine(example.image, example.source));
  }
  intake.apply_set_gates(verdicts);
  std::vector<TrainingExample> accepted;
  for (size_t i = 0; i < examples.size(); ++i) {
    const PhotoVerdict& verdict = verdicts[i];
    std::string reasons;
    for (const IntakeReason& reason : verdict.reasons) {
      if (reason.rejects) reasons += (reasons.empty() ? "" : "; ") + reason.message;
    }
    if (!verdict.accepted) {
      std::cerr << "skipping " << examples[i].source << ": " << reasons << "\n";
      continue;
    }
    examples[i].image = verdict.portrait.image;
    accepted.push_back(std::move(examples[i]));
  }
  if (accepted.empty()) {
    throw Error(ErrorCode::kInvalidArgument,
                "the face check accepted none of the photos (reasons above); add clear photos "
                "of one person's face, or train on the images as they are with --no-face-crop");
  }
  std::cerr << "using " << accepted.size() << " of " << examples.size() << " photos\n";
  return accepted;
}

// The arguments that need no photo and no model read, checked before the face check of every
// photo (minutes on a large folder) so a typo fails at once.
void check_arguments(const TrainOptions& options) {
  std::string extension = std::filesystem::path(options.out).extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (extension != ".safetensors")
    throw Error(
        ErrorCode::kInvalidArgument,
        "--out must name a .safetensors file (the format A1111, ComfyUI and doppel load), "
        "e.g. --out " +
            (std::filesystem::path(options.out).replace_extension(".safetensors").string()));
  if (!options.tiny_demo && options.model.empty())
    throw Error(ErrorCode::kInvalidArgument,
                "--model is required: the base checkpoint (.safetensors) or diffusers folder "
                "to train on (or --tiny-demo to try training on a tiny built-in model)");
  if (!options.tiny_demo && !std::filesystem::exists(options.model))
    throw Error(ErrorCode::kNotFound, "--model " + options.model +
                                          " does not exist; give the path of a .safetensors "
                                          "checkpoint or a diffusers folder");
  const int resolution = options.training.resolution;
  if (resolution < 64 || resolution > 2048 || resolution % 8 != 0)
    throw Error(ErrorCode::kInvalidArgument,
                "--resolution must be a multiple of 8 from 64 to 2048 (512 for SD 1.x, 768 for "
                "SD 2.x), got " +
                    std::to_string(resolution));
}

// What to do with the LoRA now: the file, the trigger words, and a command to try it.
void print_usage_hint(const TrainOptions& options, const std::filesystem::path& lora) {
  const std::string subject = options.trigger + " " + options.class_word;
  const std::string model = options.tiny_demo ? "--tiny-demo" : "--model " + options.model;
  std::cerr << "\nThe LoRA is ready: " << lora.string() << "\n"
            << "Put \"" << subject << "\" in a prompt to get the person, for example:\n"
            << "  doppel generate " << model << " --lora " << lora.string()
            << ":0.9 --prompt \"a portrait photo of " << subject << ", natural light\"\n"
            << "In AUTOMATIC1111 or ComfyUI: copy it to models/Lora and add <lora:"
            << lora.stem().string() << ":0.9> to a prompt with \"" << subject << "\".\n";
}

int run_train(TrainOptions& options) {
  check_arguments(options);
  LoraTrainingOptions& training = options.training;
  training.network.alpha =
      options.alpha < 0 ? static_cast<double>(training.network.rank) : options.alpha;
  training.trigger = options.trigger;
  training.class_word = options.class_word;

  TrainingFolder folder =
      read_training_folder(options.images, default_caption(options.trigger, options.class_word));
  for (const std::string& skipped : folder.skipped) std::cerr << "skipping " << skipped << "\n";
  std::vector<TrainingExample> examples =
      options.no_face_crop ? std::move(folder.examples)
                           : crop_to_portraits(std::move(folder.examples), training.resolution);

  StableDiffusionCheckpoint model;
  if (options.tiny_demo) {
    model = make_tiny_stable_diffusion();
    training.model_name = "doppel-tiny-demo";
  } else {
    ModelLoadOptions load;
    load.path = options.model;
    if (!options.config.empty()) load.config_path = options.config;
    load.dtype = parse_compute_dtype(options.dtype);
    load.compute_hash = true;  // recorded in the LoRA's ss_new_sd_model_hash
    log_info("loading " + options.model);
    model = load_stable_diffusion(load);
    training.model_name = std::filesystem::path(options.model).filename().string();
  }
  const ClipTokenizer tokenizer = options.tokenizer.empty()
                                      ? ClipTokenizer::load_default()
                                      : (std::filesystem::is_directory(options.tokenizer)
                                             ? ClipTokenizer::from_folder(options.tokenizer)
                                             : ClipTokenizer::from_bpe_file(options.tokenizer));
  LoraTrainer trainer(std::move(model), tokenizer, std::move(examples), training);
  const LoraTrainingReport report =
      trainer.train(options.out, options.resume, make_terminal_progress_bar());
  for (const auto& sample : report.samples) std::cerr << "sample: " << sample.string() << "\n";
  std::cout << report.lora.string() << "\n";
  print_usage_hint(options, report.lora);
  return 0;
}

CommandRegistration train_command{
    "train", "Train a person's LoRA on a folder of their photos", [](CLI::App& command) {
      auto options = std::make_shared<TrainOptions>();
      LoraTrainingOptions& t = options->training;
      command.add_option("--images", options->images, "Folder of the person's photos")->required();
      command.add_option("--out", options->out, "The LoRA file to write (.safetensors)")
          ->required();
      command.add_option("--model", options->model, "Base checkpoint or diffusers folder");
      command.add_flag("--tiny-demo", options->tiny_demo,
                       "Train on a tiny random-weight model built in code (no download)");
      command.add_option("--config", options->config,
                         "diffusers folder or .yaml/.json with the model's configs");
      command.add_option("--tokenizer", options->tokenizer,
                         "bpe_simple_vocab_16e6.txt(.gz) or a tokenizer folder");
      command.add_option("--trigger", options->trigger, "The person's made-up word in prompts")
          ->capture_default_str();
      command.add_option("--class", options->class_word, "What the person is (man, woman, ...)")
          ->capture_default_str();
      command.add_option("--steps", t.steps, "Optimiser steps")->capture_default_str();
      command.add_option("--rank", t.network.rank, "LoRA rank")->capture_default_str();
      command.add_option("--alpha", options->alpha, "LoRA alpha (default: the rank)");
      command.add_option("--lr", t.learning_rate, "Learning rate")->capture_default_str();
      command
          .add_option("--text-encoder-lr", t.text_encoder_learning_rate,
                      "Learning rate of the text-encoder LoRA")
          ->capture_default_str();
      command.add_option("--batch", t.batch_size, "Images per micro-batch")->capture_default_str();
      command
          .add_option("--gradient-accumulation", t.gradient_accumulation,
                      "Micro-batches per optimiser step")
          ->capture_default_str();
      command.add_option("--resolution", t.resolution, "Training size in pixels")
          ->capture_default_str();
      command.add_option("--warmup", t.warmup_steps, "Warm-up steps (default 5% of --steps)");
      command.add_option("--min-snr-gamma", t.min_snr_gamma, "Min-SNR weighting (0 = off)")
          ->capture_default_str();
      command.add_option("--noise-offset", t.noise_offset, "Noise offset (0 = off)")
          ->capture_default_str();
      command.add_flag("--text-encoder", t.network.text_encoder,
                       "Also train the text encoder (SD 1.x)");
      command.add_flag("--gradient-checkpointing", t.gradient_checkpointing,
                       "Recompute activations in backward: less memory, more time");
      command.add_option("--seed", t.seed, "Seed of data order, noise and timesteps")
          ->capture_default_str();
      command
          .add_option("--checkpoint-every", t.checkpoint_every,
                      "Steps between resumable checkpoints (0 = none)")
          ->capture_default_str();
      command.add_flag("--resume", options->resume, "Continue an interrupted run");
      command.add_option("--sample-every", t.sample_every,
                         "Write a sample image every N steps (0 = never)");
      command.add_option("--sample-prompt", t.sample_prompt,
                         "Prompt of the samples (default: the first caption)");
      command.add_option("--sample-seed", t.sample_seed, "Seed of the samples");
      command.add_flag("--no-face-crop", options->no_face_crop,
                       "Use the images as they are instead of face-checked portrait crops");
      command.add_option("--dtype", options->dtype, "fp32, bf16 or auto")->capture_default_str();
      return [options]() { return run_train(*options); };
    }};

}  // namespace
}  // namespace doppel::app

#include "doppel/train/lora_trainer.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "doppel/core/error.hpp"
#include "doppel/core/image.hpp"
#include "doppel/core/log.hpp"
#include "doppel/core/random.hpp"
#include "doppel/core/safetensors.hpp"
#include "doppel/diffusion/stable_diffusion_pipeline.hpp"

namespace doppel {

namespace {

constexpr const char* kStepKey = "doppel_training_step";
constexpr const char* kSettingsKey = "doppel_training_settings";
constexpr const char* kStartedKey = "doppel_training_started_at";

// splitmix64: independent, reproducible seeds for each micro-batch and epoch,
// so any step's randomness is known without replaying the steps before it.
uint64_t mix_seed(uint64_t seed, uint64_t stream, uint64_t index) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ULL * (stream * 0x100000001B3ULL + index + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t fnv1a(uint64_t hash, const void* data, size_t size) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < size; ++i) hash = (hash ^ bytes[i]) * 0x100000001B3ULL;
  return hash;
}

double unix_time() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string python_bool(bool value) {
  return value ? "True" : "False";
}

}  // namespace

struct LoraTrainer::Cache {
  std::vector<at::Tensor> latents;   // per example [1, 4, h, w] fp32
  std::vector<at::Tensor> contexts;  // per example [1, 77, D] (empty when training the encoder)
  std::vector<std::vector<int64_t>> token_ids;  // per example, one 77-token window
};

std::filesystem::path training_state_path(const std::filesystem::path& output) {
  std::filesystem::path path = output;
  path.replace_filename(output.stem().string() + ".training-state.safetensors");
  return path;
}

at::Tensor lora_training_loss(UNetModelImpl& unet, const at::Tensor& latents,
                              const at::Tensor& noise, const at::Tensor& timesteps,
                              const at::Tensor& context, const at::Tensor& alphas_cumprod,
                              PredictionType prediction, double min_snr_gamma) {
  const at::Tensor alpha_bar = alphas_cumprod.to(latents.device(), at::kFloat)
                                   .index_select(0, timesteps.to(latents.device()));
  const at::Tensor signal = alpha_bar.sqrt().view({-1, 1, 1, 1}).to(latents.scalar_type());
  const at::Tensor sigma = (1.0 - alpha_bar).sqrt().view({-1, 1, 1, 1}).to(latents.scalar_type());
  const at::Tensor noisy = signal * latents + sigma * noise;
  const at::Tensor predicted =
      unet.forward(noisy, timesteps.to(at::kFloat), context).to(latents.scalar_type());
  const at::Tensor target =
      prediction == PredictionType::kEpsilon ? noise : signal * noise - sigma * latents;
  at::Tensor per_sample = (predicted - target).pow(2).mean({1, 2, 3});
  if (min_snr_gamma > 0) {
    const at::Tensor snr = (alpha_bar / (1.0 - alpha_bar)).to(per_sample.scalar_type());
    const at::Tensor clipped = at::clamp_max(snr, min_snr_gamma);
    per_sample = per_sample *
                 (prediction == PredictionType::kEpsilon ? clipped / snr : clipped / (snr + 1.0));
  }
  return per_sample.mean();
}

LoraTrainer::LoraTrainer(StableDiffusionCheckpoint model, const ClipTokenizer& tokenizer,
                         std::vector<TrainingExample> examples, const LoraTrainingOptions& options)
    : model_(std::move(model)),
      tokenizer_(tokenizer),
      examples_(std::move(examples)),
      options_(options) {
  auto require = [](bool condition, const std::string& message) {
    if (!condition) throw Error(ErrorCode::kInvalidArgument, message);
  };
  require(options_.steps >= 1 && options_.steps <= 1000000, "--steps must be 1..1000000");
  require(options_.batch_size >= 1 && options_.batch_size <= 64, "--batch must be 1..64");
  require(options_.gradient_accumulation >= 1 && options_.gradient_accumulation <= 1024,
          "gradient accumulation must be 1..1024");
  require(options_.learning_rate > 0 && options_.learning_rate < 1, "--lr must be in (0, 1)");
  require(options_.text_encoder_learning_rate > 0 && options_.text_encoder_learning_rate < 1,
          "the text encoder learning rate must be in (0, 1)");
  require(options_.min_snr_gamma >= 0, "min-SNR gamma must be 0 (off) or positive");
  require(options_.noise_offset >= 0 && options_.noise_offset < 1,
          "noise offset must be in [0, 1)");
  require(options_.checkpoint_every >= 0 && options_.sample_every >= 0,
          "checkpoint and sample intervals must be 0 (off) or positive");
  require(!examples_.empty(), "no training images");
  if (options_.warmup_steps < 0) options_.warmup_steps = options_.steps / 20;
  require(options_.warmup_steps <= options_.steps, "warm-up steps exceed the step count");
  if (!model_.unet || !model_.vae || model_.text_encoders.empty()) {
    throw Error(ErrorCode::kInvalidFile, "the base model lacks a UNet, VAE or text encoder");
  }
  if (model_.family != ModelFamily::kSd1 && model_.family != ModelFamily::kSd2) {
    throw Error(ErrorCode::kUnsupported, "LoRA training supports SD 1.x and 2.x base models");
  }
  if (model_.inpainting) {
    throw Error(ErrorCode::kUnsupported,
                "this is an inpainting checkpoint; train on the ordinary model it was made from");
  }
  const TextEncoderSlot& slot = model_.text_encoders.front();
  if (slot.tokenizer_path) tokenizer_ = ClipTokenizer::from_folder(*slot.tokenizer_path);
  tokenizer_ = tokenizer_.with_pad_id(slot.pad_token_id);
  scheduler_ = SchedulerConfig::from_json(model_.scheduler_config, model_.config_origin);
  alphas_cumprod_ = make_alphas_cumprod(scheduler_);
  for (TrainingExample& example : examples_) {
    example.image = square_training_image(example.image, options_.resolution);
  }

  // Frozen base: no weight gradients are computed or kept for it.
  for (auto& parameter : model_.unet->parameters()) parameter.requires_grad_(false);
  for (auto& parameter : model_.vae->parameters()) parameter.requires_grad_(false);
  for (auto& parameter : slot.encoder->parameters()) parameter.requires_grad_(false);
  network_ = std::make_unique<LoraNetwork>(model_, options_.network);
  std::vector<at::Tensor> unet_parameters, text_parameters;
  for (const LoraLayer& layer : network_->layers()) {
    auto& group = layer.in_text_encoder ? text_parameters : unet_parameters;
    group.push_back(layer.adapter->down);
    group.push_back(layer.adapter->up);
  }
  unet_optimizer_ = std::make_unique<AdamW>(unet_parameters, options_.adamw);
  if (!text_parameters.empty()) {
    text_encoder_optimizer_ = std::make_unique<AdamW>(text_parameters, options_.adamw);
  }
  model_.unet->set_gradient_checkpointing(options_.gradient_checkpointing);
}

LoraTrainer::~LoraTrainer() {
  if (model_.unet) model_.unet->set_gradient_checkpointing(false);
}

void LoraTrainer::build_cache(const ProgressCallback& progress) {
  cache_ = std::make_unique<Cache>();
  const at::Device device = model_.unet->parameters().front().device();
  ProgressTracker tracker(progress, "caching", static_cast<int64_t>(examples_.size()));
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < examples_.size(); ++i) {
    const at::Tensor pixels = images_to_tensor({examples_[i].image}).to(device);
    // The posterior mean: one fixed latent per photo (kohya's cached latents).
    const at::Tensor mean = model_.vae->encode(pixels).mean.to(at::kFloat);
    cache_->latents.push_back(mean * model_.vae->config().scaling_factor);
    auto chunks = tokenizer_.encode_chunks(examples_[i].caption);
    if (chunks.size() > 1) {
      log_warning("caption of " + examples_[i].source +
                  " is longer than 75 tokens; training uses its first 75");
    }
    cache_->token_ids.push_back(chunks.front());
    // Without a text-encoder LoRA the conditioning never changes: encode it once.
    if (!options_.network.text_encoder) {
      cache_->contexts.push_back(encode_captions({static_cast<int64_t>(i)}));
    }
    tracker.advance(static_cast<int64_t>(i) + 1);
  }
}

at::Tensor LoraTrainer::encode_captions(const std::vector<int64_t>& indices) {
  const at::Device device = model_.unet->parameters().front().device();
  std::vector<int64_t> flat;
  for (int64_t index : indices) {
    const auto& ids = cache_->token_ids[index];
    flat.insert(flat.end(), ids.begin(), ids.end());
  }
  const int64_t count = static_cast<int64_t>(indices.size());
  const at::Tensor ids = at::tensor(flat, at::kLong).view({count, -1}).to(device);
  ClipTextEncoder& encoder = *model_.text_encoders.front().encoder;
  return encoder.skip_layers(encoder.forward(ids), model_.conditioning_clip_skip).to(at::kFloat);
}

std::vector<int64_t> LoraTrainer::batch_indices(int64_t micro_batch) const {
  // The examples in an endless sequence of epochs, each in its own shuffled order.
  const int64_t count = static_cast<int64_t>(examples_.size());
  std::vector<int64_t> indices;
  int64_t cached_epoch = -1;
  at::Tensor order;
  for (int64_t k = 0; k < options_.batch_size; ++k) {
    const int64_t position = micro_batch * options_.batch_size + k;
    const int64_t epoch = position / count;
    if (epoch != cached_epoch) {
      Generator generator(mix_seed(options_.seed, 1, static_cast<uint64_t>(epoch)));
      order = at::randperm(count, generator.torch_generator(), at::TensorOptions(at::kLong));
      cached_epoch = epoch;
    }
    indices.push_back(order[position % count].item<int64_t>());
  }
  return indices;
}

std::string LoraTrainer::settings_fingerprint() const {
  uint64_t data_hash = 0xcbf29ce484222325ULL;
  for (const TrainingExample& example : examples_) {
    data_hash = fnv1a(data_hash, example.caption.data(), example.caption.size());
    data_hash = fnv1a(data_hash, example.image.rgb.data(), example.image.rgb.size());
  }
  const nlohmann::json settings = {
      {"rank", options_.network.rank},
      {"alpha", options_.network.alpha},
      {"text_encoder", options_.network.text_encoder},
      {"init_seed", options_.network.seed},
      {"steps", options_.steps},
      {"batch_size", options_.batch_size},
      {"gradient_accumulation", options_.gradient_accumulation},
      {"learning_rate", options_.learning_rate},
      {"text_encoder_learning_rate", options_.text_encoder_learning_rate},
      {"warmup_steps", options_.warmup_steps},
      {"min_snr_gamma", options_.min_snr_gamma},
      {"noise_offset", options_.noise_offset},
      {"resolution", options_.resolution},
      {"seed", options_.seed},
      {"base_model", model_.sha256},
      {"dtype", std::string(c10::toString(model_.unet->parameters().front().scalar_type()))},
      {"data", std::to_string(data_hash)},
  };
  return settings.dump();
}

void LoraTrainer::save_state(const std::filesystem::path& path, int64_t step) const {
  std::map<std::string, at::Tensor> tensors;
  size_t unet_index = 0, text_index = 0;
  for (const auto& [name, parameter] : network_->named_parameters()) {
    tensors["lora/" + name] = parameter.detach().to(at::kCPU);
    const bool text = name.rfind("lora_te", 0) == 0;
    AdamW& optimizer = text ? *text_encoder_optimizer_ : *unet_optimizer_;
    const size_t index = text ? text_index++ : unet_index++;
    tensors["adam_m/" + name] = optimizer.first_moments()[index].to(at::kCPU);
    tensors["adam_v/" + name] = optimizer.second_moments()[index].to(at::kCPU);
  }
  save_safetensors(path, tensors,
                   {{kStepKey, std::to_string(step)}, {kSettingsKey, settings_fingerprint()}});
}

int64_t LoraTrainer::load_state(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) {
    throw Error(ErrorCode::kNotFound, "nothing to resume: " + path.string() +
                                          " does not exist (run without --resume to start)");
  }
  const SafetensorsFile file = SafetensorsFile::open(path);
  const auto& metadata = file.metadata();
  auto step_entry = metadata.find(kStepKey);
  auto settings_entry = metadata.find(kSettingsKey);
  if (step_entry == metadata.end() || settings_entry == metadata.end()) {
    throw Error(ErrorCode::kInvalidFile, path.string() + " is not a doppel training state");
  }
  const nlohmann::json saved = nlohmann::json::parse(settings_entry->second, nullptr, false);
  const nlohmann::json current = nlohmann::json::parse(settings_fingerprint());
  if (saved.is_discarded() || !saved.is_object()) {
    throw Error(ErrorCode::kInvalidFile, path.string() + " has damaged training settings");
  }
  for (const auto& [key, value] : current.items()) {
    if (!saved.contains(key) || saved[key] != value) {
      const std::string what = key == "data" ? "the training photos or captions" : key;
      throw Error(ErrorCode::kInvalidArgument,
                  "cannot resume: " + what + " differs from the interrupted run (" +
                      (saved.contains(key) ? saved[key].dump() : "absent") + " then, " +
                      value.dump() + " now); use the same settings or start afresh");
    }
  }
  std::map<std::string, at::Tensor> lora;
  for (const auto& entry : file.entries()) {
    if (entry.name.rfind("lora/", 0) == 0) lora[entry.name.substr(5)] = file.tensor(entry.name);
  }
  network_->load_parameters(lora);
  size_t unet_index = 0, text_index = 0;
  at::NoGradGuard no_grad;
  for (const auto& [name, parameter] : network_->named_parameters()) {
    const bool text = name.rfind("lora_te", 0) == 0;
    AdamW& optimizer = text ? *text_encoder_optimizer_ : *unet_optimizer_;
    const size_t index = text ? text_index++ : unet_index++;
    for (const char* moment : {"adam_m/", "adam_v/"}) {
      const std::string key = moment + name;
      if (!file.contains(key)) {
        throw Error(ErrorCode::kInvalidFile, path.string() + " lacks " + key);
      }
      auto& moments = moment[5] == 'm' ? optimizer.first_moments() : optimizer.second_moments();
      moments[index].copy_(file.tensor(key));
    }
  }
  int64_t step = 0;
  try {
    step = std::stoll(step_entry->second);
  } catch (const std::exception&) {
    throw Error(ErrorCode::kInvalidFile, path.string() + " has a damaged step count");
  }
  if (step < 0 || step > options_.steps) {
    throw Error(ErrorCode::kInvalidFile, path.string() + " has an impossible step count");
  }
  unet_optimizer_->set_step_count(step);
  if (text_encoder_optimizer_) text_encoder_optimizer_->set_step_count(step);
  return step;
}

void LoraTrainer::save_lora(const std::filesystem::path& path, int64_t step,
                            double started_at) const {
  // kohya-ss sd-scripts' ss_* keys, so A1111/ComfyUI and LoRA browsers show them.
  nlohmann::json tag_frequency = nlohmann::json::object();
  for (const TrainingExample& example : examples_) {
    std::stringstream tags(example.caption);
    std::string tag;
    while (std::getline(tags, tag, ',')) {
      const auto first = tag.find_first_not_of(' ');
      if (first == std::string::npos) continue;
      tag = tag.substr(first, tag.find_last_not_of(' ') - first + 1);
      tag_frequency[tag] = tag_frequency.value(tag, 0) + 1;
    }
  }
  const int64_t count = static_cast<int64_t>(examples_.size());
  const bool sd2 = model_.family == ModelFamily::kSd2;
  const at::ScalarType dtype = model_.unet->parameters().front().scalar_type();
  const std::string resolution = std::to_string(options_.resolution);
  std::map<std::string, std::string> metadata = {
      {"ss_network_module", "networks.lora"},
      {"ss_network_dim", std::to_string(options_.network.rank)},
      {"ss_network_alpha", format_number(options_.network.alpha)},
      {"ss_base_model_version", sd2 ? "sd_v2" : "sd_v1"},
      {"ss_v2", python_bool(sd2)},
      {"ss_v_parameterization",
       python_bool(scheduler_.prediction_type == PredictionType::kVPrediction)},
      {"ss_sd_model_name", options_.model_name},
      {"ss_new_sd_model_hash", model_.sha256},
      {"ss_sd_model_hash", model_.model_hash},
      {"ss_resolution", "(" + resolution + ", " + resolution + ")"},
      {"ss_max_train_steps", std::to_string(options_.steps)},
      {"ss_steps", std::to_string(step)},
      {"ss_epoch",
       std::to_string((step * options_.batch_size * options_.gradient_accumulation + count - 1) /
                      count)},
      {"ss_num_train_images", std::to_string(count)},
      {"ss_batch_size_per_device", std::to_string(options_.batch_size)},
      {"ss_gradient_accumulation_steps", std::to_string(options_.gradient_accumulation)},
      {"ss_gradient_checkpointing", python_bool(options_.gradient_checkpointing)},
      {"ss_learning_rate", format_number(options_.learning_rate)},
      {"ss_unet_lr", format_number(options_.learning_rate)},
      {"ss_text_encoder_lr",
       options_.network.text_encoder ? format_number(options_.text_encoder_learning_rate) : "None"},
      {"ss_network_train_unet_only", python_bool(!options_.network.text_encoder)},
      {"ss_lr_scheduler", "cosine"},
      {"ss_lr_warmup_steps", std::to_string(options_.warmup_steps)},
      {"ss_optimizer",
       "torch.optim.AdamW(weight_decay=" + format_number(options_.adamw.weight_decay) + ")"},
      {"ss_min_snr_gamma",
       options_.min_snr_gamma > 0 ? format_number(options_.min_snr_gamma) : "None"},
      {"ss_noise_offset",
       options_.noise_offset > 0 ? format_number(options_.noise_offset) : "None"},
      {"ss_mixed_precision", dtype == at::kBFloat16 ? "bf16" : "no"},
      {"ss_seed", std::to_string(options_.seed)},
      {"ss_training_started_at", format_number(started_at)},
      {"ss_training_finished_at", format_number(unix_time())},
      {"ss_output_name", path.stem().string()},
      {"ss_tag_frequency", nlohmann::json{{"img", tag_frequency}}.dump()},
      {"ss_dataset_dirs", nlohmann::json{{"img", {{"n_repeats", 1}, {"img_count", count}}}}.dump()},
      {"ss_training_comment", "trained with doppel; trigger: " + options_.trigger},
      {"doppel_trigger", options_.trigger},
      {"doppel_class", options_.class_word},
  };
  save_safetensors(path, network_->kohya_tensors(), metadata);
}

std::filesystem::path LoraTrainer::write_sample(const std::filesystem::path& output, int64_t step) {
  StableDiffusionPipeline pipeline(model_, tokenizer_, options_.model_name);
  GenerationRequest request;
  request.prompt =
      options_.sample_prompt.empty() ? examples_.front().caption : options_.sample_prompt;
  request.width = request.height = options_.resolution;
  request.steps = options_.sample_steps;
  request.sampler = "euler_a";
  request.seed = options_.sample_seed;
  GeneratedImage sample = pipeline.generate(request).front();
  std::filesystem::path folder = output;
  folder.replace_filename(output.stem().string() + "-samples");
  std::filesystem::create_directories(folder);
  char name[32];
  std::snprintf(name, sizeof(name), "step-%06lld.png", static_cast<long long>(step));
  const std::filesystem::path path = folder / name;
  write_png(path, sample.image, {{"parameters", sample.parameters.to_text()}});
  return path;
}

LoraTrainingReport LoraTrainer::train(const std::filesystem::path& output, bool resume,
                                      const ProgressCallback& progress) {
  const auto started = std::chrono::steady_clock::now();
  const double started_at = unix_time();
  LoraTrainingReport report;
  report.lora = output;
  const std::filesystem::path state_path = training_state_path(output);
  const int64_t start_step = resume ? load_state(state_path) : 0;
  report.resumed_from = start_step;
  build_cache(progress);

  const int64_t accumulation = options_.gradient_accumulation;
  const at::Device device = model_.unet->parameters().front().device();
  const auto prediction = scheduler_.prediction_type;
  const int64_t timesteps = scheduler_.num_train_timesteps;
  ProgressTracker tracker(progress, "training", options_.steps, start_step);
  for (int64_t step = start_step; step < options_.steps; ++step) {
    double step_loss = 0;
    for (int64_t micro = 0; micro < accumulation; ++micro) {
      const int64_t micro_batch = step * accumulation + micro;
      const std::vector<int64_t> indices = batch_indices(micro_batch);
      std::vector<at::Tensor> latents_list, contexts;
      for (int64_t index : indices) {
        latents_list.push_back(cache_->latents[index]);
        if (!cache_->contexts.empty()) contexts.push_back(cache_->contexts[index]);
      }
      const at::Tensor latents = at::cat(latents_list);
      const at::Tensor context = contexts.empty() ? encode_captions(indices) : at::cat(contexts);
      Generator generator(mix_seed(options_.seed, 2, static_cast<uint64_t>(micro_batch)));
      const auto on_device = at::TensorOptions().device(device);
      at::Tensor noise = generator.randn(latents.sizes(), on_device);
      if (options_.noise_offset > 0) {
        noise = noise + options_.noise_offset *
                            generator.randn({latents.size(0), latents.size(1), 1, 1}, on_device);
      }
      const at::Tensor steps = (generator.rand({latents.size(0)}) * static_cast<double>(timesteps))
                                   .floor()
                                   .clamp_max(static_cast<double>(timesteps - 1))
                                   .to(at::kLong);
      at::Tensor loss = lora_training_loss(*model_.unet, latents, noise, steps, context,
                                           alphas_cumprod_, prediction, options_.min_snr_gamma) /
                        static_cast<double>(accumulation);
      const double value = loss.item<double>();
      if (!std::isfinite(value)) {
        throw Error(ErrorCode::kNumerical, "the training loss became " + format_number(value) +
                                               " at step " + std::to_string(step + 1) +
                                               "; lower --lr and train again");
      }
      loss.backward();
      step_loss += value;
    }
    const double rate = warmup_cosine_learning_rate(options_.learning_rate, step,
                                                    options_.warmup_steps, options_.steps);
    unet_optimizer_->step(rate);
    unet_optimizer_->zero_grad();
    if (text_encoder_optimizer_) {
      text_encoder_optimizer_->step(warmup_cosine_learning_rate(
          options_.text_encoder_learning_rate, step, options_.warmup_steps, options_.steps));
      text_encoder_optimizer_->zero_grad();
    }
    report.losses.push_back(step_loss);
    const int64_t done = step + 1;
    if (options_.checkpoint_every > 0 && done % options_.checkpoint_every == 0 &&
        done < options_.steps) {
      save_state(state_path, done);
    }
    if (options_.sample_every > 0 && done % options_.sample_every == 0) {
      report.samples.push_back(write_sample(output, done));
      if (options_.on_sample) options_.on_sample(done, report.samples.back());
    }
    char detail[96];
    std::snprintf(detail, sizeof(detail), "step %lld/%lld loss %.4f lr %.2e",
                  static_cast<long long>(done), static_cast<long long>(options_.steps), step_loss,
                  rate);
    tracker.advance(done, detail);
  }
  save_lora(output, options_.steps, started_at);
  std::error_code ignored;
  std::filesystem::remove(state_path, ignored);
  report.steps = options_.steps;
  report.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return report;
}

}  // namespace doppel

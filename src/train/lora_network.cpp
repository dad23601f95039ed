#include "doppel/train/lora_network.hpp"

#include <algorithm>
#include <cmath>

#include "doppel/checkpoint/lora.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/random.hpp"

namespace doppel {

namespace {

bool is_unet_target(const std::string& path) {
  if (path.find(".transformer_blocks.") == std::string::npos) return false;
  for (const char* suffix :
       {".to_q", ".to_k", ".to_v", ".to_out.0", ".ff.net.0.proj", ".ff.net.2"}) {
    if (path.ends_with(suffix)) return true;
  }
  return false;
}

bool is_text_encoder_target(const std::string& path) {
  for (const char* suffix : {".self_attn.q_proj", ".self_attn.k_proj", ".self_attn.v_proj",
                             ".self_attn.out_proj", ".mlp.fc1", ".mlp.fc2"}) {
    if (path.ends_with(suffix)) return true;
  }
  return false;
}

// Linear layers of `module` by module path.
std::map<std::string, layers::Linear> linear_layers(torch::nn::Module& module) {
  std::map<std::string, layers::Linear> found;
  for (const auto& item : module.named_modules()) {
    if (auto linear = std::dynamic_pointer_cast<layers::LinearImpl>(item.value())) {
      found.emplace(item.key(), layers::Linear(linear));
    }
  }
  return found;
}

}  // namespace

LoraNetwork::LoraNetwork(StableDiffusionCheckpoint& model, const LoraNetworkOptions& options)
    : options_(options) {
  if (options.rank < 1) {
    throw Error(ErrorCode::kInvalidArgument, "LoRA rank must be at least 1");
  }
  if (!(options.alpha > 0) || !std::isfinite(options.alpha)) {
    throw Error(ErrorCode::kInvalidArgument, "LoRA alpha must be a positive number");
  }
  if (options.text_encoder && (model.text_encoders.empty() || !model.text_encoders[0].encoder ||
                               model.text_encoders[0].open_clip)) {
    throw Error(ErrorCode::kUnsupported,
                "training the text encoder is supported for SD 1.x (CLIP) models only; "
                "train without --text-encoder");
  }
  const std::map<std::string, std::string> names = kohya_module_names(model);
  auto add_layers = [&](torch::nn::Module& module, const std::string& component,
                        bool text_encoder) {
    for (auto& [path, linear] : linear_layers(module)) {
      if (text_encoder ? !is_text_encoder_target(path) : !is_unet_target(path)) continue;
      auto name = names.find(component + ":" + path);
      if (name == names.end()) {
        throw Error(ErrorCode::kInternal, "no kohya name for the adapted layer " + path);
      }
      layers_.push_back(LoraLayer{name->second, linear, nullptr, text_encoder});
    }
  };
  add_layers(*model.unet, "unet", false);
  if (options.text_encoder) add_layers(*model.text_encoders[0].encoder, "te0", true);
  if (layers_.empty()) {
    throw Error(ErrorCode::kUnsupported, "the model has no attention layers a LoRA can adapt");
  }

  // Deterministic initialisation, in name order: the same seed gives the same
  // start whatever order the module tree lists layers in.
  std::sort(layers_.begin(), layers_.end(),
            [](const LoraLayer& a, const LoraLayer& b) { return a.name < b.name; });
  Generator generator(options.seed);
  at::NoGradGuard no_grad;
  for (LoraLayer& entry : layers_) {
    const at::Tensor& weight = entry.layer->weight;
    const int64_t out_features = weight.size(0), in_features = weight.size(1);
    const auto options_fp32 = at::TensorOptions().dtype(at::kFloat).device(weight.device());
    // kaiming_uniform_(a = sqrt(5)) as kohya and PEFT do: U(-1/sqrt(in), 1/sqrt(in)).
    const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
    auto adapter = std::make_shared<layers::LowRankAdapter>();
    adapter->down = ((generator.rand({options.rank, in_features}) * 2.0 - 1.0) * bound)
                        .to(options_fp32)
                        .requires_grad_(true);
    adapter->up = at::zeros({out_features, options.rank}, options_fp32).requires_grad_(true);
    adapter->scale = options.alpha / static_cast<double>(options.rank);
    entry.adapter = adapter;
  }
  set_enabled(true);
}

LoraNetwork::~LoraNetwork() {
  set_enabled(false);
}

void LoraNetwork::set_enabled(bool enabled) {
  for (LoraLayer& entry : layers_) entry.layer->adapter = enabled ? entry.adapter : nullptr;
}

std::vector<std::pair<std::string, at::Tensor>> LoraNetwork::named_parameters() const {
  std::vector<std::pair<std::string, at::Tensor>> parameters;
  for (const LoraLayer& entry : layers_) {
    parameters.emplace_back(entry.name + ".lora_down.weight", entry.adapter->down);
    parameters.emplace_back(entry.name + ".lora_up.weight", entry.adapter->up);
  }
  return parameters;
}

std::map<std::string, at::Tensor> LoraNetwork::kohya_tensors() const {
  std::map<std::string, at::Tensor> tensors;
  for (const auto& [name, parameter] : named_parameters()) {
    tensors[name] = parameter.detach().to(at::kCPU).clone();
  }
  for (const LoraLayer& entry : layers_) {
    tensors[entry.name + ".alpha"] = at::scalar_tensor(options_.alpha, at::kFloat);
  }
  return tensors;
}

void LoraNetwork::load_parameters(const std::map<std::string, at::Tensor>& tensors) {
  at::NoGradGuard no_grad;
  for (auto& [name, parameter] : named_parameters()) {
    auto found = tensors.find(name);
    if (found == tensors.end()) {
      throw Error(ErrorCode::kInvalidFile, "the training checkpoint lacks " + name);
    }
    if (found->second.sizes() != parameter.sizes()) {
      throw Error(ErrorCode::kInvalidFile,
                  "the training checkpoint's " + name + " has another shape than this LoRA's");
    }
    parameter.copy_(found->second);
  }
}

}  // namespace doppel

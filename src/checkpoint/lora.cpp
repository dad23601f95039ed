#include "doppel/checkpoint/lora.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "doppel/core/error.hpp"
#include "doppel/core/log.hpp"
#include "doppel/core/safetensors.hpp"
#include "checkpoint/lora_targets.hpp"

namespace doppel {

namespace {

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// What a tensor is in a LoRA module, by the suffix of its name.
enum class Role { kDown, kUp, kMid, kAlpha, kW1A, kW1B, kW2A, kW2B };

struct Suffix {
  const char* text;
  Role role;
};

// Longest first where one suffix ends another.
constexpr Suffix kSuffixes[] = {
    {".lora_linear_layer.down.weight", Role::kDown},  // diffusers text encoder (pre-PEFT)
    {".lora_linear_layer.up.weight", Role::kUp},
    {".lora_down.weight", Role::kDown},  // kohya-ss, LyCORIS LoCon
    {".lora_up.weight", Role::kUp},
    {".lora_mid.weight", Role::kMid},  // LyCORIS LoCon with Tucker decomposition
    {".lora_A.weight", Role::kDown},   // PEFT
    {".lora_B.weight", Role::kUp},
    {".lora.down.weight", Role::kDown},  // diffusers LoRACompatibleLinear/Conv
    {".lora.up.weight", Role::kUp},
    {".hada_w1_a", Role::kW1A},  // LyCORIS LoHa
    {".hada_w1_b", Role::kW1B},
    {".hada_w2_a", Role::kW2A},
    {".hada_w2_b", Role::kW2B},
    {".alpha", Role::kAlpha},
};

// diffusers attention processors: "<path>.processor.to_q_lora.down.weight".
constexpr Suffix kProcessorSuffixes[] = {
    {"_lora.down.weight", Role::kDown},
    {"_lora.up.weight", Role::kUp},
};

// LyCORIS parts whose formulas doppel does not implement.
constexpr const char* kUnsupportedSuffixes[] = {
    ".hada_t1",    ".hada_t2",   ".lokr_w1", ".lokr_w1_a",  ".lokr_w1_b", ".lokr_w2",
    ".lokr_w2_a",  ".lokr_w2_b", ".lokr_t2", ".dora_scale", ".diff",      ".diff_b",
    ".oft_blocks", ".oft_diag",  ".b_norm",  ".w_norm"};

std::string& role_slot(LoraModule& module, Role role) {
  switch (role) {
    case Role::kDown:
      return module.down;
    case Role::kUp:
      return module.up;
    case Role::kMid:
      return module.mid;
    case Role::kAlpha:
      return module.alpha;
    case Role::kW1A:
      return module.w1_a;
    case Role::kW1B:
      return module.w1_b;
    case Role::kW2A:
      return module.w2_a;
    case Role::kW2B:
      return module.w2_b;
  }
  throw Error(ErrorCode::kInternal, "unknown LoRA tensor role");
}

int64_t product(const std::vector<int64_t>& shape, size_t from) {
  return std::accumulate(shape.begin() + static_cast<std::ptrdiff_t>(from), shape.end(), int64_t{1},
                         std::multiplies<int64_t>());
}

[[noreturn]] void throw_misfit(const LoraFile& lora, const std::string& tensor,
                               const lora::Target& target, const std::vector<int64_t>& expected,
                               const std::string& why) {
  std::string layer = target.parameter + " " + shape_string(target.weight.sizes().vec());
  if (target.rows >= 0) {
    layer += " rows " + std::to_string(target.row_offset) + ".." +
             std::to_string(target.row_offset + target.rows);
  }
  throw Error(ErrorCode::kInvalidFile, "LoRA " + lora.label() + ": " + tensor + " has shape " +
                                           shape_string(lora.shape(tensor)) +
                                           ", which does not fit " + layer + " (" + why +
                                           ", layer shape " + shape_string(expected) +
                                           "); the LoRA was made for a different model");
}

// The module's change to its target, unscaled, in `compute` dtype, shaped as the
// target (rows); sets `rank`.
at::Tensor module_delta(const LoraFile& lora, const LoraModule& module, const lora::Target& target,
                        at::ScalarType compute, int64_t& rank) {
  std::vector<int64_t> shape = target.weight.sizes().vec();
  if (target.rows >= 0) shape[0] = target.rows;
  const int64_t fan_in = product(shape, 1);
  const auto read = [&](const std::string& name) {
    return lora.tensor(name).to(target.weight.device(), compute);
  };
  const auto check_up = [&](const std::string& name) {  // [out, r] or [out, r, 1, 1]
    const auto up = lora.shape(name);
    const bool pointwise = up.size() == 2 || (up.size() == 4 && up[2] == 1 && up[3] == 1);
    if (!pointwise || up[0] != shape[0]) {
      throw_misfit(lora, name, target, shape, "expected [" + std::to_string(shape[0]) + ", rank]");
    }
    return up[1];
  };
  const auto check_down = [&](const std::string& name, int64_t expected_rank) {
    const auto down = lora.shape(name);
    bool fits = down.size() >= 2 && down[0] == expected_rank && product(down, 1) == fan_in;
    // A conv down must have the layer's kernel; a Linear one fits a 1x1 conv.
    if (fits && down.size() == 4 && shape.size() == 4) {
      fits = std::equal(down.begin() + 1, down.end(), shape.begin() + 1);
    }
    if (!fits) {
      throw_misfit(lora, name, target, shape,
                   "expected rank " + std::to_string(expected_rank) + " by " +
                       std::to_string(fan_in) + " inputs");
    }
  };
  if (module.kind == LoraModuleKind::kLowRank && !module.mid.empty()) {
    // Tucker: up [out, r] . mid [r, r', kh, kw] . down [r', in] over the kernel.
    const int64_t up_rank = check_up(module.up);
    const auto mid = lora.shape(module.mid);
    if (shape.size() != 4 || mid.size() != 4 || mid[0] != up_rank || mid[2] != shape[2] ||
        mid[3] != shape[3]) {
      throw_misfit(lora, module.mid, target, shape,
                   "expected [" + std::to_string(up_rank) + ", rank, kh, kw] of a conv layer");
    }
    rank = mid[1];
    const auto down = lora.shape(module.down);
    if (down.size() < 2 || down[0] != rank || product(down, 1) != shape[1]) {
      throw_misfit(lora, module.down, target, shape,
                   "expected [" + std::to_string(rank) + ", " + std::to_string(shape[1]) + "]");
    }
    return at::einsum("ijkl,jr,pi->prkl",
                      {read(module.mid), read(module.down).flatten(1), read(module.up).flatten(1)});
  }
  if (module.kind == LoraModuleKind::kLowRank) {
    rank = lora.shape(module.down).empty() ? 0 : lora.shape(module.down)[0];
    const int64_t up_rank = check_up(module.up);
    check_down(module.down, up_rank);
    // 3x3 conv: conv2d(down^T, up)^T == (up.flatten(1) @ down.flatten(1)) reshaped.
    return at::matmul(read(module.up).flatten(1), read(module.down).flatten(1)).reshape(shape);
  }
  rank = lora.shape(module.w1_b).empty() ? 0 : lora.shape(module.w1_b)[0];
  at::Tensor product_of_pairs;
  for (const auto& [a, b] : {std::pair{module.w1_a, module.w1_b}, {module.w2_a, module.w2_b}}) {
    const int64_t pair_rank = check_up(a);
    check_down(b, pair_rank);
    const at::Tensor pair = at::matmul(read(a).flatten(1), read(b).flatten(1));
    product_of_pairs = product_of_pairs.defined() ? product_of_pairs * pair : pair;
  }
  return product_of_pairs.reshape(shape);
}

double module_alpha(const LoraFile& lora, const LoraModule& module, int64_t rank) {
  if (module.alpha.empty()) return static_cast<double>(rank);  // scale 1
  const at::Tensor alpha = lora.tensor(module.alpha);
  if (alpha.numel() != 1) {
    throw Error(ErrorCode::kInvalidFile, "LoRA " + lora.label() + ": " + module.alpha +
                                             " has shape " + shape_string(alpha.sizes().vec()) +
                                             "; alpha must be a single number");
  }
  return alpha.to(at::kDouble).item<double>();
}

}  // namespace

const std::map<std::string, std::string>& LoraFile::metadata() const {
  return file_->metadata();
}

at::Tensor LoraFile::tensor(const std::string& name) const {
  return file_->tensor(name);
}

std::vector<int64_t> LoraFile::shape(const std::string& name) const {
  return file_->entry(name).shape;
}

LoraFile LoraFile::parse(std::shared_ptr<const SafetensorsFile> file) {
  LoraFile lora;
  lora.file_ = file;
  lora.label_ = file->label();
  std::map<std::string, LoraModule> modules;
  for (const auto& entry : file->entries()) {
    const std::string& name = entry.name;
    for (const char* unsupported : kUnsupportedSuffixes) {
      if (ends_with(name, unsupported)) {
        throw Error(ErrorCode::kUnsupported,
                    "LoRA " + lora.label_ + ": tensor " + name +
                        " belongs to a LyCORIS kind doppel cannot merge (LoKr, LoHa "
                        "with Tucker hada_t, DoRA, OFT or full diffs); use a LoRA, LoCon or LoHa");
      }
    }
    const Suffix* match = nullptr;
    for (const Suffix& suffix : kSuffixes) {
      if (ends_with(name, suffix.text)) {
        match = &suffix;
        break;
      }
    }
    size_t cut = match ? std::string(match->text).size() : 0;
    if (!match) {
      for (const Suffix& suffix : kProcessorSuffixes) {
        if (ends_with(name, suffix.text)) {
          match = &suffix;
          cut = std::string(suffix.text).size() - 5;  // keep "_lora" in the module name
          break;
        }
      }
    }
    if (!match || name.size() <= cut) {
      lora.unrecognized_.push_back(name);
      continue;
    }
    const std::string module_name = name.substr(0, name.size() - cut);
    LoraModule& module = modules[module_name];
    module.name = module_name;
    role_slot(module, match->role) = name;
  }
  for (auto& [name, module] : modules) {
    const bool loha = !module.w1_a.empty() || !module.w1_b.empty() || !module.w2_a.empty() ||
                      !module.w2_b.empty();
    module.kind = loha ? LoraModuleKind::kLoha : LoraModuleKind::kLowRank;
    std::vector<std::pair<const char*, const std::string*>> parts;
    if (loha) {
      parts = {{".hada_w1_a", &module.w1_a},
               {".hada_w1_b", &module.w1_b},
               {".hada_w2_a", &module.w2_a},
               {".hada_w2_b", &module.w2_b}};
    } else {
      parts = {{" down (.lora_down.weight / .lora_A.weight)", &module.down},
               {" up (.lora_up.weight / .lora_B.weight)", &module.up}};
    }
    for (const auto& [part, slot] : parts) {
      if (slot->empty()) {
        throw Error(ErrorCode::kInvalidFile, "LoRA " + lora.label_ + ": module " + name +
                                                 " lacks its" + (loha ? " tensor " : "") + part +
                                                 "; the file is incomplete");
      }
    }
    lora.modules_.push_back(module);
  }
  if (lora.modules_.empty()) {
    throw Error(ErrorCode::kInvalidFile,
                "not a LoRA: " + lora.label_ + " has " + std::to_string(file->entries().size()) +
                    " tensors and none named like a LoRA (.lora_down.weight/.lora_up.weight, "
                    ".lora_A.weight/.lora_B.weight, .hada_w1_a...); is it a full checkpoint?");
  }
  return lora;
}

LoraFile load_lora(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) {
    throw Error(ErrorCode::kNotFound, "LoRA file not found: " + path.string());
  }
  if (path.extension() != ".safetensors") {
    throw Error(ErrorCode::kUnsupported,
                path.string() +
                    ": doppel reads LoRAs as .safetensors only (pickle files can "
                    "run arbitrary code when loaded)");
  }
  return LoraFile::parse(std::make_shared<const SafetensorsFile>(SafetensorsFile::open(path)));
}

AppliedLoras::AppliedLoras(AppliedLoras&& other) noexcept
    : saved_(std::move(other.saved_)), reports_(std::move(other.reports_)) {
  other.saved_.clear();
}

AppliedLoras& AppliedLoras::operator=(AppliedLoras&& other) noexcept {
  if (this != &other) {
    remove();
    saved_ = std::move(other.saved_);
    reports_ = std::move(other.reports_);
    other.saved_.clear();
  }
  return *this;
}

AppliedLoras::~AppliedLoras() {
  remove();
}

void AppliedLoras::remove() {
  if (saved_.empty()) return;
  at::NoGradGuard no_grad;
  for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) it->parameter.copy_(it->original);
  saved_.clear();
}

AppliedLoras apply_loras(StableDiffusionCheckpoint& model,
                         const std::vector<std::pair<LoraFile, double>>& loras) {
  AppliedLoras applied;
  if (loras.empty()) return applied;
  const lora::TargetIndex index(model);
  std::map<const void*, size_t> saved_at;  // parameter storage -> saved_ slot
  at::NoGradGuard no_grad;
  try {
    for (const auto& [lora, multiplier] : loras) {
      LoraMergeReport report;
      report.lora = lora.label();
      report.multiplier = multiplier;
      report.unmatched = lora.unrecognized();
      for (const LoraModule& module : lora.modules()) {
        const auto target = index.resolve(module.name);
        if (!target) {
          report.unmatched.push_back(module.name);
          continue;
        }
        const at::Tensor& weight = target->weight;
        const at::ScalarType compute =
            weight.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
        int64_t rank = 0;
        const at::Tensor delta = module_delta(lora, module, *target, compute, rank);
        const double scale = multiplier * module_alpha(lora, module, rank) /
                             static_cast<double>(std::max<int64_t>(rank, 1));
        if (!std::isfinite(scale) || !delta.isfinite().all().item<bool>()) {
          throw Error(ErrorCode::kInvalidFile, "LoRA " + lora.label() + ": module " + module.name +
                                                   " holds NaN or infinite values; the file is "
                                                   "damaged or was saved from a diverged training");
        }
        const void* key = weight.unsafeGetTensorImpl();
        if (!saved_at.count(key)) {
          saved_at[key] = applied.saved_.size();
          applied.saved_.push_back({weight, weight.detach().clone()});
        }
        at::Tensor rows =
            target->rows >= 0 ? weight.narrow(0, target->row_offset, target->rows) : weight;
        // One rounding to the weight's dtype (bf16 models keep bf16 weights).
        rows.copy_(rows.to(compute).add_(delta, scale));
        report.applied.push_back(
            target->rows >= 0 ? target->parameter + "[" + std::to_string(target->row_offset) + ":" +
                                    std::to_string(target->row_offset + target->rows) + "]"
                              : target->parameter);
      }
      if (!report.unmatched.empty()) {
        std::string names;
        for (size_t i = 0; i < report.unmatched.size() && i < 5; ++i) {
          names += (i ? ", " : "") + report.unmatched[i];
        }
        if (report.unmatched.size() > 5) names += ", ...";
        log_warning("LoRA " + report.lora + ": " + std::to_string(report.unmatched.size()) +
                    " of its modules match no layer of the model and were not applied: " + names);
      }
      applied.reports_.push_back(std::move(report));
    }
  } catch (...) {
    applied.remove();
    throw;
  }
  return applied;
}

std::map<std::string, std::string> kohya_module_names(StableDiffusionCheckpoint& model) {
  return lora::kohya_module_names(model);
}

}  // namespace doppel

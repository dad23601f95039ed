#include "doppel/checkpoint/lora.hpp"

#include <ATen/Parallel.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <map>
#include <mutex>
#include <numeric>
#include <set>
#include <tuple>

#include "checkpoint/lora_targets.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/log.hpp"
#include "doppel/core/safetensors.hpp"

// OpenBLAS's thread count, when it is the BLAS libtorch loaded (Debian's is); null otherwise.
extern "C" __attribute__((weak)) void openblas_set_num_threads(int threads);
extern "C" __attribute__((weak)) int openblas_get_num_threads();

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

// The factors of a module's change to its target (low rank: up [out, r] and down
// [r, fan_in]; Tucker adds mid; LoHa two such pairs), checked against the target's shape.
struct CheckedModule {
  const LoraModule* module = nullptr;
  lora::Target target;
  std::vector<int64_t> shape;  // the target's (rows) shape
  int64_t rank = 0;
  double scale = 0;  // multiplier * alpha / rank
};

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

[[noreturn]] void throw_not_finite(const LoraFile& lora, const LoraModule& module) {
  throw Error(ErrorCode::kInvalidFile, "LoRA " + lora.label() + ": module " + module.name +
                                           " holds NaN or infinite values; the file is "
                                           "damaged or was saved from a diverged training");
}

// LoRA changes are computed in fp32, or fp64 for an fp64 model.
at::ScalarType compute_dtype(const at::Tensor& weight) {
  return weight.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

std::vector<std::string> module_factors(const LoraModule& module) {
  if (module.kind == LoraModuleKind::kLoha)
    return {module.w1_a, module.w1_b, module.w2_a, module.w2_b};
  if (module.mid.empty()) return {module.up, module.down};
  return {module.up, module.mid, module.down};
}

// The module's change to its target, unscaled, shaped as the target's rows.
at::Tensor module_change(const LoraFile& lora, const CheckedModule& checked, at::ScalarType dtype) {
  const LoraModule& module = *checked.module;
  const auto read = [&](const std::string& name) {
    return lora.tensor(name).to(checked.target.weight.device(), dtype);
  };
  at::Tensor change;
  if (module.kind == LoraModuleKind::kLoha) {
    change = at::matmul(read(module.w1_a).flatten(1), read(module.w1_b).flatten(1)) *
             at::matmul(read(module.w2_a).flatten(1), read(module.w2_b).flatten(1));
  } else if (!module.mid.empty()) {
    change = at::einsum("ijkl,jr,pi->prkl", {read(module.mid), read(module.down).flatten(1),
                                             read(module.up).flatten(1)});
  } else {
    // 3x3 conv: conv2d(down^T, up)^T == (up.flatten(1) @ down.flatten(1)) reshaped.
    change = at::matmul(read(module.up).flatten(1), read(module.down).flatten(1));
  }
  return change.reshape(checked.shape);
}

// Checks a module's shapes against its target and its values for NaN/Inf, reading only its
// factors (the change itself is never built just to be checked).
CheckedModule check_module(const LoraFile& lora, const LoraModule& module,
                           const lora::Target& target, double multiplier) {
  CheckedModule checked{&module, target, target.weight.sizes().vec(), 0, 0};
  std::vector<int64_t>& shape = checked.shape;
  if (target.rows >= 0) shape[0] = target.rows;
  const int64_t fan_in = product(shape, 1);
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
    checked.rank = mid[1];
    const auto down = lora.shape(module.down);
    if (down.size() < 2 || down[0] != checked.rank || product(down, 1) != shape[1]) {
      throw_misfit(
          lora, module.down, target, shape,
          "expected [" + std::to_string(checked.rank) + ", " + std::to_string(shape[1]) + "]");
    }
  } else if (module.kind == LoraModuleKind::kLowRank) {
    checked.rank = lora.shape(module.down).empty() ? 0 : lora.shape(module.down)[0];
    check_down(module.down, check_up(module.up));
  } else {
    checked.rank = lora.shape(module.w1_b).empty() ? 0 : lora.shape(module.w1_b)[0];
    for (const auto& [a, b] : {std::pair{module.w1_a, module.w1_b}, {module.w2_a, module.w2_b}}) {
      check_down(b, check_up(a));
    }
  }
  checked.scale = multiplier * module_alpha(lora, module, checked.rank) /
                  static_cast<double>(std::max<int64_t>(checked.rank, 1));
  if (!std::isfinite(checked.scale)) throw_not_finite(lora, module);
  // Finite factors whose scaled product is bounded give a finite change: an entry of a product
  // is at most (inner size) * max|a| * max|b|, and every factor's second size is at least the
  // inner size it brings. Beyond the bound (never for real files) the change itself is checked.
  double bound = std::abs(checked.scale);
  for (const std::string& name : module_factors(module)) {
    const at::Tensor factor = lora.tensor(name);
    if (factor.numel() == 0) {  // rank 0: no change
      bound = 0;
      continue;
    }
    if (!factor.isfinite().all().item<bool>()) throw_not_finite(lora, module);
    bound *= factor.abs().max().to(at::kDouble).item<double>() *
             static_cast<double>(lora.shape(name)[1]);
  }
  if (!(bound < 1e30) && !module_change(lora, checked, compute_dtype(target.weight))
                              .mul_(checked.scale)
                              .isfinite()
                              .all()
                              .item<bool>()) {
    throw_not_finite(lora, module);
  }
  return checked;
}

// A module's change ready to be added to row ranges of its target, in the compute dtype: a
// low-rank change as its two factors (added by one fused product, never built on its own),
// other kinds built whole.
struct PreparedChange {
  at::Tensor up, down;  // [rows, r], [r, fan_in]
  at::Tensor change;    // [rows, fan_in] when not low-rank
  double scale = 0;

  // work += scale * change, or work = scale * change when `overwrite`, for the change's rows
  // from `first_row` on (as many as `work` has).
  void add_to(at::Tensor& work, int64_t first_row, bool overwrite) const {
    const int64_t rows = work.size(0);
    if (change.defined()) {
      const at::Tensor part = change.narrow(0, first_row, rows);
      overwrite ? at::mul_out(work, part, scale) : work.add_(part, scale);
    } else {
      work.addmm_(up.narrow(0, first_row, rows), down, /*beta=*/overwrite ? 0 : 1,
                  /*alpha=*/scale);
    }
  }
};

PreparedChange prepare_change(const LoraFile& lora, const CheckedModule& checked,
                              at::ScalarType dtype) {
  const LoraModule& module = *checked.module;
  PreparedChange prepared;
  prepared.scale = checked.scale;
  if (module.kind == LoraModuleKind::kLowRank && module.mid.empty()) {
    const auto read = [&](const std::string& name) {
      return lora.tensor(name).to(checked.target.weight.device(), dtype).flatten(1).contiguous();
    };
    prepared.up = read(module.up);
    prepared.down = read(module.down);
  } else {
    prepared.change = module_change(lora, checked, dtype).flatten(1);
  }
  return prepared;
}

// Runs OpenBLAS on the calling thread only while it lives. libtorch's fp32 products go to
// OpenBLAS, whose threads and the OpenMP threads of every other op spin while waiting for each
// other on two cores: a merge's products ran at a third of their speed. The merge splits its
// products over the OpenMP threads instead.
class SingleThreadedBlas {
 public:
  SingleThreadedBlas() {
    if (!openblas_set_num_threads || !openblas_get_num_threads) return;
    // Merges on two workers' models may overlap: the first sets, the last restores.
    const std::lock_guard<std::mutex> lock(mutex_);
    if (holders_++ == 0) {
      threads_ = openblas_get_num_threads();
      openblas_set_num_threads(1);
    }
  }
  ~SingleThreadedBlas() {
    if (!openblas_set_num_threads || !openblas_get_num_threads) return;
    const std::lock_guard<std::mutex> lock(mutex_);
    if (--holders_ == 0) openblas_set_num_threads(threads_);
  }
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  static inline std::mutex mutex_;
  static inline int holders_ = 0;
  static inline int threads_ = 1;
};

// Adds the changes to `rows` (a parameter or rows of one) in `compute` dtype and rounds once,
// each thread taking a share of the rows. A bf16 CPU parameter gets the changes' sum built in
// `scratch` (kept between parameters, so its pages are not faulted in again) and then added and
// rounded in one pass: ATen 1.13 widens bf16 one element at a time (1.2 ns each).
void add_changes(at::Tensor rows, const std::vector<PreparedChange>& changes,
                 at::ScalarType compute, at::Tensor& scratch) {
  const int64_t count = rows.size(0);
  const bool sum_apart = rows.is_cpu() && rows.scalar_type() == at::kBFloat16 &&
                         compute == at::kFloat && rows.is_contiguous();
  at::Tensor work;
  if (sum_apart) {
    if (scratch.numel() < rows.numel()) scratch = at::empty({rows.numel()}, at::kFloat);
    work = scratch.narrow(0, 0, rows.numel()).view({count, -1});
  } else {
    work = rows.to(compute, /*non_blocking=*/false, /*copy=*/true, at::MemoryFormat::Contiguous)
               .view({count, -1});
  }
  const auto add_rows = [&](int64_t begin, int64_t end) {
    at::Tensor part = work.narrow(0, begin, end - begin);
    for (size_t i = 0; i < changes.size(); ++i) {
      changes[i].add_to(part, begin, /*overwrite=*/sum_apart && i == 0);
    }
  };
  if (rows.is_cpu()) {
    at::parallel_for(0, count, 16, add_rows);
  } else {
    add_rows(0, count);
  }
  if (!sum_apart) {
    rows.copy_(work.view(rows.sizes()));
    return;
  }
  uint16_t* __restrict weight = reinterpret_cast<uint16_t*>(rows.data_ptr<at::BFloat16>());
  const float* __restrict delta = work.data_ptr<float>();
  // Round to nearest even, as ATen rounds fp32 to bf16 (NaN stays a quiet NaN).
  const auto add_rounded = [&](int64_t i) {
    const float total = std::bit_cast<float>(uint32_t{weight[i]} << 16) + delta[i];
    const uint32_t bits = std::bit_cast<uint32_t>(total);
    const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
    weight[i] = static_cast<uint16_t>(total != total ? 0x7FC0u : rounded);
  };
  constexpr int64_t kLanes = 16;  // a fixed inner count lets -O2 vectorise it whole
  at::parallel_for(0, rows.numel(), int64_t{1} << 16, [&](int64_t begin, int64_t end) {
    int64_t i = begin;
    for (; i + kLanes <= end; i += kLanes) {
      for (int64_t lane = 0; lane < kLanes; ++lane) add_rounded(i + lane);
    }
    for (; i < end; ++i) add_rounded(i);
  });
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
  at::NoGradGuard no_grad;
  // Every module is checked before the model is touched; the changes to one target (rows of
  // a parameter) from all the LoRAs are then summed in fp32 and rounded to its dtype once.
  struct Change {
    const LoraFile* lora;
    CheckedModule module;
  };
  std::vector<std::vector<Change>> changes_by_target;
  std::map<std::tuple<const void*, int64_t, int64_t>, size_t> target_slot;
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
      const auto key =
          std::make_tuple(static_cast<const void*>(target->weight.unsafeGetTensorImpl()),
                          target->row_offset, target->rows);
      const auto [slot, added] = target_slot.emplace(key, changes_by_target.size());
      if (added) changes_by_target.emplace_back();
      changes_by_target[slot->second].push_back(
          {&lora, check_module(lora, module, *target, multiplier)});
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
  const SingleThreadedBlas blas;
  std::set<const void*> saved;  // parameters whose original is kept
  at::Tensor scratch;
  try {
    for (const std::vector<Change>& changes : changes_by_target) {
      const lora::Target& target = changes.front().module.target;
      const at::Tensor& weight = target.weight;
      if (saved.insert(weight.unsafeGetTensorImpl()).second) {
        applied.saved_.push_back({weight, weight.detach().clone()});
      }
      const at::ScalarType compute = compute_dtype(weight);
      std::vector<PreparedChange> prepared;
      for (const Change& change : changes) {
        prepared.push_back(prepare_change(*change.lora, change.module, compute));
      }
      add_changes(target.rows >= 0 ? weight.narrow(0, target.row_offset, target.rows) : weight,
                  prepared, compute, scratch);
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

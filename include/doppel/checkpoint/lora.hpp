// LoRA files (kohya-ss / LyCORIS LoCon and LoHa, diffusers and PEFT naming)
// merged into a loaded Stable Diffusion model, and removed again without
// reloading the base: the original values of the touched parameters are kept
// and copied back, so removal is bit-exact in every dtype.
#pragma once
#include <ATen/ATen.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "doppel/checkpoint/stable_diffusion.hpp"

namespace doppel {

class SafetensorsFile;

enum class LoraModuleKind {
  kLowRank,  // W += up @ down (LoRA, LoCon; up . mid . down with a Tucker core)
  kLoha,     // W += (w1_a @ w1_b) * (w2_a @ w2_b) (LyCORIS LoHa)
};

// One adapted layer of a LoRA file: its module name as written in the file
// (e.g. "lora_unet_down_blocks_0_attentions_0_proj_in" or
// "unet.down_blocks.0.attentions.0.proj_in") and the file's tensor names.
struct LoraModule {
  std::string name;
  LoraModuleKind kind = LoraModuleKind::kLowRank;
  std::string down, up;                // kLowRank: [r, in(, kh, kw)], [out, r(, 1, 1)]
  std::string mid;                     // optional LoCon Tucker core [r, r', kh, kw]
  std::string w1_a, w1_b, w2_a, w2_b;  // kLoha: [out, r], [r, in*kh*kw] each pair
  std::string alpha;                   // optional 0-d tensor; absent: alpha = rank
};

// A parsed LoRA file; tensors stay in the mapped file until a merge reads them.
class LoraFile {
 public:
  const std::string& label() const { return label_; }  // the path, for messages
  const std::vector<LoraModule>& modules() const { return modules_; }
  // Tensors with no LoRA role (reported as unmatched by apply_loras).
  const std::vector<std::string>& unrecognized() const { return unrecognized_; }
  const std::map<std::string, std::string>& metadata() const;
  // The tensor as stored (CPU, file dtype, aliasing the mapping).
  at::Tensor tensor(const std::string& name) const;
  std::vector<int64_t> shape(const std::string& name) const;

  // Groups a file's tensors into modules. Throws doppel::Error: kInvalidFile
  // when no tensor has a LoRA suffix (not a LoRA) or a module lacks a part
  // (names the missing tensor); kUnsupported naming a tensor of a LyCORIS kind
  // doppel does not merge (LoKr, LoHa Tucker hada_t, DoRA, OFT, full diffs).
  static LoraFile parse(std::shared_ptr<const SafetensorsFile> file);

 private:
  std::shared_ptr<const SafetensorsFile> file_;
  std::string label_;
  std::vector<LoraModule> modules_;
  std::vector<std::string> unrecognized_;
};

// Opens and parses a LoRA .safetensors (see LoraFile::parse; kNotFound when
// absent, kInvalidFile for a damaged or truncated file).
LoraFile load_lora(const std::filesystem::path& path);

// What one LoRA file did to the model.
struct LoraMergeReport {
  std::string lora;  // the file's label
  double multiplier = 1.0;
  std::vector<std::string> applied;    // canonical parameter names it changed
  std::vector<std::string> unmatched;  // its module names that match no layer of the model
};

// LoRAs merged into a model. Removing (explicitly or on destruction) copies
// the saved originals back, so the base is restored bit for bit. Several
// handles on one model must be removed in reverse order of application.
class AppliedLoras {
 public:
  AppliedLoras() = default;
  AppliedLoras(AppliedLoras&& other) noexcept;
  AppliedLoras& operator=(AppliedLoras&& other) noexcept;
  AppliedLoras(const AppliedLoras&) = delete;
  AppliedLoras& operator=(const AppliedLoras&) = delete;
  ~AppliedLoras();

  const std::vector<LoraMergeReport>& reports() const { return reports_; }
  bool active() const { return !saved_.empty(); }
  // Restores every touched parameter; a no-op when nothing is applied.
  void remove();

 private:
  friend AppliedLoras apply_loras(StableDiffusionCheckpoint&,
                                  const std::vector<std::pair<LoraFile, double>>&);
  struct SavedParameter {
    at::Tensor parameter;  // shares storage with the module's parameter
    at::Tensor original;   // a copy in the parameter's dtype and device
  };
  std::vector<SavedParameter> saved_;
  std::vector<LoraMergeReport> reports_;
};

// Merges each LoRA with its multiplier into the UNet and text encoders:
// W += multiplier * (alpha / rank) * delta, with the deltas of all the LoRAs to
// one weight summed in fp32 and the sum rounded once to W's dtype. Unmatched
// modules are reported (and logged as warnings), not an error. Throws
// doppel::Error(kInvalidFile) naming the LoRA tensor and both shapes when a
// module does not fit its layer, or naming a module holding NaN/Inf (or whose
// change overflows fp32); the model is then left unchanged. Not thread-safe
// against a generation running on the same model.
AppliedLoras apply_loras(StableDiffusionCheckpoint& model,
                         const std::vector<std::pair<LoraFile, double>>& loras);

// The kohya-ss module name of every LoRA-adaptable layer of `model`, keyed by
// "unet:<module path>" (LDM tree; named "lora_unet_<diffusers path>") and
// "te0:<module path>" for a CLIP text encoder ("lora_te_text_model_..."):
// the names a LoRA trained here is saved under, as A1111 and ComfyUI expect.
std::map<std::string, std::string> kohya_module_names(StableDiffusionCheckpoint& model);

}  // namespace doppel

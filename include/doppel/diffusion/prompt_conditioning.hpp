// AUTOMATIC1111's prompt conditioning (stable-diffusion-webui v1.10, sd_hijack_clip.py and
// prompt_parser.py) over any CLIP text encoder: attention-weighted pieces tokenized into
// 75-token chunks (BREAK, the last-comma back-off, textual-inversion vectors), encoded,
// multiplied per token with the mean restored, one conditioning per distinct scheduled
// text; and the guided denoiser that picks, at every sampling step, the conditioning in
// force and combines composable (AND) parts.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "doppel/checkpoint/textual_inversion.hpp"
#include "doppel/diffusion/clip_tokenizer.hpp"
#include "doppel/diffusion/prompt_parser.hpp"
#include "doppel/diffusion/sampler.hpp"

namespace doppel {

// One 77-token encoder window: [BOS] + 75 prompt tokens (padded) + [EOS], and the
// attention multiplier of every position (1 for BOS, EOS and padding).
struct TokenChunk {
  std::vector<int64_t> tokens;
  std::vector<double> multipliers;
  // Textual-inversion vectors that replace token rows: window position -> embedding name.
  std::vector<std::pair<int64_t, std::string>> embeddings;
};

// Vectors written over the token embeddings of row `batch`, from window `position` on.
struct EmbeddingRows {
  int64_t batch = 0;
  int64_t position = 0;
  at::Tensor vectors;  // [n, D]
};

// What the text encoder(s) make of a batch of windows.
struct EncodedChunks {
  EncodedChunks(at::Tensor hidden_states, at::Tensor pooled_embeds = {})
      : hidden(std::move(hidden_states)), pooled(std::move(pooled_embeds)) {}
  at::Tensor hidden;  // [B, 77, D]
  at::Tensor pooled;  // [B, P] pooled text embedding (SDXL), or undefined
};

// The text encoder as conditioning sees it: ids [B, 77] -> hidden states [B, 77, D]
// (after the model's CLIP-skip layer choice), with textual-inversion rows applied.
using ChunkEncoder =
    std::function<EncodedChunks(const at::Tensor& ids, const std::vector<EmbeddingRows>& rows)>;

// The conditioning in force up to and including 0-based sampling step `end_step`.
struct ScheduledConditioning {
  int64_t end_step = 0;
  at::Tensor hidden;  // [1, 77 * chunks, D]
  at::Tensor pooled;  // [1, P]: the first window's pooled embedding (SDXL, as A1111), or undefined
};

// One composable part (`a cat AND a dog:0.5`) with its schedule.
struct ConditioningPart {
  double weight = 1.0;
  std::vector<ScheduledConditioning> schedule;
};

struct PromptConditioning {
  std::vector<ConditioningPart> positive;         // AND parts, in prompt order
  std::vector<ScheduledConditioning> negative;    // the negative prompt is one part
  std::map<std::string, std::string> embeddings;  // used textual inversions: name -> short hash

  // A1111's reconstruct_cond_batch: the first entry whose end_step >= step (0-based), else
  // the last. So `[a:b:3]` conditions steps 0..3 on "a", as A1111 does.
  static const at::Tensor& at_step(const std::vector<ScheduledConditioning>& schedule,
                                   int64_t step);
  // The same entry, with its pooled embedding.
  static const ScheduledConditioning& entry_at_step(
      const std::vector<ScheduledConditioning>& schedule, int64_t step);
};

class PromptConditioner {
 public:
  // `width`: the encoder's hidden size, to check embedding vectors against. `embeddings`
  // (optional, not owned) resolves words that name a textual inversion.
  PromptConditioner(const ClipTokenizer& tokenizer, ChunkEncoder encoder, int64_t width,
                    TextualInversionLibrary* embeddings = nullptr, int comma_backtrack = 20);

  // A1111's tokenize_line for attention-parsed pieces: chunks of 75 tokens, a new chunk at
  // each BREAK, a chunk that would split a phrase ends after its last comma when it is
  // within `comma_backtrack` tokens, embeddings never straddle chunks. At least one chunk.
  std::vector<TokenChunk> tokenize(const std::vector<WeightedText>& pieces);

  // Conditioning of a prompt and a negative prompt for `steps` sampling steps. Every
  // distinct text is encoded once (texts that tokenize alike share the call); all results
  // have the same number of chunks (shorter ones padded with empty chunks).
  PromptConditioning condition(std::string_view prompt, std::string_view negative, int64_t steps);

  // How many times the encoder ran (one batch per distinct token sequence).
  int64_t encoder_calls() const { return encoder_calls_; }

 private:
  struct ScheduledGroup;
  EncodedChunks encode(const std::vector<TokenChunk>& chunks);
  void weight_group(const ScheduledGroup& group, std::map<std::string, at::Tensor>& weighted,
                    const std::map<std::string, at::Tensor>& raw,
                    const std::map<std::string, std::vector<TokenChunk>>& tokens) const;

  ClipTokenizer tokenizer_;
  ChunkEncoder encoder_;
  int64_t width_;
  TextualInversionLibrary* embeddings_;
  int comma_backtrack_;
  // Embedding names as token sequences, by first token, longest first (A1111's ids_lookup).
  std::map<int64_t, std::vector<std::pair<std::vector<int64_t>, std::string>>> embedding_ids_;
  std::map<std::string, std::string> used_embeddings_;
  int64_t encoder_calls_ = 0;
};

// The UNet as guidance sees it: (latents [B, C, H, W], timestep, context [B, T, D], pooled
// text embeddings [B, P] row for row with the context, or undefined).
using DenoiserFunction =
    std::function<at::Tensor(const at::Tensor& model_input, const at::Tensor& timestep,
                             const at::Tensor& context, const at::Tensor& pooled)>;

// A1111's "negative guidance minimum sigma" (NGMS, opts.s_min_uncond): once the noise is low the
// negative prompt changes little, so model calls whose k-diffusion sigma
// sqrt((1 - abar) / abar) is below `min_sigma` run the positive prompt alone, as if the CFG
// scale were 1. A1111 skips every other call (odd call indices, counted from the first call of
// the pass), or every call with `all_steps` ("NGMS all steps").
struct NegativeGuidanceCutoff {
  double min_sigma = 0;  // 0 = off (A1111's default)
  bool all_steps = false;
  bool enabled() const { return min_sigma > 0; }
};

// Classifier-free guidance with composable parts, A1111's combine_denoised:
// uncond + sum_i w_i * g * (cond_i - uncond), one UNet batch [negative, part_1..part_n].
// The step of each call comes from the plan: consecutive calls at the same timestep (PNDM's
// repeat, Heun's second evaluation) share a step; img2img counts from the full schedule's
// start. One plain part of weight 1 with g <= 1 runs the positive prompt alone (no
// unconditional pass). A call that `cutoff` skips runs [part_1..part_n] and combines them with
// part 1 in the negative's place and g = 1, as A1111 does.
ModelFunction guided_denoiser(DenoiserFunction denoiser, const PromptConditioning& conditioning,
                              double guidance_scale, const SamplingPlan& plan,
                              const NegativeGuidanceCutoff& cutoff = {});

// Step index (0-based) of each model call the plan makes, counted from the schedule start.
std::vector<int64_t> steps_of_model_calls(const SamplingPlan& plan);

}  // namespace doppel

#include "doppel/diffusion/prompt_conditioning.hpp"

#include <algorithm>
#include <cmath>
#include <memory>
#include <utility>

#include "doppel/core/error.hpp"

namespace doppel {

// The texts one composable part (or the negative prompt) goes through, in schedule order.
// A1111 encodes them as one batch, so its mean restoration averages over all of them.
struct PromptConditioner::ScheduledGroup {
  std::vector<std::pair<int64_t, std::string>> entries;  // end_step, text
};

const at::Tensor& PromptConditioning::at_step(const std::vector<ScheduledConditioning>& schedule,
                                              int64_t step) {
  return entry_at_step(schedule, step).hidden;
}

const ScheduledConditioning& PromptConditioning::entry_at_step(
    const std::vector<ScheduledConditioning>& schedule, int64_t step) {
  if (schedule.empty())
    throw Error(ErrorCode::kInternal, "a prompt conditioning schedule is empty");
  for (const ScheduledConditioning& entry : schedule)
    if (step <= entry.end_step) return entry;
  return schedule.back();
}

PromptConditioner::PromptConditioner(const ClipTokenizer& tokenizer, ChunkEncoder encoder,
                                     int64_t width, TextualInversionLibrary* embeddings,
                                     int comma_backtrack)
    : tokenizer_(tokenizer),
      encoder_(std::move(encoder)),
      width_(width),
      embeddings_(embeddings),
      comma_backtrack_(comma_backtrack) {
  if (!embeddings_) return;
  for (const std::string& name : embeddings_->names()) {
    std::vector<int64_t> ids = tokenizer_.encode(name);
    if (!ids.empty()) embedding_ids_[ids.front()].emplace_back(std::move(ids), name);
  }
  for (auto& [first, candidates] : embedding_ids_)
    std::stable_sort(candidates.begin(), candidates.end(),
                     [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
}

std::vector<TokenChunk> PromptConditioner::tokenize(const std::vector<WeightedText>& pieces) {
  const size_t chunk_length = static_cast<size_t>(tokenizer_.context_length() - 2);
  const int64_t comma = tokenizer_.token_id(",</w>");
  struct Pending {
    std::vector<int64_t> tokens;
    std::vector<double> multipliers;
    std::vector<std::pair<int64_t, std::string>> embeddings;  // offset in tokens, name
  };
  std::vector<TokenChunk> chunks;
  Pending chunk;
  int64_t last_comma = -1;

  // A1111's next_chunk(): pad to 75 with EOS, wrap in BOS/EOS; OpenCLIP pads after the
  // first EOS with its own pad id.
  auto next_chunk = [&] {
    TokenChunk window;
    window.tokens.push_back(tokenizer_.bos_id());
    window.tokens.insert(window.tokens.end(), chunk.tokens.begin(), chunk.tokens.end());
    window.tokens.resize(chunk_length + 1, tokenizer_.eos_id());
    window.tokens.push_back(tokenizer_.eos_id());
    const auto first_eos =
        std::find(window.tokens.begin() + 1, window.tokens.end(), tokenizer_.eos_id());
    std::fill(first_eos + 1, window.tokens.end(), tokenizer_.pad_id());
    window.multipliers.push_back(1.0);
    window.multipliers.insert(window.multipliers.end(), chunk.multipliers.begin(),
                              chunk.multipliers.end());
    window.multipliers.resize(chunk_length + 2, 1.0);
    for (const auto& [offset, name] : chunk.embeddings)
      window.embeddings.emplace_back(offset + 1, name);
    chunks.push_back(std::move(window));
    chunk = Pending{};
    last_comma = -1;
  };

  for (const WeightedText& piece : pieces) {
    if (piece.is_break()) {
      next_chunk();
      continue;
    }
    const std::vector<int64_t> ids = tokenizer_.encode(piece.text);
    size_t position = 0;
    while (position < ids.size()) {
      const int64_t token = ids[position];
      if (token == comma) {
        last_comma = static_cast<int64_t>(chunk.tokens.size());
      } else if (comma_backtrack_ != 0 && chunk.tokens.size() == chunk_length && last_comma != -1 &&
                 static_cast<int64_t>(chunk_length) - last_comma <= comma_backtrack_) {
        // The words after the last comma move to the next chunk (with any embedding
        // placed among them).
        const size_t break_at = static_cast<size_t>(last_comma + 1);
        Pending moved;
        moved.tokens.assign(chunk.tokens.begin() + static_cast<std::ptrdiff_t>(break_at),
                            chunk.tokens.end());
        moved.multipliers.assign(chunk.multipliers.begin() + static_cast<std::ptrdiff_t>(break_at),
                                 chunk.multipliers.end());
        std::vector<std::pair<int64_t, std::string>> kept;
        for (auto& placed : chunk.embeddings) {
          if (placed.first >= static_cast<int64_t>(break_at))
            moved.embeddings.emplace_back(placed.first - static_cast<int64_t>(break_at),
                                          placed.second);
          else
            kept.push_back(placed);
        }
        chunk.tokens.resize(break_at);
        chunk.multipliers.resize(break_at);
        chunk.embeddings = std::move(kept);
        next_chunk();
        chunk = std::move(moved);
      }
      if (chunk.tokens.size() == chunk_length) next_chunk();

      // A1111's find_embedding_at_position: the longest embedding name whose tokens
      // start here.
      const std::pair<std::vector<int64_t>, std::string>* match = nullptr;
      if (auto found = embedding_ids_.find(token); found != embedding_ids_.end()) {
        for (const auto& candidate : found->second) {
          const auto& name_ids = candidate.first;
          if (position + name_ids.size() <= ids.size() &&
              std::equal(name_ids.begin(), name_ids.end(),
                         ids.begin() + static_cast<std::ptrdiff_t>(position))) {
            match = &candidate;
            break;
          }
        }
      }
      if (!match) {
        chunk.tokens.push_back(token);
        chunk.multipliers.push_back(piece.weight);
        ++position;
        continue;
      }
      const TextualInversionEmbedding& embedding = embeddings_->get(match->second);
      const size_t count = static_cast<size_t>(embedding.vectors_for_width(width_).size(0));
      if (count > chunk_length)
        throw Error(ErrorCode::kInvalidArgument, "embedding " + embedding.file + " has " +
                                                     std::to_string(count) + " vectors; at most " +
                                                     std::to_string(chunk_length) +
                                                     " fit in one prompt chunk");
      if (chunk.tokens.size() + count > chunk_length) next_chunk();
      chunk.embeddings.emplace_back(static_cast<int64_t>(chunk.tokens.size()), match->second);
      chunk.tokens.insert(chunk.tokens.end(), count, 0);
      chunk.multipliers.insert(chunk.multipliers.end(), count, piece.weight);
      position += match->first.size();
      used_embeddings_[embedding.name] = embedding.short_hash;
    }
  }
  if (!chunk.tokens.empty() || chunks.empty()) next_chunk();
  return chunks;
}

EncodedChunks PromptConditioner::encode(const std::vector<TokenChunk>& chunks) {
  std::vector<int64_t> flat;
  std::vector<EmbeddingRows> rows;
  for (size_t i = 0; i < chunks.size(); ++i) {
    flat.insert(flat.end(), chunks[i].tokens.begin(), chunks[i].tokens.end());
    for (const auto& [position, name] : chunks[i].embeddings)
      rows.push_back(
          {static_cast<int64_t>(i), position, embeddings_->get(name).vectors_for_width(width_)});
  }
  at::Tensor ids = at::tensor(flat, at::kLong).reshape({static_cast<int64_t>(chunks.size()), -1});
  ++encoder_calls_;
  return encoder_(ids, rows);  // [chunks, 77, D]
}

// A1111's "Original" emphasis for one group, chunk by chunk: z *= multipliers, then
// z *= mean(z before) / mean(z after), the means taken over the group's whole batch (every
// schedule entry, repeats included). Chunks where every multiplier is 1 stay untouched, so
// unweighted prompts keep the encoder's exact output.
void PromptConditioner::weight_group(
    const ScheduledGroup& group, std::map<std::string, at::Tensor>& weighted,
    const std::map<std::string, at::Tensor>& raw,
    const std::map<std::string, std::vector<TokenChunk>>& tokens) const {
  std::vector<std::string> distinct;
  for (const auto& entry : group.entries)
    if (std::find(distinct.begin(), distinct.end(), entry.second) == distinct.end())
      distinct.push_back(entry.second);
  const int64_t chunk_count = raw.at(distinct.front()).size(0);
  std::map<std::string, std::vector<at::Tensor>> chunks;
  for (const std::string& text : distinct) chunks[text] = raw.at(text).unbind(0);
  bool any_weighted = false;
  for (int64_t i = 0; i < chunk_count; ++i) {
    const auto index = static_cast<size_t>(i);
    bool weighted_chunk = false;
    for (const std::string& text : distinct)
      for (double m : tokens.at(text)[index].multipliers) weighted_chunk |= (m != 1.0);
    if (!weighted_chunk) continue;
    any_weighted = true;
    std::vector<at::Tensor> batch;
    std::vector<double> multipliers;
    for (const auto& entry : group.entries) {
      batch.push_back(chunks[entry.second][index]);
      const auto& m = tokens.at(entry.second)[index].multipliers;
      multipliers.insert(multipliers.end(), m.begin(), m.end());
    }
    const at::Tensor z = at::stack(batch).to(at::kFloat);  // [S, 77, D]
    const at::Tensor m = at::tensor(multipliers, z.options().dtype(at::kDouble))
                             .to(at::kFloat)
                             .reshape({z.size(0), z.size(1), 1});
    const at::Tensor original_mean = z.mean();
    at::Tensor scaled = z * m.expand(z.sizes());
    const at::Tensor new_mean = scaled.mean();
    scaled = scaled * (original_mean / new_mean);
    for (const std::string& text : distinct) {
      size_t row = 0;
      while (group.entries[row].second != text) ++row;
      chunks[text][index] = scaled[static_cast<int64_t>(row)].to(raw.at(text).scalar_type());
    }
  }
  for (const std::string& text : distinct) {
    const at::Tensor stacked = any_weighted ? at::stack(chunks[text]) : raw.at(text);
    weighted[text] = stacked.reshape({1, -1, stacked.size(-1)});
  }
}

PromptConditioning PromptConditioner::condition(std::string_view prompt, std::string_view negative,
                                                int64_t steps) {
  const ParsedPrompt parsed = parse_prompt(prompt, steps);
  std::map<std::string, std::vector<WeightedText>> pieces;
  std::vector<ScheduledGroup> groups;  // positive parts, then the negative prompt
  std::vector<double> weights;
  for (const PromptPart& part : parsed.parts) {
    ScheduledGroup group;
    for (const ScheduledText& entry : part.schedule) {
      group.entries.emplace_back(entry.end_step, entry.text);
      pieces.emplace(entry.text, entry.pieces);
    }
    groups.push_back(std::move(group));
    weights.push_back(part.weight);
  }
  // A1111 splits only the positive prompt at AND and reads extra-network tags only there;
  // the negative prompt is scheduled and weighted as one text.
  ScheduledGroup negative_group;
  for (auto& [end_step, text] : prompt_schedule(negative, steps)) {
    pieces.emplace(text, parse_prompt_attention(text));
    negative_group.entries.emplace_back(end_step, std::move(text));
  }
  groups.push_back(std::move(negative_group));

  std::map<std::string, std::vector<TokenChunk>> tokens;
  size_t chunk_count = 1;
  for (const auto& [text, text_pieces] : pieces) {
    tokens[text] = tokenize(text_pieces);
    chunk_count = std::max(chunk_count, tokens[text].size());
  }
  // Every text conditions the same length: shorter ones get empty chunks, encoded in the
  // same batch (as doppel has always padded the shorter of prompt and negative).
  const TokenChunk empty_chunk = tokenize({WeightedText{"", 1.0}}).front();
  // Texts that tokenize alike (" x" and "x") share one encoder call.
  std::map<std::string, at::Tensor> raw, pooled;
  std::map<std::string, EncodedChunks> by_tokens;
  for (auto& [text, chunks] : tokens) {
    chunks.resize(chunk_count, empty_chunk);
    std::string key;
    for (const TokenChunk& chunk : chunks) {
      for (int64_t token : chunk.tokens) key += std::to_string(token) + ",";
      for (const auto& [position, name] : chunk.embeddings)
        key += "|" + std::to_string(position) + ":" + name + "|";
      key += ";";
    }
    auto cached = by_tokens.find(key);
    if (cached == by_tokens.end()) cached = by_tokens.emplace(key, encode(chunks)).first;
    raw[text] = cached->second.hidden;
    // A1111 conditions SDXL on the first window's pooled embedding, unweighted.
    if (cached->second.pooled.defined()) pooled[text] = cached->second.pooled.narrow(0, 0, 1);
  }

  PromptConditioning result;
  for (size_t g = 0; g < groups.size(); ++g) {
    std::map<std::string, at::Tensor> weighted;
    weight_group(groups[g], weighted, raw, tokens);
    std::vector<ScheduledConditioning> schedule;
    for (const auto& [end_step, text] : groups[g].entries)
      schedule.push_back(
          {end_step, weighted.at(text), pooled.count(text) ? pooled.at(text) : at::Tensor()});
    if (g + 1 < groups.size())
      result.positive.push_back({weights[g], std::move(schedule)});
    else
      result.negative = std::move(schedule);
  }
  result.embeddings = used_embeddings_;
  return result;
}

std::vector<int64_t> steps_of_model_calls(const SamplingPlan& plan) {
  std::vector<int64_t> steps;
  const bool one_call_per_step = static_cast<int64_t>(plan.timesteps.size()) == plan.steps;
  int64_t step = 0;
  for (size_t call = 0; call < plan.timesteps.size(); ++call) {
    if (call > 0 && (one_call_per_step || plan.timesteps[call] != plan.timesteps[call - 1])) ++step;
    if (static_cast<int64_t>(call) >= plan.begin_index) steps.push_back(step);
  }
  return steps;
}

namespace {

// The k-diffusion sigma of each model call the plan makes from its begin_index: what A1111's
// NGMS compares with.
std::vector<double> sigmas_of_model_calls(const SamplingPlan& plan) {
  std::vector<double> sigmas;
  for (size_t call = static_cast<size_t>(plan.begin_index); call < plan.timesteps.size(); ++call) {
    const NoiseLevel level = noise_level_at(plan, plan.timesteps[call]);
    sigmas.push_back(level.sigma / level.alpha);
  }
  return sigmas;
}

}  // namespace

ModelFunction guided_denoiser(DenoiserFunction denoiser, const PromptConditioning& conditioning,
                              double guidance_scale, const SamplingPlan& plan,
                              const NegativeGuidanceCutoff& cutoff) {
  if (conditioning.positive.empty() || conditioning.negative.empty())
    throw Error(ErrorCode::kInternal, "guidance needs a positive and a negative conditioning");
  if (!(cutoff.min_sigma >= 0) || !std::isfinite(cutoff.min_sigma))
    throw Error(ErrorCode::kInvalidArgument,
                "the negative guidance minimum sigma (NGMS) must be a finite value >= 0");
  if (cutoff.enabled() && plan.timesteps.empty())
    throw Error(ErrorCode::kInternal, "NGMS needs the sampling plan to know each call's sigma");
  auto call_steps = std::make_shared<const std::vector<int64_t>>(steps_of_model_calls(plan));
  // Calls (from the pass's first) that run without the negative prompt.
  auto skips_negative = std::make_shared<std::vector<bool>>();
  if (cutoff.enabled()) {
    const std::vector<double> sigmas = sigmas_of_model_calls(plan);
    for (size_t call = 0; call < sigmas.size(); ++call)
      skips_negative->push_back((call % 2 == 1 || cutoff.all_steps) &&
                                sigmas[call] < cutoff.min_sigma);
  }
  auto calls = std::make_shared<int64_t>(0);
  const bool positive_only = conditioning.positive.size() == 1 &&
                             conditioning.positive.front().weight == 1.0 && guidance_scale <= 1.0;
  return [denoiser = std::move(denoiser), conditioning, guidance_scale, call_steps, calls,
          positive_only, skips_negative](const at::Tensor& x, const at::Tensor& t) {
    const auto call = static_cast<size_t>((*calls)++);
    const int64_t step =
        call_steps->empty() ? 0 : (*call_steps)[std::min(call, call_steps->size() - 1)];
    const int64_t n = x.size(0);
    if (positive_only) {
      const ScheduledConditioning& positive =
          PromptConditioning::entry_at_step(conditioning.positive.front().schedule, step);
      return denoiser(x, t, positive.hidden.expand({n, -1, -1}),
                      positive.pooled.defined() ? positive.pooled.expand({n, -1}) : at::Tensor());
    }
    const bool skip_negative = call < skips_negative->size() && (*skips_negative)[call];
    // One UNet batch: [negative, part 1, ..., part k], each n latents; without the negative
    // when NGMS skips it.
    std::vector<const ScheduledConditioning*> entries;
    if (!skip_negative)
      entries.push_back(&PromptConditioning::entry_at_step(conditioning.negative, step));
    for (const ConditioningPart& part : conditioning.positive)
      entries.push_back(&PromptConditioning::entry_at_step(part.schedule, step));
    std::vector<at::Tensor> contexts, pooled;
    for (const ScheduledConditioning* entry : entries) {
      contexts.push_back(entry->hidden.expand({n, -1, -1}));
      if (entry->pooled.defined()) pooled.push_back(entry->pooled.expand({n, -1}));
    }
    if (!pooled.empty() && pooled.size() != entries.size())
      throw Error(ErrorCode::kInternal, "pooled embeddings are missing for some prompts");
    const auto batches = static_cast<int64_t>(contexts.size());
    const at::Tensor output =
        denoiser(at::cat(std::vector<at::Tensor>(contexts.size(), x)), t, at::cat(contexts),
                 pooled.empty() ? at::Tensor() : at::cat(pooled));
    // A1111 puts the first part's output where the negative's would be and guides with 1.
    const at::Tensor unconditional = output.slice(0, 0, n);
    const double scale = skip_negative ? 1.0 : guidance_scale;
    const int64_t first_part = skip_negative ? 0 : 1;  // batch index of part 1
    at::Tensor guided = unconditional;
    // From batch index 1: when part 1 stands in for the negative, it adds nothing to itself.
    for (int64_t k = 1; k < batches; ++k) {
      const double weight = conditioning.positive[static_cast<size_t>(k - first_part)].weight;
      guided = guided + (output.slice(0, k * n, (k + 1) * n) - unconditional) * (weight * scale);
    }
    return guided;
  };
}

}  // namespace doppel

#include "doppel/models/token_merging.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "doppel/core/error.hpp"

namespace doppel {

namespace {

// Indices [B, k] -> [B, k, C], to gather or scatter whole token rows.
at::Tensor rows(const at::Tensor& indices, int64_t channels) {
  return indices.unsqueeze(-1).expand({indices.size(0), indices.size(1), channels});
}

}  // namespace

TokenMerge TokenMerge::plan(const at::Tensor& metric, int64_t height, int64_t width, double ratio,
                            int64_t stride_x, int64_t stride_y) {
  if (!metric.defined() || metric.dim() != 3 || metric.size(1) != height * width || height < 1 ||
      width < 1 || stride_x < 1 || stride_y < 1)
    throw Error(ErrorCode::kInvalidArgument,
                "token merging needs tokens [B, height * width, C] and positive strides");
  TokenMerge plan;
  plan.tokens_ = metric.size(1);
  const auto requested = static_cast<int64_t>(static_cast<double>(plan.tokens_) * ratio);
  if (requested <= 0) return plan;

  // The destinations: the top-left token of every whole stride_y x stride_x cell; the rest
  // (partial cells at the right and bottom included) are sources. Both in raster order.
  std::vector<int64_t> sources, destinations;
  const int64_t cells_y = height / stride_y, cells_x = width / stride_x;
  for (int64_t y = 0; y < height; ++y)
    for (int64_t x = 0; x < width; ++x) {
      const bool kept = y < cells_y * stride_y && x < cells_x * stride_x && y % stride_y == 0 &&
                        x % stride_x == 0;
      (kept ? destinations : sources).push_back(y * width + x);
    }
  if (destinations.empty() || sources.empty()) return plan;
  const auto device = metric.device();
  plan.source_ = at::tensor(sources, at::TensorOptions().dtype(at::kLong)).to(device);
  plan.destination_ = at::tensor(destinations, at::TensorOptions().dtype(at::kLong)).to(device);

  // Cosine similarity of every source to every destination; each source's best destination,
  // and the r sources with the most similar best merge (ties keep raster order).
  const at::Tensor unit = metric.to(at::kFloat) / metric.to(at::kFloat).norm(2, {-1}, true);
  const at::Tensor scores = at::matmul(unit.index_select(1, plan.source_),
                                       unit.index_select(1, plan.destination_).transpose(1, 2));
  const auto [best, best_destination] = scores.max(-1);
  const at::Tensor order = std::get<1>(best.sort(/*stable=*/true, -1, /*descending=*/true));
  plan.merged_ = std::min<int64_t>(requested, static_cast<int64_t>(sources.size()));
  plan.merged_from_ = order.slice(1, 0, plan.merged_);
  plan.unmerged_ = order.slice(1, plan.merged_);
  plan.merged_into_ = best_destination.gather(1, plan.merged_from_);
  return plan;
}

at::Tensor TokenMerge::merge(const at::Tensor& x) const {
  if (!active()) return x;
  if (x.dim() != 3 || x.size(1) != tokens_ || x.size(0) != merged_from_.size(0))
    throw Error(ErrorCode::kInternal, "token merging: the tokens do not match the plan");
  const int64_t channels = x.size(2);
  const at::Tensor source = x.index_select(1, source_);
  const at::Tensor kept = source.gather(1, rows(unmerged_, channels));
  const at::Tensor moving = source.gather(1, rows(merged_from_, channels));
  // Each destination becomes the mean of itself and the sources merged into it (tomesd's
  // scatter_reduce "mean", which libtorch 1.13 marks as beta and warns about).
  const at::Tensor sum =
      x.index_select(1, destination_).scatter_add(1, rows(merged_into_, channels), moving);
  const at::Tensor one = at::ones({x.size(0), merged_, 1}, x.options());
  const at::Tensor count = at::ones({x.size(0), destination_.size(0), 1}, x.options())
                               .scatter_add(1, merged_into_.unsqueeze(-1), one);
  const at::Tensor destination = sum / count;
  return at::cat({kept, destination}, 1);
}

at::Tensor TokenMerge::unmerge(const at::Tensor& x) const {
  if (!active()) return x;
  const int64_t kept_count = unmerged_.size(1);
  if (x.dim() != 3 || x.size(1) != kept_count + destination_.size(0))
    throw Error(ErrorCode::kInternal, "token merging: the merged tokens do not match the plan");
  const int64_t channels = x.size(2);
  const at::Tensor kept = x.slice(1, 0, kept_count);
  const at::Tensor destination = x.slice(1, kept_count);
  const at::Tensor moved = destination.gather(1, rows(merged_into_, channels));
  const int64_t batch = x.size(0);
  // Grid positions of the kept and the merged sources, per batch row.
  const at::Tensor kept_at = source_.index_select(0, unmerged_.flatten()).view({batch, -1});
  const at::Tensor moved_at = source_.index_select(0, merged_from_.flatten()).view({batch, -1});
  at::Tensor out = at::zeros({batch, tokens_, channels}, x.options());
  out.index_copy_(1, destination_, destination);
  out.scatter_(1, rows(kept_at, channels), kept);
  out.scatter_(1, rows(moved_at, channels), moved);
  return out;
}

}  // namespace doppel

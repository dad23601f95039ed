// A1111's variation seeds ("Variation seed", "Variation strength"): the starting noise of an
// image bent towards the noise of a second seed, so small strengths give small variations of
// the same picture.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>

#include "doppel/core/random.hpp"

namespace doppel {

// A1111's slerp(strength, noise, variation): spherical interpolation from `noise` (strength 0)
// to `variation` (strength 1), [N, C, H, W]. As A1111 does it on its [C, H, W] noise, the
// vectors interpolated are the columns (along H) of each channel; nearly parallel ones are
// mixed linearly (with A1111's weights, for the same pictures). Throws kInvalidArgument for
// tensors of different shapes or a strength outside 0-1.
at::Tensor slerp_noise(double strength, const at::Tensor& noise, const at::Tensor& variation);

// The starting noise of one image: `generator`'s next draw of `shape`, turned towards the first
// draw of a generator seeded with `variation_seed` by `strength` (none at 0, when
// `variation_seed` draws nothing). `generator` advances by one draw either way, so the
// sampler's later noise is the seed's own, as in A1111.
at::Tensor variation_noise(Generator& generator, at::IntArrayRef shape,
                           const at::TensorOptions& options, uint64_t variation_seed,
                           double strength);

}  // namespace doppel

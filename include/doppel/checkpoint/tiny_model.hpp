// A tiny SD1-architecture model with reproducible random weights, built in
// code: the demo model of `doppel generate --tiny-demo` and the model of tests
// above the engine (studio, server) that need real generations in milliseconds.
#pragma once
#include <cstdint>

#include "doppel/checkpoint/stable_diffusion.hpp"

namespace doppel {

// SD1 family: CLIP text 32 wide / 2 layers, UNet 32/64 channels, VAE 4 levels
// (so 64x64 images have 8x8 latents, as real SD). Same seed, same weights.
StableDiffusionCheckpoint make_tiny_stable_diffusion(uint64_t seed = 0);

}  // namespace doppel

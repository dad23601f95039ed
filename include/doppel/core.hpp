// The core layer's public entry points (docs/architecture.md): what every other layer builds on.
#pragma once
#include "doppel/core/atomic_file.hpp"            // write_file_atomically: temp file + rename
#include "doppel/core/error.hpp"                  // doppel::Error and ErrorCode, the one exception
#include "doppel/core/generation_parameters.hpp"  // A1111 "parameters" text, format_number
#include "doppel/core/image.hpp"                  // decode photos, write PNGs with text chunks
#include "doppel/core/log.hpp"                    // levelled logging
#include "doppel/core/paths.hpp"                  // where bundled model data is found
#include "doppel/core/pillow_resize.hpp"          // Pillow-exact resampling
#include "doppel/core/progress.hpp"               // progress reports and cancellation
#include "doppel/core/random.hpp"                 // PyTorch-equal random streams
#include "doppel/core/runtime.hpp"                // threads and default compute dtype
#include "doppel/core/safetensors.hpp"            // the .safetensors file format

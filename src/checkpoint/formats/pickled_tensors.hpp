// The tensors of a torch.save file (read by the safe pickle reader, nothing executed) as a
// TensorSource: nested dicts are flattened with '.' ({"image_proj": {"proj.weight": t}} ->
// "image_proj.proj.weight"); a {"state_dict": {...}} wrapper is looked through.
#pragma once
#include <cstdint>
#include <filesystem>

#include "doppel/checkpoint/tensor_source.hpp"

namespace doppel {

// Throws doppel::Error: kNotFound (no file), kInvalidFile (not a torch file, or larger than
// `max_bytes`), kUnsupported (legacy or code-carrying pickles, see torch_pickle.hpp).
TensorSource pickled_tensor_source(const std::filesystem::path& path,
                                   uintmax_t max_bytes = uintmax_t{8} << 30);

}  // namespace doppel

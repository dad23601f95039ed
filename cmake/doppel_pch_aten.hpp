// The light precompiled header: ATen (tensors) and the standard library, without torch::nn.
// For sources that use tensors but no torch::nn module, loading the full doppel_pch.hpp costs
// more than parsing what they need (see cmake/precompiled_header_lists.cmake).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

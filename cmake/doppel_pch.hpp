// Precompiled header shared by every layer: the expensive libtorch headers.
#pragma once
#include <ATen/ATen.h>
#include <torch/nn.h>
#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "doppel/checkpoint/formats/tfjs_weights.hpp"

#include <nlohmann/json.hpp>

#include <cstring>
#include <limits>

#include "doppel/core/atomic_file.hpp"
#include "doppel/core/error.hpp"

namespace doppel {
namespace {

[[noreturn]] void fail(const std::filesystem::path& manifest, const std::string& what) {
  throw Error(ErrorCode::kInvalidFile, manifest.string() + ": " + what +
                                           " (re-install the model files with scripts/install.sh)");
}

size_t element_size(const std::string& stored_dtype) {
  if (stored_dtype == "float32" || stored_dtype == "int32") return 4;
  if (stored_dtype == "uint16" || stored_dtype == "float16") return 2;
  if (stored_dtype == "uint8" || stored_dtype == "bool") return 1;
  return 0;
}

// Little-endian byte reads (the format is little-endian on every platform).
uint32_t load_le32(const uint8_t* p) {
  return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}
uint16_t load_le16(const uint8_t* p) {
  return uint16_t(p[0] | (p[1] << 8));
}

at::Tensor decode_tensor(const nlohmann::json& spec, const uint8_t* data, int64_t count,
                         const std::filesystem::path& manifest, const std::string& name) {
  const std::string dtype = spec.at("dtype").get<std::string>();
  if (spec.contains("quantization")) {
    const auto& q = spec.at("quantization");
    const std::string qtype = q.at("dtype").get<std::string>();
    if (dtype != "float32")
      fail(manifest, "tensor '" + name + "' is quantised but declared " + dtype);
    at::Tensor out = at::empty({count}, at::kFloat);
    float* dst = out.data_ptr<float>();
    if (qtype == "float16") {
      at::Tensor half = at::empty({count}, at::kHalf);
      auto* h = reinterpret_cast<uint8_t*>(half.data_ptr());
      for (int64_t i = 0; i < count; ++i) {
        const uint16_t bits = load_le16(data + 2 * i);
        std::memcpy(h + 2 * i, &bits, 2);
      }
      return half.to(at::kFloat);
    }
    if (qtype != "uint8" && qtype != "uint16")
      fail(manifest, "tensor '" + name + "' has unsupported quantisation " + qtype);
    // tfjs dequantises in double precision and stores float32: v = q * scale + min.
    const double scale = q.at("scale").get<double>();
    const double min = q.at("min").get<double>();
    for (int64_t i = 0; i < count; ++i) {
      const double stored = qtype == "uint8" ? double(data[i]) : double(load_le16(data + 2 * i));
      dst[i] = static_cast<float>(stored * scale + min);
    }
    return out;
  }
  if (dtype == "float32") {
    at::Tensor out = at::empty({count}, at::kFloat);
    auto* dst = reinterpret_cast<uint32_t*>(out.data_ptr<float>());
    for (int64_t i = 0; i < count; ++i) dst[i] = load_le32(data + 4 * i);
    return out;
  }
  if (dtype == "int32") {
    at::Tensor out = at::empty({count}, at::kInt);
    auto* dst = reinterpret_cast<uint32_t*>(out.data_ptr<int32_t>());
    for (int64_t i = 0; i < count; ++i) dst[i] = load_le32(data + 4 * i);
    return out;
  }
  if (dtype == "bool") {
    at::Tensor out = at::empty({count}, at::kBool);
    bool* dst = out.data_ptr<bool>();
    for (int64_t i = 0; i < count; ++i) dst[i] = data[i] != 0;
    return out;
  }
  fail(manifest, "tensor '" + name + "' has unsupported dtype " + dtype);
}

}  // namespace

std::vector<TfjsTensor> read_tfjs_weights(const std::filesystem::path& manifest_path) {
  nlohmann::json manifest;
  try {
    manifest = nlohmann::json::parse(read_file(manifest_path));
  } catch (const nlohmann::json::exception& e) {
    fail(manifest_path, std::string("manifest is not valid JSON (") + e.what() + ")");
  }
  if (!manifest.is_array() || manifest.empty())
    fail(manifest_path, "manifest must be a non-empty array of weight groups");

  std::vector<TfjsTensor> tensors;
  try {
    for (const auto& group : manifest) {
      std::string shard_bytes;
      for (const auto& shard : group.at("paths")) {
        const auto shard_path = manifest_path.parent_path() / shard.get<std::string>();
        shard_bytes += read_file(shard_path);
      }
      const auto* bytes = reinterpret_cast<const uint8_t*>(shard_bytes.data());
      size_t offset = 0;
      for (const auto& spec : group.at("weights")) {
        const std::string name = spec.at("name").get<std::string>();
        std::vector<int64_t> shape;
        int64_t count = 1;
        for (const auto& dim : spec.at("shape")) {
          const int64_t d = dim.get<int64_t>();
          if (d < 0 || (d > 0 && count > std::numeric_limits<int32_t>::max() / d))
            fail(manifest_path, "tensor '" + name + "' has an invalid shape");
          shape.push_back(d);
          count *= d;
        }
        const std::string stored_dtype = spec.contains("quantization")
                                             ? spec["quantization"].at("dtype").get<std::string>()
                                             : spec.at("dtype").get<std::string>();
        const size_t item = element_size(stored_dtype);
        if (item == 0)
          fail(manifest_path, "tensor '" + name + "' has unsupported dtype " + stored_dtype);
        const size_t nbytes = size_t(count) * item;
        if (offset + nbytes > shard_bytes.size())
          fail(manifest_path, "weight data ends inside tensor '" + name + "' (needs " +
                                  std::to_string(offset + nbytes) + " bytes, shards hold " +
                                  std::to_string(shard_bytes.size()) + ")");
        tensors.push_back(
            {name, decode_tensor(spec, bytes + offset, count, manifest_path, name).view(shape)});
        offset += nbytes;
      }
      if (offset != shard_bytes.size())
        fail(manifest_path, std::to_string(shard_bytes.size() - offset) +
                                " bytes of weight data are not described by the manifest");
    }
  } catch (const nlohmann::json::exception& e) {
    fail(manifest_path, std::string("malformed manifest entry (") + e.what() + ")");
  }
  return tensors;
}

}  // namespace doppel

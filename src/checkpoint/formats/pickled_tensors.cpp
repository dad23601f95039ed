#include "checkpoint/formats/pickled_tensors.hpp"

#include <fstream>
#include <iterator>
#include <string>
#include <system_error>

#include "doppel/checkpoint/formats/torch_pickle.hpp"
#include "doppel/core/error.hpp"

namespace doppel {

namespace {

void flatten(const PickleRef& value, const std::string& name, const std::string& origin,
             TensorSource& out) {
  if (!value) return;
  if (value->kind == PickleValue::Kind::kTensor) {
    out.add_tensor(name, value->tensor, origin + ": " + name);
    return;
  }
  if (value->kind != PickleValue::Kind::kDict && value->kind != PickleValue::Kind::kObject) return;
  for (const auto& [key, child] : value->entries) {
    if (!key || key->kind != PickleValue::Kind::kString) continue;
    flatten(child, name.empty() ? key->text : name + "." + key->text, origin, out);
  }
}

}  // namespace

TensorSource pickled_tensor_source(const std::filesystem::path& path, uintmax_t max_bytes) {
  std::error_code error;
  const uintmax_t size = std::filesystem::file_size(path, error);
  if (error) throw Error(ErrorCode::kNotFound, "cannot read " + path.string());
  if (size > max_bytes)
    throw Error(ErrorCode::kInvalidFile, path.string() + " is too large (" +
                                             std::to_string(size >> 20) + " MiB) for this model");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::kIo, "cannot open " + path.string());
  const std::string bytes(std::istreambuf_iterator<char>(in), {});
  const PickleRef root = read_torch_file(bytes, path.string());
  PickleRef tensors = root;
  // Training checkpoints wrap the weights: {"state_dict": {...}}.
  if (PickleRef state = root->find("state_dict"); state && root->entries.size() <= 4)
    tensors = state;
  TensorSource source;
  flatten(tensors, "", path.string(), source);
  if (source.empty()) throw Error(ErrorCode::kInvalidFile, path.string() + " holds no tensors");
  return source;
}

}  // namespace doppel

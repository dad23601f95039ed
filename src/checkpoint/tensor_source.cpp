#include "doppel/checkpoint/tensor_source.hpp"

#include "doppel/core/error.hpp"
#include "doppel/core/safetensors.hpp"

namespace doppel {

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text += ", ";
    text += std::to_string(shape[i]);
  }
  return text + "]";
}

void TensorSource::add(const std::string& name, TensorInfo info, Loader loader) {
  entries_[name] = Entry{std::move(info), std::move(loader)};
}

void TensorSource::add_file(std::shared_ptr<const SafetensorsFile> file,
                            const std::string& name_prefix) {
  for (const auto& entry : file->entries()) {
    TensorInfo info{entry.shape, entry.dtype, file->label() + ": " + entry.name};
    const std::string& name = entry.name;
    add(name_prefix + name, std::move(info), [file, name]() { return file->tensor(name); });
  }
}

void TensorSource::add_file(const std::filesystem::path& path, const std::string& name_prefix) {
  add_file(std::make_shared<const SafetensorsFile>(SafetensorsFile::open(path)), name_prefix);
}

void TensorSource::add_tensor(const std::string& name, const at::Tensor& tensor,
                              const std::string& origin) {
  TensorInfo info{tensor.sizes().vec(), tensor.scalar_type(), origin + ": " + name};
  add(name, std::move(info), [tensor]() { return tensor; });
}

void TensorSource::add_all(const TensorSource& other, const std::string& name_prefix) {
  for (const auto& [name, entry] : other.entries_) entries_[name_prefix + name] = entry;
}

TensorSource TensorSource::from_file(const std::filesystem::path& path) {
  TensorSource source;
  source.add_file(path);
  return source;
}

TensorSource TensorSource::from_tensors(const std::map<std::string, at::Tensor>& tensors) {
  TensorSource source;
  for (const auto& [name, tensor] : tensors) source.add_tensor(name, tensor);
  return source;
}

const TensorInfo& TensorSource::info(const std::string& name) const {
  auto found = entries_.find(name);
  if (found == entries_.end()) {
    throw Error(ErrorCode::kNotFound, "no tensor named '" + name + "'");
  }
  return found->second.info;
}

at::Tensor TensorSource::load(const std::string& name) const {
  auto found = entries_.find(name);
  if (found == entries_.end()) {
    throw Error(ErrorCode::kNotFound, "no tensor named '" + name + "'");
  }
  return found->second.loader();
}

std::vector<std::string> TensorSource::names(const std::string& prefix) const {
  std::vector<std::string> result;
  for (auto it = entries_.lower_bound(prefix); it != entries_.end(); ++it) {
    if (it->first.compare(0, prefix.size(), prefix) != 0) break;
    result.push_back(it->first);
  }
  return result;
}

bool TensorSource::has_prefix(const std::string& prefix) const {
  auto it = entries_.lower_bound(prefix);
  return it != entries_.end() && it->first.compare(0, prefix.size(), prefix) == 0;
}

TensorSource TensorSource::renamed(
    const std::function<std::optional<std::string>(const std::string&)>& rename) const {
  TensorSource result;
  for (const auto& [name, entry] : entries_) {
    const std::string new_name = rename(name).value_or(name);
    if (!result.entries_.emplace(new_name, entry).second) {
      throw Error(ErrorCode::kInvalidFile, "two tensors map to '" + new_name + "' (one is " +
                                               entry.info.origin +
                                               "); the model folder mixes two namings");
    }
  }
  return result;
}

void TensorSource::reshape(const std::string& name, const std::vector<int64_t>& shape) {
  auto found = entries_.find(name);
  if (found == entries_.end()) {
    throw Error(ErrorCode::kNotFound, "no tensor named '" + name + "'");
  }
  Entry& entry = found->second;
  int64_t old_count = 1, new_count = 1;
  for (int64_t size : entry.info.shape) old_count *= size;
  for (int64_t size : shape) new_count *= size;
  if (old_count != new_count) {
    throw Error(ErrorCode::kInvalidFile, entry.info.origin + " has shape " +
                                             shape_string(entry.info.shape) +
                                             ", which cannot be viewed as " + shape_string(shape));
  }
  Loader inner = entry.loader;
  entry.loader = [inner, shape]() { return inner().reshape(shape); };
  entry.info.shape = shape;
}

std::map<std::string, at::Tensor> TensorSource::extract(const std::string& prefix) {
  std::map<std::string, at::Tensor> result = tensors(prefix);
  for (const auto& name : names(prefix)) entries_.erase(name);
  return result;
}

std::map<std::string, at::Tensor> TensorSource::tensors(const std::string& prefix) const {
  std::map<std::string, at::Tensor> result;
  for (const auto& name : names(prefix)) result[name.substr(prefix.size())] = load(name);
  return result;
}

std::map<std::string, std::vector<int64_t>> TensorSource::shapes(const std::string& prefix) const {
  std::map<std::string, std::vector<int64_t>> result;
  for (const auto& name : names(prefix)) result[name] = entries_.at(name).info.shape;
  return result;
}

}  // namespace doppel

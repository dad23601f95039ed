#include "doppel/checkpoint/textual_inversion.hpp"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <iterator>
#include <system_error>

#include "doppel/checkpoint/formats/torch_pickle.hpp"
#include "doppel/checkpoint/model_hash.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/log.hpp"
#include "doppel/core/safetensors.hpp"

namespace doppel {
namespace {

namespace fs = std::filesystem;

constexpr uintmax_t kMaxFileBytes = uintmax_t{256} << 20;  // embeddings are kilobytes

std::string lower_extension(const fs::path& path) {
  std::string extension = path.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return extension;
}

bool is_embedding_file(const fs::path& path) {
  const std::string extension = lower_extension(path);
  return extension == ".safetensors" || extension == ".pt" || extension == ".bin";
}

[[noreturn]] void not_an_embedding(const std::string& file, const std::string& what) {
  throw Error(ErrorCode::kInvalidFile, file + " is not a textual-inversion embedding: " + what);
}

// One embedding table: [vectors, width] float32 (a 1-D vector is one token, as A1111 reads
// diffusers concepts).
at::Tensor embedding_table(const at::Tensor& tensor, const std::string& file,
                           const std::string& key) {
  if (!at::isFloatingType(tensor.scalar_type()))
    not_an_embedding(file, "tensor '" + key + "' is not floating point");
  at::Tensor table = tensor.dim() == 1 ? tensor.unsqueeze(0) : tensor;
  if (table.dim() != 2 || table.size(0) < 1 || table.size(1) < 1)
    not_an_embedding(file, "tensor '" + key + "' has shape " +
                               std::string(c10::str(tensor.sizes())) +
                               "; expected [vectors, width]");
  table = table.to(at::kFloat).contiguous().clone();
  if (!at::isfinite(table).all().item<bool>())
    not_an_embedding(file, "tensor '" + key + "' holds NaN or infinite values");
  return table;
}

TextualInversionEmbedding from_safetensors(std::string bytes, const std::string& file) {
  SafetensorsFile tensors = SafetensorsFile::from_bytes(std::move(bytes), file);
  TextualInversionEmbedding embedding;
  if (tensors.contains("clip_l") && tensors.contains("clip_g")) {
    for (const char* key : {"clip_l", "clip_g"})
      embedding.per_encoder[key] = embedding_table(tensors.tensor(key), file, key);
    if (embedding.per_encoder["clip_l"].size(0) != embedding.per_encoder["clip_g"].size(0))
      not_an_embedding(file, "clip_l and clip_g have different numbers of vectors");
    return embedding;
  }
  std::string key;
  if (tensors.contains("emb_params"))
    key = "emb_params";
  else if (tensors.entries().size() == 1)
    key = tensors.entries().front().name;
  else {
    std::string names;
    for (const auto& entry : tensors.entries()) names += (names.empty() ? "" : ", ") + entry.name;
    not_an_embedding(file, "it has " + std::to_string(tensors.entries().size()) + " tensors (" +
                               names + "); an embedding holds one (emb_params) or clip_l + clip_g");
  }
  embedding.vectors = embedding_table(tensors.tensor(key), file, key);
  return embedding;
}

// A1111's create_embedding_from_data for a torch.save dict.
TextualInversionEmbedding from_torch_file(const std::string& bytes, const std::string& file) {
  const PickleRef root = read_torch_file(bytes, file);
  if (root->kind != PickleValue::Kind::kDict || root->entries.empty())
    not_an_embedding(file, "the file does not hold a dict");
  TextualInversionEmbedding embedding;
  auto tensor_of = [&](const PickleRef& value, const std::string& key) {
    if (!value || value->kind != PickleValue::Kind::kTensor)
      not_an_embedding(file, "'" + key + "' is not a tensor");
    return embedding_table(value->tensor, file, key);
  };
  if (PickleRef parameters = root->find("string_to_param")) {
    // A1111's own files: {"*": tensor}; old ones pickled a ParameterDict module.
    if (parameters->kind == PickleValue::Kind::kObject)
      parameters = parameters->find("_parameters");
    if (!parameters || parameters->kind != PickleValue::Kind::kDict)
      not_an_embedding(file, "string_to_param is not a dict");
    if (parameters->entries.size() != 1)
      not_an_embedding(file, "string_to_param has " + std::to_string(parameters->entries.size()) +
                                 " terms; A1111 embeddings hold one");
    embedding.vectors = tensor_of(parameters->entries.front().second, "string_to_param");
    return embedding;
  }
  if (root->find("clip_l") && root->find("clip_g")) {
    for (const char* key : {"clip_l", "clip_g"})
      embedding.per_encoder[key] = tensor_of(root->find(key), key);
    return embedding;
  }
  // diffusers concepts: {"<token>": tensor}.
  if (root->entries.front().second->kind == PickleValue::Kind::kTensor) {
    if (root->entries.size() != 1)
      not_an_embedding(file, "the dict has " + std::to_string(root->entries.size()) +
                                 " entries; a diffusers concept holds one tensor");
    embedding.vectors = tensor_of(root->entries.front().second, "concept");
    return embedding;
  }
  not_an_embedding(file, "neither A1111's string_to_param nor a diffusers concept");
}

std::string read_small_file(const fs::path& path) {
  std::error_code error;
  const uintmax_t size = fs::file_size(path, error);
  if (error) throw Error(ErrorCode::kNotFound, "cannot read embedding " + path.string());
  if (size > kMaxFileBytes)
    throw Error(ErrorCode::kInvalidFile, path.string() + " is too large for an embedding (" +
                                             std::to_string(size >> 20) + " MiB)");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::kIo, "cannot open embedding " + path.string());
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

int64_t TextualInversionEmbedding::vector_count() const {
  if (vectors.defined()) return vectors.size(0);
  return per_encoder.empty() ? 0 : per_encoder.begin()->second.size(0);
}

at::Tensor TextualInversionEmbedding::vectors_for_width(int64_t width) const {
  if (!vectors.defined()) {
    const at::Tensor& clip_l = per_encoder.at("clip_l");
    const at::Tensor& clip_g = per_encoder.at("clip_g");
    // SDXL conditions on both encoders side by side, so its embedding is too.
    if (clip_l.size(0) == clip_g.size(0) && clip_l.size(1) + clip_g.size(1) == width)
      return at::cat({clip_l, clip_g}, 1);
    throw Error(ErrorCode::kInvalidArgument,
                "embedding " + file + " is an SDXL embedding (clip_l " +
                    std::to_string(clip_l.size(1)) + " + clip_g " + std::to_string(clip_g.size(1)) +
                    " wide); this model's text encoders are " + std::to_string(width) + " wide");
  }
  if (vectors.size(1) != width)
    throw Error(ErrorCode::kInvalidArgument,
                "embedding " + file + " has vectors " + std::to_string(vectors.size(1)) +
                    " wide, but this model's text encoder is " + std::to_string(width) +
                    " wide: it was trained for another model family (SD1 768, SD2 1024)");
  return vectors;
}

TextualInversionEmbedding parse_textual_inversion(std::string bytes, const std::string& file_name) {
  const std::string extension = lower_extension(file_name);
  TextualInversionEmbedding embedding =
      extension == ".safetensors" ? from_safetensors(std::move(bytes), file_name)
      : (extension == ".pt" || extension == ".bin")
          ? from_torch_file(bytes, file_name)
          : throw Error(ErrorCode::kUnsupported,
                        file_name + ": embeddings are read from .safetensors, .pt or .bin files");
  embedding.file = file_name;
  embedding.name = fs::path(file_name).stem().string();
  return embedding;
}

TextualInversionEmbedding load_textual_inversion(const fs::path& path) {
  if (!fs::exists(path)) throw Error(ErrorCode::kNotFound, "embedding not found: " + path.string());
  TextualInversionEmbedding embedding =
      parse_textual_inversion(read_small_file(path), path.filename().string());
  embedding.short_hash = sha256_file_hex(path).substr(0, 12);
  return embedding;
}

TextualInversionLibrary TextualInversionLibrary::scan(const fs::path& folder) {
  TextualInversionLibrary library;
  std::error_code error;
  if (!fs::is_directory(folder, error)) return library;
  for (fs::recursive_directory_iterator
           it(folder, fs::directory_options::skip_permission_denied, error),
       end;
       !error && it != end; it.increment(error)) {
    if (!it->is_regular_file(error) || !is_embedding_file(it->path())) continue;
    if (it->file_size(error) == 0) continue;  // A1111 skips empty files too
    const std::string name = it->path().stem().string();
    auto [existing, inserted] = library.files_.emplace(name, it->path());
    if (!inserted) {
      // Prefer .safetensors: it needs no pickle reader.
      const bool replace = lower_extension(it->path()) == ".safetensors";
      log_warning("two embeddings are named '" + name + "': using " +
                  (replace ? it->path() : existing->second).string());
      if (replace) existing->second = it->path();
    }
  }
  return library;
}

void TextualInversionLibrary::add(TextualInversionEmbedding embedding) {
  std::string name = embedding.name;
  files_.erase(name);
  loaded_.insert_or_assign(std::move(name), std::move(embedding));
}

std::vector<std::string> TextualInversionLibrary::names() const {
  std::vector<std::string> result;
  for (const auto& [name, path] : files_) result.push_back(name);
  for (const auto& [name, embedding] : loaded_)
    if (!files_.count(name)) result.push_back(name);
  return result;
}

const TextualInversionEmbedding& TextualInversionLibrary::get(const std::string& name) {
  if (auto found = loaded_.find(name); found != loaded_.end()) return found->second;
  auto file = files_.find(name);
  if (file == files_.end())
    throw Error(ErrorCode::kNotFound, "no textual-inversion embedding named '" + name + "'");
  TextualInversionEmbedding embedding = load_textual_inversion(file->second);
  embedding.name = name;
  return loaded_.insert_or_assign(name, std::move(embedding)).first->second;
}

}  // namespace doppel

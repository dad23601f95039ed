#include "doppel/checkpoint/taesd.hpp"

#include <cctype>
#include <string>

#include "doppel/checkpoint/load_state.hpp"
#include "doppel/checkpoint/tensor_source.hpp"
#include "doppel/core/error.hpp"

namespace doppel {
namespace {

// diffusers' DecoderTiny has no module for the clamp, so its layer N is taesd.py's N + 1.
std::optional<std::string> taesd_name(const std::string& diffusers_name) {
  static const std::string prefix = "decoder.layers.";
  if (diffusers_name.rfind(prefix, 0) != 0) return std::nullopt;
  const std::string rest = diffusers_name.substr(prefix.size());
  const size_t dot = rest.find('.');
  if (dot == std::string::npos || dot == 0) return std::nullopt;
  for (size_t i = 0; i < dot; ++i)
    if (!std::isdigit(static_cast<unsigned char>(rest[i]))) return std::nullopt;
  return std::to_string(std::stoll(rest.substr(0, dot)) + 1) + rest.substr(dot);
}

}  // namespace

TinyAutoencoderDecoder load_taesd_decoder(const std::filesystem::path& path, at::ScalarType dtype,
                                          const at::Device& device) {
  std::filesystem::path file = path;
  if (std::filesystem::is_directory(path)) file = path / "diffusion_pytorch_model.safetensors";
  if (!std::filesystem::exists(file))
    throw Error(ErrorCode::kNotFound, "no TAESD file at " + file.string());
  TensorSource source = TensorSource::from_file(file);
  if (source.has_prefix("decoder.layers.")) source = source.renamed(taesd_name);
  if (!source.contains("1.weight") || source.info("1.weight").shape.size() != 4)
    throw Error(ErrorCode::kInvalidFile,
                file.string() +
                    " is not a TAESD decoder (taesd_decoder.safetensors or a diffusers "
                    "AutoencoderTiny); it has no '1.weight' or 'decoder.layers.0.weight'");
  TinyAutoencoderConfig config;
  config.latent_channels = source.info("1.weight").shape.at(1);
  config.channels = source.info("1.weight").shape.at(0);
  TinyAutoencoderDecoder decoder(config, at::TensorOptions().dtype(dtype).device(device));
  try {
    load_module_state(*decoder, source, "", dtype, device);
  } catch (const Error& error) {
    throw Error(error.code(), "TAESD decoder " + file.string() + ": " + error.what());
  }
  decoder->eval();
  return decoder;
}

}  // namespace doppel

// AUTOMATIC1111's txt2img / img2img request bodies (and the ControlNet extension's units in
// alwayson_scripts) read into a "generate" job payload, field by field as A1111 1.9/1.10's
// pydantic models accept them (internal to server/; docs/compat.md lists every field).
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "doppel/services/generation_job.hpp"
#include "server/compat_support.hpp"

namespace doppel::server::compat {

// A body field of the wrong type: FastAPI's 422 {"detail": [{"loc", "msg", "type"}]}.
class ValidationError : public std::runtime_error {
 public:
  ValidationError(std::string field, const std::string& message, std::string type)
      : std::runtime_error(message), field_(std::move(field)), type_(std::move(type)) {}
  const std::string& field() const { return field_; }
  const std::string& type() const { return type_; }

 private:
  std::string field_;
  std::string type_;
};

// Readers of optional body fields with pydantic v1's coercions (an integral float or a numeric
// string for an integer, 0/1 or "true"/"false" for a boolean); null or absent: `fallback`.
int64_t int_field(const nlohmann::json& body, const std::string& name, int64_t fallback,
                  int64_t min, int64_t max);
double number_field(const nlohmann::json& body, const std::string& name, double fallback,
                    double min, double max);
bool bool_field(const nlohmann::json& body, const std::string& name, bool fallback);
std::string text_field(const nlohmann::json& body, const std::string& name,
                       const std::string& fallback);
std::vector<std::string> text_list_field(const nlohmann::json& body, const std::string& name);

// A1111's sampler name ("DPM++ 2M Karras", "Euler a") or doppel's ("dpmpp_2m"), plus the
// scheduler field ("Karras", "SGM Uniform", "Automatic"): fills the payload's sampler,
// karras and spacing; CompatError 404 "Sampler not found" as A1111 answers.
void apply_sampler(services::GeneratePayload& payload, const std::string& sampler,
                   const std::string& scheduler);

// A1111's prompt styles from doppel's style packs: "{prompt}" where the request's prompt goes.
struct PromptStyle {
  std::string name;
  std::string prompt;
  std::string negative_prompt;
};
std::vector<PromptStyle> prompt_styles(const std::vector<StylePack>& packs);
// A1111's apply_styles_to_prompt: the style's text with {prompt} replaced, or appended after
// ", " when it has none. CompatError 422 for an unknown style.
void apply_styles(const std::vector<StylePack>& packs, const std::vector<std::string>& names,
                  std::string& prompt, std::string& negative_prompt);

// What a txt2img / img2img body asks for.
struct A1111Generation {
  services::GeneratePayload payload;
  std::string model_title;
  std::optional<std::string> vae_name;
  std::vector<std::string> styles;
  double denoising_strength = 0;  // as A1111's info reports it (0 for plain txt2img)
  bool send_images = true;
  bool restore_faces = false;
  int64_t subseed = -1;
  double subseed_strength = 0;
};

// Reads the body (A1111's defaults for absent fields), puts its pictures into the transient
// store and resolves the model, VAE, styles, ControlNets and IP-Adapters it names.
A1111Generation read_a1111_generation(Context& context, const std::string& account_id,
                                      const nlohmann::json& body, bool img2img);

// The "info" JSON text of A1111's answer (Processed.js()): prompt, seeds, infotexts...
std::string a1111_info(const A1111Generation& generation, const nlohmann::json& result);

// "Steps: 20, Sampler: Euler a" -> A1111's parse_generation_parameters dictionary.
nlohmann::json parsed_parameters(const std::string& text);

}  // namespace doppel::server::compat

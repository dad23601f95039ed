#include "doppel/core/generation_parameters.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>

namespace doppel {

std::optional<std::string> GenerationParameters::get(const std::string& key) const {
  for (const auto& [name, value] : settings)
    if (name == key) return value;
  return std::nullopt;
}

void GenerationParameters::set(const std::string& key, const std::string& value) {
  for (auto& [name, existing] : settings)
    if (name == key) {
      existing = value;
      return;
    }
  settings.emplace_back(key, value);
}

namespace {

// A1111 quotes a value with json.dumps when it contains a separator.
std::string quote_if_needed(const std::string& value) {
  if (value.find_first_of(",:\"\n") == std::string::npos) return value;
  return nlohmann::json(value).dump();
}

// Splits the settings line "A: 1, B: \"x, y\", C: 3" honouring quoted values.
std::vector<std::pair<std::string, std::string>> parse_settings_line(const std::string& line) {
  std::vector<std::pair<std::string, std::string>> result;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == ',')) ++i;
    size_t colon = line.find(':', i);
    if (colon == std::string::npos) break;
    std::string key = line.substr(i, colon - i);
    i = colon + 1;
    while (i < line.size() && line[i] == ' ') ++i;
    std::string value;
    if (i < line.size() && line[i] == '"') {
      size_t end = i + 1;
      while (end < line.size() && line[end] != '"') end += line[end] == '\\' ? 2 : 1;
      std::string quoted = line.substr(i, std::min(end + 1, line.size()) - i);
      try {
        value = nlohmann::json::parse(quoted).get<std::string>();
      } catch (const std::exception&) {
        value = quoted;  // malformed quoting: keep the raw text, as A1111 does
      }
      i = end + 1;
    } else {
      size_t comma = line.find(',', i);
      value = line.substr(i, comma == std::string::npos ? std::string::npos : comma - i);
      i = comma == std::string::npos ? line.size() : comma + 1;
    }
    result.emplace_back(key, value);
  }
  return result;
}

bool looks_like_settings_line(const std::string& line) {
  // A1111's own heuristic: the last line has at least three "Key: value" pairs.
  return parse_settings_line(line).size() >= 3 && line.find("Steps: ") != std::string::npos;
}

}  // namespace

std::string GenerationParameters::to_text() const {
  std::string text = prompt;
  if (!negative_prompt.empty()) text += "\nNegative prompt: " + negative_prompt;
  std::string line;
  for (const auto& [key, value] : settings) {
    if (!line.empty()) line += ", ";
    line += key + ": " + quote_if_needed(value);
  }
  if (!line.empty()) text += "\n" + line;
  return text;
}

GenerationParameters GenerationParameters::parse(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  GenerationParameters result;
  if (!lines.empty() && looks_like_settings_line(lines.back())) {
    result.settings = parse_settings_line(lines.back());
    lines.pop_back();
  }
  bool in_negative = false;
  bool first_prompt_line = true;
  const std::string negative_tag = "Negative prompt: ";
  for (const auto& line : lines) {
    if (!in_negative && line.rfind(negative_tag, 0) == 0) {
      in_negative = true;
      result.negative_prompt = line.substr(negative_tag.size());
    } else if (in_negative) {
      result.negative_prompt += "\n" + line;
    } else {
      result.prompt += (first_prompt_line ? "" : "\n") + line;
      first_prompt_line = false;
    }
  }
  return result;
}

std::string format_number(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%g", value);
  return buffer;
}

const char* doppel_version() {
  return "doppel " DOPPEL_VERSION;
}

}  // namespace doppel

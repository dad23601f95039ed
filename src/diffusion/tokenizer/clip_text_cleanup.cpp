#include "diffusion/tokenizer/clip_text_cleanup.hpp"

#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/utf16.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>

#include "diffusion/tokenizer/html_entities.hpp"
#include "doppel/core/error.hpp"

namespace doppel::clip_text {
namespace {

constexpr char32_t kReplacementCharacter = 0xFFFD;
constexpr char32_t kMaxCodePoint = 0x10FFFF;

// ---------------------------------------------------------------- ICU bridges

icu::UnicodeString to_icu(std::u32string_view text) {
  return icu::UnicodeString::fromUTF32(reinterpret_cast<const UChar32*>(text.data()),
                                       static_cast<int32_t>(text.size()));
}

std::u32string from_icu(const icu::UnicodeString& text) {
  std::u32string out;
  out.reserve(static_cast<size_t>(text.length()));
  for (int32_t i = 0; i < text.length();) {
    const UChar32 c = text.char32At(i);
    out.push_back(static_cast<char32_t>(c));
    i += U16_LENGTH(c);
  }
  return out;
}

const icu::Normalizer2& normalizer(bool compatibility) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* instance = compatibility ? icu::Normalizer2::getNFKCInstance(status)
                                                   : icu::Normalizer2::getNFCInstance(status);
  if (U_FAILURE(status) || instance == nullptr) {
    throw Error(ErrorCode::kInternal,
                std::string("ICU normalizer unavailable: ") + u_errorName(status));
  }
  return *instance;
}

std::u32string normalize(std::u32string_view text, bool compatibility) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::UnicodeString normalized = normalizer(compatibility).normalize(to_icu(text), status);
  if (U_FAILURE(status)) {
    throw Error(ErrorCode::kInternal,
                std::string("ICU normalization failed: ") + u_errorName(status));
  }
  return from_icu(normalized);
}

// Python's str.isspace(); regex's \s (is_whitespace) lacks U+001C..U+001F.
bool is_python_space(char32_t c) {
  return is_whitespace(c) || (c >= 0x1C && c <= 0x1F);
}

std::u32string_view strip_python_space(std::u32string_view text) {
  size_t begin = 0;
  size_t end = text.size();
  while (begin < end && is_python_space(text[begin])) ++begin;
  while (end > begin && is_python_space(text[end - 1])) --end;
  return text.substr(begin, end - begin);
}

std::optional<std::string> ascii_string(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : text) {
    if (c >= 0x80) return std::nullopt;
    out.push_back(static_cast<char>(c));
  }
  return out;
}

std::optional<std::string_view> find_reference(std::span<const html_entities::NamedReference> table,
                                               std::string_view name) {
  const auto it = std::lower_bound(table.begin(), table.end(), name,
                                   [](const html_entities::NamedReference& entry,
                                      std::string_view key) { return entry.name < key; });
  if (it == table.end() || it->name != name) return std::nullopt;
  return it->value;
}

std::optional<std::string_view> find_html5(std::u32string_view name) {
  const auto ascii = ascii_string(name);
  if (!ascii) return std::nullopt;
  return find_reference(html_entities::named_references(), *ascii);
}

void append_utf8_as_code_points(std::u32string& out, std::string_view utf8) {
  out += decode_utf8(utf8);
}

bool is_ascii_digit(char32_t c) {
  return c >= '0' && c <= '9';
}
bool is_ascii_hex_digit(char32_t c) {
  return is_ascii_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool is_ascii_alphanumeric(char32_t c) {
  return is_ascii_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

int hex_value(char32_t c) {
  if (is_ascii_digit(c)) return static_cast<int>(c - '0');
  if (c >= 'a' && c <= 'f') return static_cast<int>(c - 'a' + 10);
  return static_cast<int>(c - 'A' + 10);
}

// Python's html._replace_charref for a numeric reference.
void append_numeric_reference(std::u32string& out, uint64_t number) {
  const auto fixups = html_entities::invalid_charrefs();
  const auto fixup = std::lower_bound(
      fixups.begin(), fixups.end(), number,
      [](const html_entities::NumericFixup& entry, uint64_t key) { return entry.number < key; });
  if (fixup != fixups.end() && fixup->number == number) {
    append_utf8_as_code_points(out, fixup->value);
    return;
  }
  if ((number >= 0xD800 && number <= 0xDFFF) || number > kMaxCodePoint) {
    out.push_back(kReplacementCharacter);
    return;
  }
  const auto invalid = html_entities::invalid_codepoints();
  if (std::binary_search(invalid.begin(), invalid.end(), static_cast<char32_t>(number))) return;
  out.push_back(static_cast<char32_t>(number));
}

// ------------------------------------------------------------ ftfy's fixers

// ftfy.fixes.unescape_html: "&#?[0-9A-Za-z]{1,24};" replaced when it names an
// HTML5 entity (or ftfy's upper-cased variant) or a numeric reference.
std::u32string ftfy_unescape_html(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] == '&') {
      size_t name_begin = i + 1;
      if (name_begin < text.size() && text[name_begin] == '#') ++name_begin;
      size_t name_end = name_begin;
      while (name_end < text.size() && name_end - name_begin < 24 &&
             is_ascii_alphanumeric(text[name_end])) {
        ++name_end;
      }
      if (name_end > name_begin && name_end < text.size() && text[name_end] == ';') {
        const std::u32string_view entity = text.substr(i, name_end + 1 - i);
        const std::string name = *ascii_string(entity.substr(1));
        std::optional<std::string_view> value =
            find_reference(html_entities::named_references(), name);
        if (!value) value = find_reference(html_entities::uppercase_references(), name);
        if (value) {
          append_utf8_as_code_points(out, *value);
        } else if (entity[1] == '#') {
          const std::u32string decoded = html_unescape(entity);
          out += decoded.find(';') == std::u32string::npos ? decoded : std::u32string(entity);
        } else {
          out += entity;
        }
        i = name_end + 1;
        continue;
      }
    }
    out.push_back(text[i]);
    ++i;
  }
  return out;
}

// The byte a character came from if it was decoded as Latin-1 or as ftfy's
// "sloppy" Windows-1252 (which keeps 0x81, 0x8D, 0x8F, 0x90, 0x9D as C1 controls).
std::optional<uint8_t> single_byte_encoding(char32_t c) {
  if (c < 0x100) return static_cast<uint8_t>(c);
  switch (c) {
    case 0x20AC:
      return 0x80;
    case 0x201A:
      return 0x82;
    case 0x0192:
      return 0x83;
    case 0x201E:
      return 0x84;
    case 0x2026:
      return 0x85;
    case 0x2020:
      return 0x86;
    case 0x2021:
      return 0x87;
    case 0x02C6:
      return 0x88;
    case 0x2030:
      return 0x89;
    case 0x0160:
      return 0x8A;
    case 0x2039:
      return 0x8B;
    case 0x0152:
      return 0x8C;
    case 0x017D:
      return 0x8E;
    case 0x2018:
      return 0x91;
    case 0x2019:
      return 0x92;
    case 0x201C:
      return 0x93;
    case 0x201D:
      return 0x94;
    case 0x2022:
      return 0x95;
    case 0x2013:
      return 0x96;
    case 0x2014:
      return 0x97;
    case 0x02DC:
      return 0x98;
    case 0x2122:
      return 0x99;
    case 0x0161:
      return 0x9A;
    case 0x203A:
      return 0x9B;
    case 0x0153:
      return 0x9C;
    case 0x017E:
      return 0x9E;
    case 0x0178:
      return 0x9F;
    default:
      return std::nullopt;
  }
}

// Windows-1252's reading of the bytes 0x80..0x9F (0 where it defines none).
constexpr std::array<char32_t, 32> kWindows1252HighControls = {
    0x20AC, 0,      0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0,      0x017D, 0,      0,      0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0,      0x017E, 0x0178};

// UTF-8 that was decoded as Latin-1 / Windows-1252 ("cafÃ©", "donâ€™t"):
// every run of such characters that forms one valid UTF-8 sequence is
// replaced by the character it encodes.
std::u32string fix_utf8_mojibake(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const std::optional<uint8_t> lead = single_byte_encoding(text[i]);
    size_t continuation_count = 0;
    char32_t code_point = 0;
    if (lead && *lead >= 0xC2 && *lead <= 0xDF) {
      continuation_count = 1;
      code_point = *lead & 0x1F;
    } else if (lead && *lead >= 0xE0 && *lead <= 0xEF) {
      continuation_count = 2;
      code_point = *lead & 0x0F;
    } else if (lead && *lead >= 0xF0 && *lead <= 0xF4) {
      continuation_count = 3;
      code_point = *lead & 0x07;
    }
    bool valid = continuation_count > 0 && i + continuation_count < text.size();
    for (size_t k = 1; valid && k <= continuation_count; ++k) {
      const std::optional<uint8_t> byte = single_byte_encoding(text[i + k]);
      if (!byte || *byte < 0x80 || *byte > 0xBF) {
        valid = false;
        break;
      }
      if (k == 1) {  // overlong forms, surrogates and values past U+10FFFF
        if ((*lead == 0xE0 && *byte < 0xA0) || (*lead == 0xED && *byte > 0x9F) ||
            (*lead == 0xF0 && *byte < 0x90) || (*lead == 0xF4 && *byte > 0x8F)) {
          valid = false;
          break;
        }
      }
      code_point = (code_point << 6) | (*byte & 0x3F);
    }
    if (valid) {
      out.push_back(code_point);
      i += continuation_count + 1;
    } else {
      out.push_back(text[i]);
      ++i;
    }
  }
  return out;
}

// ftfy.fixes.fix_c1_controls: stray C1 controls were meant as Windows-1252.
void fix_c1_controls(std::u32string& text) {
  for (char32_t& c : text) {
    if (c >= 0x80 && c <= 0x9F && kWindows1252HighControls[c - 0x80] != 0) {
      c = kWindows1252HighControls[c - 0x80];
    }
  }
}

std::u32string_view latin_ligature(char32_t c) {
  switch (c) {
    case 0x0132:
      return U"IJ";
    case 0x0133:
      return U"ij";
    case 0x0149:
      return U"\u02BCn";
    case 0x01F1:
      return U"DZ";
    case 0x01F2:
      return U"Dz";
    case 0x01F3:
      return U"dz";
    case 0x01C4:
      return U"D\u017D";
    case 0x01C5:
      return U"D\u017E";
    case 0x01C6:
      return U"d\u017E";
    case 0x01C7:
      return U"LJ";
    case 0x01C8:
      return U"Lj";
    case 0x01C9:
      return U"lj";
    case 0x01CA:
      return U"NJ";
    case 0x01CB:
      return U"Nj";
    case 0x01CC:
      return U"nj";
    case 0xFB00:
      return U"ff";
    case 0xFB01:
      return U"fi";
    case 0xFB02:
      return U"fl";
    case 0xFB03:
      return U"ffi";
    case 0xFB04:
      return U"ffl";
    case 0xFB05:
      return U"\u017Ft";
    case 0xFB06:
      return U"st";
    default:
      return {};
  }
}

// ftfy's ligature, width and quote fixes, which all map one character to a string.
std::u32string fix_character_forms(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (char32_t c : text) {
    if (const std::u32string_view ligature = latin_ligature(c); !ligature.empty()) {
      out += ligature;
    } else if (c == 0x3000) {
      out.push_back(' ');
    } else if (c >= 0xFF01 && c <= 0xFFEF) {
      out += normalize(std::u32string_view(&c, 1), /*compatibility=*/true);
    } else {
      out.push_back(c);
    }
  }
  for (char32_t& c : out) {
    if (c == 0x02BC || (c >= 0x2018 && c <= 0x201B)) c = '\'';
    if (c >= 0x201C && c <= 0x201F) c = '"';
  }
  return out;
}

std::u32string fix_line_breaks(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char32_t c = text[i];
    if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') continue;
    out.push_back((c == '\r' || c == 0x2028 || c == 0x2029 || c == 0x85) ? U'\n' : c);
  }
  return out;
}

bool is_decimal_digit(char32_t c) {
  return u_charType(static_cast<UChar32>(c)) == U_DECIMAL_DIGIT_NUMBER;
}

// "\x1b[" (digits | ';')* letter: colour codes pasted from a terminal.
std::u32string remove_terminal_escapes(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] == 0x1B && i + 1 < text.size() && text[i + 1] == '[') {
      size_t end = i + 2;
      while (end < text.size() && (is_decimal_digit(text[end]) || text[end] == ';')) ++end;
      if (end < text.size() &&
          ((text[end] >= 'a' && text[end] <= 'z') || (text[end] >= 'A' && text[end] <= 'Z'))) {
        i = end + 1;
        continue;
      }
    }
    out.push_back(text[i]);
    ++i;
  }
  return out;
}

bool is_removed_control_character(char32_t c) {
  return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F ||
         (c >= 0x206A && c <= 0x206F) || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

std::u32string fix_segment(std::u32string text, bool unescape_html) {
  // ftfy repeats its fixes until the text stops changing; the bound only
  // guards against a cycle, which the fixes cannot produce.
  for (int round = 0; round < 16; ++round) {
    const std::u32string original = text;
    if (unescape_html) text = ftfy_unescape_html(text);
    for (;;) {
      std::u32string decoded = fix_utf8_mojibake(text);
      if (decoded == text) break;
      text = std::move(decoded);
    }
    fix_c1_controls(text);
    text = fix_character_forms(text);
    text = fix_line_breaks(text);
    text = remove_terminal_escapes(text);
    std::erase_if(text, is_removed_control_character);
    text = normalize(text, /*compatibility=*/false);
    if (text == original) break;
  }
  return text;
}

}  // namespace

std::u32string decode_utf8(std::string_view bytes) {
  std::u32string out;
  out.reserve(bytes.size());
  size_t i = 0;
  while (i < bytes.size()) {
    const uint8_t lead = static_cast<uint8_t>(bytes[i]);
    if (lead < 0x80) {
      out.push_back(lead);
      ++i;
      continue;
    }
    size_t continuation_count = 0;
    char32_t code_point = 0;
    uint8_t second_min = 0x80;
    uint8_t second_max = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) {
      continuation_count = 1;
      code_point = lead & 0x1F;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      continuation_count = 2;
      code_point = lead & 0x0F;
      if (lead == 0xE0) second_min = 0xA0;
      if (lead == 0xED) second_max = 0x9F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      continuation_count = 3;
      code_point = lead & 0x07;
      if (lead == 0xF0) second_min = 0x90;
      if (lead == 0xF4) second_max = 0x8F;
    }
    // A malformed sequence is replaced by one U+FFFD covering its longest
    // valid prefix; decoding resumes at the offending byte.
    size_t consumed = 1;
    bool complete = continuation_count > 0;
    for (size_t k = 1; complete && k <= continuation_count; ++k) {
      if (i + k >= bytes.size()) {
        complete = false;
        break;
      }
      const uint8_t byte = static_cast<uint8_t>(bytes[i + k]);
      const uint8_t low = k == 1 ? second_min : 0x80;
      const uint8_t high = k == 1 ? second_max : 0xBF;
      if (byte < low || byte > high) {
        complete = false;
        break;
      }
      code_point = (code_point << 6) | (byte & 0x3F);
      ++consumed;
    }
    out.push_back(complete ? code_point : kReplacementCharacter);
    i += consumed;
  }
  return out;
}

std::string encode_utf8(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : text) {
    if (c > kMaxCodePoint || (c >= 0xD800 && c <= 0xDFFF)) c = kReplacementCharacter;
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else if (c < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else if (c < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (c >> 12)));
      out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (c >> 18)));
      out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
  }
  return out;
}

std::u32string html_unescape(std::u32string_view text) {
  if (text.find('&') == std::u32string_view::npos) return std::u32string(text);
  std::u32string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] != '&' || i + 1 >= text.size()) {
      out.push_back(text[i]);
      ++i;
      continue;
    }
    if (text[i + 1] == '#') {
      const bool hexadecimal = i + 2 < text.size() && (text[i + 2] == 'x' || text[i + 2] == 'X');
      const size_t digits_begin = i + (hexadecimal ? 3 : 2);
      size_t digits_end = digits_begin;
      uint64_t number = 0;
      while (digits_end < text.size() && (hexadecimal ? is_ascii_hex_digit(text[digits_end])
                                                      : is_ascii_digit(text[digits_end]))) {
        const int digit =
            hexadecimal ? hex_value(text[digits_end]) : static_cast<int>(text[digits_end] - '0');
        // Saturate: anything past U+10FFFF decodes to U+FFFD anyway.
        number = std::min<uint64_t>(number * (hexadecimal ? 16 : 10) + digit, 0x7FFFFFFF);
        ++digits_end;
      }
      if (digits_end == digits_begin) {  // "&#" without digits is literal text
        out.push_back(text[i]);
        ++i;
        continue;
      }
      if (digits_end < text.size() && text[digits_end] == ';') ++digits_end;
      append_numeric_reference(out, number);
      i = digits_end;
      continue;
    }
    // Named reference: [^\t\n\f <&#;]{1,32};?
    size_t name_end = i + 1;
    auto is_name_character = [](char32_t c) {
      return c != '\t' && c != '\n' && c != '\f' && c != ' ' && c != '<' && c != '&' && c != '#' &&
             c != ';';
    };
    while (name_end < text.size() && name_end - (i + 1) < 32 && is_name_character(text[name_end])) {
      ++name_end;
    }
    if (name_end == i + 1) {
      out.push_back(text[i]);
      ++i;
      continue;
    }
    if (name_end < text.size() && text[name_end] == ';') ++name_end;
    const std::u32string_view name = text.substr(i + 1, name_end - (i + 1));
    if (const auto value = find_html5(name)) {
      append_utf8_as_code_points(out, *value);
    } else {
      // The longest prefix that is an entity (those without ';' are legacy names).
      bool replaced = false;
      for (size_t length = name.size() - 1; length >= 2 && length < name.size(); --length) {
        if (const auto prefix_value = find_html5(name.substr(0, length))) {
          append_utf8_as_code_points(out, *prefix_value);
          out += name.substr(length);
          replaced = true;
          break;
        }
      }
      if (!replaced) {
        out.push_back('&');
        out += name;
      }
    }
    i = name_end;
  }
  return out;
}

std::u32string fix_text(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  bool unescape_html = true;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    end = end == std::u32string_view::npos ? text.size() : end + 1;
    const std::u32string_view segment = text.substr(begin, end - begin);
    // As ftfy.fix_text: once a line looks like HTML, entities stay escaped
    // for the rest of the text.
    if (segment.find('<') != std::u32string_view::npos) unescape_html = false;
    out += fix_segment(std::u32string(segment), unescape_html);
    begin = end;
  }
  return out;
}

std::u32string clean(std::string_view utf8_text) {
  // basic_clean: ftfy.fix_text, html.unescape twice, strip.
  std::u32string text = fix_text(decode_utf8(utf8_text));
  text = html_unescape(html_unescape(text));
  // whitespace_clean: runs of \s become one space, then strip.
  std::u32string collapsed;
  collapsed.reserve(text.size());
  for (char32_t c : strip_python_space(text)) {
    if (is_whitespace(c)) {
      if (collapsed.empty() || collapsed.back() != ' ') collapsed.push_back(' ');
    } else {
      collapsed.push_back(c);
    }
  }
  icu::UnicodeString lowered = to_icu(strip_python_space(collapsed));
  lowered.toLower(icu::Locale::getRoot());  // full case mapping, as Python's str.lower()
  return from_icu(lowered);
}

bool is_letter(char32_t c) {
  return (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_L_MASK) != 0;
}

bool is_number(char32_t c) {
  return (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_N_MASK) != 0;
}

bool is_whitespace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

}  // namespace doppel::clip_text

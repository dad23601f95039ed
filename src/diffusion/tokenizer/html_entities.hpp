// The tables Python's html.unescape and ftfy's unescape_html use; the data
// lives in the generated html_entities.cpp (scripts/generate_html_entities.py).
#pragma once
#include <span>
#include <string_view>

namespace doppel::html_entities {

struct NamedReference {
  std::string_view name;   // without '&'; with ';' where the standard has it
  std::string_view value;  // UTF-8
};

struct NumericFixup {
  char32_t number;
  std::string_view value;  // UTF-8 replacement (e.g. &#x80; is the euro sign)
};

// html.entities.html5, sorted by name (byte order).
std::span<const NamedReference> named_references();
// ftfy's upper-cased names ("NTILDE;" -> "Ñ"), sorted by name.
std::span<const NamedReference> uppercase_references();
// html._invalid_charrefs, sorted by number.
std::span<const NumericFixup> invalid_charrefs();
// html._invalid_codepoints, sorted: references to these decode to nothing.
std::span<const char32_t> invalid_codepoints();

}  // namespace doppel::html_entities

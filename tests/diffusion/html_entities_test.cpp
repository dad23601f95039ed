// The HTML entity table behind the CLIP tokenizer's text cleanup: a dozen references decoded
// as Python's html.unescape decodes them (expected values printed by Python 3.11). CTest's
// html_entities_table_is_generated checks that the whole table is what the generator writes.
#include <gtest/gtest.h>

#include "diffusion/tokenizer/clip_text_cleanup.hpp"

namespace doppel {
namespace {

TEST(HtmlEntities, ADozenReferencesDecodeAsPythonDecodesThem) {
  const std::pair<std::u32string, std::u32string> table[] = {
      {U"&amp;", U"&"},
      {U"&lt;b&gt;", U"<b>"},
      {U"caf&eacute;", U"caf\u00e9"},
      {U"a&nbsp;b", U"a\u00a0b"},
      {U"&#39;", U"'"},
      {U"&#x27;", U"'"},
      {U"&hellip;", U"\u2026"},
      {U"&copy;2024", U"\u00a92024"},
      {U"&euro;", U"\u20ac"},
      {U"&mdash;", U"\u2014"},
      {U"&notin;", U"\u2209"},
      {U"&notit;", U"\u00acit;"},  // the longest prefix that is a name without ';'
      {U"&amp", U"&"},
      {U"&#x80;", U"\u20ac"},  // WHATWG fix-up of a C1 control
      {U"&#0;", U"\ufffd"},
      {U"&bogus;", U"&bogus;"},
  };
  for (const auto& [escaped, expected] : table)
    EXPECT_TRUE(clip_text::html_unescape(escaped) == expected)
        << "entity case " << (&escaped - &table[0].first) / 2;
}

}  // namespace
}  // namespace doppel

// The text cleanup openai's CLIP tokenizer applies before BPE:
//   whitespace_clean(basic_clean(text)).lower()
// where basic_clean is ftfy.fix_text followed by html.unescape twice. ftfy is
// a large heuristic library; this reproduces the fixes that change prompts in
// practice (see fix_text below) and Python's exact html.unescape, whitespace
// and lowercasing rules.
#pragma once
#include <string>
#include <string_view>

namespace doppel::clip_text {

// UTF-8 -> code points; malformed bytes become U+FFFD, one per maximal
// invalid subsequence, as Python's bytes.decode("utf-8", "replace") does.
std::u32string decode_utf8(std::string_view bytes);
std::string encode_utf8(std::u32string_view text);

// Python's html.unescape (HTML5 named references, numeric references with
// the WHATWG fix-ups, the longest-prefix rule for names without ';').
std::u32string html_unescape(std::u32string_view text);

// The subset of ftfy.fix_text (6.x) that matters for prompts, applied per
// line and repeated until stable: unescape_html (skipped once a line contains
// '<'), UTF-8 mojibake read as Latin-1 / Windows-1252 (each such sequence is
// decoded; ftfy's statistical "badness" test is not reproduced), C1 controls,
// Latin ligatures, full/half width forms, curly quotes, line breaks, terminal
// escapes, control characters, then NFC.
std::u32string fix_text(std::u32string_view text);

// whitespace_clean(basic_clean(text)).lower(): the exact string CLIP's
// pre-tokenizer sees.
std::u32string clean(std::string_view utf8_text);

// The pre-tokenizer's character classes: regex \p{L}, \p{N} and \s.
bool is_letter(char32_t c);
bool is_number(char32_t c);
bool is_whitespace(char32_t c);

}  // namespace doppel::clip_text

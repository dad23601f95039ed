#include "server/password_rules.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <string_view>

namespace doppel::server {
namespace {

// The most common passwords of 8 characters or more in public breach lists (shorter ones are
// refused for their length already); compared without case and surrounding spaces.
constexpr std::array<std::string_view, 60> kCommonPasswords = {
    "12345678",   "123456789",  "1234567890", "password",  "password1",     "password123",
    "passw0rd",   "qwertyuiop", "qwerty123",  "qwerty12",  "1q2w3e4r",      "1q2w3e4r5t",
    "1qaz2wsx",   "zaq12wsx",   "asdfghjkl",  "iloveyou",  "iloveyou1",     "sunshine",
    "princess",   "football",   "baseball",   "superman",  "trustno1",      "welcome1",
    "welcome123", "letmein1",   "abc12345",   "abcd1234",  "12341234",      "11111111",
    "00000000",   "87654321",   "123123123",  "123qweasd", "qweasdzxc",     "starwars",
    "whatever",   "computer",   "michelle",   "jennifer",  "corvette",      "mercedes",
    "1234qwer",   "q1w2e3r4",   "q1w2e3r4t5", "admin123",  "administrator", "changeme",
    "dragon123",  "monkey123",  "password!",  "p@ssw0rd",  "p@ssword",      "secret123",
    "master123",  "shadow123",  "killer123",  "freedom1",  "doppel123",     "doppelganger",
};

std::string normalised(const std::string& password) {
  const size_t first = password.find_first_not_of(" \t");
  const size_t last = password.find_last_not_of(" \t");
  std::string text = first == std::string::npos ? "" : password.substr(first, last - first + 1);
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

}  // namespace

std::optional<std::string> password_problem(const std::string& password) {
  if (password.size() < 8) return "the password must be at least 8 characters long";
  const std::string text = normalised(password);
  if (text.empty()) return "the password must not be only spaces";
  if (std::all_of(text.begin(), text.end(), [&](char c) { return c == text[0]; }))
    return "the password must not be one character repeated";
  if (std::find(kCommonPasswords.begin(), kCommonPasswords.end(), text) != kCommonPasswords.end())
    return "the password is one of the most common ones, which are tried first when guessing; "
           "choose another (a few unrelated words make a good one)";
  return std::nullopt;
}

}  // namespace doppel::server

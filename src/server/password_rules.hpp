// What the studio accepts as a new password: at least 8 characters, not only spaces, not one
// character repeated, and none of the passwords every guessing list starts with.
#pragma once
#include <optional>
#include <string>

namespace doppel::server {

// Why `password` is refused ("the password is one of the most common ones ..."), or nullopt.
std::optional<std::string> password_problem(const std::string& password);

}  // namespace doppel::server

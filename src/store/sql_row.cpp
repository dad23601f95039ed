#include <charconv>
#include <cstdlib>
#include <string>

#include "doppel/core/error.hpp"
#include "doppel/store/database.hpp"
#include "store/sql_backends.hpp"

namespace doppel::store {
namespace {

int64_t parse_integer(const std::string& text) {
  int64_t value = 0;
  auto [end, status] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (status != std::errc() || end != text.data() + text.size())
    throw Error(ErrorCode::kInvalidFile, "database value '" + text + "' is not an integer");
  return value;
}

double parse_real(const std::string& text) {
  char* end = nullptr;
  double value = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size())
    throw Error(ErrorCode::kInvalidFile, "database value '" + text + "' is not a number");
  return value;
}

}  // namespace

void require_storable_text(const std::string& text) {
  if (text.find('\0') != std::string::npos)
    throw Error(ErrorCode::kInvalidArgument,
                "a text value contains a NUL byte, which the database cannot store");
}

const SqlValue& SqlRow::at(size_t column) const {
  if (column >= values_.size())
    throw Error(ErrorCode::kInternal, "result column " + std::to_string(column) +
                                          " requested from a row of " +
                                          std::to_string(values_.size()));
  return values_[column];
}

bool SqlRow::is_null(size_t column) const {
  return std::holds_alternative<std::nullptr_t>(at(column));
}

int64_t SqlRow::integer(size_t column) const {
  const SqlValue& value = at(column);
  if (auto* number = std::get_if<int64_t>(&value)) return *number;
  if (auto* real = std::get_if<double>(&value)) return static_cast<int64_t>(*real);
  if (auto* text = std::get_if<std::string>(&value)) return parse_integer(*text);
  throw Error(ErrorCode::kInvalidFile,
              "database column " + std::to_string(column) + " is NULL where a number is required");
}

double SqlRow::real(size_t column) const {
  const SqlValue& value = at(column);
  if (auto* real = std::get_if<double>(&value)) return *real;
  if (auto* number = std::get_if<int64_t>(&value)) return static_cast<double>(*number);
  if (auto* text = std::get_if<std::string>(&value)) return parse_real(*text);
  throw Error(ErrorCode::kInvalidFile,
              "database column " + std::to_string(column) + " is NULL where a number is required");
}

std::string SqlRow::text(size_t column) const {
  const SqlValue& value = at(column);
  if (auto* text = std::get_if<std::string>(&value)) return *text;
  if (auto* number = std::get_if<int64_t>(&value)) return std::to_string(*number);
  if (auto* real = std::get_if<double>(&value)) {
    char buffer[64];
    auto [end, status] = std::to_chars(buffer, buffer + sizeof buffer, *real);
    return std::string(buffer, end);
  }
  return {};
}

std::optional<std::string> SqlRow::optional_text(size_t column) const {
  if (is_null(column)) return std::nullopt;
  return text(column);
}

std::optional<double> SqlRow::optional_real(size_t column) const {
  if (is_null(column)) return std::nullopt;
  return real(column);
}

std::optional<int64_t> SqlRow::optional_integer(size_t column) const {
  if (is_null(column)) return std::nullopt;
  return integer(column);
}

}  // namespace doppel::store

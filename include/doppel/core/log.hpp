// Minimal levelled logging to stderr; the server adds a sink for its log file.
#pragma once
#include <functional>
#include <string>

namespace doppel {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

void set_log_level(LogLevel level);
LogLevel log_level();
// Replaces the sink (default: stderr with a timestamp and level).
void set_log_sink(std::function<void(LogLevel, const std::string&)> sink);
void log(LogLevel level, const std::string& message);

inline void log_debug(const std::string& m) {
  log(LogLevel::kDebug, m);
}
inline void log_info(const std::string& m) {
  log(LogLevel::kInfo, m);
}
inline void log_warning(const std::string& m) {
  log(LogLevel::kWarning, m);
}
inline void log_error(const std::string& m) {
  log(LogLevel::kError, m);
}

}  // namespace doppel

#include "doppel/core/log.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace doppel {
namespace {

std::atomic<int> current_level{static_cast<int>(LogLevel::kInfo)};
std::mutex sink_mutex;

const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

void stderr_sink(LogLevel level, const std::string& message) {
  std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm utc{};
  gmtime_r(&now, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &utc);
  std::fprintf(stderr, "%s %s: %s\n", stamp, level_name(level), message.c_str());
}

std::function<void(LogLevel, const std::string&)>& sink() {
  static std::function<void(LogLevel, const std::string&)> instance = stderr_sink;
  return instance;
}

}  // namespace

void set_log_level(LogLevel level) {
  current_level = static_cast<int>(level);
}
LogLevel log_level() {
  return static_cast<LogLevel>(current_level.load());
}

void set_log_sink(std::function<void(LogLevel, const std::string&)> new_sink) {
  std::lock_guard lock(sink_mutex);
  sink() = new_sink ? std::move(new_sink) : stderr_sink;
}

void log(LogLevel level, const std::string& message) {
  if (static_cast<int>(level) < current_level.load()) return;
  std::lock_guard lock(sink_mutex);
  sink()(level, message);
}

}  // namespace doppel

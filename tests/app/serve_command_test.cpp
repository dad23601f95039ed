// Runs the real `doppel serve`: a second server on a port in use or on a data folder in use
// fails with a message that says so (issue 24), and the web studio is found without --web.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include "doppel/core/atomic_file.hpp"
#include "support/temp_folder.hpp"

namespace doppel {
namespace {

using test::temp_folder;

// A `doppel serve` child (no workers, no face models) with stdout and stderr on one pipe, read
// up to its "serving on" line.
class ServeProcess {
 public:
  ServeProcess(const std::filesystem::path& data, const std::vector<std::string>& extra,
               const std::vector<std::string>& environment = {}) {
    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
    std::vector<std::string> args = {DOPPEL_BINARY, "serve", "--data",         data.string(),
                                     "--workers",   "0",     "--no-face-check"};
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], STDOUT_FILENO);
      dup2(fds[1], STDERR_FILENO);
      close(fds[0]);
      close(fds[1]);
      for (const std::string& setting : environment) putenv(const_cast<char*>(setting.c_str()));
      std::vector<char*> argv;
      for (std::string& arg : args) argv.push_back(arg.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(fds[1]);
    output_ = fdopen(fds[0], "r");
    char line[4096];
    while (std::fgets(line, sizeof line, output_)) {
      log_ += line;
      std::smatch match;
      const std::string text = line;
      if (std::regex_search(text, match, std::regex("serving on http://127\\.0\\.0\\.1:(\\d+)"))) {
        port_ = std::stoi(match[1]);
        break;
      }
    }
  }
  ~ServeProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
    if (output_) std::fclose(output_);
  }
  int port() const { return port_; }
  const std::string& log() const { return log_; }

 private:
  pid_t pid_ = -1;
  FILE* output_ = nullptr;
  int port_ = 0;
  std::string log_;
};

// Runs a second server that must fail; `timeout` turns a server that wrongly starts into
// exit status 124 instead of a hanging test. Returns the exit status and the output.
int run_second_server(const std::string& arguments, std::string* output) {
  const auto log = std::filesystem::temp_directory_path() /
                   ("doppel_serve_cli_out_" + std::to_string(::getpid()) + ".txt");
  const int status = std::system(("timeout 20 " + std::string(DOPPEL_BINARY) +
                                  " serve --workers 0 --no-face-check " + arguments + " > " +
                                  log.string() + " 2>&1")
                                     .c_str());
  *output = read_file(log);
  std::filesystem::remove(log);
  return WEXITSTATUS(status);
}

TEST(ServeCommand, ASecondServerOnAPortInUseFailsAndSaysSo) {
  const auto first_data = temp_folder("port_first");
  const auto second_data = temp_folder("port_second");
  ServeProcess first(first_data, {"--port", "0"});
  ASSERT_GT(first.port(), 0) << first.log();
  std::string output;
  const int status = run_second_server(
      "--data " + second_data.string() + " --port " + std::to_string(first.port()), &output);
  EXPECT_EQ(status, 1) << output;
  EXPECT_NE(output.find("the port is in use"), std::string::npos) << output;
  EXPECT_EQ(output.find("serving on"), std::string::npos) << output;
  // The first one still answers.
  httplib::Client client("127.0.0.1", first.port());
  const auto health = client.Get("/api/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  std::filesystem::remove_all(first_data);
  std::filesystem::remove_all(second_data);
}

TEST(ServeCommand, ASecondServerOnADataFolderInUseFailsAndSaysSo) {
  const auto data = temp_folder("data_shared");
  ServeProcess first(data, {"--port", "0"});
  ASSERT_GT(first.port(), 0) << first.log();
  std::string output;
  const int status = run_second_server("--data " + data.string() + " --port 0", &output);
  EXPECT_EQ(status, 1) << output;
  EXPECT_NE(output.find("is in use by another doppel server"), std::string::npos) << output;
  EXPECT_NE(output.find(data.string()), std::string::npos) << output;
  EXPECT_EQ(output.find("serving on"), std::string::npos) << output;
  std::filesystem::remove_all(data);
}

TEST(ServeCommand, FindsTheWebStudioWithoutWebAndSaysWhereFrom) {
  const auto data = temp_folder("web_data");
  const auto web = temp_folder("web_dist");
  write_file_atomically(web / "index.html", "<!doctype html><title>studio here</title>");
  ServeProcess server(data, {"--port", "0"}, {"DOPPEL_WEB_DIR=" + web.string()});
  ASSERT_GT(server.port(), 0) << server.log();
  EXPECT_NE(server.log().find("web studio from " + web.string()), std::string::npos)
      << server.log();
  httplib::Client client("127.0.0.1", server.port());
  for (const char* page : {"/", "/subjects/abc"}) {
    const auto answer = client.Get(page);
    ASSERT_TRUE(answer) << page;
    EXPECT_EQ(answer->status, 200) << page;
    EXPECT_NE(answer->body.find("studio here"), std::string::npos) << page;
  }
  std::filesystem::remove_all(data);
  std::filesystem::remove_all(web);
}

}  // namespace
}  // namespace doppel

// libFuzzer target: a request as the server handles it. The front's own scan
// (src/server/request_head.cpp) decides where the head ends and how long the body is; then
// cpp-httplib parses the request line, headers, body and multipart/form-data, as the front's
// workers run it. httplib is compiled in from Debian's source of the installed version (see
// scripts/fuzz.sh), so its parsers are instrumented and checked by ASan, not a black box.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "httplib.h"
#include "server/request_head.hpp"

namespace {

// The request's bytes in memory, as the front hands a complete request to a worker.
class MemoryStream : public httplib::Stream {
 public:
  explicit MemoryStream(std::string_view bytes) : bytes_(bytes) {}
  bool is_readable() const override { return offset_ < bytes_.size(); }
  bool is_writable() const override { return true; }
  ssize_t read(char* ptr, size_t size) override {
    if (offset_ >= bytes_.size()) return -1;
    const size_t count = std::min(size, bytes_.size() - offset_);
    std::memcpy(ptr, bytes_.data() + offset_, count);
    offset_ += count;
    return static_cast<ssize_t>(count);
  }
  ssize_t write(const char*, size_t size) override { return static_cast<ssize_t>(size); }
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    ip = "127.0.0.1";
    port = 50000;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    ip = "127.0.0.1";
    port = 7860;
  }
  socket_t socket() const override { return INVALID_SOCKET; }

 private:
  std::string_view bytes_;
  size_t offset_ = 0;
};

// Routes of the shapes doppel serves: a photo upload read whole (req.files, as
// routes_subjects does), a streamed multipart reader, a JSON body and a path with a query.
class FuzzedServer : public httplib::Server {
 public:
  FuzzedServer() {
    set_payload_max_length(1 << 20);
    Post("/api/subjects/([^/]+)/photos",
         [](const httplib::Request& request, httplib::Response& response) {
           size_t bytes = request.matches[1].length();
           for (const auto& [field, file] : request.files)
             bytes += field.size() + file.filename.size() + file.content_type.size() +
                      file.content.size();
           response.set_content(std::to_string(bytes), "text/plain");
         });
    Post("/stream", [](const httplib::Request& request, httplib::Response& response,
                       const httplib::ContentReader& reader) {
      size_t bytes = 0;
      if (request.is_multipart_form_data()) {
        reader(
            [&](const httplib::MultipartFormData& file) {
              bytes += file.name.size() + file.filename.size();
              return true;
            },
            [&](const char*, size_t length) {
              bytes += length;
              return true;
            });
      } else {
        reader([&](const char*, size_t length) {
          bytes += length;
          return true;
        });
      }
      response.set_content(std::to_string(bytes), "text/plain");
    });
    Post("/api/sessions", [](const httplib::Request& request, httplib::Response& response) {
      response.set_content(request.get_header_value("Content-Type") + request.body, "text/plain");
    });
    Get("/api/images/(\\w+)", [](const httplib::Request& request, httplib::Response& response) {
      response.set_content(request.matches[1].str() + request.get_param_value("size"),
                           "text/plain");
    });
  }
  void answer(httplib::Stream& stream) {
    bool connection_closed = false;
    process_request(stream, true, connection_closed, nullptr);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static FuzzedServer server;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  doppel::server::RequestHeadLimits limits;
  limits.max_body_bytes = 1 << 20;
  const doppel::server::RequestHead head = doppel::server::scan_request_head(bytes, limits);
  if (head.state != doppel::server::RequestHead::State::kComplete) return 0;
  // The front passes on the head and exactly Content-Length bytes of body, never more.
  const size_t whole = head.head_bytes + static_cast<size_t>(head.content_length);
  if (whole > bytes.size()) return 0;
  MemoryStream stream(bytes.substr(0, whole));
  server.answer(stream);
  return 0;
}

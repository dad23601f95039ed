// The compatible APIs' routes (`doppel serve --compat-api`): AUTOMATIC1111's in
// routes_a1111.cpp, OpenAI's in routes_openai.cpp, sharing compat_support.hpp.
#include "server/api_state.hpp"
#include "server/compat_support.hpp"

namespace doppel::server {

void ApiServer::State::register_compat_routes() {
  auto context = std::shared_ptr<compat::Context>(new compat::Context{
      options, *repository, *jobs, styles, model_folders, password_slots, limiter, dummy_hash,
      [this](const char* method, const char* path, const char* summary,
             compat::RouteFunction route) {
        // Unauthenticated and unparsed for the dispatcher: each route signs in and reads its
        // body itself, to answer in its API's own shapes.
        add(method, path, summary, false, "",
            [route](Call& call) { route(call.request, call.response); });
      },
      services::open_transient_blob_store(options.data_dir, options.key_file)});
  compat::register_a1111_routes(context);
  compat::register_openai_routes(context);
}

}  // namespace doppel::server

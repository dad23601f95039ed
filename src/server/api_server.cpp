#include "doppel/server/api_server.hpp"

#include "server/api_state.hpp"

namespace doppel::server {

// ---------------------------------------------------------------------------------------
// Routing, authentication, errors

void ApiServer::State::register_routes() {
  using S = State;
  auto member = [this](void (S::*method)(Call&)) {
    return [this, method](Call& call) { (this->*method)(call); };
  };
  register_template_routes();
  register_id_photo_routes();
  add("GET", "/api/health", "Liveness and store check", false, "", [this](Call& call) {
    send_json(call.response, 200,
              {{"status", "ok"},
               {"database", repository->database().dialect() == store::SqlDialect::kPostgres
                                ? "postgresql"
                                : "sqlite"},
               {"schema_version", store::current_schema_version(repository->database())}});
  });
  add("GET", "/metrics", "Prometheus metrics (opt-in: --metrics-token-file)", false, "",
      [this](Call& call) {
        // Off unless the operator gave a token: the numbers describe every account's use.
        if (options.metrics_token.empty())
          throw HttpError(404, "not_found",
                          "metrics are off; start the server with --metrics-token-file FILE");
        const std::string authorization = call.request.get_header_value("Authorization");
        if (!constant_time_equal(authorization, "Bearer " + options.metrics_token))
          throw HttpError(401, "unauthorized", "send 'Authorization: Bearer <the metrics token>'");
        call.response.set_content(metrics(), "text/plain; version=0.0.4");
      });
  add("GET", "/api/openapi.json", "This OpenAPI document", false, "",
      [this](Call& call) { send_json(call.response, 200, openapi()); });
  add("GET", "/api/setup", "Whether the first account still has to be created", false, "",
      member(&S::setup_status));
  add("POST", "/api/setup", "Create the first account with the one-time set-up token", false,
      JsonBody{"token:string!,email:string!,password:string!,display_name:string"},
      member(&S::setup));
  add("POST", "/api/sessions", "Sign in (sets the session and CSRF cookies)", false,
      JsonBody{"email:string!,password:string!"}, member(&S::sign_in));
  add("DELETE", "/api/sessions/current", "Sign out", true, "", member(&S::sign_out));
  add("GET", "/api/account", "The signed-in account (and its CSRF token)", true, "",
      member(&S::get_account));
  add("DELETE", "/api/account", "Delete the account and everything it owns", true,
      JsonBody{"password:string!"}, member(&S::delete_account));
  add("GET", "/api/account/storage", "Storage the account's photos, images and LoRAs take", true,
      "", member(&S::account_storage));
  add("POST", "/api/accounts", "Create another account (for a family member)", true,
      JsonBody{"email:string!,password:string!,display_name:string"}, member(&S::create_account));
  add("GET", "/api/tokens", "List API tokens", true, "", member(&S::list_tokens));
  add("POST", "/api/tokens", "Create an API token (shown once)", true,
      JsonBody{"name:string!,expires_in_days:integer"}, member(&S::create_token));
  add("DELETE", "/api/tokens/{token_id}", "Revoke an API token", true, "",
      member(&S::delete_token));
  add("GET", "/api/subjects", "List subjects", true, "", member(&S::list_subjects));
  add("POST", "/api/subjects", "Create a subject", true,
      JsonBody{"name:string!,trigger_word:string,class_word:string,identity_source:string"},
      member(&S::create_subject));
  add("GET", "/api/subjects/{subject_id}", "Get a subject", true, "", member(&S::get_subject));
  add("PATCH", "/api/subjects/{subject_id}",
      "Rename a subject, change their class word or how their likeness is made (identity_source: "
      "trained or instant)",
      true, JsonBody{"name:string,class_word:string,identity_source:string"},
      member(&S::update_subject));
  add("DELETE", "/api/subjects/{subject_id}", "Delete a subject and everything made from it", true,
      "", member(&S::delete_subject));
  add("GET", "/api/subjects/{subject_id}/photos", "Photos with verdicts, and readiness", true, "",
      member(&S::list_photos));
  add("POST", "/api/subjects/{subject_id}/photos", "Upload photos (multipart field 'photos')", true,
      "multipart", member(&S::upload_photos));
  add("GET", "/api/photos/{photo_id}/file", "Download an uploaded photo", true, "",
      member(&S::photo_file));
  add("GET", "/api/photos/{photo_id}/crop", "An accepted photo's aligned face crop (PNG)", true, "",
      member(&S::photo_crop));
  add("DELETE", "/api/photos/{photo_id}", "Delete a photo", true, "", member(&S::delete_photo));
  add("POST", "/api/subjects/{subject_id}/train", "Train the subject's LoRA (queues a job)", true,
      JsonBody{"steps:integer,rank:integer,class_word:string,seed:integer,sample_every:integer,"
               "idempotency_key:string"},
      member(&S::train));
  add("GET", "/api/subjects/{subject_id}/loras", "The subject's LoRA versions", true, "",
      member(&S::list_loras));
  add("GET", "/api/subjects/{subject_id}/images", "All images of a subject, best first", true, "",
      member(&S::subject_images));
  add("GET", "/api/loras/{lora_id}/file", "Download a trained LoRA (.safetensors)", true, "",
      member(&S::lora_file));
  add("GET", "/api/loras/{lora_id}/samples",
      "The sample images of a LoRA version's training, by step (made while it runs)", true, "",
      member(&S::lora_samples));
  add("GET", "/api/loras/{lora_id}/samples/{digest}",
      "One training sample's PNG (png_url from GET /api/loras/{lora_id}/samples)", true, "",
      member(&S::lora_sample_png));
  add("GET", "/api/styles", "Style packs with their example images, and the samplers", true, "",
      member(&S::list_styles));
  add("POST", "/api/style-samples",
      "Make the style packs' missing example images with the default model (queues jobs)", true, "",
      member(&S::make_style_samples));
  add("GET", "/api/style-samples", "A style example's PNG (?sha256=, from GET /api/styles)", true,
      "", member(&S::style_sample_png));
  add("GET", "/api/shoots", "List shoots (optionally ?subject_id=)", true, "",
      member(&S::list_shoots));
  add("POST", "/api/shoots", "Shoot a subject in some styles (queues one job per image)", true,
      JsonBody{"subject_id:string!,styles:strings,count:integer,seed:integer,lora_version_id:"
               "string,class_word:string,sampler:string,steps:integer,cfg_scale:number,width:"
               "integer,height:integer,prompt_extra:string,lora_weight:number,idempotency_key:"
               "string,id_photo:string,id_photo_background:string,templates:objects,speed:string"},
      member(&S::create_shoot));
  add("GET", "/api/shoots/{shoot_id}", "Get a shoot", true, "", member(&S::get_shoot));
  add("POST", "/api/shoots/{shoot_id}/cancel", "Cancel the shoot's images not made yet", true, "",
      member(&S::cancel_shoot));
  add("DELETE", "/api/shoots/{shoot_id}", "Delete a shoot and its images", true, "",
      member(&S::delete_shoot));
  add("GET", "/api/shoots/{shoot_id}/images", "A shoot's images, best first", true, "",
      member(&S::shoot_images));
  add("GET", "/api/shoots/{shoot_id}/zip", "Download a shoot's PNGs, best first, as one zip", true,
      "", member(&S::shoot_zip));
  add("GET", "/api/images/{image_id}", "Get an image's record and recipe", true, "",
      member(&S::get_image));
  add("GET", "/api/images/{image_id}/png", "Download the PNG (A1111 parameters inside)", true, "",
      member(&S::image_png));
  add("PUT", "/api/images/{image_id}/favourite", "Mark or unmark a favourite", true,
      JsonBody{"favourite:boolean!"}, member(&S::favourite_image));
  add("DELETE", "/api/images/{image_id}", "Delete an image", true, "", member(&S::delete_image));
  add("POST", "/api/images/{image_id}/again", "Shoot the same recipe and seed again", true,
      JsonBody{"idempotency_key:string"}, member(&S::again));
  add("POST", "/api/images/{image_id}/variations", "Shoot variations of an image", true,
      JsonBody{"count:integer,first:integer,idempotency_key:string"}, member(&S::variations));
  add("POST", "/api/images/{image_id}/upscale",
      "Make the image again larger: a hires fix of its recipe and seed", true,
      JsonBody{"scale:number,strength:number,idempotency_key:string"}, member(&S::upscale_image));
  add("POST", "/api/images/{image_id}/fix-face",
      "Make the image again with the face-detail pass (ADetailer) on its face", true,
      JsonBody{"strength:number,idempotency_key:string"}, member(&S::fix_face));
  add("POST", "/api/images/{image_id}/inpaint",
      "Paint a brushed area of the image again (mask: PNG in base64, white = repaint)", true,
      JsonBody{"mask:string!,strength:number,prompt_extra:string,idempotency_key:string"},
      member(&S::inpaint_image));
  add("GET", "/api/models", "The installation's models (the tiny built-in one included)", true, "",
      member(&S::list_models));
  add("POST", "/api/models",
      "Register a model on the server's disk: a Stable Diffusion checkpoint, an IP-Adapter or "
      "a CLIP image encoder (kind: checkpoint, ip_adapter, image_encoder)",
      true, JsonBody{"path:string!,name:string,kind:string"}, member(&S::add_model));
  add("PUT", "/api/models/{model_id}/default", "Make a model the default for new shoots", true, "",
      member(&S::set_default_model));
  add("DELETE", "/api/models/{model_id}", "Remove a model (not the built-in or default one)", true,
      "", member(&S::delete_model));
  add("GET", "/api/jobs", "List jobs, newest first (optional ?status=, ?limit= up to 1000)", true,
      "", member(&S::list_jobs));
  add("GET", "/api/jobs/{job_id}", "Get a job", true, "", member(&S::get_job));
  add("POST", "/api/jobs/{job_id}/cancel", "Cancel a job", true, "", member(&S::cancel_job));
  add("GET", "/api/jobs/{job_id}/events", "Progress as server-sent events", true, "",
      member(&S::job_events));
  add("GET", "/api/events", "Every change of the account's jobs as server-sent events", true, "",
      member(&S::account_events));
  if (options.compat_api) register_compat_routes();
  for (const Route& route : routes) install(route);
}

void ApiServer::State::install(const Route& route) {
  // "/api/subjects/{subject_id}" -> "/api/subjects/([^/]+)"
  const std::string pattern =
      std::regex_replace(route.info.path, std::regex(R"(\{[a-z_]+\})"), "([^/]+)");
  const Route* target = &route;
  auto handler = [this, target](const httplib::Request& request, httplib::Response& response) {
    dispatch(*target, request, response);
  };
  const std::string& method = route.info.method;
  if (method == "GET") {
    http.Get(pattern, handler);
  } else if (method == "POST") {
    http.Post(pattern, handler);
  } else if (method == "PUT") {
    http.Put(pattern, handler);
  } else if (method == "PATCH") {
    http.Patch(pattern, handler);
  } else if (method == "DELETE") {
    http.Delete(pattern, handler);
  }
}

std::optional<Auth> ApiServer::State::authenticate(const httplib::Request& request) {
  const int64_t now = unix_millis_now();
  const std::string authorization = request.get_header_value("Authorization");
  if (!authorization.empty()) {
    if (authorization.rfind("Bearer ", 0) != 0) return std::nullopt;
    const auto token = repository->find_api_token(token_hash(authorization.substr(7)), now);
    if (!token) return std::nullopt;
    auto account = repository->get_account(token->account_id);
    if (!account) return std::nullopt;
    return Auth{*account, std::nullopt};
  }
  const std::string cookie = cookie_value(request, kSessionCookie);
  if (cookie.empty()) return std::nullopt;
  auto session = repository->find_session(token_hash(cookie), now);
  if (!session) return std::nullopt;
  auto account = repository->get_account(session->account_id);
  if (!account) return std::nullopt;
  return Auth{*account, session};
}

void ApiServer::State::dispatch(const Route& route, const httplib::Request& request,
                                httplib::Response& response) {
  Call call{request, response, std::nullopt, json::object()};
  try {
    if (route.info.authenticated) {
      call.auth = authenticate(request);
      if (!call.auth) {
        throw HttpError(401, "unauthorized",
                        "sign in first (session cookie) or send 'Authorization: Bearer <token>'");
      }
      const bool safe = request.method == "GET" || request.method == "HEAD";
      if (call.auth->session && !safe) {
        // Double submit: a page of another site can send the cookie but cannot read it.
        const std::string header = request.get_header_value("X-CSRF-Token");
        if (header.empty() || !constant_time_equal(header, call.auth->session->csrf_secret)) {
          throw HttpError(403, "csrf",
                          "missing or wrong X-CSRF-Token header (send the csrf_token of the "
                          "sign-in answer, also in the doppel_csrf cookie)");
        }
      }
    }
    if (route.body.starts_with("json:")) {
      call.body = parse_json_body(request, options.max_json_bytes);
      check_body_fields(call.body, route.body.substr(5));
    }
    route.handler(call);
  } catch (const HttpError& error) {
    send_error(response, error.status(), error.code(), error.what());
  } catch (const Error& error) {
    const int status = http_status_for(error.code());
    if (is_disk_full(error)) {
      log_error(request.method + " " + request.path + ": " + error.what());
      send_error(response, 507, "disk_full",
                 "the server's disk is full, so this could not be stored; free some space on it "
                 "(or ask whoever runs the server) and try again");
    } else if (status >= 500) {
      log_error(request.method + " " + request.path + ": " + error.what());
      send_error(response, status, error_code_name(error.code()),
                 "the server failed to answer; the server log has the details");
    } else {
      send_error(response, status, error_code_name(error.code()), error.what());
    }
  } catch (const std::exception& error) {
    log_error(request.method + " " + request.path + ": " + error.what());
    send_error(response, 500, "internal",
               "the server failed to answer; the server log has the details");
  }
}

json ApiServer::State::openapi() const {
  json paths = json::object();
  for (const Route& route : routes) {
    json operation = {{"summary", route.info.summary},
                      {"operationId", lowercase(route.info.method) + route.info.path}};
    json parameters = json::array();
    static const std::regex parameter(R"(\{([a-z_]+)\})");
    for (auto it = std::sregex_iterator(route.info.path.begin(), route.info.path.end(), parameter);
         it != std::sregex_iterator(); ++it) {
      // Record ids are 32 hex digits; the built-in model's id is "builtin".
      const std::string pattern =
          (*it)[1].str() == "model_id" ? "^([0-9a-f]{32}|builtin)$" : "^[0-9a-f]{32}$";
      parameters.push_back({{"name", (*it)[1].str()},
                            {"in", "path"},
                            {"required", true},
                            {"schema", {{"type", "string"}, {"pattern", pattern}}}});
    }
    if (!parameters.empty()) operation["parameters"] = parameters;
    if (route.body.starts_with("json:")) {
      operation["requestBody"]["content"]["application/json"]["schema"] =
          request_schema(route.body.substr(5));
    } else if (route.body == "multipart") {
      json photos = {{"type", "array"}, {"items", {{"type", "string"}, {"format", "binary"}}}};
      json schema = {{"type", "object"}, {"properties", {{"photos", photos}}}};
      json content;
      content["multipart/form-data"]["schema"] = schema;
      operation["requestBody"] = {{"required", true}, {"content", content}};
    }
    operation["security"] =
        route.info.authenticated
            ? json::array({{{"bearer", json::array()}}, {{"session", json::array()}}})
            : json::array();
    operation["responses"]["200"]["description"] = "Success";
    operation["responses"]["default"]["description"] = "Error";
    operation["responses"]["default"]["content"]["application/json"]["schema"]["$ref"] =
        "#/components/schemas/Error";
    paths[route.info.path][lowercase(route.info.method)] = operation;
  }
  json error_schema = {{"type", "object"}};
  error_schema["properties"]["error"]["type"] = "object";
  error_schema["properties"]["error"]["properties"]["code"]["type"] = "string";
  error_schema["properties"]["error"]["properties"]["message"]["type"] = "string";
  json document;
  document["openapi"] = "3.0.3";
  document["info"] = {{"title", "doppel studio API"},
                      {"version", "1"},
                      {"description",
                       "Subjects, photos, training, shoots and images of a doppel "
                       "server. Errors are {\"error\": {\"code\", \"message\"}}."}};
  document["paths"] = paths;
  document["components"]["securitySchemes"]["bearer"] = {{"type", "http"}, {"scheme", "bearer"}};
  document["components"]["securitySchemes"]["session"] = {
      {"type", "apiKey"}, {"in", "cookie"}, {"name", kSessionCookie}};
  document["components"]["schemas"]["Error"] = error_schema;
  return document;
}

std::string ApiServer::State::metrics() {
  std::ostringstream out;
  out << "# HELP doppel_http_responses_total HTTP responses by status code.\n"
      << "# TYPE doppel_http_responses_total counter\n";
  {
    std::lock_guard lock(metrics_mutex);
    for (const auto& [status, count] : responses)
      out << "doppel_http_responses_total{code=\"" << status << "\"} " << count << "\n";
  }
  out << "# HELP doppel_jobs Jobs by status.\n# TYPE doppel_jobs gauge\n";
  for (auto status :
       {store::JobStatus::kQueued, store::JobStatus::kRunning, store::JobStatus::kSucceeded,
        store::JobStatus::kDead, store::JobStatus::kCancelled}) {
    out << "doppel_jobs{status=\"" << store::job_status_name(status) << "\"} "
        << jobs->count(status) << "\n";
  }
  out << "# HELP doppel_accounts Accounts.\n# TYPE doppel_accounts gauge\n"
      << "doppel_accounts " << repository->count_accounts() << "\n";
  const store::BlobUsage usage = blobs->usage();  // counted, not walked (after the first)
  out << "# HELP doppel_blob_bytes Bytes of stored blobs.\n# TYPE doppel_blob_bytes gauge\n"
      << "doppel_blob_bytes " << usage.bytes << "\n"
      << "# HELP doppel_blob_bytes_written_total Bytes of blobs this server wrote.\n"
      << "# TYPE doppel_blob_bytes_written_total counter\n"
      << "doppel_blob_bytes_written_total " << usage.bytes_written << "\n"
      << "# HELP doppel_blob_bytes_removed_total Bytes of blobs this server deleted.\n"
      << "# TYPE doppel_blob_bytes_removed_total counter\n"
      << "doppel_blob_bytes_removed_total " << usage.bytes_removed << "\n";
  out << "# HELP doppel_uptime_seconds Seconds since the server started.\n"
      << "# TYPE doppel_uptime_seconds gauge\n"
      << "doppel_uptime_seconds " << (unix_millis_now() - started_at) / 1000 << "\n";
  return out.str();
}

void ApiServer::State::remove_blobs(const store::Deletion& deletion) {
  for (const std::string& digest : deletion.orphaned_blobs) {
    blobs->remove(digest);
    // A LoRA's unpacked copy for the workers (see worker.cpp) goes with its blob.
    std::error_code ignored;
    std::filesystem::remove(lora_cache_path(options.data_dir, digest), ignored);
    std::filesystem::remove_all(lora_cache_path(options.data_dir, digest).replace_extension(),
                                ignored);  // its copies named after the person
  }
  intake->forget(deletion.orphaned_blobs);
}

// ---------------------------------------------------------------------------------------
// The server

ApiServer::ApiServer(ServerOptions options) : state_(std::make_unique<State>(std::move(options))) {
  State& s = *state_;
  std::filesystem::create_directories(s.options.data_dir);
  // Every account's photos are in it: no other local user may look (issue 23).
  std::error_code private_status;
  std::filesystem::permissions(s.options.data_dir, std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::replace, private_status);
  if (private_status)
    log_warning("cannot make the data folder " + s.options.data_dir.string() +
                " private to its owner (" + private_status.message() + ")");
  s.data_lock = std::make_unique<DataFolderLock>(s.options.data_dir);
  s.database = store::open_database(s.options.database_url, s.options.data_dir);
  s.repository = store::make_repository(s.database);
  s.jobs = queue::make_job_queue(s.database);
  s.blobs = std::make_unique<store::BlobStore>(
      store::BlobStore::open(s.options.data_dir, s.options.key_file, true));
  s.styles =
      load_style_packs(s.options.styles_dir.empty() ? default_styles_dir() : s.options.styles_dir);
  s.intake = std::make_unique<SubjectIntake>(*s.repository, *s.blobs, s.options.face_analysis,
                                             s.options.max_photo_pixels);
  if (s.options.model_path) s.make_startup_model_default(*s.options.model_path);
  s.model_folders = s.options.model_dirs;
  if (s.model_folders.empty()) s.model_folders = {default_models_dir(), "models"};
  const store::Model model = s.repository->default_model();
  log_info("default model: " + model.name +
           (model.builtin ? " (built in)" : " (" + model.path + ")"));
  // Files a crash left between writing a blob and committing its row (or deleting a row and
  // its files); an hour's grace spares uploads still on their way.
  const auto removed = store::remove_unreferenced_blobs(*s.repository, *s.blobs, 3600'000);
  if (!removed.empty())
    log_info("removed " + std::to_string(removed.size()) + " unreferenced blob files");
  s.dummy_hash = hash_password(random_token(), s.options.fast_password_hashing);
  if (s.repository->count_accounts() == 0) s.setup_token = random_token();

  s.http.set_payload_max_length(static_cast<size_t>(s.options.max_upload_bytes));
  // Answers go out as headers + body in two writes: without this, Nagle's algorithm and
  // delayed ACKs add ~40 ms to every keep-alive request.
  s.http.set_tcp_nodelay(true);
  // httplib's default also sets SO_REUSEPORT, which lets a second server bind a port that is
  // in use (and share its connections); SO_REUSEADDR alone still allows a quick restart.
  s.http.set_socket_options([&s](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, reinterpret_cast<const void*>(&yes), sizeof(yes));
    s.listening_socket = sock;
  });
  if (!s.options.web_dir.empty()) {
    if (!std::filesystem::is_regular_file(s.options.web_dir / "index.html"))
      throw Error(ErrorCode::kNotFound, "no index.html in the web studio folder " +
                                            s.options.web_dir.string() +
                                            "; build it (npm run build in web/)");
    s.http.set_mount_point("/", s.options.web_dir.string());
  }
  s.http.set_error_handler([&s](const httplib::Request& request, httplib::Response& response) {
    // A page path of the web studio (its router draws it): answer with index.html.
    const bool page = request.method == "GET" && response.status == 404 &&
                      !s.options.web_dir.empty() && request.path.rfind("/api/", 0) != 0 &&
                      request.path.rfind("/sdapi/", 0) != 0 && request.path.rfind("/v1/", 0) != 0 &&
                      request.path.rfind("/controlnet/", 0) != 0 && request.path != "/metrics" &&
                      response.body.empty();
    if (page) {
      std::ifstream file(s.options.web_dir / "index.html", std::ios::binary);
      response.status = 200;
      response.set_content(std::string(std::istreambuf_iterator<char>(file), {}),
                           "text/html; charset=utf-8");
      return;
    }
    // Answers httplib made itself (no route, body too large): JSON like every other error.
    if (response.body.empty() || response.get_header_value("Content-Type") != "application/json") {
      const int status = response.status;
      std::string message = status == 404   ? "no such route; GET /api/openapi.json lists them"
                            : status == 413 ? "the request body is too large"
                                            : "the request could not be handled";
      send_error(response, status, status == 404 ? "no_route" : status_code_name(status), message);
    }
  });
  s.http.set_exception_handler(
      [](const httplib::Request&, httplib::Response& response, std::exception_ptr) {
        send_error(response, 500, "internal", "the server failed to answer");
      });
  // Counted before the response is written (a logger runs after it), so a client that got an
  // answer always finds it in /metrics.
  const bool loopback = s.options.host == "::1" || is_loopback_host(s.options.host);
  s.http.set_pre_routing_handler(
      [loopback](const httplib::Request& request, httplib::Response& response) {
        return check_host(request, response, loopback) ? httplib::Server::HandlerResponse::Unhandled
                                                       : httplib::Server::HandlerResponse::Handled;
      });
  s.http.set_post_routing_handler(
      [&s](const httplib::Request& request, httplib::Response& response) {
        add_security_headers(request, response);
        std::lock_guard lock(s.metrics_mutex);
        ++s.responses[response.status];
      });
  s.register_routes();
}

ApiServer::~ApiServer() {
  stop();
}

void ApiServer::start() {
  State& s = *state_;
  if (s.thread.joinable()) return;
  if (s.options.port == 0) {
    s.port = s.http.bind_to_any_port(s.options.host);
  } else {
    s.port = s.http.bind_to_port(s.options.host, s.options.port) ? s.options.port : -1;
  }
  if (s.port <= 0) {
    throw Error(ErrorCode::kIo, "cannot listen on " + s.options.host + ":" +
                                    std::to_string(s.options.port) +
                                    ": the port is in use (another doppel or program listens "
                                    "there) or the address is not one of this machine's; "
                                    "choose another with --port / --host");
  }
  // httplib listens with a backlog of 5: a burst of clients beyond it saw their connection
  // attempts dropped and retried only seconds later. Linux takes a second listen() as a new
  // backlog; the connection front still caps what is accepted.
  if (s.listening_socket >= 0) ::listen(s.listening_socket, SOMAXCONN);
  s.thread = std::thread([&s] { s.http.listen_after_bind(); });
  // httplib's stop() does nothing before its accept loop runs: wait for it, so a stop()
  // right after start() cannot leave the loop running forever.
  for (int waited = 0; !s.http.is_running() && waited < 5000; ++waited)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  log_info("doppel serving on http://" + s.options.host + ":" + std::to_string(s.port));
  const std::string url = setup_url();
  if (!url.empty()) {
    std::ostream& out = s.options.announce ? *s.options.announce : std::cout;
    out << "doppel: no account exists yet. Create the first one with this one-time link:\n  " << url
        << "\n(or POST /api/setup with {\"token\": \"" << s.setup_token
        << "\", \"email\", \"password\"})" << std::endl;
  }
}

void ApiServer::stop() {
  State& s = *state_;
  s.stopping = true;
  if (s.thread.joinable()) {
    s.http.stop();
    s.thread.join();
  }
  s.http.shut_down_front();
}

int ApiServer::port() const {
  return state_->port;
}

const std::vector<RouteInfo>& ApiServer::routes() const {
  return state_->route_infos;
}

std::string ApiServer::setup_url() const {
  State& s = *state_;
  std::lock_guard lock(s.setup_mutex);
  if (s.setup_token.empty()) return "";
  return "http://" + s.options.host + ":" + std::to_string(s.port) +
         "/setup?token=" + s.setup_token;
}

}  // namespace doppel::server

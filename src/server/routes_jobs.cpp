// Jobs: listing, cancelling, and progress as server-sent events.
#include "server/api_state.hpp"

namespace doppel::server {

void ApiServer::State::list_jobs(Call& call) {
  std::optional<store::JobStatus> status;
  if (call.request.has_param("status")) {
    try {
      status = store::parse_job_status(call.request.get_param_value("status"));
    } catch (const Error&) {
      bad_request("unknown status; use queued, running, succeeded, dead or cancelled");
    }
  }
  json list = json::array();
  int64_t limit = 100;
  if (call.request.has_param("limit")) {
    const std::string text = call.request.get_param_value("limit");
    const bool digits =
        !text.empty() && text.size() <= 4 &&
        std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
    limit = digits ? std::stoll(text) : 0;
    if (limit < 1 || limit > 1000) bad_request("limit must be a number from 1 to 1000");
  }
  for (const store::Job& job : jobs->list(call.account_id(), status, limit))
    list.push_back(job_json(job));
  send_json(call.response, 200, {{"jobs", list}});
}

std::optional<bool> ApiServer::State::installation_job_pending(std::string_view kind,
                                                               const std::string& idempotency_key) {
  const store::SqlResult newest = repository->database().execute(
      "SELECT status FROM jobs WHERE kind = ? AND idempotency_key = ? ORDER BY created_at DESC "
      "LIMIT 1",
      {std::string(kind), idempotency_key});
  if (newest.rows.empty()) return std::nullopt;
  const store::JobStatus status = store::parse_job_status(newest.rows[0].text(0));
  return status == store::JobStatus::kQueued || status == store::JobStatus::kRunning;
}

void ApiServer::State::get_job(Call& call) {
  const auto job = jobs->get(call.account_id(), call.id(1, "job"));
  if (!job) not_found("job");
  send_json(call.response, 200, job_json(*job));
}

void ApiServer::State::cancel_job(Call& call) {
  const std::string id = call.id(1, "job");
  const auto job = jobs->get(call.account_id(), id);
  if (!job) not_found("job");
  if (!jobs->cancel(call.account_id(), id))
    throw HttpError(409, "conflict", "the job has already finished");
  if (job->kind == "train") {
    const json payload = parse_stored_json(job->payload_json);
    const json version_id = payload.is_object() ? payload.value("lora_version_id", json()) : json();
    if (version_id.is_string()) {
      auto version = repository->get_lora_version(call.account_id(), version_id.get<std::string>());
      if (version && !version->blob_sha256) {
        version->status = store::LoraStatus::kCancelled;
        repository->update_lora_version(call.account_id(), *version);
      }
    }
  }
  send_json(call.response, 200, job_json(*jobs->get(call.account_id(), id)));
}

void ApiServer::State::stream_events(Call& call, std::function<bool(std::string&)> next) {
  const std::string account_id = call.account_id();
  {
    // Every stream holds an HTTP thread for its whole life: keep some threads for requests,
    // and the others shared among the accounts.
    std::lock_guard lock(streams_mutex);
    if (open_streams >= std::max(1, options.http_threads - 4))
      throw HttpError(503, "too_many_streams",
                      "too many open event streams; close some, or poll GET /api/jobs instead");
    if (streams_by_account[account_id] >= options.max_streams_per_account)
      throw HttpError(429, "too_many_streams",
                      "this account has " + std::to_string(options.max_streams_per_account) +
                          " event streams open already; close one (another tab?) first");
    ++open_streams;
    ++streams_by_account[account_id];
  }
  // The stream ends when what opened it no longer signs in (token revoked, signed out).
  auto credentials = std::make_shared<httplib::Request>();
  credentials->headers = call.request.headers;
  call.response.set_header("Cache-Control", "no-cache");
  call.response.set_chunked_content_provider(
      "text/event-stream",
      [this, next = std::move(next), credentials](size_t, httplib::DataSink& sink) {
        auto idle_since = std::chrono::steady_clock::now();
        for (int tick = 1; !stopping; ++tick) {
          if (tick % 5 == 0 && !authenticate(*credentials)) {
            static const std::string ended = "event: signed_out\ndata: {}\n\n";
            sink.write(ended.data(), ended.size());
            break;
          }
          std::string events;
          const bool more = next(events);
          if (!events.empty()) {
            if (!sink.write(events.data(), events.size())) return false;
            idle_since = std::chrono::steady_clock::now();
          } else if (std::chrono::steady_clock::now() - idle_since > std::chrono::seconds(15)) {
            static const std::string keep_alive = ": keep-alive\n\n";
            if (!sink.write(keep_alive.data(), keep_alive.size())) return false;
            idle_since = std::chrono::steady_clock::now();
          }
          if (!more) break;
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
        sink.done();
        return true;
      },
      [this, account_id](bool) {
        std::lock_guard lock(streams_mutex);
        --open_streams;
        if (--streams_by_account[account_id] <= 0) streams_by_account.erase(account_id);
      });
}

void ApiServer::State::job_events(Call& call) {
  const std::string account_id = call.account_id();
  const std::string id = call.id(1, "job");
  if (!jobs->get(account_id, id)) not_found("job");
  auto last = std::make_shared<std::string>();
  stream_events(call, [this, account_id, id, last](std::string& out) {
    const auto job = jobs->get(account_id, id);
    if (!job) {
      out = "event: gone\ndata: {\"id\":\"" + id + "\"}\n\n";
      return false;
    }
    const std::string data = job_json(*job).dump();
    if (data == *last) return true;
    *last = data;
    const bool done = job_finished(*job);
    out = std::string("event: ") + (done ? "done" : "progress") + "\ndata: " + data + "\n\n";
    return !done;
  });
}

void ApiServer::State::account_events(Call& call) {
  const std::string account_id = call.account_id();
  // The state of every job last sent; a job is sent again whenever its JSON changes.
  auto sent = std::make_shared<std::map<std::string, std::string>>();
  stream_events(call, [this, account_id, sent](std::string& out) {
    for (const store::Job& job : jobs->list(account_id, std::nullopt, 200)) {
      std::string data = job_json(job).dump();
      std::string& previous = (*sent)[job.id];
      if (previous == data) continue;
      out += "event: job\ndata: " + data + "\n\n";
      previous = std::move(data);
    }
    return true;
  });
}

}  // namespace doppel::server

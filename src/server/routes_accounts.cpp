// Set-up, sign-in, accounts and API tokens.
#include "server/api_state.hpp"

namespace doppel::server {

void ApiServer::State::start_session(Call& call, const store::Account& account, int status) {
  const std::string token = random_token();
  store::Session session;
  session.account_id = account.id;
  session.token_hash = token_hash(token);
  session.csrf_secret = random_token();
  session.expires_at = unix_millis_now() + options.session_ms;
  session = repository->create_session(session);
  const std::string max_age = std::to_string(options.session_ms / 1000) +
                              (arrived_over_tls(call.request) ? "; Secure" : "");
  call.response.set_header("Set-Cookie",
                           std::string(kSessionCookie) + "=" + token +
                               "; Path=/; HttpOnly; SameSite=Strict; Max-Age=" + max_age);
  call.response.set_header("Set-Cookie", std::string(kCsrfCookie) + "=" + session.csrf_secret +
                                             "; Path=/; SameSite=Strict; Max-Age=" + max_age);
  send_json(call.response, status,
            {{"account", account_json(account)},
             {"csrf_token", session.csrf_secret},
             {"expires_at", session.expires_at}});
}

void ApiServer::State::setup_status(Call& call) {
  send_json(call.response, 200, {{"needed", repository->count_accounts() == 0}});
}

void ApiServer::State::setup(Call& call) {
  check_same_origin_json(call.request);
  const json& body = call.body;
  const std::string token = *string_field(body, "token", true, 128);
  const std::string email = normalise_email(*string_field(body, "email", true, 254));
  const std::string password = *string_field(body, "password", true, 1024);
  const std::string display_name = string_field(body, "display_name", false, 100).value_or("");
  std::lock_guard lock(setup_mutex);
  if (repository->count_accounts() > 0 || setup_token.empty())
    throw HttpError(409, "already_set_up", "this server already has an account; sign in instead");
  if (!constant_time_equal(token, setup_token))
    throw HttpError(403, "forbidden", "wrong set-up token; use the link the server printed");
  check_password_strength(password);
  PasswordSlot slot(call, password_slots);
  const store::Account account = repository->create_account(
      email, display_name, hash_password(password, options.fast_password_hashing));
  setup_token.clear();
  start_session(call, account, 201);
}

void ApiServer::State::sign_in(Call& call) {
  check_same_origin_json(call.request);
  const json& body = call.body;
  const std::string email = normalise_email(*string_field(body, "email", true, 254));
  const std::string password = *string_field(body, "password", true, 1024);
  const std::string key = email + "|" + call.request.remote_addr;
  const int64_t now = unix_millis_now();
  PasswordSlot slot(call, password_slots);
  begin_limited_attempt(call, key, now, "sign-ins");
  const auto account = repository->find_account_by_email(email);
  // Unknown emails cost the same hashing work, so timing does not reveal which exist.
  const bool valid = account ? verify_password(password, account->password_hash)
                             : (verify_password(password, dummy_hash), false);
  if (!valid) throw HttpError(401, "invalid_credentials", "wrong email or password");
  limiter.reset(key);
  repository->delete_expired_sessions(now);
  start_session(call, *account, 200);
}

void ApiServer::State::sign_out(Call& call) {
  if (call.auth->session) repository->delete_session(call.account_id(), call.auth->session->id);
  // Built with append: GCC 12 reports a false array-bounds error for operator+ here.
  call.response.set_header("Set-Cookie",
                           std::string(kSessionCookie).append("=; Path=/; HttpOnly; Max-Age=0"));
  call.response.set_header("Set-Cookie", std::string(kCsrfCookie).append("=; Path=/; Max-Age=0"));
  send_json(call.response, 200, {{"signed_out", true}});
}

void ApiServer::State::get_account(Call& call) {
  json answer = {{"account", account_json(call.auth->account)}};
  answer["csrf_token"] = call.auth->session ? json(call.auth->session->csrf_secret) : json(nullptr);
  send_json(call.response, 200, answer);
}

void ApiServer::State::create_account(Call& call) {
  const json& body = call.body;
  const std::string email = normalise_email(*string_field(body, "email", true, 254));
  const std::string password = *string_field(body, "password", true, 1024);
  const std::string display_name = string_field(body, "display_name", false, 100).value_or("");
  check_password_strength(password);
  if (repository->find_account_by_email(email))
    throw HttpError(409, "conflict", "an account with this email exists already");
  PasswordSlot slot(call, password_slots);
  const store::Account account = repository->create_account(
      email, display_name, hash_password(password, options.fast_password_hashing));
  send_json(call.response, 201, {{"account", account_json(account)}});
}

void ApiServer::State::delete_account(Call& call) {
  const json& body = call.body;
  const std::string password = *string_field(body, "password", true, 1024);
  const std::string key = "delete-account|" + call.account_id();
  PasswordSlot slot(call, password_slots);
  begin_limited_attempt(call, key, unix_millis_now(), "attempts");
  if (!verify_password(password, call.auth->account.password_hash))
    throw HttpError(403, "forbidden", "wrong password; deleting the account needs it");
  limiter.reset(key);
  remove_blobs(repository->delete_account(call.account_id()));
  send_json(call.response, 200, {{"deleted", true}});
}

void ApiServer::State::list_tokens(Call& call) {
  json list = json::array();
  for (const store::ApiToken& token : repository->list_api_tokens(call.account_id())) {
    list.push_back({{"id", token.id},
                    {"name", token.name},
                    {"created_at", token.created_at},
                    {"expires_at", token.expires_at ? json(*token.expires_at) : json(nullptr)}});
  }
  send_json(call.response, 200, {{"tokens", list}});
}

void ApiServer::State::create_token(Call& call) {
  const json& body = call.body;
  const std::string name = check_name(string_field(body, "name", true, 100));
  const auto days = optional_integer_field(body, "expires_in_days", 1, 3650);
  const std::string secret = random_token();
  store::ApiToken token;
  token.account_id = call.account_id();
  token.name = name;
  token.token_hash = token_hash(secret);
  if (days) token.expires_at = unix_millis_now() + *days * 24 * 3600'000;
  token = repository->create_api_token(token);
  send_json(call.response, 201,
            {{"id", token.id},
             {"name", token.name},
             {"token", secret},
             {"created_at", token.created_at},
             {"expires_at", token.expires_at ? json(*token.expires_at) : json(nullptr)}});
}

void ApiServer::State::delete_token(Call& call) {
  if (!repository->delete_api_token(call.account_id(), call.id(1, "token"))) not_found("token");
  send_json(call.response, 200, {{"deleted", true}});
}

void ApiServer::State::account_storage(Call& call) {
  const store::StorageUse use = repository->storage_use(call.account_id());
  std::map<std::string, uint64_t> sizes;  // every blob once, whatever kinds it is in
  auto kind = [&](const store::BlobUse& kind_use) {
    uint64_t bytes = 0;
    for (const std::string& digest : kind_use.blobs) {
      auto [it, added] = sizes.try_emplace(digest, 0);
      if (added) it->second = blobs->size_on_disk(digest);
      bytes += it->second;
    }
    return json{{"count", kind_use.records}, {"bytes", bytes}};
  };
  json answer = {
      {"photos", kind(use.photos)}, {"images", kind(use.images)}, {"loras", kind(use.loras)}};
  uint64_t total = 0;
  for (const auto& [digest, size] : sizes) total += size;
  answer["total_bytes"] = total;
  send_json(call.response, 200, answer);
}

}  // namespace doppel::server

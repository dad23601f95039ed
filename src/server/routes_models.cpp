// The models registry (operator only) and the default model.
#include "server/api_state.hpp"

namespace doppel::server {

std::string ApiServer::State::model_id(Call& call, size_t index) {
  std::string value = call.request.matches[index];
  if (value != store::kBuiltinModelId && !is_record_id(value)) not_found("model");
  return value;
}

std::optional<store::Model> ApiServer::State::add_model_record(const store::Model& model) {
  try {
    return repository->add_model(model);
  } catch (const Error&) {
    if (repository->find_model_by_path(model.path)) return std::nullopt;  // registered meanwhile
    throw;
  }
}

void ApiServer::State::list_models(Call& call) {
  // ?kind=checkpoint|ip_adapter|image_encoder lists one kind; without it, every model.
  std::optional<std::string> kind;
  if (call.request.has_param("kind")) kind = check_model_kind(call.request.get_param_value("kind"));
  json list = json::array();
  for (const store::Model& model : repository->list_models())
    if (!kind || model.kind == *kind) list.push_back(model_json(model));
  send_json(call.response, 200, {{"models", list}});
}

std::string ApiServer::State::check_model_kind(const std::string& kind) {
  if (kind != store::kModelCheckpoint && kind != store::kModelIpAdapter &&
      kind != store::kModelImageEncoder)
    bad_request("model kind '" + kind +
                "' is not one of checkpoint (a Stable Diffusion model), ip_adapter (an h94 "
                "IP-Adapter) or image_encoder (the CLIP image encoder an IP-Adapter reads with)");
  return kind;
}

void ApiServer::State::add_model(Call& call) {
  const json& body = call.body;
  const std::string given = *string_field(body, "path", true, 4096);
  if (given.find_first_not_of(' ') == std::string::npos)
    bad_request(
        "field 'path' must name a .safetensors checkpoint or a diffusers folder on the server");
  std::optional<std::string> name;
  if (body.contains("name")) name = check_name(string_field(body, "name", false, 100));
  const std::string kind = check_model_kind(
      string_field(body, "kind", false, 20).value_or(std::string(store::kModelCheckpoint)));
  require_operator(call);
  const std::string path = resolve_in_model_folders(given, model_folders);
  const auto registered = [&]() -> HttpError {
    const auto existing = repository->find_model_by_path(path);
    return HttpError(
        409, "conflict",
        "the model " + path + " is registered already" +
            (existing ? " as '" + existing->name + "' (id " + existing->id + ")" : "") +
            "; GET /api/models lists the models");
  };
  if (repository->find_model_by_path(path)) throw registered();
  const auto model = add_model_record(inspect_model_for_registry(path, name, kind));
  if (!model) throw registered();
  send_json(call.response, 201, model_json(*model));
}

void ApiServer::State::set_default_model(Call& call) {
  require_operator(call);
  const std::string id = model_id(call, 1);
  const auto model = repository->get_model(id);
  if (!model) not_found("model");
  if (model->kind != store::kModelCheckpoint)
    throw HttpError(
        409, "conflict",
        "'" + model->name + "' is " +
            (model->kind == store::kModelIpAdapter ? "an IP-Adapter" : "an image encoder") +
            ", which helps a Stable Diffusion model draw a person but cannot draw "
            "alone; make a checkpoint the default");
  if (!repository->set_default_model(id)) not_found("model");
  send_json(call.response, 200, model_json(*repository->get_model(id)));
}

void ApiServer::State::delete_model(Call& call) {
  require_operator(call);
  const std::string id = model_id(call, 1);
  const auto model = repository->get_model(id);
  if (!model) not_found("model");
  if (model->builtin) bad_request("the built-in model is part of doppel and cannot be removed");
  const std::string make_another_default =
      "; make another model the default first (PUT /api/models/{model_id}/default), then "
      "remove this one";
  if (model->is_default)
    throw HttpError(409, "conflict", "this model is the default one" + make_another_default);
  if (!repository->delete_model(id)) {
    if (!repository->get_model(id)) not_found("model");
    throw HttpError(409, "conflict",
                    "this model became the default meanwhile" + make_another_default);
  }
  send_json(call.response, 200, {{"deleted", true}});
}

void ApiServer::State::make_startup_model_default(const std::filesystem::path& given) {
  const std::string path = normalise_model_path(given.string());
  auto model = repository->find_model_by_path(path);
  if (!model) {
    model = add_model_record(inspect_model_for_registry(path, std::nullopt));
    if (!model) model = repository->find_model_by_path(path);
    if (!model) throw Error(ErrorCode::kInternal, "the model " + path + " vanished on registering");
  }
  repository->set_default_model(model->id);
}

}  // namespace doppel::server

// Style packs and shoots: planning, queueing, progress, cancelling, zip downloads.
#include "server/api_state.hpp"

namespace doppel::server {
namespace {

// What a shoot made from one portrait says about it: the edit and source image its recipe
// records, and the source's style ({"edit", "image_id", "style"}); null for other shoots.
json made_from_of(const json& recipe) {
  if (!recipe.is_object() || !recipe.contains("made_from") || !recipe["made_from"].is_object())
    return nullptr;
  json made_from = recipe["made_from"];
  made_from["style"] = recipe.value("style", "");
  return made_from;
}

}  // namespace

void ApiServer::State::list_styles(Call& call) {
  // Each style with its example images for the default model (made by a worker on first use,
  // POST /api/style-samples): "samples_status" is "ready", "missing", "making", "failed",
  // "not_installed" or "other_family".
  send_json(call.response, 200, styles_with_samples(call, false));
}

void ApiServer::State::make_style_samples(Call& call) {
  send_json(call.response, 202, styles_with_samples(call, true));
}

json ApiServer::State::styles_with_samples(Call& call, bool make_missing) {
  const store::Model model = repository->default_model();
  std::map<std::string, json> samples;
  for (const store::StyleSample& sample :
       store::list_style_samples(repository->database(), model.id))
    samples[sample.style_id].push_back(
        {{"seed", sample.seed}, {"url", "/api/style-samples?sha256=" + sample.blob_sha256}});
  json list = json::array();
  for (const StylePack& pack : styles) {
    json entry = style_pack_to_json(pack);
    entry["samples"] = samples.contains(pack.id) ? samples[pack.id] : json::array();
    entry["samples_status"] =
        style_samples_status(call, pack, model, entry["samples"].size(), make_missing);
    list.push_back(std::move(entry));
  }
  // The advanced fold's sampler menu: registry names and A1111's.
  json samplers = json::array();
  for (const SamplerInfo& sampler : sampler_registry())
    samplers.push_back({{"name", sampler.name},
                        {"display_name", sampler.display_name},
                        {"karras", sampler.supports_karras}});
  // The speeds a shoot may ask for: "fast" when the model folder has the LCM-LoRA for the
  // default model's family.
  const std::optional<std::string> adapter = fast_adapter_file(parse_model_family(model.family));
  const bool fast =
      adapter && std::filesystem::is_regular_file(default_models_dir() / "lora" / *adapter);
  json speeds = json::array({{{"id", "exact"}, {"available", true}}});
  speeds.push_back(
      {{"id", "fast"}, {"available", fast}, {"adapter", adapter ? json(*adapter) : json(nullptr)}});
  return {{"styles", list}, {"samplers", samplers}, {"speeds", speeds}};
}

namespace {

// The LCM-LoRA of a shoot asked for at the "fast" speed, refused with where to put it when the
// model folder lacks it; nothing for the "exact" speed (the default).
std::optional<std::filesystem::path> fast_adapter_of(const json& body, const store::Model& model) {
  const std::string speed = string_field(body, "speed", false, 10).value_or("exact");
  if (speed == "exact") return std::nullopt;
  if (speed != "fast") bad_request("field 'speed' must be \"exact\" or \"fast\"");
  const std::optional<std::string> file = fast_adapter_file(parse_model_family(model.family));
  if (!file)
    throw HttpError(409, "fast_not_available",
                    "the fast speed has no LCM-LoRA for " + model.name +
                        " (an SD 2.x model); shoot at the exact speed");
  const std::filesystem::path path = default_models_dir() / "lora" / *file;
  if (!std::filesystem::is_regular_file(path))
    throw HttpError(409, "fast_not_installed",
                    "the fast speed needs " + *file + " (latent-consistency/" +
                        std::filesystem::path(*file).stem().string() + " on Hugging Face) in " +
                        path.parent_path().string() + "; put it there or shoot at the exact speed");
  return path;
}

}  // namespace

std::string ApiServer::State::style_samples_status(Call& call, const StylePack& pack,
                                                   const store::Model& model, size_t made,
                                                   bool make_missing) {
  if (static_cast<int>(made) >= services::kStyleSamplesPerStyle) return "ready";
  if (pack.family != parse_model_family(model.family)) return "other_family";
  if (!missing_style_files(pack, default_models_dir()).empty()) return "not_installed";
  // One job per style and model for the whole installation, whoever asked first.
  const std::string key = "style-samples:" + pack.id + ":" + model.id;
  if (const auto pending = installation_job_pending(services::kStyleSamplesJobKind, key))
    return *pending ? "making" : "failed";
  if (!make_missing) return "missing";
  ShootRequest request;
  request.styles = {pack};
  request.count_per_style = services::kStyleSamplesPerStyle;
  request.base_seed = services::kStyleSamplesFirstSeed;
  request.family = pack.family;
  request.model_name = model.name;
  request.subject.class_word = "person";  // no one in particular: no trigger word, no LoRA
  services::StyleSamplesPayload payload;
  payload.style_id = pack.id;
  payload.model_key = model.id;
  payload.model_path = model.path;
  for (const Shot& shot : adapt_to_model(plan_shoot(request), model))
    payload.recipes.push_back(shot.recipe);
  queue::NewJob job;
  job.kind = services::kStyleSamplesJobKind;
  job.payload_json = services::style_samples_payload_to_json(payload).dump();
  job.idempotency_key = key;
  job.max_attempts = 2;
  jobs->enqueue(call.account_id(), job);
  return "making";
}

void ApiServer::State::style_sample_png(Call& call) {
  const std::string digest =
      call.request.has_param("sha256") ? call.request.get_param_value("sha256") : "";
  // Only the examples' PNGs: a digest of anything else in the blob store is not found.
  if (!store::is_sha256_hex(digest) ||
      repository->database()
          .execute("SELECT 1 FROM style_samples WHERE blob_sha256 = ?", {digest})
          .rows.empty())
    not_found("style sample");
  call.response.set_header("Cache-Control", "private, max-age=31536000, immutable");
  call.response.set_header("X-Content-Type-Options", "nosniff");
  call.response.set_content(blobs->get(digest), "image/png");
}

std::vector<Shot> ApiServer::State::adapt_to_model(std::vector<Shot> shots,
                                                   const store::Model& model) const {
  for (Shot& shot : shots) {
    // The recipe names its model's file, so "again" runs on the same model later.
    shot.recipe["model"]["path"] = model.path;
    if (model.builtin) {
      // The tiny model makes 64x64 images; its recipes say so, so they stay reproducible.
      shot.recipe["width"] = 64;
      shot.recipe["height"] = 64;
      shot.recipe["steps"] = std::min<int64_t>(shot.recipe["steps"].get<int64_t>(), 8);
    }
    shot = shot_from_recipe(shot.recipe);
  }
  return shots;
}

std::string ApiServer::State::model_path_of_recipe(const json& recipe) {
  const json model = recipe.value("model", json::object());
  if (!model.contains("path")) {
    // Recipes from before the models registry name only the model: the tiny one by its name,
    // any other was the server's --model of the time, the default now.
    return model.value("name", "") == "doppel-tiny-demo" ? "" : repository->default_model().path;
  }
  const std::string path = model["path"].is_string() ? model["path"].get<std::string>() : "";
  if (!path.empty() && !repository->find_model_by_path(path))
    throw HttpError(409, "conflict",
                    "the model this image was made with (" + path +
                        ") is no longer registered; register it again (POST /api/models) to "
                        "shoot this recipe again");
  return path;
}

store::Shoot ApiServer::State::create_shoot_with_jobs(
    Call& call, const store::Subject& subject, const std::vector<Shot>& shots,
    const std::optional<std::string>& idempotency_key, const std::string& model_path) {
  json style_ids = json::array();
  for (const Shot& shot : shots) {
    if (std::find(style_ids.begin(), style_ids.end(), shot.style_id) == style_ids.end())
      style_ids.push_back(shot.style_id);
  }
  store::Shoot shoot;
  shoot.subject_id = subject.id;
  shoot.styles_json = style_ids.dump();
  shoot.image_count = static_cast<int64_t>(shots.size());
  shoot.status = store::ShootStatus::kQueued;
  shoot = repository->create_shoot(call.account_id(), shoot);
  for (size_t i = 0; i < shots.size(); ++i) {
    queue::NewJob job;
    job.kind = "shoot";
    job.subject_id = subject.id;
    job.payload_json = json{
        {"shoot_id", shoot.id},
        {"recipe", shots[i].recipe},
        {"model_path", model_path},
        // Where a template shot's built-in template is (the worker may run elsewhere).
        {"templates_dir",
         ((options.styles_dir.empty() ? default_styles_dir() : options.styles_dir) / "templates")
             .string()}}.dump();
    if (idempotency_key)
      job.idempotency_key = "shoot:" + *idempotency_key + ":" + std::to_string(i);
    const store::Job queued = jobs->enqueue(call.account_id(), job);
    if (i == 0 && parse_stored_json(queued.payload_json).value("shoot_id", "") != shoot.id) {
      // A repeated request: the first one's shoot stands.
      repository->delete_shoot(call.account_id(), shoot.id);
      const auto earlier = repository->get_shoot(
          call.account_id(), parse_stored_json(queued.payload_json).value("shoot_id", ""));
      if (!earlier)
        throw HttpError(409, "conflict", "this idempotency key was used for a deleted shoot");
      return *earlier;
    }
  }
  return shoot;
}

void ApiServer::State::create_shoot(Call& call) {
  const json& body = call.body;
  const std::string subject_id = *string_field(body, "subject_id", true, 64);
  if (!is_record_id(subject_id)) not_found("subject");
  const auto subject = repository->get_subject(call.account_id(), subject_id);
  if (!subject) not_found("subject");
  // An ID-photo shoot (routes_id_photos.cpp) shoots the built-in ID-photo style by default.
  const std::optional<json> id_photo = id_photo_of_shoot(body);
  const json style_ids = body.contains("styles") || !id_photo
                             ? body.value("styles", json::array())
                             : json::array({id_photo_style(*id_photo)});
  // A shoot of templates only (routes_templates.cpp) has no styles.
  const bool templates_only = !body.contains("styles") && body.contains("templates") && !id_photo;
  if (!templates_only && (!style_ids.is_array() || style_ids.empty()))
    bad_request(
        "field 'styles' must be a non-empty list of style ids (GET /api/styles), or give "
        "'templates' (GET /api/templates)");
  ShootRequest request;
  for (const json& id : style_ids) {
    if (!id.is_string()) bad_request("field 'styles' must list style ids as strings");
    const auto it = std::find_if(styles.begin(), styles.end(), [&](const StylePack& pack) {
      return pack.id == id.get<std::string>();
    });
    if (it == styles.end())
      bad_request("unknown style '" + id.get<std::string>() + "'; GET /api/styles lists them");
    if (const auto missing = missing_style_files(*it, default_models_dir()); !missing.empty())
      throw HttpError(409, "style_not_installed",
                      "style '" + it->id + "' needs " + missing.front().filename().string() +
                          (missing.size() > 1 ? " and other files" : "") +
                          ", which the server does not have; put it in " +
                          missing.front().parent_path().string() + " or choose another style");
    request.styles.push_back(*it);
  }
  request.count_per_style = static_cast<int>(integer_field(body, "count", 1, 20, 4));
  request.base_seed = static_cast<uint64_t>(integer_field(
      body, "seed", 0, kMaxSeed, static_cast<int64_t>(std::random_device{}() & kMaxSeed)));
  // Shot on the model that is the default now; the jobs name it.
  const store::Model model = repository->default_model();
  request.family = parse_model_family(model.family);
  request.model_name = model.name;
  request.subject.trigger_word = subject->trigger_word;
  request.subject.class_word = body.contains("class_word")
                                   ? check_class_word(string_field(body, "class_word", false, 40))
                                   : subject->class_word;
  const ShootSettings settings = shoot_settings_of(body);

  // The subject's LoRA: the one asked for, else the newest one trained on this model (none:
  // training-free). LoRAs from before the models registry do not say their model.
  const auto trained_on_model = [&](const store::LoraVersion& version) {
    const json settings = parse_stored_json(version.settings_json);
    const json path = settings.is_object() ? settings.value("model_path", json()) : json();
    return !path.is_string() || path.get<std::string>() == model.path;
  };
  std::optional<store::LoraVersion> lora;
  if (const auto id = string_field(body, "lora_version_id", false, 64)) {
    if (!is_record_id(*id)) not_found("LoRA");
    lora = repository->get_lora_version(call.account_id(), *id);
    if (!lora || lora->subject_id != subject->id) not_found("LoRA");
    if (!lora->blob_sha256)
      throw HttpError(409, "not_ready", "this LoRA version has not finished training");
    if (!trained_on_model(*lora))
      throw HttpError(409, "conflict",
                      "this LoRA version was trained on another model than the default one (" +
                          model.name +
                          "); make its model the default (PUT /api/models/{model_id}/default) "
                          "or train the subject again");
  } else if (subject->identity_source != store::kIdentityInstant) {
    // An instant person is shot from their photo, even with a LoRA kept from before.
    for (const auto& version : repository->list_lora_versions(call.account_id(), subject->id)) {
      if (version.blob_sha256 && trained_on_model(version) &&
          (!lora || version.created_at >= lora->created_at))
        lora = version;
    }
  }
  if (lora) {
    request.subject.lora = lora_cache_path(options.data_dir, *lora->blob_sha256);
    request.subject.lora_sha256 = *lora->blob_sha256;
    if (!body.contains("class_word")) {
      // The LoRA learned the person as "<trigger> <the class word it was trained with>".
      const json trained = parse_stored_json(lora->settings_json);
      if (trained.is_object() && trained.value("class_word", json()).is_string())
        request.subject.class_word = trained["class_word"].get<std::string>();
    }
  }
  if (body.contains("lora_weight")) {
    if (!lora)
      bad_request(
          "field 'lora_weight' needs a trained double; train this person first or "
          "leave it out");
    request.subject.lora_weight = number_field(body, "lora_weight", 0, 2);
  }
  std::vector<Shot> shots =
      request.styles.empty() ? std::vector<Shot>{} : adapt_to_model(plan_shoot(request), model);
  // The advanced fold's settings win over the style's (and the tiny model's small sizes).
  const std::optional<std::filesystem::path> fast = fast_adapter_of(body, model);
  for (Shot& shot : shots) {
    // The advanced fold's settings win over the fast speed's too.
    json recipe =
        apply_shoot_settings(fast ? fast_recipe(shot.recipe, *fast) : shot.recipe, settings);
    if (id_photo) recipe["id_photo"] = *id_photo;  // made into the document's photo and judged
    shot = shot_from_recipe(recipe);
  }
  apply_identity_source(*subject, model, lora.has_value(), shots);
  add_template_shots(call, body, *subject, request, model, shots);  // the template's own settings
  const store::Shoot shoot = create_shoot_with_jobs(
      call, *subject, shots, string_field(body, "idempotency_key", false, 100), model.path);
  send_json(call.response, 202, shoot_json(shoot));
}

void ApiServer::State::list_shoots(Call& call) {
  std::string subject_id;
  if (call.request.has_param("subject_id")) {
    subject_id = call.request.get_param_value("subject_id");
    if (!is_record_id(subject_id) || !repository->get_subject(call.account_id(), subject_id))
      not_found("subject");
  }
  // New versions of one portrait (upscaled, face fixed, repainted) say so; their recipe is in
  // their job.
  std::map<std::string, json> made_from;
  for (const store::Job& job : jobs->list(call.account_id(), std::nullopt, 10'000)) {
    if (job.kind != "shoot") continue;
    const json payload = parse_stored_json(job.payload_json);
    if (!payload.is_object()) continue;
    json origin = made_from_of(payload.value("recipe", json()));
    if (!origin.is_null()) made_from[payload.value("shoot_id", "")] = std::move(origin);
  }
  json list = json::array();
  for (const store::Shoot& shoot : repository->list_shoots(call.account_id(), subject_id)) {
    json view = shoot_json(shoot);
    if (made_from.contains(shoot.id)) view["made_from"] = made_from[shoot.id];
    list.push_back(std::move(view));
  }
  send_json(call.response, 200, {{"shoots", list}});
}

void ApiServer::State::get_shoot(Call& call) {
  const auto shoot = repository->get_shoot(call.account_id(), call.id(1, "shoot"));
  if (!shoot) not_found("shoot");
  json answer = shoot_json(*shoot);
  answer["images_done"] = repository->list_images(call.account_id(), shoot->id).size();
  // The shoot's jobs, for a progress bar: how many are in each state, and overall progress.
  json states = {{"queued", 0}, {"running", 0}, {"succeeded", 0}, {"dead", 0}, {"cancelled", 0}};
  double progress = 0;
  int64_t count = 0;
  for (const store::Job& job : jobs->list(call.account_id(), std::nullopt, 10'000)) {
    const json payload = parse_stored_json(job.payload_json);
    if (job.kind != "shoot" || !payload.is_object() || payload.value("shoot_id", "") != shoot->id)
      continue;
    if (json origin = made_from_of(payload.value("recipe", json())); !origin.is_null())
      answer["made_from"] = std::move(origin);
    states[store::job_status_name(job.status)] =
        states[store::job_status_name(job.status)].get<int64_t>() + 1;
    progress += job.status == store::JobStatus::kSucceeded ? 1.0 : job.progress;
    ++count;
  }
  answer["jobs"] = states;
  if (count > 0 && states["queued"] == 0 && states["running"] == 0 &&
      answer["images_done"].get<int64_t>() < shoot->image_count)
    answer["status"] = "incomplete";  // some jobs died or were cancelled
  answer["progress"] = count > 0 ? progress / static_cast<double>(count) : 0.0;
  send_json(call.response, 200, answer);
}

void ApiServer::State::cancel_shoot(Call& call) {
  const auto shoot = repository->get_shoot(call.account_id(), call.id(1, "shoot"));
  if (!shoot) not_found("shoot");
  int64_t cancelled = 0;
  for (const store::Job& job : jobs->list(call.account_id(), std::nullopt, 10'000)) {
    if (job.kind != "shoot" || job_finished(job) ||
        parse_stored_json(job.payload_json).value("shoot_id", "") != shoot->id)
      continue;
    if (jobs->cancel(call.account_id(), job.id)) ++cancelled;
  }
  send_json(call.response, 200, {{"shoot_id", shoot->id}, {"cancelled_jobs", cancelled}});
}

void ApiServer::State::delete_shoot(Call& call) {
  const store::Deletion deletion = repository->delete_shoot(call.account_id(), call.id(1, "shoot"));
  if (!deletion.found) not_found("shoot");
  remove_blobs(deletion);
  send_json(call.response, 200, {{"deleted", true}});
}

void ApiServer::State::shoot_images(Call& call) {
  const auto shoot = repository->get_shoot(call.account_id(), call.id(1, "shoot"));
  if (!shoot) not_found("shoot");
  json list = json::array();
  for (const store::Image& image : repository->list_images(call.account_id(), shoot->id))
    list.push_back(image_json(image));
  send_json(call.response, 200, {{"images", list}});
}

void ApiServer::State::shoot_zip(Call& call) {
  const auto shoot = repository->get_shoot(call.account_id(), call.id(1, "shoot"));
  if (!shoot) not_found("shoot");
  const std::vector<store::Image> images = repository->list_images(call.account_id(), shoot->id);
  if (images.empty())
    throw HttpError(409, "not_ready",
                    "this shoot has no images yet; download it once some are done");
  // Best first, named for people: "<subject>-<style>-<rank>.png", and recipes.json (every
  // image's file, rank, likeness and recipe) so the zip alone says how each was made.
  const auto subject = repository->get_subject(call.account_id(), shoot->subject_id);
  const std::string subject_name = subject ? subject->name : "portrait";
  json recipes = json::array();
  struct Entry {
    std::string name;
    std::string sha256;
    int64_t created_at = 0;
  };
  auto entries = std::make_shared<std::vector<Entry>>();
  const size_t digits = std::max<size_t>(2, std::to_string(images.size()).size());
  uint64_t name_bytes = 0;
  uint64_t data_bytes = 0;  // on disk, so never less than the PNGs themselves
  for (size_t i = 0; i < images.size(); ++i) {
    const json recipe = parse_stored_json(images[i].recipe_json);
    const json style = recipe.is_object() ? recipe.value("style", json()) : json();
    Entry entry{portrait_file_name(subject_name, style.is_string() ? style.get<std::string>() : "",
                                   i + 1, digits),
                images[i].blob_sha256, images[i].created_at};
    json described = {{"file", entry.name}, {"rank", i + 1}, {"image_id", images[i].id}};
    described.update(image_likeness_json(images[i]));
    described["recipe"] = recipe;
    recipes.push_back(std::move(described));
    name_bytes += entry.name.size();
    data_bytes += blobs->size_on_disk(entry.sha256);
    entries->push_back(std::move(entry));
  }
  auto recipes_text = std::make_shared<std::string>(recipes.dump(2) + "\n");
  const int64_t shot_at = shoot->created_at;
  name_bytes += std::string_view("recipes.json").size();
  data_bytes += recipes_text->size();
  // The answer streams, so whatever would not fit must be refused before it starts.
  if (entries->size() + 1 > kMaxZipFiles ||
      stored_zip_size(entries->size() + 1, name_bytes, data_bytes) > kMaxZipBytes)
    throw HttpError(413, "too_large",
                    "the shoot's " + std::to_string(entries->size()) +
                        " images come to more than a zip file can hold (4 GiB, 65534 files); "
                        "download them one by one (GET /api/images/{image_id}/png)");
  call.response.set_header("Content-Disposition",
                           attachment_header(file_name_part(subject_name) + "-shoot-" +
                                             shoot->id.substr(0, 8) + ".zip"));
  call.response.set_header("X-Content-Type-Options", "nosniff");
  call.response.set_chunked_content_provider(
      "application/zip", [this, entries, recipes_text, shot_at](size_t, httplib::DataSink& sink) {
        try {
          ZipWriter zip(
              [&sink](std::string_view bytes) { return sink.write(bytes.data(), bytes.size()); });
          for (const Entry& entry : *entries) {
            std::string png;
            try {
              png = blobs->get(entry.sha256);
            } catch (const Error& error) {
              if (error.code() != ErrorCode::kNotFound) throw;
              continue;  // the image was deleted while the zip was being sent
            }
            if (stopping || !zip.add(entry.name, png, entry.created_at)) return false;
          }
          if (stopping || !zip.add("recipes.json", *recipes_text, shot_at) || !zip.finish())
            return false;
          sink.done();
          return true;
        } catch (const std::exception& error) {
          log_error(std::string("zip download stopped: ") + error.what());
          return false;  // the client sees a cut-off download, never a zip with a bad file
        }
      });
}

}  // namespace doppel::server

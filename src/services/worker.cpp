#include "doppel/services/worker.hpp"

#include <unistd.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <sstream>

#include "doppel/checkpoint/stable_diffusion.hpp"
#include "doppel/checkpoint/tiny_model.hpp"
#include "doppel/core/atomic_file.hpp"
#include "doppel/core/caching_cpu_allocator.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/log.hpp"
#include "doppel/core/paths.hpp"
#include "doppel/core/stage_timer.hpp"
#include "doppel/diffusion/generation_session.hpp"
#include "doppel/face/face_aligner.hpp"
#include "doppel/face/face_analyzer.hpp"
#include "doppel/face/face_finder.hpp"
#include "doppel/face/face_fusion.hpp"
#include "doppel/face/face_pose_map.hpp"
#include "doppel/face/subject_profile.hpp"
#include "doppel/queue/job_queue.hpp"
#include "doppel/services/generation_job.hpp"
#include "doppel/services/id_photo_job.hpp"
#include "doppel/services/job_payloads.hpp"
#include "doppel/services/shot_identity.hpp"
#include "doppel/services/style_samples_job.hpp"
#include "doppel/services/subject_photos.hpp"
#include "doppel/services/template_picture_job.hpp"
#include "doppel/services/template_shot_job.hpp"
#include "doppel/services/training_sample_recorder.hpp"
#include "doppel/store/blob_store.hpp"
#include "doppel/store/database.hpp"
#include "doppel/store/repository.hpp"
#include "doppel/studio/portrait_ranking.hpp"
#include "doppel/studio/portrait_template.hpp"
#include "doppel/studio/shoot_plan.hpp"
#include "doppel/train/lora_trainer.hpp"

namespace doppel::services {
namespace {

using nlohmann::json;

std::string default_worker_id() {
  static std::atomic<int> next{0};
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  return std::string(host) + ":" + std::to_string(getpid()) + ":" + std::to_string(next++);
}

// Renews the lease while a job runs, and tells the job when it was lost or cancelled.
class LeaseKeeper {
 public:
  LeaseKeeper(queue::JobQueue& jobs, std::string job_id, std::string token, int64_t lease_ms)
      : jobs_(jobs), job_id_(std::move(job_id)), token_(std::move(token)), lease_ms_(lease_ms) {
    thread_ = std::thread([this] { loop(); });
  }
  ~LeaseKeeper() {
    {
      std::lock_guard lock(mutex_);
      finished_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  bool held() const { return state_ == queue::LeaseState::kHeld; }
  // True once after the owner asked to skip the item being made (A1111's skip).
  bool take_skip() { return skip_.exchange(false); }
  // Progress for the API; false asks the running work to stop (lease lost or cancelled).
  // Throttled to a few writes a second unless `force`d (stage changes).
  bool report(double fraction, const std::string& message, bool force = false) {
    const auto now = std::chrono::steady_clock::now();
    if (force || now - last_report_ >= std::chrono::milliseconds(250)) {
      last_report_ = now;
      try {
        record(jobs_.progress(job_id_, token_, fraction, message));
      } catch (const Error& error) {
        log_warning("job " + job_id_ + ": progress not recorded: " + error.what());
      }
    }
    return held();
  }

 private:
  void loop() {
    std::unique_lock lock(mutex_);
    while (!finished_) {
      wake_.wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(lease_ms_ / 3, 50)));
      if (finished_) break;
      try {
        record(jobs_.heartbeat(job_id_, token_, lease_ms_));
      } catch (const Error& error) {
        log_warning("job " + job_id_ + ": heartbeat failed: " + error.what());
      }
    }
  }

  void record(queue::LeaseState state) {
    if (state == queue::LeaseState::kSkipCurrent) {
      skip_ = true;
      state = queue::LeaseState::kHeld;
    }
    state_ = state;
  }

  queue::JobQueue& jobs_;
  std::string job_id_;
  std::string token_;
  int64_t lease_ms_;
  std::atomic<queue::LeaseState> state_{queue::LeaseState::kHeld};
  std::atomic<bool> skip_{false};
  std::chrono::steady_clock::time_point last_report_{};
  std::mutex mutex_;
  std::condition_variable wake_;
  bool finished_ = false;
  std::thread thread_;
};

// A failure that retrying cannot fix (bad payload, deleted records, unusable files).
bool permanent(ErrorCode code) {
  return code == ErrorCode::kInvalidArgument || code == ErrorCode::kInvalidFile ||
         code == ErrorCode::kNotFound || code == ErrorCode::kUnsupported;
}

}  // namespace

struct Worker::State {
  WorkerOptions options;
  std::shared_ptr<store::Database> database;
  std::unique_ptr<store::Repository> repository;
  std::unique_ptr<queue::JobQueue> jobs;
  std::unique_ptr<store::BlobStore> blobs;

  // Made on first use. It keeps the model of the last job loaded for the next one; a job that
  // names another model replaces it.
  std::unique_ptr<GenerationSession> session;
  std::optional<ClipTokenizer> tokenizer;  // for training
  std::unique_ptr<FaceAnalyzer> analyzer;
  bool analyzer_tried = false;
  std::unique_ptr<FaceDetector> id_photo_detector;  // ID photos' landmarks (loaded on first use)

  // "" is the tiny built-in model; any other path was checked when it was registered.
  static ModelRef model_ref(const std::string& path) {
    return path.empty() ? ModelRef::built_in_tiny() : ModelRef::file(path);
  }
  static StableDiffusionCheckpoint load_model(const std::string& path) {
    if (path.empty()) return make_tiny_stable_diffusion();
    ModelLoadOptions load;
    load.path = path;
    return load_stable_diffusion(load);
  }
  // The model a job names; jobs queued before the models registry run on the default one.
  std::string model_path_of(const json& payload) {
    if (auto path = payload_model_path(payload)) return *path;
    return repository->default_model().path;
  }
  const ClipTokenizer& clip_tokenizer() {
    if (!tokenizer) tokenizer = ClipTokenizer::load_default();
    return *tokenizer;
  }
  GenerationSession& session_for(const std::string& model_path,
                                 const std::optional<std::filesystem::path>& vae = std::nullopt) {
    if (!session) {
      SessionOptions settings;
      settings.model = model_ref(model_path);
      settings.hash_cache = options.data_dir / "file_hashes.json";
      settings.vae = vae;
      settings.preprocessors["face_pose"] = face_pose_preprocessor();
      settings.face_finder = make_face_finder();  // the face-detail pass ("fix the face")
      settings.face_fuser = make_face_fuser();    // a style's face fusion
      settings.face_crop = largest_face_crop();   // IP-Adapter face variants read the face
      // The studio computes in the same dtype as `doppel generate` (bf16 where native).
      session = std::make_unique<GenerationSession>(std::move(settings));
    } else {
      session->select_model(model_ref(model_path), vae);
    }
    return *session;
  }
  FaceAnalyzer* face_analyzer() {
    if (!analyzer_tried && options.face_analysis) {
      analyzer_tried = true;
      try {
        analyzer = std::make_unique<FaceAnalyzer>(FaceAnalyzerOptions{});
      } catch (const Error& error) {
        log_warning(std::string("images will not be scored for likeness: ") + error.what());
      }
    }
    return analyzer.get();
  }
  FaceDetector& id_photo_faces() {
    if (!id_photo_detector)
      id_photo_detector = std::make_unique<FaceDetector>(default_landmark_model_path());
    return *id_photo_detector;
  }

  json run_train(const store::Job& job, LeaseKeeper& lease);
  std::optional<double> validation_likeness(const store::Subject& subject,
                                            const TrainPayload& payload,
                                            const std::string& model_path, const std::string& lora,
                                            LeaseKeeper& lease);
  json run_shoot(const store::Job& job, LeaseKeeper& lease);
  void run_job(const store::Job& job);
  // For a train job that ended without a LoRA: "failed" or "cancelled".
  void set_lora_version_status(const store::Job& job, store::LoraStatus status);
  std::filesystem::path unpack_lora(const std::string& sha256);
  std::filesystem::path unpack_named_lora(const std::string& sha256, const std::string& name);
  // A template shot: the subject (their LoRA or IP-Adapter, their photo for a template's fusion)
  // painted into the template's faces; `loras` and `ip_adapters` are the shoot's subject's.
  GeneratedImage render_template(const std::string& account_id, const std::string& subject_id,
                                 const TemplateShot& shot, const TemplatePicture& picture,
                                 std::vector<LoraSelection> loras,
                                 std::vector<ImagePromptSelection> ip_adapters,
                                 GenerationSession& generator, const ProgressCallback& progress);
  std::unique_ptr<FaceDetector> template_detector;  // made on first template shot
};

GeneratedImage Worker::State::render_template(
    const std::string& account_id, const std::string& subject_id, const TemplateShot& shot,
    const TemplatePicture& picture, std::vector<LoraSelection> loras,
    std::vector<ImagePromptSelection> ip_adapters, GenerationSession& generator,
    const ProgressCallback& progress) {
  if (!template_detector)
    template_detector = std::make_unique<FaceDetector>(default_landmark_model_path());
  // The people painted in, left to right: the shoot's subject, or the template's own list (a
  // couple), each with their LoRA (named after them) or, for an instant person, their photo
  // through the IP-Adapter, and, for `fusion`, their photo.
  std::vector<std::string> people;
  std::vector<std::vector<LoraSelection>> people_loras;
  std::vector<std::vector<ImagePromptSelection>> people_adapters;
  if (shot.subjects.empty()) {
    people.push_back(subject_id);
    people_loras.push_back(std::move(loras));
    people_adapters.push_back(std::move(ip_adapters));
  }
  for (const TemplateShotSubject& each : shot.subjects) {
    const auto person = repository->get_subject(account_id, each.subject_id);
    if (!person)
      throw Error(ErrorCode::kNotFound, "a person of this template portrait was deleted");
    people.push_back(each.subject_id);
    std::vector<LoraSelection> own;
    if (each.subject.lora)
      own.push_back({unpack_named_lora(each.subject.lora_sha256, subject_lora_name(person->name)),
                     each.subject.lora_weight});
    people_loras.push_back(std::move(own));
    std::vector<ImagePromptSelection> adapter;
    if (each.ip_adapter_scale)
      if (auto selection =
              subject_ip_adapter({*repository, *blobs, default_models_dir()}, account_id,
                                 each.subject_id, *each.ip_adapter_scale, each.ip_adapter_photo,
                                 generator.model_info().family, each.subject.lora.has_value()))
        adapter.push_back(std::move(*selection));
    people_adapters.push_back(std::move(adapter));
  }
  std::vector<std::optional<FusionIdentity>> fusion(people.size());
  if (shot.settings.fusion) {
    for (size_t k = 0; k < people.size(); ++k) {
      // Best-ranked first (services/subject_photos): fusion takes the first with a face.
      const auto person = repository->get_subject(account_id, people[k]);
      std::vector<Image> photos;
      for (const store::Photo& photo :
           rank_accepted_photos(repository->list_photos(account_id, people[k]),
                                person ? subject_profile_json(*person, *blobs) : nlohmann::json()))
        if (photo.crop_blob) photos.push_back(decode_image(blobs->get(*photo.crop_blob)));
      fusion[k] = fusion_identity(photos, *template_detector);
      if (!fusion[k])
        throw Error(ErrorCode::kInvalidArgument,
                    "template '" + shot.settings.id +
                        "' fuses the person's photo into the face, but they have no accepted "
                        "photo with a face; add one");
    }
  }
  return render_template_shot(generator, *template_detector, shot, picture,
                              template_shot_subjects(shot, people_loras, fusion, people_adapters),
                              progress);
}

std::filesystem::path Worker::State::unpack_lora(const std::string& sha256) {
  const std::filesystem::path path = lora_cache_path(options.data_dir, sha256);
  if (std::filesystem::exists(path)) return path;
  std::filesystem::create_directories(path.parent_path());
  write_file_atomically(path, blobs->get(sha256));
  return path;
}

// The same file under the person's name (a hard link where the file system allows), so the
// metadata reads <lora:alice:0.8> as A1111 would write it for alice.safetensors.
std::filesystem::path Worker::State::unpack_named_lora(const std::string& sha256,
                                                       const std::string& name) {
  const std::filesystem::path path = named_lora_cache_path(options.data_dir, sha256, name);
  if (std::filesystem::exists(path)) return path;
  const std::filesystem::path unpacked = unpack_lora(sha256);
  std::filesystem::create_directories(path.parent_path());
  std::error_code linked;
  std::filesystem::create_hard_link(unpacked, path, linked);
  if (linked && !std::filesystem::exists(path)) write_file_atomically(path, read_file(unpacked));
  return path;
}

// A small validation shoot with the new LoRA, scored against the subject's face profile: the
// median likeness tells the studio how well this version captured the person.
std::optional<double> Worker::State::validation_likeness(const store::Subject& subject,
                                                         const TrainPayload& payload,
                                                         const std::string& model_path,
                                                         const std::string& lora,
                                                         LeaseKeeper& lease) {
  FaceAnalyzer* analyzer = face_analyzer();
  if (!analyzer || !subject.face_profile_blob) return std::nullopt;
  const SubjectProfile profile =
      SubjectProfile::from_json(json::parse(blobs->get(*subject.face_profile_blob)));
  GenerationSession& generator = session_for(model_path);
  SessionRequest validation;
  validation.loras.push_back({unpack_lora(lora), 1.0});
  GenerationRequest& request = validation.generation;
  request.prompt = training_portrait_prompt(payload.trigger_word, payload.class_word);
  request.negative_prompt = "blurry, deformed, several people";
  request.width = request.height = payload.resolution;
  const bool tiny = model_path.empty();
  request.steps = tiny ? 8 : 20;
  request.seed = static_cast<uint64_t>(payload.seed);
  request.batch_count = tiny ? 2 : 4;
  lease.report(0.97, "validating the likeness", true);
  std::vector<PortraitScore> scores;
  for (const GeneratedImage& image : generator.generate(validation, [&](const ProgressEvent&) {
         return lease.report(0.97, "validating the likeness");
       })) {
    scores.push_back(score_portrait(*analyzer, profile, image.image));
  }
  return summarize_likeness(scores).median_likeness;
}

json Worker::State::run_train(const store::Job& job, LeaseKeeper& lease) {
  const TrainPayload payload = train_payload_from_json(json::parse(job.payload_json));
  const std::string model_path = payload.model_path.value_or(repository->default_model().path);
  auto version = repository->get_lora_version(job.account_id, payload.lora_version_id);
  if (!version) throw Error(ErrorCode::kNotFound, "the LoRA version was deleted");
  version->status = store::LoraStatus::kTraining;
  repository->update_lora_version(job.account_id, *version);

  std::vector<TrainingExample> examples;
  const std::string caption = default_caption(payload.trigger_word, payload.class_word);
  for (const store::Photo& photo : repository->list_photos(job.account_id, version->subject_id)) {
    if (photo.verdict != store::PhotoVerdict::kAccepted || !photo.crop_blob) continue;
    examples.push_back({photo.id, decode_image(blobs->get(*photo.crop_blob)), caption});
  }
  if (examples.empty())
    throw Error(ErrorCode::kInvalidArgument, "the subject has no accepted photos to train on");

  LoraTrainingOptions training;
  training.steps = payload.steps;
  training.network.rank = payload.rank;
  training.network.alpha = static_cast<double>(payload.rank);
  training.resolution = static_cast<int>(payload.resolution);
  training.seed = static_cast<uint64_t>(payload.seed);
  training.checkpoint_every = std::max<int64_t>(payload.steps / 10, 10);
  training.trigger = payload.trigger_word;
  training.class_word = payload.class_word;
  training.model_name = model_display_name(model_path);
  // Sample images, stored as they are made: the training card shows them while the run goes on.
  record_training_samples(training, payload, model_path.empty(), *database, *blobs, job.account_id,
                          version->id);
  // Resumable: a worker that takes over a killed run continues from its last checkpoint.
  const std::filesystem::path work = options.data_dir / "work";
  std::filesystem::create_directories(work);
  const std::filesystem::path output = work / ("lora-" + version->id + ".safetensors");
  const bool resume = std::filesystem::exists(training_state_path(output));

  LoraTrainer trainer(load_model(model_path), clip_tokenizer(), std::move(examples), training);
  const double total_steps = static_cast<double>(payload.steps);
  trainer.train(output, resume, [&](const ProgressEvent& event) {
    const double fraction = event.stage == "training" && event.total > 0
                                ? 0.05 + 0.95 * static_cast<double>(event.step) / total_steps
                                : 0.0;
    std::string message =
        event.stage + " " + std::to_string(event.step) + "/" + std::to_string(event.total);
    if (event.eta_seconds >= 0)
      message += ", about " + std::to_string(static_cast<int64_t>(event.eta_seconds)) + " s left";
    return lease.report(std::min(fraction, 0.99), message);
  });

  const std::string bytes = read_file(output);
  if (bytes.empty()) throw Error(ErrorCode::kIo, "training wrote no LoRA file");
  const std::string sha = blobs->put(bytes);
  version->blob_sha256 = sha;
  version->status = store::LoraStatus::kReady;
  if (auto subject = repository->get_subject(job.account_id, version->subject_id))
    version->validation_likeness = validation_likeness(*subject, payload, model_path, sha, lease);
  if (!repository->update_lora_version(job.account_id, *version))
    throw Error(ErrorCode::kNotFound, "the LoRA version was deleted during training");
  if (auto subject = repository->get_subject(job.account_id, version->subject_id)) {
    subject->status = store::SubjectStatus::kTrained;
    // An instant person who was trained is shot with their double from now on.
    subject->identity_source = store::kIdentityTrained;
    repository->update_subject(job.account_id, *subject);
  }
  std::error_code ignored;
  std::filesystem::remove(output, ignored);
  std::filesystem::remove(training_state_path(output), ignored);
  return {{"lora_version_id", version->id}, {"sha256", sha}};
}

json Worker::State::run_shoot(const store::Job& job, LeaseKeeper& lease) {
  // Where the portrait's time went, in the job's result (`seconds`): loading the model,
  // preparing (template picture, LoRA files, identity), prompt (LoRA merging and text
  // encoding), the generation's own stages (sampling, decoding), scoring and storing.
  StageTimer timer("loading");
  const ProgressCallback boundary = timer.wrap({});
  const auto enter_stage = [&boundary](const char* stage) {
    ProgressEvent event;
    event.stage = stage;
    boundary(event);
  };
  const json payload = json::parse(job.payload_json);
  const std::string shoot_id = payload.at("shoot_id").get<std::string>();
  // An ID-photo shot repeated from a stored one asks again; the outcome is made anew.
  json recipe = id_photo_request_of_recipe(payload.at("recipe"));
  auto shoot = repository->get_shoot(job.account_id, shoot_id);
  if (!shoot) throw Error(ErrorCode::kNotFound, "the shoot was deleted");
  // The photos its IP-Adapters read are named in the stored recipe: "again" reads the same ones.
  pin_identity_photos({*repository, *blobs, default_models_dir()}, job.account_id,
                      shoot->subject_id, recipe);

  // A template shot paints the subject into a template's picture; any other draws a new one.
  std::optional<TemplateShot> template_shot;
  if (is_template_recipe(recipe)) template_shot = template_shot_from_recipe(recipe);
  const Shot shot = template_shot ? template_shot->shot : shot_from_recipe(recipe);
  GenerationSession& generator = session_for(model_path_of(payload), shot.vae);
  // The recipe keeps the name the model was registered under; the hash is of what was loaded.
  if (recipe["model"].is_object()) recipe["model"]["hash"] = generator.model_info().hash;
  enter_stage("preparing");
  std::optional<TemplatePicture> template_picture;
  if (template_shot) {
    lease.report(0.02, "preparing the template", true);
    template_picture = template_shot_picture(
        *template_shot,
        {blobs.get(), payload.value("templates_dir", default_templates_dir().string()),
         options.data_dir / "templates"},
        generator);
    // A drawn picture's digest is known once drawn: the stored recipe names it.
    recipe["template"]["sha256"] = template_picture->sha256;
    template_shot->picture_sha256 = template_picture->sha256;
  }
  // Exactly once: an earlier attempt that stored the image but died before completing.
  for (const store::Image& image : repository->list_images(job.account_id, shoot_id)) {
    if (id_photo_request_of_recipe(json::parse(image.recipe_json, nullptr, false)) == recipe)
      return {{"image_id", image.id}, {"shoot_id", shoot_id}};
  }
  // Subject LoRAs are unpacked from the blob store by digest (never a client path), and named
  // after the person in the metadata (<lora:alice:0.8>).
  auto subject = repository->get_subject(job.account_id, shoot->subject_id);
  SessionRequest request;
  request.generation = shot.request;
  for (const ShotLora& lora : shot.loras)
    request.loras.push_back(
        {lora.role == "subject"
             ? unpack_named_lora(lora.sha256, subject_lora_name(subject ? subject->name : ""))
             : lora.path,
         lora.weight});
  request.face_detail = shot.face_detail;  // "fix the face"
  // The style's identity settings and an instant person's IP-Adapter (services/shot_identity).
  add_shot_identity({*repository, *blobs, default_models_dir()}, job.account_id, shoot->subject_id,
                    shot, generator.model_info().family,
                    !shot.loras.empty() && shot.loras.front().role == "subject", request);
  if (shot.init_image_sha256) {
    // Painted over a stored portrait ("inpaint a brushed area").
    if (!blobs->exists(*shot.init_image_sha256))
      throw Error(ErrorCode::kNotFound, "the portrait this one paints over was deleted");
    request.generation.init_image = decode_image(blobs->get(*shot.init_image_sha256));
  }
  for (const ShotControl& control : shot.controls)
    request.controls.push_back({control.model, read_image(control.image), control.preprocessor,
                                control.weight, control.start, control.end});
  const ProgressCallback report = timer.wrap([&](const ProgressEvent& event) {
    const double fraction =
        event.total > 0 ? static_cast<double>(event.step) / static_cast<double>(event.total) : 0.0;
    return lease.report(
        std::min(0.9 * fraction, 0.9),
        event.stage + " " + std::to_string(event.step) + "/" + std::to_string(event.total));
  });
  enter_stage("prompt");
  std::vector<GeneratedImage> images;
  if (template_shot)
    images.push_back(render_template(job.account_id, shoot->subject_id, *template_shot,
                                     *template_picture, request.loras, request.ip_adapters,
                                     generator, report));
  else
    images = generator.generate(request, report);
  if (images.empty()) throw Error(ErrorCode::kInternal, "the pipeline returned no image");
  const GeneratedImage& generated = images.front();

  enter_stage("scoring");
  store::Image record;
  record.shoot_id = shoot_id;
  record.recipe_json = recipe.dump();
  json score_json = nullptr;
  if (FaceAnalyzer* analyzer = face_analyzer(); analyzer && subject && subject->face_profile_blob) {
    const SubjectProfile profile =
        SubjectProfile::from_json(json::parse(blobs->get(*subject->face_profile_blob)));
    const PortraitScore score = score_portrait(*analyzer, profile, generated.image);
    record.likeness = score.likeness;
    if (score.has_face) record.quality = score.quality;
    score_json = portrait_score_to_json(score);
  }
  if (!lease.report(0.95, "saving", true))
    throw Error(ErrorCode::kCancelled, "the job was cancelled or taken over");
  enter_stage("storing");
  std::string png = encode_generated_png(generated);
  if (recipe.contains("id_photo")) {
    // An ID-photo shoot: the portrait made into the document's photo and judged (the
    // recipe keeps the verdict; the generation's parameters stay in the PNG).
    lease.report(0.92, "making the ID photo", true);
    enter_stage("id_photo");
    const json& asked = recipe["id_photo"];
    IdPhotoOutcome outcome = make_id_photo_outcome(
        id_photo_faces(), generated.image, png, asked.value("spec", ""),
        asked.value("background", ""), {{"parameters", generated.parameters.to_text()}});
    recipe["id_photo"] = outcome.record;
    record.recipe_json = recipe.dump();
    png = std::move(outcome.png);
    enter_stage("storing");
  }
  record.blob_sha256 = blobs->put(png);
  record = repository->add_image(job.account_id, record);

  const auto done = repository->list_images(job.account_id, shoot_id).size();
  repository->update_shoot_status(job.account_id, shoot_id,
                                  static_cast<int64_t>(done) >= shoot->image_count
                                      ? store::ShootStatus::kDone
                                      : store::ShootStatus::kRunning);
  timer.stop();
  json seconds = json::object();
  for (const auto& [stage, spent] : timer.seconds()) seconds[stage] = spent;
  return {
      {"image_id", record.id}, {"shoot_id", shoot_id}, {"score", score_json}, {"seconds", seconds}};
}

void Worker::State::set_lora_version_status(const store::Job& job, store::LoraStatus status) {
  const auto payload = json::parse(job.payload_json, nullptr, false);
  if (!payload.is_object() || !payload.value("lora_version_id", json()).is_string()) return;
  auto version =
      repository->get_lora_version(job.account_id, payload["lora_version_id"].get<std::string>());
  if (!version || version->blob_sha256) return;
  version->status = status;
  repository->update_lora_version(job.account_id, *version);
}

void Worker::State::run_job(const store::Job& job) {
  LeaseKeeper lease(*jobs, job.id, *job.lease_token, options.lease_ms);
  try {
    json result;
    if (job.kind == "train") {
      result = run_train(job, lease);
    } else if (job.kind == "shoot") {
      result = run_shoot(job, lease);
    } else if (job.kind == kStyleSamplesJobKind) {
      const auto payload = style_samples_payload_from_json(json::parse(job.payload_json));
      const Shot first = shot_from_recipe(payload.recipes.front());
      result = run_style_samples_job(payload, session_for(payload.model_path, first.vae), *database,
                                     *blobs,
                                     [&](double fraction, const std::string& message, bool force) {
                                       return lease.report(fraction, message, force);
                                     });
    } else if (job.kind == kTemplatePictureJobKind) {
      const auto payload = template_picture_payload_from_json(json::parse(job.payload_json));
      result =
          run_template_picture_job(payload, session_for(payload.model_path), *database, *blobs,
                                   options.data_dir / "templates",
                                   [&](double fraction, const std::string& message, bool force) {
                                     return lease.report(fraction, message, force);
                                   });
    } else if (job.kind == kIdPhotoJobKind) {
      result = run_id_photo_job(
          job.account_id, id_photo_payload_from_json(json::parse(job.payload_json)), *repository,
          *blobs, id_photo_faces(), [&](double fraction, const std::string& message, bool force) {
            return lease.report(fraction, message, force);
          });
    } else if (job.kind == kGenerateJobKind) {
      // The compatible APIs' requests: pictures in and out through the transient store.
      const GeneratePayload payload = generate_payload_from_json(json::parse(job.payload_json));
      store::BlobStore transient = open_transient_blob_store(options.data_dir, options.key_file);
      GenerationSession& generator =
          session_for(payload.model_path,
                      payload.vae_path ? std::optional<std::filesystem::path>(*payload.vae_path)
                                       : std::nullopt);
      result = run_generate_job(
          payload, generator, transient,
          [&](double fraction, const std::string& message, bool force) {
            return lease.report(fraction, message, force);
          },
          [&] { return lease.take_skip(); });
    } else {
      throw Error(ErrorCode::kUnsupported, "unknown job kind '" + job.kind + "'");
    }
    jobs->complete(job.id, *job.lease_token, result.dump());
    log_info("job " + job.id + " (" + job.kind + ") done");
  } catch (const Error& error) {
    if (error.code() == ErrorCode::kCancelled) {
      log_info("job " + job.id + " stopped: cancelled, or its lease passed to another worker");
      const auto now = jobs->get(job.account_id, job.id);
      if (job.kind == "train" && now && now->status == store::JobStatus::kCancelled)
        set_lora_version_status(job, store::LoraStatus::kCancelled);
      return;
    }
    log_warning("job " + job.id + " (" + job.kind + ") failed: " + error.what());
    try {
      const store::Job after =
          jobs->fail(job.id, *job.lease_token, error.what(), !permanent(error.code()));
      if (job.kind == "train" && after.status == store::JobStatus::kDead)
        set_lora_version_status(job, store::LoraStatus::kFailed);
    } catch (const Error& again) {
      log_warning("job " + job.id + ": failure not recorded: " + again.what());
    }
  } catch (const std::exception& error) {
    log_warning("job " + job.id + " (" + job.kind + ") failed: " + error.what());
    try {
      jobs->fail(job.id, *job.lease_token, error.what(), true);
    } catch (const Error&) {
    }
  }
}

Worker::Worker(WorkerOptions options) : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.options = std::move(options);
  if (s.options.worker_id.empty()) s.options.worker_id = default_worker_id();
  std::filesystem::create_directories(s.options.data_dir);
  s.database = store::open_database(s.options.database_url, s.options.data_dir);
  s.repository = store::make_repository(s.database);
  s.jobs = queue::make_job_queue(s.database);
  s.blobs = std::make_unique<store::BlobStore>(
      store::BlobStore::open(s.options.data_dir, s.options.key_file, true));
}

Worker::~Worker() = default;

bool Worker::run_once() {
  State& s = *state_;
  std::optional<store::Job> job =
      s.jobs->lease(s.options.worker_id, {"train", "shoot", kGenerateJobKind, kIdPhotoJobKind},
                    s.options.lease_ms);
  // The style cards' examples and the templates' pictures only when no person's work is waiting.
  if (!job)
    job = s.jobs->lease(s.options.worker_id, {kStyleSamplesJobKind, kTemplatePictureJobKind},
                        s.options.lease_ms);
  if (!job) return false;
  s.run_job(*job);
  return true;
}

void Worker::run(const std::atomic<bool>& stop) {
  bool memory_released = true;
  while (!stop) {
    bool worked = false;
    try {
      worked = run_once();
    } catch (const std::exception& error) {
      // The database went away for a moment: wait and try again rather than die.
      log_warning(std::string("worker: ") + error.what());
    }
    if (worked) memory_released = false;
    if (!worked && !memory_released) {
      // Nothing queued: hand the tensor cache back so an idle studio is small.
      release_cached_cpu_memory();
      memory_released = true;
    }
    if (!worked) {
      for (int64_t waited = 0; waited < state_->options.idle_poll_ms && !stop; waited += 50)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
}

WorkerPool::WorkerPool(const WorkerOptions& options, int count) {
  for (int i = 0; i < count; ++i) {
    auto worker = std::make_shared<Worker>(options);
    threads_.emplace_back([this, worker] { worker->run(stop_); });
  }
}

WorkerPool::~WorkerPool() {
  stop();
}

void WorkerPool::stop() {
  stop_ = true;
  for (std::thread& thread : threads_)
    if (thread.joinable()) thread.join();
  threads_.clear();
}

}  // namespace doppel::services

// A studio shoot end to end (issue #22's "a 12-portrait shoot in the studio end to end (queue,
// generation, face scoring, storage) with its total time"): the studio exactly as `doppel serve
// --workers 1` runs it, in a scratch folder, on a full-size SD 1.5 architecture with random
// weights (speed does not depend on weight values).
//  * the API server (SQLite store, blob store, queue) and one services::WorkerPool worker;
//  * the default model: the random CompVis checkpoint of face_detail_bench (--checkpoint,
//    written once, about 2.1 GB); the model folder holds a random LCM-LoRA of the downloaded
//    file's layout (lora/lcm-lora-sdv1-5.safetensors: rank 64, fp16, 278 kohya modules);
//  * an account, and a trained person: photos from ../shared/testdata/faces uploaded through
//    the API (so the face profile that scoring compares with is real) and a random LoRA of the
//    layout doppel's trainer saves, stored as a finished training stores it (no training run);
//  * ONE shoot of --portraits images of --style, POSTed to /api/shoots as the web studio does
//    (--speed fast: the LCM-LoRA, lcm, 6 steps, CFG 1), polled through the API until done.
// Every portrait job's result says where its time went (services::Worker, `seconds`); the bench
// adds the time nothing was being worked on (queue). Random weights draw no face: scoring runs
// the detector (and its 2x retry) on every image and finds none, so no embedding is computed
// there; scoring_with_face times the same scoring on a real photo at the portrait's size.
//   studio_shoot_bench [--portraits 12] [--speed fast|exact] [--steps N] [--width 512]
//                      [--height 768] [--style graduation] [--checkpoint PATH] [--keep]
#include <httplib.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <regex>
#include <sstream>
#include <thread>

#include "bench_support.hpp"
#include "doppel/core/atomic_file.hpp"
#include "doppel/core/caching_cpu_allocator.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/image.hpp"
#include "doppel/core/paths.hpp"
#include "doppel/core/runtime.hpp"
#include "doppel/face/face_analyzer.hpp"
#include "doppel/face/subject_profile.hpp"
#include "doppel/server/api_server.hpp"
#include "doppel/services/job_payloads.hpp"
#include "doppel/services/worker.hpp"
#include "doppel/store/blob_store.hpp"
#include "doppel/store/repository.hpp"
#include "doppel/studio/portrait_ranking.hpp"
#include "random_models.hpp"

using namespace doppel;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// One person's photos that the intake accepts (tests/server/studio_flow_test.cpp).
const std::vector<std::string> kSubjectPhotos = {
    "angelina_jolie__deepface_img1.jpg",  "angelina_jolie__deepface_img10.jpg",
    "angelina_jolie__deepface_img11.jpg", "angelina_jolie__deepface_img2.jpg",
    "angelina_jolie__deepface_img4.jpg",  "angelina_jolie__deepface_img5.jpg"};
constexpr const char* kEmail = "bench@example.com";
constexpr const char* kPassword = "correct horse battery";

fs::path shared_dir() {
  if (const char* env = std::getenv("DOPPEL_SHARED_DIR"); env && *env) return env;
  return DOPPEL_DEFAULT_SHARED_DIR;
}

void require_file(const fs::path& path, const std::string& what) {
  if (!fs::exists(path)) throw Error(ErrorCode::kNotFound, what + " is missing: " + path.string());
}

// The API as one account: JSON in and out, bearer token once signed in.
class BenchClient {
 public:
  explicit BenchClient(int port) : client_("127.0.0.1", port) { client_.set_read_timeout(600, 0); }
  void set_headers(httplib::Headers headers) { headers_ = std::move(headers); }
  json post(const std::string& path, const json& body, int expected,
            httplib::Headers* reply_headers = nullptr) {
    return check(client_.Post(path, headers_, body.dump(), "application/json"), "POST " + path,
                 expected, reply_headers);
  }
  json upload(const std::string& path, const httplib::MultipartFormDataItems& items) {
    return check(client_.Post(path, headers_, items), "POST " + path, 201, nullptr);
  }
  json get(const std::string& path) {
    return check(client_.Get(path, headers_), path, 200, nullptr);
  }

 private:
  static json check(const httplib::Result& result, const std::string& what, int expected,
                    httplib::Headers* reply_headers) {
    if (!result) throw Error(ErrorCode::kIo, what + ": no answer from the bench's server");
    if (result->status != expected)
      throw Error(ErrorCode::kInternal,
                  what + " answered " + std::to_string(result->status) + ": " + result->body);
    if (reply_headers) *reply_headers = result->headers;
    return json::parse(result->body, nullptr, false);
  }
  httplib::Client client_;
  httplib::Headers headers_;
};

// The first account through the set-up link, then an API token as scripts use.
void sign_in(BenchClient& client, const std::string& announced) {
  std::smatch match;
  if (!std::regex_search(announced, match, std::regex("token=([0-9a-f]{64})")))
    throw Error(ErrorCode::kInternal, "the server printed no set-up link: " + announced);
  httplib::Headers reply;
  const json setup = client.post(
      "/api/setup", {{"token", match[1].str()}, {"email", kEmail}, {"password", kPassword}}, 201,
      &reply);
  std::string cookie;
  for (const auto& [name, value] : reply)
    if (name == "Set-Cookie" && value.rfind("doppel_session=", 0) == 0)
      cookie = value.substr(0, value.find(';'));
  client.set_headers({{"Cookie", cookie}, {"X-CSRF-Token", setup.value("csrf_token", "")}});
  const json token = client.post("/api/tokens", {{"name", "bench"}}, 201);
  client.set_headers({{"Authorization", "Bearer " + token.value("token", "")}});
}

// The middle of `image` with the aspect of width x height, scaled to that size.
Image portrait_sized(const Image& image, int width, int height) {
  int crop_width = image.width, crop_height = image.height;
  if (static_cast<int64_t>(image.width) * height > static_cast<int64_t>(image.height) * width)
    crop_width = static_cast<int>(static_cast<int64_t>(image.height) * width / height);
  else
    crop_height = static_cast<int>(static_cast<int64_t>(image.width) * height / width);
  Image crop;
  crop.width = crop_width;
  crop.height = crop_height;
  crop.rgb.resize(static_cast<size_t>(crop_width) * crop_height * 3);
  const int left = (image.width - crop_width) / 2, top = (image.height - crop_height) / 2;
  for (int y = 0; y < crop_height; ++y)
    std::copy_n(image.rgb.begin() + ((static_cast<int64_t>(top + y) * image.width + left) * 3),
                static_cast<int64_t>(crop_width) * 3,
                crop.rgb.begin() + static_cast<int64_t>(y) * crop_width * 3);
  return resize_image(crop, width, height);
}

struct Options {
  int portraits = 12;
  std::string speed = "fast";
  int64_t steps = 0;  // 0: the speed's own (fast: 6; exact: the style's)
  int64_t width = 512;
  int64_t height = 768;
  std::string style = "graduation";
  fs::path checkpoint = fs::temp_directory_path() / "doppel-random-sd15.safetensors";
  fs::path lcm_lora = fs::temp_directory_path() / "doppel-random-lcm-lora-sdv1-5.safetensors";
  int threads = 0;
  bool keep = false;
};

// The per-portrait lines and the shoot's summary, from the jobs the API lists.
void report_shoot(const Options& options, const json& shoot, const json& jobs, const json& images,
                  double request_seconds, double total_seconds, const bench::MachinePeak& peak) {
  std::vector<json> portraits;
  for (const json& job : jobs)
    if (job["kind"] == "shoot" && job["result"].is_object() &&
        job["result"].value("shoot_id", "") == shoot["id"])
      portraits.push_back(job);
  std::sort(portraits.begin(), portraits.end(), [](const json& a, const json& b) {
    return a["finished_at"].get<int64_t>() < b["finished_at"].get<int64_t>();
  });
  std::map<std::string, double> split;
  std::vector<double> later_work;
  double work_total = 0, first_work = 0;
  int faces_found = 0;
  std::map<std::string, int> labels;
  for (size_t i = 0; i < portraits.size(); ++i) {
    const json& job = portraits[i];
    double work = 0;
    for (const auto& [stage, seconds] : job["result"]["seconds"].items()) {
      split[stage] += seconds.get<double>();
      work += seconds.get<double>();
    }
    const double in_queue =
        static_cast<double>(job["finished_at"].get<int64_t>() - job["created_at"].get<int64_t>()) /
            1000.0 -
        work;
    const json& score = job["result"]["score"];
    if (score.is_object()) {
      faces_found += score.value("faces", 0);
      ++labels[score.value("label", "")];
    }
    work_total += work;
    if (i == 0) first_work = work;
    if (i > 0) later_work.push_back(work);
    bench::print_figure({{"figure", "studio_shoot_portrait"},
                         {"portrait", i + 1},
                         {"work_seconds", work},
                         {"waited_in_queue_seconds", in_queue},
                         {"stages_seconds", job["result"]["seconds"]},
                         {"score", score}});
  }
  // The time no portrait was being worked on: the request, the worker's pick-up (it polls an
  // empty queue every 0.5 s), leases and completions between jobs, and the API poll.
  split["queue"] = std::max(0.0, total_seconds - work_total);
  std::sort(later_work.begin(), later_work.end());
  json split_json = json::object();
  for (const auto& [stage, seconds] : split)
    split_json[stage] = {{"seconds", seconds}, {"share", seconds / total_seconds}};
  // The parts: queue wait, model load, generation, face scoring, storage.
  const double generation =
      split["preparing"] + split["prompt"] + split["sampling"] + split["decoding"];
  const json parts = {{"queue_wait", split["queue"]},
                      {"model_load", split["loading"]},
                      {"generation", generation},
                      {"face_scoring", split["scoring"]},
                      {"storage", split["storing"]}};
  const json first_image = images.empty() ? json::object() : images[0]["recipe"];
  json lora_roles = json::array();
  for (const json& lora : first_image.value("loras", json::array()))
    lora_roles.push_back(lora.value("role", ""));
  const int made = static_cast<int>(portraits.size());
  bench::print_figure(
      {{"figure", "studio_shoot"},
       {"model", "sd15 random weights (bf16 CompVis file)"},
       {"portraits", options.portraits},
       {"made", made},
       {"stored_images", images.size()},
       {"style", options.style},
       {"speed", options.speed},
       {"sampler", first_image.value("sampler", "")},
       {"steps", first_image.value("steps", 0)},
       {"cfg", first_image.value("guidance", 0.0)},
       {"loras", lora_roles},
       {"width", first_image.value("width", 0)},
       {"height", first_image.value("height", 0)},
       {"threads", at::get_num_threads()},
       {"bf16_peak_gflops", peak.bf16_gflops},
       {"fp32_peak_gflops", peak.fp32_gflops},
       {"request_seconds", request_seconds},
       {"total_seconds", total_seconds},
       {"per_portrait_seconds", made > 0 ? total_seconds / made : 0.0},
       {"first_portrait_work_seconds", first_work},
       {"later_portrait_median_work_seconds",
        later_work.empty() ? 0.0 : later_work[later_work.size() / 2]},
       {"parts_seconds", parts},
       {"split", split_json},
       {"scoring", {{"images_scored", made}, {"faces_found", faces_found}, {"labels", labels}}},
       {"peak_rss_mib", bench::peak_rss_mib()},
       {"note",
        "random weights draw no face: scoring ran the face detector (with its 2x retry) on every "
        "image; embedding and likeness run only on a found face (see scoring_with_face)"}});
}

// What scoring costs on a portrait that has a face: the subject's own photo at the size.
void report_scoring_with_face(const Options& options, const fs::path& photo,
                              const SubjectProfile& profile) {
  FaceAnalyzer analyzer{FaceAnalyzerOptions{}};
  const Image image = portrait_sized(read_image(photo), static_cast<int>(options.width),
                                     static_cast<int>(options.height));
  PortraitScore score;
  const double seconds =
      bench::median_seconds(3, [&] { score = score_portrait(analyzer, profile, image); });
  bench::print_figure({{"figure", "scoring_with_face"},
                       {"photo", photo.filename().string()},
                       {"width", options.width},
                       {"height", options.height},
                       {"seconds", seconds},
                       {"score", portrait_score_to_json(score)}});
}

void run(const Options& options) {
  const fs::path faces = shared_dir() / "testdata" / "faces";
  for (const std::string& name : kSubjectPhotos)
    require_file(faces / name, "a subject photo (../shared/testdata/faces; DOPPEL_SHARED_DIR)");
  const fs::path installed_models = fs::absolute(default_models_dir());
  require_file(installed_models / "face", "the face network (scripts/install.sh)");
  require_file(installed_models / "tokenizer", "the CLIP vocabulary (scripts/install.sh)");
  require_file(default_landmark_model_path(), "dlib's landmark model (libdlib-data)");

  const bench::MachinePeak peak = bench::measure_machine_peak(at::get_num_threads(), 1.0);
  bench::print_figure({{"figure", "machine_peak"},
                       {"threads", at::get_num_threads()},
                       {"fp32_fma_gflops", peak.fp32_gflops},
                       {"bf16_dot_gflops", peak.bf16_gflops}});

  // The model files (reused between runs) and a scratch studio whose model folder has them.
  auto start = Clock::now();
  const bool checkpoint_written = bench::ensure_random_sd15_checkpoint(options.checkpoint);
  json lcm = nullptr;
  if (options.speed == "fast" && !fs::exists(options.lcm_lora)) {
    const bench::RandomLoraFile file =
        bench::write_random_lcm_lora_sd15(options.checkpoint, options.lcm_lora);
    lcm = {{"modules", file.modules}, {"bytes", file.bytes}};
  }
  const fs::path work =
      fs::temp_directory_path() / ("doppel-shoot-bench-" + std::to_string(getpid()));
  // Removed however the run ends, unless asked to keep it.
  struct ScratchStudio {
    fs::path path;
    bool keep;
    ~ScratchStudio() {
      std::error_code ignored;
      if (!keep) fs::remove_all(path, ignored);
    }
  } scratch{work, options.keep};
  const fs::path models = work / "models";
  fs::create_directories(models / "lora");
  fs::create_directory_symlink(installed_models / "face", models / "face");
  fs::create_directory_symlink(installed_models / "tokenizer", models / "tokenizer");
  if (options.speed == "fast")
    fs::create_symlink(fs::absolute(options.lcm_lora),
                       models / "lora" / "lcm-lora-sdv1-5.safetensors");
  ::setenv("DOPPEL_MODELS_DIR", models.c_str(), 1);
  const fs::path subject_lora = work / "subject-lora.safetensors";
  const int64_t subject_rank = services::TrainingDefaults{}.rank;  // what training would make
  const bench::RandomLoraFile subject_file =
      bench::write_random_subject_lora_sd15(options.checkpoint, subject_lora, subject_rank);
  bench::print_figure(
      {{"figure", "studio_shoot_models"},
       {"checkpoint", options.checkpoint.string()},
       {"checkpoint_written", checkpoint_written},
       {"lcm_lora", options.speed == "fast" ? json(options.lcm_lora.string()) : json()},
       {"lcm_lora_written", lcm},
       {"subject_lora", {{"rank", subject_rank}, {"modules", subject_file.modules}}},
       {"seconds", seconds_since(start)}});

  // The studio: the API server with its store and queue, and one worker, as `doppel serve`.
  std::ostringstream announced;
  server::ServerOptions server_options;
  server_options.data_dir = work / "data";
  server_options.port = 0;
  server_options.model_path = options.checkpoint;
  server_options.fast_password_hashing = true;  // the sign-in is not what is measured
  server_options.announce = &announced;
  start = Clock::now();
  server::ApiServer server(server_options);
  server.start();
  BenchClient client(server.port());
  sign_in(client, announced.str());

  const json subject =
      client.post("/api/subjects", {{"name", "Bench"}, {"class_word", "woman"}}, 201);
  const std::string subject_id = subject["id"];
  httplib::MultipartFormDataItems photos;
  for (const std::string& name : kSubjectPhotos)
    photos.push_back({"photos", read_file(faces / name), name, "application/octet-stream"});
  const json uploaded = client.upload("/api/subjects/" + subject_id + "/photos", photos);
  int accepted = 0;
  for (const json& photo : uploaded["photos"]) accepted += photo["verdict"] == "accepted";
  // The person's LoRA, stored as a finished training stores it.
  auto repository = store::open_repository("sqlite:" + (work / "data" / "doppel.db").string());
  store::BlobStore blobs = store::BlobStore::open(work / "data");
  const auto account = repository->find_account_by_email(kEmail);
  if (!account) throw Error(ErrorCode::kInternal, "the bench's account was not found");
  store::LoraVersion version;
  version.subject_id = subject_id;
  version.status = store::LoraStatus::kReady;
  const json trained = {{"class_word", "woman"},
                        {"model_path", repository->default_model().path},
                        {"rank", subject_rank}};
  version.settings_json = trained.dump();
  version.blob_sha256 = blobs.put(read_file(subject_lora));
  repository->add_lora_version(account->id, version);
  const auto stored_subject = repository->get_subject(account->id, subject_id);
  if (!stored_subject || !stored_subject->face_profile_blob)
    throw Error(ErrorCode::kInternal, "the uploaded photos gave the person no face profile");
  const SubjectProfile profile =
      SubjectProfile::from_json(json::parse(blobs.get(*stored_subject->face_profile_blob)));
  bench::print_figure({{"figure", "studio_shoot_setup"},
                       {"photos", kSubjectPhotos.size()},
                       {"accepted", accepted},
                       {"subject", "trained (random LoRA stored as training stores one)"},
                       {"seconds", seconds_since(start)}});

  services::WorkerOptions worker_options;
  worker_options.data_dir = work / "data";
  bench::reset_peak_rss();
  std::optional<services::WorkerPool> workers;
  workers.emplace(worker_options, 1);

  json body = {{"subject_id", subject_id},   {"styles", {options.style}},
               {"count", options.portraits}, {"seed", 1},
               {"speed", options.speed},     {"width", options.width},
               {"height", options.height}};
  if (options.steps > 0) body["steps"] = options.steps;
  start = Clock::now();
  const json shoot = client.post("/api/shoots", body, 202);
  const double request_seconds = seconds_since(start);
  const std::string shoot_path = "/api/shoots/" + shoot["id"].get<std::string>();
  while (true) {
    const json state = client.get(shoot_path);
    if (state["jobs"]["queued"] == 0 && state["jobs"]["running"] == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  const double total_seconds = seconds_since(start);
  workers.reset();
  const json jobs = client.get("/api/jobs?limit=1000")["jobs"];
  for (const json& job : jobs)
    if (job["status"] != "succeeded")
      std::cerr << "studio_shoot_bench: job " << job["id"] << " " << job["status"] << ": "
                << job["error"] << "\n";
  const json images = client.get(shoot_path + "/images")["images"];
  report_shoot(options, shoot, jobs, images, request_seconds, total_seconds, peak);
  report_scoring_with_face(options, faces / kSubjectPhotos.front(), profile);
  server.stop();
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  CLI::App app{"A studio shoot end to end: API, queue, worker, scoring, storage (random SD 1.5)"};
  app.add_option("--portraits", options.portraits, "portraits in the shoot (1-20)")
      ->check(CLI::Range(1, 20));
  app.add_option("--speed", options.speed, "the shoot's speed")
      ->check(CLI::IsMember({"fast", "exact"}));
  app.add_option("--steps", options.steps, "sampling steps (default: the speed's)");
  app.add_option("--width", options.width, "portrait width");
  app.add_option("--height", options.height, "portrait height");
  app.add_option("--style", options.style, "the style pack shot (styles/)");
  app.add_option("--checkpoint", options.checkpoint,
                 "the random SD 1.5 checkpoint (written once, shared with face_detail_bench)");
  app.add_option("--lcm-lora", options.lcm_lora, "the random LCM-LoRA (written once)");
  app.add_option("--threads", options.threads, "intra-op threads (default: all cores)");
  app.add_flag("--keep", options.keep, "keep the scratch studio in /tmp");
  CLI11_PARSE(app, argc, argv);
  try {
    configure_threads(options.threads);
    install_caching_cpu_allocator();
    run(options);
  } catch (const std::exception& error) {
    std::cerr << "studio_shoot_bench: " << error.what() << "\n";
    return 1;
  }
  return 0;
}

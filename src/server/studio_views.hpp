// What the studio shows a person, derived from stored records: the stage a subject is at (its
// next step), the likeness words of a portrait (including "no face"), file names people
// recognise for downloads, and the exclusive lock of a data folder.
#pragma once
#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "doppel/store/records.hpp"

namespace doppel::server {

// "needs_photos" | "ready_to_train" | "training" | "trained", and for an instant subject
// "needs_photos" | "ready_to_shoot" (one accepted photo; "training" while one is trained): from
// the photos' verdicts and the LoRA versions, so it never contradicts what the photos page says
// (the stored status field is only set by training). The cover photo is
// services::best_accepted_photo.
std::string subject_stage(const store::Subject& subject, const std::vector<store::Photo>& photos,
                          const std::vector<store::LoraVersion>& versions, int minimum_photos);

// The likeness fields of an image: {"likeness", "likeness_label"}. The worker stores a
// portrait without a face as likeness 0 with no quality score (it rates only faces); that is
// "no face" with no number, not "different person". Not scored at all: both null.
nlohmann::json image_likeness_json(const store::Image& image);

// A LoRA version's validation likeness for people: null when it could not be measured. The
// validation median counts a portrait without a face as 0, so an exact 0 means most test
// portraits had no face ("validation_faces": "none"); a real likeness is never exactly 0.
nlohmann::json validation_likeness_json(const std::optional<double>& median);

// A part of a download's file name: letters (any script), digits, '_' and '-'; others become
// '-'; at most 40 characters; "portrait" when nothing is left. "Anne Marie" -> "Anne-Marie".
std::string file_name_part(const std::string& text);

// "<subject>-<style>-<n>.png" with n zero-padded to `digits`.
std::string portrait_file_name(const std::string& subject, const std::string& style, size_t n,
                               size_t digits);

// How an uploaded file is named back to the person: the client's file name without folders or
// control characters, at most 80 bytes (cut at a character boundary); "photo <index + 1>"
// when it has none.
std::string upload_file_name(const std::string& client_name, size_t index);

// A Content-Disposition value for a download: an ASCII fallback name and the UTF-8 one
// (RFC 6266), so "小明-anime-1.png" keeps its name in browsers.
std::string attachment_header(const std::string& file_name);

// An exclusive lock (flock) on <data>/doppel.lock, held while the object lives, so two servers
// never share one data folder. Throws doppel::Error kIo naming the folder when another
// process holds it.
class DataFolderLock {
 public:
  explicit DataFolderLock(const std::filesystem::path& data_dir);
  ~DataFolderLock();
  DataFolderLock(const DataFolderLock&) = delete;
  DataFolderLock& operator=(const DataFolderLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace doppel::server

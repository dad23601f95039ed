// Issue 23, item 2 and 9: photo uploads whose decoding would take gigabytes are refused from
// their header, the largest accepted one stays within a known peak, and damaged JPEGs are
// refused. The figures (peak memory per upload) are printed for the notes.
#include <gtest/gtest.h>
#include <zlib.h>

#include <chrono>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <string>

#include "doppel/store/blob_store.hpp"
#include "server_test_support.hpp"

namespace doppel::test {
namespace {

void append_be32(std::string& out, uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(char((value >> shift) & 0xff));
}

void append_chunk(std::string& out, const std::string& type, const std::string& data) {
  append_be32(out, static_cast<uint32_t>(data.size()));
  const std::string body = type + data;
  out += body;
  append_be32(out, static_cast<uint32_t>(
                       crc32(0, reinterpret_cast<const Bytef*>(body.data()), body.size())));
}

// A valid PNG of one flat colour (all zero samples), deflated row by row so that even a
// gigabyte of pixels never sits in memory here: a few hundred KB on the wire.
std::string flat_png(uint32_t width, uint32_t height, int bit_depth, int color_type) {
  const int channels = color_type == 6 ? 4 : color_type == 2 ? 3 : 1;
  const size_t row_bytes = 1 + size_t(width) * channels * (bit_depth / 8);
  std::string ihdr;
  append_be32(ihdr, width);
  append_be32(ihdr, height);
  ihdr += {char(bit_depth), char(color_type), 0, 0, 0};
  z_stream stream{};
  deflateInit(&stream, Z_BEST_SPEED);
  const std::string row(row_bytes, '\0');  // filter 0, zero samples
  std::string compressed;
  char buffer[1 << 16];
  for (uint32_t y = 0; y < height; ++y) {
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(row.data()));
    stream.avail_in = static_cast<uInt>(row.size());
    const int flush = y + 1 == height ? Z_FINISH : Z_NO_FLUSH;
    do {
      stream.next_out = reinterpret_cast<Bytef*>(buffer);
      stream.avail_out = sizeof buffer;
      deflate(&stream, flush);
      compressed.append(buffer, sizeof buffer - stream.avail_out);
    } while (stream.avail_out == 0);
  }
  deflateEnd(&stream);
  std::string png = "\x89PNG\r\n\x1a\n";
  append_chunk(png, "IHDR", ihdr);
  append_chunk(png, "IDAT", compressed);
  append_chunk(png, "IEND", "");
  return png;
}

// The process's peak resident memory (VmHWM) in MiB, after resetting it when the kernel
// allows (so the peak is that of what follows).
int64_t peak_rss_mib(bool reset) {
  if (reset) std::ofstream("/proc/self/clear_refs") << "5";
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) / 1024;
  return -1;
}

struct Upload {
  Answer answer;
  int64_t peak_growth_mib = 0;
  int64_t millis = 0;
};

Upload upload_one(ApiClient& client, const std::string& subject, const std::string& bytes,
                  const std::string& name) {
  const int64_t before = peak_rss_mib(true);
  const auto start = std::chrono::steady_clock::now();
  Upload upload;
  upload.answer = client.upload(subject + "/photos", {{"photos", bytes, name, "image/png"}});
  upload.millis = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - start)
                      .count();
  upload.peak_growth_mib = peak_rss_mib(false) - before;
  return upload;
}

class PhotoMemory : public ::testing::Test {
 protected:
  PhotoMemory() : server_(options()), client_(first_account(server_)) {
    subject_ = "/api/subjects/" +
               client_.post("/api/subjects", {{"name", "Ada"}}).body["id"].get<std::string>();
  }
  static server::ServerOptions options() {
    server::ServerOptions options;
    options.face_analysis = false;
    return options;
  }
  TestServer server_;
  ApiClient client_;
  std::string subject_;
};

TEST_F(PhotoMemory, ASixteenBitRgbaBombUnderThePixelLimitIsRefusedFromItsHeader) {
  // The attack: 6320x6320 16-bit RGBA, just under 40 megapixels, 320 MB of samples.
  const std::string bomb = flat_png(6320, 6320, 16, 6);
  ASSERT_LT(bomb.size(), 2u << 20);
  const Upload upload = upload_one(client_, subject_, bomb, "bomb.png");
  EXPECT_EQ(upload.answer.status, 413) << upload.answer.raw;
  EXPECT_NE(upload.answer.raw.find("MiB of memory to decode"), std::string::npos);
  std::cout << "[ figure ] 16-bit RGBA 6320x6320 PNG (" << bomb.size() / 1024 << " KB): refused in "
            << upload.millis << " ms, peak memory +" << upload.peak_growth_mib << " MiB"
            << std::endl;
  EXPECT_LT(upload.peak_growth_mib, 64);
  EXPECT_LT(upload.millis, 5000);
}

TEST_F(PhotoMemory, TheLargestAcceptedPhotoDecodesWithinItsBudget) {
  // 6320x6320 8-bit RGBA: 160 MB of samples, the most the decode budget lets in.
  const std::string largest = flat_png(6320, 6320, 8, 6);
  const Upload upload = upload_one(client_, subject_, largest, "largest.png");
  ASSERT_EQ(upload.answer.status, 201) << upload.answer.raw;
  std::cout << "[ figure ] largest accepted upload, 8-bit RGBA 6320x6320 PNG ("
            << largest.size() / 1024 << " KB): " << upload.millis << " ms, peak memory +"
            << upload.peak_growth_mib << " MiB" << std::endl;
  // Decoded samples (152 MiB) plus the RGB copy (114 MiB), and no float temporaries.
  EXPECT_LT(upload.peak_growth_mib, 400);
}

TEST_F(PhotoMemory, AJpegCutShortIsRefusedAsDamaged) {
  cv::Mat noise(240, 320, CV_8UC3);
  cv::randu(noise, cv::Scalar::all(0), cv::Scalar::all(255));
  std::vector<uint8_t> encoded;
  ASSERT_TRUE(cv::imencode(".jpg", noise, encoded));
  const std::string jpeg(encoded.begin(), encoded.end());
  for (double share : {0.33, 0.6}) {
    const std::string cut = jpeg.substr(0, static_cast<size_t>(jpeg.size() * share));
    const Answer answer =
        client_.upload(subject_ + "/photos", {{"photos", cut, "cut.jpg", "image/jpeg"}});
    EXPECT_EQ(answer.status, 422) << share << ": " << answer.raw;
  }
  EXPECT_TRUE(client_.get(subject_ + "/photos").body["photos"].empty());
}

// Issue 23, item 10: a retried upload stored the same photos twice.
TEST_F(PhotoMemory, TheSameFileIsKeptOncePerPerson) {
  const std::string png = synthetic_png(40, 30, 70);
  const Answer first = client_.upload(
      subject_ + "/photos",
      {{"photos", png, "a.png", "image/png"}, {"photos", png, "b.png", "image/png"}});
  ASSERT_EQ(first.status, 201) << first.raw;
  EXPECT_EQ(first.body["added"].size(), 1u);
  ASSERT_EQ(first.body["refused"].size(), 1u);
  EXPECT_EQ(first.body["refused"][0]["code"], "duplicate");
  const Answer again =
      client_.upload(subject_ + "/photos", {{"photos", png, "a.png", "image/png"}});
  EXPECT_EQ(again.status, 409) << again.raw;
  EXPECT_EQ(client_.get(subject_ + "/photos").body["photos"].size(), 1u);
  // Another person may have the same file.
  const std::string other =
      "/api/subjects/" +
      client_.post("/api/subjects", {{"name", "Bea"}}).body["id"].get<std::string>();
  EXPECT_EQ(client_.upload(other + "/photos", {{"photos", png, "a.png", "image/png"}}).status, 201);
}

// Issue 23, item 10: a killed upload left its photos "pending" (and training refused) until
// the next upload.
TEST(PhotoIntakeResume, PhotosLeftPendingAreJudgedWhenTrainingIsAsked) {
  TestServer server;  // with the face check
  ApiClient client = first_account(server);
  const std::string subject =
      "/api/subjects/" +
      client.post("/api/subjects", {{"name", "Ada"}}).body["id"].get<std::string>();
  const Answer upload = client.upload(
      subject + "/photos", {{"photos", synthetic_png(48, 40, 60), "a.png", "image/png"}});
  ASSERT_EQ(upload.status, 201) << upload.raw;
  if (upload.body["photos"][0]["verdict"] == "pending")
    GTEST_SKIP() << "the face check's models are not installed here";
  // What a server killed between storing a photo and judging it leaves behind.
  auto repository = server.repository();
  const auto account = repository->find_account_by_email("ada@example.com");
  store::Photo photo;
  photo.subject_id = subject.substr(std::string("/api/subjects/").size());
  photo.blob_sha256 =
      store::BlobStore::open(server.data_dir(), std::nullopt, true).put(synthetic_png(48, 40, 120));
  photo.original_size = 100;
  photo = repository->add_photo(account->id, photo);
  ASSERT_EQ(repository->get_photo(account->id, photo.id)->verdict, store::PhotoVerdict::kPending);
  EXPECT_EQ(client.post(subject + "/train", json::object()).status, 409);  // no faces in them
  EXPECT_NE(repository->get_photo(account->id, photo.id)->verdict, store::PhotoVerdict::kPending);
}

}  // namespace
}  // namespace doppel::test

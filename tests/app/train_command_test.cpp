// Runs the real `doppel train` binary: kill and resume, full disk, bad input.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "doppel/core/atomic_file.hpp"
#include "doppel/core/image.hpp"
#include "doppel/core/safetensors.hpp"
#include "support/shared_data.hpp"
#include "support/temp_folder.hpp"

extern char** environ;

namespace doppel {
namespace {

using test::temp_folder;

// Runs a shell command line; returns the exit status and stderr.
int run_shell(const std::string& command, std::string* errors) {
  auto log = std::filesystem::temp_directory_path() /
             ("doppel_train_cli_stderr_" + std::to_string(::getpid()) + ".txt");
  const int status = std::system((command + " 2> " + log.string() + " > /dev/null").c_str());
  if (errors) *errors = read_file(log);
  return WEXITSTATUS(status);
}

std::string train_arguments(const std::filesystem::path& images, const std::filesystem::path& out,
                            int steps) {
  return "--threads 1 train --tiny-demo --no-face-crop --images " + images.string() + " --out " +
         out.string() + " --steps " + std::to_string(steps) +
         " --resolution 64 --rank 4 --lr 0.001 --checkpoint-every 4 --seed 5";
}

int run_train(const std::string& arguments, std::string* errors) {
  // Appended, not `std::string(DOPPEL_BINARY) + " " + ...`: GCC 12 warns about that form
  // (-Warray-bounds, a false positive) when the file is compiled with the ATen-only header.
  std::string command = DOPPEL_BINARY;
  command += ' ';
  command += arguments;
  return run_shell(command, errors);
}

std::filesystem::path photo_folder(const std::string& name) {
  auto folder = temp_folder(name);
  for (int i = 0; i < 3; ++i) {
    Image image;
    image.width = 80 + 16 * i;
    image.height = 64;
    image.rgb.resize(static_cast<size_t>(image.width) * image.height * 3);
    for (size_t p = 0; p < image.rgb.size(); ++p) image.rgb[p] = uint8_t((p * (7 + i)) % 251);
    write_png(folder / ("photo" + std::to_string(i) + ".png"), image);
  }
  return folder;
}

std::map<std::string, at::Tensor> read_tensors(const std::filesystem::path& path) {
  const SafetensorsFile file = SafetensorsFile::open(path);
  std::map<std::string, at::Tensor> tensors;
  for (const auto& entry : file.entries()) tensors[entry.name] = file.tensor(entry.name).clone();
  return tensors;
}

TEST(TrainCommand, SigkilledRunResumesToTheUninterruptedWeights) {
  const auto images = photo_folder("kill_images");
  const auto folder = temp_folder("kill");
  const int steps = 120;
  std::string errors;
  ASSERT_EQ(run_train(train_arguments(images, folder / "whole.safetensors", steps), &errors), 0)
      << errors;

  // Start the same run, SIGKILL it once it has written a checkpoint.
  const auto interrupted = folder / "interrupted.safetensors";
  const auto state = folder / "interrupted.training-state.safetensors";
  // exec, so the pid is doppel's own.
  const std::string command = "exec " + std::string(DOPPEL_BINARY) + " " +
                              train_arguments(images, interrupted, steps) + " 2>/dev/null";
  const char* argv[] = {"/bin/sh", "-c", command.c_str(), nullptr};
  pid_t shell = 0;
  ASSERT_EQ(posix_spawn(&shell, "/bin/sh", nullptr, nullptr, const_cast<char**>(argv), environ), 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!std::filesystem::exists(state) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  int status = 0;
  ASSERT_EQ(waitpid(shell, &status, WNOHANG), 0) << "the run ended before it could be killed";
  ::kill(shell, SIGKILL);
  waitpid(shell, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));
  ASSERT_TRUE(std::filesystem::exists(state));
  ASSERT_FALSE(std::filesystem::exists(interrupted));

  ASSERT_EQ(run_train(train_arguments(images, interrupted, steps) + " --resume", &errors), 0)
      << errors;
  const auto whole = read_tensors(folder / "whole.safetensors");
  const auto resumed = read_tensors(interrupted);
  ASSERT_EQ(whole.size(), resumed.size());
  for (const auto& [name, tensor] : whole) {
    ASSERT_TRUE(resumed.count(name)) << name;
    EXPECT_TRUE(at::equal(tensor, resumed.at(name))) << name;
  }
  EXPECT_FALSE(std::filesystem::exists(state));
  const auto metadata = SafetensorsFile::open(interrupted).metadata();
  EXPECT_EQ(metadata.at("ss_steps"), std::to_string(steps));
  EXPECT_EQ(metadata.at("ss_network_dim"), "4");
  EXPECT_EQ(metadata.at("doppel_trigger"), "sks");
  std::filesystem::remove_all(folder);
  std::filesystem::remove_all(images);
}

TEST(TrainCommand, AFullDiskLeavesNoTruncatedLora) {
  const auto images = photo_folder("full_images");
  const auto folder = temp_folder("full");
  const auto out = folder / "lora.safetensors";
  std::string errors;
  // A file-size limit makes writes fail as on a full disk (EFBIG instead of ENOSPC).
  const int status = run_shell("trap '' XFSZ; ulimit -f 16; exec " + std::string(DOPPEL_BINARY) +
                                   " " + train_arguments(images, out, 3),
                               &errors);
  EXPECT_NE(status, 0);
  EXPECT_NE(errors.find(out.filename().string()), std::string::npos) << errors;
  EXPECT_FALSE(std::filesystem::exists(out));
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    ADD_FAILURE() << "left behind: " << entry.path();
  }
  std::filesystem::remove_all(folder);
  std::filesystem::remove_all(images);
}

TEST(TrainCommand, BadInputGetsAClearMessage) {
  const auto folder = temp_folder("bad");
  const auto out = folder / "lora.safetensors";
  std::string errors;
  EXPECT_NE(run_train(train_arguments(folder, out, 3), &errors), 0);
  EXPECT_NE(errors.find("no usable training image"), std::string::npos) << errors;

  const auto images = photo_folder("bad_images");
  write_file_atomically(folder / "model.safetensors", "this is not a model");
  EXPECT_NE(run_train("train --no-face-crop --images " + images.string() + " --model " +
                          (folder / "model.safetensors").string() + " --out " + out.string(),
                      &errors),
            0);
  EXPECT_NE(errors.find("model.safetensors"), std::string::npos) << errors;
  EXPECT_FALSE(std::filesystem::exists(out));
  std::filesystem::remove_all(folder);
  std::filesystem::remove_all(images);
}

// Arguments that need no photo are checked before the face check of every photo, so a typo
// fails at once (issue 24).
TEST(TrainCommand, ChecksModelResolutionAndOutBeforeThePhotos) {
  const auto faces = test::faces_dir();
  DOPPEL_REQUIRE_PATH(faces / "barack_obama__facerec_obama.jpg");
  const auto images = temp_folder("early_checks");
  std::filesystem::copy_file(faces / "barack_obama__facerec_obama.jpg",
                             images / "barack_obama__facerec_obama.jpg");
  const auto out = images.parent_path() / "early_checks.safetensors";
  const std::string photos = "train --images " + images.string();
  std::string errors;
  EXPECT_EQ(run_train(photos + " --out " + out.string(), &errors), 1);
  EXPECT_NE(errors.find("--model is required"), std::string::npos) << errors;
  EXPECT_EQ(
      run_train(photos + " --model /no/such/model.safetensors --out " + out.string(), &errors), 1);
  EXPECT_NE(errors.find("/no/such/model.safetensors does not exist"), std::string::npos) << errors;
  EXPECT_EQ(errors.find("using "), std::string::npos) << errors;
  EXPECT_EQ(run_train(photos + " --tiny-demo --resolution 100 --out " + out.string(), &errors), 1);
  EXPECT_NE(errors.find("--resolution must be a multiple of 8"), std::string::npos) << errors;
  EXPECT_EQ(run_train(photos + " --tiny-demo --out " + (images / "lora.pt").string(), &errors), 1);
  EXPECT_NE(errors.find("--out must name a .safetensors file"), std::string::npos) << errors;
  EXPECT_NE(errors.find("lora.safetensors"), std::string::npos) << errors;
  // None of them looked at the photo (the face check prints "using N of M photos").
  EXPECT_EQ(errors.find("using "), std::string::npos) << errors;
  EXPECT_FALSE(std::filesystem::exists(out));
  std::filesystem::remove_all(images);
}

TEST(TrainCommand, FaceCheckCropsAcceptedPhotosAndReportsTheOthers) {
  const auto faces = test::faces_dir();
  DOPPEL_REQUIRE_PATH(faces / "barack_obama__facerec_obama.jpg");
  const auto images = temp_folder("faces");
  for (const char* name :
       {"barack_obama__facerec_obama.jpg", "barack_obama__facerec_obama1.jpg",
        "barack_obama__facerec_obama2.jpg", "barack_obama__facerec_obama_small.jpg"}) {
    std::filesystem::copy_file(faces / name, images / name);
  }
  const auto out = temp_folder("faces_out") / "obama.safetensors";
  std::string errors;
  ASSERT_EQ(run_train("--threads 1 train --tiny-demo --images " + images.string() + " --out " +
                          out.string() + " --steps 2 --resolution 64 --rank 2",
                      &errors),
            0)
      << errors;
  EXPECT_NE(errors.find("skipping barack_obama__facerec_obama_small.jpg"), std::string::npos)
      << errors;
  EXPECT_NE(errors.find("using 3 of 4 photos"), std::string::npos) << errors;
  EXPECT_TRUE(std::filesystem::exists(out));
  // It ends by saying how to use the LoRA.
  EXPECT_NE(errors.find("doppel generate --tiny-demo --lora " + out.string() + ":0.9"),
            std::string::npos)
      << errors;
  EXPECT_NE(errors.find("<lora:obama:0.9>"), std::string::npos) << errors;
  std::filesystem::remove_all(images);
  std::filesystem::remove_all(out.parent_path());
}

}  // namespace
}  // namespace doppel

// The template file format: a full file, defaults, a picture alone, the recipe's JSON copy, and
// bad files refused with the file, the field and the fix named.
#include "doppel/studio/portrait_template.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include "doppel/core/atomic_file.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/image.hpp"
#include "doppel/studio/style_pack.hpp"
#include "support/error_code.hpp"

namespace doppel {
namespace {

namespace fs = std::filesystem;

constexpr const char* kFull = R"(id: sunset-couple
name: Sunset couple
name_zh: 日落情侣
pack: wedding
family: sd1
image: sunset.png
prompt: "photo of {subject}, golden hour"
negative_prompt: "blurry, deformed"
faces: [1, 0]
sampler: dpmpp_2m
karras: true
steps: 20
guidance: 6.5
strength: 0.55
processing_size: 512
padding: 40
mask: {margin: 0.2, feather: 0.1, hairline: 0.7}
controls:
  face_pose: {model: control_v11p_sd15_openpose.safetensors, weight: 1}
  canny: {model: control_v11p_sd15_canny.safetensors, weight: 0.4, start: 0, end: 0.6}
colour_match: 0.8
)";

TEST(PortraitTemplateFile, ReadsEveryField) {
  const PortraitTemplate read = parse_portrait_template(kFull, "sunset.yaml", "/packs");
  EXPECT_EQ(read.id, "sunset-couple");
  EXPECT_EQ(read.name_zh, "日落情侣");
  EXPECT_EQ(read.pack, "wedding");
  EXPECT_EQ(read.image, fs::path("/packs/sunset.png"));
  EXPECT_FALSE(read.generate);
  EXPECT_EQ(read.faces, (std::vector<int>{1, 0}));
  EXPECT_EQ(read.sampler, "dpmpp_2m");
  EXPECT_EQ(read.steps, 20);
  EXPECT_DOUBLE_EQ(read.guidance, 6.5);
  EXPECT_DOUBLE_EQ(read.strength, 0.55);
  EXPECT_EQ(read.processing_size, 512);
  EXPECT_EQ(read.padding, 40);
  EXPECT_DOUBLE_EQ(read.mask.margin, 0.2);
  EXPECT_DOUBLE_EQ(read.mask.hairline, 0.7);
  ASSERT_TRUE(read.face_pose);
  EXPECT_EQ(read.face_pose->model, "control_v11p_sd15_openpose.safetensors");
  ASSERT_TRUE(read.canny);
  EXPECT_DOUBLE_EQ(read.canny->end, 0.6);
  EXPECT_DOUBLE_EQ(read.colour_match, 0.8);
}

TEST(PortraitTemplateFile, DefaultsAndADrawnPicture) {
  const PortraitTemplate read = parse_portrait_template(R"(id: garden
pack: garden
generate: {seed: 42}
)",
                                                        "garden.yaml");
  EXPECT_EQ(read.name, "garden");
  EXPECT_EQ(read.prompt, "photo of {subject}");
  EXPECT_TRUE(read.faces.empty());
  ASSERT_TRUE(read.generate);
  EXPECT_EQ(read.generate->seed, 42u);
  EXPECT_EQ(read.generate->width, 512);
  EXPECT_EQ(read.generate->height, 768);
  EXPECT_FALSE(read.face_pose);
  EXPECT_DOUBLE_EQ(read.colour_match, 1.0);
}

TEST(PortraitTemplateFile, JsonCopyReadsBackTheSame) {
  const PortraitTemplate read = parse_portrait_template(kFull, "sunset.yaml");
  const nlohmann::json copy = portrait_template_to_json(read);
  EXPECT_EQ(portrait_template_to_json(portrait_template_from_json(copy)), copy);
  nlohmann::json bad = copy;
  bad["strength"] = 3;
  EXPECT_EQ(test::code_of([&] { portrait_template_from_json(bad); }), ErrorCode::kInvalidArgument);
}

TEST(PortraitTemplateFile, APictureAloneIsATemplateWithDefaults) {
  const fs::path folder =
      fs::temp_directory_path() / ("doppel_template_file_" + std::to_string(getpid()));
  fs::create_directories(folder);
  write_png(folder / "My Beach.png", Image{8, 8, std::vector<uint8_t>(8 * 8 * 3, 128)});
  const PortraitTemplate read = load_portrait_template(folder / "My Beach.png");
  EXPECT_EQ(read.id, "my-beach");
  EXPECT_EQ(read.image, folder / "My Beach.png");
  write_file_atomically(folder / "notes.txt", "not a picture");
  EXPECT_EQ(test::code_of([&] { load_portrait_template(folder / "notes.txt"); }),
            ErrorCode::kInvalidFile);
  EXPECT_EQ(test::code_of([&] { load_portrait_template(folder / "missing.yaml"); }),
            ErrorCode::kNotFound);
  write_file_atomically(folder / "a.yaml", "id: same\nimage: x.png\n");
  write_file_atomically(folder / "b.yaml", "id: same\nimage: y.png\n");
  std::string message;
  EXPECT_EQ(test::code_of([&] { load_portrait_templates(folder); }, &message),
            ErrorCode::kInvalidFile);
  EXPECT_NE(message.find("already used"), std::string::npos) << message;
  fs::remove(folder / "b.yaml");
  EXPECT_EQ(load_portrait_templates(folder).size(), 1u);
  EXPECT_TRUE(load_portrait_templates(folder / "none").empty());
  fs::remove_all(folder);
}

TEST(PortraitTemplateFile, BadFilesNameTheFieldAndTheFix) {
  struct Case {
    std::string yaml;
    std::string expected;  // in the message
  };
  const std::vector<Case> cases = {
      {"id: x\nimage: a.png\nprompt: a photo\n", "must contain {subject}"},
      {"id: x\nimage: a.png\ncolour: 1\n", "unknown field 'colour'"},
      {"id: x\n", "'image' is missing"},
      {"id: x\nimage: a.png\ngenerate: {seed: 1}\n", "both given"},
      {"id: x\ngenerate: {width: 64}\n", "generate.seed' is missing"},
      {"id: x\ngenerate: {seed: 1}\n", "the 'pack' whose prompt"},
      {"id: x\nimage: a.png\nfaces: left\n", "'faces' must be 'all' or a list"},
      {"id: x\nimage: a.png\nfaces: [0, 0]\n", "twice"},
      {"id: x\nimage: a.png\nsampler: dpm_fast\n", "field 'sampler'"},
      {"id: x\nimage: a.png\nstrength: 1.5\n", "'strength' must be a number from 0.01 to 1"},
      {"id: x\nimage: a.png\nsteps: many\n", "'steps' must be a whole number"},
      {"id: x\nimage: a.png\nprocessing_size: 100\n", "multiple of 8"},
      {"id: x\nimage: a.png\nmask: {margin: 3}\n", "'mask.margin'"},
      {"id: x\nimage: a.png\ncontrols: {face_pose: {weight: 1}}\n", "controls.face_pose.model"},
      {"id: x\nimage: a.png\ncontrols: {lineart: {model: a}}\n",
       "unknown field 'controls.lineart'"},
      {"id: x\nimage: a.png\ncontrols: {canny: {model: a, start: 0.5, end: 0.2}}\n", "below end"},
      {"id: Bad Id\nimage: a.png\n", "field 'id'"},
      {"id: x\nimage: a.png\nfamily: sd9\n", "field 'family'"},
      {"- just\n- a list\n", "mapping of fields"},
      {"id: [unclosed\n", "not valid YAML"},
  };
  for (const Case& bad : cases) {
    std::string message;
    EXPECT_EQ(test::code_of([&] { parse_portrait_template(bad.yaml, "bad.yaml"); }, &message),
              ErrorCode::kInvalidFile)
        << bad.yaml;
    EXPECT_NE(message.find("bad.yaml"), std::string::npos) << message;
    EXPECT_NE(message.find(bad.expected), std::string::npos) << bad.yaml << " -> " << message;
  }
}

TEST(PortraitTemplateFile, PictureHashIsSha256OfTheBytes) {
  EXPECT_EQ(template_picture_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace
}  // namespace doppel

namespace doppel {
namespace {

TEST(PortraitTemplateFile, ShippedTemplatesLoadAndNameShippedPacks) {
  const auto templates = load_portrait_templates(default_templates_dir());
  ASSERT_GE(templates.size(), 3u);
  const auto packs = load_style_packs(default_styles_dir());
  for (const PortraitTemplate& shipped : templates) {
    EXPECT_NO_THROW(find_style_pack(packs, shipped.pack)) << shipped.id;
    EXPECT_TRUE(shipped.generate || std::filesystem::exists(shipped.image)) << shipped.id;
    EXPECT_EQ(shipped.family, find_style_pack(packs, shipped.pack).family) << shipped.id;
  }
}

}  // namespace
}  // namespace doppel

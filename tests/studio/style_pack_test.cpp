// Style packs: every shipped pack loads, and every kind of mistake in a pack
// file is reported with the file, the field and the fix.
#include "doppel/studio/style_pack.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "doppel/core/error.hpp"
#include "doppel/diffusion/sampler.hpp"
#include "doppel/studio/shoot_plan.hpp"
#include "support/shared_data.hpp"
#include "support/temp_folder.hpp"

namespace doppel {
namespace {

using test::temp_folder;

const char* kValidPack = R"yaml(id: test_style
name: Test style
name_zh: 测试风格
description: A pack for tests.
description_zh: 测试用。
family: sd1
prompt: "portrait of {subject}, (studio lighting:1.2)"
negative_prompt: blurry
sampler: dpmpp_2m
karras: true
steps: 25
guidance: 7
width: 512
height: 768
loras: [{file: grain.safetensors, weight: 0.6}]
tags: [photo, test]
)yaml";

// Only the required fields.
const char* kMinimalPack = R"yaml(id: minimal
name: Minimal
name_zh: 最简
description: Required fields only.
description_zh: 仅必填字段。
family: sd2
prompt: "{subject}"
negative_prompt: blurry
sampler: euler_ancestral
steps: 20
guidance: 5.5
width: 768
height: 768
)yaml";

// kValidPack with the line starting with `key:` replaced (or removed when
// `line` is empty); a line for a new key is appended.
std::string with_line(const std::string& key, const std::string& line) {
  std::string text = std::string("\n") + kValidPack;  // every line starts after a '\n'
  const auto start = text.find("\n" + key + ":");
  if (start == std::string::npos) return text.substr(1) + line + "\n";
  const auto end = text.find('\n', start + 1);
  return text.replace(start + 1, end - start, line.empty() ? "" : line + "\n").substr(1);
}

// The message of the doppel::Error `parse` throws ("" when it does not throw).
std::string parse_error(const std::string& text) {
  try {
    parse_style_pack(text, "styles/test.yaml");
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidFile);
    return error.what();
  }
  return "";
}

void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path) << text;
}

TEST(StylePack, ParsesEveryField) {
  const StylePack pack = parse_style_pack(kValidPack, "test.yaml");
  EXPECT_EQ(pack.id, "test_style");
  EXPECT_EQ(pack.name_zh, "测试风格");
  EXPECT_EQ(pack.family, ModelFamily::kSd1);
  EXPECT_EQ(pack.prompt, "portrait of {subject}, (studio lighting:1.2)");
  EXPECT_EQ(pack.sampler, "dpmpp_2m");
  EXPECT_TRUE(pack.karras);
  EXPECT_EQ(pack.steps, 25);
  EXPECT_DOUBLE_EQ(pack.guidance, 7.0);
  EXPECT_EQ(pack.width, 512);
  EXPECT_EQ(pack.height, 768);
  EXPECT_EQ(pack.clip_skip, 1);
  ASSERT_EQ(pack.loras.size(), 1u);
  EXPECT_EQ(pack.loras[0].file, "grain.safetensors");
  EXPECT_DOUBLE_EQ(pack.loras[0].weight, 0.6);
  EXPECT_EQ(pack.tags, (std::vector<std::string>{"photo", "test"}));

  const nlohmann::json json = style_pack_to_json(pack);
  EXPECT_EQ(json["family"], "sd1");
  EXPECT_EQ(json["loras"][0]["file"], "grain.safetensors");
  EXPECT_EQ(json["name_zh"], "测试风格");
}

TEST(StylePack, OptionalFieldsHaveDefaultsAndAliasesAreCanonical) {
  const StylePack pack = parse_style_pack(kMinimalPack, "minimal.yaml");
  EXPECT_EQ(pack.sampler, "euler_a");  // the alias resolves to the registry name
  EXPECT_EQ(pack.family, ModelFamily::kSd2);
  EXPECT_DOUBLE_EQ(pack.guidance, 5.5);
  EXPECT_FALSE(pack.karras);
  EXPECT_TRUE(pack.loras.empty());
  EXPECT_TRUE(pack.tags.empty());
  EXPECT_EQ(pack.clip_skip, 1);
}

struct BadPackCase {
  const char* what;
  std::string text;
  std::vector<std::string> expected;  // substrings of the message
};

TEST(StylePack, RejectsMistakesNamingFileFieldAndFix) {
  const std::vector<BadPackCase> cases = {
      {"unknown field", with_line("colour", "colour: red"), {"'colour'", "unknown field"}},
      {"missing field", with_line("negative_prompt", ""), {"'negative_prompt'", "missing"}},
      {"bad type", with_line("steps", "steps: twenty"), {"'steps'", "whole number", "twenty"}},
      {"fractional steps", with_line("steps", "steps: 25.5"), {"'steps'", "whole number"}},
      {"steps out of range", with_line("steps", "steps: 0"), {"'steps'", "1 to 150"}},
      {"list for text", with_line("name", "name: [a, b]"), {"'name'", "expected text"}},
      {"empty text", with_line("name", "name: \"  \""), {"'name'", "empty"}},
      {"bad guidance", with_line("guidance", "guidance: lots"), {"'guidance'", "number"}},
      {"bad bool", with_line("karras", "karras: maybe"), {"'karras'", "true or false"}},
      {"bad sampler", with_line("sampler", "sampler: dpm_fast"), {"'sampler'", "dpm_fast"}},
      {"karras suffix",
       with_line("sampler", "sampler: dpmpp_2m_karras"),
       {"'sampler'", "karras: true"}},
      {"karras unsupported",
       with_line("sampler", "sampler: euler_a"),
       {"'karras'", "no Karras schedule", "dpmpp_2m"}},
      {"width not multiple of 8",
       with_line("width", "width: 510"),
       {"'width'", "multiple of 8", "504 or 512"}},
      {"height not multiple of 8",
       with_line("height", "height: 700"),
       {"'height'", "multiple of 8"}},
      {"size too large", with_line("height", "height: 4096"), {"'height'", "64 to 2048"}},
      {"no placeholder",
       with_line("prompt", "prompt: portrait of a person"),
       {"'prompt'", "{subject}"}},
      {"misspelt placeholder",
       with_line("prompt", "prompt: \"{subject} and {Subject}\""),
       {"'prompt'", "only {subject}"}},
      {"bad family", with_line("family", "family: sd3"), {"'family'", "sd1, sd2 or sdxl"}},
      {"bad id", with_line("id", "id: My Style"), {"'id'", "lowercase"}},
      {"lora with folder",
       with_line("loras", "loras: [{file: ../x.safetensors}]"),
       {"'loras.file'", "no folders"}},
      {"lora not safetensors",
       with_line("loras", "loras: [{file: x.ckpt}]"),
       {"'loras.file'", ".safetensors"}},
      {"lora weight",
       with_line("loras", "loras: [{file: x.safetensors, weight: 9}]"),
       {"'loras.weight'", "-2 to 2"}},
      {"lora unknown key",
       with_line("loras", "loras: [{file: x.safetensors, scale: 1}]"),
       {"'loras.scale'", "unknown field"}},
      {"duplicate tag", with_line("tags", "tags: [a, a]"), {"'tags'", "twice"}},
      {"duplicate key", std::string(kValidPack) + "steps: 30\n", {"'steps'", "twice"}},
      {"clip skip", with_line("clip_skip", "clip_skip: 9"), {"'clip_skip'", "1 to 4"}},
      {"lora tag in prompt",
       with_line("prompt", "prompt: \"{subject} <lora:grain:0.5>\""),
       {"'prompt'", "<lora:", "'loras'"}},
      {"not yaml", "id: [unclosed\n", {"not valid YAML"}},
      {"not a mapping", "- a\n- b\n", {"mapping of fields"}},
  };
  for (const BadPackCase& bad : cases) {
    SCOPED_TRACE(bad.what);
    const std::string message = parse_error(bad.text);
    ASSERT_FALSE(message.empty()) << "accepted";
    EXPECT_NE(message.find("styles/test.yaml"), std::string::npos) << message;
    for (const std::string& part : bad.expected)
      EXPECT_NE(message.find(part), std::string::npos) << message << "\n  lacks: " << part;
  }
}

TEST(StylePack, ErrorsCarryTheLineNumber) {
  const std::string message = parse_error(with_line("width", "width: 510"));
  EXPECT_NE(message.find("styles/test.yaml:13:"), std::string::npos) << message;
}

TEST(StylePack, FillsEveryPlaceholder) {
  EXPECT_EQ(fill_prompt_template("{subject}, close-up of {subject}", "ohwx man"),
            "ohwx man, close-up of ohwx man");
  EXPECT_EQ(fill_prompt_template("no placeholder", "x"), "no placeholder");
}

TEST(StylePack, FolderLoadingRejectsDuplicateIdsNamingBothFiles) {
  const auto folder = temp_folder("duplicates");
  write_text(folder / "a.yaml", kValidPack);
  write_text(folder / "b.yml", kValidPack);
  write_text(folder / "notes.txt", "not a pack");
  try {
    load_style_packs(folder);
    ADD_FAILURE() << "duplicate ids accepted";
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_EQ(error.code(), ErrorCode::kInvalidFile);
    EXPECT_NE(message.find("a.yaml"), std::string::npos) << message;
    EXPECT_NE(message.find("b.yml"), std::string::npos) << message;
    EXPECT_NE(message.find("'id'"), std::string::npos) << message;
  }
  write_text(folder / "b.yml", std::string(kValidPack) + "# " + std::string(70000, 'x') + "\n");
  EXPECT_THROW(load_style_pack(folder / "b.yml"), Error);  // far too large for a pack
  std::filesystem::remove(folder / "b.yml");
  const auto packs = load_style_packs(folder);
  ASSERT_EQ(packs.size(), 1u);
  EXPECT_EQ(packs[0].source, folder / "a.yaml");
  std::filesystem::remove_all(folder);
}

TEST(StylePack, MissingFolderOrPackIsNotFound) {
  try {
    load_style_packs("/nonexistent/doppel/styles");
    ADD_FAILURE();
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kNotFound);
    EXPECT_NE(std::string(error.what()).find("DOPPEL_STYLES_DIR"), std::string::npos);
  }
  const std::vector<StylePack> packs{parse_style_pack(kValidPack, "t")};
  EXPECT_EQ(find_style_pack(packs, "test_style").id, "test_style");
  EXPECT_EQ(style_packs_for(packs, ModelFamily::kSd1).size(), 1u);
  EXPECT_TRUE(style_packs_for(packs, ModelFamily::kSdxl).empty());
  try {
    find_style_pack(packs, "nope");
    ADD_FAILURE();
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kNotFound);
    EXPECT_NE(std::string(error.what()).find("test_style"), std::string::npos);
  }
}

TEST(StylePack, DefaultFolderIsTheSourceTreeUnlessOverridden) {
  const char* saved = std::getenv("DOPPEL_STYLES_DIR");
  const std::string previous = saved ? saved : "";
  ::unsetenv("DOPPEL_STYLES_DIR");
  EXPECT_EQ(default_styles_dir(), test::source_dir() / "styles");
  ::setenv("DOPPEL_STYLES_DIR", "/tmp/my-styles", 1);
  EXPECT_EQ(default_styles_dir(), std::filesystem::path("/tmp/my-styles"));
  if (saved)
    ::setenv("DOPPEL_STYLES_DIR", previous.c_str(), 1);
  else
    ::unsetenv("DOPPEL_STYLES_DIR");
}

TEST(StylePack, EveryShippedPackLoads) {
  const std::vector<StylePack> packs = load_style_packs(test::source_dir() / "styles");
  std::set<std::string> ids;
  for (const StylePack& pack : packs) {
    SCOPED_TRACE(pack.id);
    ids.insert(pack.id);
    EXPECT_FALSE(pack.name.empty());
    EXPECT_FALSE(pack.name_zh.empty());
    EXPECT_FALSE(pack.description_zh.empty());
    EXPECT_NE(pack.prompt.find("{subject}"), std::string::npos);
    EXPECT_GT(pack.negative_prompt.size(), 40u);  // a real negative, not a placeholder
    EXPECT_EQ(find_sampler(pack.sampler).name, pack.sampler);
    EXPECT_FALSE(pack.tags.empty());
  }
  for (const char* id : {"id_photo_white", "id_photo_blue", "business_headshot", "graduation",
                         "wedding", "hanfu", "film_noir", "watercolor", "oil_painting",
                         "cartoon_3d", "anime", "cyberpunk", "vintage_film"})
    EXPECT_EQ(ids.count(id), 1u) << "missing shipped pack " << id;
  EXPECT_GE(packs.size(), 12u);
}

TEST(StylePack, IdentitySettingsAreReadAndCheckedAndReachTheRecipe) {
  EXPECT_FALSE(parse_style_pack(kMinimalPack, "minimal.yaml").identity.any());
  const StylePack pack = parse_style_pack(
      with_line("identity",
                "identity: {ip_adapter_scale: 0.6, face_detail: true, face_detail_faces: all, "
                "fusion: 0.7}"),
      "identity.yaml");
  EXPECT_DOUBLE_EQ(pack.identity.ip_adapter_scale, 0.6);
  EXPECT_DOUBLE_EQ(pack.identity.face_detail_strength, 0.4);  // ADetailer's default
  EXPECT_EQ(pack.identity.face_detail_faces, "all");
  EXPECT_DOUBLE_EQ(pack.identity.fusion_strength, 0.7);
  EXPECT_DOUBLE_EQ(style_pack_to_json(pack)["identity"]["fusion"], 0.7);
  EXPECT_DOUBLE_EQ(parse_style_pack(with_line("identity", "identity: {face_detail: 0.3}"), "a.yaml")
                       .identity.face_detail_strength,
                   0.3);
  for (const char* bad :
       {"identity: {fusion: 1.5}", "identity: {face_detail: maybe}",
        "identity: {face_detail_faces: biggest}", "identity: {scale: 1}", "identity: [0.5]"}) {
    try {
      parse_style_pack(with_line("identity", bad), "bad.yaml");
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& error) {
      EXPECT_EQ(error.code(), ErrorCode::kInvalidFile) << bad;
      EXPECT_NE(std::string(error.what()).find("identity"), std::string::npos) << error.what();
    }
  }
  // The shoot's recipes carry them, and a shot made again from a recipe has them back.
  ShootRequest request;
  request.styles = {pack};
  request.count_per_style = 1;
  const std::vector<Shot> shots = plan_shoot(request);
  ASSERT_EQ(shots.size(), 1u);
  EXPECT_EQ(shots[0].recipe["fusion"]["strength"], 0.7);
  EXPECT_EQ(shots[0].recipe["ip_adapter"]["scale"], 0.6);
  EXPECT_EQ(shots[0].recipe["face_detail"]["faces"], "all");
  const Shot again = shot_from_recipe(shots[0].recipe);
  EXPECT_EQ(again.fusion_strength, 0.7);
  EXPECT_EQ(again.ip_adapter_scale, 0.6);
  nlohmann::json bad = shots[0].recipe;
  bad["fusion"]["strength"] = 2;
  EXPECT_THROW(shot_from_recipe(bad), Error);
}

// "most_like" repaints the face most like the person (their face profile, which the worker
// fills in): chosen in the pack, carried by the recipe, read back as the engine's choice.
TEST(StylePack, FaceDetailMostLikeIsSelectableAndReachesTheShot) {
  const StylePack pack = parse_style_pack(
      with_line("identity", "identity: {face_detail: 0.35, face_detail_faces: most_like}"),
      "group.yaml");
  EXPECT_EQ(pack.identity.face_detail_faces, "most_like");
  ShootRequest request;
  request.styles = {pack};
  request.count_per_style = 1;
  const std::vector<Shot> shots = plan_shoot(request);
  ASSERT_EQ(shots.size(), 1u);
  EXPECT_EQ(shots[0].recipe["face_detail"]["faces"], "most_like");
  const Shot again = shot_from_recipe(shots[0].recipe);
  ASSERT_TRUE(again.face_detail);
  EXPECT_EQ(again.face_detail->faces, FaceChoice::kMostLike);
  EXPECT_DOUBLE_EQ(again.face_detail->strength, 0.35);
}

}  // namespace
}  // namespace doppel

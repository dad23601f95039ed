// Textual-inversion embedding files: the .safetensors layouts A1111 reads, torch.save .pt
// files (hand-assembled exactly as CPython's pickler and torch.save lay them out, plus
// libtorch's own writer as an independent producer), the folder library, and hostile files
// the restricted pickle reader must refuse without running anything.
#include "doppel/checkpoint/textual_inversion.hpp"

#include <gtest/gtest.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "doppel/checkpoint/formats/torch_pickle.hpp"
#include "doppel/core/error.hpp"
#include "doppel/core/safetensors.hpp"
#include "support/error_code.hpp"

namespace doppel {
namespace {

using test::code_of;

namespace fs = std::filesystem;

std::string le(uint64_t value, int width) {
  std::string out;
  for (int i = 0; i < width; ++i) out += static_cast<char>((value >> (8 * i)) & 0xFF);
  return out;
}

// A stored (uncompressed) zip archive, as PyTorch's writer makes them.
std::string zip_archive(const std::vector<std::pair<std::string, std::string>>& files) {
  std::string body, directory;
  for (const auto& [name, data] : files) {
    const uint64_t offset = body.size();
    body += le(0x04034b50, 4) + le(20, 2) + le(0, 2) + le(0, 2) + le(0, 4) + le(0, 4) +
            le(data.size(), 4) + le(data.size(), 4) + le(name.size(), 2) + le(0, 2) + name + data;
    directory += le(0x02014b50, 4) + le(20, 2) + le(20, 2) + le(0, 2) + le(0, 2) + le(0, 4) +
                 le(0, 4) + le(data.size(), 4) + le(data.size(), 4) + le(name.size(), 2) +
                 le(0, 2) + le(0, 2) + le(0, 2) + le(0, 2) + le(0, 4) + le(offset, 4) + name;
  }
  return body + directory + le(0x06054b50, 4) + le(0, 2) + le(0, 2) + le(files.size(), 2) +
         le(files.size(), 2) + le(directory.size(), 4) + le(body.size(), 4) + le(0, 2);
}

std::string unicode(const std::string& text) {  // BINUNICODE
  return "X" + le(text.size(), 4) + text;
}

std::string float_bytes(const std::vector<float>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
}

// The pickle torch.save writes for a [2, 3] float tensor with requires_grad (A1111's
// embedding.vec) stored as data/0, memo indices as CPython assigns them from `memo`.
std::string tensor_pickle(int& memo) {
  auto put = [&] { return "q" + std::string(1, static_cast<char>(memo++)); };
  std::string p = "ctorch._utils\n_rebuild_tensor_v2\n" + put();
  p += "((" + unicode("storage") + put() + "ctorch\nFloatStorage\n" + put() + unicode("0") + put() +
       unicode("cpu") + put() + "K\x06" + "t" + put() + "Q";
  p += std::string("K\x00", 2);                               // storage offset
  p += std::string("K\x02K\x03\x86", 5) + put();              // size (2, 3)
  p += std::string("K\x03K\x01\x86", 5) + put();              // stride (3, 1)
  p += "\x88";                                                // requires_grad
  p += "ccollections\nOrderedDict\n" + put() + ")R" + put();  // backward hooks
  p += "t" + put() + "R" + put();
  return p;
}

// A1111's Embedding.save(): {"string_to_token": {"*": 265}, "string_to_param": {"*": vec},
// "name": ..., "step": ..., "sd_checkpoint": None, "sd_checkpoint_name": None}.
std::string a1111_embedding_pickle() {
  int memo = 0;
  auto put = [&] { return "q" + std::string(1, static_cast<char>(memo++)); };
  std::string p = "\x80\x02}" + put() + "(";
  p += unicode("string_to_token") + put() + "}" + put() + unicode("*") + put() + "M\x09\x01s";
  p += unicode("string_to_param") + put() + "}" + put() + "h\x03" + tensor_pickle(memo) + "s";
  p += unicode("name") + put() + unicode("face") + put();
  p += unicode("step") + put() + "Kd";
  p += unicode("sd_checkpoint") + put() + "N";
  p += unicode("sd_checkpoint_name") + put() + "Nu.";
  return p;
}

const std::vector<float> kValues = {0.5f, -1.25f, 2.0f, 3.5f, -0.75f, 1.0f};

std::string torch_file(const std::string& pickle, const std::string& storage) {
  return zip_archive({{"archive/data.pkl", pickle},
                      {"archive/byteorder", "little"},
                      {"archive/data/0", storage},
                      {"archive/version", "3\n"}});
}

at::Tensor expected_vectors() {
  return at::tensor(std::vector<float>(kValues)).reshape({2, 3});
}

TEST(TextualInversion, ReadsA1111PtFiles) {
  TextualInversionEmbedding embedding = parse_textual_inversion(
      torch_file(a1111_embedding_pickle(), float_bytes(kValues)), "face.pt");
  EXPECT_EQ(embedding.name, "face");
  ASSERT_EQ(embedding.vector_count(), 2);
  EXPECT_TRUE(at::equal(embedding.vectors, expected_vectors()));
  EXPECT_TRUE(at::equal(embedding.vectors_for_width(3), expected_vectors()));
}

// Old A1111/rinongal files pickled a torch.nn.ParameterDict module; A1111 reads its
// _parameters. The module object stays an inert attribute bag.
TEST(TextualInversion, ReadsParameterDictModules) {
  int memo = 0;
  auto put = [&] { return "q" + std::string(1, static_cast<char>(memo++)); };
  std::string p = "\x80\x02}" + put() + "(";
  p += unicode("string_to_param") + put();
  p += "ctorch.nn.modules.container\nParameterDict\n" + put() + ")\x81" + put() + "}" + put() +
       "(" + unicode("training") + put() + "\x88" + unicode("_parameters") + put() +
       "ccollections\nOrderedDict\n" + put() + ")R" + put() + unicode("*") + put() +
       "ctorch._utils\n_rebuild_parameter\n" + put() + tensor_pickle(memo) + "\x88" +
       "ccollections\nOrderedDict\n" + put() + ")R" + put() + "\x87" + put() + "R" + put() + "su" +
       "b";
  p += unicode("step") + put() + "K\x05u.";
  TextualInversionEmbedding embedding =
      parse_textual_inversion(torch_file(p, float_bytes(kValues)), "old.pt");
  EXPECT_TRUE(at::equal(embedding.vectors, expected_vectors()));
}

// libtorch's own torch.save-compatible writer is a second, independent producer.
TEST(TextualInversion, ReadsLibtorchPickleSave) {
  c10::Dict<std::string, at::Tensor> parameters;
  parameters.insert("*", expected_vectors());
  c10::impl::GenericDict root(c10::StringType::get(), c10::AnyType::get());
  root.insert("string_to_param", parameters);
  root.insert("name", std::string("face"));
  root.insert("step", int64_t{100});
  const std::vector<char> saved = torch::jit::pickle_save(root);
  TextualInversionEmbedding embedding =
      parse_textual_inversion(std::string(saved.begin(), saved.end()), "face.bin");
  EXPECT_TRUE(at::equal(embedding.vectors, expected_vectors()));

  c10::Dict<std::string, at::Tensor> concept_dict;  // diffusers: {"<token>": [768]}
  concept_dict.insert("<face>", at::arange(5, at::kFloat));
  const std::vector<char> concept_bytes = torch::jit::pickle_save(concept_dict);
  embedding = parse_textual_inversion(std::string(concept_bytes.begin(), concept_bytes.end()),
                                      "learned_embeds.bin");
  EXPECT_EQ(embedding.vectors.sizes(), (std::vector<int64_t>{1, 5}));
}

TEST(TextualInversion, ReadsSafetensorsLayouts) {
  at::Tensor table = expected_vectors();
  auto parse = [](const std::map<std::string, at::Tensor>& tensors, const std::string& name) {
    return parse_textual_inversion(serialize_safetensors(tensors), name);
  };
  EXPECT_TRUE(at::equal(parse({{"emb_params", table}}, "a.safetensors").vectors, table));
  EXPECT_TRUE(at::equal(parse({{"anything", table.to(at::kHalf)}}, "b.safetensors").vectors,
                        table.to(at::kHalf).to(at::kFloat)));
  EXPECT_TRUE(
      at::equal(parse({{"emb_params", table}, {"other", table}}, "c.safetensors").vectors, table));
  TextualInversionEmbedding sdxl =
      parse({{"clip_l", at::zeros({2, 768})}, {"clip_g", at::zeros({2, 1280})}}, "x.safetensors");
  EXPECT_FALSE(sdxl.vectors.defined());
  EXPECT_EQ(sdxl.vector_count(), 2);
  std::string message;
  EXPECT_EQ(code_of([&] { sdxl.vectors_for_width(768); }, &message), ErrorCode::kInvalidArgument);
  EXPECT_NE(message.find("SDXL"), std::string::npos) << message;
}

TEST(TextualInversion, WrongWidthNamesTheFileAndBothSizes) {
  TextualInversionEmbedding embedding = parse_textual_inversion(
      serialize_safetensors({{"emb_params", at::zeros({4, 1024})}}), "sd2style.safetensors");
  std::string message;
  EXPECT_EQ(code_of([&] { embedding.vectors_for_width(768); }, &message),
            ErrorCode::kInvalidArgument);
  EXPECT_NE(message.find("sd2style.safetensors"), std::string::npos) << message;
  EXPECT_NE(message.find("1024"), std::string::npos) << message;
  EXPECT_NE(message.find("768"), std::string::npos) << message;
}

TEST(TextualInversion, RejectsFilesThatAreNotEmbeddings) {
  const std::vector<std::pair<std::string, std::map<std::string, at::Tensor>>> bad = {
      {"two.safetensors", {{"a", at::zeros({1, 4})}, {"b", at::zeros({1, 4})}}},
      {"cube.safetensors", {{"emb_params", at::zeros({1, 2, 3})}}},
      {"ints.safetensors", {{"emb_params", at::zeros({1, 4}, at::kLong)}}},
      {"nan.safetensors", {{"emb_params", at::full({1, 4}, NAN)}}},
      {"mismatch.safetensors", {{"clip_l", at::zeros({1, 768})}, {"clip_g", at::zeros({2, 1280})}}},
  };
  for (const auto& [name, tensors] : bad)
    EXPECT_EQ(code_of([&] { parse_textual_inversion(serialize_safetensors(tensors), name); }),
              ErrorCode::kInvalidFile)
        << name;
  EXPECT_EQ(code_of([&] { parse_textual_inversion("abc", "x.txt"); }), ErrorCode::kUnsupported);
}

// Everything a pickle could use to run code, or to crash a naive reader, is refused.
TEST(TextualInversion, RestrictedPickleReaderRefusesHostileFiles) {
  const std::string storage = float_bytes(kValues);
  auto code = [&](const std::string& pickle) {
    return code_of([&] { parse_textual_inversion(torch_file(pickle, storage), "evil.pt"); });
  };
  // os.system("...") via GLOBAL + REDUCE, and via STACK_GLOBAL.
  EXPECT_EQ(code("\x80\x02"
                 "cos\nsystem\n" +
                 unicode("touch /tmp/pwned") + "\x85R."),
            ErrorCode::kUnsupported);
  EXPECT_EQ(code("\x80\x04" +
                 std::string("\x8c\x08"
                             "builtins\x8c\x04"
                             "eval\x93",
                             17) +
                 unicode("1") + "\x85R."),
            ErrorCode::kUnsupported);
  EXPECT_EQ(code("\x80\x02"
                 "ctorch\nload\n."),
            ErrorCode::kUnsupported);
  EXPECT_EQ(code("\x80\x02"
                 "ctorch.nn.modules.container\nParameterDict\n" +
                 unicode("x") + "\x85R" + "ctorch._utils\n_rebuild_tensor_v2\n" + "N\x85R."),
            ErrorCode::kInvalidFile);
  // Structural damage.
  EXPECT_EQ(code("\x80\x02}(u"), ErrorCode::kInvalidFile);  // no STOP
  EXPECT_EQ(code(std::string("\x80\x02]q\x00h\x00"
                             "a.",
                             8)),
            ErrorCode::kInvalidFile);  // a list inside itself
  EXPECT_EQ(code("\x80\x02"
                 "a."),
            ErrorCode::kInvalidFile);                          // stack underflow
  EXPECT_EQ(code("\x80\x02h\x07."), ErrorCode::kInvalidFile);  // memo miss
  std::string deep = "\x80\x02";
  for (int i = 0; i < 200; ++i) deep += "]";
  for (int i = 0; i < 199; ++i) deep += "a";
  EXPECT_EQ(code(deep + "."), ErrorCode::kInvalidFile);
  // A tensor view past its storage: 6 floats stored, [3, 3] requested.
  std::string oversized = a1111_embedding_pickle();
  oversized.replace(oversized.find(std::string("K\x02K\x03\x86", 5)), 5,
                    std::string("K\x03K\x03\x86", 5));
  EXPECT_EQ(code(oversized), ErrorCode::kInvalidFile);
  // Legacy (pre-zip) torch files and truncated archives.
  EXPECT_EQ(code_of([&] {
              parse_textual_inversion(std::string("\x80\x02\x8a\x0a"
                                                  "l\xfc\x9c"
                                                  "F\xf9 j\xa8P\x19."),
                                      "legacy.pt");
            }),
            ErrorCode::kUnsupported);
  const std::string good = torch_file(a1111_embedding_pickle(), storage);
  for (size_t cut : {size_t{10}, good.size() / 2, good.size() - 5})
    EXPECT_EQ(code_of([&] { parse_textual_inversion(good.substr(0, cut), "cut.pt"); }),
              ErrorCode::kInvalidFile)
        << cut;
}

TEST(TextualInversion, LibraryLoadsByStemOnFirstUse) {
  const fs::path folder = fs::temp_directory_path() / ("doppel_ti_" + std::to_string(::getpid()));
  fs::remove_all(folder);
  fs::create_directories(folder / "sub");
  save_safetensors(folder / "Face-Style.safetensors", {{"emb_params", expected_vectors()}});
  {
    std::ofstream out(folder / "sub" / "old.pt", std::ios::binary);
    out << torch_file(a1111_embedding_pickle(), float_bytes(kValues));
  }
  {
    std::ofstream broken(folder / "broken.bin", std::ios::binary);
    broken << "not a zip";
  }
  { std::ofstream empty(folder / "empty.pt"); }
  {
    std::ofstream other(folder / "notes.txt");
    other << "x";
  }
  TextualInversionLibrary library = TextualInversionLibrary::scan(folder);
  EXPECT_EQ(library.names(), (std::vector<std::string>{"Face-Style", "broken", "old"}));
  const TextualInversionEmbedding& face = library.get("Face-Style");
  EXPECT_TRUE(at::equal(face.vectors, expected_vectors()));
  EXPECT_EQ(face.short_hash.size(), 12u);
  EXPECT_TRUE(at::equal(library.get("old").vectors, expected_vectors()));
  EXPECT_EQ(code_of([&] { library.get("broken"); }), ErrorCode::kInvalidFile);
  EXPECT_EQ(code_of([&] { library.get("nope"); }), ErrorCode::kNotFound);
  EXPECT_TRUE(TextualInversionLibrary::scan(folder / "missing").empty());
  fs::remove_all(folder);
}

}  // namespace
}  // namespace doppel

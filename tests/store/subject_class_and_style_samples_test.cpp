// A subject's class word and the style cards' example images, on SQLite and PostgreSQL.
#include <gtest/gtest.h>

#include "doppel/core/error.hpp"
#include "doppel/store/blob_store.hpp"
#include "doppel/store/repository.hpp"
#include "doppel/store/style_samples.hpp"
#include "store/repository_fixture.hpp"
#include "support/database_backends.hpp"

namespace doppel::store {
namespace {

using test::Backend;

class SubjectClassAndStyleSamplesTest : public test::RepositoryFixture {
 protected:
  void SetUp() override {
    RepositoryFixture::SetUp();
    if (IsSkipped()) return;
    owner_ = repository_->create_account("owner@example.com", "Owner", "$argon2id$v=19$fake").id;
  }

  std::string owner_;
};

TEST_P(SubjectClassAndStyleSamplesTest, ClassWordIsStoredAtCreationAndUpdated) {
  const Subject plain = repository_->create_subject(owner_, "Sam", "ohwx");
  EXPECT_EQ(repository_->get_subject(owner_, plain.id)->class_word, "person");
  Subject girl = repository_->create_subject(owner_, "Mia", "ohwx", "girl");
  EXPECT_EQ(repository_->get_subject(owner_, girl.id)->class_word, "girl");
  girl.class_word = "woman";
  ASSERT_TRUE(repository_->update_subject(owner_, girl));
  EXPECT_EQ(repository_->get_subject(owner_, girl.id)->class_word, "woman");
  EXPECT_THROW(repository_->create_subject(owner_, "Nobody", "ohwx", ""), Error);
}

TEST_P(SubjectClassAndStyleSamplesTest, SamplesArePerModelReplacedBySeedAndKeepTheirBlobs) {
  const std::string first = sha256_hex("anime 1");
  const std::string second = sha256_hex("anime 2");
  put_style_sample(*database_, {"anime", "builtin", 2, second});
  put_style_sample(*database_, {"anime", "builtin", 1, first});
  put_style_sample(*database_, {"noir", "other-model", 1, sha256_hex("noir")});
  std::vector<StyleSample> samples = list_style_samples(*database_, "builtin");
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(samples[0].seed, 1);
  EXPECT_EQ(samples[0].blob_sha256, first);
  EXPECT_GT(samples[0].created_at, 0);
  // The same style, model and seed made again replaces the blob.
  const std::string remade = sha256_hex("anime 1 again");
  put_style_sample(*database_, {"anime", "builtin", 1, remade});
  samples = list_style_samples(*database_, "builtin");
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(samples[0].blob_sha256, remade);
  EXPECT_TRUE(list_style_samples(*database_, "a-model-never-used").empty());
  // The blob garbage collector keeps what the samples show.
  const std::vector<std::string> referenced = repository_->referenced_blobs();
  for (const std::string& digest : {remade, second})
    EXPECT_TRUE(std::binary_search(referenced.begin(), referenced.end(), digest)) << digest;
  EXPECT_THROW(put_style_sample(*database_, {"", "builtin", 1, first}), Error);
  EXPECT_THROW(put_style_sample(*database_, {"anime", "builtin", 1, ""}), Error);
}

INSTANTIATE_TEST_SUITE_P(Backends, SubjectClassAndStyleSamplesTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         test::backend_name);

}  // namespace
}  // namespace doppel::store

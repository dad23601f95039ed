// The sample images of a training run, on SQLite and PostgreSQL: kept per LoRA version and
// account, replaced when a resumed run makes a step's sample again, referenced for the blob
// garbage collector, counted in the LoRAs' storage, and deleted with the version, the person
// and the account.
#include <gtest/gtest.h>

#include <algorithm>

#include "doppel/core/error.hpp"
#include "doppel/store/blob_store.hpp"
#include "doppel/store/repository.hpp"
#include "doppel/store/training_samples.hpp"
#include "store/repository_fixture.hpp"
#include "support/database_backends.hpp"

namespace doppel::store {
namespace {

using test::Backend;

bool contains(const std::vector<std::string>& digests, const std::string& digest) {
  return std::find(digests.begin(), digests.end(), digest) != digests.end();
}

class TrainingSamplesTest : public test::RepositoryFixture {
 protected:
  void SetUp() override {
    RepositoryFixture::SetUp();
    if (IsSkipped()) return;
    owner_ = repository_->create_account("owner@example.com", "Owner", "$argon2id$v=19$fake").id;
    other_ = repository_->create_account("other@example.com", "Other", "$argon2id$v=19$fake").id;
    subject_ = repository_->create_subject(owner_, "Ada", "ohwx").id;
  }

  LoraVersion new_version() {
    LoraVersion version;
    version.subject_id = subject_;
    return repository_->add_lora_version(owner_, version);
  }

  std::string owner_, other_, subject_;
};

TEST_P(TrainingSamplesTest, AreListedByStepForTheirAccountOnlyAndReplacedWhenMadeAgain) {
  const LoraVersion version = new_version();
  const std::string step5 = sha256_hex("step 5"), step10 = sha256_hex("step 10");
  put_training_sample(*database_, owner_, {version.id, 10, 0, step10});
  const TrainingSample stored = put_training_sample(*database_, owner_, {version.id, 5, 0, step5});
  EXPECT_GT(stored.created_at, 0);
  std::vector<TrainingSample> samples = list_training_samples(*database_, owner_, version.id);
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(samples[0].step, 5);
  EXPECT_EQ(samples[0].blob_sha256, step5);
  EXPECT_EQ(samples[1].step, 10);
  // A resumed run makes step 10's sample again: it replaces the first.
  const std::string again = sha256_hex("step 10 again");
  put_training_sample(*database_, owner_, {version.id, 10, 0, again});
  samples = list_training_samples(*database_, owner_, version.id);
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(samples[1].blob_sha256, again);
  // Another account neither sees them nor adds to them.
  EXPECT_TRUE(list_training_samples(*database_, other_, version.id).empty());
  try {
    put_training_sample(*database_, other_, {version.id, 15, 0, sha256_hex("x")});
    FAIL() << "another account's version took a sample";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kNotFound);
  }
  EXPECT_EQ(list_training_samples(*database_, owner_, version.id).size(), 2u);
  EXPECT_TRUE(list_training_samples(*database_, owner_, "no-such-version").empty());
  for (const TrainingSample& bad :
       {TrainingSample{"", 5, 0, step5}, TrainingSample{version.id, 5, 0, ""},
        TrainingSample{version.id, -1, 0, step5}, TrainingSample{version.id, 5, -1, step5}}) {
    try {
      put_training_sample(*database_, owner_, bad);
      FAIL() << "accepted a bad sample at step " << bad.step;
    } catch (const Error& error) {
      EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
    }
  }
}

TEST_P(TrainingSamplesTest, AreReferencedCountedAndGoWithTheirVersionPersonAndAccount) {
  const LoraVersion first = new_version();
  const LoraVersion second = new_version();
  const std::string only_first = sha256_hex("only first"), shared = sha256_hex("shared");
  put_training_sample(*database_, owner_, {first.id, 5, 0, only_first});
  put_training_sample(*database_, owner_, {first.id, 10, 0, shared});
  put_training_sample(*database_, owner_, {second.id, 5, 0, shared});
  const std::vector<std::string> referenced = repository_->referenced_blobs();
  EXPECT_TRUE(std::binary_search(referenced.begin(), referenced.end(), only_first));
  EXPECT_TRUE(std::binary_search(referenced.begin(), referenced.end(), shared));
  const StorageUse use = repository_->storage_use(owner_);
  EXPECT_TRUE(contains(use.loras.blobs, only_first));
  EXPECT_TRUE(contains(use.loras.blobs, shared));
  EXPECT_TRUE(repository_->storage_use(other_).loras.blobs.empty());

  // Deleting a version takes its samples; a blob another version still shows stays.
  Deletion deletion = repository_->delete_lora_version(owner_, first.id);
  EXPECT_TRUE(deletion.found);
  EXPECT_TRUE(contains(deletion.orphaned_blobs, only_first));
  EXPECT_FALSE(contains(deletion.orphaned_blobs, shared));
  EXPECT_TRUE(list_training_samples(*database_, owner_, first.id).empty());
  EXPECT_EQ(list_training_samples(*database_, owner_, second.id).size(), 1u);

  // Deleting the person takes the rest.
  deletion = repository_->delete_subject(owner_, subject_);
  EXPECT_TRUE(contains(deletion.orphaned_blobs, shared));
  EXPECT_TRUE(list_training_samples(*database_, owner_, second.id).empty());
  const std::vector<std::string> left = repository_->referenced_blobs();
  EXPECT_FALSE(std::binary_search(left.begin(), left.end(), shared));

  // And deleting an account names its samples' blobs too.
  subject_ = repository_->create_subject(owner_, "Bea", "ohwx").id;
  const LoraVersion third = new_version();
  const std::string last = sha256_hex("last");
  put_training_sample(*database_, owner_, {third.id, 5, 0, last});
  deletion = repository_->delete_account(owner_);
  EXPECT_TRUE(contains(deletion.orphaned_blobs, last));
}

INSTANTIATE_TEST_SUITE_P(Backends, TrainingSamplesTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         test::backend_name);

}  // namespace
}  // namespace doppel::store

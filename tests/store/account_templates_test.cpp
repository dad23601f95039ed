// An account's uploaded portrait templates, on SQLite and PostgreSQL: isolation between
// accounts, deletion, and their pictures kept by the blob garbage collection.
#include <gtest/gtest.h>

#include <algorithm>

#include "doppel/core/error.hpp"
#include "doppel/store/account_templates.hpp"
#include "doppel/store/blob_store.hpp"
#include "doppel/store/repository.hpp"
#include "store/repository_fixture.hpp"
#include "support/database_backends.hpp"

namespace doppel::store {
namespace {

using test::Backend;

class AccountTemplatesTest : public test::RepositoryFixture {
 protected:
  void SetUp() override {
    RepositoryFixture::SetUp();
    if (IsSkipped()) return;
    owner_ = repository_->create_account("a@example.com", "A", "$argon2id$v=19$fake").id;
    other_ = repository_->create_account("b@example.com", "B", "$argon2id$v=19$fake").id;
  }

  AccountTemplate add(const std::string& account, const std::string& name,
                      const std::string& picture) {
    return add_account_template(*database_,
                                {"", account, name, sha256_hex(picture), R"({"id":"x"})", 0});
  }

  bool referenced(const std::string& digest) {
    const auto all = repository_->referenced_blobs();
    return std::binary_search(all.begin(), all.end(), digest);
  }

  std::string owner_;
  std::string other_;
};

TEST_P(AccountTemplatesTest, EachAccountSeesOnlyItsOwn) {
  const AccountTemplate beach = add(owner_, "Beach", "beach picture");
  const AccountTemplate park = add(owner_, "Park", "park picture");
  add(other_, "Office", "office picture");
  EXPECT_EQ(beach.id.size(), 32u);
  EXPECT_GT(beach.created_at, 0);
  const auto mine = list_account_templates(*database_, owner_);
  ASSERT_EQ(mine.size(), 2u);
  EXPECT_EQ(mine[0].name, "Beach");
  EXPECT_EQ(mine[1].id, park.id);
  EXPECT_EQ(mine[0].picture_blob, sha256_hex("beach picture"));
  EXPECT_TRUE(get_account_template(*database_, owner_, beach.id));
  EXPECT_FALSE(get_account_template(*database_, other_, beach.id));
  // Another account cannot delete it either.
  EXPECT_FALSE(delete_account_template(*database_, *repository_, other_, beach.id).found);
  EXPECT_TRUE(get_account_template(*database_, owner_, beach.id));
}

TEST_P(AccountTemplatesTest, RefusesEmptyFieldsAndUnknownAccounts) {
  EXPECT_THROW(add(owner_, "", "picture"), Error);
  EXPECT_THROW(add_account_template(*database_, {"", owner_, "Name", "", "{}", 0}), Error);
  EXPECT_THROW(add(new_random_id(), "Name", "picture"), Error);
}

TEST_P(AccountTemplatesTest, PictureIsReferencedUntilItsLastTemplateGoes) {
  const AccountTemplate first = add(owner_, "Beach", "shared picture");
  const AccountTemplate second = add(other_, "Same beach", "shared picture");
  const std::string digest = sha256_hex("shared picture");
  EXPECT_TRUE(referenced(digest));
  Deletion deletion = delete_account_template(*database_, *repository_, owner_, first.id);
  EXPECT_TRUE(deletion.found);
  EXPECT_TRUE(deletion.orphaned_blobs.empty());  // B still uses it
  EXPECT_TRUE(referenced(digest));
  deletion = delete_account_template(*database_, *repository_, other_, second.id);
  ASSERT_EQ(deletion.orphaned_blobs.size(), 1u);
  EXPECT_EQ(deletion.orphaned_blobs[0], digest);
  EXPECT_FALSE(referenced(digest));
}

TEST_P(AccountTemplatesTest, DeletingTheAccountOrphansItsPictures) {
  add(owner_, "Beach", "beach picture");
  const Deletion deletion = repository_->delete_account(owner_);
  EXPECT_TRUE(deletion.found);
  EXPECT_NE(std::find(deletion.orphaned_blobs.begin(), deletion.orphaned_blobs.end(),
                      sha256_hex("beach picture")),
            deletion.orphaned_blobs.end());
  EXPECT_TRUE(list_account_templates(*database_, owner_).empty());
}

INSTANTIATE_TEST_SUITE_P(Backends, AccountTemplatesTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         test::backend_name);

}  // namespace
}  // namespace doppel::store

// The repository suite, run against SQLite and a real PostgreSQL server alike.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <thread>

#include "doppel/core/error.hpp"
#include "doppel/store/blob_garbage.hpp"
#include "doppel/store/blob_store.hpp"
#include "doppel/store/migrations.hpp"
#include "doppel/store/repository.hpp"
#include "store/repository_fixture.hpp"
#include "support/database_backends.hpp"

namespace doppel::store {
namespace {

using test::Backend;

class RepositoryTest : public test::RepositoryFixture {
 protected:
  int64_t count(const std::string& sql, const std::vector<SqlValue>& parameters = {}) {
    return database_->execute(sql, parameters).rows.at(0).integer(0);
  }

  Account account(const std::string& email) {
    return repository_->create_account(email, "Name of " + email, "$argon2id$v=19$fake");
  }
};

std::string digest(const std::string& seed) {
  return sha256_hex(seed);
}

TEST_P(RepositoryTest, FreshDatabaseIsMigratedAndReopeningAppliesNothing) {
  EXPECT_EQ(current_schema_version(*database_), latest_schema_version());
  EXPECT_EQ(count("SELECT COUNT(*) FROM schema_migrations"),
            static_cast<int64_t>(builtin_migrations().size()));
  for (const char* table : {"accounts", "sessions", "api_tokens", "subjects", "photos",
                            "lora_versions", "shoots", "images", "jobs"})
    EXPECT_EQ(count(std::string("SELECT COUNT(*) FROM ") + table), 0) << table;

  Account kept = account("kept@example.com");
  auto reopened = open_database(url_);
  EXPECT_EQ(migrate(*reopened), latest_schema_version());
  EXPECT_EQ(count("SELECT COUNT(*) FROM schema_migrations"),
            static_cast<int64_t>(builtin_migrations().size()));
  EXPECT_TRUE(make_repository(reopened)->get_account(kept.id).has_value());
}

TEST_P(RepositoryTest, NewerSchemaThanTheBinaryIsAClearError) {
  database_->execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                     {latest_schema_version() + 1, std::string("9999_future"), int64_t{0}});
  try {
    open_database(url_);
    FAIL() << "opening a newer schema must fail";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(error.what()).find("newer"), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find(std::to_string(latest_schema_version() + 1)),
              std::string::npos)
        << error.what();
  }
}

// Several processes starting at once against a fresh database migrate it exactly once.
TEST_P(RepositoryTest, ConcurrentFirstOpensMigrateOnce) {
  test::TempDir other_folder;
  std::string reason;
  std::string url = *test::new_test_database(GetParam(), other_folder.path(), reason);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int index = 0; index < 4; ++index)
    threads.emplace_back([&] {
      try {
        open_database(url);
      } catch (const std::exception& error) {
        ++failures;
        ADD_FAILURE() << error.what();
      }
    });
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(
      open_database(url)->execute("SELECT COUNT(*) FROM schema_migrations", {}).rows[0].integer(0),
      static_cast<int64_t>(builtin_migrations().size()));
}

TEST_P(RepositoryTest, FailedTransactionLeavesNothingBehind) {
  EXPECT_THROW(database_->transaction([&] {
    account("first@example.com");
    throw Error(ErrorCode::kInternal, "boom");
  }),
               Error);
  EXPECT_EQ(repository_->count_accounts(), 0);
}

TEST_P(RepositoryTest, AccountsAreUniqueByEmailAndIdsAreRandomHex) {
  Account first = account("a@example.com");
  EXPECT_EQ(first.id.size(), 32u);
  EXPECT_EQ(first.id.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_NE(first.id, account("b@example.com").id);
  try {
    account("a@example.com");
    FAIL() << "duplicate email accepted";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
  }
  EXPECT_EQ(repository_->count_accounts(), 2);
  ASSERT_TRUE(repository_->find_account_by_email("a@example.com"));
  EXPECT_EQ(repository_->find_account_by_email("a@example.com")->id, first.id);
  EXPECT_FALSE(repository_->find_account_by_email("nobody@example.com"));
  EXPECT_TRUE(repository_->update_password_hash(first.id, "$argon2id$new"));
  EXPECT_EQ(repository_->get_account(first.id)->password_hash, "$argon2id$new");
}

TEST_P(RepositoryTest, SessionsAndTokensAreFoundByHashUntilTheyExpire) {
  Account owner = account("owner@example.com");
  Account other = account("other@example.com");
  Session session =
      repository_->create_session({"", owner.id, "session-hash", "csrf-secret", 0, 5000});
  EXPECT_TRUE(repository_->find_session("session-hash", 4999));
  EXPECT_EQ(repository_->find_session("session-hash", 4999)->csrf_secret, "csrf-secret");
  EXPECT_FALSE(repository_->find_session("session-hash", 5000));
  EXPECT_FALSE(repository_->delete_session(other.id, session.id));
  EXPECT_EQ(repository_->delete_expired_sessions(6000), 1);

  ApiToken forever = repository_->create_api_token({"", owner.id, "cli", "token-hash", 0, {}});
  repository_->create_api_token({"", owner.id, "short", "short-hash", 0, int64_t{100}});
  EXPECT_TRUE(repository_->find_api_token("token-hash", int64_t{1} << 50));
  EXPECT_FALSE(repository_->find_api_token("short-hash", 100));
  EXPECT_EQ(repository_->list_api_tokens(owner.id).size(), 2u);
  EXPECT_TRUE(repository_->list_api_tokens(other.id).empty());
  EXPECT_FALSE(repository_->delete_api_token(other.id, forever.id));
  EXPECT_TRUE(repository_->delete_api_token(owner.id, forever.id));
  EXPECT_FALSE(repository_->find_api_token("token-hash", 0));
}

// Account B sees none of account A's rows through any call, and cannot change them.
TEST_P(RepositoryTest, AnotherAccountCannotReadListUpdateOrDeleteRows) {
  Account alice = account("alice@example.com");
  Account bob = account("bob@example.com");
  Subject subject = repository_->create_subject(alice.id, "Alice", "ohwx");
  Photo photo = repository_->add_photo(alice.id, {"", "", subject.id, digest("p"), 10});
  LoraVersion lora = repository_->add_lora_version(alice.id, {"", "", subject.id, digest("l")});
  Shoot shoot = repository_->create_shoot(alice.id, {"", "", subject.id, "[\"noir\"]", 4});
  Image image = repository_->add_image(alice.id, {"", "", shoot.id, digest("i")});

  EXPECT_FALSE(repository_->get_subject(bob.id, subject.id));
  EXPECT_FALSE(repository_->get_photo(bob.id, photo.id));
  EXPECT_FALSE(repository_->get_lora_version(bob.id, lora.id));
  EXPECT_FALSE(repository_->get_shoot(bob.id, shoot.id));
  EXPECT_FALSE(repository_->get_image(bob.id, image.id));

  EXPECT_TRUE(repository_->list_subjects(bob.id).empty());
  EXPECT_TRUE(repository_->list_photos(bob.id, subject.id).empty());
  EXPECT_TRUE(repository_->list_lora_versions(bob.id, subject.id).empty());
  EXPECT_TRUE(repository_->list_shoots(bob.id, subject.id).empty());
  EXPECT_TRUE(repository_->list_shoots(bob.id, "").empty());
  EXPECT_TRUE(repository_->list_images(bob.id, shoot.id).empty());

  Subject renamed = subject;
  renamed.name = "stolen";
  EXPECT_FALSE(repository_->update_subject(bob.id, renamed));
  EXPECT_FALSE(
      repository_->update_photo_verdict(bob.id, photo.id, PhotoVerdict::kRejected, "[]", {}));
  LoraVersion changed = lora;
  changed.status = LoraStatus::kFailed;
  EXPECT_FALSE(repository_->update_lora_version(bob.id, changed));
  EXPECT_FALSE(repository_->update_shoot_status(bob.id, shoot.id, ShootStatus::kDone));
  EXPECT_FALSE(repository_->set_image_favourite(bob.id, image.id, true));
  EXPECT_FALSE(repository_->set_image_scores(bob.id, image.id, 0.0, 0.0));

  // Attaching rows to another account's parent is "not found", too.
  for (auto attempt : std::vector<std::function<void()>>{
           [&] {
             repository_->add_photo(bob.id, {"", "", subject.id, digest("x"), 1});
           },
           [&] {
             repository_->add_lora_version(bob.id, {"", "", subject.id});
           },
           [&] {
             repository_->create_shoot(bob.id, {"", "", subject.id});
           },
           [&] {
             repository_->add_image(bob.id, {"", "", shoot.id, digest("y")});
           }}) {
    try {
      attempt();
      ADD_FAILURE() << "a row was attached to another account's parent";
    } catch (const Error& error) {
      EXPECT_EQ(error.code(), ErrorCode::kNotFound);
    }
  }

  EXPECT_FALSE(repository_->delete_image(bob.id, image.id).found);
  EXPECT_FALSE(repository_->delete_shoot(bob.id, shoot.id).found);
  EXPECT_FALSE(repository_->delete_lora_version(bob.id, lora.id).found);
  EXPECT_FALSE(repository_->delete_photo(bob.id, photo.id).found);
  Deletion denied = repository_->delete_subject(bob.id, subject.id);
  EXPECT_FALSE(denied.found);
  EXPECT_TRUE(denied.orphaned_blobs.empty());

  // Everything of Alice's is still there and unchanged.
  EXPECT_EQ(repository_->get_subject(alice.id, subject.id)->name, "Alice");
  EXPECT_EQ(repository_->get_photo(alice.id, photo.id)->verdict, PhotoVerdict::kPending);
  EXPECT_EQ(repository_->get_lora_version(alice.id, lora.id)->status, LoraStatus::kQueued);
  EXPECT_EQ(repository_->get_shoot(alice.id, shoot.id)->status, ShootStatus::kQueued);
  EXPECT_FALSE(repository_->get_image(alice.id, image.id)->favourite);
  EXPECT_EQ(repository_->list_images(alice.id, shoot.id).size(), 1u);
}

TEST_P(RepositoryTest, RecordsRoundTripAndUpdate) {
  Account owner = account("owner@example.com");
  Subject subject = repository_->create_subject(owner.id, "Me", "sks person");
  subject.status = SubjectStatus::kTrained;
  subject.face_profile_blob = digest("profile");
  ASSERT_TRUE(repository_->update_subject(owner.id, subject));
  Subject loaded = *repository_->get_subject(owner.id, subject.id);
  EXPECT_EQ(loaded.trigger_word, "sks person");
  EXPECT_EQ(loaded.status, SubjectStatus::kTrained);
  EXPECT_EQ(loaded.face_profile_blob, digest("profile"));

  Photo photo = repository_->add_photo(owner.id, {"", "", subject.id, digest("photo"), 123456});
  ASSERT_TRUE(repository_->update_photo_verdict(owner.id, photo.id, PhotoVerdict::kRejected,
                                                R"(["blurry","two faces"])", digest("crop")));
  Photo stored = *repository_->get_photo(owner.id, photo.id);
  EXPECT_EQ(stored.original_size, 123456);
  EXPECT_EQ(stored.reasons_json, R"(["blurry","two faces"])");
  EXPECT_EQ(stored.crop_blob, digest("crop"));

  LoraVersion lora = repository_->add_lora_version(
      owner.id, {"", "", subject.id, std::nullopt, R"({"rank":8,"steps":400})"});
  lora.blob_sha256 = digest("lora");
  lora.validation_likeness = 0.8125;
  lora.status = LoraStatus::kReady;
  ASSERT_TRUE(repository_->update_lora_version(owner.id, lora));
  LoraVersion trained = *repository_->get_lora_version(owner.id, lora.id);
  EXPECT_EQ(trained.blob_sha256, digest("lora"));
  EXPECT_DOUBLE_EQ(*trained.validation_likeness, 0.8125);
  EXPECT_EQ(trained.settings_json, R"({"rank":8,"steps":400})");

  std::string recipe =
      R"({"model_hash":"abc","prompt":"portrait","seed":42,"sampler":"euler","steps":20,)"
      R"("guidance":7.5,"loras":[{"name":"me","weight":0.8}]})";
  Shoot shoot = repository_->create_shoot(owner.id, {"", "", subject.id, R"(["id-photo"])", 2});
  Image image = repository_->add_image(
      owner.id, {"", "", shoot.id, digest("img"), recipe, 0.123456789012345678, 0.5});
  Image read = *repository_->get_image(owner.id, image.id);
  EXPECT_EQ(read.recipe_json, recipe);
  EXPECT_DOUBLE_EQ(*read.likeness, 0.123456789012345678);  // full double precision survives
  EXPECT_EQ(repository_->list_shoots(owner.id, "").size(), 1u);
}

TEST_P(RepositoryTest, ImagesAreRankedBestFirst) {
  Account owner = account("owner@example.com");
  Subject subject = repository_->create_subject(owner.id, "Me", "ohwx");
  Shoot shoot = repository_->create_shoot(owner.id, {"", "", subject.id, "[]", 4});
  Image unscored = repository_->add_image(owner.id, {"", "", shoot.id, digest("1")});
  Image good = repository_->add_image(owner.id, {"", "", shoot.id, digest("2"), "{}", 0.9, 0.1});
  Image poor = repository_->add_image(owner.id, {"", "", shoot.id, digest("3"), "{}", 0.2, 0.9});
  Image loved = repository_->add_image(owner.id, {"", "", shoot.id, digest("4"), "{}", 0.1, 0.1});
  ASSERT_TRUE(repository_->set_image_favourite(owner.id, loved.id, true));
  std::vector<Image> ranked = repository_->list_images(owner.id, shoot.id);
  ASSERT_EQ(ranked.size(), 4u);
  EXPECT_EQ(ranked[0].id, loved.id);
  EXPECT_EQ(ranked[1].id, good.id);
  EXPECT_EQ(ranked[2].id, poor.id);
  EXPECT_EQ(ranked[3].id, unscored.id);
}

TEST_P(RepositoryTest, InvalidJsonAndEmptyNamesAreRejected) {
  Account owner = account("owner@example.com");
  Subject subject = repository_->create_subject(owner.id, "Me", "ohwx");
  EXPECT_THROW(repository_->create_subject(owner.id, "", "x"), Error);
  EXPECT_THROW(repository_->add_photo(owner.id, {"", "", subject.id, digest("p"), 1,
                                                 PhotoVerdict::kPending, "not json"}),
               Error);
  EXPECT_THROW(repository_->create_shoot(owner.id, {"", "", subject.id, "[unclosed"}), Error);
  EXPECT_TRUE(repository_->list_photos(owner.id, subject.id).empty());
  EXPECT_TRUE(repository_->list_shoots(owner.id, subject.id).empty());
}

TEST_P(RepositoryTest, SqlInjectionLookingStringsAreStoredVerbatim) {
  const std::string nasty = "Robert'); DROP TABLE subjects; -- ? $1 \" \\ ' OR '1'='1";
  Account owner = account(nasty + "@example.com");
  Subject subject = repository_->create_subject(owner.id, nasty, "? ?? $2");
  EXPECT_EQ(repository_->get_subject(owner.id, subject.id)->name, nasty);
  EXPECT_EQ(repository_->get_subject(owner.id, subject.id)->trigger_word, "? ?? $2");
  EXPECT_EQ(repository_->find_account_by_email(nasty + "@example.com")->id, owner.id);
  EXPECT_FALSE(repository_->get_subject(owner.id, "' OR '1'='1"));
  EXPECT_FALSE(repository_->get_subject("' OR '1'='1", subject.id));
  std::string json = R"({"prompt":"'); DELETE FROM images; --"})";
  Shoot shoot = repository_->create_shoot(owner.id, {"", "", subject.id, "[]", 1});
  Image image = repository_->add_image(owner.id, {"", "", shoot.id, digest("n"), json});
  EXPECT_EQ(repository_->get_image(owner.id, image.id)->recipe_json, json);
  EXPECT_EQ(count("SELECT COUNT(*) FROM subjects"), 1);
}

// Deleting a subject removes its photos, LoRAs, shoots, images and jobs, and reports the
// blobs only it used; after the caller deletes those, nothing of the subject remains.
TEST_P(RepositoryTest, DeletingASubjectLeavesNothingInTheDatabaseOrOnDisk) {
  BlobStore blobs(folder_.path() / "blobs");
  Account owner = account("owner@example.com");
  Account stranger = account("stranger@example.com");
  Subject doomed = repository_->create_subject(owner.id, "Doomed", "ohwx");
  Subject kept = repository_->create_subject(owner.id, "Kept", "sks");
  Subject strangers = repository_->create_subject(stranger.id, "Stranger", "zzz");

  std::string shared = blobs.put("a photo both subjects use");
  std::string stranger_copy = blobs.put("the same upload by another account");
  std::vector<std::string> own = {blobs.put("profile"), blobs.put("photo-1"), blobs.put("crop-1"),
                                  blobs.put("photo-2"), blobs.put("lora"),    blobs.put("image-1"),
                                  blobs.put("image-2")};
  doomed.face_profile_blob = own[0];
  ASSERT_TRUE(repository_->update_subject(owner.id, doomed));
  repository_->add_photo(owner.id,
                         {"", "", doomed.id, own[1], 7, PhotoVerdict::kAccepted, "[]", own[2]});
  repository_->add_photo(owner.id, {"", "", doomed.id, own[3], 7});
  repository_->add_photo(owner.id, {"", "", doomed.id, shared, 7});
  repository_->add_photo(owner.id, {"", "", doomed.id, stranger_copy, 7});
  repository_->add_photo(owner.id, {"", "", kept.id, shared, 7});
  repository_->add_photo(stranger.id, {"", "", strangers.id, stranger_copy, 7});
  repository_->add_lora_version(owner.id, {"", "", doomed.id, own[4]});
  Shoot shoot = repository_->create_shoot(owner.id, {"", "", doomed.id, "[]", 2});
  repository_->add_image(owner.id, {"", "", shoot.id, own[5]});
  repository_->add_image(owner.id, {"", "", shoot.id, own[6]});
  database_->execute(
      "INSERT INTO jobs (id, account_id, subject_id, kind, payload_json, status, max_attempts, "
      "available_at, created_at, updated_at) VALUES (?, ?, ?, 'train', '{}', 'queued', 3, 0, 0, 0)",
      {new_random_id(), owner.id, doomed.id});

  Deletion deletion = repository_->delete_subject(owner.id, doomed.id);
  EXPECT_TRUE(deletion.found);
  std::vector<std::string> orphaned = deletion.orphaned_blobs;
  std::sort(orphaned.begin(), orphaned.end());
  std::vector<std::string> expected = own;
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(orphaned, expected);  // neither the shared nor the other account's blob
  for (const std::string& hash : deletion.orphaned_blobs) EXPECT_TRUE(blobs.remove(hash));

  EXPECT_EQ(count("SELECT COUNT(*) FROM subjects WHERE id = ?", {doomed.id}), 0);
  for (const char* table : {"photos", "lora_versions", "shoots", "jobs"})
    EXPECT_EQ(
        count(std::string("SELECT COUNT(*) FROM ") + table + " WHERE subject_id = ?", {doomed.id}),
        0)
        << table;
  EXPECT_EQ(count("SELECT COUNT(*) FROM images WHERE shoot_id = ?", {shoot.id}), 0);
  for (const std::string& hash : own) {
    EXPECT_FALSE(blobs.exists(hash));
    EXPECT_FALSE(std::filesystem::exists(blobs.path_of(hash)));
  }
  // What is left on disk is exactly what the remaining rows reference.
  std::vector<std::string> on_disk;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(blobs.root()))
    if (entry.is_regular_file())
      on_disk.push_back(entry.path().parent_path().filename().string() +
                        entry.path().filename().string());
  std::sort(on_disk.begin(), on_disk.end());
  EXPECT_EQ(on_disk, repository_->referenced_blobs());
  EXPECT_EQ(blobs.get(shared), "a photo both subjects use");
  EXPECT_EQ(repository_->list_photos(owner.id, kept.id).size(), 1u);
  EXPECT_EQ(repository_->list_photos(stranger.id, strangers.id).size(), 1u);
}

TEST_P(RepositoryTest, DeletingAnAccountRemovesEverythingItOwned) {
  Account owner = account("owner@example.com");
  Account other = account("other@example.com");
  Subject subject = repository_->create_subject(owner.id, "Me", "ohwx");
  repository_->add_photo(owner.id, {"", "", subject.id, digest("mine"), 1});
  repository_->create_session({"", owner.id, "hash", "csrf", 0, 1});
  repository_->create_api_token({"", owner.id, "t", "token", 0, {}});
  Subject others = repository_->create_subject(other.id, "Other", "sks");
  repository_->add_photo(other.id, {"", "", others.id, digest("theirs"), 1});

  Deletion deletion = repository_->delete_account(owner.id);
  EXPECT_TRUE(deletion.found);
  EXPECT_EQ(deletion.orphaned_blobs, std::vector<std::string>{digest("mine")});
  for (const char* table : {"sessions", "api_tokens", "subjects", "photos", "jobs"})
    EXPECT_EQ(
        count(std::string("SELECT COUNT(*) FROM ") + table + " WHERE account_id = ?", {owner.id}),
        0)
        << table;
  EXPECT_FALSE(repository_->get_account(owner.id));
  EXPECT_EQ(repository_->list_photos(other.id, others.id).size(), 1u);
  EXPECT_FALSE(repository_->delete_account(owner.id).found);
}

TEST_P(RepositoryTest, DeletingSingleRowsReportsTheirBlobs) {
  Account owner = account("owner@example.com");
  Subject subject = repository_->create_subject(owner.id, "Me", "ohwx");
  Photo photo = repository_->add_photo(
      owner.id, {"", "", subject.id, digest("p"), 1, PhotoVerdict::kAccepted, "[]", digest("c")});
  repository_->add_photo(owner.id, {"", "", subject.id, digest("c"), 1});  // crop reused
  Deletion deletion = repository_->delete_photo(owner.id, photo.id);
  EXPECT_TRUE(deletion.found);
  EXPECT_EQ(deletion.orphaned_blobs, std::vector<std::string>{digest("p")});
  Shoot shoot = repository_->create_shoot(owner.id, {"", "", subject.id, "[]", 1});
  repository_->add_image(owner.id, {"", "", shoot.id, digest("i")});
  EXPECT_EQ(repository_->delete_shoot(owner.id, shoot.id).orphaned_blobs,
            std::vector<std::string>{digest("i")});
  EXPECT_EQ(count("SELECT COUNT(*) FROM images"), 0);
}

TEST_P(RepositoryTest, ModelsRegistryKeepsExactlyOneDefault) {
  const std::vector<Model> fresh = repository_->list_models();
  ASSERT_EQ(fresh.size(), 1u);
  EXPECT_EQ(fresh[0].id, kBuiltinModelId);
  EXPECT_EQ(fresh[0].name, "doppel-tiny-demo");
  EXPECT_EQ(fresh[0].path, "");
  EXPECT_TRUE(fresh[0].builtin);
  EXPECT_TRUE(fresh[0].is_default);
  EXPECT_EQ(repository_->default_model().id, kBuiltinModelId);

  Model sd15 = repository_->add_model({"", "sd15", "/models/sd15.safetensors", "sd1", "epsilon"});
  Model sd21 = repository_->add_model({"", "sd21", "/models/sd21", "sd2", "v_prediction"});
  EXPECT_EQ(sd15.id.size(), 32u);
  EXPECT_FALSE(sd15.is_default);
  EXPECT_GT(sd15.added_at, 0);
  EXPECT_THROW(repository_->add_model({"", "again", "/models/sd15.safetensors"}), Error);
  EXPECT_THROW(repository_->add_model({"", "no path", ""}), Error);
  EXPECT_EQ(repository_->find_model_by_path("/models/sd21")->prediction, "v_prediction");
  EXPECT_FALSE(repository_->find_model_by_path("/models/none").has_value());

  ASSERT_TRUE(repository_->set_default_model(sd21.id));
  ASSERT_TRUE(repository_->set_default_model(sd15.id));
  EXPECT_FALSE(repository_->set_default_model(std::string(32, 'f')));
  EXPECT_EQ(count("SELECT COUNT(*) FROM models WHERE is_default = 1"), 1);
  EXPECT_EQ(repository_->default_model().id, sd15.id);
  // The database itself refuses a second default.
  EXPECT_THROW(database_->execute("UPDATE models SET is_default = 1 WHERE id = ?", {sd21.id}),
               Error);

  EXPECT_FALSE(repository_->delete_model(sd15.id));  // the default
  EXPECT_FALSE(repository_->delete_model(kBuiltinModelId));
  EXPECT_TRUE(repository_->delete_model(sd21.id));
  ASSERT_TRUE(repository_->set_default_model(kBuiltinModelId));
  EXPECT_TRUE(repository_->delete_model(sd15.id));
  EXPECT_EQ(repository_->list_models().size(), 1u);
}

TEST_P(RepositoryTest, ConcurrentDefaultChangesLeaveOneDefault) {
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i)
    ids.push_back(repository_
                      ->add_model({"", "m" + std::to_string(i),
                                   "/models/m" + std::to_string(i) + ".safetensors"})
                      .id);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto own = make_repository(open_database(url_));  // one connection per thread
      for (int round = 0; round < 10; ++round) {
        try {
          own->set_default_model(ids[static_cast<size_t>((t + round) % 4)]);
        } catch (const Error&) {
          ++failures;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(count("SELECT COUNT(*) FROM models WHERE is_default = 1"), 1);
}

TEST_P(RepositoryTest, StorageUseListsEachKindsRecordsAndDistinctBlobs) {
  Account owner = account("owner@example.com");
  Account other = account("other@example.com");
  Subject subject = repository_->create_subject(owner.id, "Me", "ohwx");
  Subject second = repository_->create_subject(owner.id, "Sis", "ohwx");
  repository_->add_photo(
      owner.id, {"", "", subject.id, digest("p1"), 1, PhotoVerdict::kAccepted, "[]", digest("c1")});
  repository_->add_photo(owner.id, {"", "", second.id, digest("p1"), 1});  // the same upload
  repository_->add_photo(owner.id, {"", "", second.id, digest("p2"), 1});
  Shoot shoot = repository_->create_shoot(owner.id, {"", "", subject.id, "[]", 2});
  repository_->add_image(owner.id, {"", "", shoot.id, digest("i1")});
  repository_->add_image(owner.id, {"", "", shoot.id, digest("i1")});  // "again", same bytes
  repository_->add_lora_version(owner.id, {"", "", subject.id, digest("l1")});
  repository_->add_lora_version(owner.id, {"", "", subject.id, std::nullopt});  // training
  Subject theirs = repository_->create_subject(other.id, "Them", "ohwx");
  repository_->add_photo(other.id, {"", "", theirs.id, digest("theirs"), 1});

  const StorageUse use = repository_->storage_use(owner.id);
  EXPECT_EQ(use.photos.records, 3);
  std::vector<std::string> photo_blobs = {digest("c1"), digest("p1"), digest("p2")};
  std::sort(photo_blobs.begin(), photo_blobs.end());  // uploads and crops, each once
  EXPECT_EQ(use.photos.blobs, photo_blobs);
  EXPECT_EQ(use.images.records, 2);
  EXPECT_EQ(use.images.blobs, std::vector<std::string>{digest("i1")});
  EXPECT_EQ(use.loras.records, 2);
  EXPECT_EQ(use.loras.blobs, std::vector<std::string>{digest("l1")});
  const StorageUse theirs_use = repository_->storage_use(other.id);
  EXPECT_EQ(theirs_use.photos.records, 1);
  EXPECT_EQ(theirs_use.photos.blobs, std::vector<std::string>{digest("theirs")});
  EXPECT_EQ(theirs_use.images.records, 0);
  EXPECT_TRUE(repository_->storage_use(std::string(32, '0')).photos.blobs.empty());
}

TEST_P(RepositoryTest, UnknownDatabaseUrlsAreRejected) {
  EXPECT_THROW(open_database("mysql://localhost/x"), Error);
  EXPECT_THROW(open_database("sqlite:"), Error);
  EXPECT_THROW(open_database("postgresql://nobody@/nothing?host=/nonexistent-doppel-dir"), Error);
}

TEST_P(RepositoryTest, ConstraintErrorsDoNotQuoteRowValues) {
  account("secret-address@example.com");
  try {
    database_->execute(
        "INSERT INTO accounts (id, email, display_name, password_hash, created_at) "
        "VALUES (?, ?, '', 'x', 0)",
        {new_random_id(), std::string("secret-address@example.com")});
    FAIL() << "duplicate email accepted by the schema";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(std::string(error.what()).find("secret-address"), std::string::npos) << error.what();
  }
}

TEST_P(RepositoryTest, GarbageCollectionRemovesOnlyOldUnreferencedBlobs) {
  BlobStore blobs(folder_.path() / "blobs");
  Account owner = account("owner@example.com");
  Subject subject = repository_->create_subject(owner.id, "Me", "ohwx");
  std::string used = blobs.put("referenced photo");
  repository_->add_photo(owner.id, {"", "", subject.id, used, 16});
  std::string leftover = blobs.put("left behind by a crash");
  std::string uploading = blobs.put("upload whose row is not committed yet");
  auto old = std::filesystem::file_time_type::clock::now() - std::chrono::hours(1);
  std::filesystem::last_write_time(blobs.path_of(used), old);
  std::filesystem::last_write_time(blobs.path_of(leftover), old);

  EXPECT_EQ(remove_unreferenced_blobs(*repository_, blobs, 60'000),
            std::vector<std::string>{leftover});
  EXPECT_TRUE(blobs.exists(used));
  EXPECT_TRUE(blobs.exists(uploading));
  EXPECT_FALSE(blobs.exists(leftover));
}

// A process killed inside a transaction leaves no trace of it and does not keep the
// database locked.
TEST_P(RepositoryTest, AProcessKilledMidTransactionLeavesNothingAndNoLock) {
  Account before = account("before@example.com");
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    try {
      auto database = open_database(url_);
      auto repository = make_repository(database);
      database->transaction([&] {
        repository->create_account("half@example.com", "Half", "hash");
        repository->create_subject(before.id, "half-written", "x");
        ::raise(SIGKILL);
      });
    } catch (...) {
    }
    ::_exit(1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_FALSE(repository_->find_account_by_email("half@example.com"));
  EXPECT_TRUE(repository_->list_subjects(before.id).empty());
  EXPECT_NO_THROW(account("after@example.com"));  // the write lock died with the process
  EXPECT_EQ(repository_->count_accounts(), 2);
}

TEST_P(RepositoryTest, TextWithNulBytesIsRefusedNotTruncated) {
  Account owner = account("owner@example.com");
  try {
    repository_->create_subject(owner.id, std::string("Ann\0e", 5), "ohwx");
    FAIL() << "a NUL byte was accepted";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
  }
  EXPECT_TRUE(repository_->list_subjects(owner.id).empty());
}

TEST(SqliteDatabase, AFileThatIsNotADatabaseIsAClearError) {
  test::TempDir folder;
  std::filesystem::path path = folder.path() / "garbage.db";
  std::ofstream(path) << std::string(4096, 'x');
  try {
    open_database("sqlite:" + path.string());
    FAIL() << "garbage opened as a database";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find(path.string()), std::string::npos) << error.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, RepositoryTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         test::backend_name);

}  // namespace
}  // namespace doppel::store

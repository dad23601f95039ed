// The pictures the studio drew for built-in templates, on SQLite and PostgreSQL: kept per
// template, model and drawing settings, replaced when drawn again, and kept by the blob garbage
// collector.
#include <gtest/gtest.h>

#include <algorithm>

#include "doppel/core/error.hpp"
#include "doppel/store/blob_store.hpp"
#include "doppel/store/repository.hpp"
#include "doppel/store/template_pictures.hpp"
#include "store/repository_fixture.hpp"
#include "support/database_backends.hpp"

namespace doppel::store {
namespace {

using test::Backend;

class DrawnTemplatePicturesTest : public test::RepositoryFixture {};

TEST_P(DrawnTemplatePicturesTest, PicturesArePerModelAndSettingsAndKeepTheirBlobs) {
  const std::string wedding = sha256_hex("wedding garden");
  const std::string settings = sha256_hex("seed 1");
  put_drawn_template_picture(*database_, {"wedding-garden", "builtin", settings, wedding});
  put_drawn_template_picture(*database_,
                             {"hanfu-courtyard", "builtin", settings, sha256_hex("hanfu")});
  put_drawn_template_picture(*database_,
                             {"wedding-garden", "other-model", settings, sha256_hex("other")});
  std::vector<DrawnTemplatePicture> pictures = list_drawn_template_pictures(*database_, "builtin");
  ASSERT_EQ(pictures.size(), 2u);
  EXPECT_EQ(pictures[0].template_id, "hanfu-courtyard");
  EXPECT_EQ(pictures[1].blob_sha256, wedding);
  EXPECT_EQ(pictures[1].settings_sha256, settings);
  EXPECT_GT(pictures[1].created_at, 0);
  // Drawn again with the same settings: the blob is replaced; other settings are another row.
  const std::string redrawn = sha256_hex("wedding garden again");
  put_drawn_template_picture(*database_, {"wedding-garden", "builtin", settings, redrawn});
  put_drawn_template_picture(*database_, {"wedding-garden", "builtin", sha256_hex("seed 2"),
                                          sha256_hex("wedding seed 2")});
  pictures = list_drawn_template_pictures(*database_, "builtin");
  ASSERT_EQ(pictures.size(), 3u);
  EXPECT_EQ(std::count_if(pictures.begin(), pictures.end(),
                          [&](const auto& each) { return each.blob_sha256 == redrawn; }),
            1);
  EXPECT_TRUE(list_drawn_template_pictures(*database_, "a-model-never-used").empty());
  const std::vector<std::string> referenced = repository_->referenced_blobs();
  EXPECT_TRUE(std::binary_search(referenced.begin(), referenced.end(), redrawn));
  EXPECT_FALSE(std::binary_search(referenced.begin(), referenced.end(), wedding));
  EXPECT_THROW(put_drawn_template_picture(*database_, {"", "builtin", settings, wedding}), Error);
  EXPECT_THROW(put_drawn_template_picture(*database_, {"wedding-garden", "builtin", "", wedding}),
               Error);
}

INSTANTIATE_TEST_SUITE_P(Backends, DrawnTemplatePicturesTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         test::backend_name);

}  // namespace
}  // namespace doppel::store

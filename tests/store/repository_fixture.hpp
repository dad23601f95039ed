// The fixture of the store suites: a fresh database of the test's backend (SQLite, then
// PostgreSQL; see support/database_backends.hpp) and a repository on it.
#pragma once
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>

#include "doppel/store/database.hpp"
#include "doppel/store/repository.hpp"
#include "support/database_backends.hpp"

namespace doppel::test {

// A derived fixture's SetUp calls RepositoryFixture::SetUp() first and returns when
// IsSkipped() (the backend is not available here).
class RepositoryFixture : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    std::string reason;
    std::optional<std::string> url = new_test_database(GetParam(), folder_.path(), reason);
    if (!url) GTEST_SKIP() << reason;
    url_ = *url;
    database_ = store::open_database(url_);
    repository_ = store::make_repository(database_);
  }

  TempDir folder_;
  std::string url_;
  std::shared_ptr<store::Database> database_;
  std::unique_ptr<store::Repository> repository_;
};

}  // namespace doppel::test

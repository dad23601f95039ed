// The registry's model kinds (checkpoints, IP-Adapters, image encoders; only a checkpoint can
// be the default) and a subject's identity source (trained or instant), on SQLite and
// PostgreSQL.
#include <gtest/gtest.h>

#include <map>

#include "doppel/core/error.hpp"
#include "doppel/store/repository.hpp"
#include "store/repository_fixture.hpp"
#include "support/database_backends.hpp"

namespace doppel::store {
namespace {

using test::Backend;

class ModelKindsAndIdentitySourceTest : public test::RepositoryFixture {
 protected:
  void SetUp() override {
    RepositoryFixture::SetUp();
    if (IsSkipped()) return;
    owner_ = repository_->create_account("owner@example.com", "Owner", "$argon2id$v=19$fake").id;
  }

  std::string owner_;
};

TEST_P(ModelKindsAndIdentitySourceTest, KindsAreStoredAndOnlyACheckpointBecomesTheDefault) {
  EXPECT_EQ(repository_->default_model().kind, kModelCheckpoint);  // the built-in one
  Model adapter;
  adapter.name = "ip-adapter-plus-face_sd15";
  adapter.path = "/models/ip_adapter/ip-adapter-plus-face_sd15.safetensors";
  adapter.kind = kModelIpAdapter;
  adapter.family = "sd1";
  adapter.prediction = "plus-face";
  adapter = repository_->add_model(adapter);
  Model encoder;
  encoder.name = "image_encoder";
  encoder.path = "/models/image_encoder";
  encoder.kind = kModelImageEncoder;
  encoder.family = "vit-h-14";
  encoder.prediction = "1280";
  encoder = repository_->add_model(encoder);
  Model checkpoint;
  checkpoint.name = "sd15";
  checkpoint.path = "/models/sd15.safetensors";
  checkpoint = repository_->add_model(checkpoint);

  const std::vector<Model> models = repository_->list_models();
  ASSERT_EQ(models.size(), 4u);
  std::map<std::string, Model> by_id;
  for (const Model& model : models) by_id[model.id] = model;
  EXPECT_EQ(by_id[adapter.id].kind, kModelIpAdapter);
  EXPECT_EQ(by_id[adapter.id].prediction, "plus-face");
  EXPECT_EQ(by_id[encoder.id].kind, kModelImageEncoder);
  EXPECT_EQ(by_id[encoder.id].family, "vit-h-14");
  EXPECT_EQ(by_id[checkpoint.id].kind, kModelCheckpoint);
  EXPECT_EQ(repository_->find_model_by_path(encoder.path)->kind, kModelImageEncoder);

  // An adapter or encoder cannot shoot alone: it never becomes the default.
  EXPECT_FALSE(repository_->set_default_model(adapter.id));
  EXPECT_FALSE(repository_->set_default_model(encoder.id));
  EXPECT_EQ(repository_->default_model().id, kBuiltinModelId);
  EXPECT_TRUE(repository_->set_default_model(checkpoint.id));
  EXPECT_EQ(repository_->default_model().id, checkpoint.id);
  EXPECT_TRUE(repository_->delete_model(adapter.id));

  Model unknown;
  unknown.name = "lora";
  unknown.path = "/models/lora/x.safetensors";
  unknown.kind = "lora";
  EXPECT_THROW(repository_->add_model(unknown), Error);
  EXPECT_FALSE(repository_->find_model_by_path(unknown.path));
}

TEST_P(ModelKindsAndIdentitySourceTest, IdentitySourceIsStoredAtCreationAndSwitched) {
  const Subject trained = repository_->create_subject(owner_, "Sam", "ohwx", "man");
  EXPECT_EQ(repository_->get_subject(owner_, trained.id)->identity_source, kIdentityTrained);
  Subject instant = repository_->create_subject(owner_, "Mia", "ohwx", "girl", kIdentityInstant);
  EXPECT_EQ(repository_->get_subject(owner_, instant.id)->identity_source, kIdentityInstant);
  for (const Subject& listed : repository_->list_subjects(owner_))
    EXPECT_EQ(listed.identity_source,
              listed.id == instant.id ? kIdentityInstant : kIdentityTrained);
  instant.identity_source = kIdentityTrained;  // trained later
  ASSERT_TRUE(repository_->update_subject(owner_, instant));
  EXPECT_EQ(repository_->get_subject(owner_, instant.id)->identity_source, kIdentityTrained);

  EXPECT_THROW(repository_->create_subject(owner_, "Nobody", "ohwx", "person", "magic"), Error);
  instant.identity_source = "";
  EXPECT_THROW(repository_->update_subject(owner_, instant), Error);
  EXPECT_EQ(repository_->get_subject(owner_, instant.id)->identity_source, kIdentityTrained);
  EXPECT_EQ(repository_->list_subjects(owner_).size(), 2u);
}

INSTANTIATE_TEST_SUITE_P(Backends, ModelKindsAndIdentitySourceTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         test::backend_name);

}  // namespace
}  // namespace doppel::store

-- doppel schema, version 4.
-- models.kind: the registry also holds IP-Adapters and CLIP image encoders, added by path and
-- detected from their headers like checkpoints ('checkpoint', 'ip_adapter', 'image_encoder').
-- subjects.identity_source: how the studio learns a person's likeness: 'trained' (a LoRA trained
-- on their photos) or 'instant' (one photo through an IP-Adapter, no training).
-- templates: pictures an account uploaded to put faces into; settings_json holds the template's
-- fields (prompt, faces to replace, controls, strengths) as the template YAML names them.
-- training_samples: the sample images a training run makes every few steps, shown on the
-- training card while it runs and kept with the LoRA version they belong to.

ALTER TABLE models ADD COLUMN kind TEXT NOT NULL DEFAULT 'checkpoint';

ALTER TABLE subjects ADD COLUMN identity_source TEXT NOT NULL DEFAULT 'trained';

CREATE TABLE templates (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  picture_blob TEXT NOT NULL,
  settings_json TEXT NOT NULL,
  created_at BIGINT NOT NULL
);
CREATE INDEX templates_by_account ON templates (account_id, created_at);
CREATE INDEX templates_by_blob ON templates (picture_blob);

CREATE TABLE training_samples (
  lora_version_id TEXT NOT NULL REFERENCES lora_versions (id) ON DELETE CASCADE,
  step BIGINT NOT NULL,
  sample_index BIGINT NOT NULL,
  blob_sha256 TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (lora_version_id, step, sample_index)
);
CREATE INDEX training_samples_by_blob ON training_samples (blob_sha256);

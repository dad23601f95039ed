-- doppel schema, version 5: the pictures of the built-in templates that the studio draws (a
-- template with a `generate` section: its prompt, or its style pack's, at a fixed seed), one per
-- template, model and drawing settings (settings_sha256: prompt, size, sampler, seed), kept as
-- blobs so the template gallery shows them and shoots paint into the same bytes. Like the style
-- examples they are the installation's, not an account's: they show no one's face.

CREATE TABLE template_pictures (
  template_id TEXT NOT NULL,
  model_key TEXT NOT NULL,
  settings_sha256 TEXT NOT NULL,
  blob_sha256 TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (template_id, model_key, settings_sha256)
);
CREATE INDEX template_pictures_by_blob ON template_pictures (blob_sha256);

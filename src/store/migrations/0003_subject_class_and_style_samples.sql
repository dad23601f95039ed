-- doppel schema, version 3: what a person is (their class word: woman, man, girl, boy, person),
-- chosen when they are added and used in their prompts and as their training's class word;
-- and the example images of the style packs, made once per style and model for the style
-- cards. Examples are the installation's (not owned by an account): they show no one's face.

ALTER TABLE subjects ADD COLUMN class_word TEXT NOT NULL DEFAULT 'person';

CREATE TABLE style_samples (
  style_id TEXT NOT NULL,
  model_key TEXT NOT NULL,
  seed BIGINT NOT NULL,
  blob_sha256 TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (style_id, model_key, seed)
);
CREATE INDEX style_samples_by_blob ON style_samples (blob_sha256);

-- doppel schema, version 1. Dialect-neutral: the same text runs on SQLite and PostgreSQL
-- (TEXT ids, BIGINT milliseconds since the Unix epoch, INTEGER 0/1 flags, DOUBLE PRECISION
-- scores, JSON kept as TEXT). Owned tables carry account_id themselves, and their parent
-- references are composite (parent id, account id) so a row can never point into another
-- account's data.

CREATE TABLE accounts (
  id TEXT PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,
  display_name TEXT NOT NULL,
  password_hash TEXT NOT NULL,
  created_at BIGINT NOT NULL
);

CREATE TABLE sessions (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  token_hash TEXT NOT NULL UNIQUE,
  csrf_secret TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_by_account ON sessions (account_id);

CREATE TABLE api_tokens (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  token_hash TEXT NOT NULL UNIQUE,
  created_at BIGINT NOT NULL,
  expires_at BIGINT
);
CREATE INDEX api_tokens_by_account ON api_tokens (account_id);

CREATE TABLE subjects (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  trigger_word TEXT NOT NULL,
  status TEXT NOT NULL,
  face_profile_blob TEXT,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  UNIQUE (id, account_id)
);
CREATE INDEX subjects_by_account ON subjects (account_id);

CREATE TABLE photos (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL,
  subject_id TEXT NOT NULL,
  blob_sha256 TEXT NOT NULL,
  original_size BIGINT NOT NULL,
  verdict TEXT NOT NULL,
  reasons_json TEXT NOT NULL,
  crop_blob TEXT,
  created_at BIGINT NOT NULL,
  FOREIGN KEY (subject_id, account_id) REFERENCES subjects (id, account_id) ON DELETE CASCADE
);
CREATE INDEX photos_by_subject ON photos (subject_id);
CREATE INDEX photos_by_account ON photos (account_id);
CREATE INDEX photos_by_blob ON photos (blob_sha256);
CREATE INDEX photos_by_crop ON photos (crop_blob);

CREATE TABLE lora_versions (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL,
  subject_id TEXT NOT NULL,
  blob_sha256 TEXT,
  settings_json TEXT NOT NULL,
  validation_likeness DOUBLE PRECISION,
  status TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  FOREIGN KEY (subject_id, account_id) REFERENCES subjects (id, account_id) ON DELETE CASCADE
);
CREATE INDEX lora_versions_by_subject ON lora_versions (subject_id);
CREATE INDEX lora_versions_by_account ON lora_versions (account_id);
CREATE INDEX lora_versions_by_blob ON lora_versions (blob_sha256);

CREATE TABLE shoots (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL,
  subject_id TEXT NOT NULL,
  styles_json TEXT NOT NULL,
  image_count BIGINT NOT NULL,
  status TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  UNIQUE (id, account_id),
  FOREIGN KEY (subject_id, account_id) REFERENCES subjects (id, account_id) ON DELETE CASCADE
);
CREATE INDEX shoots_by_subject ON shoots (subject_id);
CREATE INDEX shoots_by_account ON shoots (account_id);

CREATE TABLE images (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL,
  shoot_id TEXT NOT NULL,
  blob_sha256 TEXT NOT NULL,
  recipe_json TEXT NOT NULL,
  likeness DOUBLE PRECISION,
  quality DOUBLE PRECISION,
  favourite INTEGER NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL,
  FOREIGN KEY (shoot_id, account_id) REFERENCES shoots (id, account_id) ON DELETE CASCADE
);
CREATE INDEX images_by_shoot ON images (shoot_id);
CREATE INDEX images_by_account ON images (account_id);
CREATE INDEX images_by_blob ON images (blob_sha256);

-- Durable jobs (the queue layer). A job may belong to a subject; deleting the subject
-- deletes its jobs.
CREATE TABLE jobs (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  subject_id TEXT,
  kind TEXT NOT NULL,
  payload_json TEXT NOT NULL,
  idempotency_key TEXT,
  status TEXT NOT NULL,
  attempts BIGINT NOT NULL DEFAULT 0,
  max_attempts BIGINT NOT NULL,
  available_at BIGINT NOT NULL,
  lease_owner TEXT,
  lease_token TEXT,
  lease_expires_at BIGINT,
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  progress DOUBLE PRECISION NOT NULL DEFAULT 0,
  progress_message TEXT NOT NULL DEFAULT '',
  result_json TEXT,
  error TEXT,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  finished_at BIGINT,
  UNIQUE (account_id, idempotency_key),
  FOREIGN KEY (subject_id, account_id) REFERENCES subjects (id, account_id) ON DELETE CASCADE
);
CREATE INDEX jobs_claimable ON jobs (status, available_at);
CREATE INDEX jobs_by_account ON jobs (account_id, created_at);
CREATE INDEX jobs_by_subject ON jobs (subject_id);

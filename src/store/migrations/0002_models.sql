-- doppel schema, version 2: the installation's Stable Diffusion models. Not owned by an
-- account: every account shoots and trains with the one default model. The built-in tiny
-- model is a row of its own (id 'builtin', empty path), so exactly one default exists from the
-- start; the partial unique index keeps it at most one.

CREATE TABLE models (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  path TEXT NOT NULL UNIQUE,
  family TEXT NOT NULL,
  prediction TEXT NOT NULL,
  builtin INTEGER NOT NULL DEFAULT 0,
  is_default INTEGER NOT NULL DEFAULT 0,
  added_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX models_single_default ON models (is_default) WHERE is_default = 1;

INSERT INTO models (id, name, path, family, prediction, builtin, is_default, added_at)
VALUES ('builtin', 'doppel-tiny-demo', '', 'sd1', 'epsilon', 1, 1, 0);

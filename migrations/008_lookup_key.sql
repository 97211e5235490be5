-- The lookup index's blind indexes are now keyed by a key of their own
-- (derived from the subject-reference secret in Vault, with a label no
-- subject id can be), no longer by that secret directly: entries written
-- under the old key would never match. Ask every server to rebuild it.
UPDATE projection_checkpoints SET position = 0, reset_requested = true, updated_at = now() WHERE name = 'lookup';

---- create above / drop below ----

-- Nothing to undo: a rebuild is harmless.

-- An erasure's completion says whether it was written by a call that found
-- the erasure already started (an earlier attempt was interrupted after the
-- subject was fenced). The completion's keyExisted and keyVersionsDestroyed
-- describe that last call's destroy only: an earlier attempt may have
-- destroyed the key already (docs/gdpr.md "Proving an erasure").
-- Completions recorded before this migration read as not resumed.
--
-- Application role (docs/operations.md): unchanged (SELECT, INSERT on
-- erasure_completions).
ALTER TABLE erasure_completions ADD COLUMN resumed boolean NOT NULL DEFAULT false;

---- create above / drop below ----

ALTER TABLE erasure_completions DROP COLUMN resumed;

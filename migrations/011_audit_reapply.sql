-- The audit trail records `lethe erasures reapply` (after a Vault restore:
-- destroying again the keys of erased subjects that the restore brought
-- back): who ran it, how many erasures it checked, which keys it destroyed.
--
-- Application role (docs/operations.md): unchanged (SELECT, INSERT on
-- audit_log).
ALTER TABLE audit_log DROP CONSTRAINT audit_log_kind_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_kind_check CHECK (kind IN (
    'key.rotated', 'policy.put', 'policy.deleted', 'token.created', 'token.revoked', 'erasure.reapplied'));

---- create above / drop below ----

ALTER TABLE audit_log DROP CONSTRAINT audit_log_kind_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_kind_check CHECK (kind IN (
    'key.rotated', 'policy.put', 'policy.deleted', 'token.created', 'token.revoked')) NOT VALID;

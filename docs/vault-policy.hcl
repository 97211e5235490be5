# Vault policy for Lethe's key store (keystore/vault), least privilege.
#
# For the KV version 2 engine mounted at "secret" and Lethe's prefix "lethe"
# (the defaults); for another mount or prefix, change the first two path
# segments of each rule. Install it and give Lethe a token (or an AppRole)
# bound to it, never the root token:
#
#   vault policy write lethe docs/vault-policy.hcl
#   vault token create -policy=lethe            # token auth, or:
#   vault write auth/approle/role/lethe token_policies=lethe
#
# What Lethe keeps under the prefix:
#   lethe/ref-secret          the secret of the subject references (HMAC key)
#   lethe/subjects/<ref>      one secret per data subject, all key versions
#
# Nothing else is granted: no "list" (Lethe never enumerates subjects, and a
# token that can list would reveal every subject reference), no soft delete
# (DELETE secret/data/..., and secret/delete/...: it can be undone, so it is
# never an erasure), no undelete, no "sudo", nothing outside the prefix.
# The tests (internal/testenv, LetheVault) run Lethe with exactly these rules,
# with "lethe" replaced by a random prefix.

# The reference secret: read it, and create it once (check-and-set 0, on a
# database without subjects). Never update it (a new version would change
# every subject reference) and never delete it: this policy cannot, and
# the database records its fingerprint, so a server reaching another
# secret refuses to start (docs/security.md).
path "secret/data/lethe/ref-secret" {
  capabilities = ["create", "read"]
}

# Subject keys: read them; write new ones (create, with check-and-set 0 so
# that only one process creates a subject's key) and new versions of
# existing ones (update: key rotation). No "delete": that would be the
# soft delete.
path "secret/data/lethe/subjects/*" {
  capabilities = ["create", "read", "update"]
}

# Erasure: read a subject key's metadata (which KV versions exist, and
# whether anything is left after erasure) and delete it, which removes every
# version and the metadata permanently.
path "secret/metadata/lethe/subjects/*" {
  capabilities = ["read", "delete"]
}

# Erasure: destroy the data of every KV version before the metadata goes.
path "secret/destroy/lethe/subjects/*" {
  capabilities = ["update"]
}

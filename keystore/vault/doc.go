// Package vault is Lethe's key store on HashiCorp Vault: a
// keystore.Store that keeps every data subject's key in the KV version 2
// secrets engine. Import it as vault and github.com/hashicorp/vault/api as
// vaultapi.
//
// # Paths and data
//
// Under the engine's mount (Config.Mount, default "secret") and Lethe's
// prefix (Config.Prefix, default "lethe"):
//
//	<mount>/data/<prefix>/ref-secret       {"secret": "<base64 of 32 random bytes>"}
//	<mount>/data/<prefix>/subjects/<ref>   {"current": "2", "k1": "<base64>", "k2": "<base64>"}
//
// The reference secret is the HMAC-SHA256 key of subject references: a
// subject's Ref is hex(HMAC(secret, subject id)), so subject ids never
// reach Vault, PostgreSQL or the logs. The first process that needs it
// creates it with check-and-set 0 (write only if absent); a process that
// loses that race reads the winner's. Each process reads it once and keeps
// it in memory. It is never rotated: a new secret would change every
// reference. If it is found deleted (a soft delete by an operator), Lethe
// refuses to create another one and fails until it is undeleted.
//
// A subject's secret holds every version of its key, each 32 random bytes,
// and which one is current. The versions are Lethe's, not KV's:
//
//   - Creation is one check-and-set 0 write, so the first key of a subject
//     is created exactly once however many processes ask at the same time;
//     the losers read the winner's key.
//   - Rotation is one read-modify-write with check-and-set on the KV
//     version read, retried when another writer got there first, so two
//     concurrent rotations never lose a version.
//   - One read returns every version, which is what the cache holds.
//   - KV's own versions record every write and are pruned (max_versions,
//     10 by default): a key version kept as a KV version would vanish
//     after ten rotations, and an old one would be one undelete away.
//   - Erasure is about one path: destroy its KV versions and delete its
//     metadata.
//
// # Erasure
//
// Destroy drops the cache entry, destroys every KV version listed in the
// secret's metadata (POST destroy/), deletes the metadata (DELETE
// metadata/, which removes every version for good), and then reads the
// metadata and the data to check that Vault answers "not found" to both.
// It never uses the soft delete (DELETE data/): that can be undone. It is
// idempotent: destroying what does not exist reports Existed == false.
//
// The key store keeps no memory of an erasure: CurrentKey afterwards
// creates a new key, and other processes may use the key from their cache
// until their CacheTTL passes. The erasure ledger in PostgreSQL, not Vault,
// says whether a subject is forgotten (see package forgettable).
//
// # Caching
//
// Each Store caches subjects' keys in memory only: a least-recently-used
// map of at most Config.CacheSize subjects whose entries expire after
// Config.CacheTTL. Concurrent first lookups of one subject share one Vault
// call. What callers can rely on:
//
//   - Key(ref, v) of a version the cache lacks always asks Vault, so a
//     version rotated in by another process is found at once.
//   - CurrentKey returns the newest version this process knows: after a
//     Rotate in this process, that version; after a Rotate in another
//     process, possibly the previous version until the entry expires or
//     Invalidate(ref) drops it. Such a key is still valid (every version
//     stays readable until Destroy); it is just not the newest.
//   - created is reported to exactly one caller of CurrentKey (across
//     processes: the one whose write won), unless that caller gave up
//     waiting.
//   - While Vault is unreachable, what the process holds keeps working: the
//     reference secret and cached keys (until they expire).
//
// # Errors
//
// Vault's answers are translated where they are received, failing closed:
// only "no such secret" (a 404, or a version Vault answers without data
// after a soft delete) is keystore.ErrKeyNotFound. Everything else —
// unreachable, timeout, sealed, standby, 403 (permission denied, bad,
// expired or revoked token), any 5xx, an answer this package does not
// understand — wraps keystore.ErrUnavailable with a one-line reason.
// Errors and logs carry subject references, never subject ids, tokens or
// key bytes. A secret not in the layout above is an error of its own
// (neither "not found" nor "unavailable").
//
// Before its first call a Store checks that the mount is a KV version 2
// engine (GET sys/internal/ui/mounts/<mount>, as the vault CLI does; any
// token with rights under the mount may read it). Without that check a
// missing mount would read as "no key" (vault/api reports a 404 on a read
// as no secret, whatever its cause), and a KV version 1 engine would
// accept Lethe's writes but ignore check-and-set.
//
// vault/api retries connection errors, 412, 429 and 5xx answers (two
// retries, 1–1.5 s and 2–3 s apart, by default), so an outage surfaces
// after a few seconds per call; Config.Client's SetMaxRetries,
// SetClientTimeout or VAULT_MAX_RETRIES and VAULT_CLIENT_TIMEOUT change
// that.
//
// # Authentication
//
// With a token, configure it on Config.Client. With Config.AppRole, New
// logs in (on a token-less clone of the client, so that a stale token is
// never sent with the credentials) and sets the client's token; when Vault
// later answers 403, as it does for an expired or revoked token, the Store
// logs in again — once for all the calls refused with the same token — and
// retries each call once. A policy that lacks a path therefore costs a
// login per refused call; the call still fails with ErrUnavailable.
//
// # Policy
//
// docs/vault-policy.hcl is the least-privilege policy for mount "secret"
// and prefix "lethe" (the tests run with exactly its rules, for a random
// prefix):
//
//	secret/data/lethe/*      create, read, update   keys and the reference secret
//	secret/metadata/lethe/*  read, delete           erasure and its verification
//	secret/destroy/lethe/*   update                 erasure
//
// No list (nothing enumerates subjects), no soft delete, no undelete.
//
// # Operations
//
// Health answers whether Vault is initialised and unsealed (sys/health,
// for a readiness probe); it does not check the token.
//
// Config.Observer (optional; nil measures nothing) is how metrics get out
// without this package depending on a metrics library: Observer.KeyLookup
// hears of every CurrentKey and Key lookup, a cache hit or a miss, and
// Observer.VaultRequest of every request to Vault, with a fixed op name
// ("read_key", "create_key", "rotate_key", "destroy_key", "health", ...;
// see Observer), its duration and its outcome. Answers the Store treats as
// normal — "not found" to a read, a lost check-and-set race — are
// successes; a failure is reported as an error that (as a rule) wraps
// keystore.ErrUnavailable and names no path, reference, key or Vault
// message. A cache hit costs the Observer one call and no allocation.
package vault

// Package keystore is Lethe's vocabulary for data-subject keys: subject
// references, keys, the Store interface and its errors.
//
// Every data subject (a person whose personal data events carry) has one
// 256-bit data key. Subject ids themselves (an e-mail address, a customer
// number) never leave the process: outside it — in PostgreSQL, in Vault
// paths, in logs — a subject is known only by its Ref, an HMAC-SHA256 of the
// id under a secret that lives in Vault. Forgetting a subject destroys its
// key for good; the events stay, their personal fields unreadable.
//
// A key's String, GoString, slog value and JSON form never show its bytes.
//
// The Vault KV v2 implementation is in keystore/vault.
package keystore

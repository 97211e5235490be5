package vault

import (
	"errors"
	"time"

	"github.com/lethe-store/lethe/keystore"
)

// Observer receives the key store's measurements (e.g. to export them as
// metrics). Its methods are called synchronously from the goroutine doing
// the work, so they must be fast and safe for concurrent use; they never
// receive key material, subject ids or references.
type Observer interface {
	// KeyLookup is called once per Key or CurrentKey lookup that the
	// cache answered (hit true) or that had to go to Vault (hit false).
	// A Key of a version the cached entry lacks is a miss. Calls rejected
	// before the lookup (an invalid reference or version) are not
	// reported.
	KeyLookup(hit bool)

	// VaultRequest is called after every request to Vault, with d its
	// duration (including vault/api's own retries) and err its outcome:
	// nil on success, else the error as the Store classifies it (wrapping
	// keystore.ErrUnavailable, as a rule). Answers that the Store treats as
	// normal count as success: "not found" to a read (a subject without a
	// key, a reference secret not yet created, a key gone after erasure)
	// and a lost check-and-set race (another writer was first). A request
	// refused with 403 and retried after an AppRole login is reported
	// twice, with the login between. op is one of:
	//
	//	read_key             read a subject's keys (KV data)
	//	create_key           create a subject's first key (check-and-set 0)
	//	rotate_key           add a version to a subject's key (check-and-set)
	//	read_key_metadata    read a subject's KV metadata (erasure and its check)
	//	destroy_key          destroy a subject's KV versions (erasure)
	//	delete_key_metadata  delete a subject's KV metadata (erasure)
	//	read_ref_secret      read the subject reference secret
	//	create_ref_secret    create the subject reference secret (check-and-set 0)
	//	check_mount          check that the mount is KV version 2 (first use)
	//	login                log in with AppRole
	//	health               GET sys/health
	VaultRequest(op string, d time.Duration, err error)
}

// The op names of Observer.VaultRequest.
const (
	opReadKey           = "read_key"
	opCreateKey         = "create_key"
	opRotateKey         = "rotate_key"
	opReadKeyMetadata   = "read_key_metadata"
	opDestroyKey        = "destroy_key"
	opDeleteKeyMetadata = "delete_key_metadata"
	opReadRefSecret     = "read_ref_secret"
	opCreateRefSecret   = "create_ref_secret"
	opCheckMount        = "check_mount"
	opLogin             = "login"
	opHealth            = "health"
)

// outcome is what Observer.VaultRequest is told of a KV request that
// vault/api answered with raw and the Store classified as err: nil for
// success and for the answers the Store handles as normal, else a
// *requestError.
func outcome(op string, raw, err error) error {
	switch {
	case err == nil, errors.Is(err, errCASMismatch):
		return nil
	case errors.Is(err, keystore.ErrKeyNotFound):
		switch op {
		case opReadKey, opReadKeyMetadata, opReadRefSecret:
			return nil
		}
	}
	return observed(op, raw)
}

// nopObserver is the Observer of a Config without one.
type nopObserver struct{}

func (nopObserver) KeyLookup(bool)                            {}
func (nopObserver) VaultRequest(string, time.Duration, error) {}

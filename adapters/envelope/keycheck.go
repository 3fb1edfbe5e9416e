package envelope

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/kmsbackup/kmsbackup/domain"
)

// The master-key check. A key store remembers which master key its records
// are wrapped under: the first Envelope that uses an empty store writes a
// check there (CreateKeyCheck), and every Envelope compares its own with
// it before it reads or writes anything else. A wrong master key (another
// file, a typo in the environment) is then refused at once, instead of
// failing every read while new data keys are written under it, readable
// by nobody once the right key is back.
//
// The check is HMAC-SHA256 of a fixed label under a key derived from the
// master key with HKDF-SHA256, after a format byte:
//
//	keyCheckFormat(1) || HMAC-SHA256(HKDF-SHA256(master, info=keyCheckInfo), keyCheckLabel)(32)
//
// It shows nothing of the master key (a 256-bit key cannot be searched
// for), and differs from every wrapped key and sealed value.
//
// A store written before checks existed holds records but no check: the
// first Envelope then unwraps one of its records (KeyStore.AnyWrapped)
// before it writes the check, so the check is only ever written under a
// master key that opens what is already there.
const (
	keyCheckFormat byte = 1
	keyCheckInfo        = "kmsbackup/envelope/key-check-key/v1"
	keyCheckLabel       = "kmsbackup/envelope/key-check/v1"
)

// ErrWrongMasterKey marks the error of a master key that the key store
// does not recognise: its check was written under another key, or none of
// its records unwraps under this one. Test with errors.Is; the error also
// wraps domain.ErrFailedPrecondition.
var ErrWrongMasterKey = errors.New("envelope: wrong master key")

// wrongKeyError is a domain error that errors.Is also matches with
// ErrWrongMasterKey.
type wrongKeyError struct{ err *domain.Error }

func (e *wrongKeyError) Error() string        { return e.err.Error() }
func (e *wrongKeyError) Unwrap() error        { return e.err }
func (e *wrongKeyError) Is(target error) bool { return target == ErrWrongMasterKey }

func wrongMasterKey(msg string) error {
	return &wrongKeyError{&domain.Error{Op: "envelope: check master key", Kind: domain.ErrFailedPrecondition, Msg: msg,
		Hint: "start with the master key this data was written with (--master-key-file or " + MasterKeyEnv +
			"; in --dev, the data directory's master.key); nothing was written under this one"}}
}

// keyCheck computes master's check.
func keyCheck(master []byte) ([]byte, error) {
	k, err := hkdf.Key(sha256.New, master, nil, keyCheckInfo, sha256.Size)
	if err != nil {
		return nil, err
	}
	defer clear(k)
	mac := hmac.New(sha256.New, k)
	mac.Write([]byte(keyCheckLabel))
	return mac.Sum([]byte{keyCheckFormat}), nil
}

// VerifyMasterKey checks the master key against the key store without
// writing anything: against its check when it has one, else by unwrapping
// one of its records when it has some (a store written before checks
// existed). A store with neither has nothing to check against: CheckMasterKey
// will write the check. Used on a store opened read-only, before a start
// writes anything.
//
// Errors: ErrWrongMasterKey (domain.ErrFailedPrecondition) for a key the
// store does not recognise; domain.ErrCorrupt for a stored check or record
// that does not decode; the store's errors (domain.ErrUnavailable);
// ctx.Err(). Safe for concurrent use; idempotent.
func (e *Envelope) VerifyMasterKey(ctx context.Context) error {
	_, err := e.verify(ctx)
	return err
}

// CheckMasterKey checks the master key against the key store (see
// VerifyMasterKey) and, when the store has no check yet and the key passed
// what checks there are, writes the check (KeyStore.CreateKeyCheck: if
// another process wrote one meanwhile, the key is compared with that one).
// Every other method calls it first: an Envelope reads or writes nothing
// else under a master key that did not pass. Once it passed it is not
// called again.
//
// Errors: those of VerifyMasterKey, and the store's when it cannot write
// the check. Safe for concurrent use; idempotent.
func (e *Envelope) CheckMasterKey(ctx context.Context) error {
	if e.checked.Load() {
		return nil
	}
	e.checkMu.Lock()
	defer e.checkMu.Unlock()
	if e.checked.Load() {
		return nil
	}
	check, err := e.verify(ctx)
	if err != nil {
		return err
	}
	if check != nil {
		stored, err := e.store.CreateKeyCheck(ctx, check)
		if err != nil {
			return storeError("envelope: check master key", "", "write the check to", err)
		}
		if err := compareCheck(stored, check); err != nil {
			return err
		}
	}
	e.checked.Store(true)
	return nil
}

// verify is VerifyMasterKey; it returns the check to write when the store
// has none (nil when it has one, which matched).
func (e *Envelope) verify(ctx context.Context) ([]byte, error) {
	const op = "envelope: check master key"
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	stored, ok, err := e.store.KeyCheck(ctx)
	if err != nil {
		return nil, storeError(op, "", "read the check from", err)
	}
	if ok {
		return nil, compareCheck(stored, e.check)
	}
	ref, raw, found, err := e.store.AnyWrapped(ctx)
	if err != nil {
		return nil, storeError(op, "", "read a record from", err)
	}
	if found {
		if _, err := decodeRecord(raw); err != nil {
			return nil, fmt.Errorf("%s: data key %s: %w", op, ref, err) // damage, not a wrong key
		}
		if _, err := e.unwrap(op, ref, raw); err != nil {
			return nil, wrongMasterKey(fmt.Sprintf(
				"the key store has data keys but no master-key check, and its data key %s does not unwrap under this master key", ref))
		}
	}
	return e.check, nil
}

// compareCheck compares a stored check with the master key's.
func compareCheck(stored, mine []byte) error {
	if len(stored) == 0 || stored[0] != keyCheckFormat {
		return fmt.Errorf("envelope: check master key: %w", domain.Corruption("the stored master-key check has an unknown format"))
	}
	if !hmac.Equal(stored, mine) {
		return wrongMasterKey("the key store's master-key check was written under another master key")
	}
	return nil
}

// ready is what every method does first: the context, then the master-key
// check.
func (e *Envelope) ready(ctx context.Context, op, ref string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", op, ref, err)
	}
	return e.CheckMasterKey(ctx)
}

package domain

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Sentinel errors. Every error the product returns wraps exactly one of these,
// so that the HTTP API maps it to a status code and the CLI to an exit code
// through one table each.
var (
	// ErrInvalidArgument: the request itself is malformed (a bad name, a
	// negative quota, an unknown tab). Nothing was changed.
	ErrInvalidArgument = errors.New("domain: invalid argument")
	// ErrNotFound: the object does not exist for this account. Objects of
	// other accounts are reported with this same error.
	ErrNotFound = errors.New("domain: not found")
	// ErrAlreadyExists: an object with that identity already exists (a key ID
	// or secret name in the region, an account name).
	ErrAlreadyExists = errors.New("domain: already exists")
	// ErrQuotaExceeded: the KMS instance has no key or secret quota left.
	ErrQuotaExceeded = errors.New("domain: quota exceeded")
	// ErrFailedPrecondition: the object is not in a state that allows the
	// operation (a released instance, a deleted key, a key still in use).
	ErrFailedPrecondition = errors.New("domain: failed precondition")
	// ErrWrongExpectedRevision: an append lost an optimistic-concurrency race;
	// the caller reloads and decides again.
	ErrWrongExpectedRevision = errors.New("domain: wrong expected revision")
	// ErrUnauthenticated: no valid token was presented.
	ErrUnauthenticated = errors.New("domain: unauthenticated")
	// ErrPermissionDenied: the token is valid but the operation needs the
	// admin token.
	ErrPermissionDenied = errors.New("domain: permission denied")
	// ErrCorrupt: stored or received bytes failed an integrity check (a
	// tampered ciphertext, a bad checksum, a truncated record).
	ErrCorrupt = errors.New("domain: corrupt data")
	// ErrUnavailable: a dependency (log, bus, store) cannot serve now; the
	// operation may be retried.
	ErrUnavailable = errors.New("domain: unavailable")
	// ErrTooManyRequests: the client failed to authenticate too often and
	// must wait before it tries again; nothing was checked or changed.
	ErrTooManyRequests = errors.New("domain: too many requests")
)

// Error is an error with operation context: what was being done, to which
// item, and a hint telling the user what to do. It wraps one sentinel.
type Error struct {
	Op   string // the operation, e.g. "create key"
	Kind error  // one of the sentinels above
	Item string // the object concerned, e.g. a key ID or secret name
	Msg  string // what was wrong, in words
	Hint string // what the user can do about it
}

func (e *Error) Error() string {
	s := e.Op
	if e.Item != "" {
		s += " " + ShownItem(e.Item)
	}
	if s != "" {
		s += ": "
	}
	s += e.Msg
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

// ShownItem is an error's item as a message shows it: as it is when it is
// short and printable (an ID, a name, a day), else quoted and cut (see
// Quote), since an item can come straight from a request.
func ShownItem(item string) string {
	if len(item) <= MaxShown && strings.IndexFunc(item, func(r rune) bool { return unprintable(r, "") || r == utf8.RuneError }) < 0 {
		return item
	}
	return Quote(item)
}

// Unwrap returns the sentinel.
func (e *Error) Unwrap() error { return e.Kind }

// Errorf builds an *Error of the given kind.
func Errorf(kind error, op, item, hint, format string, args ...any) error {
	return &Error{Op: op, Kind: kind, Item: item, Msg: fmt.Sprintf(format, args...), Hint: hint}
}

// Invalid is shorthand for an ErrInvalidArgument with a message.
func Invalid(op, format string, args ...any) error {
	return &Error{Op: op, Kind: ErrInvalidArgument, Msg: fmt.Sprintf(format, args...)}
}

// NotFound is shorthand for an ErrNotFound on one item.
func NotFound(op, what, item string) error {
	return &Error{Op: op, Kind: ErrNotFound, Item: item, Msg: what + " not found"}
}

// Corruption marks err as a corruption (errors.Is(err, ErrCorrupt) holds).
func Corruption(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// IsCorruption reports whether err is marked as corruption.
func IsCorruption(err error) bool { return errors.Is(err, ErrCorrupt) }

// Kind returns the sentinel err wraps, or nil when it wraps none.
func Kind(err error) error {
	for _, k := range []error{ErrInvalidArgument, ErrNotFound, ErrAlreadyExists, ErrQuotaExceeded,
		ErrFailedPrecondition, ErrWrongExpectedRevision, ErrUnauthenticated, ErrPermissionDenied,
		ErrCorrupt, ErrUnavailable, ErrTooManyRequests} {
		if errors.Is(err, k) {
			return k
		}
	}
	return nil
}

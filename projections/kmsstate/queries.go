package kmsstate

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"sort"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
)

// getter is what get reads: a projections.Reader or a Cursor.
type getter interface {
	Get(key []byte) ([]byte, bool, error)
}

func get[T any](r getter, key []byte, decode func([]byte) (T, error), what, item string) (T, error) {
	var zero T
	v, ok, err := r.Get(key)
	if err != nil {
		return zero, err
	}
	if !ok {
		return zero, domain.NotFound("get "+what, what, item)
	}
	return decode(v)
}

// GetInstance returns an instance, released or not. Errors: ErrNotFound.
func GetInstance(r projections.Reader, id domain.InstanceID) (*domain.Instance, error) {
	return get(r, instanceKey(id), decodeInstance, "KMS instance", string(id))
}

// GetKey returns a live key of an instance. Errors: ErrNotFound.
func GetKey(r projections.Reader, in domain.InstanceID, id domain.KeyID) (*domain.Key, error) {
	return get(r, keyKey(in, id), decodeKey, "key", string(id))
}

// GetSecret returns a live secret of an instance. Errors: ErrNotFound.
func GetSecret(r projections.Reader, in domain.InstanceID, name string) (*domain.Secret, error) {
	return get(r, secretKey(in, name), decodeSecret, "secret", name)
}

// GetAccount returns an account. Errors: ErrNotFound.
func GetAccount(r projections.Reader, id domain.AccountID) (*Account, error) {
	return get(r, accountKey(id), decodeAccount, "account", string(id))
}

// AccountByName returns the ID of the account with that name, if any.
func AccountByName(r projections.Reader, name string) (domain.AccountID, bool, error) {
	v, ok, err := r.Get(accountNameKey(name))
	return domain.AccountID(v), ok, err
}

// AccountByToken returns the account whose token is token, if any.
func AccountByToken(r projections.Reader, token string) (domain.AccountID, bool, error) {
	v, ok, err := r.Get(tokenKey(sha256.Sum256([]byte(token))))
	return domain.AccountID(v), ok, err
}

// Location is where an item with a given ID or name lives.
type Location struct {
	Region   string
	Instance domain.InstanceID
}

func locations(r projections.Reader, p []byte) ([]Location, error) {
	var out []Location
	err := r.Scan(p, nil, func(k, v []byte) (bool, error) {
		out = append(out, Location{Region: string(k[len(p):]), Instance: domain.InstanceID(v)})
		return true, nil
	})
	return out, err
}

// KeyLocations lists the regions (and instances) of the account where a live
// key with this ID exists, ordered by region.
func KeyLocations(r projections.Reader, a domain.AccountID, id domain.KeyID) ([]Location, error) {
	return locations(r, prefix("kms/gk/", string(a), string(id)))
}

// SecretLocations lists where a live secret with this name exists.
func SecretLocations(r projections.Reader, a domain.AccountID, name string) ([]Location, error) {
	return locations(r, prefix("kms/gs/", string(a), name))
}

// KeyInRegion returns the instance of the account's region where a live
// key with this ID lives; ok is false when there is none. One point read.
func KeyInRegion(r projections.Reader, a domain.AccountID, region string, id domain.KeyID) (in domain.InstanceID, ok bool, err error) {
	v, ok, err := r.Get(keyLocKey(a, id, region))
	return domain.InstanceID(v), ok, err
}

// SecretInRegion is KeyInRegion for a secret name.
func SecretInRegion(r projections.Reader, a domain.AccountID, region, name string) (in domain.InstanceID, ok bool, err error) {
	v, ok, err := r.Get(secretLocKey(a, name, region))
	return domain.InstanceID(v), ok, err
}

// Locations answers KeyInRegion and SecretInRegion for many items of one
// account (a restore's batch, its plan), each kind through one cursor of a
// snapshot taken at OpenLocations: key IDs and secret names asked for in
// increasing order cost a step each. Close it when done. Not safe for
// concurrent use.
type Locations struct {
	a             domain.AccountID
	keys, secrets projections.Cursor
}

// OpenLocations opens the locations of the account's key IDs and secret
// names.
func OpenLocations(r projections.Reader, a domain.AccountID) (*Locations, error) {
	keys, secrets, err := openCursors(r, prefix("kms/gk/", string(a)), prefix("kms/gs/", string(a)))
	if err != nil {
		return nil, err
	}
	return &Locations{a: a, keys: keys, secrets: secrets}, nil
}

// openCursors opens a cursor over each of two prefixes, or neither.
func openCursors(r projections.Reader, p1, p2 []byte) (c1, c2 projections.Cursor, err error) {
	if c1, err = projections.NewCursor(r, p1); err != nil {
		return nil, nil, err
	}
	if c2, err = projections.NewCursor(r, p2); err != nil {
		return nil, nil, errors.Join(err, c1.Close())
	}
	return c1, c2, nil
}

// KeyInRegion is KeyInRegion for the account of l.
func (l *Locations) KeyInRegion(region string, id domain.KeyID) (in domain.InstanceID, ok bool, err error) {
	v, ok, err := l.keys.Get(keyLocKey(l.a, id, region))
	return domain.InstanceID(v), ok, err
}

// SecretInRegion is SecretInRegion for the account of l.
func (l *Locations) SecretInRegion(region, name string) (in domain.InstanceID, ok bool, err error) {
	v, ok, err := l.secrets.Get(secretLocKey(l.a, name, region))
	return domain.InstanceID(v), ok, err
}

// Close closes the cursors. Idempotent.
func (l *Locations) Close() error { return errors.Join(l.keys.Close(), l.secrets.Close()) }

// Items reads the key and secret records of one instance, each kind
// through one cursor of a snapshot taken at OpenItems: key IDs and secret
// names asked for in increasing order (a restore's batch, validated) cost a
// step each. Close it when done. Not safe for concurrent use.
type Items struct {
	in            domain.InstanceID
	keys, secrets projections.Cursor
}

// OpenItems opens the records of the instance's keys and secrets.
func OpenItems(r projections.Reader, in domain.InstanceID) (*Items, error) {
	keys, secrets, err := openCursors(r, prefix("kms/k/", string(in)), prefix("kms/s/", string(in)))
	if err != nil {
		return nil, err
	}
	return &Items{in: in, keys: keys, secrets: secrets}, nil
}

// GetKey is GetKey for the instance of x.
func (x *Items) GetKey(id domain.KeyID) (*domain.Key, error) {
	return get(x.keys, keyKey(x.in, id), decodeKey, "key", string(id))
}

// GetSecret is GetSecret for the instance of x.
func (x *Items) GetSecret(name string) (*domain.Secret, error) {
	return get(x.secrets, secretKey(x.in, name), decodeSecret, "secret", name)
}

// Close closes the cursors. Idempotent.
func (x *Items) Close() error { return errors.Join(x.keys.Close(), x.secrets.Close()) }

// RegionHasKey reports whether the key ID is taken in the account's region.
func RegionHasKey(r projections.Reader, a domain.AccountID, region string, id domain.KeyID) (bool, error) {
	_, ok, err := r.Get(keyLocKey(a, id, region))
	return ok, err
}

// RegionHasSecret reports whether the secret name is taken in the region.
func RegionHasSecret(r projections.Reader, a domain.AccountID, region, name string) (bool, error) {
	_, ok, err := r.Get(secretLocKey(a, name, region))
	return ok, err
}

// SecretsUsingKey counts the live secrets encrypted under a key.
func SecretsUsingKey(r projections.Reader, in domain.InstanceID, id domain.KeyID) (int, error) {
	n := 0
	err := r.Scan(prefix("kms/ku/", string(in), string(id)), nil, func(_, _ []byte) (bool, error) {
		n++
		return true, nil
	})
	return n, err
}

// Page is a page of a listing.
type Page[T any] = projections.Page[T]

// scanPage reads up to size records under p starting after cursor.
// The cursor is the name of the last item of the previous page.
func scanPage[T any](r projections.Reader, p []byte, cursor string, size int, decode func([]byte) (T, error), name func(T) string) (Page[T], error) {
	var page Page[T]
	var start []byte
	if cursor != "" {
		start = append(append(bytes.Clone(p), cursor...), 0) // first key after the cursor
	}
	err := r.Scan(p, start, func(k, v []byte) (bool, error) {
		if len(page.Items) == size {
			page.Next = name(page.Items[size-1])
			return false, nil
		}
		item, err := decode(v)
		if err != nil {
			return false, err
		}
		page.Items = append(page.Items, item)
		return true, nil
	})
	if err != nil {
		return Page[T]{}, err
	}
	return page, nil
}

// ListKeys lists an instance's live keys in key ID order.
func ListKeys(r projections.Reader, in domain.InstanceID, cursor string, size int) (Page[*domain.Key], error) {
	return scanPage(r, prefix("kms/k/", string(in)), cursor, size, decodeKey, func(k *domain.Key) string { return string(k.ID) })
}

// ListSecrets lists an instance's live secrets in name order.
func ListSecrets(r projections.Reader, in domain.InstanceID, cursor string, size int) (Page[*domain.Secret], error) {
	return scanPage(r, prefix("kms/s/", string(in)), cursor, size, decodeSecret, func(s *domain.Secret) string { return s.Name })
}

// ListInstances lists the account's instances (released ones included) in
// ID order, which is creation order.
func ListInstances(r projections.Reader, a domain.AccountID, cursor string, size int) (Page[*domain.Instance], error) {
	p := prefix("kms/ai/", string(a))
	var ids []domain.InstanceID
	var start []byte
	if cursor != "" {
		start = append(append(bytes.Clone(p), cursor...), 0)
	}
	next := ""
	err := r.Scan(p, start, func(k, _ []byte) (bool, error) {
		if len(ids) == size {
			next = string(ids[len(ids)-1])
			return false, nil
		}
		ids = append(ids, domain.InstanceID(k[len(p):]))
		return true, nil
	})
	if err != nil {
		return Page[*domain.Instance]{}, err
	}
	page := Page[*domain.Instance]{Next: next}
	for _, id := range ids {
		in, err := GetInstance(r, id)
		if err != nil {
			return Page[*domain.Instance]{}, err
		}
		page.Items = append(page.Items, in)
	}
	return page, nil
}

// ListAccounts lists every account by name.
func ListAccounts(r projections.Reader) ([]*Account, error) {
	var out []*Account
	err := r.Scan([]byte("acct/a/"), nil, func(_, v []byte) (bool, error) {
		a, err := decodeAccount(v)
		if err != nil {
			return false, err
		}
		out = append(out, a)
		return true, nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// EachLocation calls fn for every live key ("key") and secret ("secret")
// of the account with where it lives, in one scan per kind: for a question
// about many items at once, instead of one look-up each.
func EachLocation(r projections.Reader, a domain.AccountID, fn func(kind, id string, loc Location) error) error {
	for _, kind := range []string{"key", "secret"} {
		ns := "kms/gk/"
		if kind == "secret" {
			ns = "kms/gs/"
		}
		p := prefix(ns, string(a))
		err := r.Scan(p, nil, func(k, v []byte) (bool, error) {
			rest := k[len(p):]
			i := bytes.IndexByte(rest, 0)
			if i < 0 {
				return false, domain.Corruption("kms state: bad location key")
			}
			return true, fn(kind, string(rest[:i]), Location{Region: string(rest[i+1:]), Instance: domain.InstanceID(v)})
		})
		if err != nil {
			return err
		}
	}
	return nil
}

package commands

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// Waiter blocks until a projection has applied a log position.
type Waiter interface {
	WaitFor(ctx context.Context, pos uint64) error
}

// KMS holds the software KMS's use cases: instances, keys, data-plane
// encryption and secrets. Every change is decided by the domain against the
// read model, appended to the instance's stream with the revision the read
// model saw (a concurrent change makes the append fail and the use case
// decide again), and returned once the read model shows it.
type KMS struct {
	Log interface {
		EventAppender
		LogReader
	}
	State    projections.Reader // the kmsstate read model
	Applied  Waiter             // the projector that maintains State
	Sealer   Sealer
	DataKeys DataKeys
	Cipher   DataCipher
	Clock    Clock
	IDs      IDSource

	// AfterCreate, if set, runs once an instance is created (the default
	// backup instance of its region is made there).
	AfterCreate func(ctx context.Context, in *domain.Instance) error
	// BeforeShred, if set, runs after an instance's release is recorded and
	// before its data key is destroyed, and again when a release is retried
	// (its backup takes a last checkpoint while the key material can still
	// be read, and records that its source is released: see
	// Backups.MarkSourceReleased). It must be idempotent.
	BeforeShred func(ctx context.Context, in *domain.Instance) error

	regions sync.Map // account+region -> *sync.Mutex: serialises uniqueness decisions
}

// maxAttempts bounds how often a use case decides again after losing an
// optimistic-concurrency race.
const maxAttempts = 8

// regionLock serialises decisions that depend on uniqueness within a region
// (key IDs and secret names span instances). Within one process this closes
// the race; across processes the expected revision of the instance stream
// still protects each instance.
func (s *KMS) regionLock(a domain.AccountID, region string) func() {
	m, _ := s.regions.LoadOrStore(string(a)+"\x00"+region, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

func requireAccount(c Caller, op string) error {
	if c.Account == "" {
		return domain.Errorf(domain.ErrPermissionDenied, op, "", "use an account token, not the admin token", "KMS operations act for an account")
	}
	return nil
}

// instance loads an instance the caller may see; any other is not found.
func (s *KMS) instance(c Caller, op string, id domain.InstanceID) (*domain.Instance, error) {
	if err := requireAccount(c, op); err != nil {
		return nil, err
	}
	if _, err := domain.ParseInstanceID(string(id)); err != nil {
		return nil, err
	}
	in, err := kmsstate.GetInstance(s.State, id)
	if errors.Is(err, domain.ErrNotFound) || (err == nil && !c.Sees(in.Account)) {
		return nil, domain.NotFound(op, "KMS instance", string(id))
	}
	return in, err
}

// locate resolves an item known by ID or name to the one region where it
// lives, or asks the caller to choose one.
func locate(op, what, item, region string, locs []kmsstate.Location) (kmsstate.Location, error) {
	if region != "" {
		if err := domain.ValidateRegion(region); err != nil {
			return kmsstate.Location{}, err
		}
		for _, l := range locs {
			if l.Region == region {
				return l, nil
			}
		}
		return kmsstate.Location{}, domain.Errorf(domain.ErrNotFound, op, item, "", "%s not found in region %s", what, region)
	}
	switch len(locs) {
	case 0:
		return kmsstate.Location{}, domain.NotFound(op, what, item)
	case 1:
		return locs[0], nil
	}
	regions := make([]string, len(locs))
	for i, l := range locs {
		regions[i] = l.Region
	}
	sort.Strings(regions)
	return kmsstate.Location{}, domain.Errorf(domain.ErrFailedPrecondition, op, item, "pass --region to choose one",
		"%s exists in several regions (%s)", what, strings.Join(regions, ", "))
}

// findKey finds a live key of the caller's account by ID.
func (s *KMS) findKey(c Caller, op string, id domain.KeyID, region string) (*domain.Key, error) {
	if err := requireAccount(c, op); err != nil {
		return nil, err
	}
	if _, err := domain.ParseKeyID(string(id)); err != nil {
		return nil, err
	}
	locs, err := kmsstate.KeyLocations(s.State, c.Account, id)
	if err != nil {
		return nil, err
	}
	loc, err := locate(op, "key", string(id), region, locs)
	if err != nil {
		return nil, err
	}
	return kmsstate.GetKey(s.State, loc.Instance, id)
}

// findSecret finds a live secret of the caller's account by name.
func (s *KMS) findSecret(c Caller, op, name, region string) (*domain.Secret, error) {
	if err := requireAccount(c, op); err != nil {
		return nil, err
	}
	if err := domain.ValidateSecretName(name); err != nil {
		return nil, err
	}
	locs, err := kmsstate.SecretLocations(s.State, c.Account, name)
	if err != nil {
		return nil, err
	}
	loc, err := locate(op, "secret", name, region, locs)
	if err != nil {
		return nil, err
	}
	return kmsstate.GetSecret(s.State, loc.Instance, name)
}

// newEvent builds an event of an instance's stream. The ID is drawn first,
// since sealed payloads are bound to it.
func (s *KMS) newEvent(id domain.EventID, in *domain.Instance, d domain.EventData) domain.Event {
	return domain.Event{
		ID: id, Stream: domain.KMSStream(in.ID), Type: d.EventType(), Schema: domain.SchemaVersion,
		OccurredAt: s.Clock.Now().UTC(), Account: in.Account, Region: in.Region, Instance: in.ID,
		Data: domain.EncodeData(d),
	}
}

// commit appends events to an instance's stream at the revision the
// decision saw, then waits until the read model shows them.
func (s *KMS) commit(ctx context.Context, stream string, expected domain.ExpectedRevision, events ...domain.Event) error {
	res, err := s.Log.Append(ctx, stream, expected, events)
	if err != nil {
		return err
	}
	return s.Applied.WaitFor(ctx, res.LastPosition)
}

// decide runs one decide-and-append attempt until it does not lose a race.
// After a lost race it waits for the read model to catch up with the log.
func (s *KMS) decide(ctx context.Context, attempt func() error) error {
	var err error
	for range maxAttempts {
		if err = attempt(); !errors.Is(err, domain.ErrWrongExpectedRevision) {
			return err
		}
		head, herr := s.Log.Head(ctx)
		if herr != nil {
			return herr
		}
		if werr := s.Applied.WaitFor(ctx, head); werr != nil {
			return werr
		}
	}
	return fmt.Errorf("gave up after %d concurrent changes: %w", maxAttempts, err)
}

// sealMaterial seals fresh key material for an event of an instance.
func (s *KMS) sealMaterial(ctx context.Context, in *domain.Instance, id domain.EventID) (domain.Sealed, error) {
	m, err := s.Cipher.NewKeyMaterial()
	if err != nil {
		return nil, fmt.Errorf("generate key material: %w", err)
	}
	defer m.Wipe()
	sealed, err := s.Sealer.Seal(ctx, string(in.ID), m, domain.AssociatedData(in.Account, domain.KMSStream(in.ID), id))
	if err != nil {
		return nil, fmt.Errorf("seal key material: %w", err)
	}
	return sealed, nil
}

// openVersion unseals one version of a key. The caller wipes the result.
func (s *KMS) openVersion(ctx context.Context, k *domain.Key, v domain.KeyVersion) (domain.Plaintext, error) {
	m, err := s.Sealer.Open(ctx, string(k.Instance), v.Material, domain.AssociatedData(k.Account, v.Stream, v.SealedBy))
	if err != nil {
		return nil, fmt.Errorf("open key %s version %d: %w", k.ID, v.Version, err)
	}
	return m, nil
}

// secretContext is the data-plane associated data of a secret version.
func secretContext(name string, version uint32) string {
	return fmt.Sprintf("secret\x00%s\x00%d", name, version)
}

// encryptUnder encrypts plaintext under k's primary version.
func (s *KMS) encryptUnder(ctx context.Context, k *domain.Key, plaintext []byte, context string) (domain.Ciphertext, error) {
	v := k.Primary()
	m, err := s.openVersion(ctx, k, v)
	if err != nil {
		return domain.Ciphertext{}, err
	}
	defer m.Wipe()
	sealed, err := s.Cipher.Encrypt(m, plaintext, domain.CiphertextAAD(k.ID, v.Version, context))
	if err != nil {
		return domain.Ciphertext{}, fmt.Errorf("encrypt under key %s: %w", k.ID, err)
	}
	return domain.Ciphertext{Key: k.ID, Version: v.Version, Sealed: sealed}, nil
}

// decryptWith decrypts a ciphertext with the version of k it names.
func (s *KMS) decryptWith(ctx context.Context, k *domain.Key, c domain.Ciphertext, context string) (domain.Plaintext, error) {
	v, ok := k.Version(c.Version)
	if !ok {
		return nil, domain.Errorf(domain.ErrNotFound, "decrypt", string(k.ID), "", "key has no version %d", c.Version)
	}
	m, err := s.openVersion(ctx, k, v)
	if err != nil {
		return nil, err
	}
	defer m.Wipe()
	pt, err := s.Cipher.Decrypt(m, c.Sealed, domain.CiphertextAAD(k.ID, v.Version, context))
	if err != nil {
		return nil, domain.Errorf(domain.ErrInvalidArgument, "decrypt", string(k.ID), "check that the ciphertext is complete and unmodified",
			"ciphertext does not decrypt under this key")
	}
	return domain.Plaintext(pt), nil
}

// pageSize clamps a requested page size.
func pageSize(n int) (int, error) {
	switch {
	case n == 0:
		return 100, nil
	case n < 0 || n > 1000:
		return 0, domain.Invalid("list", "page size %d must be between 1 and 1000", n)
	}
	return n, nil
}

func isRace(err error) bool { return errors.Is(err, domain.ErrWrongExpectedRevision) }

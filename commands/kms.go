package commands

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

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
// model saw, and returned once the read model shows it. Within this process
// the changes of one instance are decided one at a time (lockStream), so
// its writers never race each other; a change appended meanwhile by
// another process sharing the log makes the append fail, and the use case
// decides again (decide). Key IDs and secret names, unique in a region
// across its instances, are claimed in the log with the item's event
// (names.go): the name locks only spare this process's writers a lost race.
type KMS struct {
	Log interface {
		EventAppender
		MultiAppender
		StreamReader
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
	// BackupInstances.MarkSourceReleased). It must be idempotent.
	BeforeShred func(ctx context.Context, in *domain.Instance) error

	names   keyedLocks // a key ID or secret name within an account's region (regionItem)
	streams keyedLocks // an instance's stream
}

// decide runs attempt until it does not lose a race (see decide), catching
// the read model up with the log after each loss.
func (s *KMS) decide(ctx context.Context, op string, attempt func() error) error {
	return decide(ctx, op, caughtUp(s.Log, s.Applied), attempt)
}

// regionItem names a key ID or secret name within the region of in: the
// uniqueness that spans the instances of a region.
func regionItem(in *domain.Instance, kind, item string) string {
	return fmt.Sprintf("%s %s %s %s", in.Account, in.Region, kind, item)
}

// lockStream takes the locks a decision about instance id needs, in their
// one order: first, when item is set, the lock of that name within the
// region (regionItem: key IDs and secret names are unique across the
// instances of a region; the log decides it between processes, see
// names.go), then the lock of the instance's stream. The
// caller holds them until the read model shows its append (or it gives
// up), so that no other writer of this process decides on a state it is
// about to change. Holding them, lockStream reads the instance: its
// revision is read before anything else the decision reads, so that a
// change another process appends meanwhile makes the append at that
// revision fail, rather than pass on a read taken after it. Errors: the
// instance's (domain.ErrNotFound), or domain.ErrUnavailable when ctx ends
// while waiting.
func (s *KMS) lockStream(ctx context.Context, id domain.InstanceID, item string) (*domain.Instance, func(), error) {
	if item == "" {
		return s.lockStreamItems(ctx, id, nil)
	}
	return s.lockStreamItems(ctx, id, []string{item})
}

// lockStreamItems is lockStream for a decision about several items at
// once (a batch of a restore): it takes their name locks in sorted order,
// so that two such decisions never wait for each other in a cycle, then
// the stream's lock.
func (s *KMS) lockStreamItems(ctx context.Context, id domain.InstanceID, items []string) (*domain.Instance, func(), error) {
	var unlocks []func()
	unlock := func() {
		for i := len(unlocks) - 1; i >= 0; i-- {
			unlocks[i]()
		}
	}
	items = slices.Compact(slices.Sorted(slices.Values(items)))
	for _, item := range items {
		u, err := s.names.lock(ctx, item)
		if err != nil {
			unlock()
			return nil, nil, err
		}
		unlocks = append(unlocks, u)
	}
	u, err := s.streams.lock(ctx, domain.KMSStream(id))
	if err != nil {
		unlock()
		return nil, nil, err
	}
	unlocks = append(unlocks, u)
	in, err := kmsstate.GetInstance(s.State, id)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return in, unlock, nil
}

// lockKey finds a live key of the caller, takes its instance's stream lock
// and, holding it, reads the instance and then the key again.
func (s *KMS) lockKey(ctx context.Context, c Caller, op string, id domain.KeyID, region string) (*domain.Instance, *domain.Key, func(), error) {
	return lockFound(ctx, s, op, "key", string(id), func() (*domain.Key, domain.InstanceID, error) {
		k, err := s.findKey(c, op, id, region)
		if err != nil {
			return nil, "", err
		}
		return k, k.Instance, nil
	})
}

// lockSecret is lockKey for a secret.
func (s *KMS) lockSecret(ctx context.Context, c Caller, op, name, region string) (*domain.Instance, *domain.Secret, func(), error) {
	return lockFound(ctx, s, op, "secret", name, func() (*domain.Secret, domain.InstanceID, error) {
		sec, err := s.findSecret(c, op, name, region)
		if err != nil {
			return nil, "", err
		}
		return sec, sec.Instance, nil
	})
}

// lockFound finds an item (find returns it and its instance), takes the
// stream lock of its instance and, holding it, reads the instance and
// finds the item again: the item as the decision sees it is no older than
// the revision its append expects.
func lockFound[T any](ctx context.Context, s *KMS, op, what, item string, find func() (T, domain.InstanceID, error)) (*domain.Instance, T, func(), error) {
	var none T
	_, at, err := find()
	if err != nil {
		return nil, none, nil, err
	}
	in, unlock, err := s.lockStream(ctx, at, "")
	if err != nil {
		return nil, none, nil, err
	}
	found, now, err := find()
	if err == nil && now != in.ID {
		err = moved(op, what, item)
	}
	if err != nil {
		unlock()
		return nil, none, nil, err
	}
	return in, found, unlock, nil
}

// moved is the race lost when an item was deleted and restored into another
// instance of its region while a decision waited for its first instance's
// lock: decide then looks it up again.
func moved(op, what, item string) error {
	return domain.Errorf(domain.ErrWrongExpectedRevision, op, item, "", "the %s moved to another instance meanwhile", what)
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
// pageOf runs a listing's query from the position its page token holds
// (token is "" for the first page, else the Next of a page of the listing
// scope names: see domain.PageScope) and hands out the position of the
// next page as a token (domain.PageToken). A token the listing did not
// issue is domain.ErrInvalidArgument.
func pageOf[T any](scope, token string, query func(cursor string) (projections.Page[T], error)) (projections.Page[T], error) {
	cursor, err := domain.PageCursor(scope, token)
	if err != nil {
		return projections.Page[T]{}, err
	}
	p, err := query(cursor)
	if err != nil {
		return projections.Page[T]{}, err
	}
	p.Next = domain.PageToken(scope, p.Next)
	return p, nil
}

func pageSize(n int) (int, error) {
	switch {
	case n == 0:
		return 100, nil
	case n < 0 || n > 1000:
		return 0, domain.Invalid("list", "page size %d must be between 1 and 1000", n)
	}
	return n, nil
}

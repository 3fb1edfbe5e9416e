package envelope

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

var (
	_ commands.Sealer   = (*Envelope)(nil)
	_ commands.DataKeys = (*Envelope)(nil)
)

// The sealed format:
//
//	format(1) = sealFormat || dekVersion(4, big-endian) || nonce(12) || ciphertext || tag(16)
//
// sealed with AES-256-GCM under the ref's DEK of that version, a random
// 96-bit nonce, and as additional data the 5-byte header followed by the
// caller's aad, so the header is authenticated too.
const (
	sealFormat byte = 1
	headerLen       = 1 + 4
	nonceLen        = 12
	tagLen          = 16
	// MinSealedLen is the length of a sealed empty plaintext; anything
	// shorter is truncated.
	MinSealedLen = headerLen + nonceLen + tagLen

	dekLen     = 32
	wrappedLen = nonceLen + dekLen + tagLen
)

// Limits on how many values one DEK version seals.
const (
	// DefaultRotateAfter is the default number of seals after which a DEK
	// version is retired and a new one created: with random 96-bit nonces
	// the collision risk stays negligible up to about 2^32 messages per key.
	DefaultRotateAfter = 1 << 30
	// MaxRotateAfter is the largest honoured RotateAfter.
	MaxRotateAfter = 1 << 32
	// DefaultReserveChunk is how many seals are reserved (and persisted) at
	// a time, so the count is written once per chunk, not once per seal.
	DefaultReserveChunk = 1 << 20
)

// dekAADPrefix starts the additional data of a wrapped DEK. The ref follows,
// then a zero byte and the version (4 bytes): the fixed-size tail keeps the
// encoding unambiguous whatever bytes the ref holds.
const dekAADPrefix = "kmsbackup/envelope/dek/v1\x00"

// Envelope seals values under per-ref data keys wrapped by a master key. It
// is safe for concurrent use. Unwrapped keys are cached in memory for the
// life of the Envelope (or until DestroyDataKey), or for CacheTTL.
type Envelope struct {
	// CacheTTL, when positive, bounds how long an unwrapped key is used
	// before its record is read from the store again: engines sharing a key
	// store then stop using a key another engine destroyed within CacheTTL
	// (and see its new versions). A reload counts like a restart: the seals
	// reserved but not made are skipped, never reused. Zero keeps keys for
	// the Envelope's life (one engine owns its store). Set it before first
	// use.
	CacheTTL time.Duration

	// RotateAfter is the number of seals after which a ref's current DEK
	// version is retired and Seal creates the next one (older versions stay
	// for Open). Zero means DefaultRotateAfter; values above MaxRotateAfter
	// mean MaxRotateAfter. Set it before first use.
	RotateAfter uint64
	// ReserveChunk is how many seals of a DEK version are reserved per write
	// to the store: a restart skips at most this many, and never reuses one.
	// Zero means DefaultReserveChunk. Set it before first use.
	ReserveChunk uint64

	master cipher.AEAD
	store  commands.KeyStore
	check  []byte // the master key's check (keycheck.go)

	// checked is set once the master key passed CheckMasterKey; checkMu
	// serialises the check.
	checked atomic.Bool
	checkMu sync.Mutex

	// refLocks serialise the slow paths of one ref (loading, creating and
	// destroying its key), so a ref never has two live keyStates.
	refLocks [64]sync.Mutex

	mu   sync.RWMutex
	keys map[string]*keyState // the loaded refs
}

// keyState is one ref's unwrapped DEKs and its use count.
type keyState struct {
	ref string

	mu        sync.Mutex
	destroyed bool
	rec       record                 // as last written to the store
	aeads     map[uint32]cipher.AEAD // every version, unwrapped
	current   uint32                 // the version Seal uses
	used      uint64                 // seals of current made, or assumed made
	loadedAt  time.Time              // when it was read from the store
}

// New returns an Envelope whose data keys are wrapped by master (32 bytes)
// and stored in store. It keeps no reference to master; the caller may wipe
// it. It reads nothing yet: the master key is checked against the store by
// CheckMasterKey, which the first use of the Envelope calls. Errors:
// domain.ErrInvalidArgument for a master key of the wrong size.
func New(master []byte, store commands.KeyStore) (*Envelope, error) {
	if len(master) != MasterKeySize {
		return nil, domain.Invalid("envelope: new", "master key is %d bytes, want %d", len(master), MasterKeySize)
	}
	if store == nil {
		return nil, domain.Invalid("envelope: new", "no key store")
	}
	aead, err := newAEAD(master)
	if err != nil {
		return nil, fmt.Errorf("envelope: new: %w", err)
	}
	check, err := keyCheck(master)
	if err != nil {
		return nil, fmt.Errorf("envelope: new: %w", err)
	}
	return &Envelope{
		check:        check,
		RotateAfter:  DefaultRotateAfter,
		ReserveChunk: DefaultReserveChunk,
		master:       aead,
		store:        store,
		keys:         make(map[string]*keyState),
	}, nil
}

// newAEAD returns AES-256-GCM under key with random 96-bit nonces: Seal
// draws the nonce from the same generator as crypto/rand and prepends it,
// Open reads it back. The caller cannot supply (and so cannot reuse) a nonce,
// and the construction stays available in FIPS 140-only mode.
func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithRandomNonce(block)
}

func (e *Envelope) rotateAfter() uint64 {
	switch n := e.RotateAfter; {
	case n == 0:
		return DefaultRotateAfter
	case n > MaxRotateAfter:
		return MaxRotateAfter
	default:
		return n
	}
}

func (e *Envelope) reserveChunk() uint64 {
	if e.ReserveChunk == 0 {
		return DefaultReserveChunk
	}
	return e.ReserveChunk
}

// Seal encrypts plaintext under ref's current DEK, bound to aad. Errors:
// ErrWrongMasterKey (see CheckMasterKey); domain.ErrNotFound when ref has
// no data key; domain.ErrCorrupt when its record does not unwrap (a
// tampered record, or one moved from another ref); the store's errors when
// a reservation or rotation cannot be written. Safe for concurrent use.
func (e *Envelope) Seal(ctx context.Context, ref string, plaintext domain.Plaintext, aad []byte) (domain.Sealed, error) {
	const op = "envelope: seal"
	if err := e.ready(ctx, op+" under", ref); err != nil {
		return nil, err
	}
	k, err := e.load(ctx, op, ref)
	if err != nil {
		return nil, err
	}
	version, aead, err := e.take(ctx, op, k)
	if err != nil {
		return nil, err
	}
	out := make([]byte, headerLen, headerLen+nonceLen+len(plaintext)+tagLen)
	out[0] = sealFormat
	binary.BigEndian.PutUint32(out[1:headerLen], version)
	out = aead.Seal(out, nil, plaintext, additionalData(out[:headerLen], aad))
	return domain.Sealed(out), nil
}

// Open decrypts a value Seal made for ref with the same aad. Errors:
// ErrWrongMasterKey (see CheckMasterKey); domain.ErrNotFound when ref has
// no data key (never created, or destroyed); domain.ErrCorrupt for
// anything that does not authenticate: tampered or truncated bytes, other
// aad, a record that does not unwrap. Safe for concurrent use.
func (e *Envelope) Open(ctx context.Context, ref string, sealed domain.Sealed, aad []byte) (domain.Plaintext, error) {
	const op = "envelope: open"
	if err := e.ready(ctx, op+" under", ref); err != nil {
		return nil, err
	}
	k, err := e.load(ctx, op, ref)
	if err != nil {
		return nil, err
	}
	if len(sealed) < MinSealedLen {
		return nil, fmt.Errorf("%s under %s: %w", op, ref,
			domain.Corruption("sealed value is truncated (%d bytes, at least %d expected)", len(sealed), MinSealedLen))
	}
	if sealed[0] != sealFormat {
		return nil, fmt.Errorf("%s under %s: %w", op, ref, domain.Corruption("unknown sealed format %d", sealed[0]))
	}
	version := binary.BigEndian.Uint32(sealed[1:headerLen])
	aead, err := k.version(op, version)
	if err != nil {
		return nil, err
	}
	pt, err := aead.Open(nil, nil, sealed[headerLen:], additionalData(sealed[:headerLen], aad))
	if err != nil {
		return nil, fmt.Errorf("%s under %s: %w", op, ref,
			domain.Corruption("sealed value does not authenticate (tampered, truncated, or other associated data)"))
	}
	return domain.Plaintext(pt), nil
}

// CreateDataKey makes ref's first DEK unless ref has one already (it is
// then loaded, which checks that it unwraps). It never runs before the
// master key passed CheckMasterKey, so no data key is ever wrapped under a
// master key the store does not recognise. Errors: ErrWrongMasterKey;
// domain.ErrCorrupt when an existing record does not unwrap; the store's
// errors. Idempotent; safe for concurrent use.
func (e *Envelope) CreateDataKey(ctx context.Context, ref string) error {
	const op = "envelope: create data key"
	if err := e.ready(ctx, op, ref); err != nil {
		return err
	}
	if err := checkRef(op, ref); err != nil {
		return err
	}
	l := e.refLock(ref)
	l.Lock()
	defer l.Unlock()
	if e.cached(ref) != nil {
		return nil
	}
	raw, ok, err := e.store.GetWrapped(ctx, ref)
	if err != nil {
		return storeError(op, ref, "read", err)
	}
	if ok {
		k, err := e.unwrap(op, ref, raw)
		if err != nil {
			return err
		}
		e.cache(k)
		return nil
	}
	wrapped, aead, err := e.newDEK(op, ref, 1)
	if err != nil {
		return err
	}
	rec := record{reserved: e.reserveChunk(), versions: []wrappedDEK{{version: 1, wrapped: wrapped}}}
	if err := e.store.PutWrapped(ctx, ref, rec.encode()); err != nil {
		return storeError(op, ref, "write", err)
	}
	e.cache(&keyState{ref: ref, rec: rec, aeads: map[uint32]cipher.AEAD{1: aead}, current: 1})
	return nil
}

// DestroyDataKey removes ref's record from the store and its DEKs from
// memory: everything sealed under them becomes unreadable. If the store
// fails, the error is returned and the record may survive; the call should
// be retried. Like every method it refuses (ErrWrongMasterKey) under a
// master key the store does not recognise. Idempotent; safe for concurrent
// use.
func (e *Envelope) DestroyDataKey(ctx context.Context, ref string) error {
	const op = "envelope: destroy data key"
	if err := e.ready(ctx, op, ref); err != nil {
		return err
	}
	if err := checkRef(op, ref); err != nil {
		return err
	}
	l := e.refLock(ref)
	l.Lock()
	defer l.Unlock()
	e.mu.Lock()
	k := e.keys[ref]
	delete(e.keys, ref)
	e.mu.Unlock()
	if k != nil {
		// Holding k.mu across the delete orders it after any reservation or
		// rotation write in flight, which could otherwise resurrect the
		// record; later users of k see it destroyed.
		k.mu.Lock()
		defer k.mu.Unlock()
		k.destroyed = true
		k.aeads = nil
		k.rec = record{}
	}
	if err := e.store.DeleteWrapped(ctx, ref); err != nil {
		return storeError(op, ref, "delete", err)
	}
	return nil
}

// load returns ref's key state, unwrapping its record on first use.
func (e *Envelope) load(ctx context.Context, op, ref string) (*keyState, error) {
	if k := e.cached(ref); k != nil {
		return k, nil
	}
	if err := checkRef(op, ref); err != nil {
		return nil, err
	}
	l := e.refLock(ref)
	l.Lock()
	defer l.Unlock()
	if k := e.cached(ref); k != nil {
		return k, nil
	}
	raw, ok, err := e.store.GetWrapped(ctx, ref)
	if err != nil {
		return nil, storeError(op, ref, "read", err)
	}
	if !ok {
		// Destroyed (by another engine, if a stale copy was cached).
		e.mu.Lock()
		delete(e.keys, ref)
		e.mu.Unlock()
		return nil, notFound(op, ref)
	}
	k, err := e.unwrap(op, ref, raw)
	if err != nil {
		return nil, err
	}
	e.cache(k)
	return k, nil
}

func (e *Envelope) cached(ref string) *keyState {
	e.mu.RLock()
	k := e.keys[ref]
	e.mu.RUnlock()
	if k != nil && e.CacheTTL > 0 && time.Since(k.loadedAt) > e.CacheTTL {
		return nil // read the store again
	}
	return k
}

func (e *Envelope) cache(k *keyState) {
	k.loadedAt = time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.keys[k.ref] = k
}

// refLock returns the mutex of ref's stripe (FNV-1a).
func (e *Envelope) refLock(ref string) *sync.Mutex {
	h := uint32(2166136261)
	for i := 0; i < len(ref); i++ {
		h ^= uint32(ref[i])
		h *= 16777619
	}
	return &e.refLocks[h%uint32(len(e.refLocks))]
}

// unwrap decodes a stored record and unwraps every DEK version in it. The
// use count of the newest version restarts at its reservation: whatever was
// reserved is assumed used.
func (e *Envelope) unwrap(op, ref string, raw []byte) (*keyState, error) {
	rec, err := decodeRecord(raw)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, ref, err)
	}
	k := &keyState{ref: ref, rec: rec, aeads: make(map[uint32]cipher.AEAD, len(rec.versions)),
		current: rec.newest(), used: rec.reserved}
	for _, v := range rec.versions {
		dek, err := e.master.Open(nil, nil, v.wrapped, dekAAD(ref, v.version))
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", op, ref, domain.Corruption(
				"data key version %d does not unwrap (wrong master key, or a record tampered with or moved from another ref)", v.version))
		}
		aead, err := newAEAD(dek)
		clear(dek)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", op, ref, domain.Corruption("data key version %d is unusable", v.version))
		}
		k.aeads[v.version] = aead
	}
	return k, nil
}

// newDEK draws a DEK for ref's version and returns it wrapped under the
// master key, and as a ready cipher.
func (e *Envelope) newDEK(op, ref string, version uint32) ([]byte, cipher.AEAD, error) {
	dek := make([]byte, dekLen)
	defer clear(dek)
	if _, err := rand.Read(dek); err != nil {
		return nil, nil, fmt.Errorf("%s %s: draw data key: %w", op, ref, err)
	}
	aead, err := newAEAD(dek)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", op, ref, err)
	}
	return e.master.Seal(nil, nil, dek, dekAAD(ref, version)), aead, nil
}

// take accounts for one seal under k and returns the version and cipher to
// make it with, first rotating to a new DEK version when the current one
// has sealed its quota, and reserving the next chunk of seals in the store
// when the reservation is used up.
func (e *Envelope) take(ctx context.Context, op string, k *keyState) (uint32, cipher.AEAD, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.destroyed {
		return 0, nil, notFound(op, k.ref)
	}
	if k.used >= e.rotateAfter() {
		if err := e.rotate(ctx, op, k); err != nil {
			return 0, nil, err
		}
	}
	if k.used >= k.rec.reserved {
		rec := k.rec
		rec.reserved = k.used + e.reserveChunk()
		if err := e.store.PutWrapped(ctx, k.ref, rec.encode()); err != nil {
			return 0, nil, storeError(op, k.ref, "reserve seals in", err)
		}
		k.rec = rec
	}
	k.used++
	return k.current, k.aeads[k.current], nil
}

// rotate adds a new DEK version to k and makes it current. k.mu is held.
func (e *Envelope) rotate(ctx context.Context, op string, k *keyState) error {
	if k.current == math.MaxUint32 {
		return domain.Errorf(domain.ErrFailedPrecondition, op, k.ref, "", "data key has no version left")
	}
	next := k.current + 1
	wrapped, aead, err := e.newDEK(op, k.ref, next)
	if err != nil {
		return err
	}
	rec := record{
		reserved: e.reserveChunk(),
		versions: append(k.rec.versions[:len(k.rec.versions):len(k.rec.versions)], wrappedDEK{version: next, wrapped: wrapped}),
	}
	if err := e.store.PutWrapped(ctx, k.ref, rec.encode()); err != nil {
		return storeError(op, k.ref, "rotate data key in", err)
	}
	k.rec, k.current, k.used = rec, next, 0
	k.aeads[next] = aead
	return nil
}

// version returns the cipher of one of k's DEK versions.
func (k *keyState) version(op string, v uint32) (cipher.AEAD, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.destroyed {
		return nil, notFound(op, k.ref)
	}
	aead, ok := k.aeads[v]
	if !ok {
		return nil, fmt.Errorf("%s under %s: %w", op, k.ref,
			domain.Corruption("sealed value names data key version %d, which does not exist", v))
	}
	return aead, nil
}

// additionalData is what GCM authenticates besides the ciphertext: the
// fixed-size header, then the caller's aad.
func additionalData(header, aad []byte) []byte {
	b := make([]byte, 0, len(header)+len(aad))
	b = append(b, header...)
	return append(b, aad...)
}

func dekAAD(ref string, version uint32) []byte {
	b := make([]byte, 0, len(dekAADPrefix)+len(ref)+5)
	b = append(b, dekAADPrefix...)
	b = append(b, ref...)
	b = append(b, 0)
	return binary.BigEndian.AppendUint32(b, version)
}

// maxRefLen bounds a ref; real refs are prefixed ULIDs of about 30 bytes.
const maxRefLen = 256

func checkRef(op, ref string) error {
	if ref == "" || len(ref) > maxRefLen {
		return domain.Invalid(op, "data key ref must be 1 to %d bytes, not %d", maxRefLen, len(ref))
	}
	return nil
}

func notFound(op, ref string) error {
	return domain.Errorf(domain.ErrNotFound, op, ref,
		"create it with CreateDataKey; a destroyed data key is gone for good, with everything it sealed",
		"no data key (never created, or destroyed)")
}

// storeError wraps a KeyStore error with context, marking it unavailable
// unless the store already said what kind of error it is.
func storeError(op, ref, what string, err error) error {
	if ref != "" {
		op += " " + ref
	}
	if domain.Kind(err) == nil {
		return fmt.Errorf("%s: %s key store: %w: %w", op, what, domain.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %s key store: %w", op, what, err)
}

package envelope

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
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
// life of the Envelope (or until DestroyDataKey); with a Lease, each is
// used only while the store confirmed its record less than Lease ago.
type Envelope struct {
	// Lease, when positive, says that other Envelopes (other engine nodes)
	// share the key store, and bounds how long this one uses an unwrapped
	// key after the store last confirmed its record: the first use after
	// that reads the record again (one read per ref per Lease at most,
	// whatever the number of seals), and DestroyDataKey waits Lease and
	// an eighth more after the delete before it returns, by when every
	// other Envelope's lease on the key has run out (doc.go says why).
	// Zero means this Envelope is its store's only user: keys are cached
	// for its life and DestroyDataKey returns once the record is deleted.
	// Set it before first use.
	Lease time.Duration

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

	// now and sleep are the clock leases are counted on: time.Now and a
	// timer (the tests' own in this package's tests).
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
}

// leaseMargin: DestroyDataKey waits Lease + Lease/leaseMargin, so that a
// node whose clock runs up to an eighth slower than the destroyer's has
// seen its lease run out too (real clocks differ by well under 0.1%).
const leaseMargin = 8

// maxRaces bounds how often in a row a write of a ref's record may lose
// its compare-and-swap to another Envelope before the call gives up.
const maxRaces = 32

// keyState is one ref's unwrapped DEKs and its use count, as this
// Envelope last read or wrote its record.
type keyState struct {
	ref string

	// confirmed is when the store last confirmed the record: the start of
	// the last read that found it, or of the last write of it that
	// succeeded. The lease runs from there (see fresh). Written under mu.
	confirmed atomic.Pointer[time.Time]

	mu        sync.Mutex
	destroyed bool
	rec       record                 // as last read from or written to the store
	rev       uint64                 // its revision in the store
	aeads     map[uint32]cipher.AEAD // every version of rec, unwrapped
	current   uint32                 // the version Seal uses: rec's newest
	used      uint64                 // seals of current made, or assumed made
	limit     uint64                 // the end of the seals of current this Envelope reserved
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
		now:          time.Now,
		sleep:        sleep,
	}, nil
}

// sleep waits d, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
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
// no data key (never created, or destroyed: with a Lease, by any node
// before this call began); domain.ErrCorrupt when its record does not
// unwrap (a tampered record, or one moved from another ref); the store's
// errors when the record cannot be read (its lease ran out) or a
// reservation or rotation cannot be written; domain.ErrUnavailable also
// when other nodes won every one of maxRaces writes of the record in a
// row. Safe for concurrent use.
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

// Open decrypts a value Seal made for ref with the same aad, on this
// Envelope or on another one sharing the store: a value naming a DEK
// version this one has not seen makes it read the record again, once.
// Errors: ErrWrongMasterKey (see CheckMasterKey); domain.ErrNotFound when
// ref has no data key (never created, or destroyed: with a Lease, by any
// node before this call began); domain.ErrCorrupt for anything that does
// not authenticate: tampered or truncated bytes, other aad, a record that
// does not unwrap; the store's errors when the record cannot be read.
// Safe for concurrent use.
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
	if err == nil && aead == nil {
		// Another node may have added the version since this one read the
		// record.
		if k, err = e.reload(ctx, op, ref); err == nil {
			aead, err = k.version(op, version)
		}
	}
	if err != nil {
		return nil, err
	}
	if aead == nil {
		return nil, fmt.Errorf("%s under %s: %w", op, ref,
			domain.Corruption("sealed value names data key version %d, which does not exist", version))
	}
	pt, err := aead.Open(nil, nil, sealed[headerLen:], additionalData(sealed[:headerLen], aad))
	if err != nil {
		return nil, fmt.Errorf("%s under %s: %w", op, ref,
			domain.Corruption("sealed value does not authenticate (tampered, truncated, or other associated data)"))
	}
	return domain.Plaintext(pt), nil
}

// CreateDataKey makes ref's first DEK unless ref has one already (it is
// then loaded, which checks that it unwraps). Of Envelopes creating one
// ref at once, on one node or several, one writes the record and the
// others load it. It never runs before the master key passed
// CheckMasterKey, so no data key is ever wrapped under a master key the
// store does not recognise. Errors: ErrWrongMasterKey; domain.ErrCorrupt
// when an existing record does not unwrap; the store's errors.
// Idempotent; safe for concurrent use.
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
	if k := e.cached(ref); k != nil && e.fresh(k) {
		return nil
	}
	for range maxRaces {
		_, found, err := e.read(ctx, op, ref)
		if err != nil || found {
			return err
		}
		start := e.now()
		wrapped, aead, err := e.newDEK(op, ref, 1)
		if err != nil {
			return err
		}
		rec := record{reserved: e.reserveChunk(), versions: []wrappedDEK{{version: 1, wrapped: wrapped}}}
		rev, err := e.store.PutWrapped(ctx, ref, rec.encode(), 0)
		switch {
		case err == nil:
			k := &keyState{ref: ref, rec: rec, rev: rev, aeads: map[uint32]cipher.AEAD{1: aead}, current: 1, limit: rec.reserved}
			k.confirmed.Store(&start)
			e.cache(k)
			return nil
		case !errors.Is(err, domain.ErrWrongExpectedRevision):
			return storeError(op, ref, "write", err)
		}
		// Created by another node meanwhile (or created and destroyed):
		// read it.
	}
	return lostRaces(op, ref)
}

// DestroyDataKey removes ref's record from the store and its DEKs from
// memory: everything sealed under them becomes unreadable. With a Lease it
// then waits Lease and an eighth before it returns: once it has returned,
// no Envelope sharing the store seals or opens under the key any more
// (doc.go). If the store fails, the error is returned and the record may
// survive; if ctx ends during the wait, its error is returned (the record
// is gone, but other nodes may still hold the key for the rest of their
// lease): the call should be retried. Like every method it refuses
// (ErrWrongMasterKey) under a master key the store does not recognise.
// Idempotent; safe for concurrent use.
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
	e.mu.Lock()
	k := e.keys[ref]
	delete(e.keys, ref)
	e.mu.Unlock()
	if k != nil {
		// Taking k.mu waits for a reservation or rotation write in flight;
		// later users of k see it destroyed. (A write of another Envelope
		// that lands after the delete fails: it expects a revision the
		// record no longer has.)
		k.mu.Lock()
		k.destroy()
		k.mu.Unlock()
	}
	err := e.store.DeleteWrapped(ctx, ref)
	l.Unlock()
	if err != nil {
		return storeError(op, ref, "delete", err)
	}
	if e.Lease > 0 {
		// Every other node's lease on the key started before the delete:
		// this one's wait outlasts them.
		if err := e.sleep(ctx, e.Lease+e.Lease/leaseMargin); err != nil {
			return fmt.Errorf("%s %s: wait out other nodes' leases on the deleted key: %w", op, ref, err)
		}
	}
	return nil
}

// load returns ref's key state, reading its record first when it is not
// loaded yet or its lease ran out.
func (e *Envelope) load(ctx context.Context, op, ref string) (*keyState, error) {
	if k := e.cached(ref); k != nil && e.fresh(k) {
		return k, nil
	}
	if err := checkRef(op, ref); err != nil {
		return nil, err
	}
	l := e.refLock(ref)
	l.Lock()
	defer l.Unlock()
	if k := e.cached(ref); k != nil && e.fresh(k) {
		return k, nil
	}
	return e.mustRead(ctx, op, ref)
}

// reload reads ref's record again, whatever its lease.
func (e *Envelope) reload(ctx context.Context, op, ref string) (*keyState, error) {
	l := e.refLock(ref)
	l.Lock()
	defer l.Unlock()
	return e.mustRead(ctx, op, ref)
}

// mustRead is read, with a missing record as domain.ErrNotFound. ref's lock
// is held.
func (e *Envelope) mustRead(ctx context.Context, op, ref string) (*keyState, error) {
	k, found, err := e.read(ctx, op, ref)
	if err == nil && !found {
		return nil, notFound(op, ref)
	}
	return k, err
}

// read reads ref's record from the store into its key state (a new one
// when none is loaded), renews its lease and returns it. A missing record
// (found false) is destroyed, by this Envelope or another: its key state,
// if loaded, is marked so and dropped. ref's lock is held.
func (e *Envelope) read(ctx context.Context, op, ref string) (k *keyState, found bool, err error) {
	start := e.now()
	raw, rev, err := e.store.GetWrapped(ctx, ref)
	if err != nil {
		return nil, false, storeError(op, ref, "read", err)
	}
	k = e.cached(ref)
	if rev == 0 {
		if k != nil {
			k.mu.Lock()
			k.destroy()
			k.mu.Unlock()
			e.drop(k)
		}
		return nil, false, nil
	}
	if k == nil {
		k = &keyState{ref: ref}
		if err := e.apply(op, k, raw, rev); err != nil {
			return nil, false, err
		}
		k.confirmed.Store(&start)
		e.cache(k)
		return k, true, nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := e.apply(op, k, raw, rev); err != nil {
		return nil, false, err
	}
	k.confirmed.Store(&start)
	return k, true, nil
}

// fresh reports whether k may be used without asking the store: always
// without a Lease; else while less than Lease has passed since the store
// last confirmed k's record, on the monotonic clock and on the wall clock
// both (a machine that is suspended stops its monotonic clock, not its
// wall clock; a wall clock set back only makes the lease shorter).
func (e *Envelope) fresh(k *keyState) bool {
	if e.Lease <= 0 {
		return true
	}
	t := k.confirmed.Load()
	if t == nil {
		return false
	}
	now := e.now()
	if now.Sub(*t) >= e.Lease { // monotonic, when both have a reading
		return false
	}
	wall := now.UnixNano() - t.UnixNano()
	return wall >= 0 && wall < int64(e.Lease)
}

func (e *Envelope) cached(ref string) *keyState {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.keys[ref]
}

func (e *Envelope) cache(k *keyState) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.keys[k.ref] = k
}

// drop forgets k, unless another key state replaced it.
func (e *Envelope) drop(k *keyState) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.keys[k.ref] == k {
		delete(e.keys, k.ref)
	}
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

// unwrap decodes a stored record and unwraps every DEK version in it, into
// a key state of its own.
func (e *Envelope) unwrap(op, ref string, raw []byte) (*keyState, error) {
	k := &keyState{ref: ref}
	return k, e.apply(op, k, raw, 0)
}

// apply makes k hold the stored record raw, at revision rev: every DEK
// version in it unwrapped (those k holds already, with the same wrapped
// bytes, are kept). When the newest version is not the one k sealed with
// (another node rotated the key, or k is new), the use count of the newest
// restarts at the record's reservation: whatever was reserved is assumed
// used, as after a restart. On an error k is left as it was. k.mu is held,
// or k is not shared yet.
func (e *Envelope) apply(op string, k *keyState, raw []byte, rev uint64) error {
	if rev != 0 && rev == k.rev && k.aeads != nil {
		return nil // the record k holds
	}
	rec, err := decodeRecord(raw)
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, k.ref, err)
	}
	held := make(map[uint32][]byte, len(k.rec.versions))
	for _, v := range k.rec.versions {
		held[v.version] = v.wrapped
	}
	aeads := make(map[uint32]cipher.AEAD, len(rec.versions))
	for _, v := range rec.versions {
		if aead, ok := k.aeads[v.version]; ok && bytes.Equal(held[v.version], v.wrapped) {
			aeads[v.version] = aead
			continue
		}
		dek, err := e.master.Open(nil, nil, v.wrapped, dekAAD(k.ref, v.version))
		if err != nil {
			return fmt.Errorf("%s %s: %w", op, k.ref, domain.Corruption(
				"data key version %d does not unwrap (wrong master key, or a record tampered with or moved from another ref)", v.version))
		}
		aead, err := newAEAD(dek)
		clear(dek)
		if err != nil {
			return fmt.Errorf("%s %s: %w", op, k.ref, domain.Corruption("data key version %d is unusable", v.version))
		}
		aeads[v.version] = aead
	}
	newest := rec.newest()
	if newest != k.current || !bytes.Equal(held[newest], rec.versions[len(rec.versions)-1].wrapped) {
		k.current, k.used, k.limit = newest, rec.reserved, rec.reserved
	}
	k.rec, k.rev, k.aeads, k.destroyed = rec, rev, aeads, false
	return nil
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
// make it with, first reserving more seals in the store when this
// Envelope's reservation is used up (see reserve).
func (e *Envelope) take(ctx context.Context, op string, k *keyState) (uint32, cipher.AEAD, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.destroyed {
		return 0, nil, notFound(op, k.ref)
	}
	if k.used >= k.limit || k.used >= e.rotateAfter() {
		if err := e.reserve(ctx, op, k); err != nil {
			return 0, nil, err
		}
	}
	k.used++
	return k.current, k.aeads[k.current], nil
}

// reserve gives k a fresh reservation: the next ReserveChunk seals of the
// newest DEK version from the record's reservation on, or, when the
// newest version has sealed its quota, a new version and its first
// ReserveChunk seals. The record is written with a compare-and-swap on the
// revision k read: when another Envelope wrote it since (it reserved
// seals, or rotated), the write is refused, and reserve reads the record
// again and starts over from it, so that no seal is handed out twice and
// no version is lost; a record deleted meanwhile is a destroyed key. k.mu
// is held.
func (e *Envelope) reserve(ctx context.Context, op string, k *keyState) error {
	for attempt := range maxRaces {
		if attempt > 0 {
			// A replicated JetStream refuses a conditioned write while
			// another one of the subject is in process, whatever its
			// outcome: writers retrying in step could refuse each other
			// for ever. Apart by a jittered, growing pause, one wins.
			if err := e.sleep(ctx, raceBackoff(attempt)); err != nil {
				return fmt.Errorf("%s %s: %w", op, k.ref, err)
			}
		}
		start := e.now()
		next, from, what := k.rec, k.rec.reserved, "reserve seals in"
		var aead cipher.AEAD
		if from >= e.rotateAfter() {
			newest := k.rec.newest()
			if newest == math.MaxUint32 {
				return domain.Errorf(domain.ErrFailedPrecondition, op, k.ref, "", "data key has no version left")
			}
			wrapped, a, err := e.newDEK(op, k.ref, newest+1)
			if err != nil {
				return err
			}
			versions := append(k.rec.versions[:len(k.rec.versions):len(k.rec.versions)], wrappedDEK{version: newest + 1, wrapped: wrapped})
			next, from, what, aead = record{versions: versions}, 0, "rotate data key in", a
		}
		next.reserved = from + e.reserveChunk()
		rev, err := e.store.PutWrapped(ctx, k.ref, next.encode(), k.rev)
		switch {
		case err == nil:
			if aead != nil {
				k.aeads[next.newest()] = aead
			}
			k.rec, k.rev, k.current, k.used, k.limit = next, rev, next.newest(), from, next.reserved
			k.confirmed.Store(&start)
			return nil
		case !errors.Is(err, domain.ErrWrongExpectedRevision):
			return storeError(op, k.ref, what, err)
		}
		// Lost the race to another Envelope: read what it wrote.
		start = e.now()
		raw, rev, err := e.store.GetWrapped(ctx, k.ref)
		switch {
		case err != nil:
			return storeError(op, k.ref, "read", err)
		case rev == 0:
			k.destroy()
			e.drop(k)
			return notFound(op, k.ref)
		}
		if err := e.apply(op, k, raw, rev); err != nil {
			return err
		}
		k.confirmed.Store(&start)
	}
	return lostRaces(op, k.ref)
}

// destroy forgets k's keys: its users see the key destroyed. k.mu is held.
func (k *keyState) destroy() {
	k.destroyed = true
	k.aeads = nil
	k.rec = record{}
	k.rev = 0
	k.confirmed.Store(nil)
}

// version returns the cipher of one of k's DEK versions; nil when k has
// no such version.
func (k *keyState) version(op string, v uint32) (cipher.AEAD, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.destroyed {
		return nil, notFound(op, k.ref)
	}
	return k.aeads[v], nil
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
// raceBackoff is the pause before the attempt-th write of a record after
// lost races: about 2^attempt ms, at most 32 ms, jittered to between half
// and all of it.
func raceBackoff(attempt int) time.Duration {
	d := time.Duration(1<<min(attempt, 5)) * time.Millisecond
	return d/2 + mrand.N(d/2+1)
}

// lostRaces is the error of a write of ref's record that lost maxRaces
// compare-and-swaps in a row to other Envelopes.
func lostRaces(op, ref string) error {
	return domain.Errorf(domain.ErrUnavailable, op, ref, "retry",
		"the data key's record changed under %d writes in a row (other nodes writing it)", maxRaces)
}

func storeError(op, ref, what string, err error) error {
	if ref != "" {
		op += " " + ref
	}
	if domain.Kind(err) == nil {
		return fmt.Errorf("%s: %s key store: %w: %w", op, what, domain.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %s key store: %w", op, what, err)
}

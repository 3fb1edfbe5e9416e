package commands

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// validator checks the target against the backup while an apply writes
// it: each batch, once the read model shows it (and every batch before),
// is read again from the target and compared with the backup's items,
// on a goroutine of its own, while the apply decides and writes the next
// batches. Every key must have the backup's versions with the same
// material (compared by digest), every secret the backup's versions, each
// decrypting under its key in the target. It keeps the first findings of
// each code and counts the others. The items are those the apply copied
// out of the point (written or found present), so the point is not read
// a third time.
//
// A batch validated as it lands is the target as it is at the end only
// when nobody else wrote to the target meanwhile: when another writer
// did (a batch of the apply lost a race, or the target's revision is not
// the one the last batch left), the whole point is validated again
// against the target as it is then (again).
type validator struct {
	s       *Restores
	r       *restoreRun
	batches chan validateBatch
	done    chan struct{}
	checked atomic.Uint64
	// Owned by the validator's goroutine until done is closed.
	fs  findingList
	err error
	// Set by the apply before finish: whether the target saw another
	// writer, and its revision as the apply's last decision left it.
	raced    bool
	revision uint64
}

// validateBatch is a batch of an apply to validate: its items, shown by
// the read model once it has applied the log's position pos.
type validateBatch struct {
	items []BackedUpItem
	pos   uint64
}

// validateQueue is how many batches an apply may have written that the
// validator has not begun: an apply that gets further ahead waits.
const validateQueue = 2

func (s *Restores) startValidator(ctx context.Context, r *restoreRun) *validator {
	v := &validator{s: s, r: r, batches: make(chan validateBatch, validateQueue), done: make(chan struct{})}
	go v.run(ctx)
	return v
}

func (v *validator) run(ctx context.Context) {
	defer close(v.done)
	for b := range v.batches {
		if v.err != nil {
			continue // the apply's hand-offs must not block
		}
		v.err = v.check(ctx, b)
		v.checked.Add(uint64(len(b.items)))
	}
}

func (v *validator) check(ctx context.Context, b validateBatch) error {
	if b.pos > 0 {
		if err := v.s.KMS.Applied.WaitFor(ctx, b.pos); err != nil {
			return err
		}
	}
	// The items' records are read in the batch's order through one
	// cursor a kind, then compared side by side.
	recs := make([]targetRecord, len(b.items))
	items, err := kmsstate.OpenItems(v.s.KMS.State, v.r.plan.Target)
	if err != nil {
		return err
	}
	for i := range b.items {
		if recs[i], err = readTarget(items, &b.items[i]); err != nil {
			break
		}
	}
	if err = errors.Join(err, items.Close()); err != nil {
		return err
	}
	found := make([][]RestoreFinding, len(b.items))
	errs := make([]error, len(b.items))
	inParallel(len(b.items), func(i int) {
		found[i], errs[i] = v.s.compare(ctx, v.r.backup, v.r.plan.Target, &b.items[i], recs[i], true)
	})
	for i := range b.items {
		v.fs.add(found[i]...)
		if errs[i] != nil {
			return errs[i]
		}
	}
	return nil
}

// add hands the validator a batch of items, shown by the read model once
// it has applied pos (0: already shown). The validator owns items from
// then on.
func (v *validator) add(ctx context.Context, items []BackedUpItem, pos uint64) error {
	select {
	case v.batches <- validateBatch{items: items, pos: pos}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop ends the validator without waiting for its result: after a failed
// apply, whose caller cancels the context given to startValidator.
func (v *validator) stop() {
	close(v.batches)
	<-v.done
}

// finish waits for the validation of every batch handed over, telling
// progress how far it got, and puts its findings in res.
func (v *validator) finish(ctx context.Context, res *RestoreResult, progress ProgressFunc) error {
	close(v.batches)
	total := uint64(v.r.plan.Keys + v.r.plan.Secrets)
	report := progressReporter(progress, PhaseValidate, total)
	told := uint64(0)
	tell := func() {
		if n := v.checked.Load(); n > told {
			report(n - told)
			told = n
		}
	}
	if progress != nil {
		tick := time.NewTicker(validateProgressEvery)
		defer tick.Stop()
	wait:
		for {
			tell()
			select {
			case <-v.done:
				break wait
			case <-tick.C:
			}
		}
	}
	<-v.done
	if v.err != nil {
		return v.err
	}
	tell()
	again := v.raced
	if !again {
		in, err := kmsstate.GetInstance(v.s.KMS.State, v.r.plan.Target)
		if err != nil {
			return err
		}
		again = in.Revision != v.revision
	}
	if again {
		return v.again(ctx, res, progress)
	}
	report(0)
	res.Validation, res.ValidationOmitted = v.fs.listed, v.fs.omitted
	return nil
}

// again validates the whole point against the target as it is now,
// reading the point once more, validateChunk items at a time.
func (v *validator) again(ctx context.Context, res *RestoreResult, progress ProgressFunc) error {
	v.fs = findingList{}
	report := progressReporter(progress, PhaseValidate, uint64(v.r.plan.Keys+v.r.plan.Secrets))
	chunk := &restoreBatch{}
	check := func() error {
		if err := v.check(ctx, validateBatch{items: chunk.items}); err != nil {
			return err
		}
		report(uint64(len(chunk.items)))
		chunk = &restoreBatch{}
		return nil
	}
	err := v.r.src.Each(ctx, ItemRef{}, func(it *BackedUpItem) error {
		chunk.add(it)
		if len(chunk.items) == validateChunk {
			return check()
		}
		return nil
	})
	if err == nil {
		err = check()
	}
	if err != nil {
		return err
	}
	report(0)
	res.Validation, res.ValidationOmitted = v.fs.listed, v.fs.omitted
	return nil
}

// validateProgressEvery is how often a restore tells how far the
// validation of its last batches has got once the apply has ended.
const validateProgressEvery = 200 * time.Millisecond

// validateWorkers is how many goroutines at most compare a batch's items
// with the target (opening key material is most of a validation's work)
// or seal a batch's keys for the target; validateChunk is how many items
// a validation of the whole point (again) copies out of it and compares
// at a time.
const (
	validateWorkers = 4
	validateChunk   = 64
)

// inParallel calls fn(0) to fn(n-1) on up to validateWorkers goroutines
// (no more than GOMAXPROCS) and returns when every call has.
func inParallel(n int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), validateWorkers, n) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		})
	}
	wg.Wait()
}

// sameInTarget reports whether the target holds it as the backup does:
// the same versions, with the same key material or ciphertexts.
func (s *Restores) sameInTarget(ctx context.Context, b *domain.Backup, target domain.InstanceID, it *BackedUpItem) (bool, error) {
	rec, err := readTarget(stateItems{s.KMS.State, target}, it)
	if err != nil {
		return false, err
	}
	found, err := s.compare(ctx, b, target, it, rec, false)
	return len(found) == 0, err
}

// targetRecord is the target's record of a backed-up item: its key or its
// secret, nil when the target does not hold it.
type targetRecord struct {
	key *domain.Key
	sec *domain.Secret
}

// itemRecords reads an instance's key and secret records: a
// kmsstate.Items, or stateItems.
type itemRecords interface {
	GetKey(id domain.KeyID) (*domain.Key, error)
	GetSecret(name string) (*domain.Secret, error)
}

// stateItems reads an instance's records from the read model, one look-up
// each.
type stateItems struct {
	r  projections.Reader
	in domain.InstanceID
}

func (x stateItems) GetKey(id domain.KeyID) (*domain.Key, error) {
	return kmsstate.GetKey(x.r, x.in, id)
}
func (x stateItems) GetSecret(name string) (*domain.Secret, error) {
	return kmsstate.GetSecret(x.r, x.in, name)
}

// readTarget reads the target's record of it.
func readTarget(r itemRecords, it *BackedUpItem) (targetRecord, error) {
	var rec targetRecord
	var err error
	if it.Kind == domain.RestoreKey {
		rec.key, err = r.GetKey(domain.KeyID(it.ID))
	} else {
		rec.sec, err = r.GetSecret(it.ID)
	}
	if errors.Is(err, domain.ErrNotFound) {
		err = nil
	}
	return rec, err
}

// compare returns how the target's item differs from the backup's (no
// finding: not at all); with decrypt, also the versions of a secret that
// do not decrypt under their key in the target.
// rec is the target's record of it (readTarget).
func (s *Restores) compare(ctx context.Context, b *domain.Backup, target domain.InstanceID, it *BackedUpItem, rec targetRecord, decrypt bool) ([]RestoreFinding, error) {
	var out []RestoreFinding
	add := func(code, format string, args ...any) {
		out = append(out, RestoreFinding{Code: code, Item: it.ID, Message: fmt.Sprintf(format, args...)})
	}
	k := s.KMS
	if it.Kind == domain.RestoreKey {
		key := rec.key
		if key == nil {
			add(FindingVersionMismatch, "key is not in the target: %v", domain.NotFound("get key", "key", it.ID))
			return out, nil
		}
		if len(key.Versions) != len(it.Versions) {
			add(FindingVersionMismatch, "target has %d versions, the backup %d", len(key.Versions), len(it.Versions))
			return out, nil
		}
		ref := b.DataRef()
		var aad []byte
		for i, v := range it.Versions {
			aad = AppendBackupAAD(aad[:0], b.Account, ref, v.SealedBy)
			want, err := s.Sealer.Open(ctx, ref, v.Material, aad)
			if err != nil {
				return nil, fmt.Errorf("open version %d of key %s from the backup: %w", v.Version, it.ID, err)
			}
			got, err := k.openVersion(ctx, key, key.Versions[i])
			if err != nil {
				want.Wipe()
				add(FindingVersionMismatch, "version %d does not open in the target: %v", v.Version, err)
				continue
			}
			wd, gd := sha256.Sum256(want), sha256.Sum256(got)
			want.Wipe()
			got.Wipe()
			if subtle.ConstantTimeCompare(wd[:], gd[:]) != 1 || key.Versions[i].Version != v.Version {
				add(FindingVersionMismatch, "version %d differs from the backup's (digest)", v.Version)
			}
		}
		return out, nil
	}
	sec := rec.sec
	if sec == nil {
		add(FindingVersionMismatch, "secret is not in the target: %v", domain.NotFound("get secret", "secret", it.ID))
		return out, nil
	}
	if len(sec.Versions) != len(it.Versions) {
		add(FindingVersionMismatch, "target has %d versions, the backup %d", len(sec.Versions), len(it.Versions))
		return out, nil
	}
	var key *domain.Key // the key of the last version checked
	for i, v := range sec.Versions {
		if v.Version != it.Versions[i].Version || string(v.Value) != string(it.Versions[i].Value) {
			add(FindingVersionMismatch, "version %d differs from the backup's", v.Version)
			continue
		}
		if !decrypt {
			continue
		}
		ct, err := domain.ParseCiphertext(string(v.Value))
		if err != nil {
			add(FindingUndecryptableSecret, "version %d is not a ciphertext", v.Version)
			continue
		}
		if key == nil || key.ID != ct.Key {
			if key, err = kmsstate.GetKey(k.State, target, ct.Key); errors.Is(err, domain.ErrNotFound) {
				key = nil
				add(FindingUndecryptableSecret, "version %d: its key %s is not in the target", v.Version, ct.Key)
				continue
			} else if err != nil {
				return nil, err
			}
		}
		pt, err := k.decryptWith(ctx, key, ct, secretContext(it.ID, v.Version))
		if err != nil {
			add(FindingUndecryptableSecret, "version %d does not decrypt under %s", v.Version, ct.Key)
			continue
		}
		pt.Wipe()
	}
	return out, nil
}

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

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// validate checks the target against the backup after an apply, reading
// the point again: every key has the backup's versions with the same
// material (compared by digest), every secret has the backup's versions
// and each decrypts under its key in the target. It keeps the first
// findings of each code and counts the others.
func (s *Restores) validate(ctx context.Context, r *restoreRun, res *RestoreResult, progress ProgressFunc) error {
	var fs findingList
	report := progressReporter(progress, PhaseValidate, uint64(r.plan.Keys+r.plan.Secrets))
	chunk := &restoreBatch{}
	found := make([][]RestoreFinding, validateChunk)
	errs := make([]error, validateChunk)
	check := func() error {
		s.compareAll(ctx, r, chunk.items, found, errs)
		for i := range chunk.items {
			fs.add(found[i]...)
			report(1)
			if errs[i] != nil {
				return errs[i]
			}
		}
		chunk.reset()
		return nil
	}
	err := r.src.Each(ctx, ItemRef{}, func(it *BackedUpItem) error {
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
	res.Validation, res.ValidationOmitted = fs.listed, fs.omitted
	return nil
}

// validateChunk is how many items a validation copies out of the source
// and compares at a time, on up to validateWorkers goroutines (opening
// key material is most of a validation's work); their findings are kept
// in the source's order.
const (
	validateChunk   = 64
	validateWorkers = 4
)

// compareAll compares items with the target (compare, decrypting), on up
// to validateWorkers goroutines, leaving item i's findings and error in
// found[i] and errs[i].
func (s *Restores) compareAll(ctx context.Context, r *restoreRun, items []BackedUpItem, found [][]RestoreFinding, errs []error) {
	inParallel(len(items), func(i int) {
		found[i], errs[i] = s.compare(ctx, r.backup, r.plan.Target, &items[i], true)
	})
}

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
	found, err := s.compare(ctx, b, target, it, false)
	return len(found) == 0, err
}

// compare returns how the target's item differs from the backup's (no
// finding: not at all); with decrypt, also the versions of a secret that
// do not decrypt under their key in the target.
func (s *Restores) compare(ctx context.Context, b *domain.Backup, target domain.InstanceID, it *BackedUpItem, decrypt bool) ([]RestoreFinding, error) {
	var out []RestoreFinding
	add := func(code, format string, args ...any) {
		out = append(out, RestoreFinding{Code: code, Item: it.ID, Message: fmt.Sprintf(format, args...)})
	}
	k := s.KMS
	if it.Kind == domain.RestoreKey {
		key, err := kmsstate.GetKey(k.State, target, domain.KeyID(it.ID))
		if errors.Is(err, domain.ErrNotFound) {
			add(FindingVersionMismatch, "key is not in the target: %v", err)
			return out, nil
		} else if err != nil {
			return nil, err
		}
		if len(key.Versions) != len(it.Versions) {
			add(FindingVersionMismatch, "target has %d versions, the backup %d", len(key.Versions), len(it.Versions))
			return out, nil
		}
		for i, v := range it.Versions {
			want, err := s.Sealer.Open(ctx, b.DataRef(), v.Material, BackupAAD(b.Account, b.DataRef(), v.SealedBy))
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
	sec, err := kmsstate.GetSecret(k.State, target, it.ID)
	if errors.Is(err, domain.ErrNotFound) {
		add(FindingVersionMismatch, "secret is not in the target: %v", err)
		return out, nil
	} else if err != nil {
		return nil, err
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

package commands

import (
	"context"
	"errors"
	"fmt"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/dayview"
)

// bases checks the bases of the generation (their records, read from the
// log, in order): each is chained to the previous base and to its own
// checkpoint, a full one; its parts are all there and match their
// records; its content digests to its record's digest and counts, and
// every key version in it opens; and it is exactly the state its
// checkpoints' slices replay to, from the start (or from base 0, which
// holds the first checkpoint and which nothing replays to). The replay
// reads the log's checkpoints again, in a scratch store (memory stays
// bounded). It returns an error only when the data could not be read.
func (v *verifier) bases(ctx context.Context, bases []*domain.BackupBaseStored, fulls map[uint64][32]byte) error {
	b := v.b
	var prevDigest [32]byte
	for _, base := range bases {
		if base.Digest != domain.BaseDigest(b.ID, base) {
			v.add(FindingTamper, base.Seq, "the record of the base of checkpoint %d does not match its digest", base.Seq)
		}
		if base.PrevDigest != prevDigest {
			v.add(FindingTamper, base.Seq, "the base of checkpoint %d is not chained to the base before it", base.Seq)
		}
		if d, ok := fulls[base.Seq]; !ok || d != base.CheckpointDigest {
			v.add(FindingTamper, base.Seq, "the base of checkpoint %d is not chained to a full checkpoint %d", base.Seq, base.Seq)
		}
		prevDigest = base.Digest
	}
	if len(bases) == 0 {
		return nil
	}
	if v.s.Storage.Scratch == nil {
		return domain.Errorf(domain.ErrUnavailable, "verify backup", string(b.ID), "", "no scratch store to check its bases with")
	}
	// Replay the generation's checkpoints in order into a scratch store;
	// at each base's checkpoint, compare.
	var replayed Scratch
	defer func() {
		if replayed != nil {
			_ = replayed.Close()
		}
	}()
	next := 0
	err := v.checkpoints(ctx, func(cp *domain.BackupCheckpointed) error {
		if next == len(bases) {
			return errStopSlice
		}
		if cp.InBase {
			// Held by base 0: its content is the replayed state from here.
			if bases[0].Seq != cp.Seq {
				v.add(FindingBase, cp.Seq, "checkpoint %d is held by a base that is not recorded", cp.Seq)
				return errStopSlice
			}
			sc, ok, err := v.loadBaseChecked(ctx, bases[0])
			if err != nil || !ok {
				return err
			}
			replayed = sc
			next = 1
			return nil
		}
		if replayed == nil {
			sc, err := v.s.Storage.Scratch.OpenScratch(ctx)
			if err != nil {
				return err
			}
			replayed = sc
		}
		if err := v.replay(ctx, replayed, cp); err != nil {
			return err
		}
		for next < len(bases) && bases[next].Seq == cp.Seq {
			base := bases[next]
			next++
			if err := replayed.Flush(); err != nil {
				return err
			}
			sum, items, versions, err := stateDigest(ctx, replayed, nil)
			if err != nil {
				return err
			}
			if sum != base.StateDigest || items != base.Items || versions != base.Versions {
				v.add(FindingBase, base.Seq, "the base of checkpoint %d (%d items, %d versions) is not the state its slices replay to (%d items, %d versions)",
					base.Seq, base.Items, base.Versions, items, versions)
			}
			loaded, ok, err := v.loadBaseChecked(ctx, base)
			if err != nil {
				return err
			}
			if ok {
				_ = loaded.Close()
			}
		}
		return nil
	})
	if errors.Is(err, errReplayBroken) {
		return nil // reported
	}
	if err != nil && !errors.Is(err, errStopSlice) {
		return err
	}
	for _, base := range bases[next:] {
		v.add(FindingBase, base.Seq, "the base of checkpoint %d is of no checkpoint of the chain", base.Seq)
	}
	return nil
}

// loadBaseChecked loads a base into a new scratch store and checks it:
// every part there and matching its record, the content's digest and
// counts its record's, every key version opening. ok is false (with a
// finding) when it cannot be loaded; the caller closes the scratch.
func (v *verifier) loadBaseChecked(ctx context.Context, base *domain.BackupBaseStored) (Scratch, bool, error) {
	b := v.b
	sc, err := v.s.Storage.Scratch.OpenScratch(ctx)
	if err != nil {
		return nil, false, err
	}
	for _, p := range base.Parts {
		if err := v.pace(ctx, int(p.Size)); err != nil {
			_ = sc.Close()
			return nil, false, err
		}
	}
	err = v.s.Storage.loadBase(ctx, b.DataRef(), base.Parts, sc, nil)
	switch {
	case errors.Is(err, domain.ErrNotFound):
		v.add(FindingMissingSlice, base.Seq, "a part of the base of checkpoint %d is missing: %v", base.Seq, err)
	case unreadable(err):
		_ = sc.Close()
		return nil, false, err
	case err != nil:
		v.add(FindingChecksum, base.Seq, "the base of checkpoint %d does not load: %v", base.Seq, err)
	}
	if err != nil {
		_ = sc.Close()
		return nil, false, nil
	}
	var opened uint64
	sum, items, versions, err := stateDigest(ctx, sc, func(it *dayview.Item) error {
		if it.Kind != dayview.KindKey {
			return nil
		}
		for _, ver := range it.Versions {
			pt, err := v.s.Sealer.Open(ctx, b.DataRef(), ver.Material, BackupAAD(b.Account, b.DataRef(), ver.SealedBy))
			switch {
			case unreadable(err):
				return err
			case err != nil:
				v.add(FindingUndecryptable, base.Seq, "version %d of key %s in the base of checkpoint %d does not open: %v", ver.Version, it.ID, base.Seq, err)
				continue
			}
			pt.Wipe()
			opened++
		}
		return nil
	})
	switch {
	case unreadable(err):
		_ = sc.Close()
		return nil, false, err
	case err != nil:
		v.add(FindingBase, base.Seq, "the base of checkpoint %d does not read: %v", base.Seq, err)
		_ = sc.Close()
		return nil, false, nil
	}
	v.rep.Sealed += int(opened)
	if sum != base.StateDigest || items != base.Items || versions != base.Versions {
		v.add(FindingBase, base.Seq, "the base of checkpoint %d holds %d items and %d versions, not what its record says (%d, %d, and its digest)",
			base.Seq, items, versions, base.Items, base.Versions)
	}
	return sc, true, nil
}

// checkpoints calls fn with every checkpoint of the generation, in the
// log's order, until fn returns an error.
func (v *verifier) checkpoints(ctx context.Context, fn func(cp *domain.BackupCheckpointed) error) error {
	stream := domain.BackupStream(v.b.ID)
	for from := uint64(0); ; {
		page, err := v.s.Log.ReadStream(ctx, stream, from, false, slicePage)
		if err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		for _, e := range page {
			from = e.Revision + 1
			if e.Type != domain.TypeBackupCheckpointed {
				continue
			}
			d, err := e.Decode()
			if err != nil {
				continue // reported by the first pass
			}
			if cp := d.(*domain.BackupCheckpointed); cp.Generation == v.b.Generation {
				if err := fn(cp); err != nil {
					return err
				}
			}
		}
		if len(page) < slicePage {
			return nil
		}
	}
}

// replay applies every event of a checkpoint's slice to sc, at an instant.
// A slice that cannot be read was reported by the first pass: the replay
// stops (its state would be wrong).
func (v *verifier) replay(ctx context.Context, sc Scratch, cp *domain.BackupCheckpointed) error {
	read := 0
	var apply dayview.Applier
	err := eachSliceEvent(ctx, v.s.Storage.Blobs, v.b.DataRef(), cp.SliceParts(), func(e *domain.Event) error {
		read += len(e.Data) + 32
		c, ok, err := dayview.ChangeOf(e)
		if err != nil || !ok {
			return err
		}
		return apply.Apply(sc, dayview.Instant, &c)
	})
	if err == nil {
		err = v.pace(ctx, read) // the slices are read a second time
	}
	switch {
	case err == nil:
		return nil
	case unreadable(err):
		return err
	}
	v.add(FindingBase, cp.Seq, "the slices cannot be replayed past checkpoint %d to check the bases after it: %v", cp.Seq, err)
	return errReplayBroken
}

// errReplayBroken stops the check of bases at a slice that cannot be
// replayed (a finding already).
var errReplayBroken = errors.New("commands: the replay of the slices is broken")

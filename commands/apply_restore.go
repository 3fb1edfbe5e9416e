package commands

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// Restore plans a restore and, when the plan has no finding, applies it,
// then validates the target against the backup. A plan with findings is
// returned unapplied (Applied false), nothing written.
//
// The apply reads the point again, keys before secrets, and writes it in
// batches (at most BatchItems items and about BatchBytes bytes each): one
// atomic append of KeyRestored and SecretRestored events to the target's
// stream at the revision it decided on, one audit record listing the
// batch's items, and one wait for the read model. Each batch is decided
// again against the target as it is then, by the same rules as the plan
// (domain.RestorePlanner), holding the target's stream lock and the locks
// of its items' names in the region; a batch that loses a race to another
// writer is decided again (decide). A batch is all or nothing.
//
// Safe to retry, after an error or a crash: an item already present in
// the target and identical to the backup's is skipped, so a retried
// restore writes what is missing and no duplicate. The audit records are
// appended after their batch: a crash between the two leaves that batch's
// items without their audit record (their events still say where they
// came from and who restored them: domain.RestoredFrom).
//
// Errors: those of PlanRestore; a batch that the target's changes since
// the plan refuse (already exists, quota exceeded, failed precondition:
// plan again); the log's and the sealer's errors. The items of the batches
// written before an error stay restored.
func (s *Restores) Restore(ctx context.Context, c Caller, req RestoreRequest, progress ProgressFunc) (res *RestoreResult, err error) {
	r, err := s.plan(ctx, c, req, progress)
	if r != nil && r.src != nil {
		defer func() { err = errors.Join(err, r.src.Close()) }()
	}
	if err != nil {
		return nil, err
	}
	res = &RestoreResult{Plan: r.plan}
	if r.plan.FindingCount() > 0 {
		return res, nil
	}
	if err := s.apply(ctx, r, res, progress); err != nil {
		return res, err
	}
	res.Applied = true
	for i := range res.Plan.Items {
		if res.Plan.Items[i].Status == StatusPlanned {
			res.Plan.Items[i].Status = StatusRestored
		}
	}
	res.Plan.Present = res.AlreadyPresent
	if err := s.validate(ctx, r, res, progress); err != nil {
		return res, err
	}
	return res, nil
}

// restoreBatch is the items of one batch, copied out of the source.
type restoreBatch struct {
	items []BackedUpItem
	bytes int
	keys  map[string]bool // the batch's key IDs
}

func (b *restoreBatch) add(it *BackedUpItem) {
	c := *it
	c.Versions = slices.Clone(it.Versions)
	size := 64 + len(c.ID) + len(c.Description)
	for i := range c.Versions {
		v := &c.Versions[i]
		v.Material, v.Value = slices.Clone(v.Material), slices.Clone(v.Value)
		size += 48 + len(v.Material) + len(v.Value) + len(v.KeyID)
	}
	b.items = append(b.items, c)
	b.bytes += size
	if c.Kind == domain.RestoreKey {
		if b.keys == nil {
			b.keys = map[string]bool{}
		}
		b.keys[c.ID] = true
	}
}

func (b *restoreBatch) reset() {
	clear(b.items)
	b.items, b.bytes = b.items[:0], 0
	clear(b.keys)
}

func (s *Restores) apply(ctx context.Context, r *restoreRun, res *RestoreResult, progress ProgressFunc) error {
	maxItems, maxBytes := s.BatchItems, s.BatchBytes
	if maxItems <= 0 {
		maxItems = DefaultRestoreBatchItems
	}
	if maxBytes <= 0 {
		maxBytes = DefaultRestoreBatchBytes
	}
	total := uint64(r.plan.Keys + r.plan.Secrets)
	var done uint64
	if progress != nil {
		progress(RestoreProgress{Phase: PhaseApply, Total: total})
	}
	var auditPos uint64
	b := &restoreBatch{}
	flush := func() error {
		if len(b.items) == 0 {
			return nil
		}
		restored, present, pos, err := s.writeBatch(ctx, r, b)
		if err != nil {
			return fmt.Errorf("restore (restored so far: %d; retry to continue): %w", res.Restored, err)
		}
		res.Restored += restored
		res.AlreadyPresent += present
		if restored > 0 {
			res.Batches++
		}
		auditPos = max(auditPos, pos)
		done += uint64(len(b.items))
		if progress != nil {
			progress(RestoreProgress{Phase: PhaseApply, Done: done, Total: max(total, done)})
		}
		b.reset()
		return nil
	}
	err := r.src.Each(ctx, ItemRef{}, func(it *BackedUpItem) error {
		if len(it.Versions) == 0 {
			return domain.Corruption("restore %s %s: the backup holds none of its versions", it.Kind, it.ID)
		}
		b.add(it)
		if len(b.items) >= maxItems || b.bytes >= maxBytes {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return err
	}
	if auditPos > 0 && s.Audit != nil && s.Audit.Applied != nil {
		return s.Audit.Applied.WaitFor(ctx, auditPos)
	}
	return nil
}

// writeBatch decides one batch against the target as it is now and writes
// it: the restored items' events in one append, then the batch's audit
// record. It returns how many items it wrote and found already present,
// and the audit record's log position (0: none).
func (s *Restores) writeBatch(ctx context.Context, r *restoreRun, b *restoreBatch) (restored, present int, auditPos uint64, err error) {
	const op = "restore"
	k := s.KMS
	from := domain.RestoredFrom{Backup: r.plan.Backup, Day: r.plan.Day, Seq: r.plan.To, By: r.caller.String()}
	err = k.decide(ctx, op, func() error {
		restored, present, auditPos = 0, 0, 0
		in, err := kmsstate.GetInstance(k.State, r.plan.Target)
		if err != nil {
			return err
		}
		names := make([]string, len(b.items))
		for i := range b.items {
			names[i] = regionItem(in, b.items[i].Kind, b.items[i].ID)
		}
		in, unlock, err := k.lockStreamItems(ctx, in.ID, names)
		if err != nil {
			return err
		}
		defer unlock()
		start := r.start
		start.Target = in
		planner, found := domain.StartRestore(start)
		if len(found) > 0 {
			return changed(op, found[0])
		}
		var todo []*BackedUpItem
		audited := &domain.Audited{Action: "restore", Backup: from.Backup, Day: from.Day, Target: string(in.ID)}
		for i := range b.items {
			it := &b.items[i]
			facts, err := s.itemFacts(ctx, r, in, it, b.keys)
			if err != nil {
				return err
			}
			status, found := planner.Item(candidate(it), facts)
			if len(found) > 0 {
				return changed(op, found[0])
			}
			if status == StatusPresent {
				present++
				continue
			}
			todo = append(todo, it)
			if it.Kind == domain.RestoreKey {
				audited.Keys = append(audited.Keys, it.ID)
			} else {
				audited.Secrets = append(audited.Secrets, it.ID)
			}
		}
		if found := planner.Finish(); len(found) > 0 {
			return changed(op, found[0])
		}
		if len(todo) == 0 {
			return nil
		}
		holds := make([]*nameHold, len(todo))
		for i, it := range todo {
			h, err := k.readHold(ctx, in, nameKind(it.Kind), it.ID)
			if err != nil {
				return err
			}
			if h.taken() {
				return fmt.Errorf("the target changed since the plan (plan again): %w",
					domain.Errorf(domain.ErrAlreadyExists, op, it.ID, "", "%s %s is held by instance %s of the region", it.Kind, it.ID, h.hold.Claim.Instance))
			}
			holds[i] = h
		}
		events, err := s.restoredEvents(ctx, r.backup, in, todo, from)
		if err != nil {
			return err
		}
		claims := make([]StreamAppend, len(events))
		for i := range events {
			if claims[i], err = k.claim(in, holds[i], events[i].ID, in.Revision+1+uint64(i)); err != nil {
				return err
			}
		}
		claims = append(claims, StreamAppend{Stream: domain.KMSStream(in.ID), Expected: domain.ExpectRevision(in.Revision), Events: events})
		results, err := k.Log.AppendMulti(ctx, claims)
		if err != nil {
			return err
		}
		appended := results[len(results)-1]
		for _, r := range results {
			appended.LastPosition = max(appended.LastPosition, r.LastPosition)
		}
		restored = len(events)
		if s.Audit == nil {
			return k.Applied.WaitFor(ctx, appended.LastPosition)
		}
		// The audit record is appended while the read model catches up
		// with the batch: the two waits overlap.
		audit := make(chan error, 1)
		go func() {
			var err error
			auditPos, err = s.Audit.append(ctx, r.caller, in.Account, audited)
			audit <- err
		}()
		err = k.Applied.WaitFor(ctx, appended.LastPosition)
		return errors.Join(<-audit, err)
	})
	return restored, present, auditPos, err
}

// nameKind is the kind of the unique name of a restored item.
func nameKind(k string) string {
	if k == domain.RestoreKey {
		return domain.NameKindKey
	}
	return domain.NameKindSecret
}

// changed is a finding of a batch's decision: the target changed since
// the plan.
func changed(op string, f RestoreFinding) error {
	return fmt.Errorf("the target changed since the plan (plan again): %w", f.Err(op))
}

// restoredEvents are the events that restore items into in, in order:
// their IDs and times drawn in order, their keys' material resealed on up
// to validateWorkers goroutines (restoredData).
func (s *Restores) restoredEvents(ctx context.Context, b *domain.Backup, in *domain.Instance, items []*BackedUpItem, from domain.RestoredFrom) ([]domain.Event, error) {
	eids := make([]domain.EventID, len(items))
	for i := range eids {
		eids[i] = s.KMS.IDs.NewULID()
	}
	data := make([]domain.EventData, len(items))
	errs := make([]error, len(items))
	inParallel(len(items), func(i int) {
		data[i], errs[i] = s.restoredData(ctx, b, in, items[i], eids[i], from)
	})
	events := make([]domain.Event, len(items))
	for i := range items {
		if errs[i] != nil {
			return nil, errs[i]
		}
		events[i] = s.KMS.newEvent(eids[i], in, data[i])
	}
	return events, nil
}

// restoredData is the data of the event eid that restores it into in: a
// key's versions opened under the backup's data key and sealed under the
// instance's, bound to the event; a secret's ciphertexts as they are.
// Safe for concurrent use.
func (s *Restores) restoredData(ctx context.Context, b *domain.Backup, in *domain.Instance, it *BackedUpItem, eid domain.EventID, from domain.RestoredFrom) (domain.EventData, error) {
	k := s.KMS
	if it.Kind == domain.RestoreSecret {
		d := &domain.SecretRestored{Name: it.ID, Key: it.KeyID(), From: from}
		for _, v := range it.Versions {
			d.Versions = append(d.Versions, domain.RestoredSecretVersion{Version: v.Version, Key: v.KeyID, Value: v.Value, CreatedAt: v.CreatedAt})
		}
		return d, nil
	}
	d := &domain.KeyRestored{Key: domain.KeyID(it.ID), Description: it.Description, Spec: domain.KeySpecAES256, From: from}
	for _, v := range it.Versions {
		pt, err := s.Sealer.Open(ctx, b.DataRef(), v.Material, BackupAAD(b.Account, b.DataRef(), v.SealedBy))
		if err != nil {
			return nil, fmt.Errorf("open version %d of key %s from the backup: %w", v.Version, it.ID, err)
		}
		sealed, err := k.Sealer.Seal(ctx, string(in.ID), pt, domain.AssociatedData(in.Account, domain.KMSStream(in.ID), eid))
		pt.Wipe()
		if err != nil {
			return nil, fmt.Errorf("seal version %d of key %s for %s: %w", v.Version, it.ID, in.ID, err)
		}
		d.Versions = append(d.Versions, domain.RestoredKeyVersion{Version: v.Version, Material: sealed, CreatedAt: v.CreatedAt})
	}
	return d, nil
}

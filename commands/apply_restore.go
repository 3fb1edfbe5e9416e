package commands

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// Restore plans a restore and, when the plan has no finding, applies it
// and validates the target against the backup: each batch once the read
// model shows it, while the next ones are written (validator). A plan
// with findings is returned unapplied (Applied false), nothing written.
//
// The apply reads the point again, keys before secrets, and writes it in
// batches (at most BatchItems items and about BatchBytes bytes each): one
// atomic append of KeyRestored and SecretRestored events to the target's
// stream at the revision it decided on, with the claims of their names
// and one audit record listing the batch's items. Each batch is decided
// again against the target as it is then, by the same rules as the plan
// (domain.RestorePlanner), holding the target's stream lock and the locks
// of its items' names in the region; a batch that loses a race to another
// writer is decided again (decide). A batch is all or nothing. Batches are
// pipelined (applyPipe): the next is decided and appended while the read
// model applies the one before, so a batch's locks are released at its
// append, before the read model shows it (another writer of this process
// then decides on a state one batch behind, and its append at that
// revision fails and is decided again, as against another process).
//
// Safe to retry, after an error or a crash: an item already present in
// the target and identical to the backup's is skipped, so a retried
// restore writes what is missing and no duplicate. A batch's audit record
// is part of its append: no batch is written without it.
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
	vctx, cancel := context.WithCancel(ctx)
	defer cancel()
	v := s.startValidator(vctx, r)
	if err := s.apply(ctx, r, res, progress, v); err != nil {
		cancel()
		v.stop()
		return res, err
	}
	res.Applied = true
	for i := range res.Plan.Items {
		if res.Plan.Items[i].Status == StatusPlanned {
			res.Plan.Items[i].Status = StatusRestored
		}
	}
	res.Plan.Present = res.AlreadyPresent
	if err := v.finish(ctx, res, progress); err != nil {
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

// apply writes the point's items into the target in batches and hands
// each batch to v once written, with the log position the read model must
// show before it is validated.
func (s *Restores) apply(ctx context.Context, r *restoreRun, res *RestoreResult, progress ProgressFunc, v *validator) (err error) {
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
	p := &applyPipe{}
	defer func() { err = errors.Join(err, p.drain(ctx, s)) }()
	b := &restoreBatch{}
	var written uint64 // the log position of the last batch written
	flush := func() error {
		if len(b.items) == 0 {
			return nil
		}
		restored, present, err := s.writeBatch(ctx, r, b, p)
		if err != nil {
			return fmt.Errorf("restore (restored so far: %d; retry to continue): %w", res.Restored, err)
		}
		res.Restored += restored
		res.AlreadyPresent += present
		if restored > 0 {
			res.Batches++
			written = p.inFlight
		}
		done += uint64(len(b.items))
		if progress != nil {
			progress(RestoreProgress{Phase: PhaseApply, Done: done, Total: max(total, done)})
		}
		if err := v.add(ctx, b.items, written); err != nil {
			return err
		}
		b = &restoreBatch{}
		return nil
	}
	defer func() { v.raced, v.revision = p.raced, p.revision }()
	err = r.src.Each(ctx, ItemRef{}, func(it *BackedUpItem) error {
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
	return err
}

// applyPipe is what an apply carries from one batch to the next. The
// batches are pipelined: a batch's append returns the target's new
// revision, and the next batch is decided from it (target) while the read
// models apply the one before (inFlight): the restore, the log's writer
// and the read models work at once. At most one batch is unapplied when
// the next is appended. A batch whose append finds the target moved
// (another writer) waits for the read model and is decided again from it
// (decide), as any decision.
type applyPipe struct {
	// target is the target as of the last batch's append, nil before the
	// first batch and after a lost race: read from the read model.
	target *domain.Instance
	// inFlight is the log position of the last batch's append (0: none)
	// that the read model may not show yet, and inFlightKeys its key IDs:
	// a secret of the next batch may need one.
	inFlight     uint64
	inFlightKeys map[string]bool
	// audited is the position of the last batch's append that holds an
	// audit record (0: none).
	audited uint64
	// revision is the target's revision as the last batch's decision left
	// it (after its append, if it wrote), and raced whether a batch lost
	// a race to another writer: what the validation needs to know whether
	// the target saw another writer (validator).
	revision uint64
	raced    bool
}

// settle waits until the read model shows the batch in flight.
func (p *applyPipe) settle(ctx context.Context, k *KMS) error {
	if p.inFlight == 0 {
		return nil
	}
	if err := k.Applied.WaitFor(ctx, p.inFlight); err != nil {
		return err
	}
	p.inFlight = 0
	clear(p.inFlightKeys)
	return nil
}

// drain ends the pipeline, whatever the apply's outcome: the read models
// show every batch written and its audit record.
func (p *applyPipe) drain(ctx context.Context, s *Restores) error {
	err := p.settle(ctx, s.KMS)
	if err == nil && p.audited > 0 && s.Audit != nil && s.Audit.Applied != nil {
		err = s.Audit.Applied.WaitFor(ctx, p.audited)
	}
	return err
}

// appended moves the pipeline past a batch appended at position pos that
// left the target at after, restoring keys: the batch before it must be
// applied first (one batch in flight).
func (p *applyPipe) appended(ctx context.Context, k *KMS, after *domain.Instance, pos uint64, keys map[string]bool, audited bool) error {
	if err := p.settle(ctx, k); err != nil {
		return err
	}
	p.target, p.inFlight = after, pos
	if audited {
		p.audited = pos
	}
	if p.inFlightKeys == nil {
		p.inFlightKeys = map[string]bool{}
	}
	for k := range keys {
		p.inFlightKeys[k] = true
	}
	return nil
}

// writeBatch decides one batch against the target and writes it: the
// restored items' events and the claims of their names in one append,
// then (on a goroutine, see applyPipe) the batch's audit record. It
// returns how many items it wrote and found already present.
//
// The batch is decided from the target as the batch before left it (p),
// or, first and after a lost race, as the read model shows it. Its names
// are claimed expecting no reservation stream, the common case of a
// restore (names never used in the region); when the append finds one, the
// names' streams are read and the batch appended again with what they say.
// A name that another item took since the decision is a lost race the
// first time (the batch is decided again against the state that shows the
// item) and domain.ErrAlreadyExists after that.
func (s *Restores) writeBatch(ctx context.Context, r *restoreRun, b *restoreBatch, p *applyPipe) (restored, present int, err error) {
	const op = "restore"
	k := s.KMS
	from := domain.RestoredFrom{Backup: r.plan.Backup, Day: r.plan.Day, Seq: r.plan.To, By: r.caller.String()}
	attempt := 0
	err = k.decide(ctx, op, func() error {
		restored, present = 0, 0
		if attempt++; attempt > 1 {
			// A lost race: decide from the read model, which shows every
			// batch before (decide waited for it to catch up with the log).
			p.target, p.raced = nil, true
			if err := p.settle(ctx, k); err != nil {
				return err
			}
		}
		in := p.target
		if in == nil {
			var err error
			if in, err = kmsstate.GetInstance(k.State, r.plan.Target); err != nil {
				return err
			}
		}
		names := make([]string, len(b.items))
		for i := range b.items {
			names[i] = regionItem(in, b.items[i].Kind, b.items[i].ID)
		}
		read, unlock, err := k.lockStreamItems(ctx, in.ID, names)
		if err != nil {
			return err
		}
		defer unlock()
		if p.target == nil {
			in = read
		}
		start := r.start
		start.Target = in
		planner, found := domain.StartRestore(start)
		if len(found) > 0 {
			return changed(op, found[0])
		}
		keys := b.keys
		if len(p.inFlightKeys) > 0 {
			keys = maps.Clone(p.inFlightKeys)
			maps.Copy(keys, b.keys)
		}
		var todo []*BackedUpItem
		audited := &domain.Audited{Action: "restore", Backup: from.Backup, Day: from.Day, Target: string(in.ID)}
		loc, err := kmsstate.OpenLocations(k.State, in.Account)
		if err != nil {
			return err
		}
		defer loc.Close()
		for i := range b.items {
			it := &b.items[i]
			facts, err := s.itemFacts(ctx, r, in, loc, it, keys)
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
		if err := loc.Close(); err != nil {
			return err
		}
		if found := planner.Finish(); len(found) > 0 {
			return changed(op, found[0])
		}
		p.revision = in.Revision
		if len(todo) == 0 {
			return nil
		}
		events, data, err := s.restoredEvents(ctx, r.backup, in, todo, from)
		if err != nil {
			return err
		}
		var record []StreamAppend
		if s.Audit != nil {
			e := s.Audit.event(r.caller, in.Account, audited)
			record = []StreamAppend{{Stream: e.Stream, Expected: domain.ExpectAny, Events: []domain.Event{e}}}
		}
		results, err := s.appendClaimed(ctx, in, todo, events, nil, record)
		if movedOther(err, domain.KMSStream(in.ID)) {
			holds, herr := s.readHolds(ctx, in, todo)
			if errors.Is(herr, domain.ErrAlreadyExists) && attempt == 1 {
				return err // a name taken since the decision: decide again
			}
			if herr != nil {
				return herr
			}
			results, err = s.appendClaimed(ctx, in, todo, events, holds, record)
		}
		if err != nil {
			return err
		}
		pos := uint64(0)
		for _, r := range results {
			pos = max(pos, r.LastPosition)
		}
		restored = len(events)
		after := *in
		for i, e := range events {
			e.Revision = in.Revision + 1 + uint64(i)
			after.Apply(e, data[i])
		}
		p.revision = after.Revision
		return p.appended(ctx, k, &after, pos, b.keys, record != nil)
	})
	return restored, present, err
}

// movedOther tells whether err is a wrong expected revision of a stream
// other than stream (or of a stream it does not name).
func movedOther(err error, stream string) bool {
	var de *domain.Error
	return errors.Is(err, domain.ErrWrongExpectedRevision) && (!errors.As(err, &de) || de.Item != stream)
}

// readHolds reads the reservation streams of the names of items restored
// into in. Errors: domain.ErrAlreadyExists (the target changed since the
// plan) for a name another instance holds; the log's.
func (s *Restores) readHolds(ctx context.Context, in *domain.Instance, items []*BackedUpItem) ([]*nameHold, error) {
	const op = "restore"
	holds := make([]*nameHold, len(items))
	for i, it := range items {
		h, err := s.KMS.readHold(ctx, in, nameKind(it.Kind), it.ID)
		if err != nil {
			return nil, err
		}
		if h.taken() {
			return nil, fmt.Errorf("the target changed since the plan (plan again): %w",
				domain.Errorf(domain.ErrAlreadyExists, op, it.ID, "", "%s %s is held by instance %s of the region", it.Kind, it.ID, h.hold.Claim.Instance))
		}
		holds[i] = h
	}
	return holds, nil
}

// appendClaimed appends the events restoring items into in at its revision
// together with the claims of their names (against holds, or, when holds
// is nil, expecting no reservation stream for any of them) and the parts
// of record, in one atomic append.
func (s *Restores) appendClaimed(ctx context.Context, in *domain.Instance, items []*BackedUpItem, events []domain.Event, holds []*nameHold, record []StreamAppend) ([]AppendResult, error) {
	k := s.KMS
	parts := make([]StreamAppend, 0, len(events)+1+len(record))
	for i := range events {
		h := &nameHold{kind: nameKind(items[i].Kind), name: items[i].ID}
		if holds != nil {
			h = holds[i]
		} else {
			h.stream = domain.NameStream(in.Account, in.Region, h.kind, h.name)
		}
		c, err := k.claim(in, h, events[i].ID, in.Revision+1+uint64(i))
		if err != nil {
			return nil, err
		}
		parts = append(parts, c)
	}
	parts = append(parts, StreamAppend{Stream: domain.KMSStream(in.ID), Expected: domain.ExpectRevision(in.Revision), Events: events})
	return k.Log.AppendMulti(ctx, append(parts, record...))
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

// restoredEvents are the events that restore items into in, in order, and
// their data: their IDs and times drawn in order, their keys' material
// resealed on up to validateWorkers goroutines (restoredData).
func (s *Restores) restoredEvents(ctx context.Context, b *domain.Backup, in *domain.Instance, items []*BackedUpItem, from domain.RestoredFrom) ([]domain.Event, []domain.EventData, error) {
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
			return nil, nil, errs[i]
		}
		events[i] = s.KMS.newEvent(eids[i], in, data[i])
	}
	return events, data, nil
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
	ref := b.DataRef()
	var aad []byte
	for _, v := range it.Versions {
		aad = AppendBackupAAD(aad[:0], b.Account, ref, v.SealedBy)
		pt, err := s.Sealer.Open(ctx, ref, v.Material, aad)
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

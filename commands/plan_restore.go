package commands

import (
	"context"
	"errors"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// PlanRestore checks a restore against its target without writing
// anything, and reports every finding at once. progress, when not nil,
// hears how far the plan has read.
//
// Errors: domain.ErrInvalidArgument for a request that selects nothing, a
// missing day or an instant outside its day; domain.ErrNotFound for a
// backup the caller cannot see; domain.ErrFailedPrecondition when the
// point cannot be read (no checkpoint on the day, or an instant before
// the backup's first); the stores' errors. Everything about the target
// and the items is a finding, not an error. Reads only; safe for
// concurrent use.
func (s *Restores) PlanRestore(ctx context.Context, c Caller, req RestoreRequest, progress ProgressFunc) (*RestorePlan, error) {
	r, err := s.plan(ctx, c, req, progress)
	if r != nil && r.src != nil {
		err = errors.Join(err, r.src.Close())
	}
	if err != nil {
		return nil, err
	}
	return r.plan, nil
}

// restoreRun is a restore being planned and applied: what the plan read
// and decided, and what the apply needs again.
type restoreRun struct {
	caller Caller
	backup *domain.Backup
	start  domain.RestoreStart
	sel    domain.RestoreSelection
	src    RestoreSource // nil when the point cannot be read
	plan   *RestorePlan
}

// resolvePoint makes a request's point complete: an upload's day, or the
// day of the instant in the backup's time zone; an instant must be of its
// day.
func (s *Restores) resolvePoint(op string, b *domain.Backup, p RestorePoint) (RestorePoint, *time.Location, error) {
	loc, err := s.Days.location(b)
	if err != nil {
		return RestorePoint{}, nil, err
	}
	switch {
	case p.Day == "" && b.Kind == domain.BackupUpload:
		p.Day = b.UploadDay
	case p.Day == "" && !p.At.IsZero():
		p.Day = domain.DayOf(p.At, loc)
	case p.Day == "":
		return RestorePoint{}, nil, b.CheckDay(op, "", "")
	}
	if !p.At.IsZero() && domain.DayOf(p.At, loc) != p.Day {
		return RestorePoint{}, nil, domain.Invalid(op, "at %s is not an instant of day %s in the time zone of %s (%s)",
			p.At.Format(time.RFC3339), p.Day, b.ID, loc)
	}
	return p, loc, nil
}

func (s *Restores) plan(ctx context.Context, c Caller, req RestoreRequest, progress ProgressFunc) (*restoreRun, error) {
	const op = "plan restore"
	if err := requireAccount(c, op); err != nil {
		return nil, err
	}
	if req.Selection.IsZero() {
		return nil, domain.Invalid(op, "name what to restore: keys, secrets, or all")
	}
	b, err := s.Days.backup(c, op, req.From)
	if err != nil {
		return nil, err
	}
	point, loc, err := s.resolvePoint(op, b, req.Point)
	if err != nil {
		return nil, err
	}
	target, err := kmsstate.GetInstance(s.KMS.State, req.Target)
	if errors.Is(err, domain.ErrNotFound) {
		target, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	r := &restoreRun{caller: c, backup: b, sel: req.Selection,
		start: domain.RestoreStart{Account: c.Account, Backup: b, Day: point.Day, Today: s.Days.today(loc),
			TargetID: req.Target, Target: target, Region: req.Region},
		plan: &RestorePlan{Backup: b.ID, Day: point.Day, Target: req.Target}}
	planner, start := domain.StartRestore(r.start)
	var fs findingList
	fs.add(start...)
	if t := planner.Target(); t != nil {
		r.plan.Region = t.Region
	}
	if planner.Readable() {
		if err := s.readPlan(ctx, r, point, planner, &fs, progress); err != nil {
			return r, err
		}
	}
	fs.add(planner.Finish()...)
	r.plan.Findings, r.plan.Omitted = fs.listed, fs.omitted
	return r, nil
}

// planCursorItems is how many items a plan reads the target's locations
// through one cursor (one snapshot) before it opens the next.
const planCursorItems = 4096

// readPlan opens the point and folds every selected item through the
// planner, one at a time.
func (s *Restores) readPlan(ctx context.Context, r *restoreRun, point RestorePoint, planner *domain.RestorePlanner, fs *findingList, progress ProgressFunc) error {
	var only []ItemRef
	if !r.sel.All() {
		for _, k := range r.sel.Keys() {
			only = append(only, ItemRef{Kind: domain.RestoreKey, ID: string(k)})
		}
		for _, n := range r.sel.Secrets() {
			only = append(only, ItemRef{Kind: domain.RestoreSecret, ID: n})
		}
	}
	if s.Sources == nil {
		return domain.Errorf(domain.ErrUnavailable, "plan restore", "", "", "no restore source is configured")
	}
	src, err := s.Sources.Open(ctx, r.backup, point, only)
	if err != nil {
		return err
	}
	r.src = src
	p := r.plan
	p.At, p.To = src.Covered()
	p.From = p.To
	if cp, ok := src.(interface{ FirstCheckpoint() uint64 }); ok {
		p.From = cp.FirstCheckpoint()
	}
	var total uint64
	if progress != nil { // counting reads the point once more
		keys, secrets, _, err := src.Counts(ctx)
		if err != nil {
			return err
		}
		total = keys + secrets
	}
	report := progressReporter(progress, PhasePlan, total)
	seen := 0 // named items the point holds
	var loc *kmsstate.Locations
	defer func() {
		if loc != nil {
			_ = loc.Close()
		}
	}()
	err = src.Each(ctx, ItemRef{}, func(it *BackedUpItem) error {
		target := planner.Target()
		if target != nil && seen%planCursorItems == 0 { // a snapshot is not held long
			if loc != nil {
				if err := loc.Close(); err != nil {
					return err
				}
			}
			var err error
			if loc, err = kmsstate.OpenLocations(s.KMS.State, target.Account); err != nil {
				return err
			}
		}
		facts, err := s.itemFacts(ctx, r, target, loc, it, nil)
		if err != nil {
			return err
		}
		status, found := planner.Item(candidate(it), facts)
		fs.add(found...)
		p.count(it, status)
		seen++
		report(1)
		return nil
	})
	if err != nil {
		return err
	}
	report(0)
	if len(only) > seen {
		for _, ref := range only {
			if _, ok, err := src.Lookup(ctx, ref); err != nil {
				return err
			} else if !ok {
				fs.add(planner.Missing(ref.Kind, ref.ID))
			}
		}
	}
	return nil
}

// count adds an item to the plan's counts, and to its list while short.
func (p *RestorePlan) count(it *BackedUpItem, status string) {
	if it.Kind == domain.RestoreKey {
		p.Keys++
	} else {
		p.Secrets++
	}
	if status == StatusPresent {
		p.Present++
	}
	if len(p.Items) < MaxListedItems {
		p.Items = append(p.Items, RestoreItem{Kind: it.Kind, ID: it.ID, Versions: uint32(len(it.Versions)),
			KeyID: string(it.KeyID()), Description: it.Description, Status: status})
	}
}

// candidate is an item as the planner weighs it.
func candidate(it *BackedUpItem) domain.RestoreCandidate {
	return domain.RestoreCandidate{Kind: it.Kind, ID: it.ID, Versions: uint32(len(it.Versions)), KeyID: it.KeyID()}
}

// progressReporter returns report(n): n more items done; report(0) ends
// the phase. It tells progress at the start, every progressEvery items
// and at the end.
func progressReporter(progress ProgressFunc, phase string, total uint64) func(n uint64) {
	if progress == nil {
		return func(uint64) {}
	}
	progress(RestoreProgress{Phase: phase, Total: total})
	var done uint64
	return func(n uint64) {
		if n == 0 {
			progress(RestoreProgress{Phase: phase, Done: done, Total: max(total, done)})
			return
		}
		before := done
		done += n
		if done/progressEvery != before/progressEvery {
			progress(RestoreProgress{Phase: phase, Done: done, Total: max(total, done)})
		}
	}
}

// itemFacts is what the target says about one backed-up item: where its
// key ID or secret name lives in the target's region (and, in the target,
// whether it is identical to the backup's), and, for a secret, whether its
// key is in the target or restored with it. batch, during an apply, holds
// the keys written with the item (a secret's key restored with it is
// then one of them); nil during a plan, when the key must be selected and
// held by the point. No target: no facts.
// loc reads the locations (items in key order, a cursor each kind); it is
// of the target's account.
func (s *Restores) itemFacts(ctx context.Context, r *restoreRun, target *domain.Instance, loc *kmsstate.Locations, it *BackedUpItem, batch map[string]bool) (domain.RestoreItemFacts, error) {
	var f domain.RestoreItemFacts
	if target == nil {
		return f, nil
	}
	st := s.KMS.State
	var where domain.InstanceID
	var taken bool
	var err error
	if it.Kind == domain.RestoreKey {
		where, taken, err = loc.KeyInRegion(target.Region, domain.KeyID(it.ID))
	} else {
		where, taken, err = loc.SecretInRegion(target.Region, it.ID)
	}
	switch {
	case err != nil:
		return f, err
	case taken && where != target.ID:
		f.Presence = domain.PresentElsewhere
	case taken:
		same, err := s.sameInTarget(ctx, r.backup, target.ID, it)
		if err != nil {
			return f, err
		}
		f.Presence = domain.PresentDifferent
		if same {
			f.Presence = domain.PresentIdentical
		}
	}
	if it.Kind != domain.RestoreSecret || f.Presence == domain.PresentIdentical {
		return f, nil
	}
	key := it.KeyID()
	_, err = kmsstate.GetKey(st, target.ID, key)
	switch {
	case err == nil:
		f.KeyInTarget = true
	case !errors.Is(err, domain.ErrNotFound):
		return f, err
	case batch != nil:
		f.KeyRestoredWith = batch[string(key)]
	case r.sel.Selects(domain.RestoreKey, string(key)):
		_, held, err := r.src.Lookup(ctx, ItemRef{Kind: domain.RestoreKey, ID: string(key)})
		if err != nil {
			return f, err
		}
		f.KeyRestoredWith = held
	}
	return f, nil
}

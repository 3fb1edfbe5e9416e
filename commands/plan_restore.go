package commands

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// PlanRestore checks a restore against its target without writing
// anything, and reports every finding at once.
func (s *Restores) PlanRestore(ctx context.Context, c Caller, req RestoreRequest) (*RestorePlan, error) {
	plan, _, err := s.plan(c, req)
	return plan, err
}

// source is where a plan's items come from.
type source struct {
	backup *domain.Backup
	items  map[string]backupdata.Item // "key/ID", "secret/name"
}

func itemKey(kind, id string) string { return kind + "/" + id }

func (s *Restores) plan(c Caller, req RestoreRequest) (*RestorePlan, *source, error) {
	const op = "plan restore"
	if err := requireAccount(c, op); err != nil {
		return nil, nil, err
	}
	if err := checkRequest(op, req); err != nil {
		return nil, nil, err
	}
	b, err := s.Backups.backup(c, op, req.From)
	if err != nil {
		return nil, nil, err
	}
	if b.Kind == domain.BackupUpload && req.Day == "" {
		req.Day = string(b.UploadDay) // an upload holds one day
	}
	if req.Day == "" {
		return nil, nil, domain.Invalid(op, "day is required: a viewable day of %s as YYYY-MM-DD", b.ID)
	}
	day, err := domain.ParseDay(req.Day)
	if err != nil {
		return nil, nil, err
	}
	plan := &RestorePlan{Backup: b.ID, Day: day, Target: req.ToInstance}
	add := func(code, item, format string, args ...any) {
		plan.Findings = append(plan.Findings, RestoreFinding{Code: code, Item: item, Message: fmt.Sprintf(format, args...)})
	}
	src := &source{backup: b, items: map[string]backupdata.Item{}}

	// The source: a usable backup instance, a viewable day, a checkpoint.
	readable := true
	if err := b.Usable(op); err != nil {
		add(FindingBackupExpired, string(b.ID), "backup instance %s is %s: renew it first", b.ID, b.State)
		readable = false
	} else if _, _, err := s.Backups.viewableDay(c, op, b.ID, req.Day); err != nil {
		add(FindingDayNotViewable, string(day), "%v", err)
		readable = false
	}
	if readable {
		if err := s.loadSource(plan, src, req); err != nil {
			return nil, nil, err
		}
	}

	// The selection.
	var keys, secrets []backupdata.Item
	picked := map[string]bool{}
	pick := func(kind, id string) {
		if picked[itemKey(kind, id)] {
			return
		}
		picked[itemKey(kind, id)] = true
		it, ok := src.items[itemKey(kind, id)]
		switch {
		case ok && kind == backupdata.KindKey:
			keys = append(keys, it)
		case ok:
			secrets = append(secrets, it)
		case readable:
			add(FindingItemNotInBackup, id, "%s %s is not in the data of %s", kind, id, day)
		}
	}
	if req.All {
		for _, it := range sortedItems(src.items) {
			pick(it.Kind, it.ID)
		}
	}
	for _, k := range req.Keys {
		pick(backupdata.KindKey, k)
	}
	for _, n := range req.Secrets {
		pick(backupdata.KindSecret, n)
	}

	// The target, as any other account's instance would answer: not found.
	target, err := kmsstate.GetInstance(s.KMS.State, req.ToInstance)
	if errors.Is(err, domain.ErrNotFound) || (err == nil && !c.Sees(target.Account)) {
		add(FindingTargetNotFound, string(req.ToInstance), "KMS instance %s not found", req.ToInstance)
		target = nil
	} else if err != nil {
		return nil, nil, err
	}
	if target != nil {
		plan.Region = target.Region
		if target.Released {
			add(FindingTargetReleased, string(target.ID), "KMS instance %s is released", target.ID)
		}
		if req.ToRegion != "" && req.ToRegion != target.Region {
			add(FindingRegionMismatch, string(target.ID), "KMS instance %s is in region %s, not %s", target.ID, target.Region, req.ToRegion)
		}
	}

	// Where the items already live: one scan of the account's locations for a
	// large plan, one look-up per item for a small one.
	locate := s.itemLocations
	if target != nil && len(keys)+len(secrets) > 64 {
		all := map[string][]kmsstate.Location{}
		if err := kmsstate.EachLocation(s.KMS.State, target.Account, func(kind, id string, l kmsstate.Location) error {
			if picked[itemKey(kind, id)] {
				all[itemKey(kind, id)] = append(all[itemKey(kind, id)], l)
			}
			return nil
		}); err != nil {
			return nil, nil, err
		}
		locate = func(_ *domain.Instance, kind, id string) ([]kmsstate.Location, error) {
			return all[itemKey(kind, id)], nil
		}
	}

	newKeys, newSecrets := 0, 0
	planned := map[string]bool{}
	for _, it := range keys {
		item := RestoreItem{Kind: it.Kind, ID: it.ID, Versions: it.Versions, CreateSeq: it.CreateSeq,
			Description: it.Description, Status: StatusPlanned}
		if target != nil {
			locs, err := locate(target, it.Kind, it.ID)
			if err != nil {
				return nil, nil, err
			}
			done, conflict, err := s.keyInTarget(target, domain.KeyID(it.ID), it.Versions, locs)
			if err != nil {
				return nil, nil, err
			}
			switch {
			case done:
				item.Status = StatusAlreadyRestored
			case conflict:
				add(FindingKeyExists, it.ID, "a key with ID %s already exists in region %s: delete it there first", it.ID, target.Region)
			default:
				newKeys++
			}
		}
		planned[it.ID] = true
		plan.Items = append(plan.Items, item)
	}
	for _, it := range secrets {
		item := RestoreItem{Kind: it.Kind, ID: it.ID, Versions: it.Versions, KeyID: it.KeyID, CreateSeq: it.CreateSeq, Status: StatusPlanned}
		if target != nil {
			locs, err := locate(target, it.Kind, it.ID)
			if err != nil {
				return nil, nil, err
			}
			done, conflict, err := s.secretInTarget(target, it.ID, it.Versions, locs)
			if err != nil {
				return nil, nil, err
			}
			switch {
			case done:
				item.Status = StatusAlreadyRestored
			case conflict:
				add(FindingSecretExists, it.ID, "a secret named %s already exists in region %s: delete it there first", it.ID, target.Region)
			default:
				newSecrets++
			}
			if !done {
				if _, err := kmsstate.GetKey(s.KMS.State, target.ID, domain.KeyID(it.KeyID)); errors.Is(err, domain.ErrNotFound) && !planned[it.KeyID] {
					add(FindingSecretKeyMissing, it.ID, "secret %s is encrypted under key %s, which is neither in %s nor restored with it", it.ID, it.KeyID, target.ID)
				} else if err != nil && !errors.Is(err, domain.ErrNotFound) {
					return nil, nil, err
				}
			}
		}
		plan.Items = append(plan.Items, item)
	}
	if target != nil && !target.Released {
		if int(target.LiveKeys)+newKeys > int(target.KeyQuota) {
			add(FindingKeyQuota, string(target.ID), "%d keys to restore, %d of the key quota of %d left", newKeys, int(target.KeyQuota)-int(target.LiveKeys), target.KeyQuota)
		}
		if int(target.LiveSecrets)+newSecrets > int(target.SecretQuota) {
			add(FindingSecretQuota, string(target.ID), "%d secrets to restore, %d of the secret quota of %d left", newSecrets, int(target.SecretQuota)-int(target.LiveSecrets), target.SecretQuota)
		}
	}
	return plan, src, nil
}

func checkRequest(op string, req RestoreRequest) error {
	if req.All && (len(req.Keys) > 0 || len(req.Secrets) > 0) {
		return domain.Invalid(op, "--all restores everything: do not also name keys or secrets")
	}
	if !req.All && len(req.Keys) == 0 && len(req.Secrets) == 0 {
		return domain.Invalid(op, "name what to restore: --key KEY_ID, --secret NAME, or --all")
	}
	if _, err := domain.ParseInstanceID(string(req.ToInstance)); err != nil {
		return err
	}
	for _, k := range req.Keys {
		if _, err := domain.ParseKeyID(k); err != nil {
			return err
		}
	}
	for _, n := range req.Secrets {
		if err := domain.ValidateSecretName(n); err != nil {
			return err
		}
	}
	if req.ToRegion != "" {
		return domain.ValidateRegion(req.ToRegion)
	}
	return nil
}

// loadSource reads the items of the day (or of the checkpoint at req.At).
func (s *Restores) loadSource(plan *RestorePlan, src *source, req RestoreRequest) error {
	const op = "plan restore"
	ref := src.backup.DataRef()
	lo, hi, ok, err := backupdata.DayRange(s.Backups.State, ref, plan.Day)
	if err != nil {
		return err
	}
	if !ok {
		return domain.Errorf(domain.ErrFailedPrecondition, op, string(plan.Day), "", "the backup has no checkpoint on that day")
	}
	if req.At != "" {
		at, err := time.Parse(time.RFC3339, req.At)
		if err != nil {
			return domain.Invalid(op, "--at %s must be an RFC 3339 time such as 2026-05-01T10:05:00Z", domain.Quote(req.At))
		}
		seq := uint64(0)
		for q := lo; q <= hi; q++ {
			sum, err := backupdata.Checkpoint(s.Backups.State, ref, q)
			if err != nil {
				return err
			}
			if sum.At.After(at) {
				break
			}
			seq = q
		}
		if seq == 0 {
			return domain.Errorf(domain.ErrFailedPrecondition, op, req.At, "choose a later time of that day", "no checkpoint of %s is at or before %s", plan.Day, req.At)
		}
		lo, hi = seq, seq
	}
	sum, err := backupdata.Checkpoint(s.Backups.State, ref, hi)
	if err != nil {
		return err
	}
	plan.From, plan.To, plan.At = lo, hi, sum.At
	return backupdata.Within(s.Backups.State, ref, lo, hi, func(it backupdata.Item) error {
		src.items[itemKey(it.Kind, it.ID)] = it
		return nil
	})
}

// keyInTarget says whether the target instance already holds this key
// with these versions (a restore already applied), or whether its ID is
// taken in the region by another key.
func (s *Restores) keyInTarget(target *domain.Instance, id domain.KeyID, versions uint32, locs []kmsstate.Location) (done, conflict bool, err error) {
	return presence(target, locs, versions, func() (int, error) {
		k, err := kmsstate.GetKey(s.KMS.State, target.ID, id)
		if err != nil {
			return 0, err
		}
		return len(k.Versions), nil
	})
}

// secretInTarget is keyInTarget for secrets.
func (s *Restores) secretInTarget(target *domain.Instance, name string, versions uint32, locs []kmsstate.Location) (done, conflict bool, err error) {
	return presence(target, locs, versions, func() (int, error) {
		sec, err := kmsstate.GetSecret(s.KMS.State, target.ID, name)
		if err != nil {
			return 0, err
		}
		return len(sec.Versions), nil
	})
}

// itemLocations looks up where one key or secret of the target's account
// lives.
func (s *Restores) itemLocations(target *domain.Instance, kind, id string) ([]kmsstate.Location, error) {
	if kind == backupdata.KindKey {
		return kmsstate.KeyLocations(s.KMS.State, target.Account, domain.KeyID(id))
	}
	return kmsstate.SecretLocations(s.KMS.State, target.Account, id)
}

// presence decides from an item's locations: in the target instance with
// the same number of versions, it was restored already; anywhere else in
// the target's region, it is in the way.
func presence(target *domain.Instance, locs []kmsstate.Location, versions uint32, count func() (int, error)) (done, conflict bool, err error) {
	for _, l := range locs {
		if l.Region != target.Region {
			continue
		}
		if l.Instance == target.ID {
			n, err := count()
			if err != nil {
				return false, false, err
			}
			if n == int(versions) {
				return true, false, nil
			}
		}
		return false, true, nil
	}
	return false, false, nil
}

func sortedItems(m map[string]backupdata.Item) []backupdata.Item {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]backupdata.Item, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}

package commands

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"slices"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// Restore plans a restore and, when the plan has no finding, applies it:
// keys before secrets, each item in one event (all or nothing), with an
// audit record per item; then validates the target against the backup.
// It is safe to retry: items already restored are recognised and skipped.
// A plan with findings is returned unapplied (Applied false), nothing
// written.
func (s *Restores) Restore(ctx context.Context, c Caller, req RestoreRequest) (*RestoreResult, error) {
	plan, src, err := s.plan(c, req)
	if err != nil {
		return nil, err
	}
	res := &RestoreResult{Plan: plan}
	if len(plan.Findings) > 0 {
		return res, nil
	}
	from := domain.RestoredFrom{Backup: plan.Backup, Day: plan.Day, Seq: plan.To, By: c.String()}
	versions, err := s.versionsOf(ctx, src.backup, plan, req)
	if err != nil {
		return nil, err
	}
	for i := range plan.Items {
		it := &plan.Items[i]
		if it.Status == StatusAlreadyRestored {
			res.AlreadyRestored++
			continue
		}
		vs := versions[itemKey(it.Kind, it.ID)]
		if len(vs) == 0 {
			return res, domain.Corruption("restore %s %s: the backup holds none of its versions", it.Kind, it.ID)
		}
		var err error
		if it.Kind == backupdata.KindKey {
			err = s.restoreKey(ctx, c, src.backup, plan.Target, it, vs, from)
		} else {
			err = s.restoreSecret(ctx, c, src.backup, plan.Target, it, vs, from)
		}
		if err != nil {
			return res, fmt.Errorf("restore %s %s (restored so far: %d; retry to continue): %w", it.Kind, it.ID, res.Restored, err)
		}
		it.Status = StatusRestored
		res.Restored++
	}
	res.Applied = true
	res.Validation, err = s.validate(ctx, src.backup, plan, versions)
	return res, err
}

// versionsOf reads the backed-up versions of every item of a plan, keyed
// by itemKey, from the restore point loaded (Backups.Open): the day as its
// items last stood up to the plan's last checkpoint (the items the plan
// took from the read model), or the instant of the checkpoint the plan
// chose, and only the plan's items unless it restores everything. Each
// item keeps the versions its plan counted.
func (s *Restores) versionsOf(ctx context.Context, b *domain.Backup, plan *RestorePlan, req RestoreRequest) (map[string][]BackedUpVersion, error) {
	point := RestorePoint{Day: plan.Day}
	if req.At != "" {
		point.At = plan.At
	}
	var only []ItemRef
	want := make(map[string]uint32, len(plan.Items))
	for _, it := range plan.Items {
		want[itemKey(it.Kind, it.ID)] = it.Versions
		if !req.All {
			only = append(only, ItemRef{Kind: it.Kind, ID: it.ID})
		}
	}
	src, err := s.Backups.openThrough(ctx, b, point, only, plan.To)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	out := make(map[string][]BackedUpVersion, len(plan.Items))
	err = src.Each(ctx, ItemRef{}, func(it *BackedUpItem) error {
		n, ok := want[itemKey(it.Kind, it.ID)]
		if !ok {
			return nil
		}
		vs := make([]BackedUpVersion, 0, n)
		for _, v := range it.Versions[:min(len(it.Versions), int(n))] {
			v.Material, v.Value = slices.Clone(v.Material), slices.Clone(v.Value)
			vs = append(vs, v)
		}
		out[itemKey(it.Kind, it.ID)] = vs
		return nil
	})
	return out, err
}

func (s *Restores) restoreKey(ctx context.Context, c Caller, b *domain.Backup, target domain.InstanceID, it *RestoreItem, vs []BackedUpVersion, from domain.RestoredFrom) error {
	k := s.KMS
	return k.decide(ctx, "restore key", func() error {
		in, err := kmsstate.GetInstance(k.State, target)
		if err != nil {
			return err
		}
		in, unlock, err := k.lockStream(ctx, in.ID, regionItem(in, "key", it.ID))
		if err != nil {
			return err
		}
		defer unlock()
		taken, err := kmsstate.RegionHasKey(k.State, in.Account, in.Region, domain.KeyID(it.ID))
		if err != nil {
			return err
		}
		eid := k.IDs.NewULID()
		d := &domain.KeyRestored{Key: domain.KeyID(it.ID), Description: it.Description, Spec: domain.KeySpecAES256, From: from}
		for _, v := range vs {
			pt, err := s.Backups.Sealer.Open(ctx, b.DataRef(), v.Material, BackupAAD(b.Account, b.DataRef(), v.SealedBy))
			if err != nil {
				return fmt.Errorf("open version %d from the backup: %w", v.Version, err)
			}
			sealed, err := k.Sealer.Seal(ctx, string(in.ID), pt, domain.AssociatedData(in.Account, domain.KMSStream(in.ID), eid))
			pt.Wipe()
			if err != nil {
				return fmt.Errorf("seal version %d for %s: %w", v.Version, in.ID, err)
			}
			d.Versions = append(d.Versions, domain.RestoredKeyVersion{Version: v.Version, Material: sealed, CreatedAt: v.CreatedAt})
		}
		if _, err := in.RestoreKey(d, taken); err != nil {
			return err
		}
		e := k.newEvent(eid, in, d)
		if err := k.commit(ctx, e.Stream, domain.ExpectRevision(in.Revision), e); err != nil {
			return err
		}
		return s.audit(ctx, c, in, from, "restore-key", it.ID)
	})
}

func (s *Restores) restoreSecret(ctx context.Context, c Caller, b *domain.Backup, target domain.InstanceID, it *RestoreItem, vs []BackedUpVersion, from domain.RestoredFrom) error {
	k := s.KMS
	return k.decide(ctx, "restore secret", func() error {
		in, err := kmsstate.GetInstance(k.State, target)
		if err != nil {
			return err
		}
		in, unlock, err := k.lockStream(ctx, in.ID, regionItem(in, "secret", it.ID))
		if err != nil {
			return err
		}
		defer unlock()
		taken, err := kmsstate.RegionHasSecret(k.State, in.Account, in.Region, it.ID)
		if err != nil {
			return err
		}
		key, err := kmsstate.GetKey(k.State, in.ID, domain.KeyID(it.KeyID))
		if err != nil {
			key = nil
		}
		d := &domain.SecretRestored{Name: it.ID, Key: domain.KeyID(it.KeyID), From: from}
		for _, v := range vs {
			d.Versions = append(d.Versions, domain.RestoredSecretVersion{Version: v.Version, Key: v.KeyID, Value: v.Value, CreatedAt: v.CreatedAt})
		}
		if _, err := in.RestoreSecret(d, key, taken); err != nil {
			return err
		}
		e := k.newEvent(k.IDs.NewULID(), in, d)
		if err := k.commit(ctx, e.Stream, domain.ExpectRevision(in.Revision), e); err != nil {
			return err
		}
		return s.audit(ctx, c, in, from, "restore-secret", it.ID)
	})
}

func (s *Restores) audit(ctx context.Context, c Caller, in *domain.Instance, from domain.RestoredFrom, action, item string) error {
	if s.Audit == nil {
		return nil
	}
	return s.Audit.Record(ctx, c, in.Account, &domain.Audited{Action: action, Backup: from.Backup, Day: from.Day,
		Target: string(in.ID), Item: item})
}

// validate checks the target against the backup: every restored key has the
// backup's versions with the same material (compared by digest), every
// restored secret has the backup's versions and each decrypts under its key
// in the target.
func (s *Restores) validate(ctx context.Context, b *domain.Backup, plan *RestorePlan, versions map[string][]BackedUpVersion) ([]RestoreFinding, error) {
	var out []RestoreFinding
	add := func(code, item, format string, args ...any) {
		out = append(out, RestoreFinding{Code: code, Item: item, Message: fmt.Sprintf(format, args...)})
	}
	k := s.KMS
	for _, it := range plan.Items {
		vs := versions[itemKey(it.Kind, it.ID)]
		if it.Kind == backupdata.KindKey {
			key, err := kmsstate.GetKey(k.State, plan.Target, domain.KeyID(it.ID))
			if err != nil {
				add(FindingVersionMismatch, it.ID, "key is not in the target: %v", err)
				continue
			}
			if len(key.Versions) != len(vs) {
				add(FindingVersionMismatch, it.ID, "target has %d versions, the backup %d", len(key.Versions), len(vs))
				continue
			}
			for i, v := range vs {
				want, err := s.Backups.Sealer.Open(ctx, b.DataRef(), v.Material, BackupAAD(b.Account, b.DataRef(), v.SealedBy))
				if err != nil {
					return nil, err
				}
				got, err := k.openVersion(ctx, key, key.Versions[i])
				if err != nil {
					want.Wipe()
					add(FindingVersionMismatch, it.ID, "version %d does not open in the target: %v", v.Version, err)
					continue
				}
				wd, gd := sha256.Sum256(want), sha256.Sum256(got)
				want.Wipe()
				got.Wipe()
				if subtle.ConstantTimeCompare(wd[:], gd[:]) != 1 || key.Versions[i].Version != v.Version {
					add(FindingVersionMismatch, it.ID, "version %d differs from the backup's (digest)", v.Version)
				}
			}
			continue
		}
		sec, err := kmsstate.GetSecret(k.State, plan.Target, it.ID)
		if err != nil {
			add(FindingVersionMismatch, it.ID, "secret is not in the target: %v", err)
			continue
		}
		if len(sec.Versions) != len(vs) {
			add(FindingVersionMismatch, it.ID, "target has %d versions, the backup %d", len(sec.Versions), len(vs))
			continue
		}
		for i, v := range sec.Versions {
			if string(v.Value) != string(vs[i].Value) {
				add(FindingVersionMismatch, it.ID, "version %d differs from the backup's", v.Version)
				continue
			}
			ct, err := domain.ParseCiphertext(string(v.Value))
			if err != nil {
				add(FindingUndecryptableSecret, it.ID, "version %d is not a ciphertext", v.Version)
				continue
			}
			key, err := kmsstate.GetKey(k.State, plan.Target, ct.Key)
			if err != nil {
				add(FindingUndecryptableSecret, it.ID, "version %d: its key %s is not in the target", v.Version, ct.Key)
				continue
			}
			pt, err := k.decryptWith(ctx, key, ct, secretContext(it.ID, v.Version))
			if err != nil {
				add(FindingUndecryptableSecret, it.ID, "version %d does not decrypt under %s", v.Version, ct.Key)
				continue
			}
			pt.Wipe()
		}
	}
	return out, nil
}

package kmsstate

import (
	"fmt"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
)

// Name is the projection's name in the projection store.
const Name = "kms-state"

// Apply applies one event of the log to the read model. Events of types
// this projection does not know are ignored, so the log can carry other
// families (backups, audits) without breaking it.
func Apply(txn projections.Txn, e domain.Event) error {
	return ApplyAll(txn, []domain.Event{e})
}

// ApplyAll applies events in order, as Apply does each, writing the record
// of an instance they change once at the end instead of once an event (a
// restore's batch changes its target's record hundreds of times).
func ApplyAll(txn projections.Txn, events []domain.Event) error {
	a := applier{txn: txn}
	for _, e := range events {
		if err := a.apply(e); err != nil {
			return err
		}
	}
	for _, h := range a.dirty {
		if err := txn.Set(instanceKey(h.in.ID), encodeInstance(h.in)); err != nil {
			return err
		}
	}
	return nil
}

// applier applies events within one transaction, holding the instance
// records they read and change until the end.
type applier struct {
	txn       projections.Txn
	instances map[domain.InstanceID]*held
	dirty     []*held // changed, in the order first changed
}

type held struct {
	in      *domain.Instance
	changed bool
}

// instance returns the instance as the events applied so far left it.
func (a *applier) instance(id domain.InstanceID) (*domain.Instance, error) {
	if h, ok := a.instances[id]; ok {
		return h.in, nil
	}
	in, err := GetInstance(a.txn, id)
	if err != nil {
		return nil, err
	}
	if a.instances == nil {
		a.instances = map[domain.InstanceID]*held{}
	}
	a.instances[id] = &held{in: in}
	return in, nil
}

// changed records in as its instance's record, written at the end.
func (a *applier) changed(in *domain.Instance) {
	h, ok := a.instances[in.ID]
	if !ok {
		if a.instances == nil {
			a.instances = map[domain.InstanceID]*held{}
		}
		h = &held{}
		a.instances[in.ID] = h
	}
	h.in = in
	if !h.changed {
		h.changed = true
		a.dirty = append(a.dirty, h)
	}
}

func (a *applier) apply(e domain.Event) error {
	txn := a.txn
	d, err := e.Decode()
	if err != nil {
		if domain.IsCorruption(err) && !known(e.Type) {
			return nil
		}
		return err
	}
	switch d := d.(type) {
	case *domain.AccountCreated:
		return applyAccount(txn, e, d)
	case *domain.AccountTokenReplaced:
		return replaceToken(txn, e, d)
	case *domain.SessionStarted:
		return startSession(txn, e, d)
	case *domain.SessionEnded:
		return endSession(txn, e, d)
	case *domain.InstanceCreated:
		in := &domain.Instance{}
		in.Apply(e, d)
		a.changed(in)
		return txn.Set(accountInstanceKey(e.Account, in.ID), nil)
	case *domain.InstanceReleased, *domain.KeyCreated, *domain.KeyRotated, *domain.KeyDeleted,
		*domain.SecretCreated, *domain.SecretRotated, *domain.SecretDeleted,
		*domain.KeyRestored, *domain.SecretRestored:
		return a.applyKMS(e, d)
	}
	return nil
}

func known(typ string) bool {
	switch typ {
	case domain.TypeAccountCreated, domain.TypeAccountTokenReplaced, domain.TypeSessionStarted, domain.TypeSessionEnded,
		domain.TypeInstanceCreated, domain.TypeInstanceReleased,
		domain.TypeKeyCreated, domain.TypeKeyRotated, domain.TypeKeyDeleted,
		domain.TypeSecretCreated, domain.TypeSecretRotated, domain.TypeSecretDeleted,
		domain.TypeKeyRestored, domain.TypeSecretRestored:
		return true
	}
	return false
}

func applyAccount(txn projections.Txn, e domain.Event, d *domain.AccountCreated) error {
	a := &Account{ID: d.Account, Name: d.Name, CreatedAt: e.OccurredAt}
	if err := txn.Set(accountKey(a.ID), encodeAccount(a)); err != nil {
		return err
	}
	if err := txn.Set(accountNameKey(a.Name), []byte(a.ID)); err != nil {
		return err
	}
	return txn.Set(tokenKey(d.TokenHash), []byte(a.ID))
}

func (a *applier) applyKMS(e domain.Event, d domain.EventData) error {
	txn := a.txn
	in, err := a.instance(e.Instance)
	if err != nil {
		return fmt.Errorf("apply %s at position %d: %w", e.Type, e.Position, err)
	}
	in.Apply(e, d)
	a.changed(in)
	switch d := d.(type) {
	case *domain.InstanceReleased:
		return releaseContents(txn, in)
	case *domain.KeyCreated:
		return putKey(txn, in, domain.NewKey(e, d))
	case *domain.KeyRestored:
		if len(d.Versions) == 0 {
			return domain.Corruption("event %s at position %d: key %s restored without versions", e.ID, e.Position, d.Key)
		}
		return putKey(txn, in, domain.NewRestoredKey(e, d))
	case *domain.KeyRotated:
		key, err := GetKey(txn, in.ID, d.Key)
		if err != nil {
			return fmt.Errorf("apply %s at position %d: %w", e.Type, e.Position, err)
		}
		key.Rotate(e, d)
		return txn.Set(keyKey(in.ID, key.ID), encodeKey(key))
	case *domain.KeyDeleted:
		if err := txn.Delete(keyKey(in.ID, d.Key)); err != nil {
			return err
		}
		return txn.Delete(keyLocKey(in.Account, d.Key, in.Region))
	case *domain.SecretCreated:
		return putSecret(txn, in, domain.NewSecret(e, d))
	case *domain.SecretRestored:
		if len(d.Versions) == 0 {
			return domain.Corruption("event %s at position %d: secret %s restored without versions", e.ID, e.Position, d.Name)
		}
		return putSecret(txn, in, domain.NewRestoredSecret(e, d))
	case *domain.SecretRotated:
		s, err := GetSecret(txn, in.ID, d.Name)
		if err != nil {
			return fmt.Errorf("apply %s at position %d: %w", e.Type, e.Position, err)
		}
		if s.Key != d.Key {
			if err := txn.Delete(keyUseKey(in.ID, s.Key, s.Name)); err != nil {
				return err
			}
			if err := txn.Set(keyUseKey(in.ID, d.Key, s.Name), nil); err != nil {
				return err
			}
		}
		s.Rotate(e, d)
		return txn.Set(secretKey(in.ID, s.Name), encodeSecret(s))
	case *domain.SecretDeleted:
		s, err := GetSecret(txn, in.ID, d.Name)
		if err != nil {
			return fmt.Errorf("apply %s at position %d: %w", e.Type, e.Position, err)
		}
		if err := txn.Delete(keyUseKey(in.ID, s.Key, s.Name)); err != nil {
			return err
		}
		if err := txn.Delete(secretKey(in.ID, s.Name)); err != nil {
			return err
		}
		return txn.Delete(secretLocKey(in.Account, s.Name, in.Region))
	}
	return nil
}

// putKey stores a new key (created or restored) and takes its ID in the
// instance's region.
func putKey(txn projections.Txn, in *domain.Instance, key *domain.Key) error {
	if err := txn.Set(keyKey(in.ID, key.ID), encodeKey(key)); err != nil {
		return err
	}
	return txn.Set(keyLocKey(in.Account, key.ID, in.Region), []byte(in.ID))
}

// putSecret stores a new secret (created or restored), records its use of
// its key and takes its name in the instance's region.
func putSecret(txn projections.Txn, in *domain.Instance, s *domain.Secret) error {
	if err := txn.Set(secretKey(in.ID, s.Name), encodeSecret(s)); err != nil {
		return err
	}
	if err := txn.Set(keyUseKey(in.ID, s.Key, s.Name), nil); err != nil {
		return err
	}
	return txn.Set(secretLocKey(in.Account, s.Name, in.Region), []byte(in.ID))
}

// releaseContents removes a released instance's keys and secrets from the
// read model and frees their IDs and names in the region.
func releaseContents(txn projections.Txn, in *domain.Instance) error {
	var keys []domain.KeyID
	err := txn.Scan(prefix("kms/k/", string(in.ID)), nil, func(_, v []byte) (bool, error) {
		key, err := decodeKey(v)
		if err != nil {
			return false, err
		}
		keys = append(keys, key.ID)
		return true, nil
	})
	if err != nil {
		return err
	}
	for _, id := range keys {
		if err := txn.Delete(keyLocKey(in.Account, id, in.Region)); err != nil {
			return err
		}
	}
	var names []string
	err = txn.Scan(prefix("kms/s/", string(in.ID)), nil, func(kk, _ []byte) (bool, error) {
		names = append(names, string(kk[len(prefix("kms/s/", string(in.ID))):]))
		return true, nil
	})
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := txn.Delete(secretLocKey(in.Account, n, in.Region)); err != nil {
			return err
		}
	}
	for _, p := range [][]byte{prefix("kms/k/", string(in.ID)), prefix("kms/s/", string(in.ID)), prefix("kms/ku/", string(in.ID))} {
		if err := txn.DeletePrefix(p); err != nil {
			return err
		}
	}
	return nil
}

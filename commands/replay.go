package commands

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
)

// ReplayVersion is one version of a replayed item: its number and a digest
// (SHA-256 of the key material for keys, of the stored ciphertext for
// secrets), never the material or the value.
type ReplayVersion struct {
	Version uint32 `json:"version"`
	Digest  string `json:"digest"`
}

// ReplayItem is a key or secret as it stood at the replayed point.
type ReplayItem struct {
	Kind     string          `json:"kind"`
	ID       string          `json:"id"`
	KeyID    string          `json:"key_id,omitempty"`
	Versions []ReplayVersion `json:"versions"`
}

// ReplayState is the state of a backup at one checkpoint, with an overall
// digest that two points, or two systems, can compare.
type ReplayState struct {
	Backup domain.BackupID
	Day    domain.Day
	Seq    uint64
	At     time.Time
	Items  []ReplayItem
	Digest string
}

// Replay returns the state of a backup at the end of a viewable day, or at
// the last checkpoint at or before an instant of that day.
func (s *Restores) Replay(ctx context.Context, c Caller, id domain.BackupID, day, at string) (*ReplayState, error) {
	const op = "replay"
	if day == "" {
		if at == "" {
			return nil, domain.Invalid(op, "pass --day YYYY-MM-DD or --at RFC3339")
		}
		t, err := time.Parse(time.RFC3339, at)
		if err != nil {
			return nil, domain.Invalid(op, "--at %s must be an RFC 3339 time such as 2026-05-01T10:05:00Z", domain.Quote(at))
		}
		b, err := s.Backups.backup(c, op, id)
		if err != nil {
			return nil, err
		}
		loc, err := s.Backups.location(b)
		if err != nil {
			return nil, err
		}
		day = string(domain.DayOf(t, loc))
	}
	b, d, err := s.Backups.viewableDay(c, op, id, day)
	if err != nil {
		return nil, err
	}
	plan := &RestorePlan{Day: d}
	src := &source{backup: b, items: map[string]backupdata.Item{}}
	if err := s.loadSource(plan, src, RestoreRequest{At: at}); err != nil {
		return nil, err
	}
	st := &ReplayState{Backup: b.ID, Day: d, Seq: plan.To, At: plan.At}
	// The state at the checkpoint: items live at To.
	err = backupdata.StateAt(s.Backups.State, b.DataRef(), plan.To, func(it backupdata.Item) error {
		ri, err := s.replayItem(ctx, b, it)
		if err != nil {
			return err
		}
		st.Items = append(st.Items, ri)
		return nil
	})
	if err != nil {
		return nil, err
	}
	st.Digest = StateDigest(st.Items)
	return st, nil
}

func (s *Restores) replayItem(ctx context.Context, b *domain.Backup, it backupdata.Item) (ReplayItem, error) {
	ri := ReplayItem{Kind: it.Kind, ID: it.ID, KeyID: it.KeyID}
	vs, err := backupdata.Versions(s.Backups.State, b.DataRef(), it.Kind, it.ID, it.CreateSeq)
	if err != nil {
		return ReplayItem{}, err
	}
	for _, v := range vs[:min(len(vs), int(it.Versions))] {
		var digest [32]byte
		if it.Kind == backupdata.KindKey {
			pt, err := s.Backups.Sealer.Open(ctx, b.DataRef(), v.Material, BackupAAD(b.Account, b.DataRef(), v.SealedBy))
			if err != nil {
				return ReplayItem{}, fmt.Errorf("open %s version %d: %w", it.ID, v.Version, err)
			}
			digest = KeyVersionDigest(pt)
			pt.Wipe()
		} else {
			digest = SecretVersionDigest(v.Value)
		}
		ri.Versions = append(ri.Versions, ReplayVersion{Version: v.Version, Digest: hex.EncodeToString(digest[:])})
	}
	return ri, nil
}

// KeyVersionDigest is the digest of a key version's material (256 random
// bits: its digest reveals nothing).
func KeyVersionDigest(material domain.Plaintext) [32]byte {
	h := sha256.New()
	h.Write([]byte("kmsbackup key version v1\x00"))
	h.Write(material)
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// SecretVersionDigest is the digest of a secret version's stored
// ciphertext: a digest of the value itself could be guessed for a weak one.
func SecretVersionDigest(ciphertext []byte) [32]byte {
	return sha256.Sum256(append([]byte("kmsbackup secret version v1\x00"), ciphertext...))
}

// StateDigest digests a replayed state, items in (kind, ID) order.
func StateDigest(items []ReplayItem) string {
	h := sha256.New()
	for _, it := range items {
		fmt.Fprintf(h, "%s %s %s", it.Kind, it.ID, it.KeyID)
		for _, v := range it.Versions {
			fmt.Fprintf(h, " %d:%s", v.Version, v.Digest)
		}
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

package commands

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
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

// Replay returns the state of a backup at the last checkpoint of a viewable day, or at
// the last checkpoint at or before an instant (whose day, in the backup's
// time zone, must be viewable). Pass day, at, or both (at must then be of
// that day).
//
// Errors: domain.ErrInvalidArgument when neither is given or they
// disagree; domain.ErrNotFound for a backup the caller cannot see;
// domain.ErrFailedPrecondition for an expired backup, a day that is not
// viewable or has no checkpoint at or before the instant. Reads only.
func (s *Restores) Replay(ctx context.Context, c Caller, id domain.BackupID, day domain.Day, at time.Time) (st *ReplayState, err error) {
	const op = "replay"
	if day == "" && at.IsZero() {
		return nil, domain.Invalid(op, "pass --day YYYY-MM-DD or --at RFC3339")
	}
	b, err := s.Days.backup(c, op, id)
	if err != nil {
		return nil, err
	}
	if err := b.Usable(op); err != nil {
		return nil, err
	}
	point, loc, err := s.resolvePoint(op, b, RestorePoint{Day: day, At: at})
	if err != nil {
		return nil, err
	}
	if err := b.CheckDay(op, point.Day, s.Days.today(loc)); err != nil {
		return nil, err
	}
	src, err := s.Days.openCheckpoint(ctx, b, point)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, src.Close()) }()
	st = &ReplayState{Backup: b.ID, Day: point.Day}
	st.At, st.Seq = src.Covered()
	err = src.Each(ctx, ItemRef{}, func(it *BackedUpItem) error {
		ri, err := s.replayItem(ctx, b, it)
		st.Items = append(st.Items, ri)
		return err
	})
	if err != nil {
		return nil, err
	}
	st.Digest = StateDigest(st.Items)
	return st, nil
}

func (s *Restores) replayItem(ctx context.Context, b *domain.Backup, it *BackedUpItem) (ReplayItem, error) {
	ri := ReplayItem{Kind: it.Kind, ID: it.ID, KeyID: string(it.KeyID())}
	for _, v := range it.Versions {
		var digest [32]byte
		if it.Kind == domain.RestoreKey {
			pt, err := s.Sealer.Open(ctx, b.DataRef(), v.Material, BackupAAD(b.Account, b.DataRef(), v.SealedBy))
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

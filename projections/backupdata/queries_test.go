package backupdata

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
)

// sortedStore is a projections.Reader over a sorted list of keys.
type sortedStore struct {
	keys [][]byte
	vals map[string][]byte
	// scans counts the calls of Scan.
	scans int
}

var _ projections.Reader = (*sortedStore)(nil)

func newSortedStore(kv map[string][]byte) *sortedStore {
	s := &sortedStore{vals: kv}
	for k := range kv {
		s.keys = append(s.keys, []byte(k))
	}
	slices.SortFunc(s.keys, bytes.Compare)
	return s
}

func (s *sortedStore) Get(key []byte) ([]byte, bool, error) {
	v, ok := s.vals[string(key)]
	return bytes.Clone(v), ok, nil
}

func (s *sortedStore) Scan(prefix, start []byte, fn func(k, v []byte) (bool, error)) error {
	s.scans++
	lower := prefix
	if bytes.Compare(start, lower) > 0 {
		lower = start
	}
	i := sort.Search(len(s.keys), func(i int) bool { return bytes.Compare(s.keys[i], lower) >= 0 })
	for ; i < len(s.keys) && bytes.HasPrefix(s.keys[i], prefix); i++ {
		// Copies, so that a caller keeping k or v past fn shows.
		k, v := bytes.Clone(s.keys[i]), bytes.Clone(s.vals[string(s.keys[i])])
		more, err := fn(k, v)
		clear(k)
		clear(v)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// randomGeneration builds the item rows and version records of a random
// generation of checkpoints 1 to seqs: items deleted and created again,
// rotated, with versions added after a row's range, and, if missing, some
// versions lost (which StateVersionsAt must give as fewer versions).
func randomGeneration(rng *rand.Rand, ref string, items, seqs int, missing bool) map[string][]byte {
	kv := map[string][]byte{}
	used := map[string]bool{}
	t0 := time.Date(2026, 5, 2, 0, 0, 0, 0, time.UTC)
	for i := range items {
		kind := kindKey
		if rng.IntN(3) == 0 {
			kind = kindSecret
		}
		id := fmt.Sprintf("item-%d", rng.IntN(4*items))
		if rng.IntN(5) == 0 {
			id += "x" // an ID that is a prefix of another
		}
		if used[string(kind)+id] {
			continue
		}
		used[string(kind)+id] = true
		seq := uint64(1 + rng.IntN(seqs))
		for seq <= uint64(seqs) {
			// One incarnation: rows [from, to) of growing versions.
			create, versions := seq, uint32(0)
			for seq <= uint64(seqs) {
				versions++
				to := seq + 1 + uint64(rng.IntN(3))
				last := to > uint64(seqs) || rng.IntN(3) == 0
				if to > uint64(seqs) {
					to = open
				}
				x := &row{To: to, Versions: versions, CreatedAt: t0.Add(time.Duration(create) * time.Minute),
					ChangedAt: t0.Add(time.Duration(seq) * time.Minute), Text: fmt.Sprintf("text %d", i), CreateSeq: create}
				kv[string(rowKey(ref, kind, id, seq))] = encodeRow(x)
				seq = to
				if last {
					break
				}
			}
			extra := uint32(rng.IntN(2)) // a version beyond every row's
			for v := uint32(1); v <= versions+extra; v++ {
				if missing && rng.IntN(10) == 0 {
					continue
				}
				ver := &Version{Version: v, CreatedAt: t0.Add(time.Duration(v) * time.Second)}
				if kind == kindKey {
					ver.Material = domain.Sealed(fmt.Sprintf("material %s %d %d", id, create, v))
					ver.Stream = "kms-stream"
					ver.SealedBy[0] = byte(v)
				} else {
					ver.KeyID = "key_1"
					ver.Value = []byte(fmt.Sprintf("value %s %d %d", id, create, v))
				}
				kv[string(versionKey(ref, kind, id, create, v))] = encodeVersion(kind, ver)
			}
			if seq == open {
				break
			}
			seq += uint64(rng.IntN(3)) // deleted for a while, then created again
		}
	}
	// Another generation's records, on both sides of ref's.
	for _, other := range []string{ref + "0", ref[:len(ref)-1]} {
		x := &row{To: open, Versions: 1, CreateSeq: 1}
		kv[string(rowKey(other, kindKey, "item-0", 1))] = encodeRow(x)
		kv[string(versionKey(other, kindKey, "item-0", 1, 1))] = encodeVersion(kindKey, &Version{Version: 1})
	}
	return kv
}

type itemVersions struct {
	Item     Item
	Versions []Version
}

// stateVersionsSlow is StateAt then Versions per item, as DownloadDay read
// them before StateVersionsAt.
func stateVersionsSlow(t *testing.T, r projections.Reader, ref string, seq uint64) []itemVersions {
	t.Helper()
	var out []itemVersions
	if err := StateAt(r, ref, seq, func(it Item) error {
		vs, err := Versions(r, ref, it.Kind, it.ID, it.CreateSeq)
		if errors.Is(err, domain.ErrNotFound) {
			err = nil
		}
		if uint32(len(vs)) > it.Versions {
			vs = vs[:it.Versions]
		}
		out = append(out, itemVersions{it, vs})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestStateVersionsAtMatchesPerItemReads(t *testing.T) {
	const ref = "bk_1/2"
	defer func(n int) { stateBatch = n }(stateBatch)
	for _, missing := range []bool{false, true} {
		for seed := range uint64(6) {
			rng := rand.New(rand.NewPCG(seed, 7))
			items := []int{0, 1, 5, 60, 200}[seed%5]
			s := newSortedStore(randomGeneration(rng, ref, items, 12, missing))
			for seq := uint64(0); seq <= 13; seq++ {
				want := stateVersionsSlow(t, s, ref, seq)
				for _, batch := range []int{1, 2, 3, 7, 1024} {
					stateBatch = batch
					var got []itemVersions
					s.scans = 0
					err := StateVersionsAt(s, ref, seq, func(it Item, vs []Version) error {
						if len(vs) == 0 {
							vs = nil
						}
						got = append(got, itemVersions{it, slices.Clone(vs)})
						return nil
					})
					if err != nil {
						t.Fatal(err)
					}
					if !reflect.DeepEqual(want, got) { // cmp.Diff is slow: only for the message
						t.Fatalf("missing %v seed %d seq %d batch %d: (-per item +merged)\n%s", missing, seed, seq, batch, cmp.Diff(want, got))
					}
					// Two scans per batch, and one to find there is no more.
					if max := 2*(len(want)/batch+1) + 1; s.scans > max {
						t.Fatalf("seed %d seq %d batch %d: %d scans for %d items", seed, seq, batch, s.scans, len(want))
					}
				}
			}
		}
	}
}

func TestStateVersionsAtStopsAtError(t *testing.T) {
	const ref = "bk_1/0"
	s := newSortedStore(randomGeneration(rand.New(rand.NewPCG(1, 2)), ref, 50, 4, false))
	defer func(n int) { stateBatch = n }(stateBatch)
	stateBatch = 4
	stop := errors.New("stop")
	calls := 0
	err := StateVersionsAt(s, ref, 4, func(Item, []Version) error {
		calls++
		if calls == 6 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 6 {
		t.Fatalf("got %v after %d calls, want the callback's error after 6", err, calls)
	}
}

func TestCountStateMatchesStateAtAndWithin(t *testing.T) {
	const ref = "bk_1/1"
	for seed := range uint64(4) {
		rng := rand.New(rand.NewPCG(seed, 9))
		s := newSortedStore(randomGeneration(rng, ref, []int{0, 3, 80, 300}[seed%4], 10, false))
		for lo := uint64(0); lo <= 11; lo++ {
			for hi := lo; hi <= 11; hi++ {
				for _, seq := range []uint64{lo, max(lo, 1) - 1, hi} {
					var want StateCount
					if err := StateAt(s, ref, seq, func(it Item) error {
						want.Versions += uint64(it.Versions)
						return nil
					}); err != nil {
						t.Fatal(err)
					}
					if err := Within(s, ref, lo, hi, func(it Item) error {
						if it.Kind == KindKey {
							want.Keys++
						} else {
							want.Secrets++
						}
						return nil
					}); err != nil {
						t.Fatal(err)
					}
					s.scans = 0
					got, err := CountState(s, ref, seq, lo, hi)
					if err != nil {
						t.Fatal(err)
					}
					if got != want || s.scans != 1 {
						t.Fatalf("seed %d seq %d [%d, %d]: %+v in %d scans, want %+v in one", seed, seq, lo, hi, got, s.scans, want)
					}
				}
			}
		}
	}
}

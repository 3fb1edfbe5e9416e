package backupdata

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"

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

// randomGeneration builds the item rows of a random generation of
// checkpoints 1 to seqs: items deleted and created again, and rotated.
func randomGeneration(rng *rand.Rand, ref string, items, seqs int) map[string][]byte {
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
	}
	return kv
}

func TestCountStateMatchesStateAtAndWithin(t *testing.T) {
	const ref = "bk_1/1"
	for seed := range uint64(4) {
		rng := rand.New(rand.NewPCG(seed, 9))
		s := newSortedStore(randomGeneration(rng, ref, []int{0, 3, 80, 300}[seed%4], 10))
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

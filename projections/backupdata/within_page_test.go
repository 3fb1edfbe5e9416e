package backupdata

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/domain"
)

// TestWithinPageMatchesWithin reads Within(lo, hi) page by page and
// compares it, versions included, with Within and Versions per item; and
// CountWithin with the items and versions Within gives.
func TestWithinPageMatchesWithin(t *testing.T) {
	const ref = "bk_1/3"
	for _, missing := range []bool{false, true} {
		for seed := range uint64(5) {
			rng := rand.New(rand.NewPCG(seed, 11))
			s := newSortedStore(randomGeneration(rng, ref, []int{0, 1, 7, 60, 200}[seed], 10, missing))
			for lo := uint64(0); lo <= 11; lo += 2 {
				for hi := lo; hi <= 11; hi += 3 {
					var want []ItemVersions
					var keys, secrets, versions uint64
					if err := Within(s, ref, lo, hi, func(it Item) error {
						vs, err := Versions(s, ref, it.Kind, it.ID, it.CreateSeq)
						if errors.Is(err, domain.ErrNotFound) {
							err = nil
						}
						if uint32(len(vs)) > it.Versions {
							vs = vs[:it.Versions]
						}
						if len(vs) == 0 {
							vs = nil
						}
						want = append(want, ItemVersions{it, vs})
						if it.Kind == KindKey {
							keys++
						} else {
							secrets++
						}
						versions += uint64(it.Versions)
						return err
					}); err != nil {
						t.Fatal(err)
					}
					for _, size := range []int{1, 2, 3, 7, 1000} {
						var got []ItemVersions
						kind, id := "", ""
						for {
							page, more, err := WithinPage(s, ref, lo, hi, kind, id, size)
							if err != nil {
								t.Fatal(err)
							}
							if len(page) > size {
								t.Fatalf("a page of %d items, more than %d", len(page), size)
							}
							for _, p := range page {
								if len(p.Versions) == 0 {
									p.Versions = nil
								}
								got = append(got, p)
							}
							if !more {
								break
							}
							if len(page) > 0 {
								kind, id = page[len(page)-1].Item.Kind, page[len(page)-1].Item.ID
							}
						}
						if !reflect.DeepEqual(want, got) {
							t.Fatalf("missing %v seed %d [%d, %d] pages of %d (-Within +pages):\n%s", missing, seed, lo, hi, size, cmp.Diff(want, got))
						}
					}
					for _, w := range want {
						got, ok, err := WithinItem(s, ref, lo, hi, w.Item.Kind, w.Item.ID)
						if len(got.Versions) == 0 {
							got.Versions = nil
						}
						if err != nil || !ok || !reflect.DeepEqual(w, got) {
							t.Fatalf("seed %d [%d, %d]: WithinItem %s %s: %v %v (-Within +item):\n%s", seed, lo, hi, w.Item.Kind, w.Item.ID, ok, err, cmp.Diff(w, got))
						}
					}
					if _, ok, err := WithinItem(s, ref, lo, hi, KindKey, "item"); ok || err != nil {
						t.Fatalf("WithinItem of an item never there: %v %v", ok, err)
					}
					k, sc, v, err := CountWithin(s, ref, lo, hi)
					if err != nil || k != keys || sc != secrets || v != versions {
						t.Fatalf("seed %d [%d, %d]: counted %d keys, %d secrets, %d versions (%v), want %d, %d, %d",
							seed, lo, hi, k, sc, v, err, keys, secrets, versions)
					}
				}
			}
		}
	}
}

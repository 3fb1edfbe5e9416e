package backupdata

import (
	"errors"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/kmsbackup/kmsbackup/domain"
)

func big256(s sum256) *big.Int {
	b := s.bytes()
	return new(big.Int).SetBytes(b[:])
}

var mod256 = new(big.Int).Lsh(big.NewInt(1), 256)

func TestSum256AgainstBigInt(t *testing.T) {
	max := ^uint64(0)
	edges := []sum256{{}, {1}, {max}, {max, max, max, max}, {0, 0, 0, 1 << 63}, {max, 0, max, 0}, {0, max, 0, max}}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		edges = append(edges, sum256{rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64()})
	}
	for _, a := range edges {
		for _, b := range edges[:20] {
			sum := a
			sum.add(b)
			want := new(big.Int).Add(big256(a), big256(b))
			want.Mod(want, mod256)
			if big256(sum).Cmp(want) != 0 {
				t.Fatalf("%x + %x = %x, want %x", a, b, big256(sum), want)
			}
			diff := a
			diff.sub(b)
			want = new(big.Int).Sub(big256(a), big256(b))
			want.Mod(want, mod256)
			if big256(diff).Cmp(want) != 0 {
				t.Fatalf("%x - %x = %x, want %x", a, b, big256(diff), want)
			}
			diff.add(b)
			if diff != a {
				t.Fatalf("(%x - %x) + %x = %x", a, b, b, diff)
			}
		}
	}
}

func TestSum256Bytes(t *testing.T) {
	var b [32]byte
	for i := range b {
		b[i] = byte(i + 1)
	}
	s := sumOf(b)
	if s[3] != 0x0102030405060708 || s[0] != 0x191a1b1c1d1e1f20 {
		t.Fatalf("limbs %x: want big-endian bytes, least significant limb first", s)
	}
	if s.bytes() != b {
		t.Fatalf("round trip: %x", s.bytes())
	}
}

func TestStateDigest(t *testing.T) {
	k := Item{Kind: KindKey, ID: "key_1", Versions: 2, Description: "d", CreateSeq: 1}
	s := Item{Kind: KindSecret, ID: "db", Versions: 1, KeyID: "key_1", CreateSeq: 3}
	if StateDigest(nil) != ([32]byte{}) {
		t.Fatal("the empty state must digest to zero")
	}
	if StateDigest([]Item{k, s}) != StateDigest([]Item{s, k}) {
		t.Fatal("the digest depends on order")
	}
	var sum StateSum
	sum.Add(&s)
	sum.Add(&k)
	if sum.Digest() != StateDigest([]Item{k, s}) {
		t.Fatal("StateSum, item by item, differs from StateDigest")
	}
	// Adding then removing a term is the incremental maintenance.
	var inc sum256
	inc.add(k.term())
	inc.add(s.term())
	inc.sub(k.term())
	if inc.bytes() != StateDigest([]Item{s}) {
		t.Fatal("incremental digest differs from the digest from scratch")
	}
	// Every field of the term counts, and fields do not run into each other.
	variants := []Item{k, s,
		{Kind: KindSecret, ID: "key_1", Versions: 2, KeyID: "d", CreateSeq: 1},
		{Kind: KindKey, ID: "key_1", Versions: 3, Description: "d", CreateSeq: 1},
		{Kind: KindKey, ID: "key_1", Versions: 2, Description: "d", CreateSeq: 2},
		{Kind: KindKey, ID: "key_1", Versions: 2, Description: "e", CreateSeq: 1},
		{Kind: KindKey, ID: "key_1d", Versions: 2, CreateSeq: 1},
	}
	seen := map[[32]byte]int{}
	for i, it := range variants {
		d := StateDigest([]Item{it})
		if j, ok := seen[d]; ok {
			t.Fatalf("items %d and %d have the same digest", j, i)
		}
		seen[d] = i
	}
	// Timestamps are not part of the digest.
	k2 := k
	k2.ChangedAt = k2.ChangedAt.Add(1)
	if StateDigest([]Item{k}) != StateDigest([]Item{k2}) {
		t.Fatal("the digest depends on a timestamp")
	}
}

func TestParseTab(t *testing.T) {
	for _, tab := range Tabs {
		if got, err := ParseTab(string(tab)); err != nil || got != tab {
			t.Fatalf("ParseTab(%q) = %q, %v", tab, got, err)
		}
	}
	_, err := ParseTab("full")
	if !errors.Is(err, domain.ErrInvalidArgument) || !strings.Contains(err.Error(), "full-keys, incremental-keys") {
		t.Fatalf("ParseTab of an unknown tab: %v", err)
	}
}

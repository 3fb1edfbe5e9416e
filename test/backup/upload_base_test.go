package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// dayWithState makes an engine whose backup holds a day (2026-05-02) that
// starts from a full of keys keys (a fifth rotated) and three secrets,
// then changes some of them (in two incrementals, each rotating rotations
// keys), and returns the day's file and data key.
func dayWithState(t *testing.T, keys, rotations int) (*Engine, domain.BackupID, []byte, string) {
	ctx := context.Background()
	e := NewEngine(t, time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC))
	in, b := e.EnabledBackup("UTC")
	var ids []domain.KeyID
	for i := range keys {
		ids = append(ids, Must(e.KMS.CreateKey(ctx, e.Caller, in.ID, fmt.Sprintf("key number %d with a description", i))).ID)
	}
	for _, k := range ids[:keys/5] {
		Must(e.KMS.RotateKey(ctx, e.Caller, k, ""))
	}
	for i := range 3 {
		Must(e.KMS.CreateSecret(ctx, e.Caller, commands.CreateSecretInput{Name: fmt.Sprint("db", i), Instance: in.ID, Key: ids[i], Value: domain.Plaintext("pw")}))
	}
	e.Advance(14*time.Hour + 35*time.Minute) // the full of 2026-05-02 at 00:00, then 00:05
	Must(e.KMS.RotateKey(ctx, e.Caller, ids[keys-1], ""))
	if err := e.KMS.DeleteKey(ctx, e.Caller, ids[keys-2], ""); err != nil {
		t.Fatal(err)
	}
	Must(e.KMS.CreateKey(ctx, e.Caller, in.ID, "made on the day"))
	for w := range 2 {
		for _, k := range ids[w*rotations : (w+1)*rotations] {
			Must(e.KMS.RotateKey(ctx, e.Caller, k, ""))
		}
		e.Advance(5 * time.Minute)
	}
	file, key := e.download(b.ID, "2026-05-02")
	return e, b.ID, file, key
}

// TestUploadIsStoredAsBase0: an upload stores the state its day starts
// from as base 0 (in parts, recorded with its first checkpoint, which no
// slice holds), the day's incrementals as slices; it lists, plans and
// verifies as its source does, and its restore point is loaded from the
// base: without a part of it, the day cannot be read.
func TestUploadIsStoredAsBase0(t *testing.T) {
	ctx := context.Background()
	e, src, file, key := dayWithState(t, 40, 1)
	e.Storage.BasePartBytes = 1 << 10
	up, err := e.upload(e.Caller, file, key, "as a base")
	if err != nil {
		t.Fatal(err)
	}
	cps := e.CheckpointEvents(up.ID)
	bases := e.baseRecords(up.ID)
	if len(cps) < 3 || !cps[0].InBase || len(cps[0].SliceParts()) != 0 || len(cps[2].SliceParts()) == 0 || len(bases) != 1 {
		for _, c := range cps {
			t.Logf("checkpoint %d at %s: [%d, %d), in base %v, %d parts", c.Seq, c.At, c.From, c.Next, c.InBase, len(c.SliceParts()))
		}
		t.Fatalf("%d checkpoints, %d bases", len(cps), len(bases))
	}
	base := bases[0]
	if base.Seq != 1 || base.Items != 40+3 || base.Versions != 40+8+3 || base.CheckpointDigest != cps[0].Digest || len(base.Parts) < 3 {
		t.Fatalf("base 0: seq %d, %d items, %d versions, %d parts", base.Seq, base.Items, base.Versions, len(base.Parts))
	}
	if up.Bases != 1 || up.BaseSeq != 1 {
		t.Fatalf("the upload shows base %d at %d", up.Bases, up.BaseSeq)
	}
	if n := sameDay(t, e, src, "2026-05-02", up.ID); n == 0 {
		t.Fatal("the day lists nothing")
	}
	target := Must(e.KMS.CreateInstance(ctx, e.Caller, commands.CreateInstanceInput{Region: "eu-central-1"}))
	req := RestoreReq{From: src, Day: "2026-05-02", All: true, ToInstance: target.ID}
	want := planItems(t, e, req)
	req.From, req.Day = up.ID, ""
	if got := planItems(t, e, req); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("plan from the upload %v, from its source %v", got, want)
	}
	if rep := Must(e.Checkpoints.VerifyBackup(ctx, e.Caller, up.ID)); len(rep.Findings) > 0 {
		t.Fatalf("verify: %+v", rep.Findings)
	}

	// The base is what a read loads: without one of its parts, the
	// upload's day does not load.
	point := commands.RestorePoint{Day: "2026-05-02"}
	src0 := Must(e.Days.Open(ctx, up, point, nil))
	keys, secrets, _ := Must3(src0.Counts(ctx))
	_ = src0.Close()
	if keys != 41 || secrets != 3 { // the 40 of the full (one deleted in the day: as it last stood) and one made
		t.Fatalf("the loaded day holds %d keys and %d secrets", keys, secrets)
	}
	if err := e.Store.DeleteBlob(ctx, up.DataRef(), base.Parts[0].Name); err != nil {
		t.Fatal(err)
	}
	if s, err := e.Days.Open(ctx, up, point, nil); !errors.Is(err, domain.ErrNotFound) {
		if s != nil {
			_ = s.Close()
		}
		t.Fatalf("the day loaded without a part of its base: %v", err)
	}
}

// Must3 returns the first three values, or panics with err.
func Must3[A, B, C any](a A, b B, c C, err error) (A, B, C) {
	if err != nil {
		panic(fmt.Sprintf("unexpected error: %v", err))
	}
	return a, b, c
}

// recordingBlobs remembers every blob stored through it (an upload
// stores base 0's parts and its slices from goroutines of their own).
type recordingBlobs struct {
	commands.BlobStore
	mu     sync.Mutex
	stored map[string][]string
}

func (r *recordingBlobs) PutBlob(ctx context.Context, ref, name string, data []byte) error {
	r.mu.Lock()
	r.stored[ref] = append(r.stored[ref], name)
	r.mu.Unlock()
	return r.BlobStore.PutBlob(ctx, ref, name, data)
}

// TestUploadDamagedAtItsEndLeavesNothing: an upload reads its file once,
// storing as it checks, so a file damaged in its last chunk is found only
// after parts of it were stored: the upload is refused with the one
// bad-file error, and its blobs, its data key and its scratch stores are
// gone, and no event is written.
func TestUploadDamagedAtItsEndLeavesNothing(t *testing.T) {
	ctx := context.Background()
	e, _, file, key := dayWithState(t, 900, 400)
	e.Storage.BasePartBytes, e.Storage.SlicePartBytes = 4<<10, 1<<10
	_, chunks := fileLayout(t, file)
	if len(chunks) < 3 {
		t.Fatalf("file of %d bytes has %d chunks, want at least 3", len(file), len(chunks))
	}
	head := Must(e.Store.Head(ctx))
	rb := &recordingBlobs{BlobStore: e.Store, stored: map[string][]string{}}
	e.Storage.Blobs = rb
	bad := bytes.Clone(file)
	bad[len(bad)-20] ^= 0x08 // in the last chunk
	_, err := e.upload(e.Caller, bad, key, "damaged at its end")
	refused(t, "damaged at its end", err)
	if len(rb.stored) != 1 {
		t.Fatalf("blobs stored under %d refs, want 1 (the upload stores as it reads)", len(rb.stored))
	}
	for ref, names := range rb.stored {
		if len(names) == 0 {
			t.Fatal("nothing was stored before the damage was found")
		}
		dataGone(t, e, ref, names)
	}
	if left, err := os.ReadDir(filepath.Join(e.dir, "scratch")); err != nil || len(left) != 0 {
		t.Fatalf("scratch stores left: %d (%v)", len(left), err)
	}
	nothingStored(t, e, head)
	e.Storage.Blobs = e.Store
	if _, err := e.upload(e.Caller, file, key, "intact"); err != nil {
		t.Fatalf("the intact file: %v", err)
	}
}

// failingBaseParts fails the nth put of a base part and records what was
// stored.
type failingBaseParts struct {
	commands.BlobStore
	n int

	mu     sync.Mutex
	parts  int
	stored map[string][]string
}

func (f *failingBaseParts) PutBlob(ctx context.Context, ref, name string, data []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if strings.HasPrefix(name, "base-") {
		if f.parts++; f.parts == f.n {
			return domain.Errorf(domain.ErrUnavailable, "put blob", name, "", "disk full (test)")
		}
	}
	f.stored[ref] = append(f.stored[ref], name)
	return f.BlobStore.PutBlob(ctx, ref, name, data)
}

// TestUploadBasePartFailureLeavesNothing: base 0's parts are stored on a
// goroutine of their own while the next is written; when the third fails,
// the upload fails with that error, the parts stored before it and every
// other blob and the data key are gone, and no event is written.
func TestUploadBasePartFailureLeavesNothing(t *testing.T) {
	ctx := context.Background()
	e, _, file, key := dayWithState(t, 900, 400)
	e.Storage.BasePartBytes, e.Storage.SlicePartBytes = 4<<10, 1<<10
	head := Must(e.Store.Head(ctx))
	fb := &failingBaseParts{BlobStore: e.Store, n: 3, stored: map[string][]string{}}
	e.Storage.Blobs = fb
	if _, err := e.upload(e.Caller, file, key, "base fails"); !errors.Is(err, domain.ErrUnavailable) || !strings.Contains(err.Error(), "disk full (test)") {
		t.Fatalf("upload whose third base part fails: %v", err)
	}
	if fb.parts < 3 {
		t.Fatalf("%d base parts were put, want at least 3", fb.parts)
	}
	for ref, names := range fb.stored {
		base := 0
		for _, n := range names {
			if strings.HasPrefix(n, "base-") {
				base++
			}
		}
		if base != 2 {
			t.Fatalf("%d base parts stored before the failure, want 2", base)
		}
		dataGone(t, e, ref, names)
	}
	nothingStored(t, e, head)
}

package backup

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// An upload reads its file on one goroutine while others write base 0
// (as a stream, when the state comes in key order), store its parts and
// write its index's runs. These tests cover the base written from a
// state out of order, and a failure in each stage.

// blobLog records the blobs stored and deleted through it.
type blobLog struct {
	commands.BlobStore
	mu      sync.Mutex
	stored  map[string][]string
	deleted map[string]bool
}

func newBlobLog(b commands.BlobStore) *blobLog {
	return &blobLog{BlobStore: b, stored: map[string][]string{}, deleted: map[string]bool{}}
}

func (l *blobLog) PutBlob(ctx context.Context, ref, name string, data []byte) error {
	l.mu.Lock()
	l.stored[ref] = append(l.stored[ref], name)
	l.mu.Unlock()
	return l.BlobStore.PutBlob(ctx, ref, name, data)
}

func (l *blobLog) DeleteBlob(ctx context.Context, ref, name string) error {
	l.mu.Lock()
	l.deleted[name] = true
	l.mu.Unlock()
	return l.BlobStore.DeleteBlob(ctx, ref, name)
}

// firstItemLast moves the events of the first item of the file's first
// segment to the end of that segment, renumbering the segment's
// revisions in their new order: an authentic file whose state holds the
// same items, replayed out of key order.
func firstItemLast(_ *domain.FileHeader, recs [][]byte) [][]byte {
	end := 1
	for end < len(recs) {
		if cp, _, _ := domain.DecodeFileRecord(recs[end]); cp != nil {
			break
		}
		end++
	}
	second := 2
	for second < end {
		_, ev, _ := domain.DecodeFileRecord(recs[second])
		if ev.Type == domain.TypeKeyCreated || ev.Type == domain.TypeSecretCreated {
			break
		}
		second++
	}
	seg := append(append([][]byte{}, recs[second:end]...), recs[1:second]...)
	for i, rec := range seg {
		_, ev, err := domain.DecodeFileRecord(rec)
		if err != nil {
			panic(err)
		}
		ev.Revision = uint64(i)
		seg[i] = domain.AppendFileEvent(nil, ev)
	}
	copy(recs[1:end], seg)
	return recs
}

// TestUploadStateOutOfOrder: a file whose first segment replays its state
// out of key order (its first item last) is stored as the same base 0 as
// the file in order (the same items and versions, its digest verified),
// through the scratch store: what was streamed before the first write out of order is
// moved there (its parts deleted again), and the upload plans as its
// source does.
func TestUploadStateOutOfOrder(t *testing.T) {
	ctx := context.Background()
	e, src, file, key := dayWithState(t, 300, 20)
	e.Storage.BasePartBytes, e.Storage.SlicePartBytes = 4<<10, 1<<10
	inOrder := Must(e.upload(e.Caller, file, key, "in order"))
	log := newBlobLog(e.Store)
	e.Storage.Blobs = log
	moved, k := rewrite(t, file, key, firstItemLast)
	out := Must(e.upload(e.Caller, moved, k, "first item last"))
	e.Storage.Blobs = e.Store

	want, got := e.baseRecords(inOrder.ID), e.baseRecords(out.ID)
	if len(want) != 1 || len(got) != 1 {
		t.Fatalf("%d and %d bases", len(want), len(got))
	}
	if got[0].Items != want[0].Items || got[0].Versions != want[0].Versions {
		t.Fatalf("base 0 out of order: %d items, %d versions; in order: %d, %d", got[0].Items, got[0].Versions, want[0].Items, want[0].Versions)
	}
	// Its digest is of its records as stored (the material sealed anew,
	// so unlike any other upload's): the verification reads the parts
	// back and checks it.
	if rep := Must(e.Checkpoints.VerifyBackup(ctx, e.Caller, out.ID)); len(rep.Findings) > 0 {
		t.Fatalf("verify the upload out of order: %+v", rep.Findings)
	}
	kept := map[string]bool{}
	for _, p := range got[0].Parts {
		kept[p.Name] = true
	}
	streamed := 0
	for _, name := range log.stored[out.DataRef()] {
		if !strings.HasPrefix(name, "base-") || kept[name] {
			continue
		}
		streamed++
		if !log.deleted[name] {
			t.Errorf("base part %s, streamed before the write out of order, was not deleted", name)
		}
		if _, err := e.Store.GetBlob(ctx, out.DataRef(), name); !errors.Is(err, domain.ErrNotFound) {
			t.Errorf("base part %s, streamed before the write out of order, is still stored: %v", name, err)
		}
	}
	if streamed < 2 {
		t.Fatalf("%d base parts were streamed before the write out of order, want several", streamed)
	}
	req := RestoreReq{From: src, Day: "2026-05-02", All: true, ToInstance: Must(e.KMS.CreateInstance(ctx, e.Caller, commands.CreateInstanceInput{Region: "eu-central-1"})).ID}
	wantPlan := planItems(t, e, req)
	req.From, req.Day = out.ID, ""
	if got := planItems(t, e, req); strings.Join(got, "\n") != strings.Join(wantPlan, "\n") {
		t.Fatalf("plan from the upload out of order:\n%v\nfrom its source:\n%v", got, wantPlan)
	}
}

// faultyScratches makes scratch stores whose sorted writes fail: a base
// stream's tables (after some records) or an index's runs.
type faultyScratches struct {
	commands.ScratchStores
	tables, runs bool
}

func (f *faultyScratches) OpenScratch(ctx context.Context) (commands.Scratch, error) {
	sc, err := f.ScratchStores.OpenScratch(ctx)
	if err != nil {
		return nil, err
	}
	return &faultyScratch{Scratch: sc, f: f}, nil
}

type faultyScratch struct {
	commands.Scratch
	f *faultyScratches
}

var errScratchFault = domain.Errorf(domain.ErrUnavailable, "scratch", "", "", "disk full (test)")

func (s *faultyScratch) IngestSorted(ctx context.Context, next func() ([]byte, []byte, bool)) error {
	if s.f.runs {
		return errScratchFault
	}
	return s.Scratch.IngestSorted(ctx, next)
}

func (s *faultyScratch) WriteSortedTables(ctx context.Context, next func() ([]byte, []byte, bool), split func([]byte, []byte, int64) (bool, error), put func(*commands.ScratchTable) error) error {
	if !s.f.tables {
		return s.Scratch.WriteSortedTables(ctx, next, split, put)
	}
	for range 100 {
		if _, _, ok := next(); !ok {
			break
		}
	}
	return errScratchFault
}

// pipelineLeft returns the upload's goroutines still running.
func pipelineLeft() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var left []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, fn := range []string{"commands.(*BackupStorage).startBaseStream", "commands.startIndexWriter", "commands.(*partStore).run"} {
			if strings.Contains(g, fn) {
				left = append(left, fn)
			}
		}
	}
	return left
}

// cancelAt is a file that ends its upload's context once n bytes of it
// were read.
type cancelAt struct {
	r      io.Reader
	n      int
	cancel context.CancelFunc
}

func (c *cancelAt) Read(p []byte) (int, error) {
	if c.n <= 0 {
		c.cancel()
	}
	n, err := c.r.Read(p)
	c.n -= n
	return n, err
}

// TestUploadPipelineFailuresLeaveNothing: whichever stage of an upload
// fails (the pass over the file, the base stream's tables, a base part's
// store, an index run, or the caller's context, ended half-way), the
// upload fails with that stage's error, every goroutine of it has
// returned, and it leaves nothing: no blob, no data key, no scratch store,
// no event.
func TestUploadPipelineFailuresLeaveNothing(t *testing.T) {
	e, _, file, key := dayWithState(t, 900, 400)
	e.Storage.BasePartBytes, e.Storage.SlicePartBytes = 4<<10, 1<<10
	head := Must(e.Store.Head(context.Background()))
	scratches := e.Storage.Scratch
	damaged := bytes.Clone(file)
	damaged[len(damaged)-20] ^= 0x08
	for _, tc := range []struct {
		name string
		// set sets the fault up and returns the file uploaded and the check
		// of the error.
		set func() (file []byte, cancelAfter int, want func(error) bool)
		// stores: something is stored before the failure, whatever the
		// goroutines' timing (the pass may see the base's tables fail, or
		// the context end, before it stored anything)
		stores bool
	}{
		{"the file is damaged at its end", func() ([]byte, int, func(error) bool) {
			return damaged, 0, domain.IsBadBackupFile
		}, true},
		{"the base's tables fail to write", func() ([]byte, int, func(error) bool) {
			e.Storage.Scratch = &faultyScratches{ScratchStores: scratches, tables: true}
			return file, 0, func(err error) bool { return errors.Is(err, domain.ErrUnavailable) }
		}, false},
		{"an index run fails to write", func() ([]byte, int, func(error) bool) {
			e.Storage.Scratch = &faultyScratches{ScratchStores: scratches, runs: true}
			return file, 0, func(err error) bool { return errors.Is(err, domain.ErrUnavailable) }
		}, true},
		{"a base part fails to store", func() ([]byte, int, func(error) bool) {
			e.Storage.Blobs = &failingBaseParts{BlobStore: e.Storage.Blobs, n: 3, stored: map[string][]string{}}
			return file, 0, func(err error) bool { return errors.Is(err, domain.ErrUnavailable) }
		}, true},
		{"the context ends half-way", func() ([]byte, int, func(error) bool) {
			return file, len(file) / 2, func(err error) bool { return errors.Is(err, context.Canceled) }
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := newBlobLog(e.Store)
			e.Storage.Blobs, e.Storage.Scratch = log, scratches
			defer func() { e.Storage.Blobs, e.Storage.Scratch = e.Store, scratches }()
			f, cancelAfter, want := tc.set()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			_, err := e.Files.UploadBackupFile(ctx, e.Caller, "fails", key, func() (io.Reader, error) {
				if cancelAfter > 0 {
					return &cancelAt{r: bytes.NewReader(f), n: cancelAfter, cancel: cancel}, nil
				}
				return bytes.NewReader(f), nil
			})
			if !want(err) {
				t.Fatalf("upload: %v", err)
			}
			if left := pipelineLeft(); len(left) > 0 {
				t.Fatalf("goroutines of the upload left running: %v", left)
			}
			if tc.stores && len(log.stored) == 0 {
				t.Fatal("nothing was stored before the failure")
			}
			for ref, names := range log.stored {
				dataGone(t, e, ref, names)
			}
			if left, err := os.ReadDir(filepath.Join(e.dir, "scratch")); err != nil || len(left) != 0 {
				t.Fatalf("scratch stores left: %d (%v)", len(left), err)
			}
			nothingStored(t, e, head)
		})
	}
	if _, err := e.upload(e.Caller, file, key, "intact"); err != nil {
		t.Fatalf("the intact file: %v", err)
	}
}

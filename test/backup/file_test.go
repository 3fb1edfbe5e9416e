package backup

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/kmsbackup/kmsbackup/adapters/backupfile"
	"github.com/kmsbackup/kmsbackup/adapters/clock"
	"github.com/kmsbackup/kmsbackup/adapters/ids"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
)

// download returns the file of a day and its data key.
func (e *Engine) download(id domain.BackupID, day string) ([]byte, string) {
	e.t.Helper()
	var buf bytes.Buffer
	var key string
	if _, err := e.Files.DownloadDay(context.Background(), e.Caller, id, day, &buf, func(st commands.DownloadStart) error {
		key = st.DataKey
		return nil
	}); err != nil {
		e.t.Fatalf("download %s %s: %v", id, day, err)
	}
	return buf.Bytes(), key
}

// upload uploads file as c.
func (e *Engine) upload(c commands.Caller, file []byte, key, name string) (*domain.Backup, error) {
	return e.Files.UploadBackupFile(context.Background(), c, name, key, func() (io.Reader, error) {
		return bytes.NewReader(file), nil
	})
}

// tabItems lists every page of a tab.
func tabItems(t *testing.T, e *Engine, id domain.BackupID, day string, tab backupdata.Tab) []backupdata.Item {
	t.Helper()
	var out []backupdata.Item
	cursor := ""
	for {
		p, err := e.Days.ListDayData(e.Caller, id, day, string(tab), cursor, 7)
		if err != nil {
			t.Fatalf("list %s %s %s: %v", id, day, tab, err)
		}
		out = append(out, p.Items...)
		if p.Next == "" {
			return out
		}
		cursor = p.Next
	}
}

// sameDay asserts that an upload shows the seven lists of the day it came
// from exactly (checkpoint numbers aside, which are the upload's own).
func sameDay(t *testing.T, e *Engine, src domain.BackupID, day string, up domain.BackupID) int {
	t.Helper()
	n := 0
	for _, tab := range backupdata.Tabs {
		want := tabItems(t, e, src, day, tab)
		got := tabItems(t, e, up, "", tab)
		if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(backupdata.Item{}, "CreateSeq"), cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("day %s, tab %s: the upload differs from its source (-source +upload):\n%s", day, tab, diff)
		}
		n += len(want)
	}
	return n
}

// planItems is what a whole-instance restore of a source would restore.
func planItems(t *testing.T, e *Engine, req RestoreReq) []string {
	t.Helper()
	p := Must(planRestore(t, e, req))
	var out []string
	for _, it := range p.Items {
		out = append(out, fmt.Sprintf("%s %s v%d", it.Kind, it.ID, it.Versions))
	}
	return out
}

// TestFileRoundTripRandomized: over random histories with downtime, every
// day with data, downloaded and uploaded again, shows the same seven lists,
// plans the same whole-instance restore, verifies clean, and restores with
// every version valid.
func TestFileRoundTripRandomized(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (rerun with -seed %d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	start := time.Date(2026, 5, 1, 20, 0, 0, 0, time.UTC)
	e := NewEngine(t, start)
	ctx := context.Background()
	in, b := e.EnabledBackup([]string{"UTC", "Asia/Shanghai", "America/New_York"}[rng.IntN(3)])
	var keys []domain.KeyID
	secrets := map[string]bool{}
	for step := range 150 {
		switch op := rng.IntN(10); {
		case op < 3 || len(keys) == 0:
			keys = append(keys, Must(e.KMS.CreateKey(ctx, e.Caller, in.ID, fmt.Sprint("key ", step))).ID)
		case op < 5:
			Must(e.KMS.RotateKey(ctx, e.Caller, keys[rng.IntN(len(keys))], ""))
		case op < 6:
			i := rng.IntN(len(keys))
			if e.KMS.DeleteKey(ctx, e.Caller, keys[i], "") == nil {
				keys = append(keys[:i], keys[i+1:]...)
			}
		case op < 8:
			name := fmt.Sprint("s", rng.IntN(6))
			if secrets[name] {
				Must(e.KMS.RotateSecret(ctx, e.Caller, name, "", domain.Plaintext("v")))
			} else {
				Must(e.KMS.CreateSecret(ctx, e.Caller, commands.CreateSecretInput{Name: name, Instance: in.ID,
					Key: keys[rng.IntN(len(keys))], Value: domain.Plaintext("v")}))
				secrets[name] = true
			}
		default:
			for name := range secrets {
				Must(struct{}{}, e.KMS.DeleteSecret(ctx, e.Caller, name, ""))
				delete(secrets, name)
				break
			}
		}
		switch r := rng.IntN(12); {
		case r < 3:
			e.Advance(time.Duration(1+rng.IntN(180)) * time.Minute)
		case r == 3:
			// Down for a while, then catch up.
			e.Close()
			e.Clock.Set(e.Clock.Now().Add(time.Duration(30+rng.IntN(30*60)) * time.Minute))
			e.open()
			Must(e.Driver.Start(ctx))
		}
	}
	e.Advance(10 * time.Minute)
	b = Must(e.Backups.ShowBackupInstance(e.Caller, b.ID))
	days := Must(backupdata.Days(e.Proj, b.DataRef()))
	loc := Must(time.LoadLocation(b.TimeZone))
	today := domain.DayOf(e.Clock.Now(), loc)
	checked := 0
	for _, d := range days {
		if !domain.Viewable(b.EnabledDay, d.Day, today, b.ViewableDays) {
			continue
		}
		file, key := e.download(b.ID, string(d.Day))
		up, err := e.upload(e.Caller, file, key, "day "+string(d.Day))
		if err != nil {
			t.Fatalf("upload of %s: %v", d.Day, err)
		}
		if up.Kind != domain.BackupUpload || up.UploadDay != d.Day || up.Source != b.ID || up.Region != b.Region {
			t.Fatalf("upload of %s: %+v", d.Day, up)
		}
		sameDay(t, e, b.ID, string(d.Day), up.ID)
		// A region of its own for each day: key IDs are unique in a region.
		target := Must(e.KMS.CreateInstance(ctx, e.Caller, commands.CreateInstanceInput{Region: fmt.Sprint("restore-", checked),
			KeyQuota: 1000, SecretQuota: 1000}))
		fromBackup := planItems(t, e, RestoreReq{From: b.ID, Day: string(d.Day), All: true, ToInstance: target.ID})
		fromUpload := planItems(t, e, RestoreReq{From: up.ID, All: true, ToInstance: target.ID})
		if diff := cmp.Diff(fromBackup, fromUpload); diff != "" {
			t.Fatalf("day %s: restore plans differ (-backup +upload):\n%s", d.Day, diff)
		}
		if rep := Must(e.Checkpoints.VerifyBackup(ctx, e.Caller, up.ID)); len(rep.Findings) != 0 {
			t.Fatalf("verify upload of %s: %+v", d.Day, rep.Findings)
		}
		if len(fromUpload) > 0 {
			res := Must(restore(t, e, RestoreReq{From: up.ID, All: true, ToInstance: target.ID}))
			if !res.Applied || len(res.Validation) != 0 || res.Restored != len(fromUpload) {
				t.Fatalf("restore from the upload of %s: applied %v, restored %d of %d, validation %+v", d.Day,
					res.Applied, res.Restored, len(fromUpload), res.Validation)
			}
		}
		Must(struct{}{}, e.Files.DeleteUpload(ctx, e.Caller, up.ID))
		checked++
	}
	if checked < 2 {
		t.Fatalf("only %d days checked", checked)
	}
	if l := Must(e.Files.ListUploads(e.Caller, "", 100)); len(l.Items) != 0 {
		t.Fatalf("uploads left after deleting them all: %d", len(l.Items))
	}
}

// TestUploadRestoresOldCiphertexts: a key deleted by mistake comes back from
// an upload into another region, and a ciphertext made before the deletion
// decrypts there.
func TestUploadRestoresOldCiphertexts(t *testing.T) {
	e := NewEngine(t, time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC))
	ctx := context.Background()
	in, b := e.EnabledBackup("Asia/Shanghai")
	k := Must(e.KMS.CreateKey(ctx, e.Caller, in.ID, "payments"))
	ct := Must(e.KMS.Encrypt(ctx, e.Caller, k.ID, "", domain.Plaintext("hello from May")))
	Must(e.KMS.RotateKey(ctx, e.Caller, k.ID, ""))
	e.Advance(20 * time.Minute)
	Must(struct{}{}, e.KMS.DeleteKey(ctx, e.Caller, k.ID, ""))
	e.Advance(10 * time.Minute)
	day := string(domain.DayOf(e.Clock.Now(), Must(time.LoadLocation("Asia/Shanghai"))))
	file, key := e.download(b.ID, day)
	up := Must(e.upload(e.Caller, file, key, "payments day"))
	if got := tabItems(t, e, up.ID, "", backupdata.Deleted); len(got) != 1 || got[0].ID != string(k.ID) || got[0].Versions != 2 {
		t.Fatalf("deleted tab of the upload: %+v", got)
	}
	dr := Must(e.KMS.CreateInstance(ctx, e.Caller, commands.CreateInstanceInput{Region: "eu-central-1"}))
	res := Must(restore(t, e, RestoreReq{From: up.ID, Keys: []string{string(k.ID)}, ToInstance: dr.ID}))
	if !res.Applied || len(res.Validation) != 0 {
		t.Fatalf("restore: %+v", res)
	}
	pt, _ := Must2(e.KMS.Decrypt(ctx, e.Caller, ct.String(), "eu-central-1"))
	if string(pt) != "hello from May" {
		t.Fatal("the old ciphertext does not decrypt under the restored key")
	}
	// A day of an upload other than its own is refused, and so are the
	// lifecycle operations that do not apply to it.
	if _, err := e.Days.ListDayData(e.Caller, up.ID, "2026-04-30", string(backupdata.FullKeys), "", 10); !errors.Is(err, domain.ErrFailedPrecondition) {
		t.Fatalf("another day of an upload: %v", err)
	}
	if _, err := e.Backups.ExtendViewableDays(ctx, e.Caller, up.ID, 30); !errors.Is(err, domain.ErrFailedPrecondition) {
		t.Fatalf("extend an upload: %v", err)
	}
	if err := e.Files.DeleteUpload(ctx, e.Caller, b.ID); !errors.Is(err, domain.ErrFailedPrecondition) {
		t.Fatalf("delete a backup instance as an upload: %v", err)
	}
	// Another account sees no upload.
	other := commands.Caller{Account: domain.NewAccountID(ids.Random{Clock: clock.System{}}.NewULID())}
	if _, err := e.Backups.ShowBackupInstance(other, up.ID); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("another account's view of the upload: %v", err)
	}
	if err := e.Files.DeleteUpload(ctx, other, up.ID); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("another account deleting the upload: %v", err)
	}
}

// Must2 is Must for two results.
func Must2[A, B any](a A, b B, err error) (A, B) {
	if err != nil {
		panic(fmt.Sprintf("unexpected error: %v", err))
	}
	return a, b
}

// TestRestoredItemsAreBackedUp: keys and secrets restored into a KMS
// instance that is backed up are part of its later backups, with all their
// versions, and restore again from there.
func TestRestoredItemsAreBackedUp(t *testing.T) {
	e := NewEngine(t, time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC))
	ctx := context.Background()
	src, b := e.EnabledBackup("UTC")
	k := Must(e.KMS.CreateKey(ctx, e.Caller, src.ID, "orders"))
	Must(e.KMS.RotateKey(ctx, e.Caller, k.ID, ""))
	ct := Must(e.KMS.Encrypt(ctx, e.Caller, k.ID, "", domain.Plaintext("v2 text")))
	Must(e.KMS.CreateSecret(ctx, e.Caller, commands.CreateSecretInput{Name: "db", Instance: src.ID, Key: k.ID, Value: domain.Plaintext("pw")}))
	e.Advance(10 * time.Minute)

	// A second instance in another region, backed up by its own instance.
	dst := Must(e.KMS.CreateInstance(ctx, e.Caller, commands.CreateInstanceInput{Region: "eu-central-1"}))
	b2 := Must(e.Backups.CreateBackupInstance(ctx, e.Caller, commands.CreateBackupInput{Region: "eu-central-1", ViewableDays: 30, Term: "1y"}))
	Must(e.Backups.EnableBackupInstance(ctx, e.Caller, b2.ID, commands.EnableInput{KMSInstance: dst.ID, Alias: "dr", TimeZone: "UTC"}))
	res := Must(restore(t, e, RestoreReq{From: b.ID, Day: "2026-05-01", All: true, ToInstance: dst.ID}))
	if res.Restored != 2 {
		t.Fatalf("restored %d items, want 2", res.Restored)
	}
	e.Advance(10 * time.Minute)
	got := map[string]uint32{}
	for _, tab := range []backupdata.Tab{backupdata.IncrementalKeys, backupdata.IncrementalSecrets} {
		for _, it := range tabItems(t, e, b2.ID, "2026-05-01", tab) {
			got[it.Kind+"/"+it.ID] = it.Versions
		}
	}
	want := map[string]uint32{"key/" + string(k.ID): 2, "secret/db": 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("the restored items in the target's backup (-want +got):\n%s", diff)
	}
	if rep := Must(e.Checkpoints.VerifyBackup(ctx, e.Caller, b2.ID)); len(rep.Findings) != 0 || rep.Sealed < 2 {
		t.Fatalf("verify the target's backup: sealed %d, findings %+v", rep.Sealed, rep.Findings)
	}
	// From that backup into a third instance: the old ciphertext decrypts.
	third := Must(e.KMS.CreateInstance(ctx, e.Caller, commands.CreateInstanceInput{Region: "ap-southeast-1"}))
	res = Must(restore(t, e, RestoreReq{From: b2.ID, Day: "2026-05-01", All: true, ToInstance: third.ID}))
	if !res.Applied || len(res.Validation) != 0 || res.Restored != 2 {
		t.Fatalf("restore from the target's backup: %+v", res)
	}
	pt, _ := Must2(e.KMS.Decrypt(ctx, e.Caller, ct.String(), "ap-southeast-1"))
	if string(pt) != "v2 text" {
		t.Fatal("ciphertext does not decrypt after two restores")
	}
}

// smallDay makes an engine with a small day of data and returns its file.
func smallDay(t *testing.T, keys int) (*Engine, domain.BackupID, []byte, string) {
	e := NewEngine(t, time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC))
	ctx := context.Background()
	in, b := e.EnabledBackup("UTC")
	var first domain.KeyID
	for i := range keys {
		k := Must(e.KMS.CreateKey(ctx, e.Caller, in.ID, fmt.Sprintf("key number %d with a description", i)))
		if i == 0 {
			first = k.ID
		}
	}
	Must(e.KMS.CreateSecret(ctx, e.Caller, commands.CreateSecretInput{Name: "db", Instance: in.ID, Key: first, Value: domain.Plaintext("pw")}))
	e.Advance(6 * time.Minute)
	Must(e.KMS.RotateKey(ctx, e.Caller, first, ""))
	e.Advance(5 * time.Minute)
	file, key := e.download(b.ID, "2026-05-01")
	return e, b.ID, file, key
}

// nothingStored asserts that bad uploads left no trace: the log did not
// grow and the account has no upload.
func nothingStored(t *testing.T, e *Engine, head uint64) {
	t.Helper()
	if h := Must(e.Store.Head(context.Background())); h != head {
		t.Fatalf("the log grew from %d to %d", head, h)
	}
	if l := Must(e.Files.ListUploads(e.Caller, "", 10)); len(l.Items) != 0 {
		t.Fatalf("%d uploads stored", len(l.Items))
	}
}

// dataGone asserts that the blobs names of ref, stored by an upload that
// failed, and its data key are gone.
func dataGone(t *testing.T, e *Engine, ref string, names []string) {
	t.Helper()
	for _, n := range names {
		if _, err := e.Store.GetBlob(context.Background(), ref, n); !errors.Is(err, domain.ErrNotFound) {
			t.Fatalf("blob %s/%s survived the failed upload: %v", ref, n, err)
		}
	}
	if _, rev, err := e.Store.GetWrapped(context.Background(), ref); rev != 0 || err != nil {
		t.Fatalf("data key %s survived the failed upload (%v)", ref, err)
	}
}

// refused asserts err is the one bad-file error.
func refused(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil || !domain.IsBadBackupFile(err) || err.Error() != domain.BadBackupFile().Error() {
		t.Fatalf("%s: %v, want the bad-file error", what, err)
	}
}

// TestUploadRefusesEveryFlippedByte flips each byte of a small file in
// turn: every one is refused with the same error, and nothing is stored.
func TestUploadRefusesEveryFlippedByte(t *testing.T) {
	e, _, file, key := smallDay(t, 2)
	head := Must(e.Store.Head(context.Background()))
	if len(file) > 64<<10 {
		t.Fatalf("file of %d bytes is not small", len(file))
	}
	for i := range file {
		t.Run(fmt.Sprint("byte=", i), func(t *testing.T) {
			bad := bytes.Clone(file)
			bad[i] ^= 0x01 << (i % 8)
			_, err := e.upload(e.Caller, bad, key, "flipped")
			refused(t, fmt.Sprint("byte ", i), err)
		})
	}
	nothingStored(t, e, head)
	if _, err := e.upload(e.Caller, file, key, "intact"); err != nil {
		t.Fatalf("the intact file: %v", err)
	}
}

// fileLayout finds the chunks of a file: the header's end and the offsets
// of the sealed chunks (docs/backup-file.md).
func fileLayout(t *testing.T, file []byte) (headerEnd int, chunks []int) {
	t.Helper()
	const sealedChunk = 64<<10 + 16
	headerEnd = 8 + 4 + int(binary.BigEndian.Uint32(file[8:12])) + 32
	for off := headerEnd; off < len(file); off += sealedChunk {
		chunks = append(chunks, off)
	}
	return headerEnd, chunks
}

// TestUploadRefusesDamagedFiles: truncation at and between chunk
// boundaries, swapped, dropped and repeated chunks, another file's header,
// the wrong key, and another account's upload are all refused alike, and
// nothing is stored.
func TestUploadRefusesDamagedFiles(t *testing.T) {
	e, src, file, key := smallDay(t, 900)
	other, otherKey := e.download(src, "2026-05-01") // the same day again: another file, another key
	head := Must(e.Store.Head(context.Background()))
	hdr, chunks := fileLayout(t, file)
	if len(chunks) < 3 {
		t.Fatalf("file of %d bytes has %d chunks, want at least 3", len(file), len(chunks))
	}
	cut := func(n int) []byte { return bytes.Clone(file[:n]) }
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	chunk := func(i int) []byte {
		end := len(file)
		if i+1 < len(chunks) {
			end = chunks[i+1]
		}
		return file[chunks[i]:end]
	}
	cases := map[string][]byte{
		"empty":               {},
		"header only":         cut(hdr),
		"header cut":          cut(hdr - 1),
		"last chunk missing":  cut(chunks[len(chunks)-1]),
		"last byte missing":   cut(len(file) - 1),
		"a byte added":        append(bytes.Clone(file), 0),
		"chunks 0, 1 swapped": join(file[:hdr], chunk(1), chunk(0), file[chunks[2]:]),
		"chunk 1 dropped":     join(file[:chunks[1]], file[chunks[2]:]),
		"chunk 0 repeated":    join(file[:chunks[1]], chunk(0), file[chunks[1]:]),
		"other header":        join(other[:hdr], file[hdr:]),
		"other chunks":        join(file[:hdr], other[hdr:]),
	}
	for i := range chunks {
		cases[fmt.Sprint("cut at chunk ", i)] = cut(chunks[i])
		cases[fmt.Sprint("cut inside chunk ", i)] = cut(chunks[i] + 1000)
		cases[fmt.Sprint("cut before chunk end ", i)] = cut(chunks[i] + len(chunk(i)) - 1)
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := e.upload(e.Caller, bad, key, "damaged")
			refused(t, name, err)
		})
	}
	t.Run("wrong key", func(t *testing.T) {
		_, err := e.upload(e.Caller, file, otherKey, "wrong key")
		refused(t, "wrong key", err)
	})
	t.Run("another account", func(t *testing.T) {
		c := commands.Caller{Account: domain.NewAccountID(ids.Random{Clock: clock.System{}}.NewULID())}
		_, err := e.upload(c, file, key, "theirs")
		refused(t, "another account", err)
		if l := Must(e.Files.ListUploads(c, "", 10)); len(l.Items) != 0 {
			t.Fatal("the other account has an upload")
		}
	})
	nothingStored(t, e, head)
	// A malformed key is a plain invalid argument, not the bad-file error.
	if _, err := e.upload(e.Caller, file, "kbk1_short", "x"); !errors.Is(err, domain.ErrInvalidArgument) || domain.IsBadBackupFile(err) {
		t.Fatalf("malformed key: %v", err)
	}
	if _, err := e.upload(e.Caller, file, key, "intact"); err != nil {
		t.Fatalf("the intact file: %v", err)
	}
	if _, err := e.upload(e.Caller, other, otherKey, "intact too"); err != nil {
		t.Fatalf("the other intact file: %v", err)
	}
}

// rewrite re-encodes a file's records under a new data key after fn
// changed them: an authentic file with content of the caller's choosing,
// as anyone holding a data key can make.
func rewrite(t *testing.T, file []byte, key string, fn func(h *domain.FileHeader, recs [][]byte) [][]byte) ([]byte, string) {
	t.Helper()
	files := backupfile.New()
	r := Must(files.Open(bytes.NewReader(file), Must(domain.ParseDataKey(key))))
	h := r.Header()
	var recs [][]byte
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, bytes.Clone(rec))
	}
	recs = fn(&h, recs)
	var buf bytes.Buffer
	w, k, err := files.Create(&buf, h)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		if err := w.WriteRecord(rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), domain.FormatDataKey(k)
}

// editEvents applies fn to the decoded event records (i is the record's
// place in the payload).
func editEvents(fn func(i int, e *domain.Event)) func(*domain.FileHeader, [][]byte) [][]byte {
	return func(_ *domain.FileHeader, recs [][]byte) [][]byte {
		for i, rec := range recs {
			_, ev, err := domain.DecodeFileRecord(rec)
			if err != nil || ev == nil {
				continue
			}
			fn(i, ev)
			recs[i] = domain.AppendFileEvent(nil, ev)
		}
		return recs
	}
}

// TestUploadRefusesUnsoundContent: authentic files (re-sealed under a key
// the maker holds) whose content does not hold together are refused like
// damaged ones, and nothing is stored. The read model never sees them.
func TestUploadRefusesUnsoundContent(t *testing.T) {
	e, _, file, key := smallDay(t, 3)
	head := Must(e.Store.Head(context.Background()))
	first := true
	cases := map[string]func(*domain.FileHeader, [][]byte) [][]byte{
		"unchanged (control)": func(_ *domain.FileHeader, r [][]byte) [][]byte { return r },
		"another account in the header": func(h *domain.FileHeader, r [][]byte) [][]byte {
			h.Account = domain.NewAccountID(ids.Random{Clock: clock.System{}}.NewULID())
			return r
		},
		"another day in the header": func(h *domain.FileHeader, r [][]byte) [][]byte { h.Day = "2026-05-02"; return r },
		"more keys in the header":   func(h *domain.FileHeader, r [][]byte) [][]byte { h.Keys++; return r },
		"an unknown time zone":      func(h *domain.FileHeader, r [][]byte) [][]byte { h.TimeZone = "Mars/Olympus"; return r },
		"a record dropped": func(h *domain.FileHeader, r [][]byte) [][]byte {
			h.Records--
			return append(r[:2:2], r[3:]...)
		},
		"records reordered": func(_ *domain.FileHeader, r [][]byte) [][]byte { r[1], r[2] = r[2], r[1]; return r },
		"an event of another account": editEvents(func(i int, ev *domain.Event) {
			if first {
				ev.Account, first = domain.NewAccountID(ids.Random{Clock: clock.System{}}.NewULID()), false
			}
		}),
		"short key material": editEvents(func(_ int, ev *domain.Event) {
			if d, ok := Must(ev.Decode()).(*domain.KeyCreated); ok {
				d.Material = d.Material[:16]
				ev.Data = domain.EncodeData(d)
			}
		}),
		"a rotation of a key that is not there": editEvents(func(_ int, ev *domain.Event) {
			if d, ok := Must(ev.Decode()).(*domain.KeyRotated); ok {
				d.Key = "key_01KQHDZ8E06EEJJSCA7V7BZFRP"
				ev.Data = domain.EncodeData(d)
			}
		}),
		"a version skipped": editEvents(func(_ int, ev *domain.Event) {
			if d, ok := Must(ev.Decode()).(*domain.KeyRotated); ok {
				d.Version++
				ev.Data = domain.EncodeData(d)
			}
		}),
		"an event after its checkpoint": editEvents(func(_ int, ev *domain.Event) {
			ev.OccurredAt = ev.OccurredAt.Add(48 * time.Hour)
		}),
		"a revision out of place": editEvents(func(_ int, ev *domain.Event) { ev.Revision += 1000 }),
	}
	for name, fn := range cases {
		first = true
		bad, k := rewrite(t, file, key, fn)
		if name == "unchanged (control)" {
			continue // uploaded last: the rewrite itself must not spoil a file
		}
		t.Run(name, func(t *testing.T) {
			_, err := e.upload(e.Caller, bad, k, "unsound")
			refused(t, name, err)
		})
	}
	nothingStored(t, e, head)
	good, k := rewrite(t, file, key, cases["unchanged (control)"])
	if _, err := e.upload(e.Caller, good, k, "rewritten"); err != nil {
		t.Fatalf("a rewritten but unchanged file: %v", err)
	}
}

// failingBlobs fails the nth PutBlob and remembers what was stored (an
// upload stores from goroutines of its own).
type failingBlobs struct {
	commands.BlobStore
	mu       sync.Mutex
	n, calls int
	refs     map[string][]string
}

func (f *failingBlobs) PutBlob(ctx context.Context, ref, name string, data []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls == f.n {
		return domain.Errorf(domain.ErrUnavailable, "put blob", name, "", "disk full (test)")
	}
	f.refs[ref] = append(f.refs[ref], name)
	return f.BlobStore.PutBlob(ctx, ref, name, data)
}

// TestUploadFailureLeavesNothing: when storing an upload fails half-way,
// its blobs and its data key are destroyed and no event is written.
func TestUploadFailureLeavesNothing(t *testing.T) {
	e, _, file, key := smallDay(t, 3)
	head := Must(e.Store.Head(context.Background()))
	fb := &failingBlobs{BlobStore: e.Store, n: 2, refs: map[string][]string{}}
	e.Storage.Blobs = fb
	if _, err := e.upload(e.Caller, file, key, "fails"); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("upload with a failing store: %v", err)
	}
	if len(fb.refs) != 1 {
		t.Fatalf("blobs stored under %d refs, want 1", len(fb.refs))
	}
	for ref, names := range fb.refs {
		dataGone(t, e, ref, names)
	}
	nothingStored(t, e, head)
}

package commands_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/kmsbackup/kmsbackup/adapters/backupfile"
	"github.com/kmsbackup/kmsbackup/adapters/clock"
	"github.com/kmsbackup/kmsbackup/adapters/envelope"
	"github.com/kmsbackup/kmsbackup/adapters/pebblestore"
	"github.com/kmsbackup/kmsbackup/cmd/engine"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// The use-case tests of backup and restore (take_checkpoint_test.go,
// catch_up_test.go, rebase_backup_test.go, upload_backup_file_test.go,
// plan_restore_test.go, apply_restore_test.go) each drive ONE use case:
// given a state (events appended to the log directly, or the fewest other
// calls), when one call, then what it wrote at its ports (the events
// appended, the blobs stored), its result and its findings, or its error. They run on the engine the server runs, assembled once by
// cmd/engine on real Pebble in t.TempDir(), the envelope with its key store
// and a manual clock; end-to-end scenarios of many use cases are in
// test/backup.
//
// This file is the only one that names the structs holding the use cases:
// the tests reach them through useCases' fields (f.checkpoints,
// f.restores, ...), so that a split or a rename of those structs touches
// this file alone.

// useCaseStart is when every fixture's clock starts.
var useCaseStart = time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC)

// useCases is the engine under test, its ports, and who calls it.
type useCases struct {
	clock  *clock.Manual
	caller commands.Caller
	log    *portLog   // the event log: Pebble, recording every append
	blobs  *portBlobs // the blob store: Pebble, recording every blob stored
	keys   *envelope.Envelope
	ids    *seqULIDs

	// The use cases, by what the tests call on them.
	kms         *commands.KMS             // the given KMS instances, keys and secrets
	checkpoints *commands.Checkpoints     // TakeCheckpoint
	rebases     *commands.Checkpoints     // RebaseBackup
	schedule    *commands.Schedule        // CatchUp
	backups     *commands.BackupInstances // ResetBackupInstance, ReleaseBackupInstance
	files       *commands.DayFiles        // DownloadDay, UploadBackupFile
	restores    *commands.Restores        // PlanRestore, Restore (plan, apply, validate)

	procs []*commands.Projector
}

// newUseCases assembles the engine with options o on a fresh data
// directory, starts its projectors, and stops them when the test ends.
func newUseCases(tb testing.TB, o engine.Options) *useCases {
	tb.Helper()
	dir := tb.TempDir()
	small := pebblestore.Options{CacheSize: 8 << 20, MemTableSize: 4 << 20}
	st, err := pebblestore.Open(filepath.Join(dir, "db"), small)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	proj, err := pebblestore.OpenProjections(filepath.Join(dir, "projections"), small, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = proj.Close() })
	master := make([]byte, 32)
	_, _ = rand.Read(master)
	env, err := envelope.New(master, st)
	if err != nil {
		tb.Fatal(err)
	}
	scratch, err := pebblestore.NewScratches(filepath.Join(dir, "scratch"), pebblestore.ScratchOptions{CacheSize: 4 << 20, MemTableSize: 4 << 20})
	if err != nil {
		tb.Fatal(err)
	}
	clk := clock.NewManual(useCaseStart)
	f := &useCases{clock: clk, log: &portLog{Store: st}, blobs: &portBlobs{BlobStore: st}, keys: env, ids: &seqULIDs{clock: clk}}
	f.caller = commands.Caller{Account: domain.NewAccountID(f.ids.NewULID())}
	eng := engine.New(engine.Ports{Log: f.log, ReadModels: proj, Blobs: f.blobs, Keys: env, Scratch: scratch,
		Files: backupfile.New(), Clock: clk, IDs: f.ids}, o)
	f.kms, f.restores, f.backups = eng.KMS, eng.Restores, eng.Backups
	f.checkpoints, f.rebases, f.schedule, f.files = eng.Checkpoints, eng.Checkpoints, eng.Schedule, eng.Files
	f.procs = eng.Projectors()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, p := range f.procs {
		wg.Go(func() {
			if err := p.Run(ctx); err != nil {
				tb.Errorf("projector: %v", err)
			}
		})
	}
	tb.Cleanup(func() { cancel(); wg.Wait() }) // before the stores close (cleanups run last first)
	return f
}

// settle waits until every read model has applied the whole log.
func (f *useCases) settle(tb testing.TB) {
	tb.Helper()
	ctx := context.Background()
	head := must(f.log.Head(ctx))(tb)
	for _, p := range f.procs {
		if err := p.WaitFor(ctx, head); err != nil {
			tb.Fatal(err)
		}
	}
}

// must(call())(tb) is call's value, or fails the test with call's error.
func must[T any](v T, err error) func(tb testing.TB) T {
	return func(tb testing.TB) T {
		tb.Helper()
		if err != nil {
			tb.Fatalf("unexpected error: %v", err)
		}
		return v
	}
}

// seqULIDs draws ULIDs in order: the clock's millisecond, then a counter.
// Deterministic for a test that draws in a deterministic order; safe for
// concurrent use.
type seqULIDs struct {
	clock commands.Clock
	n     atomic.Uint64
}

var _ commands.IDSource = (*seqULIDs)(nil)

func (s *seqULIDs) NewULID() ulid.ULID {
	var u ulid.ULID
	_ = u.SetTime(ulid.Timestamp(s.clock.Now()))
	n := s.n.Add(1)
	for i := 15; i >= 8; i-- {
		u[i], n = byte(n), n>>8
	}
	return u
}

// ---------------------------------------------------------------------------
// Givens.

// MustInstance creates a KMS instance of the caller's account in region.
func (f *useCases) MustInstance(tb testing.TB, c commands.Caller, in commands.CreateInstanceInput) *domain.Instance {
	tb.Helper()
	return must(f.kms.CreateInstance(context.Background(), c, in))(tb)
}

// MustKey creates a key in instance in.
func (f *useCases) MustKey(tb testing.TB, in domain.InstanceID) domain.KeyID {
	tb.Helper()
	return must(f.kms.CreateKey(context.Background(), f.caller, in, ""))(tb).ID
}

// MustRotateKey adds a version to key k.
func (f *useCases) MustRotateKey(tb testing.TB, k domain.KeyID) {
	tb.Helper()
	must(f.kms.RotateKey(context.Background(), f.caller, k, ""))(tb)
}

// MustDeleteKey deletes key k.
func (f *useCases) MustDeleteKey(tb testing.TB, k domain.KeyID) {
	tb.Helper()
	if err := f.kms.DeleteKey(context.Background(), f.caller, k, ""); err != nil {
		tb.Fatal(err)
	}
}

// MustSecret creates secret name in instance in under key k with value.
func (f *useCases) MustSecret(tb testing.TB, in domain.InstanceID, k domain.KeyID, name, value string) {
	tb.Helper()
	must(f.kms.CreateSecret(context.Background(), f.caller,
		commands.CreateSecretInput{Name: name, Instance: in, Key: k, Value: domain.Plaintext(value)}))(tb)
}

// MustProvisioned creates a provisioned backup instance of region (30
// viewable days, a term of a month), not enabled.
func (f *useCases) MustProvisioned(tb testing.TB, region string) *domain.Backup {
	tb.Helper()
	return must(f.backups.CreateBackupInstance(context.Background(), f.caller,
		commands.CreateBackupInput{Region: region, ViewableDays: 30, Term: "1mo"}))(tb)
}

// otherBackups is the backup lifecycle use cases as another process
// sharing the log, the stores and the read models has them: with locks of
// its own.
func (f *useCases) otherBackups() *commands.BackupInstances {
	b := f.backups
	return &commands.BackupInstances{BackupStreams: &commands.BackupStreams{BackupViews: b.BackupViews, Log: b.Log,
		StateApplied: b.StateApplied, DataApplied: b.DataApplied, IDs: b.IDs, Audit: b.Audit},
		Storage: b.Storage, Checkpoints: b.Checkpoints}
}

// MustEnabled is a provisioned backup instance of in's region, enabled on
// in (UTC), with term ending at expires, given by its events (created and
// enabled, in one append) and its generation's data key: no checkpoint is
// taken yet.
func (f *useCases) MustEnabled(tb testing.TB, in *domain.Instance, expires time.Time) domain.BackupID {
	tb.Helper()
	ctx := context.Background()
	id := domain.NewBackupID(f.ids.NewULID())
	if err := f.keys.CreateDataKey(ctx, domain.DataRef(id, 0)); err != nil {
		tb.Fatal(err)
	}
	f.MustAppend(tb, domain.BackupStream(id), in,
		&domain.BackupCreated{Backup: id, Kind: domain.BackupProvisioned, Region: in.Region, ViewableDays: 30, ExpiresAt: expires},
		&domain.BackupEnabled{KMSInstance: in.ID, Alias: "prod", TimeZone: "UTC"})
	return id
}

// MustBackedUp is MustEnabled (a term of a year) and its first
// checkpoint, the full taken at once as enabling takes it.
func (f *useCases) MustBackedUp(tb testing.TB, in *domain.Instance) domain.BackupID {
	tb.Helper()
	id := f.MustEnabled(tb, in, f.clock.Now().AddDate(1, 0, 0))
	f.MustCheckpoint(tb, id, domain.Due{At: f.clock.Now(), Full: true})
	return id
}

// MustCheckpoint takes the checkpoint due of backup id.
func (f *useCases) MustCheckpoint(tb testing.TB, id domain.BackupID, due domain.Due) *domain.BackupCheckpointed {
	tb.Helper()
	return must(f.checkpoints.TakeCheckpoint(context.Background(), id, due))(tb)
}

// cutPartsAt makes checkpoints cut slices and bases into parts of about
// n bytes (0: the engine's default): 1 puts each event, or each item, in
// a part of its own.
func (f *useCases) cutPartsAt(n int) {
	f.checkpoints.Storage.SlicePartBytes, f.checkpoints.Storage.BasePartBytes = n, n
}

// rebaseAfterEveryFull makes a base of each daily full due at once,
// whatever the engine's rebase policy would wait for.
func (f *useCases) rebaseAfterEveryFull() {
	f.checkpoints.Rebase = &domain.RebasePolicy{MinEvents: 1}
}

// MustRebase writes a base of backup id's last daily full now.
func (f *useCases) MustRebase(tb testing.TB, id domain.BackupID) {
	tb.Helper()
	f.rebaseAfterEveryFull()
	if did, err := f.rebases.RebaseBackup(context.Background(), id); err != nil || !did {
		tb.Fatalf("rebase %s: %v (stored a base: %v)", id, err, did)
	}
}

// MustAppend appends events of data to stream at its head (the revision
// of its last event), in one append, as of the clock's time, on behalf of
// the caller's account in in's region, and waits until the read models
// show them.
func (f *useCases) MustAppend(tb testing.TB, stream string, in *domain.Instance, data ...domain.EventData) {
	tb.Helper()
	expected := domain.ExpectNoStream
	if n := len(f.MustStream(tb, stream)); n > 0 {
		expected = domain.ExpectRevision(uint64(n - 1))
	}
	events := make([]domain.Event, len(data))
	for i, d := range data {
		events[i] = domain.Event{ID: domain.EventID(f.ids.NewULID()), Stream: stream,
			Type: d.EventType(), Schema: domain.SchemaVersion, OccurredAt: f.clock.Now(), Account: f.caller.Account,
			Region: in.Region, Instance: in.ID, Data: domain.EncodeData(d)}
	}
	if _, err := f.log.Store.Append(context.Background(), stream, expected, events); err != nil {
		tb.Fatal(err)
	}
	f.settle(tb)
}

// ---------------------------------------------------------------------------
// Reading what was written.

// MustStream reads a whole stream from the log.
func (f *useCases) MustStream(tb testing.TB, stream string) []domain.Event {
	tb.Helper()
	var out []domain.Event
	for {
		page := must(f.log.ReadStream(context.Background(), stream, uint64(len(out)), false, 1000))(tb)
		out = append(out, page...)
		if len(page) < 1000 {
			return out
		}
	}
}

// MustDecode decodes the data of each event.
func MustDecode(tb testing.TB, events []domain.Event) []domain.EventData {
	tb.Helper()
	out := make([]domain.EventData, len(events))
	for i, e := range events {
		out[i] = must(e.Decode())(tb)
	}
	return out
}

// MustCheckpoints are the checkpoints recorded in backup id's stream.
func (f *useCases) MustCheckpoints(tb testing.TB, id domain.BackupID) []*domain.BackupCheckpointed {
	tb.Helper()
	var out []*domain.BackupCheckpointed
	for _, d := range MustDecode(tb, f.MustStream(tb, domain.BackupStream(id))) {
		if c, ok := d.(*domain.BackupCheckpointed); ok {
			out = append(out, c)
		}
	}
	return out
}

// MustSliceEvents reads the events of checkpoint c's slice from the blobs
// of backup id's first generation, checking each part's digest.
func (f *useCases) MustSliceEvents(tb testing.TB, id domain.BackupID, c *domain.BackupCheckpointed) []domain.Event {
	tb.Helper()
	var out []domain.Event
	for _, p := range c.SliceParts() {
		blob := must(f.blobs.GetBlob(context.Background(), domain.DataRef(id, c.Generation), p.Name))(tb)
		if (p.Digest != [32]byte{}) && sha256.Sum256(blob) != p.Digest {
			tb.Fatalf("slice part %s does not match its recorded digest", p.Name)
		}
		out = append(out, must(domain.DecodeSliceAll(blob))(tb)...)
	}
	return out
}

// MustNamedBlobs are the blobs backup id's stream names: the parts of its
// checkpoints' slices and of its bases.
func (f *useCases) MustNamedBlobs(tb testing.TB, id domain.BackupID) map[string]bool {
	tb.Helper()
	named := map[string]bool{}
	for _, d := range MustDecode(tb, f.MustStream(tb, domain.BackupStream(id))) {
		switch d := d.(type) {
		case *domain.BackupCheckpointed:
			for _, p := range d.SliceParts() {
				named[p.Name] = true
			}
		case *domain.BackupBaseStored:
			for _, p := range d.Parts {
				named[p.Name] = true
			}
		}
	}
	return named
}

// assertKeptIfNamed fails the test for every blob of stored that is gone
// though named, or still stored though not named.
func (f *useCases) assertKeptIfNamed(tb testing.TB, stored []storedBlob, named map[string]bool) {
	tb.Helper()
	if len(stored) == 0 {
		tb.Fatal("no blob was stored: the test needs some")
	}
	for _, b := range stored {
		_, err := f.blobs.GetBlob(context.Background(), b.Ref, b.Name)
		switch {
		case named[b.Name] && err != nil:
			tb.Errorf("blob %s, named by a recorded event, is gone: %v", b.Name, err)
		case !named[b.Name] && !errors.Is(err, domain.ErrNotFound):
			tb.Errorf("blob %s, named by nothing, is still stored (%v)", b.Name, err)
		}
	}
}

// sinceMark is how far the use cases had written when a test marked it:
// what they write afterwards is the call's.
type sinceMark struct{ appends, blobs int }

func (f *useCases) mark() sinceMark {
	return sinceMark{appends: len(f.log.appendsTo("")), blobs: len(f.blobs.stored())}
}

// appendsSince are the appends to streams starting with prefix since m.
func (f *useCases) appendsSince(m sinceMark, prefix string) []appendCall {
	var out []appendCall
	for _, a := range f.log.appendsTo("")[m.appends:] {
		if strings.HasPrefix(a.Stream, prefix) {
			out = append(out, a)
		}
	}
	return out
}

// blobsSince are the blobs stored since m.
func (f *useCases) blobsSince(m sinceMark) []storedBlob { return f.blobs.stored()[m.blobs:] }

// ---------------------------------------------------------------------------
// The ports as the tests see them.

// portLog is the engine's event log (Pebble) as the use cases see it: it
// records every append, and fails those a test asks it to (fault).
type portLog struct {
	*pebblestore.Store
	mu      sync.Mutex
	appends []appendCall
	perStrm map[string]int
	fault   func(stream string, n int) (err error, written bool)
	// gate, while set, holds back the events that subscriptions read
	// (holdSubscribers) until it is closed.
	gate chan struct{}
}

// holdSubscribers makes every subscription (the read models' projectors)
// hold back the events it reads from now on, until release is called:
// the read models stop where they are.
func (l *portLog) holdSubscribers() (release func()) {
	g := make(chan struct{})
	l.mu.Lock()
	l.gate = g
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		if l.gate == g {
			l.gate = nil
		}
		l.mu.Unlock()
		close(g)
	}
}

func (l *portLog) Subscribe(ctx context.Context, after uint64) (commands.Subscription, error) {
	sub, err := l.Store.Subscribe(ctx, after)
	if err != nil {
		return nil, err
	}
	return &gatedSubscription{Subscription: sub, l: l}, nil
}

// gatedSubscription is a subscription of portLog: it holds back each event
// it reads while the log's gate is set.
type gatedSubscription struct {
	commands.Subscription
	l *portLog
}

func (s *gatedSubscription) Next(ctx context.Context) (domain.Event, error) {
	e, err := s.Subscription.Next(ctx)
	s.l.mu.Lock()
	g := s.l.gate
	s.l.mu.Unlock()
	if g != nil {
		select {
		case <-g:
		case <-ctx.Done():
			return domain.Event{}, ctx.Err()
		}
	}
	return e, err
}

// Buffered tells, as the subscription it wraps, how many events Next
// returns without reading the log (0 while the gate holds them back).
func (s *gatedSubscription) Buffered() int {
	b, ok := s.Subscription.(commands.BufferedSubscription)
	if !ok {
		return 0
	}
	s.l.mu.Lock()
	held := s.l.gate != nil
	s.l.mu.Unlock()
	if held {
		return 0
	}
	return b.Buffered()
}

// setFault makes fault, until the next setFault, be asked before each
// append with its stream and its number among the appends to that stream
// since (1 for the first). The error it returns, if any, is returned
// instead of appending when written is false, and after appending (an
// acknowledgement lost) when it is true. nil: no fault.
func (l *portLog) setFault(fault func(stream string, n int) (err error, written bool)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fault, l.perStrm = fault, nil
}

var _ commands.EventLog = (*portLog)(nil)

// appendCall is one append the use cases asked for.
type appendCall struct {
	Stream   string
	Expected string // domain.ExpectedRevision.String()
	Events   []domain.Event
	Written  bool // the events are in the log
}

func (l *portLog) Append(ctx context.Context, stream string, expected domain.ExpectedRevision, events []domain.Event) (commands.AppendResult, error) {
	l.mu.Lock()
	if l.perStrm == nil {
		l.perStrm = map[string]int{}
	}
	l.perStrm[stream]++
	n, fault := l.perStrm[stream], l.fault
	l.mu.Unlock()
	var ferr error
	var after bool
	if fault != nil {
		ferr, after = fault(stream, n)
	}
	var res commands.AppendResult
	var err error
	if ferr == nil || after {
		res, err = l.Store.Append(ctx, stream, expected, events)
	}
	l.mu.Lock()
	l.appends = append(l.appends, appendCall{Stream: stream, Expected: expected.String(), Events: events, Written: err == nil && (ferr == nil || after)})
	l.mu.Unlock()
	if err == nil && ferr != nil {
		err = ferr
	}
	return res, err
}

// AppendMulti asks fault about each part as Append does, and records each
// part as an append: a fault before writing refuses the whole call.
func (l *portLog) AppendMulti(ctx context.Context, parts []commands.StreamAppend) ([]commands.AppendResult, error) {
	l.mu.Lock()
	if l.perStrm == nil {
		l.perStrm = map[string]int{}
	}
	fault := l.fault
	ns := make([]int, len(parts))
	for i, p := range parts {
		l.perStrm[p.Stream]++
		ns[i] = l.perStrm[p.Stream]
	}
	l.mu.Unlock()
	var ferr error
	write := true
	for i, p := range parts {
		if fault == nil {
			break
		}
		if err, after := fault(p.Stream, ns[i]); err != nil && ferr == nil {
			ferr, write = err, after
		}
	}
	var res []commands.AppendResult
	var err error
	if write {
		res, err = l.Store.AppendMulti(ctx, parts)
	}
	l.mu.Lock()
	for _, p := range parts {
		l.appends = append(l.appends, appendCall{Stream: p.Stream, Expected: p.Expected.String(), Events: p.Events, Written: err == nil && write})
	}
	l.mu.Unlock()
	if err == nil && ferr != nil {
		err = ferr
	}
	return res, err
}

// appendsTo returns the appends asked for to streams starting with prefix,
// in order.
func (l *portLog) appendsTo(prefix string) []appendCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []appendCall
	for _, a := range l.appends {
		if strings.HasPrefix(a.Stream, prefix) {
			out = append(out, a)
		}
	}
	return out
}

// portBlobs is the engine's blob store (Pebble) as the use cases see it:
// it records every blob stored, and fails those a test asks it to.
type portBlobs struct {
	commands.BlobStore
	mu    sync.Mutex
	put   []storedBlob
	puts  int
	fault func(n int) error
}

// setFault makes fault, until the next setFault, be asked before each
// PutBlob with its number among the puts since (1 for the first): an error
// it returns is returned instead of storing. nil: no fault.
func (b *portBlobs) setFault(fault func(n int) error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fault, b.puts = fault, 0
}

// storedBlob is one blob a use case stored.
type storedBlob struct {
	Ref, Name string
	Data      []byte
}

func (b *portBlobs) PutBlob(ctx context.Context, ref, name string, data []byte) error {
	b.mu.Lock()
	b.puts++
	n, fault := b.puts, b.fault
	b.mu.Unlock()
	if fault != nil {
		if err := fault(n); err != nil {
			return err
		}
	}
	if err := b.BlobStore.PutBlob(ctx, ref, name, data); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.put = append(b.put, storedBlob{Ref: ref, Name: name, Data: append([]byte(nil), data...)})
	return nil
}

// stored returns the blobs stored so far.
func (b *portBlobs) stored() []storedBlob {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]storedBlob(nil), b.put...)
}

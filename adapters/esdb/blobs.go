package esdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/kmsbackup/kmsbackup/adapters/internal/blobformat"
	"github.com/kmsbackup/kmsbackup/adapters/internal/chunkread"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

var _ commands.BlobStore = (*Blobs)(nil)

const (
	opPutBlob      = "put blob"
	opGetBlob      = "get blob"
	opDestroyBlobs = "destroy blobs"
	opOpenBlobs    = "open blob store"
)

// Event types of the blob streams and of the index streams.
const (
	typeBlobHeader  = "BlobHeader"  // revision 0 of a blob stream
	typeBlobChunk   = "BlobChunk"   // revisions 1 to chunks
	typeBlobCommit  = "BlobCommit"  // revision chunks+1, when the blob took several appends
	typeBlobName    = "BlobName"    // an index entry: a blob name of the ref
	typeBlobsSealed = "BlobsSealed" // the index's last entry: the ref is being destroyed
)

// Blob limits.
const (
	// maxBlobChunkSize bounds the chunks PutBlob writes; Options.
	// MaxAppendSize may make them smaller. A header records the chunk size
	// of its blob, so readers never assume one.
	maxBlobChunkSize = 512 << 10
	// minBlobChunkSize is the smallest chunk size NewBlobs accepts.
	minBlobChunkSize = 4 << 10
	// blobEventSlack is what an append must keep free beside a chunk: the
	// event's type, the header, and blobAppendMargin.
	blobEventSlack = 1 << 10
	// blobAppendMargin is kept free in every append of a blob, below
	// Options.MaxAppendSize: the server counts an event's data, metadata
	// and twice its type's length (as appendSize does), older servers less,
	// and a blob right at the limit should not depend on the exact count.
	blobAppendMargin = 256
	// maxBlobSize bounds one blob: GetBlob returns it in one slice.
	maxBlobSize = commands.MaxBlobSize
	// maxBlobRefLen and maxBlobNameLen bound refs and names (in bytes), as
	// pebblestore does, and so the stream names.
	maxBlobRefLen  = commands.MaxBlobRefLen
	maxBlobNameLen = commands.MaxBlobNameLen
	// blobReadBytes is how many bytes of chunks one read asks for.
	blobReadBytes = 32 << 20
	// indexPage is how many index entries one read asks for.
	indexPage = 4096
	// destroyParallel bounds the tombstones DestroyBlobs has in flight.
	destroyParallel = 8
)

// Blobs keeps backup blobs (commands.BlobStore) in EventStoreDB, beside the
// log, so that every engine node sharing the log shares them.
//
// Streams. Blob n of ref r is the stream "blob-<r>-<n>" (both encoded by
// encodeStreamPart, whose output has no '-'): revision 0 is a header
// (blobformat.Header: format version, flags, length, chunk size, chunk
// count, SHA-256 of the whole blob; written in version 2, and read also in
// version 1, the same layout, as earlier releases wrote it), revisions 1
// to chunks the chunks in order (each of the header's
// chunk size, the last holding the rest; at most 512 KiB, less when
// Options.MaxAppendSize asks), and, for a blob written in several appends,
// a last commit event repeating the header. A blob whose header and chunks
// fit in one append (Options.MaxAppendSize, 1 MiB by default) is written
// atomically, its header flagged so; a larger one is written in several
// appends, each expecting the exact revision the previous one left, and is
// complete only once its commit event is written. A blob without its commit
// is an unfinished put: GetBlob reports it absent, and a PutBlob of the
// same bytes finishes it. The index stream "blobs-<r>" lists the names of
// r's blobs: PutBlob adds a name before it writes the blob, and DestroyBlobs
// seals the index (a last entry after which no name can be added), reads
// it, and tombstones every listed blob, then the index.
//
// Deletion. A tombstoned stream reads as deleted at once, on every node:
// GetBlob then reports the blob absent. The bytes stay in the server's files
// until a scavenge rewrites the chunks holding them (see KeyStore for what
// a scavenge does not reach). A tombstoned stream can never be written
// again. kmsbackup never uses a data ref again once its blobs are destroyed
// (there is one per backup generation; a reset or release moves to the next
// generation), but the port allows it: a ref used after DestroyBlobs goes
// to its next generation of streams, "blobs-<r>-1" and "blob-<r>-<n>-1",
// then "-2"... (see genSuffix). Each destroyed generation costs a read more
// on the ref's puts, and on reads of a blob the current generation lacks.
//
// Costs. The log's ReadAll and Head read $all, which holds the blobs'
// events too, and drop them on the client (the client has no server-side
// filter for reads): their cost grows with the blob bytes written since the
// log's last event. Subscriptions filter on the server (except with a
// stream prefix that also matches the stores' streams, such as "").
//
// Safe for concurrent use. Closing the log closes the blob store.
type Blobs struct {
	l         *Log
	chunkSize int // of the blobs this store writes
	budget    int // the bytes one append of a blob may take
}

// NewBlobs returns the blob store on l's server, through l's client.
// Errors: domain.ErrInvalidArgument when l's Options.MaxAppendSize leaves
// no room for a chunk of 4 KiB.
func NewBlobs(l *Log) (*Blobs, error) {
	cs, err := blobChunkSize(l.opts.MaxAppendSize)
	if err != nil {
		return nil, err
	}
	return &Blobs{l: l, chunkSize: cs, budget: appendBudget(l.opts.MaxAppendSize)}, nil
}

// Ping checks that the server answers (see Log.Ping), for readiness
// probes.
func (b *Blobs) Ping(ctx context.Context) error { return b.l.Ping(ctx) }

// PutBlob stores data as blob name of ref and returns once the server has
// acknowledged all of it (EventStoreDB acknowledges writes once they are
// durable on its log, and on a quorum of a cluster). It finds the ref's
// current generation (finishing on the way a DestroyBlobs that stopped
// half-way), adds name to that generation's index, then writes the blob's
// stream expecting it not to exist.
//
// Idempotent: when the blob holds the same bytes (same length and SHA-256),
// nothing is written; when an unfinished put of the same bytes left it
// incomplete, PutBlob finishes it. It compares digests and does not re-read
// the stored chunks (GetBlob verifies them).
//
// Errors: domain.ErrInvalidArgument for an empty ref or name, one too long
// (256 bytes for a ref, 1024 for a name), or data larger than 1 GiB;
// domain.ErrAlreadyExists when the blob holds other bytes, or an unfinished
// put of other bytes holds the name; domain.ErrCorrupt when the stored
// blob's header, or the ref's index, is unreadable; domain.ErrUnavailable
// when the server fails or the log is closed (the blob may then be stored,
// in part or whole, or not: retry with the same bytes); ctx.Err() when ctx
// ends first (likewise).
//
// Safe for concurrent use: of two concurrent puts of different bytes one
// succeeds and the other gets ErrAlreadyExists; concurrent puts of the same
// bytes all succeed. A put concurrent with DestroyBlobs of its ref lands
// before the destruction (and is destroyed) or after it, in the ref's next
// generation, where only a later DestroyBlobs removes it: callers stop
// writing a ref before destroying it.
func (b *Blobs) PutBlob(ctx context.Context, ref, name string, data []byte) error {
	if err := commands.CheckBlobName(opPutBlob, ref, name); err != nil {
		return err
	}
	item := blobItem(ref, name)
	if len(data) > maxBlobSize {
		return &domain.Error{Op: opPutBlob, Kind: domain.ErrInvalidArgument, Item: item,
			Msg: fmt.Sprintf("the blob has %d bytes, more than %d", len(data), maxBlobSize)}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	h := newBlobHeader(data, b.chunkSize, b.budget)
	for range maxAppendAttempts {
		gen, tail, err := b.writableGen(ctx, ref)
		if err != nil {
			return err
		}
		stream := blobStream(ref, name, gen)
		st, err := b.state(ctx, stream, item)
		if err != nil {
			return err
		}
		switch st.state {
		case streamDeleted:
			continue // the generation was destroyed meanwhile: find the next
		case streamLive:
			if st.h.Size != h.Size || st.h.Digest != h.Digest {
				msg := "the blob already holds other bytes"
				if !st.complete {
					msg = "an unfinished put of other bytes holds the name (a put in progress, or one that failed)"
				}
				return &domain.Error{Op: opPutBlob, Kind: domain.ErrAlreadyExists, Item: item, Msg: msg}
			}
			if st.complete {
				return nil
			}
			// An unfinished put of the same bytes: finish it, in the
			// stored header's chunking.
			err = b.write(ctx, stream, blobEvents(st.h, st.raw, data), st.next)
		default:
			// Listed in the index first, so that DestroyBlobs finds it.
			err = b.register(ctx, ref, name, gen, tail)
			if err == nil {
				err = b.write(ctx, stream, blobEvents(h, h.Encode(), data), 0)
			}
		}
		switch {
		case err == nil:
			return nil
		case isWrongExpectedVersion(err), isStreamDeleted(err):
			// Another put or a destruction wrote meanwhile (or a write the
			// client retried landed): look again.
			continue
		}
		return b.l.mapErr(ctx, opPutBlob, item, err)
	}
	return &domain.Error{Op: opPutBlob, Kind: domain.ErrUnavailable, Item: item,
		Msg: fmt.Sprintf("the blob's streams changed under %d attempts in a row", maxAppendAttempts), Hint: "retry"}
}

// write appends events[from:] to stream, event from at revision from, in
// as few appends as b.budget allows, each expecting the exact
// revision the previous one left. The error is unmapped.
func (b *Blobs) write(ctx context.Context, stream string, events []esdbclient.EventData, from uint64) error {
	if from > uint64(len(events)) {
		return domain.Corruption("esdb: %s: stream %q has more events than its header allows", opPutBlob, stream)
	}
	next := from
	for _, batch := range groupAppends(events[from:], b.budget) {
		var expected esdbclient.ExpectedRevision = esdbclient.NoStream{}
		if next > 0 {
			expected = esdbclient.Revision(next - 1)
		}
		if _, err := b.l.appendRaw(ctx, opPutBlob, stream, expected, batch); err != nil {
			return err
		}
		next += uint64(len(batch))
	}
	return nil
}

// storedBlob is what PutBlob needs of a blob's stream.
type storedBlob struct {
	state    streamState
	h        blobformat.Header
	raw      []byte // the header as stored
	next     uint64 // the revision after the stream's last event
	complete bool
}

// state reads the header and the last event of a blob's stream. Errors are
// mapped.
func (b *Blobs) state(ctx context.Context, stream, item string) (storedBlob, error) {
	corrupt := func(format string, args ...any) error {
		return domain.Corruption("esdb: %s %s: %s", opPutBlob, item, fmt.Sprintf(format, args...))
	}
	recs, state, err := b.l.readRaw(ctx, opPutBlob, stream, esdbclient.Revision(0), false, 1)
	if err != nil {
		return storedBlob{}, b.l.mapErr(ctx, opPutBlob, item, err)
	}
	if state != streamLive {
		return storedBlob{state: state}, nil
	}
	if len(recs) == 0 || recs[0].EventNumber != 0 || recs[0].EventType != typeBlobHeader {
		return storedBlob{}, corrupt("the stream does not start with a blob header")
	}
	h, err := decodeBlobHeader(recs[0].Data)
	if err != nil {
		return storedBlob{}, corrupt("%v", err)
	}
	st := storedBlob{state: streamLive, h: h, raw: recs[0].Data}
	last := uint64(h.Chunks) + 1 // the commit's revision
	if h.Atomic() {
		// Written in one append with its chunks: complete.
		st.next, st.complete = last, true
		return st, nil
	}
	recs, state, err = b.l.readRaw(ctx, opPutBlob, stream, esdbclient.End{}, true, 1)
	if err != nil {
		return storedBlob{}, b.l.mapErr(ctx, opPutBlob, item, err)
	}
	if state != streamLive {
		return storedBlob{state: state}, nil
	}
	if len(recs) == 0 {
		return storedBlob{}, corrupt("the stream has no readable last event")
	}
	r := recs[0]
	switch {
	case r.EventNumber > last, r.EventNumber == last && r.EventType != typeBlobCommit:
		return storedBlob{}, corrupt("event %d (%q) is beyond the blob's end", r.EventNumber, r.EventType)
	}
	st.next, st.complete = r.EventNumber+1, r.EventNumber == last
	return st, nil
}

// GetBlob returns blob name of ref, read page by page (at most about
// 32 MiB of chunks a call), after checking that its stream is a header,
// every chunk in order with its expected length, and (for a blob written in
// several appends) a commit equal to the header, and that the whole has the
// recorded length and SHA-256. It never returns bytes that fail these
// checks. It reads the blob's stream of the ref's first generation, and
// looks for the ref's current generation only when that stream is
// tombstoned or missing.
//
// Errors: domain.ErrInvalidArgument for a ref or name PutBlob would refuse;
// domain.ErrNotFound when the blob was never put, was destroyed, or is
// unfinished (a put in progress, or one that failed); domain.ErrCorrupt
// (domain.IsCorruption) when the stream is not such a sequence or the
// digest differs, or the ref's index is unreadable; domain.ErrUnavailable
// when the server fails or the log is closed; ctx.Err() when ctx ends
// first. Read-only, hence idempotent; safe for concurrent use.
func (b *Blobs) GetBlob(ctx context.Context, ref, name string) ([]byte, error) {
	if err := commands.CheckBlobName(opGetBlob, ref, name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	item := blobItem(ref, name)
	for gen := uint64(0); gen < maxGenerations; {
		data, state, err := b.readBlob(ctx, ref, name, gen)
		switch {
		case err != nil || state == streamLive:
			return data, err
		case state == streamDeleted:
			gen++ // destroyed with its generation
			continue
		}
		// Missing from generation gen: is gen the ref's current one? (A
		// generation is used only once all earlier ones are tombstoned, so
		// a live blob stream always belongs to the current generation, or
		// to one being destroyed.)
		cur, err := b.readableGen(ctx, ref, gen)
		if err != nil {
			return nil, err
		}
		if cur == gen {
			return nil, domain.NotFound(opGetBlob, "blob", item)
		}
		gen = cur
	}
	return nil, errTooManyGenerations(opGetBlob, item)
}

// readBlob reads and checks the blob's stream in generation gen. state
// says whether the stream exists (live), does not (absent) or was
// tombstoned (deleted); data is the blob, or err why not, for a live one.
// Errors are mapped.
func (b *Blobs) readBlob(ctx context.Context, ref, name string, gen uint64) ([]byte, streamState, error) {
	item := blobItem(ref, name)
	stream := blobStream(ref, name, gen)
	corrupt := func(err error) error {
		return domain.Corruption("esdb: %s %s: %v", opGetBlob, item, err)
	}
	var (
		a     *blobAssembler
		next  uint64
		count = uint64(blobReadBytes/maxBlobChunkSize) + 1
	)
	for {
		recs, state, err := b.l.readRaw(ctx, opGetBlob, stream, esdbclient.Revision(next), false, count)
		switch {
		case err != nil:
			return nil, streamLive, b.l.mapErr(ctx, opGetBlob, item, err)
		case state != streamLive:
			return nil, state, nil
		case a == nil && len(recs) == 0:
			return nil, streamLive, corrupt(errors.New("the stream has no readable header"))
		}
		for _, r := range recs {
			if a == nil {
				a, err = startBlob(r.EventNumber, r.EventType, r.Data)
			} else {
				err = a.add(r.EventNumber, r.EventType, r.Data)
			}
			if err != nil {
				return nil, streamLive, corrupt(err)
			}
		}
		next += uint64(len(recs))
		if uint64(len(recs)) < count {
			break // the end of the stream
		}
		if err := ctx.Err(); err != nil {
			return nil, streamLive, err
		}
		count = a.nextRead()
	}
	data, complete, err := a.finish()
	switch {
	case err != nil:
		return nil, streamLive, corrupt(err)
	case !complete:
		return nil, streamLive, &domain.Error{Op: opGetBlob, Kind: domain.ErrNotFound, Item: item,
			Msg: "blob unfinished (a put in progress, or one that failed)", Hint: "put it again"}
	}
	return data, streamLive, nil
}

// DestroyBlobs tombstones every blob of ref, then ref's index, in each of
// the ref's generations not yet tombstoned: from then on GetBlob reports
// them absent, on every node. In each generation it first seals the index
// (appends a last entry expecting its exact head, so no put can add a name
// after it), then reads the names, so a put running concurrently either is
// listed, and destroyed, or goes to the next generation. The bytes are
// physically removed by the server's next scavenge (see Blobs).
//
// Errors: domain.ErrInvalidArgument for a ref PutBlob would refuse;
// domain.ErrCorrupt when the index holds an entry this store did not write;
// domain.ErrUnavailable when the server fails or the log is closed;
// ctx.Err() when ctx ends first. After an error some blobs may be
// destroyed and others not; calling again finishes the work, and so does
// the ref's next put once the index is sealed.
// Idempotent: destroying a ref with no blob, or one destroyed before,
// succeeds. Safe for concurrent use.
func (b *Blobs) DestroyBlobs(ctx context.Context, ref string) error {
	if err := commands.CheckBlobRef(opDestroyBlobs, ref); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for gen := uint64(0); gen < maxGenerations; gen++ {
		absent, err := b.destroyGen(ctx, opDestroyBlobs, ref, gen)
		if err != nil || absent {
			return err
		}
	}
	return errTooManyGenerations(opDestroyBlobs, fmt.Sprintf("%q", ref))
}

// destroyGen destroys generation gen of ref: it seals its index (see
// sealIndex), tombstones every blob listed, then the index. absent is true
// when the generation has no index (nothing to destroy, and no later
// generation). Errors are mapped.
func (b *Blobs) destroyGen(ctx context.Context, op, ref string, gen uint64) (absent bool, err error) {
	names, state, err := b.sealIndex(ctx, op, ref, gen)
	if err != nil || state != streamLive {
		return state == streamAbsent, err
	}
	sem := make(chan struct{}, destroyParallel)
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = b.l.tombstone(ctx, op, blobStream(ref, name, gen))
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return false, err
	}
	for i, err := range errs {
		if err != nil {
			return false, b.l.mapErr(ctx, op, blobItem(ref, names[i]), err)
		}
	}
	return false, b.l.mapErr(ctx, op, fmt.Sprintf("%q", ref), b.l.tombstone(ctx, op, blobIndexStream(ref, gen)))
}

const opDeleteBlob = "delete blob"

// streamReadBytes bounds the chunk bytes one read of a streaming read asks
// for (OpenBlob): about what the reader holds at a time.
const streamReadBytes = 1 << 20

// OpenBlob returns a reader of blob name of ref that reads its stream page
// by page (about 1 MiB of chunks a read) as it is consumed, with the checks
// GetBlob makes, as it goes: a header, every chunk in order with its
// expected length, the commit of a blob written in several appends, and the
// recorded length and SHA-256; the last Read returns io.EOF only then. It
// finds the blob's stream as GetBlob does, in the ref's generation that
// holds it.
//
// Errors, of OpenBlob or of a Read: domain.ErrInvalidArgument for a ref or
// name PutBlob would refuse; domain.ErrNotFound when the blob was never put,
// was destroyed or deleted (also while read), or is unfinished (found at
// its end); domain.ErrCorrupt; domain.ErrUnavailable; ctx's error. Safe for
// concurrent use; the reader is not. Read-only.
func (b *Blobs) OpenBlob(ctx context.Context, ref, name string) (io.ReadCloser, error) {
	if err := commands.CheckBlobName(opGetBlob, ref, name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	item := blobItem(ref, name)
	gen, found, err := b.liveGen(ctx, opGetBlob, ref, name)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, domain.NotFound(opGetBlob, "blob", item)
	}
	r := &blobReader{b: b, ctx: ctx, item: item, stream: blobStream(ref, name, gen)}
	r.Reader = chunkread.Reader{Load: r.load, Closed: &domain.Error{Op: opGetBlob, Kind: domain.ErrFailedPrecondition, Item: item, Msg: "the blob reader is closed"}}
	recs, state, err := b.l.readRaw(ctx, opGetBlob, r.stream, esdbclient.Revision(0), false, 1)
	switch {
	case err != nil:
		return nil, b.l.mapErr(ctx, opGetBlob, item, err)
	case state != streamLive:
		return nil, domain.NotFound(opGetBlob, "blob", item)
	case len(recs) == 0:
		return nil, domain.Corruption("esdb: %s %s: the stream has no readable header", opGetBlob, item)
	}
	if r.a, err = startBlob(recs[0].EventNumber, recs[0].EventType, recs[0].Data); err != nil {
		return nil, domain.Corruption("esdb: %s %s: %v", opGetBlob, item, err)
	}
	r.a.out = nil // a streaming read takes the chunks page by page (load)
	r.next = 1
	return r, nil
}

// blobReader reads a blob's stream page by page (see OpenBlob).
type blobReader struct {
	b      *Blobs
	ctx    context.Context
	item   string
	stream string
	a      *blobAssembler
	next   uint64 // the revision to read from next
	ended  bool   // the stream's end was read
	chunkread.Reader
}

// load reads the next page of the stream, or ends the blob.
func (r *blobReader) load(buf []byte) ([]byte, error) {
	corrupt := func(err error) error { return domain.Corruption("esdb: %s %s: %v", opGetBlob, r.item, err) }
	if r.ended {
		_, complete, err := r.a.finish()
		switch {
		case err != nil:
			return nil, corrupt(err)
		case !complete:
			return nil, &domain.Error{Op: opGetBlob, Kind: domain.ErrNotFound, Item: r.item,
				Msg: "blob unfinished (a put in progress, or one that failed)", Hint: "put it again"}
		}
		return nil, io.EOF
	}
	if err := r.ctx.Err(); err != nil {
		return nil, err
	}
	count := r.a.readUpTo(streamReadBytes)
	recs, state, err := r.b.l.readRaw(r.ctx, opGetBlob, r.stream, esdbclient.Revision(r.next), false, count)
	switch {
	case err != nil:
		return nil, r.b.l.mapErr(r.ctx, opGetBlob, r.item, err)
	case state != streamLive:
		return nil, domain.NotFound(opGetBlob, "blob", r.item) // deleted while read
	}
	r.a.out = buf
	for _, rec := range recs {
		if err := r.a.add(rec.EventNumber, rec.EventType, rec.Data); err != nil {
			return nil, corrupt(err)
		}
	}
	r.next += uint64(len(recs))
	r.ended = uint64(len(recs)) < count
	return r.a.out, nil
}

// DeleteBlob tombstones the stream of blob name of ref in the generation
// that holds it: from then on GetBlob reports it absent, on every node
// (the name stays in the ref's index, and DestroyBlobs tombstones it again
// at no cost). A tombstoned stream can never be written again: a name
// deleted is never put again (kmsbackup's part names are unique).
//
// Errors: domain.ErrInvalidArgument for a ref or name PutBlob would
// refuse; domain.ErrUnavailable when the server fails or the log is
// closed; ctx's error. Idempotent; safe for concurrent use.
func (b *Blobs) DeleteBlob(ctx context.Context, ref, name string) error {
	if err := commands.CheckBlobName(opDeleteBlob, ref, name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	gen, found, err := b.liveGen(ctx, opDeleteBlob, ref, name)
	if err != nil || !found {
		return err
	}
	return b.l.mapErr(ctx, opDeleteBlob, blobItem(ref, name), b.l.tombstone(ctx, opDeleteBlob, blobStream(ref, name, gen)))
}

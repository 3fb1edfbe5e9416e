package natsjs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	jsapi "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/kmsbackup/kmsbackup/adapters/internal/chunkread"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

var _ commands.BlobStore = (*Blobs)(nil)

// DefaultBlobBucket is the default of BlobsOptions.Bucket.
const DefaultBlobBucket = "KMSBACKUP_BLOBS"

const (
	// blobChunkSize is the size of the chunks PutBlob writes (the object
	// store's default), well within any server's max_payload. The object's
	// meta records it; GetBlob reads chunks of any size.
	blobChunkSize = 128 << 10
	// chunksInFlight bounds the chunks a put has published and not yet seen
	// acknowledged (4 MiB).
	chunksInFlight = 32
	// maxBlobSize bounds one blob, as in pebblestore: it is read back into
	// one slice.
	maxBlobSize = commands.MaxBlobSize
	// maxBlobRefLen and maxBlobNameLen bound refs and names in bytes, as in
	// pebblestore.
	maxBlobRefLen  = commands.MaxBlobRefLen
	maxBlobNameLen = commands.MaxBlobNameLen
	// maxMetaSubjectLen bounds the subject of an object's meta, so that a
	// publish stays within the server's default max_control_line (4096):
	// only names with many bytes to escape reach it.
	maxMetaSubjectLen = 3000
	// metaAttempts bounds how often a put or destroy re-reads a meta that
	// another writer changed under it.
	metaAttempts = 5
	// digestPrefix starts an object store digest.
	digestPrefix = "SHA-256="
	// nameEscape starts an escaped byte in an object name.
	nameEscape = '%'
)

const (
	opPutBlob     = "put blob"
	opGetBlob     = "get blob"
	opDestroyBlob = "destroy blobs"
)

// BlobsOptions configures OpenBlobs. The zero value uses the defaults.
type BlobsOptions struct {
	// Bucket is the object store bucket (its stream is OBJ_<Bucket>); empty
	// means DefaultBlobBucket. Letters, digits, '-' and '_' only.
	Bucket string
	// Replicas is the bucket's replication factor (1 to 5); 0 means 1.
	// With 1, acknowledged blobs are as durable as the server's
	// sync_interval makes them (set "always" to fsync before
	// acknowledging).
	Replicas int
}

func (o BlobsOptions) withDefaults() BlobsOptions {
	o.Bucket, o.Replicas = bucketDefaults(o.Bucket, DefaultBlobBucket, o.Replicas)
	return o
}

// Validate reports every problem of the options (after defaults), joined.
// Each wraps domain.ErrInvalidArgument.
func (o BlobsOptions) Validate() error {
	o = o.withDefaults()
	return validateBucket("jetstream blob store options", o.Bucket, o.Replicas)
}

// Blobs is the blob store (commands.BlobStore) on one JetStream object
// store bucket, shared by every node. Blob (ref, name) is the object
// named by the escaped ref, '/', and the escaped name (see the package
// documentation); its bytes are written and read in the object store's own
// format, so NATS tools and clients can list and read them, but its meta
// is published conditionally (see PutBlob). All its methods are safe for
// concurrent use, from any number of processes.
type Blobs struct {
	c          *Conn
	stream     jsapi.Stream
	bucket     string
	metaPrefix string // $O.<bucket>.M.
	chunkPfx   string // $O.<bucket>.C.
	r          reader // reads the bucket's stream
}

// OpenBlobs creates or updates the blob bucket on c (idempotent, so every
// node may call it) and returns the store, which uses c until c is closed.
//
// Errors: domain.ErrInvalidArgument for bad options; domain.ErrUnavailable
// when the server cannot be reached or refuses the bucket;
// domain.ErrFailedPrecondition when the bucket's stream denies purges or
// direct gets; ctx.Err().
func OpenBlobs(ctx context.Context, c *Conn, opts BlobsOptions) (*Blobs, error) {
	const op = "open blob store"
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	if err := c.enter(op); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	stream := "OBJ_" + opts.Bucket
	var st jsapi.Stream
	err := created(ctx, func(cctx context.Context) error {
		if _, err := c.js.CreateOrUpdateObjectStore(cctx, jsapi.ObjectStoreConfig{
			Bucket:      opts.Bucket,
			Description: "kmsbackup backup blobs",
			Storage:     jsapi.FileStorage,
			Replicas:    opts.Replicas,
		}); err != nil {
			return err
		}
		var err error
		if st, err = c.js.Stream(cctx, stream); err != nil {
			return err
		}
		return waitLeader(cctx, st)
	})
	if err != nil {
		return nil, c.callErr(ctx, op+" "+opts.Bucket, err)
	}
	if got := st.CachedInfo().Config; got.DenyPurge || !got.AllowDirect || !got.AllowRollup {
		return nil, &domain.Error{Op: op, Kind: domain.ErrFailedPrecondition, Item: opts.Bucket,
			Msg: "the blob bucket's stream must allow purges, rollups and direct gets"}
	}
	return &Blobs{
		c: c, stream: st, bucket: opts.Bucket,
		metaPrefix: "$O." + opts.Bucket + ".M.",
		chunkPfx:   "$O." + opts.Bucket + ".C.",
		r:          newReader(c.nc, stream, st.CachedInfo().Config.Replicas),
	}, nil
}

// Ping checks that the server answers and the blob bucket is there, for a
// readiness probe. Errors: domain.ErrUnavailable; ctx.Err().
func (b *Blobs) Ping(ctx context.Context) error {
	if err := b.c.enter("ping blob store"); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if _, err := b.stream.Info(cctx); err != nil {
		return b.c.callErr(ctx, "ping blob store", err)
	}
	return nil
}

// objectName is the object that holds blob (ref, name):
// esc(ref) + "/" + esc(name), where esc writes '%', '/', control bytes and
// bytes that are not UTF-8 as '%' and two upper-case hex digits. The first
// '/' ends the ref, so the names are distinct for distinct blobs, and the
// objects of ref are exactly those whose names start with esc(ref) + "/":
// "bkp_X/1" is "bkp_X%2F1/...", which "bkp_X/10" ("bkp_X%2F10/...") does
// not extend.
func objectName(ref, name string) string {
	return refPrefix(ref) + escapeName(name)
}

// refPrefix is the prefix of the object names of ref's blobs.
func refPrefix(ref string) string { return escapeName(ref) + "/" }

func escapeName(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || r < 0x20 || r == 0x7f || r == nameEscape || r == '/' {
			c := s[i]
			b.WriteByte(nameEscape)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
			i++
			continue
		}
		b.WriteString(s[i : i+size])
		i += size
	}
	return b.String()
}

// metaToken is the subject token of an object's meta, as the object store
// names it: the object name in URL-safe base64 with padding.
func metaToken(object string) string {
	return base64.URLEncoding.EncodeToString([]byte(object))
}

// metaSubject validates a ref and a name (commands.CheckBlobName) and
// returns the subject of the blob's meta.
func (b *Blobs) metaSubject(op, ref, name string) (string, error) {
	if err := commands.CheckBlobName(op, ref, name); err != nil {
		return "", err
	}
	subj := b.metaPrefix + metaToken(objectName(ref, name))
	if len(subj) > maxMetaSubjectLen {
		return "", domain.Invalid(op, "the blob %s is too long once encoded (%d bytes of subject, at most %d)", blobItem(ref, name), len(subj), maxMetaSubjectLen)
	}
	return subj, nil
}

// blobItem names a blob in errors: ref and name, never data.
func blobItem(ref, name string) string { return fmt.Sprintf("%q/%q", ref, name) }

// validNUID reports whether id can be the object's chunk subject token: a
// tampered meta must not turn a purge of its chunks into a wildcard.
func validNUID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !tokenSafe(id[i]) {
			return false
		}
	}
	return true
}

// objectDigest is the object store digest of data.
func objectDigest(sum [sha256.Size]byte) string {
	return digestPrefix + base64.URLEncoding.EncodeToString(sum[:])
}

// decodeDigest returns the SHA-256 an object store digest holds.
func decodeDigest(d string) ([]byte, bool) {
	rest, ok := strings.CutPrefix(d, digestPrefix)
	if !ok {
		return nil, false
	}
	sum, err := base64.URLEncoding.DecodeString(rest)
	if err != nil {
		// Other clients may leave the padding out.
		if sum, err = base64.RawURLEncoding.DecodeString(rest); err != nil {
			return nil, false
		}
	}
	return sum, len(sum) == sha256.Size
}

// meta is an object's meta message.
type meta struct {
	seq  uint64
	info jsapi.ObjectInfo
	bad  error // why info does not decode, if it does not
}

// readMeta returns the newest meta message of subj; found is false when
// there is none.
func (b *Blobs) readMeta(ctx context.Context, op, subj string) (meta, bool, error) {
	m, found, err := b.r.one(ctx, directRequest{LastFor: subj})
	if err != nil {
		return meta{}, false, b.c.callErr(ctx, op, err)
	}
	if !found {
		return meta{}, false, nil
	}
	out := meta{seq: m.seq}
	if err := json.Unmarshal(m.data, &out.info); err != nil {
		out.bad = fmt.Errorf("unreadable object meta: %v", err)
	}
	return out, true, nil
}

// publishMeta publishes info as the meta of its object, replacing the
// subject's older messages (rollup), on condition that the subject's last
// message is expect (0: that it has none). It returns the sequence of the
// new message. A refused condition is a *jsapi.APIError with code 10071 (or
// 10164 for a write in flight on a replicated stream).
func (b *Blobs) publishMeta(ctx context.Context, subj string, info jsapi.ObjectInfo, expect uint64) (uint64, error) {
	info.ModTime = time.Time{} // the server's timestamp is the modification time
	data, err := json.Marshal(info)
	if err != nil {
		return 0, err
	}
	m := nats.NewMsg(subj)
	m.Header.Set(jsapi.MsgRollup, jsapi.MsgRollupSubject)
	m.Data = data
	cctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	ack, err := b.c.js.PublishMsg(cctx, m, jsapi.WithExpectLastSequencePerSubject(expect))
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

// conflict reports whether err is a refused publish condition, and whether
// it is a transient one worth a pause.
func conflict(err error) (refused, transient bool) {
	var apiErr *jsapi.APIError
	if !errors.As(err, &apiErr) {
		return false, false
	}
	switch apiErr.ErrorCode {
	case codeWrongLastSeq:
		return true, false
	case codeWrongLastSeqConstant:
		return true, true
	}
	return false, false
}

// PutBlob stores data as blob name of ref and returns once the server has
// acknowledged every chunk and then the object's meta (with one replica,
// as durable as the server's sync_interval makes it). data is not retained.
//
// The chunks go to a subject of their own (a fresh NUID); the meta, which
// makes the blob visible, is published with the condition that the blob's
// meta subject has not changed since it was read (no meta, or a deleted
// one), so that of two puts of one blob, from this process or another,
// exactly one publishes: the other reads the winner's meta, and succeeds if
// it names the same bytes (same length and SHA-256) or fails with
// domain.ErrAlreadyExists. A put that does not publish its meta purges its
// chunks, unless it cannot tell whether its meta landed.
//
// Idempotent: when the blob already holds the same bytes (same length and
// SHA-256) nothing is written; the stored chunks are not re-read (GetBlob
// verifies them).
//
// Errors: domain.ErrInvalidArgument for an empty ref or name, one that
// contains a NUL byte or is too long (256 bytes for a ref, 1024 for a
// name, and a meta subject of at most 3000 bytes once escaped and
// base64-encoded), or data larger than 1 GiB; domain.ErrAlreadyExists when
// the blob holds other bytes; domain.ErrCorrupt when its stored meta is
// unreadable; domain.ErrUnavailable when the connection is closed or a
// write fails (the blob may then be stored or not: retry with the same
// bytes); ctx.Err() when ctx has ended. A put concurrent with DestroyBlobs
// of its ref may land before the destruction or after it.
func (b *Blobs) PutBlob(ctx context.Context, ref, name string, data []byte) error {
	metaSubj, err := b.metaSubject(opPutBlob, ref, name)
	if err != nil {
		return err
	}
	if len(data) > maxBlobSize {
		return &domain.Error{Op: opPutBlob, Kind: domain.ErrInvalidArgument, Item: blobItem(ref, name),
			Msg: fmt.Sprintf("the blob has %d bytes, more than %d", len(data), maxBlobSize)}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := b.c.enter(opPutBlob); err != nil {
		return err
	}
	op := opPutBlob + " " + blobItem(ref, name)
	sum := sha256.Sum256(data)
	digest := objectDigest(sum)

	var id string // the NUID of the chunks written, once written
	published := false
	defer func() {
		if id != "" && !published {
			b.dropChunks(metaSubj, id)
		}
	}()
	for attempt := 1; ; attempt++ {
		cur, found, err := b.readMeta(ctx, op, metaSubj)
		if err != nil {
			return err
		}
		var expect uint64
		if found {
			if cur.bad != nil {
				return domain.Corruption("jetstream: %s: %v", op, cur.bad)
			}
			if !cur.info.Deleted {
				stored, ok := decodeDigest(cur.info.Digest)
				if ok && cur.info.Size == uint64(len(data)) && bytes.Equal(stored, sum[:]) {
					return nil
				}
				return &domain.Error{Op: opPutBlob, Kind: domain.ErrAlreadyExists, Item: blobItem(ref, name),
					Msg: "the blob already holds other bytes"}
			}
			expect = cur.seq // a deleted object's marker
		}
		if id == "" {
			id = nuid.Next()
			if err := b.writeChunks(ctx, b.chunkPfx+id, data); err != nil {
				return b.c.callErr(ctx, op, err)
			}
		}
		info := jsapi.ObjectInfo{
			ObjectMeta: jsapi.ObjectMeta{Name: objectName(ref, name), Opts: &jsapi.ObjectMetaOptions{ChunkSize: blobChunkSize}},
			Bucket:     b.bucket,
			NUID:       id,
			Size:       uint64(len(data)),
			Chunks:     uint32((len(data) + blobChunkSize - 1) / blobChunkSize),
			Digest:     digest,
		}
		_, err = b.publishMeta(ctx, metaSubj, info, expect)
		if err == nil {
			published = true
			return nil
		}
		refused, transient := conflict(err)
		if !refused || attempt == metaAttempts {
			return b.c.callErr(ctx, op, err)
		}
		if transient {
			if err := pause(ctx, attempt); err != nil {
				return err
			}
		}
		// Another writer changed the meta: read it again.
	}
}

// pause waits a little longer at each attempt, or until ctx ends.
func pause(ctx context.Context, attempt int) error {
	t := time.NewTimer(time.Duration(attempt) * 10 * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writeChunks publishes data in chunks of blobChunkSize on subj, with at
// most chunksInFlight unacknowledged, and returns once the server has
// acknowledged each of them.
func (b *Blobs) writeChunks(ctx context.Context, subj string, data []byte) error {
	n := (len(data) + blobChunkSize - 1) / blobChunkSize
	if n == 0 {
		return nil
	}
	nc := b.c.nc
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	sent, acked := 0, 0
	for acked < n {
		for sent < n && sent-acked < chunksInFlight {
			end := min((sent+1)*blobChunkSize, len(data))
			m := &nats.Msg{Subject: subj, Reply: inbox, Data: data[sent*blobChunkSize : end]}
			if sent == 0 {
				// The subject is a fresh NUID's: nothing may be on it yet.
				// (This also makes a put's first write on a replicated
				// stream carry an expected sequence, as its meta does:
				// nats-server 2.15 sets up its tracking of those writes
				// without a lock the first time a leader sees one, which
				// the race detector reports when writes without one are
				// still being applied; see cluster_test.go.)
				m.Header = nats.Header{hdrExpectSubj: []string{"0"}}
			}
			// PublishMsg copies the data into the connection's buffer.
			if err := nc.PublishMsg(m); err != nil {
				return err
			}
			sent++
		}
		if err := b.waitAck(ctx, sub); err != nil {
			return fmt.Errorf("chunk %d of %d: %w", acked, n, err)
		}
		acked++
	}
	return nil
}

// waitAck waits for one publish acknowledgement on sub.
func (b *Blobs) waitAck(ctx context.Context, sub *nats.Subscription) error {
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	m, err := sub.NextMsgWithContext(rctx)
	if err != nil {
		return err
	}
	if st := m.Header.Get("Status"); st != "" {
		if st == "503" {
			return nats.ErrNoResponders
		}
		return fmt.Errorf("publish answered status %s %s", st, m.Header.Get("Description"))
	}
	var ack pubAck
	if err := json.Unmarshal(m.Data, &ack); err != nil {
		return fmt.Errorf("unreadable publish acknowledgement: %w", err)
	}
	if ack.Error != nil {
		return ack.Error
	}
	if ack.Stream != b.stream.CachedInfo().Config.Name {
		return fmt.Errorf("chunk stored in stream %q, not the bucket's", ack.Stream)
	}
	return nil
}

// dropChunks purges the chunks with NUID id of a put that did not publish
// its meta, unless the meta names them after all (a publish whose
// acknowledgement was lost) or cannot be read (the chunks then stay: an
// orphan costs space, a purged blob would be corrupt).
func (b *Blobs) dropChunks(metaSubj, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	cur, found, err := b.readMeta(ctx, opPutBlob, metaSubj)
	if err != nil || (found && cur.bad == nil && cur.info.NUID == id) {
		return
	}
	_ = b.stream.Purge(ctx, jsapi.WithPurgeSubject(b.chunkPfx+id))
}

// GetBlob returns a copy of blob name of ref, after checking that its
// chunks add up to the length its meta records and hash to its SHA-256
// digest. It never returns bytes that fail these checks. It reads the meta,
// then the chunks in batched direct gets (no consumer), 8 MiB per request.
//
// Errors: domain.ErrInvalidArgument for a ref or name PutBlob would refuse;
// domain.ErrNotFound when ref holds no blob of that name (or it was
// destroyed while being read); domain.ErrCorrupt (domain.IsCorruption) when
// the meta is unreadable or inconsistent, a chunk is missing, the chunks
// hold more or fewer bytes than recorded, or the digest differs;
// domain.ErrUnavailable when the connection is closed or the server cannot
// answer; ctx.Err() when ctx ends first. Safe for concurrent use;
// read-only, hence idempotent.
func (b *Blobs) GetBlob(ctx context.Context, ref, name string) ([]byte, error) {
	metaSubj, err := b.metaSubject(opGetBlob, ref, name)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := b.c.enter(opGetBlob); err != nil {
		return nil, err
	}
	item := blobItem(ref, name)
	op := opGetBlob + " " + item
	corrupt := func(format string, args ...any) error {
		return domain.Corruption("jetstream: %s: %s", op, fmt.Sprintf(format, args...))
	}
	for attempt := 1; ; attempt++ {
		cur, found, err := b.readMeta(ctx, op, metaSubj)
		if err != nil {
			return nil, err
		}
		if !found || (cur.bad == nil && cur.info.Deleted) {
			return nil, domain.NotFound(opGetBlob, "blob", item)
		}
		if cur.bad != nil {
			return nil, corrupt("%v", cur.bad)
		}
		info := cur.info
		want, ok := decodeDigest(info.Digest)
		switch {
		case !ok:
			return nil, corrupt("unreadable digest %q", info.Digest)
		case info.Size > maxBlobSize:
			return nil, corrupt("the meta records %d bytes, more than %d", info.Size, maxBlobSize)
		case info.Opts != nil && info.Opts.Link != nil:
			return nil, corrupt("the object is a link, not a blob")
		case !validNUID(info.NUID):
			return nil, corrupt("invalid chunk NUID %q", info.NUID)
		}
		data, missing, err := b.readChunks(ctx, op, info)
		if err != nil {
			return nil, err
		}
		if missing != "" {
			// The chunks may have gone with the blob since the meta was
			// read (DestroyBlobs marks the meta deleted first).
			again, found, err := b.readMeta(ctx, op, metaSubj)
			switch {
			case err != nil:
				return nil, err
			case !found || (again.bad == nil && again.info.Deleted):
				return nil, domain.NotFound(opGetBlob, "blob", item)
			case again.seq != cur.seq && attempt < metaAttempts:
				continue
			}
			return nil, corrupt("%s", missing)
		}
		if got := sha256.Sum256(data); !bytes.Equal(got[:], want) {
			return nil, corrupt("SHA-256 mismatch")
		}
		return data, nil
	}
}

// chunks reads a batch of chunks from req.Seq on req.NextFor. The replica
// that answers may be behind the leader the meta was read from (see
// reader): when it has none, the next chunk is asked of the leader.
func (b *Blobs) chunks(ctx context.Context, req directRequest) ([]stored, error) {
	msgs, _, err := b.r.batch(ctx, req)
	if err != nil || len(msgs) > 0 || !b.r.replicated() {
		return msgs, err
	}
	m, found, err := b.r.one(ctx, directRequest{Seq: req.Seq, NextFor: req.NextFor})
	if err != nil || !found {
		return nil, err
	}
	return []stored{m}, nil
}

// readChunks reads the chunks of the object info describes. missing says
// what is missing when the chunks hold less than the recorded size.
func (b *Blobs) readChunks(ctx context.Context, op string, info jsapi.ObjectInfo) (data []byte, missing string, err error) {
	// A tampered meta could claim up to maxBlobSize: allocate at most
	// 64 MiB before the chunks confirm it.
	out := make([]byte, 0, min(info.Size, 64<<20))
	subj := b.chunkPfx + info.NUID
	var chunks uint32
	for seq := uint64(1); uint64(len(out)) < info.Size; {
		if err := ctx.Err(); err != nil {
			return nil, "", err
		}
		msgs, err := b.chunks(ctx, directRequest{Seq: seq, NextFor: subj, Batch: readBatch, MaxBytes: readMaxBytes})
		if err != nil {
			return nil, "", b.c.callErr(ctx, op, err)
		}
		if len(msgs) == 0 {
			return nil, fmt.Sprintf("chunks missing after chunk %d (%d of %d bytes)", chunks, len(out), info.Size), nil
		}
		for _, m := range msgs {
			if uint64(len(out))+uint64(len(m.data)) > info.Size {
				return nil, "", domain.Corruption("jetstream: %s: the chunks hold more than the %d bytes recorded", op, info.Size)
			}
			out = append(out, m.data...)
			chunks++
			seq = m.seq + 1
		}
	}
	if chunks != info.Chunks {
		return nil, "", domain.Corruption("jetstream: %s: %d chunks, the meta records %d", op, chunks, info.Chunks)
	}
	return out, "", nil
}

// DestroyBlobs deletes every blob of ref: it lists the bucket's objects
// (one stream-info request with a subject filter; its cost grows with the
// number of objects in the bucket, not of ref), and for each object of ref
// marks its meta deleted (readers then get domain.ErrNotFound), purges its
// chunks, then purges its meta subject, which leaves no message of the
// object. A crash part way leaves a marker that the next call finds, so
// calling again finishes the job. Only ref's objects are touched: other
// refs, including those whose text extends ref, keep theirs.
//
// Purged messages are dropped from the stream at once but their bytes stay
// in the server's files until it compacts or removes the blocks that hold
// them; they are ciphertext under ref's data key, whose erasure (KeyStore)
// is what shreds them. Chunks of a put that crashed before publishing its
// meta belong to no object and are not found.
//
// Errors: domain.ErrInvalidArgument for a ref PutBlob would refuse;
// domain.ErrUnavailable when the connection is closed or a request fails
// (call again); ctx.Err() when ctx has ended. Safe for concurrent use; a
// PutBlob of ref running at the same time may land before or after the
// destruction, so callers stop writing a ref before destroying it.
// Idempotent: destroying a ref with no blob succeeds.
func (b *Blobs) DestroyBlobs(ctx context.Context, ref string) error {
	if err := commands.CheckBlobRef(opDestroyBlob, ref); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := b.c.enter(opDestroyBlob); err != nil {
		return err
	}
	op := fmt.Sprintf("%s %q", opDestroyBlob, ref)
	subjects, err := b.refMetaSubjects(ctx, op, ref)
	if err != nil {
		return err
	}
	for _, subj := range subjects {
		if err := b.destroyObject(ctx, op, subj); err != nil {
			return err
		}
	}
	return nil
}

// refMetaSubjects lists the meta subjects of ref's objects, sorted.
func (b *Blobs) refMetaSubjects(ctx context.Context, op, ref string) ([]string, error) {
	cctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	si, err := b.stream.Info(cctx, jsapi.WithSubjectFilter(b.metaPrefix+"*"))
	if err != nil {
		return nil, b.c.callErr(ctx, op, err)
	}
	prefix := refPrefix(ref)
	var out []string
	for subj := range si.State.Subjects {
		name, err := base64.URLEncoding.DecodeString(strings.TrimPrefix(subj, b.metaPrefix))
		if err == nil && strings.HasPrefix(string(name), prefix) {
			out = append(out, subj)
		}
	}
	slices.Sort(out)
	return out, nil
}

// destroyObject removes the object whose meta is on subj: marks it
// deleted, purges its chunks, then purges its meta up to the marker.
func (b *Blobs) destroyObject(ctx context.Context, op, subj string) error {
	for attempt := 1; ; attempt++ {
		cur, found, err := b.readMeta(ctx, op, subj)
		if err != nil || !found {
			return err
		}
		if cur.bad == nil && !cur.info.Deleted {
			marker := cur.info
			marker.Deleted = true
			marker.Size, marker.Chunks, marker.Digest = 0, 0, ""
			seq, err := b.publishMeta(ctx, subj, marker, cur.seq)
			if err != nil {
				refused, transient := conflict(err)
				if !refused || attempt == metaAttempts {
					return b.c.callErr(ctx, op, err)
				}
				if transient {
					if err := pause(ctx, attempt); err != nil {
						return err
					}
				}
				continue // a put replaced the meta: read it again
			}
			cur.seq = seq
		}
		return b.purgeObject(ctx, op, subj, cur)
	}
}

// purgeObject purges the chunks of the object whose meta cur is on subj,
// then its meta subject up to cur.
func (b *Blobs) purgeObject(ctx context.Context, op, subj string, cur meta) error {
	cctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if cur.bad == nil && validNUID(cur.info.NUID) {
		if err := b.stream.Purge(cctx, jsapi.WithPurgeSubject(b.chunkPfx+cur.info.NUID)); err != nil {
			return b.c.callErr(ctx, op, err)
		}
	}
	// Up to cur only: a put that lands after it stays whole.
	if err := b.stream.Purge(cctx, jsapi.WithPurgeSubject(subj), jsapi.WithPurgeSequence(cur.seq+1)); err != nil {
		return b.c.callErr(ctx, op, err)
	}
	return nil
}

const opDeleteBlob = "delete blob"

// streamReadBytes bounds the chunk bytes one direct-get of a streaming
// read asks for (OpenBlob): about what the reader holds at a time.
const streamReadBytes = 1 << 20

// OpenBlob returns a reader of blob name of ref that reads its chunks in
// batched direct gets of about 1 MiB as it is consumed, and checks them as
// they go, as GetBlob does: the chunks must add up to the length the meta
// records, in the recorded count, and hash to its SHA-256; the last Read
// returns io.EOF only then, domain.ErrCorrupt otherwise. Chunks that are
// gone (the blob was destroyed or deleted while read) are
// domain.ErrNotFound when the meta is gone or marked deleted too.
//
// Errors, of OpenBlob or of a Read: domain.ErrInvalidArgument for a ref or
// name PutBlob would refuse; domain.ErrNotFound; domain.ErrCorrupt;
// domain.ErrUnavailable when the connection is closed or the server cannot
// answer; ctx's error. Safe for concurrent use; the reader is not.
// Read-only.
func (b *Blobs) OpenBlob(ctx context.Context, ref, name string) (io.ReadCloser, error) {
	metaSubj, err := b.metaSubject(opGetBlob, ref, name)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := b.c.enter(opGetBlob); err != nil {
		return nil, err
	}
	item := blobItem(ref, name)
	op := opGetBlob + " " + item
	cur, found, err := b.readMeta(ctx, op, metaSubj)
	if err != nil {
		return nil, err
	}
	if !found || (cur.bad == nil && cur.info.Deleted) {
		return nil, domain.NotFound(opGetBlob, "blob", item)
	}
	corrupt := func(format string, args ...any) error {
		return domain.Corruption("jetstream: %s: %s", op, fmt.Sprintf(format, args...))
	}
	if cur.bad != nil {
		return nil, corrupt("%v", cur.bad)
	}
	info := cur.info
	want, ok := decodeDigest(info.Digest)
	switch {
	case !ok:
		return nil, corrupt("unreadable digest %q", info.Digest)
	case info.Size > maxBlobSize:
		return nil, corrupt("the meta records %d bytes, more than %d", info.Size, maxBlobSize)
	case info.Opts != nil && info.Opts.Link != nil:
		return nil, corrupt("the object is a link, not a blob")
	case !validNUID(info.NUID):
		return nil, corrupt("invalid chunk NUID %q", info.NUID)
	}
	r := &blobReader{b: b, ctx: ctx, op: op, item: item, metaSubj: metaSubj, info: info, want: want,
		seq: 1, sum: sha256.New()}
	r.Reader = chunkread.Reader{Load: r.load, Closed: &domain.Error{Op: opGetBlob, Kind: domain.ErrFailedPrecondition, Item: item, Msg: "the blob reader is closed"}}
	return r, nil
}

// blobReader reads an object's chunks in batches (see OpenBlob).
type blobReader struct {
	b        *Blobs
	ctx      context.Context
	op, item string
	metaSubj string
	info     jsapi.ObjectInfo
	want     []byte // the SHA-256 the meta records
	seq      uint64 // the stream sequence to read from next
	read     uint64 // bytes of chunks read
	chunks   uint32
	sum      hash.Hash
	chunkread.Reader
}

// load reads the next batch of chunks into buf, or ends the blob.
func (r *blobReader) load(buf []byte) ([]byte, error) {
	if r.read == r.info.Size {
		switch {
		case r.chunks != r.info.Chunks:
			return nil, domain.Corruption("jetstream: %s: %d chunks, the meta records %d", r.op, r.chunks, r.info.Chunks)
		case !bytes.Equal(r.sum.Sum(nil), r.want):
			return nil, domain.Corruption("jetstream: %s: SHA-256 mismatch", r.op)
		}
		return nil, io.EOF
	}
	if err := r.ctx.Err(); err != nil {
		return nil, err
	}
	if err := r.b.c.enter(opGetBlob); err != nil {
		return nil, err
	}
	msgs, err := r.b.chunks(r.ctx, directRequest{Seq: r.seq, NextFor: r.b.chunkPfx + r.info.NUID,
		Batch: readBatch, MaxBytes: streamReadBytes})
	if err != nil {
		return nil, r.b.c.callErr(r.ctx, r.op, err)
	}
	if len(msgs) == 0 {
		again, found, err := r.b.readMeta(r.ctx, r.op, r.metaSubj)
		switch {
		case err != nil:
			return nil, err
		case !found || (again.bad == nil && (again.info.Deleted || again.info.NUID != r.info.NUID)):
			return nil, domain.NotFound(opGetBlob, "blob", r.item)
		}
		return nil, domain.Corruption("jetstream: %s: chunks missing after chunk %d (%d of %d bytes)", r.op, r.chunks, r.read, r.info.Size)
	}
	for _, m := range msgs {
		if r.read+uint64(len(m.data)) > r.info.Size {
			return nil, domain.Corruption("jetstream: %s: the chunks hold more than the %d bytes recorded", r.op, r.info.Size)
		}
		buf = append(buf, m.data...)
		r.read += uint64(len(m.data))
		r.chunks++
		r.seq = m.seq + 1
	}
	r.sum.Write(buf)
	return buf, nil
}

// DeleteBlob deletes blob name of ref as DestroyBlobs deletes each of a
// ref's: it marks the meta deleted (readers then get domain.ErrNotFound),
// purges the chunks, then purges the meta subject.
//
// Errors: domain.ErrInvalidArgument for a ref or name PutBlob would
// refuse; domain.ErrUnavailable when the connection is closed or a request
// fails (call again); ctx's error. Idempotent; safe for concurrent use.
func (b *Blobs) DeleteBlob(ctx context.Context, ref, name string) error {
	metaSubj, err := b.metaSubject(opDeleteBlob, ref, name)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := b.c.enter(opDeleteBlob); err != nil {
		return err
	}
	return b.destroyObject(ctx, opDeleteBlob+" "+blobItem(ref, name), metaSubj)
}

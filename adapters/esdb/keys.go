package esdb

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

var _ commands.KeyStore = (*KeyStore)(nil)

const (
	opGetWrapped    = "get wrapped key"
	opPutWrapped    = "put wrapped key"
	opDeleteWrapped = "delete wrapped key"

	// typeWrappedKey is the type of the events of a data-key stream: each
	// holds a whole record, the latest one wins.
	typeWrappedKey = "WrappedDataKey"
	// maxKeyRefLen bounds a data-key ref (in bytes), as the envelope does.
	maxKeyRefLen = 256
)

// KeyStore keeps the wrapped data-key records of the envelope (commands.KeyStore) in EventStoreDB, beside the log, so that every
// engine node sharing the log shares the keys. Ref r's records live in the
// stream "datakey-<r encoded>" (see encodeStreamPart): PutWrapped appends
// an event holding the whole record, GetWrapped reads the last one, and
// DeleteWrapped tombstones the stream.
//
// Revisions. A record's revision is its event's number in its stream,
// plus one, with the stream's generation (see Reuse) above it: generation
// g, event n is g<<40 | (n+1) (keyRevision). PutWrapped appends with that
// event number as EventStoreDB's expected stream revision, or, expecting
// no record, with "no stream", so the server makes every write a
// compare-and-swap, across nodes; a ref's revisions grow over its whole
// life, since a later generation is a higher number.
//
// Deletion (crypto-shredding). A tombstoned stream reads as deleted at
// once, on every node, so GetWrapped reports the record absent as soon as
// DeleteWrapped returns. Its bytes (every record ever put for the ref) stay
// in the server's files until a scavenge rewrites the chunks holding them:
// run scavenges (every node of a cluster scavenges its own copy), and mind
// that a scavenge skips the chunk being written, and that backups of the
// database, and chunks archived elsewhere, keep their copies. Every record
// is wrapped under the master key, so destroying that key shreds every
// copy.
//
// Reuse. A tombstoned stream can never be written again. kmsbackup never
// uses a ref again after deleting it: data keys are per KMS instance (a
// released instance stays released) or per backup generation (a reset or
// release moves to the next generation), and uploads take a fresh backup
// ID. The port allows it all the same, so a ref put after its deletion
// goes to its next generation of streams, "datakey-<r>-1", "-2"... (see
// genSuffix): the deleted records stay tombstoned, and each deleted
// generation costs one more read (GetWrapped, DeleteWrapped) or failed
// append (PutWrapped) on the ref from then on.
//
// The stream names (with the refs they encode) are not secret: they stay
// in EventStoreDB's own streams ($streams, $ce-datakey with the system
// projections on) after the deletion; the records never do. Every record
// ever put stays in the stream until the ref is deleted (they are all
// wrapped, and each holds every data-key version of the one before). The
// methods take no context: each call is bounded by Options.Timeout and by
// the log's Close. Safe for concurrent use. Closing the log closes the key
// store.
type KeyStore struct {
	l *Log
	// checkStream holds the master-key check (keyCheckStream; tests use
	// one of their own).
	checkStream string
}

// NewKeyStore returns the key store on l's server, through l's client.
func NewKeyStore(l *Log) *KeyStore { return &KeyStore{l: l, checkStream: keyCheckStream} }

// Ping checks that the server answers (see Log.Ping), for readiness
// probes.
func (k *KeyStore) Ping(ctx context.Context) error { return k.l.Ping(ctx) }

// GetWrapped returns a copy of ref's latest record and its revision; rev
// is 0 when there is none (never put, or deleted).
//
// Errors: domain.ErrInvalidArgument for an empty ref or one over 256
// bytes; domain.ErrCorrupt when the stream's last event is not a record
// this store wrote; domain.ErrUnavailable when the server fails or the log
// is closed. Safe for concurrent use.
func (k *KeyStore) GetWrapped(ctx context.Context, ref string) ([]byte, uint64, error) {
	if err := checkKeyRef(opGetWrapped, ref); err != nil {
		return nil, 0, err
	}
	gen, state, last, err := k.current(ctx, opGetWrapped, ref)
	if err != nil {
		return nil, 0, err
	}
	if state != streamLive || last == nil {
		return nil, 0, nil
	}
	if last.EventType != typeWrappedKey || len(last.Data) == 0 {
		return nil, 0, domain.Corruption("esdb: %s %q: event %d of stream %q is a %q of %d bytes, not a wrapped key record",
			opGetWrapped, ref, last.EventNumber, dataKeyStream(ref, gen), last.EventType, len(last.Data))
	}
	rev, err := keyRevision(opGetWrapped, ref, gen, last.EventNumber)
	if err != nil {
		return nil, 0, err
	}
	return bytes.Clone(last.Data), rev, nil
}

// current finds ref's current generation: the first whose stream is not
// tombstoned, its state (live or absent), and its last event (nil when it
// shows none). Errors are mapped.
func (k *KeyStore) current(ctx context.Context, op, ref string) (uint64, streamState, *esdbclient.RecordedEvent, error) {
	for gen := uint64(0); gen < maxGenerations; gen++ {
		recs, state, err := k.l.readRaw(ctx, op, dataKeyStream(ref, gen), esdbclient.End{}, true, 1)
		switch {
		case err != nil:
			return 0, 0, nil, k.l.mapErr(ctx, op, ref, err)
		case state == streamDeleted:
			continue
		case len(recs) == 0:
			return gen, state, nil, nil
		}
		return gen, state, recs[0], nil
	}
	return 0, 0, nil, errTooManyGenerations(op, ref)
}

// PutWrapped appends wrapped as ref's latest record if ref's revision is
// expected, and returns its revision once the server has acknowledged it
// (EventStoreDB acknowledges writes once they are durable on its log, and
// on a quorum of a cluster). wrapped is copied. Expecting a revision, it
// appends to that revision's stream with its event number as the expected
// stream revision; expecting none (0), it appends with "no stream" to the
// ref's first generation that is not tombstoned (see KeyStore), trying
// them in order.
//
// Errors: domain.ErrInvalidArgument for an empty ref or one over 256
// bytes, empty wrapped bytes, or a record over Options.MaxAppendSize;
// domain.ErrWrongExpectedRevision when ref's revision is another (its
// stream moved on, was tombstoned, or exists when none was expected; or
// the revision is one this store never gives, refused without asking the
// server); domain.ErrUnavailable when the server fails or the log is
// closed (the record may then be written or not: read it again). Safe for
// concurrent use, across nodes. Not idempotent: repeated after a success
// it fails with ErrWrongExpectedRevision.
func (k *KeyStore) PutWrapped(ctx context.Context, ref string, wrapped []byte, expected uint64) (uint64, error) {
	if err := checkKeyRef(opPutWrapped, ref); err != nil {
		return 0, err
	}
	if len(wrapped) == 0 {
		return 0, &domain.Error{Op: opPutWrapped, Kind: domain.ErrInvalidArgument, Item: ref, Msg: "the wrapped key record is empty"}
	}
	ev := esdbclient.EventData{EventType: typeWrappedKey, ContentType: esdbclient.ContentTypeBinary, Data: bytes.Clone(wrapped)}
	if n := appendSize(&ev); n > k.l.opts.MaxAppendSize {
		return 0, &domain.Error{Op: opPutWrapped, Kind: domain.ErrInvalidArgument, Item: ref,
			Msg: fmt.Sprintf("the record takes %d bytes, over the server's maximum append size of %d", n, k.l.opts.MaxAppendSize)}
	}
	gen, want, ok := expectedAppend(expected)
	if !ok {
		return 0, wrongKeyRevision(ref, expected)
	}
	for ; gen < maxGenerations; gen++ {
		wr, err := k.l.appendRaw(ctx, opPutWrapped, dataKeyStream(ref, gen), want, []esdbclient.EventData{ev})
		switch {
		case err == nil:
			return keyRevision(opPutWrapped, ref, gen, wr.NextExpectedVersion)
		case isStreamDeleted(err) && expected == 0:
			continue // generation gen was deleted: the next one is current, or will be
		case isStreamDeleted(err), isWrongExpectedVersion(err):
			return 0, wrongKeyRevision(ref, expected)
		}
		return 0, k.l.mapErr(ctx, opPutWrapped, ref, err)
	}
	return 0, errTooManyGenerations(opPutWrapped, ref)
}

// revGenShift is where a revision's generation starts: below it, the
// event number plus one.
const revGenShift = 40

// keyRevision is the revision of event n of ref's stream in generation
// gen. Errors: domain.ErrFailedPrecondition for an event number too large
// to fit (a trillion records of one ref).
func keyRevision(op, ref string, gen, n uint64) (uint64, error) {
	if n >= 1<<revGenShift-1 || gen >= maxGenerations {
		return 0, &domain.Error{Op: op, Kind: domain.ErrFailedPrecondition, Item: ref,
			Msg: fmt.Sprintf("record %d of generation %d of the ref's stream is beyond the revisions this store gives", n, gen)}
	}
	return gen<<revGenShift | (n + 1), nil
}

// expectedAppend is the first generation a put expecting revision
// expected appends to, and the expected revision EventStoreDB checks
// there: "no stream" for 0 (from generation 0 on), else the event number
// of expected in its generation. ok is false for a revision keyRevision
// never gives.
func expectedAppend(expected uint64) (gen uint64, want esdbclient.ExpectedRevision, ok bool) {
	if expected == 0 {
		return 0, esdbclient.NoStream{}, true
	}
	gen, n := expected>>revGenShift, expected&(1<<revGenShift-1)
	if n == 0 || gen >= maxGenerations {
		return 0, nil, false
	}
	return gen, esdbclient.Revision(n - 1), true
}

func wrongKeyRevision(ref string, expected uint64) error {
	return &domain.Error{Op: opPutWrapped, Kind: domain.ErrWrongExpectedRevision, Item: ref,
		Msg: fmt.Sprintf("the record is not at revision %d", expected), Hint: "read it again"}
}

// DeleteWrapped tombstones ref's current stream: from then on GetWrapped
// reports no record, on every node. The bytes are physically removed by the
// server's next scavenge (see KeyStore). A ref with no record has nothing
// to tombstone.
//
// Errors: domain.ErrInvalidArgument for an empty ref or one over 256
// bytes; domain.ErrUnavailable when the server fails or the log is closed
// (the stream may then be tombstoned or not: delete again). Idempotent:
// deleting a ref that has no record, or was deleted before, succeeds. Safe
// for concurrent use: a put concurrent with a delete lands before it, and
// is deleted; or after it, and fails (its expected revision is in the
// tombstoned stream) unless it expected no record, when it creates the
// next generation.
func (k *KeyStore) DeleteWrapped(ctx context.Context, ref string) error {
	if err := checkKeyRef(opDeleteWrapped, ref); err != nil {
		return err
	}
	gen, state, _, err := k.current(ctx, opDeleteWrapped, ref)
	if err != nil || state == streamAbsent {
		return err
	}
	return k.l.mapErr(ctx, opDeleteWrapped, ref, k.l.tombstone(ctx, opDeleteWrapped, dataKeyStream(ref, gen)))
}

// checkKeyRef validates a data-key ref: 1 to 256 bytes (any bytes: the
// stream name encodes them).
func checkKeyRef(op, ref string) error {
	if ref == "" || len(ref) > maxKeyRefLen {
		return domain.Invalid(op, "the data key ref must be 1 to %d bytes, not %d", maxKeyRefLen, len(ref))
	}
	return nil
}

// The master-key check is the first event of the stream keyCheckStream,
// of type typeKeyCheck: created once with an expected revision of "no
// stream", so of nodes racing to create it one wins, and read back from
// its first event. The name starts with the key store's prefix (the log
// never shows it) followed by '-', which no ref's stream has (an encoded
// ref is never empty and never holds '-').
const (
	keyCheckStream = dataKeyStreamPrefix + "-check"
	typeKeyCheck   = "MasterKeyCheck"
	maxKeyCheckLen = 1024

	opKeyCheck       = "get key check"
	opCreateKeyCheck = "create key check"
	opAnyWrapped     = "find a wrapped key"

	// anyWrappedTimeout bounds AnyWrapped's scan of $all.
	anyWrappedTimeout = 2 * time.Minute
)

// KeyCheck returns the stored master-key check; ok is false when there is
// none.
//
// Errors: domain.ErrCorrupt when the check's stream holds something else
// or was deleted; domain.ErrUnavailable when the server fails or the log
// is closed. Safe for concurrent use.
func (k *KeyStore) KeyCheck(ctx context.Context) ([]byte, bool, error) {
	recs, state, err := k.l.readRaw(ctx, opKeyCheck, k.checkStream, esdbclient.Start{}, false, 1)
	switch {
	case err != nil:
		return nil, false, k.l.mapErr(ctx, opKeyCheck, k.checkStream, err)
	case state == streamDeleted:
		return nil, false, domain.Corruption("esdb: %s: the stream %q was deleted", opKeyCheck, k.checkStream)
	case len(recs) == 0:
		return nil, false, nil
	case recs[0].EventType != typeKeyCheck || len(recs[0].Data) == 0:
		return nil, false, domain.Corruption("esdb: %s: the first event of %q is a %q, not a key check", opKeyCheck, k.checkStream, recs[0].EventType)
	}
	return bytes.Clone(recs[0].Data), true, nil
}

// CreateKeyCheck stores check as the master-key check unless one is
// stored already, and returns the check stored afterwards.
//
// Errors: domain.ErrInvalidArgument for an empty check or one over 1 KiB;
// those of KeyCheck. Safe for concurrent use, across nodes; idempotent.
func (k *KeyStore) CreateKeyCheck(ctx context.Context, check []byte) ([]byte, error) {
	if len(check) == 0 || len(check) > maxKeyCheckLen {
		return nil, domain.Invalid(opCreateKeyCheck, "the key check must be 1 to %d bytes, not %d", maxKeyCheckLen, len(check))
	}
	ev := esdbclient.EventData{EventType: typeKeyCheck, ContentType: esdbclient.ContentTypeBinary, Data: bytes.Clone(check)}
	_, err := k.l.appendRaw(ctx, opCreateKeyCheck, k.checkStream, esdbclient.NoStream{}, []esdbclient.EventData{ev})
	switch {
	case err == nil:
		return bytes.Clone(check), nil
	case !isWrongExpectedVersion(err):
		return nil, k.l.mapErr(ctx, opCreateKeyCheck, k.checkStream, err)
	}
	stored, ok, err := k.KeyCheck(ctx)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, domain.Corruption("esdb: %s: the stream %q exists without a check", opCreateKeyCheck, k.checkStream)
	}
	return stored, nil
}

// AnyWrapped returns the current record of the first ref whose records
// $all holds (a catch-up subscription from the start, filtered by the
// server on the key store's prefix, up to the end of $all as it was when
// the call began); ok is false when there is none.
//
// Errors: domain.ErrUnavailable when the server fails, the log is closed,
// or the scan takes over two minutes. Safe for concurrent use; read-only.
func (k *KeyStore) AnyWrapped(ctx context.Context) (string, []byte, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, anyWrappedTimeout)
	defer cancel()
	end, any, err := k.l.lastOfAll(ctx, opAnyWrapped)
	if err != nil || !any {
		return "", nil, false, k.l.mapErr(ctx, opAnyWrapped, "", err)
	}
	filter := &esdbclient.SubscriptionFilter{Type: esdbclient.StreamFilterType, Prefixes: []string{dataKeyStreamPrefix}}
	sub, stop, err := k.l.openSubscription(ctx, esdbclient.Start{}, filter)
	if err != nil {
		return "", nil, false, k.l.mapErr(ctx, opAnyWrapped, "", err)
	}
	defer func() {
		_ = sub.Close()
		stop()
	}()
	for {
		if err := ctx.Err(); err != nil {
			return "", nil, false, k.l.mapErr(ctx, opAnyWrapped, "", err)
		}
		ev := sub.Recv()
		switch {
		case ev.SubscriptionDropped != nil:
			err := ev.SubscriptionDropped.Error
			if err == nil {
				err = errDropped
			}
			return "", nil, false, k.l.mapErr(ctx, opAnyWrapped, "", err)
		case ev.EventAppeared != nil && ev.EventAppeared.Event != nil:
			r := ev.EventAppeared.Event
			if ref, ok := refOfDataKeyStream(r.StreamID); ok && r.EventType == typeWrappedKey {
				rec, rev, err := k.GetWrapped(ctx, ref)
				if err != nil || rev != 0 {
					return ref, rec, rev != 0, err
				}
			}
			if !keyAfter(end, r.Position) {
				return "", nil, false, nil
			}
		case ev.CheckPointReached != nil:
			if !keyAfter(end, *ev.CheckPointReached) {
				return "", nil, false, nil
			}
		case ev.CaughtUp != nil:
			return "", nil, false, nil
		}
	}
}

// refOfDataKeyStream returns the ref whose records stream holds (any
// generation); ok is false for any other stream.
func refOfDataKeyStream(stream string) (string, bool) {
	rest, ok := strings.CutPrefix(stream, dataKeyStreamPrefix)
	if !ok {
		return "", false
	}
	enc, _, _ := strings.Cut(rest, "-") // an encoded ref has no '-'; a generation follows one
	if enc == "" {
		return "", false
	}
	return decodeStreamPart(enc)
}

// lastOfAll returns the position of the last record of $all; any is false
// when $all is empty. Errors are unmapped.
func (l *Log) lastOfAll(ctx context.Context, op string) (pos esdbclient.Position, any bool, err error) {
	err = l.do(ctx, op, func(ctx context.Context, c *esdbclient.Client) error {
		any = false // do may run this twice
		opts := esdbclient.ReadAllOptions{Direction: esdbclient.Backwards, From: esdbclient.End{}}
		return eachOfAll(ctx, c, opts, 1, func(re *esdbclient.ResolvedEvent) bool {
			if re.Event != nil {
				pos, any = re.Event.Position, true
			}
			return true
		})
	})
	return pos, any, err
}

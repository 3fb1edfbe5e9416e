package esdb

import (
	"bytes"
	"context"
	"fmt"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/kmsbackup/kmsbackup/domain"
)

// KeyStore implements envelope.KeyStore's method set (adapters do not
// import each other; cmd wires them).
var _ interface {
	GetWrapped(ref string) ([]byte, bool, error)
	PutWrapped(ref string, wrapped []byte) error
	DeleteWrapped(ref string) error
} = (*KeyStore)(nil)

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

// KeyStore keeps the wrapped data-key records of the envelope (the method
// set of envelope.KeyStore) in EventStoreDB, beside the log, so that every
// engine node sharing the log shares the keys. Ref r's records live in the
// stream "datakey-<r encoded>" (see encodeStreamPart): PutWrapped appends
// an event holding the whole record, GetWrapped reads the last one, and
// DeleteWrapped tombstones the stream.
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
}

// NewKeyStore returns the key store on l's server, through l's client.
func NewKeyStore(l *Log) *KeyStore { return &KeyStore{l: l} }

// Ping checks that the server answers (see Log.Ping), for readiness
// probes.
func (k *KeyStore) Ping(ctx context.Context) error { return k.l.Ping(ctx) }

// GetWrapped returns a copy of ref's latest record; ok is false when there
// is none (never put, or deleted).
//
// Errors: domain.ErrInvalidArgument for an empty ref or one over 256
// bytes; domain.ErrCorrupt when the stream's last event is not a record
// this store wrote; domain.ErrUnavailable when the server fails or the log
// is closed. Safe for concurrent use.
func (k *KeyStore) GetWrapped(ref string) ([]byte, bool, error) {
	if err := checkKeyRef(opGetWrapped, ref); err != nil {
		return nil, false, err
	}
	ctx := context.Background()
	gen, state, last, err := k.current(ctx, opGetWrapped, ref)
	if err != nil {
		return nil, false, err
	}
	if state != streamLive || last == nil {
		return nil, false, nil
	}
	if last.EventType != typeWrappedKey || len(last.Data) == 0 {
		return nil, false, domain.Corruption("esdb: %s %q: event %d of stream %q is a %q of %d bytes, not a wrapped key record",
			opGetWrapped, ref, last.EventNumber, dataKeyStream(ref, gen), last.EventType, len(last.Data))
	}
	return bytes.Clone(last.Data), true, nil
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

// PutWrapped appends wrapped as ref's latest record and returns once the
// server has acknowledged it (EventStoreDB acknowledges writes once they
// are durable on its log, and on a quorum of a cluster). wrapped is copied.
// It appends to the ref's first generation that is not tombstoned (see
// KeyStore), trying them in order.
//
// Errors: domain.ErrInvalidArgument for an empty ref or one over 256
// bytes, empty wrapped bytes, or a record over Options.MaxAppendSize;
// domain.ErrUnavailable when the server fails or the log is closed (the
// record may then be written or not: put it again). Safe for concurrent
// use; idempotent (putting the same bytes again appends an identical
// record).
func (k *KeyStore) PutWrapped(ref string, wrapped []byte) error {
	if err := checkKeyRef(opPutWrapped, ref); err != nil {
		return err
	}
	if len(wrapped) == 0 {
		return &domain.Error{Op: opPutWrapped, Kind: domain.ErrInvalidArgument, Item: ref, Msg: "the wrapped key record is empty"}
	}
	ev := esdbclient.EventData{EventType: typeWrappedKey, ContentType: esdbclient.ContentTypeBinary, Data: bytes.Clone(wrapped)}
	if n := appendSize(&ev); n > k.l.opts.MaxAppendSize {
		return &domain.Error{Op: opPutWrapped, Kind: domain.ErrInvalidArgument, Item: ref,
			Msg: fmt.Sprintf("the record takes %d bytes, over the server's maximum append size of %d", n, k.l.opts.MaxAppendSize)}
	}
	ctx := context.Background()
	for gen := uint64(0); gen < maxGenerations; gen++ {
		_, err := k.l.appendRaw(ctx, opPutWrapped, dataKeyStream(ref, gen), esdbclient.Any{}, []esdbclient.EventData{ev})
		if isStreamDeleted(err) {
			continue // generation gen was deleted: the next one is current, or will be
		}
		return k.l.mapErr(ctx, opPutWrapped, ref, err)
	}
	return errTooManyGenerations(opPutWrapped, ref)
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
// for concurrent use (a put concurrent with a delete lands before it, and
// is deleted, or after it, in the next generation).
func (k *KeyStore) DeleteWrapped(ref string) error {
	if err := checkKeyRef(opDeleteWrapped, ref); err != nil {
		return err
	}
	ctx := context.Background()
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

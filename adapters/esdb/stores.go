package esdb

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/kmsbackup/kmsbackup/domain"
)

// The streams of the key store and of the blob store. They live on the
// log's server but are not log events: the log refuses to append to them,
// and ReadStream, ReadAll, Head and subscriptions never show them, whatever
// Options.StreamPrefixes says (see isStoreStream).
const (
	dataKeyStreamPrefix   = "datakey-" // datakey-<ref>: a ref's wrapped data-key records
	blobStreamPrefix      = "blob-"    // blob-<ref>-<name>: one blob
	blobIndexStreamPrefix = "blobs-"   // blobs-<ref>: the names of a ref's blobs
)

// storeStreamPrefixes are the prefixes reserved for the stores.
var storeStreamPrefixes = []string{dataKeyStreamPrefix, blobStreamPrefix, blobIndexStreamPrefix}

// isStoreStream reports whether stream belongs to the key store or the
// blob store.
func isStoreStream(stream string) bool {
	return matchesPrefix(stream, storeStreamPrefixes)
}

// escapeChar starts an escaped byte in an encoded ref or name.
const escapeChar = '~'

// encodeStreamPart encodes a ref or a blob name for use inside a stream
// name: ASCII letters, digits, '_' and '.' stand for themselves; every other
// byte (including '-', '~', '/', '$', spaces, control bytes and every byte
// of a multi-byte UTF-8 sequence) becomes '~' and two lowercase hex digits.
// The encoding is injective (each byte maps to a code no other byte's code
// starts with) and its output never contains '-', so "blob-" + ref + "-" +
// name splits back unambiguously. The output is plain ASCII, safe in
// EventStoreDB's HTTP API paths, and never starts with '$'. It is at most
// three times as long as s.
func encodeStreamPart(s string) string {
	const hex = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if streamSafe(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte(escapeChar)
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

// decodeStreamPart inverts encodeStreamPart; ok is false for a string
// encodeStreamPart cannot produce.
func decodeStreamPart(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if streamSafe(c) {
			b.WriteByte(c)
			continue
		}
		if c != escapeChar || i+2 >= len(s) {
			return "", false
		}
		v, ok := unhexByte(s[i+1 : i+3])
		if !ok || streamSafe(v) {
			return "", false
		}
		b.WriteByte(v)
		i += 2
	}
	return b.String(), true
}

func unhexByte(s string) (byte, bool) {
	var v byte
	for i := range 2 {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			v = v<<4 | (c - '0')
		case 'a' <= c && c <= 'f':
			v = v<<4 | (c - 'a' + 10)
		default:
			return 0, false
		}
	}
	return v, true
}

func streamSafe(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.'
}

// Generations. A tombstoned stream can never be written again, but the
// ports let a caller use a ref again after deleting it (kmsbackup never
// does). Each use of a ref after a deletion therefore goes to the ref's
// next generation of streams: generation 0 is the plain name, generation
// g > 0 the same name followed by "-" and g in decimal (unambiguous: the
// encoded parts have no '-'). The current generation is the first whose
// stream is not tombstoned; finding it costs one read per deleted
// generation before it.

// maxGenerations bounds the generations a lookup goes through, against a
// server that would report every stream deleted.
const maxGenerations = 1 << 20

func errTooManyGenerations(op, item string) error {
	return &domain.Error{Op: op, Kind: domain.ErrFailedPrecondition, Item: item,
		Msg: fmt.Sprintf("more than %d generations of the ref's streams are tombstoned", maxGenerations)}
}

// genSuffix is the suffix of generation gen's stream names.
func genSuffix(gen uint64) string {
	if gen == 0 {
		return ""
	}
	return "-" + strconv.FormatUint(gen, 10)
}

// dataKeyStream is the stream of ref's wrapped data-key records, in
// generation gen.
func dataKeyStream(ref string, gen uint64) string {
	return dataKeyStreamPrefix + encodeStreamPart(ref) + genSuffix(gen)
}

// blobStream is the stream of blob name of ref, in the ref's generation
// gen.
func blobStream(ref, name string, gen uint64) string {
	return blobStreamPrefix + encodeStreamPart(ref) + "-" + encodeStreamPart(name) + genSuffix(gen)
}

// blobIndexStream is the stream listing the names of ref's blobs in
// generation gen.
func blobIndexStream(ref string, gen uint64) string {
	return blobIndexStreamPrefix + encodeStreamPart(ref) + genSuffix(gen)
}

// isStreamDeleted reports the client's "stream deleted": the stream was
// tombstoned (or, for reads, hard-deleted), and can never be written again.
func isStreamDeleted(err error) bool {
	c, ok := clientCode(err)
	return ok && c == esdbclient.ErrorCodeStreamDeleted
}

// appendRaw appends events to a stream of the stores under EventStoreDB's
// expected revision, bypassing the log's checks (stream prefixes, the
// envelope, retry detection): the stores make their own. It returns the
// client's error unmapped, for the caller to classify.
func (l *Log) appendRaw(ctx context.Context, op, stream string, expected esdbclient.ExpectedRevision, events []esdbclient.EventData) (*esdbclient.WriteResult, error) {
	var wr *esdbclient.WriteResult
	err := l.do(ctx, op, func(ctx context.Context, c *esdbclient.Client) error {
		var err error
		wr, err = c.AppendToStream(ctx, stream, esdbclient.AppendToStreamOptions{ExpectedRevision: expected}, events...)
		return err
	})
	return wr, err
}

// tombstone hard-deletes stream: EventStoreDB writes a tombstone, every
// later read reports the stream deleted and every later write fails, and
// its next scavenge drops the stream's events from its files. A stream that
// does not exist is tombstoned all the same (so it can never be created);
// one already tombstoned is not an error. The error is returned unmapped.
func (l *Log) tombstone(ctx context.Context, op, stream string) error {
	err := l.do(ctx, op, func(ctx context.Context, c *esdbclient.Client) error {
		_, err := c.TombstoneStream(ctx, stream, esdbclient.TombstoneStreamOptions{ExpectedRevision: esdbclient.Any{}})
		return err
	})
	if isStreamDeleted(err) {
		return nil
	}
	return err
}

// streamState is what a read found of a stream of the stores.
type streamState int

const (
	streamAbsent streamState = iota
	streamLive
	streamDeleted // tombstoned: it can never be written again
)

// readRaw reads up to count events of a stream of the stores, and what
// state the stream is in. Errors are unmapped.
func (l *Log) readRaw(ctx context.Context, op, stream string, from esdbclient.StreamPosition, backwards bool, count uint64) ([]*esdbclient.RecordedEvent, streamState, error) {
	recs, exists, err := l.readStream(ctx, op, stream, from, backwards, count)
	switch {
	case isStreamDeleted(err):
		return nil, streamDeleted, nil
	case err != nil:
		return nil, streamAbsent, err
	case !exists:
		return nil, streamAbsent, nil
	}
	return recs, streamLive, nil
}

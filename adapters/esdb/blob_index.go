package esdb

import (
	"bytes"
	"context"
	"fmt"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/kmsbackup/kmsbackup/domain"
)

// indexTail is the last entry of a generation of a ref's index.
type indexTail struct {
	state  streamState
	head   uint64 // the last entry's revision (when live)
	sealed bool   // the last entry is the seal: the generation is being destroyed
}

// readIndexTail reads the last entry of generation gen of ref's index.
// Errors are mapped.
func (b *Blobs) readIndexTail(ctx context.Context, op, ref string, gen uint64) (indexTail, error) {
	item := fmt.Sprintf("%q", ref)
	stream := blobIndexStream(ref, gen)
	recs, state, err := b.l.readRaw(ctx, op, stream, esdbclient.End{}, true, 1)
	switch {
	case err != nil:
		return indexTail{}, b.l.mapErr(ctx, op, item, err)
	case state != streamLive:
		return indexTail{state: state}, nil
	case len(recs) == 0:
		return indexTail{}, domain.Corruption("esdb: %s %s: the index stream %q has no readable last event", op, item, stream)
	}
	_, sealed, err := indexEntry(recs[0].EventType, recs[0].Data)
	if err != nil {
		return indexTail{}, domain.Corruption("esdb: %s %s: event %d of the index stream %q: %v", op, item, recs[0].EventNumber, stream, err)
	}
	return indexTail{state: streamLive, head: recs[0].EventNumber, sealed: sealed}, nil
}

// writableGen returns the generation of ref that puts go to, the first
// whose index is neither tombstoned nor sealed, with its index's tail. A
// sealed generation is destroyed on the way (a DestroyBlobs stopped
// half-way), so that a generation is used only once every earlier one is
// tombstoned. Errors are mapped.
func (b *Blobs) writableGen(ctx context.Context, ref string) (uint64, indexTail, error) {
	for gen := uint64(0); gen < maxGenerations; gen++ {
		t, err := b.readIndexTail(ctx, opPutBlob, ref, gen)
		switch {
		case err != nil:
			return 0, indexTail{}, err
		case t.state == streamDeleted:
			continue
		case t.sealed:
			if _, err := b.destroyGen(ctx, opPutBlob, ref, gen); err != nil {
				return 0, indexTail{}, err
			}
			continue
		}
		return gen, t, nil
	}
	return 0, indexTail{}, errTooManyGenerations(opPutBlob, fmt.Sprintf("%q", ref))
}

// readableGen returns the first generation of ref from gen on whose index
// is neither tombstoned nor sealed: the one whose blobs GetBlob shows.
// Errors are mapped.
func (b *Blobs) readableGen(ctx context.Context, ref string, gen uint64) (uint64, error) {
	for ; gen < maxGenerations; gen++ {
		t, err := b.readIndexTail(ctx, opGetBlob, ref, gen)
		if err != nil {
			return 0, err
		}
		if t.state != streamDeleted && !t.sealed {
			return gen, nil
		}
	}
	return 0, errTooManyGenerations(opGetBlob, fmt.Sprintf("%q", ref))
}

// register adds name to generation gen of ref's index, expecting the tail
// writableGen read (a wrong expected version when it moved). The error is
// unmapped.
func (b *Blobs) register(ctx context.Context, ref, name string, gen uint64, tail indexTail) error {
	var expected esdbclient.ExpectedRevision = esdbclient.NoStream{}
	if tail.state == streamLive {
		expected = esdbclient.Revision(tail.head)
	}
	ev := esdbclient.EventData{EventType: typeBlobName, ContentType: esdbclient.ContentTypeBinary, Data: []byte(name)}
	_, err := b.l.appendRaw(ctx, opPutBlob, blobIndexStream(ref, gen), expected, []esdbclient.EventData{ev})
	return err
}

// sealIndex makes generation gen of ref's index end with a seal, unless it
// does already, appending it right after the head it read (so that no name
// can be added after it unseen), and returns the names listed. state is
// the index's: absent and deleted (a destroyed generation) list nothing.
// Errors are mapped.
func (b *Blobs) sealIndex(ctx context.Context, op, ref string, gen uint64) (names []string, state streamState, err error) {
	item := fmt.Sprintf("%q", ref)
	seal := esdbclient.EventData{EventType: typeBlobsSealed, ContentType: esdbclient.ContentTypeBinary}
	for range maxAppendAttempts {
		idx, err := b.readIndex(ctx, op, ref, gen)
		if err != nil || idx.state != streamLive || idx.sealed {
			return idx.names, idx.state, err
		}
		_, err = b.l.appendRaw(ctx, op, blobIndexStream(ref, gen), esdbclient.Revision(idx.head), []esdbclient.EventData{seal})
		switch {
		case err == nil:
			return idx.names, streamLive, nil
		case isWrongExpectedVersion(err):
			continue // a put added a name meanwhile: read again
		case isStreamDeleted(err):
			return nil, streamDeleted, nil // destroyed meanwhile
		}
		return nil, streamLive, b.l.mapErr(ctx, op, item, err)
	}
	return nil, streamLive, &domain.Error{Op: op, Kind: domain.ErrUnavailable, Item: item,
		Msg: fmt.Sprintf("the ref's index changed under %d attempts in a row", maxAppendAttempts), Hint: "retry"}
}

// blobIndex is what a read of a ref's index found.
type blobIndex struct {
	state  streamState
	names  []string // distinct, in order of first entry
	head   uint64   // the last entry's revision
	sealed bool
}

// readIndex reads the whole of generation gen of ref's index. Errors are
// mapped.
func (b *Blobs) readIndex(ctx context.Context, op, ref string, gen uint64) (blobIndex, error) {
	item := fmt.Sprintf("%q", ref)
	stream := blobIndexStream(ref, gen)
	idx := blobIndex{state: streamAbsent}
	seen := map[string]bool{}
	var next uint64
	for {
		recs, state, err := b.l.readRaw(ctx, op, stream, esdbclient.Revision(next), false, indexPage)
		if err != nil {
			return blobIndex{}, b.l.mapErr(ctx, op, item, err)
		}
		if state != streamLive {
			if next > 0 && state == streamAbsent {
				return blobIndex{}, domain.Corruption("esdb: %s %s: the index stream %q vanished while read", op, item, stream)
			}
			return blobIndex{state: state}, nil
		}
		idx.state = streamLive
		for _, r := range recs {
			name, sealed, err := indexEntry(r.EventType, r.Data)
			if err != nil {
				return blobIndex{}, domain.Corruption("esdb: %s %s: event %d of the index stream %q: %v", op, item, r.EventNumber, stream, err)
			}
			idx.head = r.EventNumber
			idx.sealed = idx.sealed || sealed
			if name != "" && !seen[name] {
				seen[name] = true
				idx.names = append(idx.names, name)
			}
		}
		next += uint64(len(recs))
		if len(recs) < indexPage {
			if next == 0 {
				// The stream exists but shows no event (truncated): no head
				// to seal after.
				return blobIndex{}, domain.Corruption("esdb: %s %s: the index stream %q has no readable event", op, item, stream)
			}
			return idx, nil
		}
	}
}

// indexEntry decodes an event of an index stream: a blob name, or the seal.
func indexEntry(eventType string, data []byte) (name string, sealed bool, err error) {
	switch eventType {
	case typeBlobName:
		if len(data) == 0 || len(data) > maxBlobNameLen || bytes.IndexByte(data, 0) >= 0 {
			return "", false, fmt.Errorf("a blob name of %d bytes that PutBlob would refuse", len(data))
		}
		return string(data), false, nil
	case typeBlobsSealed:
		return "", true, nil
	}
	return "", false, fmt.Errorf("unexpected event type %q", eventType)
}

// liveGen finds the generation of ref whose stream of blob name is live:
// found is false when no generation holds it. Errors are mapped.
func (b *Blobs) liveGen(ctx context.Context, op, ref, name string) (gen uint64, found bool, err error) {
	item := blobItem(ref, name)
	for gen < maxGenerations {
		_, state, err := b.l.readRaw(ctx, op, blobStream(ref, name, gen), esdbclient.Revision(0), false, 1)
		switch {
		case err != nil:
			return 0, false, b.l.mapErr(ctx, op, item, err)
		case state == streamLive:
			return gen, true, nil
		case state == streamDeleted:
			gen++
			continue
		}
		cur, err := b.readableGen(ctx, ref, gen)
		if err != nil {
			return 0, false, err
		}
		if cur == gen {
			return 0, false, nil
		}
		gen = cur
	}
	return 0, false, errTooManyGenerations(op, item)
}

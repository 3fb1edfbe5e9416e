package commands

import (
	"bytes"
	"context"
	"fmt"

	"github.com/kmsbackup/kmsbackup/domain"
)

// baseSink is where an upload replays the state its file starts from
// (dayview.Writer): while the writes come in strictly increasing key
// order and delete nothing, as a downloaded file's do (its first segment
// holds the state item by item, in key order), they go straight to a
// baseStream, which writes base 0 on goroutines of its own while the file
// is read; else into a scratch store, of which writeBase writes base 0
// once the file is read. The first write out of order moves what was
// streamed into the scratch (the parts stored, loaded and deleted again),
// and the rest follows it there.
type baseSink struct {
	s       *BackupStorage
	ctx     context.Context
	ref     string
	stream  *baseStream // nil once the writes go to sc
	sc      Scratch
	started bool
	last    []byte // the last key streamed
}

func (k *baseSink) Set(key, value []byte) error {
	if k.stream != nil {
		if !k.started || bytes.Compare(key, k.last) > 0 {
			k.started, k.last = true, append(k.last[:0], key...)
			return k.stream.add(key, value)
		}
		if err := k.toScratch(); err != nil {
			return err
		}
	}
	return k.sc.Set(key, value)
}

func (k *baseSink) DeleteRange(start, end []byte) error {
	if k.stream != nil {
		if err := k.toScratch(); err != nil {
			return err
		}
	}
	return k.sc.DeleteRange(start, end)
}

// toScratch moves what was streamed into the scratch: the stream's
// parts, once stored, are loaded into it and deleted.
func (k *baseSink) toScratch() error {
	st := k.stream
	k.stream = nil
	st.end()
	parts, _, _, err := st.wait()
	if err != nil {
		return err
	}
	if err := k.s.loadBase(k.ctx, k.ref, parts, k.sc, nil); err != nil {
		return fmt.Errorf("reload the state streamed: %w", err)
	}
	k.s.deleteParts(k.ctx, k.ref, parts)
	return nil
}

// end tells that the state is complete: the stream (if still used)
// finishes writing base 0 while the caller goes on.
func (k *baseSink) end() {
	if k.stream != nil {
		k.stream.end()
	}
}

// base returns base 0: the stream's parts and digest, or those writeBase
// writes from the scratch.
func (k *baseSink) base(seq uint64, limit int64) ([]domain.BasePart, [32]byte, error) {
	if k.stream == nil {
		if err := k.sc.Flush(); err != nil {
			return nil, [32]byte{}, err
		}
		return k.s.writeBase(k.ctx, k.ref, seq, k.sc, limit)
	}
	st := k.stream
	k.stream = nil
	st.end()
	parts, digest, refused, err := st.wait()
	if err == nil && refused != nil {
		k.s.deleteParts(k.ctx, k.ref, parts)
		err = refused
	}
	if err != nil {
		return nil, digest, err
	}
	return parts, digest, nil
}

// close stops the stream, if any, waiting for its goroutines (a failed
// upload: what it stored goes with the upload's data).
func (k *baseSink) close() {
	if k.stream != nil {
		k.stream.abort()
		k.stream = nil
	}
}

// baseStream writes a base from records handed to it in strictly
// increasing key order (baseWriter on Scratch.WriteSortedTables), on a
// goroutine of its own (and the part store's): the records go to it in
// batches, through a queue of baseStreamBatches (the one being filled,
// one or two waiting, one being written), so that memory stays bounded
// whatever the state's size. The batches hold the state's records as the scratch
// would: key material sealed, never plaintext.
type baseStream struct {
	stage[*recordBatch] // full: to the writer; closed by end
	free                chan *recordBatch
	cur                 *recordBatch
	// Set by the writer before done is closed.
	parts   []domain.BasePart
	digest  [32]byte
	refused error
	err     error
}

const (
	baseStreamBatches    = 4
	baseStreamBatchBytes = 128 << 10
)

// recordBatch is records in one buffer, made at its full size (a record
// larger than a batch grows it).
type recordBatch struct {
	buf  []byte
	recs []indexRec
}

func newRecordBatch() *recordBatch {
	return &recordBatch{buf: make([]byte, 0, baseStreamBatchBytes), recs: make([]indexRec, 0, baseStreamBatchBytes/64)}
}

func (b *recordBatch) add(key, value []byte) {
	b.recs = append(b.recs, indexRec{uint32(len(b.buf)), uint32(len(key)), uint32(len(value))})
	b.buf = append(append(b.buf, key...), value...)
}

func (b *recordBatch) record(i int) ([]byte, []byte) {
	x := b.recs[i]
	return b.buf[x.off : x.off+x.klen], b.buf[x.off+x.klen : x.off+x.klen+x.vlen]
}

// startBaseStream starts writing base seq of ref, cut at limit, with the
// files of sc (which it does not otherwise touch: the caller uses sc only
// after wait or abort).
func (s *BackupStorage) startBaseStream(ctx context.Context, ref string, seq uint64, sc Scratch, limit int64) *baseStream {
	ctx, cancel := context.WithCancel(ctx)
	st := &baseStream{stage: newStage[*recordBatch](cancel, 1), free: make(chan *recordBatch, baseStreamBatches)}
	for range baseStreamBatches - 1 {
		st.free <- newRecordBatch()
	}
	st.cur = newRecordBatch()
	// One part in memory at a time: a part being stored holds up the
	// writing of the next only once that one is written, and the upload's
	// pass, which feeds the writer, is slower than it.
	bw := baseWriter{s: s, ref: ref, seq: seq, run: s.IDs.NewULID(), limit: limit, buffers: 1}
	go func() {
		defer close(st.done)
		var b *recordBatch
		i := 0
		next := func() ([]byte, []byte, bool) {
			for b == nil || i == len(b.recs) {
				if b != nil {
					b.buf, b.recs = b.buf[:0], b.recs[:0]
					st.free <- b // never blocks: it holds room for every batch
					b = nil
				}
				select {
				case nb, ok := <-st.full:
					if !ok {
						return nil, nil, false
					}
					b, i = nb, 0
				case <-ctx.Done():
					return nil, nil, false
				}
			}
			i++
			k, v := b.record(i - 1)
			return k, v, true
		}
		st.parts, st.digest, st.refused, st.err = bw.write(ctx, func(split func(key, value []byte, size int64) (bool, error), put func(*ScratchTable) error) error {
			return sc.WriteSortedTables(ctx, next, split, put)
		})
	}()
	return st
}

// add hands the writer a record; it fails once the writer failed.
func (st *baseStream) add(key, value []byte) error {
	if len(st.cur.buf)+len(key)+len(value) > baseStreamBatchBytes && len(st.cur.recs) > 0 {
		if err := st.send(); err != nil {
			return err
		}
		select {
		case st.cur = <-st.free:
		case <-st.done:
			return st.failure()
		}
	}
	st.cur.add(key, value)
	return nil
}

func (st *baseStream) send() error {
	select {
	case st.full <- st.cur:
		st.cur = nil
		return nil
	case <-st.done:
		return st.failure()
	}
}

// failure is the writer's error once it stopped before the end.
func (st *baseStream) failure() error {
	if st.err != nil {
		return st.err
	}
	return fmt.Errorf("the base's writer stopped early")
}

// end hands over the last batch and tells the writer that no more
// records come. Idempotent.
func (st *baseStream) end() {
	if st.ended {
		return
	}
	if st.cur != nil && len(st.cur.recs) > 0 {
		_ = st.send() // a failure shows in wait
	}
	st.closeFull()
}

// wait waits for the writer (after end) and returns what it stored: the
// parts, the state's digest, and refused (see baseWriter.write).
func (st *baseStream) wait() ([]domain.BasePart, [32]byte, error, error) {
	<-st.done
	st.cancel()
	return st.parts, st.digest, st.refused, st.err
}

// abort stops the writer and waits for it and its part store.
func (st *baseStream) abort() { st.stop() }

// stage is a goroutine of an upload's pass, fed through full and
// returning (closing done) once full is closed and drained, or at once
// when ctx (cancelled by cancel) ends or it fails.
type stage[T any] struct {
	cancel context.CancelFunc
	full   chan T
	ended  bool          // full is closed
	done   chan struct{} // closed when the goroutine returns
}

func newStage[T any](cancel context.CancelFunc, queue int) stage[T] {
	return stage[T]{cancel: cancel, full: make(chan T, queue), done: make(chan struct{})}
}

// closeFull tells the goroutine that nothing more comes. Idempotent.
func (s *stage[T]) closeFull() {
	if !s.ended {
		s.ended = true
		close(s.full)
	}
}

// stop ends the goroutine and waits for it.
func (s *stage[T]) stop() {
	s.cancel()
	s.closeFull()
	<-s.done
}

package pebblestore

import (
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kmsbackup/kmsbackup/domain"
)

// The high-water mark. Pebble keeps what was written since the last flush
// only in its write-ahead log files; losing one of them (deleted by hand,
// or damaged so that replay stops early) loses acknowledged events without
// any error at open. So the store keeps, outside the WAL, a small file
// (kmsbackup-log-mark) with two positions:
//
//	head     every position up to it was acknowledged (written every
//	         MarkInterval while appends happen, and at Open and Close)
//	flushed  every position up to it is in sstables, not only in the WAL:
//	         the head captured before an explicit flush (at Open, at
//	         Close, and every FlushInterval while appends happen)
//
// At open the log must reach head, and positions (flushed, head of the
// log] must all be there: losing an older WAL file keeps the log's end and
// punches a hole, which only this count sees. Positions up to flushed are
// in sstables, which Pebble's MANIFEST lists: a missing one fails the open
// (and a damaged one fails the validation of tables.go). The count reads
// the keys written since the last flush: nothing after a clean shutdown,
// at most FlushInterval of appends after a crash.

const (
	logMarkFile = "kmsbackup-log-mark"
	markPrefix  = "kmsbackup log mark v1"

	// DefaultMarkInterval is how often the mark is written while appends
	// happen.
	DefaultMarkInterval = time.Second
	// DefaultFlushInterval is how often the memtable is flushed while
	// writes happen (Options.FlushInterval): in the log store so that the
	// flushed position advances, in both databases so that a write-ahead
	// log file holds about this long of writes.
	DefaultFlushInterval = 2 * time.Minute

	// maxMissingRanges bounds the ranges a LostPositionsError lists.
	maxMissingRanges = 8
)

// logMark is the content of the mark file.
type logMark struct {
	head, flushed uint64
}

func (m logMark) encode() []byte {
	body := fmt.Sprintf("%s head=%d flushed=%d", markPrefix, m.head, m.flushed)
	return fmt.Appendf(nil, "%s crc=%08x\n", body, crc32.ChecksumIEEE([]byte(body)))
}

func parseMark(b []byte) (logMark, bool) {
	line := strings.TrimSuffix(string(b), "\n")
	body, crc, ok := strings.Cut(line, " crc=")
	if !ok || fmt.Sprintf("%08x", crc32.ChecksumIEEE([]byte(body))) != crc {
		return logMark{}, false
	}
	var m logMark
	if n, err := fmt.Sscanf(body, markPrefix+" head=%d flushed=%d", &m.head, &m.flushed); err != nil || n != 2 || m.flushed > m.head {
		return logMark{}, false
	}
	return m, true
}

// readMark reads the mark of the store in dir; ok is false when there is
// none (a new store, or one older than the mark).
func readMark(fs vfs.FS, dir string) (m logMark, ok bool, err error) {
	path := fs.PathJoin(dir, logMarkFile)
	b, ok, err := readSmallFile(fs, path)
	if err != nil {
		return logMark{}, false, storeErr("read "+path, err)
	}
	if !ok {
		return logMark{}, false, nil
	}
	m, ok = parseMark(b)
	if !ok {
		return logMark{}, false, damaged(logStoreKind, "open", path, "", errors.New("the event log's high-water mark does not parse"))
	}
	return m, true, nil
}

// PositionRange is a range of log positions, both ends included.
type PositionRange struct{ First, Last uint64 }

func (r PositionRange) String() string {
	if r.First == r.Last {
		return fmt.Sprint(r.First)
	}
	return fmt.Sprintf("%d-%d", r.First, r.Last)
}

// LostPositionsError reports acknowledged events missing from the log: the
// log ends before its high-water mark, or positions are missing after the
// last flushed one. It wraps domain.ErrCorrupt.
type LostPositionsError struct {
	// Mark is the file holding the high-water mark.
	Mark string
	// Head is the log's last position; Acknowledged the mark's head.
	Head, Acknowledged uint64
	// Missing lists the missing positions, in order (at most eight ranges;
	// MoreRanges counts the others).
	Missing    []PositionRange
	MoreRanges int
}

// TailOnly reports whether the only positions missing are at the end of
// the log: what is left is contiguous, and appends could go on after it.
func (e *LostPositionsError) TailOnly() bool {
	return e.MoreRanges == 0 && len(e.Missing) == 1 && e.Missing[0].First == e.Head+1
}

// Count is the number of missing positions listed.
func (e *LostPositionsError) Count() uint64 {
	var n uint64
	for _, r := range e.Missing {
		n += r.Last - r.First + 1
	}
	return n
}

func (e *LostPositionsError) Error() string {
	parts := make([]string, len(e.Missing))
	for i, r := range e.Missing {
		parts[i] = r.String()
	}
	list := strings.Join(parts, ", ")
	if e.MoreRanges > 0 {
		list += fmt.Sprintf(" and %d more ranges", e.MoreRanges)
	}
	return fmt.Sprintf("the event log has lost acknowledged events: positions %s are missing "+
		"(the log ends at %d; %s records %d acknowledged): a write-ahead log file of the store was removed or damaged",
		list, e.Head, e.Mark, e.Acknowledged)
}

// Unwrap marks the error as corruption.
func (e *LostPositionsError) Unwrap() error { return domain.ErrCorrupt }

// checkMark checks the log of db (read-only) against the mark: nil when
// nothing is missing or there is no mark.
func checkMark(fs vfs.FS, dir string, db *pebble.DB, head uint64) error {
	m, ok, err := readMark(fs, dir)
	if err != nil || !ok {
		return err
	}
	lost := &LostPositionsError{Mark: fs.PathJoin(dir, logMarkFile), Head: head, Acknowledged: m.head}
	add := func(r PositionRange) {
		if len(lost.Missing) < maxMissingRanges {
			lost.Missing = append(lost.Missing, r)
		} else {
			lost.MoreRanges++
		}
	}
	from := min(m.flushed, head)
	if head > from {
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: logKey(from + 1), UpperBound: logKey(head + 1)})
		if err != nil {
			return storeErr("check the log against its mark", err)
		}
		want := from + 1
		for valid := it.First(); valid; valid = it.Next() {
			pos, ok := getUint64(it.Key()[1:])
			if !ok {
				_ = it.Close()
				return domain.Corruption("pebblestore: log key of %d bytes", len(it.Key()))
			}
			if pos > want {
				add(PositionRange{want, pos - 1})
			}
			want = pos + 1
		}
		if err := errors.Join(it.Error(), it.Close()); err != nil {
			return storeErr("check the log against its mark", err)
		}
	}
	if head < m.head {
		add(PositionRange{head + 1, m.head})
	}
	if len(lost.Missing) == 0 {
		return nil
	}
	return lost
}

// SyncMark writes the high-water mark now: head is the last acknowledged
// position, and when flush is set the memtable is flushed first so that
// the flushed position reaches it. Open, Close and a background loop call
// it; tests call it to make the mark current.
//
// Errors: domain.ErrUnavailable when the store is closed or the flush or
// the write fails (the previous mark stays). Safe for concurrent use.
func (s *Store) SyncMark(flush bool) error {
	if err := s.enter("write the log mark"); err != nil {
		return err
	}
	defer s.leave()
	return s.syncMark(flush, false)
}

// syncMark is SyncMark; the caller holds life (or is Close). The flush
// happens when flush is set and the log advanced since the last one, or
// when always is set (Close: the data keys and blobs written since leave
// the write-ahead log too, so that the next start replays nothing).
func (s *Store) syncMark(flush, always bool) error {
	s.markMu.Lock()
	defer s.markMu.Unlock()
	head := s.durable.Load()
	m := s.mark
	if (flush && head > m.flushed) || always {
		if err := s.db.Flush(); err != nil {
			return storeErr("flush for the log mark", err)
		}
		m.flushed = head
	}
	m.head = max(m.head, head)
	if m == s.mark && s.markWritten {
		return nil
	}
	if err := writeFileAtomic(s.fs, s.dir, logMarkFile, m.encode()); err != nil {
		return storeErr("write the log mark", err)
	}
	s.mark, s.markWritten = m, true
	return nil
}

// markLoop writes the mark every markEvery while appends happen, and
// flushes every flushEvery; it stops with the store.
func (s *Store) markLoop(markEvery, flushEvery time.Duration) {
	defer close(s.markDone)
	t := time.NewTicker(markEvery)
	defer t.Stop()
	lastFlush := time.Now()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		flush := flushEvery > 0 && time.Since(lastFlush) >= flushEvery
		if err := s.SyncMark(flush); err != nil {
			if !s.isClosed() {
				s.logger.Warn("pebblestore: cannot write the event log's high-water mark", "error", err)
			}
			continue
		}
		if flush {
			lastFlush = time.Now()
		}
	}
}

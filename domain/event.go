package domain

import (
	"fmt"
	"time"
)

// Event is the envelope of one recorded change. The log assigns Revision
// (0-based within the stream) and Position (global, starting at 1) when the
// event is appended; everything else is set by the writer.
type Event struct {
	ID         EventID
	Stream     string
	Revision   uint64
	Position   uint64
	Type       string
	Schema     uint16
	OccurredAt time.Time
	Account    AccountID
	Region     string
	Instance   InstanceID
	Data       []byte // the payload, encoded with EncodeData
}

// ExpectedRevision is the optimistic-concurrency condition of an append.
type ExpectedRevision struct {
	kind uint8
	rev  uint64
}

const (
	expectAny uint8 = iota
	expectNoStream
	expectExists
	expectExact
)

var (
	// ExpectAny appends whatever the stream holds.
	ExpectAny = ExpectedRevision{kind: expectAny}
	// ExpectNoStream appends only if the stream has no event yet.
	ExpectNoStream = ExpectedRevision{kind: expectNoStream}
	// ExpectStreamExists appends only if the stream has at least one event.
	ExpectStreamExists = ExpectedRevision{kind: expectExists}
)

// ExpectRevision appends only if the stream's last event has revision r.
func ExpectRevision(r uint64) ExpectedRevision { return ExpectedRevision{kind: expectExact, rev: r} }

// IsAny, IsNoStream, IsStreamExists report the condition's kind; Exact
// returns the revision of an exact condition.
func (e ExpectedRevision) IsAny() bool          { return e.kind == expectAny }
func (e ExpectedRevision) IsNoStream() bool     { return e.kind == expectNoStream }
func (e ExpectedRevision) IsStreamExists() bool { return e.kind == expectExists }
func (e ExpectedRevision) Exact() (uint64, bool) {
	return e.rev, e.kind == expectExact
}

// Check reports whether a stream whose head is (exists, head) satisfies e.
func (e ExpectedRevision) Check(exists bool, head uint64) bool {
	switch e.kind {
	case expectAny:
		return true
	case expectNoStream:
		return !exists
	case expectExists:
		return exists
	default:
		return exists && head == e.rev
	}
}

func (e ExpectedRevision) String() string {
	switch e.kind {
	case expectAny:
		return "any"
	case expectNoStream:
		return "no-stream"
	case expectExists:
		return "stream-exists"
	default:
		return fmt.Sprintf("revision %d", e.rev)
	}
}

// WrongRevision builds the typed error for a lost race.
func WrongRevision(stream string, expected ExpectedRevision, exists bool, head uint64) error {
	actual := "no stream"
	if exists {
		actual = fmt.Sprintf("revision %d", head)
	}
	return &Error{Op: "append", Kind: ErrWrongExpectedRevision, Item: stream,
		Msg: fmt.Sprintf("expected %s, stream is at %s", expected, actual), Hint: "reload and retry"}
}

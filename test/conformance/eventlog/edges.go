package eventlog

import (
	"errors"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
)

func (s *suite) invalidInput(t *testing.T) {
	l, ctx := s.open(t)
	st := s.stream("invalid")
	e1, e2 := s.event(st, 1), s.event(st, 2)
	other := e2
	other.Stream = st + "-other"
	unnamed := e2
	unnamed.Stream = ""
	zero := e2
	zero.ID = domain.EventID{}
	dup := e2
	dup.ID = e1.ID
	cases := []struct {
		name   string
		stream string
		evs    []domain.Event
	}{
		{"empty batch", st, nil},
		{"empty stream name", "", []domain.Event{unnamed}},
		{"event of another stream", st, []domain.Event{e1, other}},
		{"event without stream", st, []domain.Event{e1, unnamed}},
		{"zero event ID", st, []domain.Event{e1, zero}},
		{"duplicate event IDs", st, []domain.Event{e1, dup}},
	}
	for _, c := range cases {
		_, err := l.Append(ctx, c.stream, domain.ExpectAny, c.evs)
		if !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("%s: err = %v, want ErrInvalidArgument", c.name, err)
		}
	}
	if got := mustReadStream(t, ctx, l, st, 0, false, 10); len(got) != 0 {
		t.Errorf("invalid appends wrote %d events", len(got))
	}
	// The valid event of a rejected batch can still be appended.
	mustAppend(t, ctx, l, st, domain.ExpectNoStream, []domain.Event{e1})
}

func (s *suite) closeLog(t *testing.T) {
	l, ctx := s.open(t)
	st := s.stream("close")
	mustAppend(t, ctx, l, st, domain.ExpectNoStream, s.events(st, 1))
	sub, err := l.Subscribe(ctx, mustHead(t, ctx, l))
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	defer sub.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := sub.Next(ctx)
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := l.close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, domain.ErrUnavailable) {
			t.Errorf("blocked Next when the log closes: %v, want ErrUnavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a blocked Next did not return within 5s of the log closing")
	}
	if _, err := l.Append(ctx, st, domain.ExpectAny, s.events(st, 1)); !errors.Is(err, domain.ErrUnavailable) {
		t.Errorf("Append after Close: %v, want ErrUnavailable", err)
	}
}

package chunkread

import (
	"errors"
	"io"
	"testing"
)

func chunks(parts ...string) func([]byte) ([]byte, error) {
	i := 0
	return func(buf []byte) ([]byte, error) {
		if i == len(parts) {
			return buf, io.EOF
		}
		buf = append(buf, parts[i]...)
		i++
		return buf, nil
	}
}

func TestReadsEveryChunkThenEOF(t *testing.T) {
	r := &Reader{Load: chunks("ab", "", "cde", "f")}
	got, err := io.ReadAll(io.LimitReader(r, 100))
	if err != nil || string(got) != "abcdef" {
		t.Fatalf("ReadAll = %q, %v; want abcdef", got, err)
	}
	if n, err := r.Read(make([]byte, 4)); n != 0 || err != io.EOF {
		t.Fatalf("Read after the end = %d, %v; want 0, io.EOF", n, err)
	}
	if !r.Done() {
		t.Fatal("Done is false after io.EOF")
	}
}

func TestAnErrorSticksAfterWhatWasLoaded(t *testing.T) {
	bad := errors.New("damaged")
	calls := 0
	r := &Reader{Load: func(buf []byte) ([]byte, error) {
		calls++
		if calls == 1 {
			return append(buf, "xy"...), nil
		}
		return buf, bad
	}}
	got, err := io.ReadAll(r)
	if !errors.Is(err, bad) || string(got) != "xy" {
		t.Fatalf("ReadAll = %q, %v; want xy, the load's error", got, err)
	}
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, bad) || calls != 2 {
		t.Fatalf("Read again = %v after %d loads; want the same error, no more loads", err, calls)
	}
	if r.Done() {
		t.Fatal("Done after a failure")
	}
}

func TestCloseBeforeTheEnd(t *testing.T) {
	closed := errors.New("closed")
	r := &Reader{Load: chunks("abc", "def"), Closed: closed}
	if _, err := r.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, closed) {
		t.Fatalf("Read after Close = %v; want Closed", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

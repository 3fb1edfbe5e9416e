package rawconn

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Dial opens a connection to addr whose reads and writes fail after bound;
// it is closed when the test ends.
func Dial(tb testing.TB, addr string, bound time.Duration) net.Conn {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(bound))
	return c
}

// StatusLine waits until the server answers on c, and returns its status
// line, or closes c, and returns "". It fails the test when the bound of
// Dial passes first.
func StatusLine(tb testing.TB, c net.Conn) string {
	tb.Helper()
	line, err := bufio.NewReader(c).ReadString('\n')
	if TimedOut(err) {
		tb.Fatal("the server neither answered nor closed the connection")
	}
	return strings.TrimSpace(line)
}

// TimedOut reports whether err is a network timeout (the bound passed).
func TimedOut(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// ClosedWhenIdle sends request on c, reads its response whole, then waits
// for the server to close the idle connection; it fails the test when the
// server sends anything more, or when the bound of Dial passes first.
func ClosedWhenIdle(tb testing.TB, c net.Conn, request string) {
	tb.Helper()
	if _, err := io.WriteString(c, request); err != nil {
		tb.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		tb.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch _, err := br.ReadByte(); {
	case err == nil:
		tb.Fatal("the server sent more after its answer")
	case TimedOut(err):
		tb.Fatal("an idle connection stayed open")
	}
}

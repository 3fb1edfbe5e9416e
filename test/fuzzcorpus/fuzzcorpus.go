package fuzzcorpus

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Seed is one file of a corpus: its name and the []byte it holds.
type Seed struct {
	Name string
	Data []byte
}

const (
	prefix = "go test fuzz v1\n[]byte("
	suffix = ")\n"
)

// Encode is the content of the corpus file of one []byte.
func Encode(data []byte) []byte {
	return fmt.Appendf(nil, "%s%q%s", prefix, data, suffix)
}

// Write writes seeds into dir (made if missing), a file each, when the
// environment variable env is "1"; otherwise it skips tb, saying so.
func Write(tb testing.TB, env, dir string, seeds []Seed) {
	tb.Helper()
	if os.Getenv(env) != "1" {
		tb.Skipf("set %s=1 to write %s", env, dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	for _, s := range seeds {
		if err := os.WriteFile(filepath.Join(dir, s.Name), Encode(s.Data), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// Check fails tb for every seed whose file in dir is missing, is not one
// []byte in the "go test fuzz v1" encoding, or holds other bytes; each
// failure says to regenerate with env=1 and the test named writer.
func Check(tb testing.TB, env, writer, dir string, seeds []Seed) {
	tb.Helper()
	hint := fmt.Sprintf("(regenerate with %s=1 go test -run %s)", env, writer)
	for _, s := range seeds {
		raw, err := os.ReadFile(filepath.Join(dir, s.Name))
		if err != nil {
			tb.Errorf("%v %s", err, hint)
			continue
		}
		text, ok := strings.CutPrefix(string(raw), prefix)
		text, ok2 := strings.CutSuffix(text, suffix)
		data, err := strconv.Unquote(text)
		switch {
		case !ok || !ok2 || err != nil:
			tb.Errorf("%s: not a go test fuzz v1 file of one []byte %s", s.Name, hint)
		case !bytes.Equal([]byte(data), s.Data):
			tb.Errorf("%s is out of date %s", s.Name, hint)
		}
	}
}

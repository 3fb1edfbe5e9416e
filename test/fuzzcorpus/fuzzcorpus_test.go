package fuzzcorpus

import (
	"os"
	"path/filepath"
	"testing"
)

// recorder keeps what Check reports instead of failing the test.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper()                  {}
func (r *recorder) Errorf(string, ...any)    { r.errors = append(r.errors, "error") }
func (r *recorder) Fatal(args ...any)        { r.TB.Fatal(args...) }
func (r *recorder) Skipf(f string, a ...any) { r.TB.Skipf(f, a...) }

func TestWriteThenCheck(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "testdata", "fuzz", "FuzzX")
	seeds := []Seed{{"empty", nil}, {"binary", []byte{0, 1, 0xff, '"', '\\', 'a'}}, {"text", []byte("é\n")}}
	t.Setenv("FUZZCORPUS_TEST_WRITE", "1")
	Write(t, "FUZZCORPUS_TEST_WRITE", dir, seeds)
	r := &recorder{TB: t}
	Check(r, "FUZZCORPUS_TEST_WRITE", "TestW", dir, seeds)
	if len(r.errors) != 0 {
		t.Fatalf("a corpus just written: %d failures", len(r.errors))
	}

	if err := os.WriteFile(filepath.Join(dir, "text"), []byte("go test fuzz v1\nstring(\"é\\n\")\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "empty")); err != nil {
		t.Fatal(err)
	}
	changed := []Seed{{"empty", nil}, {"binary", []byte{0, 1}}, {"text", []byte("é\n")}}
	r = &recorder{TB: t}
	Check(r, "FUZZCORPUS_TEST_WRITE", "TestW", dir, changed)
	if len(r.errors) != 3 {
		t.Fatalf("a missing file, one out of date, one not a []byte: %d failures, want 3", len(r.errors))
	}
}

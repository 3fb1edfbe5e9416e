package e2e

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/kmsbackup/kmsbackup/adapters/httpapi"
	"github.com/kmsbackup/kmsbackup/domain"
)

// usage is what a directory tree takes: the bytes its files hold
// (apparent size, as ls shows) and the bytes the file system allocated for
// them (as du shows), by top-level entry and file kind.
type usage struct {
	apparent, allocated int64
	byKind              map[string][2]int64 // kind -> apparent, allocated
}

func diskUsage(t *testing.T, dir string) usage {
	t.Helper()
	u := usage{byKind: map[string][2]int64{}}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // gone since the directory was read: a running server's temporary file, renamed
		}
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			t.Skip("no block counts on this system")
		}
		rel, _ := filepath.Rel(dir, path)
		top, _, _ := strings.Cut(rel, string(filepath.Separator))
		kind := top + "/*" + filepath.Ext(path)
		if top == rel {
			kind = rel
		}
		k := u.byKind[kind]
		k[0] += info.Size()
		k[1] += st.Blocks * 512
		u.byKind[kind] = k
		u.apparent += info.Size()
		u.allocated += st.Blocks * 512
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// onDisk is what the files whose names end in suffix take on disk: ".sst"
// the data at rest (compressed sstables of both databases), ".log" the
// write-ahead logs.
func (u usage) onDisk(suffix string) int64 {
	var n int64
	for k, v := range u.byKind {
		if strings.HasSuffix(k, suffix) {
			n += v[1]
		}
	}
	return n
}

func (u usage) String() string {
	kinds := make([]string, 0, len(u.byKind))
	for k := range u.byKind {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var b strings.Builder
	fmt.Fprintf(&b, "apparent %d bytes, allocated %d bytes\n", u.apparent, u.allocated)
	for _, k := range kinds {
		fmt.Fprintf(&b, "  %-28s %12d %12d\n", k, u.byKind[k][0], u.byKind[k][1])
	}
	return b.String()
}

// parallel runs f(0) to f(n-1), workers at a time, and fails the test on
// the first error.
func parallel(t *testing.T, n, workers int, f func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				if err := f(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestDiskUseCloseToTheData fills a real server through its API (20,000
// keys in 8 KMS instances, 5,000 secrets, a backup of one instance enabled
// and a day of its schedule) and measures its data directory as du does
// after each step: the blocks allocated must stay within twice the bytes
// its files hold, and 8 MiB (for the blocks small files round up to, and
// the write-ahead log files reserved ahead of their writes). Pebble
// reserved each write-ahead log file in steps of 110% of the memtable size
// (64 MiB) and kept used ones for recycling: with two databases, 11 MB of
// files took 451 MB of disk. The last log lines give the bytes per key and
// per secret and the backup's that README.md quotes ("Disk use").
func TestDiskUseCloseToTheData(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 20,000 keys")
	}
	s := StartServer(t, "", "--clock", "manual", "--clock-start", "2026-05-01T09:30:00Z")
	const (
		instances = 8
		keys      = 20000
		secrets   = 5000
		writers   = 16
	)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: writers}}
	t.Cleanup(hc.CloseIdleConnections)
	c := &httpapi.Client{Base: "http://" + s.Addr, Token: s.DevTok, HTTP: hc}
	ctx := context.Background()
	measure := func(step string) usage {
		t.Helper()
		u := diskUsage(t, s.DataDir)
		t.Logf("%s: %s", step, u)
		// A small file takes a whole block, and a write-ahead log file is
		// reserved at least 1 MiB ahead: 8 MiB covers both databases'
		// current log files and up to three kept ones each.
		if u.allocated > 2*u.apparent+8<<20 {
			t.Errorf("%s: the data directory takes %d bytes on disk for %d bytes of files (%.1fx), want at most 2x:\n%s",
				step, u.allocated, u.apparent, float64(u.allocated)/float64(u.apparent), u)
		}
		return u
	}
	// restart stops the server, measures its data directory, starts it
	// again and measures it again: a start replays and flushes the
	// write-ahead logs, so that the data is then at rest in sstables.
	restart := func(step string) usage {
		t.Helper()
		s.Stop()
		measure(step + ", stopped")
		s.Restart()
		c.Base = "http://" + s.Addr
		return measure(step + ", restarted")
	}

	start := restart("started")

	quota := int64(domain.MaxQuota)
	ins := make([]string, instances)
	for i := range ins {
		in, err := c.CreateInstance(ctx, httpapi.CreateInstanceRequest{Region: "cn-hangzhou", KeyQuota: &quota, SecretQuota: &quota})
		if err != nil {
			t.Fatal(err)
		}
		ins[i] = in.ID
	}
	keyIDs := make([]string, keys)
	parallel(t, keys, writers, func(i int) error {
		k, err := c.CreateKey(ctx, httpapi.CreateKeyRequest{Instance: ins[i%instances], Description: fmt.Sprintf("data key %d", i)})
		keyIDs[i] = k.ID
		return err
	})
	keysLive := measure(fmt.Sprintf("%d keys", keys))
	withKeys := restart(fmt.Sprintf("%d keys", keys))

	parallel(t, secrets, writers, func(i int) error {
		_, err := c.CreateSecret(ctx, httpapi.CreateSecretRequest{Name: fmt.Sprintf("app-%d.db-password", i), Instance: ins[i%instances],
			KeyID: keyIDs[i%instances], Value: []byte(fmt.Sprintf("a 32-byte password, number %05d", i))})
		return err
	})
	measure(fmt.Sprintf("and %d secrets", secrets))
	withSecrets := restart(fmt.Sprintf("and %d secrets", secrets))

	bs, err := c.ListBackupInstances(ctx, false, 0, "")
	if err != nil || len(bs.Items) != 1 {
		t.Fatalf("backup instances %+v, %v; want the default one", bs, err)
	}
	if _, err := c.EnableBackupInstance(ctx, bs.Items[0].ID, httpapi.EnableBackupInstanceRequest{KMSInstance: ins[0], Alias: "disk"}); err != nil {
		t.Fatal(err)
	}
	// Once the clock has moved, a restart with the same --clock-start
	// would be refused (the clock never goes back): from here on the
	// server keeps running.
	measure(fmt.Sprintf("and a backup of one instance (%d keys, %d secrets)", keys/instances, secrets/instances))
	// A day of 1% churn: 25 rotations spread over the day, then its
	// incrementals and the next full.
	for i := range 25 {
		if _, err := c.RotateKey(ctx, keyIDs[i*instances], ""); err != nil {
			t.Fatal(err)
		}
		if _, err := c.AdvanceClock(ctx, "57m"); err != nil {
			t.Fatal(err)
		}
	}
	measure("and a day of its schedule")
	s.Stop()
	stopped := measure("stopped")

	// The figures README.md quotes ("Disk use").
	t.Logf("at rest (sstables): %d bytes a key, %d a secret; the backup of an instance of %d items with its first day: %d bytes",
		(withKeys.onDisk(".sst")-start.onDisk(".sst"))/keys, (withSecrets.onDisk(".sst")-withKeys.onDisk(".sst"))/secrets,
		(keys+secrets)/instances, stopped.onDisk(".sst")-withSecrets.onDisk(".sst"))
	t.Logf("running, before a flush: the write-ahead logs took %d bytes a key created (%d of %d bytes in all)",
		keysLive.onDisk(".log")/keys, keysLive.onDisk(".log"), keysLive.allocated)
}

package e2e

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/kmsbackup/kmsbackup/adapters/httpapi"
	"github.com/kmsbackup/kmsbackup/domain"
)

// TestConcurrentRequestsKeepRules fires parallel requests at the real server:
// quotas and uniqueness within a region must hold however they interleave.
func TestConcurrentRequestsKeepRules(t *testing.T) {
	s := StartServer(t, "")
	c := &httpapi.Client{Base: "http://" + s.Addr, Token: s.DevTok}
	ctx := context.Background()
	q := int64(5)
	in, err := c.CreateInstance(ctx, httpapi.CreateInstanceRequest{Region: "cn-shanghai", KeyQuota: &q})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.CreateKey(ctx, httpapi.CreateKeyRequest{Instance: in.ID, Description: fmt.Sprint(i)})
		}()
	}
	wg.Wait()
	ok, quota := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, domain.ErrQuotaExceeded):
			quota++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 5 || quota != n-5 {
		t.Fatalf("%d keys created and %d refused for quota, want 5 and %d", ok, quota, n-5)
	}
	keys, err := c.ListKeys(ctx, in.ID, 0, "")
	if err != nil || len(keys.Items) != 5 {
		t.Fatalf("list keys: %d items, %v", len(keys.Items), err)
	}

	// Two instances of one region race for the same secret names.
	in2, err := c.CreateInstance(ctx, httpapi.CreateInstanceRequest{Region: "cn-shanghai"})
	if err != nil {
		t.Fatal(err)
	}
	k2, err := c.CreateKey(ctx, httpapi.CreateKeyRequest{Instance: in2.ID})
	if err != nil {
		t.Fatal(err)
	}
	targets := []struct{ inst, key string }{{in.ID, keys.Items[0].ID}, {in2.ID, k2.ID}}
	const names = 5
	results := make([][2]error, names)
	for i := range names {
		for j, tg := range targets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, results[i][j] = c.CreateSecret(ctx, httpapi.CreateSecretRequest{Name: fmt.Sprintf("race-%d", i),
					Instance: tg.inst, KeyID: tg.key, Value: []byte("v")})
			}()
		}
	}
	wg.Wait()
	for i, r := range results {
		won := 0
		for _, err := range r {
			if err == nil {
				won++
			} else if !errors.Is(err, domain.ErrAlreadyExists) {
				t.Errorf("race-%d: unexpected error %v", i, err)
			}
		}
		if won != 1 {
			t.Fatalf("race-%d: %d creates succeeded, want exactly 1", i, won)
		}
	}
}

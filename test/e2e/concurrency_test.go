package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/adapters/httpapi"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/test/workload"
)

// apiFront drives one instance of a running server through its HTTP API.
type apiFront struct {
	c        *httpapi.Client
	instance string
}

var _ workload.Front = apiFront{}

func apiKeyVersion(k httpapi.Key) workload.Version {
	v := k.Versions[len(k.Versions)-1]
	return workload.Version{Item: k.ID, Number: v.Version, Mark: v.CreatedAt.String()}
}

func apiSecretVersion(s httpapi.Secret) workload.Version {
	v := s.Versions[len(s.Versions)-1]
	return workload.Version{Item: s.Name, Number: v.Version, Mark: v.CreatedAt.String()}
}

func (f apiFront) CreateKey(ctx context.Context) (workload.Version, error) {
	k, err := f.c.CreateKey(ctx, httpapi.CreateKeyRequest{Instance: f.instance})
	if err != nil {
		return workload.Version{}, err
	}
	return apiKeyVersion(k), nil
}

func (f apiFront) RotateKey(ctx context.Context, id string) (workload.Version, error) {
	k, err := f.c.RotateKey(ctx, id, "")
	if err != nil {
		return workload.Version{}, err
	}
	return apiKeyVersion(k), nil
}

func (f apiFront) CreateSecret(ctx context.Context, name, key string, value []byte) (workload.Version, error) {
	s, err := f.c.CreateSecret(ctx, httpapi.CreateSecretRequest{Name: name, Instance: f.instance, KeyID: key, Value: value})
	if err != nil {
		return workload.Version{}, err
	}
	return apiSecretVersion(s), nil
}

func (f apiFront) RotateSecret(ctx context.Context, name string, value []byte) (workload.Version, error) {
	s, err := f.c.RotateSecret(ctx, name, httpapi.RotateSecretRequest{Value: value})
	if err != nil {
		return workload.Version{}, err
	}
	return apiSecretVersion(s), nil
}

func (f apiFront) KeyVersions(ctx context.Context, id string) ([]workload.Version, error) {
	k, err := f.c.GetKey(ctx, id, "")
	if err != nil {
		return nil, err
	}
	out := make([]workload.Version, len(k.Versions))
	for i, v := range k.Versions {
		out[i] = workload.Version{Item: id, Number: v.Version, Mark: v.CreatedAt.String()}
	}
	return out, nil
}

func (f apiFront) SecretValue(ctx context.Context, name string, version uint32) ([]byte, error) {
	v, err := f.c.GetSecretValue(ctx, name, "", int(version))
	if err != nil {
		return nil, err
	}
	if v.Version != version {
		return nil, fmt.Errorf("asked for version %d of secret %s, got version %d", version, name, v.Version)
	}
	return v.Value, nil
}

// TestConcurrentWritersOneInstanceOverHTTP is test/backup's
// TestConcurrentWritersOneInstance through the real server's HTTP API: 16
// clients create keys and secrets and rotate them, each on items of its
// own, in one instance, for 10 seconds. No request may fail (a 409
// conflict because another client's write landed first least of all), and
// every acknowledged version reads back over the API.
func TestConcurrentWritersOneInstanceOverHTTP(t *testing.T) {
	s := StartServer(t, "")
	const writers = 16
	// One connection per client, kept alive, as separate clients would.
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: writers}}
	t.Cleanup(hc.CloseIdleConnections)
	c := &httpapi.Client{Base: "http://" + s.Addr, Token: s.DevTok, HTTP: hc}
	quota := int64(domain.MaxQuota)
	in, err := c.CreateInstance(context.Background(), httpapi.CreateInstanceRequest{Region: "cn-hangzhou", KeyQuota: &quota, SecretQuota: &quota})
	if err != nil {
		t.Fatal(err)
	}
	res := workload.Run(t, apiFront{c: c, instance: in.ID}, workload.Options{Writers: writers, Duration: 10 * time.Second, Names: "http"})
	for op, n := range res.Ops {
		if n == 0 {
			t.Errorf("operation %d never succeeded", op)
		}
	}
}

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

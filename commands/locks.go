package commands

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/kmsbackup/kmsbackup/domain"
)

// keyedLocks is a mutex per key (a stream, a name within a region), made on
// first use and dropped when no one holds or waits for it, so that it costs
// memory only for the keys in use. The zero value is ready. Waiters are
// served roughly in arrival order.
type keyedLocks struct {
	mu sync.Mutex
	m  map[string]*keyedLock
}

type keyedLock struct {
	held chan struct{} // capacity 1: full while held
	refs int           // holders and waiters, under keyedLocks.mu
}

// lock waits until it holds key's lock, or ctx is done (then it fails with
// domain.ErrUnavailable and holds nothing). Call unlock exactly once.
func (l *keyedLocks) lock(ctx context.Context, key string) (unlock func(), err error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*keyedLock{}
	}
	k := l.m[key]
	if k == nil {
		k = &keyedLock{held: make(chan struct{}, 1)}
		l.m[key] = k
	}
	k.refs++
	l.mu.Unlock()
	select {
	case k.held <- struct{}{}:
		return func() {
			<-k.held
			l.release(key, k)
		}, nil
	case <-ctx.Done():
		l.release(key, k)
		return nil, errors.Join(domain.ErrUnavailable, fmt.Errorf("waiting for the other writers of %s: %w", key, ctx.Err()))
	}
}

func (l *keyedLocks) release(key string, k *keyedLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if k.refs--; k.refs == 0 {
		delete(l.m, key)
	}
}

package httpedge

import (
	"container/list"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiters holds one token bucket of failed authentications per client, at
// most max of them: the least recently failed client is forgotten first
// (forgetting one only lets it start afresh). A client never seen, or
// forgotten, is admitted.
type limiters struct {
	mu    sync.Mutex
	every rate.Limit
	burst int
	max   int
	order *list.List // of *client, most recently failed first
	index map[string]*list.Element
}

type client struct {
	key string
	lim *rate.Limiter
}

func newLimiters(burst int, interval time.Duration, max int) *limiters {
	return &limiters{every: rate.Every(interval), burst: burst, max: max, order: list.New(), index: map[string]*list.Element{}}
}

// admit reports whether key may try now, else how long until it may.
func (l *limiters) admit(key string, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.index[key]
	if !ok {
		return 0, true
	}
	tokens := el.Value.(*client).lim.TokensAt(now)
	if tokens >= 1 {
		return 0, true
	}
	// To the millisecond: the tokens are a float.
	return time.Duration(math.Round((1-tokens)/float64(l.every)*1000)) * time.Millisecond, false
}

// fail takes one token from key's bucket (none left: nothing changes).
func (l *limiters) fail(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.index[key]
	if ok {
		l.order.MoveToFront(el)
	} else {
		el = l.order.PushFront(&client{key: key, lim: rate.NewLimiter(l.every, l.burst)})
		l.index[key] = el
		for l.order.Len() > l.max {
			old := l.order.Back()
			delete(l.index, old.Value.(*client).key)
			l.order.Remove(old)
		}
	}
	el.Value.(*client).lim.AllowN(now, 1)
}

// len is the number of clients remembered.
func (l *limiters) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.order.Len()
}

package submit

import (
	"sync"
	"time"
)

// rateLimiter is a token bucket per user: n messages per window, refilled
// continuously, with a burst of n. Tokens are checked at MAIL and taken
// only when a message has been queued. It is safe for concurrent use.
type rateLimiter struct {
	n      float64 // tokens per window; <= 0: no limit
	window time.Duration
	now    func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxBuckets bounds the map: beyond it, full buckets are forgotten.
const maxBuckets = 10_000

func newRateLimiter(n int, window time.Duration) *rateLimiter {
	return &rateLimiter{n: float64(n), window: window, now: time.Now, buckets: map[string]*bucket{}}
}

// get returns key's bucket, refilled up to now. Call with mu held.
func (r *rateLimiter) get(key string) *bucket {
	now := r.now()
	b := r.buckets[key]
	if b == nil {
		if len(r.buckets) >= maxBuckets {
			r.pruneLocked(now)
		}
		b = &bucket{tokens: r.n, last: now}
		r.buckets[key] = b
		return b
	}
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(r.n, b.tokens+r.n*float64(el)/float64(r.window))
		b.last = now
	}
	return b
}

func (r *rateLimiter) pruneLocked(now time.Time) {
	for k, b := range r.buckets {
		if b.tokens+r.n*float64(now.Sub(b.last))/float64(r.window) >= r.n {
			delete(r.buckets, k)
		}
	}
}

// allow reports whether key may send one more message now.
func (r *rateLimiter) allow(key string) bool {
	if r.n <= 0 {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.get(key).tokens >= 1
}

// take uses one of key's tokens.
func (r *rateLimiter) take(key string) {
	if r.n <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.get(key).tokens--
}

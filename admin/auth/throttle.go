package auth

import (
	"sync"
	"time"
)

// ThrottleConfig configures a Throttle; zero values take the defaults shown.
type ThrottleConfig struct {
	// Free is the number of failures allowed before delays start (5).
	Free int
	// Base is the first delay; each further failure doubles it (1 s).
	Base time.Duration
	// Max caps the delay (15 min).
	Max time.Duration
	// Window is how long after its last failure a key is forgotten (15 min,
	// at least Max).
	Window time.Duration
	// MaxKeys bounds the memory used (100 000 keys).
	MaxKeys int
}

// Throttle slows down password guessing: after Free failures for a key
// (a user name, a client address), each further attempt is refused for an
// exponentially growing delay. It is safe for concurrent use.
type Throttle struct {
	cfg ThrottleConfig
	now func() time.Time

	mu   sync.Mutex
	keys map[string]*failures
}

type failures struct {
	n     int
	last  time.Time
	until time.Time
}

// NewThrottle returns a Throttle.
func NewThrottle(cfg ThrottleConfig) *Throttle {
	if cfg.Free <= 0 {
		cfg.Free = 5
	}
	if cfg.Base <= 0 {
		cfg.Base = time.Second
	}
	if cfg.Max <= 0 {
		cfg.Max = 15 * time.Minute
	}
	if cfg.Window < cfg.Max {
		cfg.Window = max(cfg.Max, 15*time.Minute)
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = 100_000
	}
	return &Throttle{cfg: cfg, now: time.Now, keys: make(map[string]*failures)}
}

// Wait returns how long key must wait before its next attempt (0: go on).
func (t *Throttle) Wait(key string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.keys[key]
	if f == nil {
		return 0
	}
	now := t.now()
	if now.Sub(f.last) > t.cfg.Window {
		delete(t.keys, key)
		return 0
	}
	if d := f.until.Sub(now); d > 0 {
		return d
	}
	return 0
}

// Fail records a failed attempt for key.
func (t *Throttle) Fail(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	f := t.keys[key]
	if f == nil || now.Sub(f.last) > t.cfg.Window {
		if len(t.keys) >= t.cfg.MaxKeys {
			t.evictLocked(now)
		}
		f = &failures{}
		t.keys[key] = f
	}
	f.n++
	f.last = now
	if over := f.n - t.cfg.Free; over >= 0 {
		d := t.cfg.Base
		for i := 0; i < over && d < t.cfg.Max; i++ {
			d *= 2
		}
		f.until = now.Add(min(d, t.cfg.Max))
	}
}

// Succeed forgets key's failures.
func (t *Throttle) Succeed(key string) {
	t.mu.Lock()
	delete(t.keys, key)
	t.mu.Unlock()
}

// Len returns the number of keys tracked.
func (t *Throttle) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.keys)
}

// evictLocked drops forgotten keys, then, if still full, half of the keys
// that are not blocked right now.
func (t *Throttle) evictLocked(now time.Time) {
	for k, f := range t.keys {
		if now.Sub(f.last) > t.cfg.Window {
			delete(t.keys, k)
		}
	}
	if len(t.keys) < t.cfg.MaxKeys {
		return
	}
	drop := len(t.keys) / 2
	for k, f := range t.keys {
		if drop == 0 {
			break
		}
		if !now.Before(f.until) {
			delete(t.keys, k)
			drop--
		}
	}
}

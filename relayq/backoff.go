package relayq

import (
	"math/rand/v2"
	"time"
)

// jitter returns d scaled by a random factor in [1-f, 1+f].
func jitter(d time.Duration, f float64) time.Duration {
	if d <= 0 {
		return d
	}
	return time.Duration(float64(d) * (1 - f + 2*f*rand.Float64()))
}

// backoff is the delay before retrying a message that has had n attempts
// before this one: RetryBase·2^n, capped at MaxBackoff, jittered ±10%.
func (c *Config) backoff(n int) time.Duration {
	d := c.RetryBase
	for i := 0; i < n && d < c.MaxBackoff; i++ {
		d *= 2
	}
	return jitter(min(d, c.MaxBackoff), 0.1)
}

// probeEvery is the probe period for a host: ProbeInterval, or the fast
// period while the host is not up and mail is waiting for it:
// ProbeInterval/20 (500 ms by default), at least minFastProbeInterval. The
// time from a primary's return to the first delivery is what customers
// wait for, and a probe of a host that is down costs one refused or
// unanswered connection attempt, so waiting mail is worth two a second.
func (c *Config) probeEvery(fast bool) time.Duration {
	if !fast {
		return c.ProbeInterval
	}
	d := c.ProbeInterval / 20
	if d < minFastProbeInterval {
		d = min(minFastProbeInterval, c.ProbeInterval)
	}
	return d
}

// holdFor is the next host hold after a 421 or a lost connection: it
// starts at the fast probe period and doubles up to MaxBackoff.
func (c *Config) holdFor(prev time.Duration) time.Duration {
	if prev <= 0 {
		return c.probeEvery(true)
	}
	return min(2*prev, c.MaxBackoff)
}

// Package connlimit bounds the connections a server holds open, in total
// and per client address, for the both-mode servers (mailbox/imapd and
// submit). The SMTP acceptor has its own limiter inside package smtpd.
//
// A Limiter counts; a Listener wraps a net.Listener, charges each accepted
// connection to the Limiter, refuses those over a limit with a one-line
// protocol answer, and releases the charge when the connection is closed
// (exactly once, however often Close is called).
package connlimit

import (
	"net"
	"net/netip"
	"sync"
)

// Config sets a Limiter's limits.
type Config struct {
	// MaxTotal bounds all open connections; <= 0 means no bound.
	MaxTotal int
	// MaxPerIP bounds the open connections of one client address (an
	// IPv4 address, or an IPv6 /64); <= 0 means no bound.
	MaxPerIP int
	// Exempt reports whether a client is exempt from MaxPerIP (it still
	// counts toward MaxTotal); nil means nobody is.
	Exempt func(netip.Addr) bool
}

// ExemptAddrs adapts a predicate on connection addresses (such as the
// servers' InsecureAuth) to Config.Exempt.
func ExemptAddrs(f func(net.Addr) bool) func(netip.Addr) bool {
	return func(a netip.Addr) bool { return f(net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 0))) }
}

// Limiter counts open connections, in total and per client address. It is
// safe for concurrent use.
type Limiter struct {
	cfg Config

	mu    sync.Mutex
	total int
	perIP map[netip.Addr]int
}

// New returns a Limiter with cfg's limits.
func New(cfg Config) *Limiter {
	return &Limiter{cfg: cfg, perIP: make(map[netip.Addr]int)}
}

// Acquire charges a connection from client. It returns a release function,
// which frees the charge on its first call and does nothing after, or
// ok=false when a limit is reached (nothing is charged then).
func (l *Limiter) Acquire(client netip.Addr) (release func(), ok bool) {
	key, perIP := Key(client), true
	if l.cfg.MaxPerIP <= 0 || (l.cfg.Exempt != nil && l.cfg.Exempt(client.Unmap())) {
		perIP = false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cfg.MaxTotal > 0 && l.total >= l.cfg.MaxTotal {
		return nil, false
	}
	if perIP && l.perIP[key] >= l.cfg.MaxPerIP {
		return nil, false
	}
	l.total++
	if perIP {
		l.perIP[key]++
	}
	var once sync.Once
	return func() { once.Do(func() { l.release(key, perIP) }) }, true
}

func (l *Limiter) release(key netip.Addr, perIP bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if perIP {
		if l.perIP[key]--; l.perIP[key] <= 0 {
			delete(l.perIP, key)
		}
	}
}

// Open returns the number of charged connections.
func (l *Limiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// OpenFrom returns the number of connections charged to client's per-IP
// key (exempt clients are not charged there).
func (l *Limiter) OpenFrom(client netip.Addr) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.perIP[Key(client)]
}

// Key is the per-address limit key of a client: the address itself for
// IPv4, its /64 for IPv6 (one site usually owns a whole /64). An invalid
// address (no IP, e.g. a pipe in a test) is its own single key.
func Key(a netip.Addr) netip.Addr {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// AddrOf returns the IP address of a net.Addr (invalid if it has none).
func AddrOf(a net.Addr) netip.Addr {
	switch v := a.(type) {
	case *net.TCPAddr:
		if v == nil {
			return netip.Addr{}
		}
		ip, _ := netip.AddrFromSlice(v.IP)
		return ip.Unmap()
	case nil:
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

package smtpd

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// connLimits counts open connections, in total and per client address.
type connLimits struct {
	maxTotal, maxPerIP int

	mu    sync.Mutex
	total int
	perIP map[netip.Addr]int
}

func newConnLimits(maxTotal, maxPerIP int) *connLimits {
	return &connLimits{maxTotal: maxTotal, maxPerIP: maxPerIP, perIP: make(map[netip.Addr]int)}
}

// acquireTotal takes a slot of the total limit for a new connection.
func (l *connLimits) acquireTotal() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.maxTotal {
		return false
	}
	l.total++
	return true
}

// releaseTotal frees a slot taken by acquireTotal.
func (l *connLimits) releaseTotal() {
	l.mu.Lock()
	l.total--
	l.mu.Unlock()
}

// acquireIP charges a connection to its client's key.
func (l *connLimits) acquireIP(key netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perIP[key] >= l.maxPerIP {
		return false
	}
	l.perIP[key]++
	return true
}

// releaseIP frees a slot taken by acquireIP.
func (l *connLimits) releaseIP(key netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perIP[key]--; l.perIP[key] <= 0 {
		delete(l.perIP, key)
	}
}

// open returns the number of counted connections.
func (l *connLimits) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// refuse tells a connection it is over a limit and closes it. It does not
// read from the client; the write is bounded by a short deadline.
func refuse(c net.Conn, line string) {
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write([]byte(line))
	_ = c.Close()
}

const tooManyConnections = "421 4.7.0 too many connections\r\n"

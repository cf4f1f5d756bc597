package relayq

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// ErrMailLoop is returned (wrapped) when a relay host is this node itself.
var ErrMailLoop = errors.New("mail loop: relay host is this node")

// ownAddrs knows this node's listener addresses, to refuse relay hosts
// that would send mail back to us.
type ownAddrs struct {
	exact    map[netip.AddrPort]bool
	anyPort  map[uint16]bool // listeners on an unspecified address
	loopPort map[uint16]bool // listeners on a loopback address
	local    map[netip.Addr]bool
}

// newOwnAddrs parses listener addresses. Port 0 (not bound yet) is
// skipped: add the bound address with Queue.AddOwnAddr.
func newOwnAddrs(ctx context.Context, list []string) (*ownAddrs, error) {
	return (&ownAddrs{}).with(ctx, list)
}

// with returns a copy of o that also knows the addresses in list.
func (o *ownAddrs) with(ctx context.Context, list []string) (*ownAddrs, error) {
	n := &ownAddrs{
		exact:    maps.Clone(o.exact),
		anyPort:  maps.Clone(o.anyPort),
		loopPort: maps.Clone(o.loopPort),
		local:    maps.Clone(o.local),
	}
	if n.exact == nil {
		n.exact, n.anyPort, n.loopPort, n.local = map[netip.AddrPort]bool{}, map[uint16]bool{}, map[uint16]bool{}, map[netip.Addr]bool{}
	}
	o = n
	for _, s := range list {
		h, p, err := net.SplitHostPort(s)
		if err != nil {
			return nil, fmt.Errorf("relayq: own address %q: %w", s, err)
		}
		port, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("relayq: own address %q: invalid port", s)
		}
		if port == 0 {
			continue
		}
		var ips []netip.Addr
		if h == "" {
			ips = []netip.Addr{netip.IPv6Unspecified()}
		} else if ip, err := netip.ParseAddr(h); err == nil {
			ips = []netip.Addr{ip}
		} else if ips, err = net.DefaultResolver.LookupNetIP(ctx, "ip", h); err != nil {
			return nil, fmt.Errorf("relayq: own address %q: %w", s, err)
		}
		for _, ip := range ips {
			ip = ip.Unmap()
			switch {
			case ip.IsUnspecified():
				o.anyPort[uint16(port)] = true
			case ip.IsLoopback():
				o.loopPort[uint16(port)] = true
			default:
				o.exact[netip.AddrPortFrom(ip, uint16(port))] = true
			}
		}
	}
	if len(o.anyPort) > 0 && len(o.local) == 0 {
		addrs, err := net.InterfaceAddrs()
		if err == nil {
			for _, a := range addrs {
				if p, err := netip.ParsePrefix(a.String()); err == nil {
					o.local[p.Addr().Unmap()] = true
				}
			}
		}
	}
	return o, nil
}

// isSelf reports whether ap is one of our listeners.
func (o *ownAddrs) isSelf(ap netip.AddrPort) bool {
	ip, port := ap.Addr().Unmap(), ap.Port()
	if o.exact[netip.AddrPortFrom(ip, port)] {
		return true
	}
	loop := ip.IsLoopback() || ip.IsUnspecified()
	if o.loopPort[port] && loop {
		return true
	}
	return o.anyPort[port] && (loop || o.local[ip])
}

// resolve returns the addresses to dial for a relay host "host:port",
// contacted as given (A/AAAA only, no MX lookup). It fails with
// ErrMailLoop if any of them is this node.
func (q *Queue) resolve(ctx context.Context, hostport string) ([]netip.AddrPort, error) {
	h, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, fmt.Errorf("relay host %q: %w", hostport, err)
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil || port == 0 {
		return nil, fmt.Errorf("relay host %q: invalid port", hostport)
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(h); err == nil {
		ips = []netip.Addr{ip}
	} else {
		ctx, cancel := context.WithTimeout(ctx, q.cfg.ProbeTimeout)
		ips, err = net.DefaultResolver.LookupNetIP(ctx, "ip", h)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", h, err)
		}
	}
	out := make([]netip.AddrPort, 0, len(ips))
	for _, ip := range ips {
		ap := netip.AddrPortFrom(ip.Unmap(), uint16(port))
		if q.own.Load().isSelf(ap) {
			return nil, ErrMailLoop
		}
		out = append(out, ap)
	}
	return out, nil
}

// dialRelay connects to the first reachable address of a relay host.
func (q *Queue) dialRelay(ctx context.Context, hostport string, timeout time.Duration) (net.Conn, error) {
	addrs, err := q.resolve(ctx, hostport)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: timeout}
	var last error
	for _, ap := range addrs {
		c, err := d.DialContext(ctx, "tcp", ap.String())
		if err == nil {
			return c, nil
		}
		last = err
	}
	if last == nil {
		last = fmt.Errorf("resolve %s: no addresses", hostport)
	}
	return nil, last
}

// AddOwnAddr adds a listener address of this node (e.g. the SMTP
// listener once bound, when it was configured with port 0) to those
// refused as relay hosts.
func (q *Queue) AddOwnAddr(addr string) error {
	q.ownMu.Lock()
	defer q.ownMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o, err := q.own.Load().with(ctx, []string{addr})
	if err != nil {
		return err
	}
	q.own.Store(o)
	return nil
}

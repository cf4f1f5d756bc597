package outbound

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// maxHops bounds the addresses tried in one delivery attempt.
const maxHops = 10

// hop is one address to try.
type hop struct {
	name string // host name: TLS server name, logs, the DSN's Remote-MTA
	addr string // "ip:port"
}

// resolveError says why a destination has no address. Permanent ones
// (null MX, a domain that does not exist) fail the recipients.
type resolveError struct {
	permanent bool
	status    string // enhanced status code when permanent
	text      string
}

func (e *resolveError) Error() string { return e.text }

func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// hops returns the addresses to try for mail to domain along rt: the
// smarthost's addresses, or those of domain's MX hosts by preference
// (the domain itself when it has no MX records, RFC 5321 section 5.1).
func (q *Queue) hops(ctx context.Context, domain string, rt route) ([]hop, *resolveError) {
	ctx, cancel := context.WithTimeout(ctx, q.cfg.DialTimeout)
	defer cancel()
	if rt.host != "" {
		host, port, err := net.SplitHostPort(rt.host)
		if err != nil {
			return nil, &resolveError{text: fmt.Sprintf("smarthost %q: %v", rt.host, err)}
		}
		ips, err := q.lookupHost(ctx, host)
		if err != nil {
			// A wrong smarthost is a configuration problem: mail waits.
			return nil, &resolveError{text: fmt.Sprintf("smarthost %s: %v", host, err)}
		}
		return toHops(nil, host, ips, port), nil
	}
	port := strconv.Itoa(q.cfg.Port)
	mxs, err := q.cfg.Resolver.LookupMX(ctx, domain)
	implicit := false
	var names []string
	switch {
	case len(mxs) == 1 && (mxs[0].Host == "." || mxs[0].Host == ""):
		return nil, &resolveError{permanent: true, status: "5.1.10",
			text: fmt.Sprintf("x-mxcont; domain %s accepts no mail (null MX, RFC 7505)", domain)}
	case len(mxs) > 0:
		for _, mx := range mxs {
			h := strings.TrimSuffix(mx.Host, ".")
			if h == "" {
				continue
			}
			if strings.EqualFold(h, q.cfg.Hostname) {
				// We are an MX of the domain: only more preferred hosts
				// may be used (RFC 5321 section 5.1).
				names = names[:0]
				for _, o := range mxs {
					if o.Pref < mx.Pref && strings.TrimSuffix(o.Host, ".") != "" {
						names = append(names, strings.TrimSuffix(o.Host, "."))
					}
				}
				if len(names) == 0 {
					return nil, &resolveError{text: fmt.Sprintf("mail loop: MX of %s points to this node (%s)", domain, h)}
				}
				break
			}
			names = append(names, h)
		}
	case err != nil && isNotFound(err):
		names, implicit = []string{domain}, true
	case err != nil:
		return nil, &resolveError{text: fmt.Sprintf("MX lookup for %s: %v", domain, err)}
	default:
		names, implicit = []string{domain}, true
	}
	var out []hop
	var lastErr error
	for _, n := range names {
		if len(out) >= maxHops {
			break
		}
		ips, err := q.lookupHost(ctx, n)
		if err != nil {
			lastErr = err
			continue
		}
		out = toHops(out, n, ips, port)
	}
	if len(out) == 0 {
		if implicit && isNotFound(lastErr) {
			return nil, &resolveError{permanent: true, status: "5.1.2",
				text: fmt.Sprintf("x-mxcont; domain %s not found (no MX or address records)", domain)}
		}
		return nil, &resolveError{text: fmt.Sprintf("no address for the mail hosts of %s: %v", domain, lastErr)}
	}
	return out, nil
}

func (q *Queue) lookupHost(ctx context.Context, host string) ([]string, error) {
	if ip := net.ParseIP(host); ip != nil {
		return []string{host}, nil
	}
	ips, err := q.cfg.Resolver.LookupHost(ctx, host)
	if err == nil && len(ips) == 0 {
		err = &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
	}
	return ips, err
}

func toHops(out []hop, name string, ips []string, port string) []hop {
	for _, ip := range ips {
		if len(out) >= maxHops {
			break
		}
		out = append(out, hop{name: name, addr: net.JoinHostPort(ip, port)})
	}
	return out
}

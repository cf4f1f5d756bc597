package registry

import (
	"net/netip"
	"slices"
	"time"
)

// Delivery modes of a domain.
const (
	// ModeRelay queues mail during an outage and relays it to the
	// domain's primary server once it is back.
	ModeRelay = "relay"
	// ModeBoth relays like ModeRelay and also keeps shadow mailboxes that
	// users can read during the outage.
	ModeBoth = "both"
)

// Defaults and limits applied by Normalize.
const (
	// DefaultRetentionDays is how long queued mail is kept when a domain
	// does not say.
	DefaultRetentionDays = 30
	// MaxRetentionDays is the largest accepted retention (about ten years).
	MaxRetentionDays = 3650
	// DefaultRelayPort is the port added to relay hosts given without one.
	DefaultRelayPort = 25
)

// Domain is one protected customer domain. The JSON (and YAML) field names
// are part of the HTTP API and config file contracts (DESIGN.md section 5).
//
// A Domain returned by a Store is normalized (see Normalize). CreatedAt and
// UpdatedAt are owned by the store: values supplied to Put or Create are
// ignored.
type Domain struct {
	// Name is the domain, lower-case ASCII (punycode for IDNs), without a
	// trailing dot.
	Name string `json:"name" yaml:"name"`
	// Mode is ModeRelay or ModeBoth.
	Mode string `json:"mode" yaml:"mode"`
	// RelayHost is the customer's primary server as "host:port" or
	// "[v6]:port"; it is contacted as given, without MX lookup.
	RelayHost string `json:"relay_host" yaml:"relay_host"`
	// Monitoring enables outage alerts for the domain.
	Monitoring bool `json:"monitoring" yaml:"monitoring"`
	// AlertEmails receive outage alerts; bare addresses only.
	AlertEmails []string `json:"alert_emails" yaml:"alert_emails"`
	// AllowedSources lists the CIDRs that may submit mail for the domain
	// (typically the customer's filtering service). Empty means anyone.
	AllowedSources []string `json:"allowed_sources" yaml:"allowed_sources"`
	// RetentionDays is how long undelivered mail is kept, 1..3650.
	RetentionDays int `json:"retention_days" yaml:"retention_days"`
	// RequireTLS makes relaying to RelayHost fail (temporarily) unless
	// STARTTLS succeeds.
	RequireTLS bool `json:"require_tls" yaml:"require_tls"`
	// OutboundSmarthost, if set, is where mail submitted by the domain's
	// mailbox users (mode both) is sent, as "host:port"; empty means the
	// node's outbound smarthost, or MX lookup when that is empty too.
	OutboundSmarthost string `json:"outbound_smarthost,omitempty" yaml:"outbound_smarthost"`
	// Account is the tenant account owning the domain; may be empty.
	Account string `json:"account" yaml:"account"`
	// CreatedAt is when the domain was first stored (UTC).
	CreatedAt time.Time `json:"created_at" yaml:"-"`
	// UpdatedAt is when the domain was last stored (UTC).
	UpdatedAt time.Time `json:"updated_at" yaml:"-"`
}

// AllowsSource reports whether a client at ip may submit mail for d. An
// empty AllowedSources list allows everyone. IPv4-mapped IPv6 addresses
// (::ffff:192.0.2.1) match IPv4 prefixes and the other way round; a zone
// on ip is ignored. Unparsable entries never match.
func (d *Domain) AllowsSource(ip netip.Addr) bool {
	if len(d.AllowedSources) == 0 {
		return true
	}
	if !ip.IsValid() {
		return false
	}
	ip = ip.WithZone("").Unmap()
	var mapped netip.Addr
	if ip.Is4() {
		mapped = netip.AddrFrom16(ip.As16())
	}
	for _, s := range d.AllowedSources {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			continue
		}
		if p.Contains(ip) || (mapped.IsValid() && p.Contains(mapped)) {
			return true
		}
	}
	return false
}

// clone returns a copy of d that shares no slices with it.
func (d Domain) clone() Domain {
	d.AlertEmails = slices.Clone(d.AlertEmails)
	d.AllowedSources = slices.Clone(d.AllowedSources)
	return d
}

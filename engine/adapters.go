package engine

import (
	"go.uber.org/zap"

	"github.com/mxcont/mxcont/admin"
	"github.com/mxcont/mxcont/admin/events"
	"github.com/mxcont/mxcont/relayq"
	"github.com/mxcont/mxcont/spool"
)

// relayAdapter presents relayq to the admin API.
type relayAdapter struct{ q *relayq.Queue }

var (
	_ admin.Relay         = relayAdapter{}
	_ admin.OutageHistory = relayAdapter{}
)

func (r relayAdapter) Status(domain string) admin.DomainStatus {
	st := r.q.Status(domain)
	out := admin.DomainStatus{State: string(st.RelayState), LastProbeAt: st.LastProbeAt, LastProbeError: st.LastProbeError}
	if st.Outage != nil {
		o := adminOutage(*st.Outage)
		out.Outage = &o
	}
	return out
}

func adminOutage(o relayq.Outage) admin.Outage {
	return admin.Outage{StartedAt: o.StartedAt, EndedAt: o.EndedAt, Error: o.Error}
}

func (r relayAdapter) FlushDomain(domain string) { _ = r.q.FlushDomain(domain) }

func (r relayAdapter) FlushMessage(id spool.ID) { _ = r.q.FlushMessage(id, "admin") }

func (r relayAdapter) Outages(domain string, limit int) []admin.Outage {
	os, err := r.q.Outages(domain, limit)
	if err != nil {
		return nil
	}
	out := make([]admin.Outage, len(os))
	for i, o := range os {
		out[i] = adminOutage(o)
	}
	return out
}

// recordEvent stores a system event in the admin event log (and the log).
func (n *Node) recordEvent(typ, domain, detail string) {
	n.log.Warn("event", zap.String("type", typ), zap.String("domain", domain), zap.String("detail", detail))
	if n.admin != nil {
		n.admin.Record(events.Event{Type: typ, Actor: "system", Domain: domain, Detail: detail})
	}
}

// relayEvent copies a relay event into the admin event log. relayq keeps
// its own history as well; this makes outages, expiries and probe failures
// appear with config changes and logins in the portal's Events page.
func (n *Node) relayEvent(e relayq.Event) {
	if n.admin == nil {
		return
	}
	detail := e.Detail
	if e.RelayHost != "" {
		detail = "relay host " + e.RelayHost + ": " + detail
	}
	n.admin.Record(events.Event{Time: e.Time, Type: e.Kind, Actor: "relayq", Domain: e.Domain, MessageID: e.MsgID, Detail: detail})
}

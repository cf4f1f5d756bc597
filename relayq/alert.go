package relayq

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap"
)

// AlertKind names what an alert is about.
type AlertKind string

// Alert kinds.
const (
	AlertOutageStarted AlertKind = "outage-started"
	AlertOutageEnded   AlertKind = "outage-ended"
	AlertQueueAge      AlertKind = "queue-age"
	AlertExpired       AlertKind = "expired"
)

// Alert is one notification for one domain. It is sent only for domains
// with monitoring on.
type Alert struct {
	Kind      AlertKind `json:"kind"`
	Domain    string    `json:"domain"`
	RelayHost string    `json:"relay_host"`
	To        []string  `json:"to"` // the domain's alert addresses
	Time      time.Time `json:"time"`
	Subject   string    `json:"subject"`
	Text      string    `json:"text"`

	OutageID       uint64    `json:"outage_id,omitempty"`
	StartedAt      time.Time `json:"started_at,omitzero"`
	EndedAt        time.Time `json:"ended_at,omitzero"`
	Error          string    `json:"error,omitempty"`
	Queued         int       `json:"queued"`
	Redelivered    int       `json:"redelivered,omitempty"`
	OldestQueuedAt time.Time `json:"oldest_queued_at,omitzero"`
	Expired        int       `json:"expired,omitempty"`
}

// Alerter delivers alerts. Send must respect ctx.
type Alerter interface {
	Send(ctx context.Context, a Alert) error
}

// SMTPAlerter mails alerts to Alert.To through a smarthost over plain
// SMTP (never through a customer's relay host).
type SMTPAlerter struct {
	Smarthost string // "host:port"
	From      string
	Hostname  string        // EHLO name
	Timeout   time.Duration // per step (default 30s)
}

// Send implements Alerter.
func (s *SMTPAlerter) Send(ctx context.Context, a Alert) error {
	if len(a.To) == 0 || s.Smarthost == "" {
		return nil
	}
	if a.RelayHost == s.Smarthost {
		return errors.New("alert smarthost is the failing relay host: not used")
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	d := net.Dialer{Timeout: timeout}
	raw, err := d.DialContext(ctx, "tcp", s.Smarthost)
	if err != nil {
		return fmt.Errorf("alert smarthost: %w", err)
	}
	defer raw.Close()
	stop := context.AfterFunc(ctx, func() { _ = raw.Close() })
	defer stop()
	c := smtp.NewClient(&deadlineConn{Conn: raw, step: timeout})
	if err := c.Hello(s.Hostname); err != nil {
		return fmt.Errorf("alert smarthost: %w", err)
	}
	if err := c.SendMail(s.From, a.To, bytes.NewReader(alertMail(a, s.From, s.Hostname))); err != nil {
		return fmt.Errorf("alert smarthost: %w", err)
	}
	_ = c.Quit()
	return nil
}

// alertMail renders an alert as a plain-text message with CRLF lines.
func alertMail(a Alert, from, hostname string) []byte {
	var id [12]byte
	_, _ = rand.Read(id[:])
	var b bytes.Buffer
	h := func(k, v string) {
		fmt.Fprintf(&b, "%s: %s\r\n", k, strings.NewReplacer("\r", " ", "\n", " ").Replace(v))
	}
	h("From", "mxcont <"+from+">")
	h("To", strings.Join(a.To, ", "))
	h("Subject", a.Subject)
	h("Date", a.Time.Format(time.RFC1123Z))
	h("Message-ID", "<"+hex.EncodeToString(id[:])+"@"+hostname+">")
	h("Auto-Submitted", "auto-generated")
	h("X-Mxcont-Alert", string(a.Kind))
	h("MIME-Version", "1.0")
	h("Content-Type", "text/plain; charset=utf-8")
	h("Content-Transfer-Encoding", "8bit")
	b.WriteString("\r\n")
	for _, l := range strings.Split(strings.TrimRight(a.Text, "\n"), "\n") {
		b.WriteString(strings.TrimRight(l, "\r"))
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// WebhookAlerter POSTs each alert as JSON.
type WebhookAlerter struct {
	URL    string
	Client *http.Client // default: 30s timeout, no keep-alive
}

// Send implements Alerter.
func (w *WebhookAlerter) Send(ctx context.Context, a Alert) error {
	body, err := json.Marshal(a)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	c := w.Client
	if c == nil {
		c = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("alert webhook: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("alert webhook: %s", resp.Status)
	}
	return nil
}

// alerters returns the alert channels; each is retried on its own.
func (c *Config) alerters() []Alerter {
	if c.Alerter != nil {
		return []Alerter{c.Alerter}
	}
	var m []Alerter
	if c.AlertSmarthost != "" {
		m = append(m, &SMTPAlerter{Smarthost: c.AlertSmarthost, From: c.AlertFrom, Hostname: c.Hostname, Timeout: c.CommandTimeout})
	}
	if c.AlertWebhook != "" {
		m = append(m, &WebhookAlerter{URL: c.AlertWebhook})
	}
	return m
}

// alert queues an alert for the domain if it is monitored.
func (q *Queue) alert(a Alert) {
	conf, ok := q.domainConf(a.Domain)
	if !ok || !conf.monitoring {
		return
	}
	a.To = conf.alertEmails
	a.Time = q.now()
	q.log.Info("alert", zap.String("kind", string(a.Kind)), zap.String("domain", a.Domain), zap.String("subject", a.Subject))
	select {
	case q.alertCh <- a:
	default:
		q.log.Error("alert dropped: too many pending", zap.String("domain", a.Domain), zap.String("subject", a.Subject))
	}
}

// alertLoop sends queued alerts, retrying a failed one twice.
func (q *Queue) alertLoop() {
	defer q.wg.Done()
	for {
		select {
		case a := <-q.alertCh:
			for _, x := range q.alerters {
				q.sendAlert(x, a, true)
			}
		case <-q.stopping:
			for {
				select {
				case a := <-q.alertCh:
					for _, x := range q.alerters {
						q.sendAlert(x, a, false)
					}
				default:
					return
				}
			}
		}
	}
}

func (q *Queue) sendAlert(x Alerter, a Alert, retry bool) {
	for try := 0; ; try++ {
		ctx, cancel := context.WithTimeout(q.abortCtx, time.Minute)
		err := x.Send(ctx, a)
		cancel()
		if err == nil {
			return
		}
		q.log.Warn("alert not sent", zap.String("domain", a.Domain), zap.String("kind", string(a.Kind)), zap.Int("try", try+1), zapErr(err))
		if !retry || try == 2 {
			q.log.Error("alert given up", zap.String("domain", a.Domain), zap.String("subject", a.Subject))
			return
		}
		select {
		case <-time.After(time.Duration(5*(try+1)) * time.Second):
		case <-q.stopping:
			retry = false
		}
	}
}

func (q *Queue) sendStartAlert(o Outage, domain string) {
	st := q.sp.DomainStats(domain)
	q.alert(Alert{
		Kind: AlertOutageStarted, Domain: domain, RelayHost: o.RelayHost, OutageID: o.ID,
		StartedAt: o.StartedAt, Error: o.Error, Queued: st.Messages - st.Failed,
		Subject: fmt.Sprintf("[mxcont] outage: %s primary server %s unreachable", domain, o.RelayHost),
		Text: fmt.Sprintf("The primary mail server of %s (%s) has been unreachable since %s.\n"+
			"Last error: %s\n\nmxcont is accepting and queueing mail for %s; %d messages are queued.\n"+
			"They will be delivered automatically as soon as the server is reachable again.\n",
			domain, o.RelayHost, o.StartedAt.UTC().Format(time.RFC3339), o.Error, domain, st.Messages-st.Failed),
	})
}

func (q *Queue) sendEndAlert(o Outage, domain string, redelivered int) {
	if err := q.store.addRedelivered(o.ID, redelivered); err != nil {
		q.log.Error("store outage", zapHost(o.RelayHost), zapErr(err))
	}
	st := q.sp.DomainStats(domain)
	q.alert(Alert{
		Kind: AlertOutageEnded, Domain: domain, RelayHost: o.RelayHost, OutageID: o.ID,
		StartedAt: o.StartedAt, EndedAt: o.EndedAt, Redelivered: redelivered, Queued: st.Messages - st.Failed,
		Subject: fmt.Sprintf("[mxcont] resolved: %s primary server %s is back", domain, o.RelayHost),
		Text: fmt.Sprintf("The outage of %s (%s) ended at %s after %s (%s).\n"+
			"%d messages were redelivered; %d are still queued.\n",
			domain, o.RelayHost, o.EndedAt.UTC().Format(time.RFC3339), o.Duration.Round(time.Second), o.EndReason,
			redelivered, st.Messages-st.Failed),
	})
}

package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mxcont/mxcont/engine/registry"
	"github.com/mxcont/mxcont/mailbox/imapd"
	"github.com/mxcont/mxcont/submit"
)

// Defaults of the config file; see defaultConfig.
const (
	defaultDataDir             = "./mxcont-data"
	defaultSMTPAddr            = "127.0.0.1:2525"
	defaultHTTPAddr            = "127.0.0.1:8080"
	defaultProbeInterval       = 10 * time.Second
	defaultShards              = 8
	defaultMaxMessageBytes     = 50 << 20
	defaultMaxRecipients       = 1000
	defaultMaxConnections      = 1000
	defaultMaxConnectionsPerIP = 50
	defaultIdleTimeout         = 5 * time.Minute
	defaultDataTimeout         = 30 * time.Minute
	defaultMinFreeBytes        = 256 << 20
	defaultBareNewlines        = "normalize"
	defaultRelayPoolSize       = 8
	defaultLogLevel            = "info"
	defaultShadowKeep          = 7 * 24 * time.Hour

	// Both-mode servers: enough for a webmail on the same host (exempt
	// from the per-IP limits, see imapd.Config) plus direct clients.
	defaultIMAPMaxConnections            = imapd.DefaultMaxConnections      // 1000
	defaultIMAPMaxConnectionsPerIP       = imapd.DefaultMaxConnectionsPerIP // 50
	defaultSubmissionMaxConnections      = submit.DefaultMaxConns           // 200
	defaultSubmissionMaxConnectionsPerIP = submit.DefaultMaxConnsPerIP      // 20
)

// Limits enforced by validate.
const (
	minProbeInterval = 100 * time.Millisecond
	maxProbeInterval = 10 * time.Minute
	maxShards        = 1024
	minMessageBytes  = 1024
	minTimeout       = time.Second
	maxRelayPoolSize = 1000
)

// fileConfig is the node's YAML config file (DESIGN.md section 5). Keys
// match the HTTP API's field names; command-line flags override them, after
// which validate must run again.
type fileConfig struct {
	// DataDir holds the spool and the control database.
	DataDir string `yaml:"data_dir"`
	// SMTPAddr is the SMTP listen address (host:port); required.
	SMTPAddr string `yaml:"smtp_addr"`
	// HTTPAddr is the admin API and portal listen address; empty disables.
	HTTPAddr string `yaml:"http_addr"`
	// IMAPAddr is the IMAP listen address for shadow mailboxes ("both"
	// mode); empty disables.
	IMAPAddr string `yaml:"imap_addr"`
	// IMAPSAddr is the implicit-TLS IMAP listen address (993 style);
	// empty disables.
	IMAPSAddr string `yaml:"imaps_addr"`
	// SubmissionAddr is the submission listen address for shadow mailbox
	// users; empty disables.
	SubmissionAddr string `yaml:"submission_addr"`
	// OutboundSmarthost relays mail submitted by mailbox users (host:port,
	// default port 25); a domain's outbound_smarthost overrides it. Empty:
	// MX lookup of each recipient domain.
	OutboundSmarthost string `yaml:"outbound_smarthost"`
	// ShadowKeep is how long shadow mailbox copies are kept after the end
	// of their domain's outage.
	ShadowKeep time.Duration `yaml:"shadow_keep"`
	// ProbeInterval is the period of relay host probes, 100ms..10m.
	ProbeInterval time.Duration `yaml:"probe_interval"`
	// Hostname is the node's name in banners, EHLO and Received headers;
	// empty means the OS host name.
	Hostname string `yaml:"hostname"`
	// Shards is the number of spool shards.
	Shards int `yaml:"shards"`
	// MaxMessageBytes is the largest accepted message (SIZE).
	MaxMessageBytes int64 `yaml:"max_message_bytes"`
	// MaxRecipients is the most RCPT commands accepted per message.
	MaxRecipients int `yaml:"max_recipients"`
	// MaxConnections caps concurrent SMTP connections.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerIP caps concurrent SMTP connections per client IP.
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	// IMAPMaxConnections caps concurrent IMAP connections (both
	// listeners together); IMAPMaxConnectionsPerIP those of one client
	// IP. Loopback (the webmail) is exempt from the per-IP cap.
	IMAPMaxConnections      int `yaml:"imap_max_connections"`
	IMAPMaxConnectionsPerIP int `yaml:"imap_max_connections_per_ip"`
	// SubmissionMaxConnections caps concurrent submission connections;
	// SubmissionMaxConnectionsPerIP those of one client IP. Loopback (the
	// webmail) is exempt from the per-IP cap.
	SubmissionMaxConnections      int `yaml:"submission_max_connections"`
	SubmissionMaxConnectionsPerIP int `yaml:"submission_max_connections_per_ip"`
	// IdleTimeout bounds the wait for the next SMTP command.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// DataTimeout bounds the whole DATA phase of one message.
	DataTimeout time.Duration `yaml:"data_timeout"`
	// MinFreeBytes is the free disk space below which mail is refused
	// with 452.
	MinFreeBytes int64 `yaml:"min_free_bytes"`
	// BareNewlines says what to do with a bare CR or LF in DATA:
	// "normalize" to CRLF or "reject" the message.
	BareNewlines string `yaml:"bare_newlines"`
	// TLSCert and TLSKey are PEM files for STARTTLS; both or neither.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// ProxyProtocolFrom lists the CIDRs whose connections must start with
	// a PROXY protocol header (normalized to masked prefixes).
	ProxyProtocolFrom []string `yaml:"proxy_protocol_from"`
	// AlertSmarthost relays outage alert mail (host:port, default port
	// 25); empty disables alert mail.
	AlertSmarthost string `yaml:"alert_smarthost"`
	// AlertFrom is the sender of alert mail; required with AlertSmarthost.
	AlertFrom string `yaml:"alert_from"`
	// AlertWebhook receives outage events as JSON POSTs (http or https).
	AlertWebhook string `yaml:"alert_webhook"`
	// RelayPoolSize is the most connections kept per relay host.
	RelayPoolSize int `yaml:"relay_pool_size"`
	// RelayProbeTimeout bounds each step of a relay host probe (10s).
	RelayProbeTimeout time.Duration `yaml:"relay_probe_timeout"`
	// RelayDialTimeout bounds a TCP connect for delivery (30s).
	RelayDialTimeout time.Duration `yaml:"relay_dial_timeout"`
	// RelayCommandTimeout bounds each command of a delivery (2m).
	RelayCommandTimeout time.Duration `yaml:"relay_command_timeout"`
	// RelayDataTimeout bounds the wait for the reply to the final dot (10m).
	RelayDataTimeout time.Duration `yaml:"relay_data_timeout"`
	// RelayRetryBase is the first retry delay after a 4xx (30s; doubling).
	RelayRetryBase time.Duration `yaml:"relay_retry_base"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
	// Domains are applied to the registry at start.
	Domains []registry.Domain `yaml:"domains"`
}

// durationKeys are the top-level keys holding Go duration strings. They
// are checked before decoding so that a bad value is reported by key.
var durationKeys = map[string]bool{"probe_interval": true, "idle_timeout": true, "data_timeout": true, "shadow_keep": true,
	"relay_probe_timeout": true, "relay_dial_timeout": true, "relay_command_timeout": true, "relay_data_timeout": true,
	"relay_retry_base": true}

// defaultConfig returns the configuration used for keys the file does not
// set (and when there is no file).
func defaultConfig() *fileConfig {
	return &fileConfig{
		DataDir:             defaultDataDir,
		SMTPAddr:            defaultSMTPAddr,
		HTTPAddr:            defaultHTTPAddr,
		ProbeInterval:       defaultProbeInterval,
		Shards:              defaultShards,
		MaxMessageBytes:     defaultMaxMessageBytes,
		MaxRecipients:       defaultMaxRecipients,
		MaxConnections:      defaultMaxConnections,
		MaxConnectionsPerIP: defaultMaxConnectionsPerIP,
		IdleTimeout:         defaultIdleTimeout,
		DataTimeout:         defaultDataTimeout,
		MinFreeBytes:        defaultMinFreeBytes,
		BareNewlines:        defaultBareNewlines,
		RelayPoolSize:       defaultRelayPoolSize,
		LogLevel:            defaultLogLevel,
		ShadowKeep:          defaultShadowKeep,

		IMAPMaxConnections:            defaultIMAPMaxConnections,
		IMAPMaxConnectionsPerIP:       defaultIMAPMaxConnectionsPerIP,
		SubmissionMaxConnections:      defaultSubmissionMaxConnections,
		SubmissionMaxConnectionsPerIP: defaultSubmissionMaxConnectionsPerIP,
	}
}

// loadConfig reads the YAML file at path over defaultConfig and validates
// the result. Unknown keys are errors. An empty path yields the defaults.
// Every error starts with "config: " and names the key or line at fault.
func loadConfig(path string) (*fileConfig, error) {
	c := defaultConfig()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if err := c.decode(data); err != nil {
			return nil, err
		}
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// decode strictly decodes one YAML document over c.
func (c *fileConfig) decode(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		return nil // empty file: defaults
	case err != nil:
		return yamlError(err)
	}
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return yamlError(err)
		}
		if !emptyDocument(&next) {
			return fmt.Errorf("config: line %d: only one YAML document allowed", next.Line)
		}
	}
	if err := checkDurations(&doc); err != nil {
		return err
	}
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	if err := strict.Decode(c); err != nil {
		return yamlError(err)
	}
	return nil
}

// emptyDocument reports whether doc holds nothing (as after a trailing
// "---").
func emptyDocument(doc *yaml.Node) bool {
	if len(doc.Content) == 0 {
		return true
	}
	n := doc.Content[0]
	return len(doc.Content) == 1 && n.Kind == yaml.ScalarNode && n.Tag == "!!null" && n.Value == ""
}

// checkDurations reports the first top-level duration key whose value
// time.ParseDuration rejects; yaml's own message would not name the key.
func checkDurations(doc *yaml.Node) error {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil // the strict decode reports the shape error
	}
	m := doc.Content[0].Content
	for i := 0; i+1 < len(m); i += 2 {
		k, v := m[i], m[i+1]
		if v.Kind == yaml.AliasNode && v.Alias != nil {
			v = v.Alias
		}
		if !durationKeys[k.Value] || v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
			continue
		}
		if _, err := time.ParseDuration(v.Value); err != nil {
			return configError(k.Value, "invalid duration %q", v.Value)
		}
	}
	return nil
}

var inType = regexp.MustCompile(` in type \S+$`)

// yamlError rewrites a yaml.v3 error as a one-line config error.
func yamlError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			msgs[i] = inType.ReplaceAllString(m, "")
		}
		return fmt.Errorf("config: %s", strings.Join(msgs, "; "))
	}
	return fmt.Errorf("config: %s", strings.TrimPrefix(err.Error(), "yaml: "))
}

// configError returns `config: key: msg` as a wrapped
// *registry.ValidationError, so callers can find the key with errors.As.
func configError(key, format string, args ...any) error {
	return fmt.Errorf("config: %w", &registry.ValidationError{Field: key, Msg: fmt.Sprintf(format, args...)})
}

// rekey reports err, a *registry.ValidationError from a registry
// normalizer, under key.
func rekey(key string, err error) error {
	var ve *registry.ValidationError
	if errors.As(err, &ve) {
		return configError(key, "%s", ve.Msg)
	}
	return fmt.Errorf("config: %s: %w", key, err)
}

// validate checks c, normalizes what it can (host names, CIDRs, domains)
// and returns the first problem found. It is idempotent, so it can run
// again after flags override fields.
func (c *fileConfig) validate() error {
	if strings.TrimSpace(c.DataDir) == "" {
		return configError("data_dir", "must not be empty")
	}
	addrs := []struct {
		key      string
		value    string
		required bool
	}{
		{"smtp_addr", c.SMTPAddr, true},
		{"http_addr", c.HTTPAddr, false},
		{"imap_addr", c.IMAPAddr, false},
		{"imaps_addr", c.IMAPSAddr, false},
		{"submission_addr", c.SubmissionAddr, false},
	}
	used := map[string]string{}
	for _, a := range addrs {
		if a.value == "" {
			if a.required {
				return configError(a.key, "must not be empty")
			}
			continue
		}
		port, err := checkListenAddr(a.key, a.value)
		if err != nil {
			return err
		}
		if other, dup := used[a.value]; dup && port != 0 {
			return configError(a.key, "same address as %s", other)
		}
		used[a.value] = a.key
	}

	if c.ProbeInterval < minProbeInterval || c.ProbeInterval > maxProbeInterval {
		return configError("probe_interval", "must be between 100ms and 10m, got %s", c.ProbeInterval)
	}
	if c.Hostname != "" {
		h, err := registry.NormalizeHostname(c.Hostname)
		if err != nil {
			return rekey("hostname", err)
		}
		c.Hostname = h
	}
	if c.Shards < 1 || c.Shards > maxShards {
		return configError("shards", "must be between 1 and %d, got %d", maxShards, c.Shards)
	}
	if c.MaxMessageBytes < minMessageBytes {
		return configError("max_message_bytes", "must be at least %d, got %d", minMessageBytes, c.MaxMessageBytes)
	}
	for _, n := range []struct {
		key   string
		value int
	}{
		{"max_recipients", c.MaxRecipients},
		{"max_connections", c.MaxConnections},
		{"max_connections_per_ip", c.MaxConnectionsPerIP},
		{"imap_max_connections", c.IMAPMaxConnections},
		{"imap_max_connections_per_ip", c.IMAPMaxConnectionsPerIP},
		{"submission_max_connections", c.SubmissionMaxConnections},
		{"submission_max_connections_per_ip", c.SubmissionMaxConnectionsPerIP},
	} {
		if n.value < 1 {
			return configError(n.key, "must be at least 1, got %d", n.value)
		}
	}
	if c.IdleTimeout < minTimeout {
		return configError("idle_timeout", "must be at least 1s, got %s", c.IdleTimeout)
	}
	if c.DataTimeout < minTimeout {
		return configError("data_timeout", "must be at least 1s, got %s", c.DataTimeout)
	}
	if c.MinFreeBytes < 0 {
		return configError("min_free_bytes", "must not be negative, got %d", c.MinFreeBytes)
	}
	switch c.BareNewlines {
	case "normalize", "reject":
	default:
		return configError("bare_newlines", `must be "normalize" or "reject", got %q`, c.BareNewlines)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		if c.TLSCert == "" {
			return configError("tls_cert", "required when tls_key is set")
		}
		return configError("tls_key", "required when tls_cert is set")
	}
	for i, s := range c.ProxyProtocolFrom {
		p, err := registry.NormalizePrefix(s)
		if err != nil {
			return rekey(fmt.Sprintf("proxy_protocol_from[%d]", i), err)
		}
		c.ProxyProtocolFrom[i] = p
	}
	if err := c.validateAlerts(); err != nil {
		return err
	}
	if c.OutboundSmarthost != "" {
		h, err := registry.NormalizeRelayHost(c.OutboundSmarthost)
		if err != nil {
			return rekey("outbound_smarthost", err)
		}
		c.OutboundSmarthost = h
	}
	if c.ShadowKeep < time.Hour {
		return configError("shadow_keep", "must be at least 1h, got %s", c.ShadowKeep)
	}
	if c.RelayPoolSize < 1 || c.RelayPoolSize > maxRelayPoolSize {
		return configError("relay_pool_size", "must be between 1 and %d, got %d", maxRelayPoolSize, c.RelayPoolSize)
	}
	for _, d := range []struct {
		key   string
		value time.Duration
	}{
		{"relay_probe_timeout", c.RelayProbeTimeout},
		{"relay_dial_timeout", c.RelayDialTimeout},
		{"relay_command_timeout", c.RelayCommandTimeout},
		{"relay_data_timeout", c.RelayDataTimeout},
		{"relay_retry_base", c.RelayRetryBase},
	} {
		if d.value != 0 && d.value < minTimeout {
			return configError(d.key, "must be at least 1s (or unset for the default), got %s", d.value)
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return configError("log_level", `must be "debug", "info", "warn" or "error", got %q`, c.LogLevel)
	}
	return c.validateDomains()
}

// checkListenAddr checks a host:port listen address and returns its port.
func checkListenAddr(key, addr string) (int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		why := err.Error()
		var ae *net.AddrError
		if errors.As(err, &ae) {
			why = ae.Err
		}
		return 0, configError(key, "invalid address %q: %s", addr, why)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return 0, configError(key, "invalid port %q", port)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			if _, err := registry.NormalizeHostname(host); err != nil {
				return 0, configError(key, "invalid host %q", host)
			}
		}
	}
	return n, nil
}

func (c *fileConfig) validateAlerts() error {
	if c.AlertSmarthost != "" {
		h, err := registry.NormalizeRelayHost(c.AlertSmarthost)
		if err != nil {
			return rekey("alert_smarthost", err)
		}
		c.AlertSmarthost = h
		if c.AlertFrom == "" {
			return configError("alert_from", "required when alert_smarthost is set")
		}
	}
	if c.AlertFrom != "" {
		a, err := registry.NormalizeAddress(c.AlertFrom)
		if err != nil {
			return rekey("alert_from", err)
		}
		c.AlertFrom = a
	}
	if c.AlertWebhook != "" {
		u, err := url.Parse(c.AlertWebhook)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return configError("alert_webhook", "must be an http or https URL, got %q", c.AlertWebhook)
		}
	}
	return nil
}

// validateDomains normalizes each domain with the registry's rules and
// rejects duplicates. Indexes in messages count from 0.
func (c *fileConfig) validateDomains() error {
	seen := make(map[string]int, len(c.Domains))
	for i, d := range c.Domains {
		n, err := registry.Normalize(d)
		if err != nil {
			var ve *registry.ValidationError
			if errors.As(err, &ve) {
				return configError(fmt.Sprintf("domains[%d].%s", i, ve.Field), "%s", ve.Msg)
			}
			return fmt.Errorf("config: domains[%d]: %w", i, err)
		}
		if j, dup := seen[n.Name]; dup {
			return configError(fmt.Sprintf("domains[%d].name", i), "duplicate domain %q (also domains[%d])", n.Name, j)
		}
		seen[n.Name] = i
		c.Domains[i] = n
	}
	return nil
}

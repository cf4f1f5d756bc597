package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mxcont/mxcont/engine/registry"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mxcont.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const goodConfig = `
data_dir: /var/lib/mxcont
smtp_addr: ":25"
http_addr: "127.0.0.1:8080"
imap_addr: "[::1]:1143"
imaps_addr: "[::1]:1993"
submission_addr: "0.0.0.0:587"
outbound_smarthost: Relay.Provider.NET:2525
shadow_keep: 72h
probe_interval: 5s
hostname: MX1.Provider.NET.
shards: 16
max_message_bytes: 104857600
max_recipients: 500
max_connections: 2000
max_connections_per_ip: 20
imap_max_connections: 300
imap_max_connections_per_ip: 10
submission_max_connections: 40
submission_max_connections_per_ip: 5
idle_timeout: 2m
data_timeout: 1h
min_free_bytes: 1073741824
bare_newlines: reject
tls_cert: /etc/mxcont/cert.pem
tls_key: /etc/mxcont/key.pem
proxy_protocol_from: [10.1.2.3/8, 192.0.2.10]
alert_smarthost: smtp.provider.net:587
alert_from: MXCont@Provider.NET
alert_webhook: https://hooks.provider.net/mxcont
relay_pool_size: 4
relay_probe_timeout: 3s
relay_dial_timeout: 5s
relay_command_timeout: 20s
relay_data_timeout: 1m
relay_retry_base: 10s
log_level: debug
domains:
  - name: Customer.com
    mode: relay
    relay_host: mail.customer.com:25
    monitoring: true
    alert_emails: [noc@provider.net]
  - name: bücher.example
    mode: both
    relay_host: "2001:db8::25"
    allowed_sources: [192.0.2.0/24, "2001:db8::1"]
    retention_days: 90
    require_tls: true
    account: acme
    outbound_smarthost: "[2001:db8::587]:587"
`

func TestLoadConfigGood(t *testing.T) {
	got, err := loadConfig(writeConfig(t, goodConfig))
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	want := &fileConfig{
		DataDir:                       "/var/lib/mxcont",
		SMTPAddr:                      ":25",
		HTTPAddr:                      "127.0.0.1:8080",
		IMAPAddr:                      "[::1]:1143",
		IMAPSAddr:                     "[::1]:1993",
		SubmissionAddr:                "0.0.0.0:587",
		OutboundSmarthost:             "relay.provider.net:2525",
		ShadowKeep:                    72 * time.Hour,
		ProbeInterval:                 5 * time.Second,
		Hostname:                      "mx1.provider.net",
		Shards:                        16,
		MaxMessageBytes:               100 << 20,
		MaxRecipients:                 500,
		MaxConnections:                2000,
		MaxConnectionsPerIP:           20,
		IMAPMaxConnections:            300,
		IMAPMaxConnectionsPerIP:       10,
		SubmissionMaxConnections:      40,
		SubmissionMaxConnectionsPerIP: 5,
		IdleTimeout:                   2 * time.Minute,
		DataTimeout:                   time.Hour,
		MinFreeBytes:                  1 << 30,
		BareNewlines:                  "reject",
		TLSCert:                       "/etc/mxcont/cert.pem",
		TLSKey:                        "/etc/mxcont/key.pem",
		ProxyProtocolFrom:             []string{"10.0.0.0/8", "192.0.2.10/32"},
		AlertSmarthost:                "smtp.provider.net:587",
		AlertFrom:                     "MXCont@provider.net",
		AlertWebhook:                  "https://hooks.provider.net/mxcont",
		RelayPoolSize:                 4,
		RelayProbeTimeout:             3 * time.Second,
		RelayDialTimeout:              5 * time.Second,
		RelayCommandTimeout:           20 * time.Second,
		RelayDataTimeout:              time.Minute,
		RelayRetryBase:                10 * time.Second,
		LogLevel:                      "debug",
		Domains: []registry.Domain{{
			Name: "customer.com", Mode: "relay", RelayHost: "mail.customer.com:25", Monitoring: true,
			AlertEmails: []string{"noc@provider.net"}, AllowedSources: []string{}, RetentionDays: 30,
		}, {
			Name: "xn--bcher-kva.example", Mode: "both", RelayHost: "[2001:db8::25]:25",
			AlertEmails: []string{}, AllowedSources: []string{"192.0.2.0/24", "2001:db8::1/128"},
			RetentionDays: 90, RequireTLS: true, Account: "acme", OutboundSmarthost: "[2001:db8::587]:587",
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("loadConfig\n got %+v\nwant %+v", got, want)
	}

	// Round trip: what we load, written back as YAML, loads the same.
	out, err := yaml.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	again, err := loadConfig(writeConfig(t, string(out)))
	if err != nil {
		t.Fatalf("reloading marshaled config: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(again, want) {
		t.Fatalf("round trip changed the config\n got %+v\nwant %+v\nYAML:\n%s", again, want, out)
	}

	// validate is idempotent, so it can run again after flag overrides.
	if err := again.validate(); err != nil || !reflect.DeepEqual(again, want) {
		t.Fatalf("second validate: %v, %+v", err, again)
	}
}

func TestLoadConfigDefaults(t *testing.T) {
	for name, text := range map[string]string{
		"empty file":    "",
		"comments only": "# nothing here\n",
		"empty mapping": "{}\n",
	} {
		t.Run(name, func(t *testing.T) {
			got, err := loadConfig(writeConfig(t, text))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, defaultConfig()) {
				t.Fatalf("got %+v, want defaults", got)
			}
		})
	}
	got, err := loadConfig("")
	if err != nil || !reflect.DeepEqual(got, defaultConfig()) {
		t.Fatalf(`loadConfig("") = %+v, %v`, got, err)
	}
	d := defaultConfig()
	if d.DataDir != "./mxcont-data" || d.SMTPAddr != "127.0.0.1:2525" || d.HTTPAddr != "127.0.0.1:8080" ||
		d.ProbeInterval != 10*time.Second || d.Shards != 8 || d.MaxMessageBytes != 50<<20 ||
		d.MaxRecipients != 1000 || d.MaxConnections != 1000 || d.MaxConnectionsPerIP != 50 ||
		d.IdleTimeout != 5*time.Minute || d.DataTimeout != 30*time.Minute || d.MinFreeBytes != 256<<20 ||
		d.BareNewlines != "normalize" || d.RelayPoolSize != 8 || d.LogLevel != "info" ||
		d.IMAPMaxConnections != 1000 || d.IMAPMaxConnectionsPerIP != 50 ||
		d.SubmissionMaxConnections != 200 || d.SubmissionMaxConnectionsPerIP != 20 {
		t.Fatalf("defaultConfig() = %+v", d)
	}
}

func TestLoadConfigPartialKeepsDefaults(t *testing.T) {
	got, err := loadConfig(writeConfig(t, "smtp_addr: \":25\"\nprobe_interval:\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := defaultConfig()
	want.SMTPAddr = ":25"
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

// TestLoadConfigBad is the table of broken configs and the exact message
// an operator sees for each (chasquid's t-20-bad_configs).
func TestLoadConfigBad(t *testing.T) {
	const dom = "domains:\n  - name: customer.com\n    relay_host: mx.customer.com\n"
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{"yaml syntax", "smtp_addr: \":25\"\n  http_addr: x\n", `config: line 1: did not find expected key`},
		{"unknown key", "data_dir: /tmp\nsmtp_addr: \":25\"\nfoo: 1\n", `config: line 3: field foo not found`},
		{"unknown domain key", dom + "    relay_hots: x\n", `config: line 4: field relay_hots not found`},
		{"timestamps are not config", dom + "    created_at: 2024-01-01T00:00:00Z\n", `config: line 4: field created_at not found`},
		{"duplicate key", "shards: 4\nshards: 8\n", `config: line 2: mapping key "shards" already defined at line 1`},
		{"wrong type", "shards: many\n", "config: line 1: cannot unmarshal !!str `many` into int"},
		{"two errors", "shards: many\nfoo: 1\n", "config: line 1: cannot unmarshal !!str `many` into int; line 2: field foo not found"},
		{"not a mapping", "- a\n- b\n", "config: line 1: cannot unmarshal !!seq into main.fileConfig"},
		{"tab indent", "smtp_addr: \":25\"\n\tshards: 4\n", `config: line 2: found character that cannot start any token`},
		{"two documents", "shards: 4\n---\nshards: 8\n", `config: line 2: only one YAML document allowed`},
		{"bad duration", "probe_interval: 10 parsecs\n", `config: probe_interval: invalid duration "10 parsecs"`},
		{"duration without unit", "idle_timeout: 10\n", `config: idle_timeout: invalid duration "10"`},
		{"probe too fast", "probe_interval: 50ms\n", `config: probe_interval: must be between 100ms and 10m, got 50ms`},
		{"probe too slow", "probe_interval: 11m\n", `config: probe_interval: must be between 100ms and 10m, got 11m0s`},
		{"empty data dir", "data_dir: \"\"\n", `config: data_dir: must not be empty`},
		{"empty smtp addr", "smtp_addr: \"\"\n", `config: smtp_addr: must not be empty`},
		{"addr without port", "smtp_addr: localhost\n", `config: smtp_addr: invalid address "localhost": missing port in address`},
		{"addr bad port", "http_addr: \"127.0.0.1:99999\"\n", `config: http_addr: invalid port "99999"`},
		{"addr named port", "imap_addr: \":imap\"\n", `config: imap_addr: invalid port "imap"`},
		{"addr bad host", "submission_addr: \"bad_host:587\"\n", `config: submission_addr: invalid host "bad_host"`},
		{"addr unbracketed IPv6", "smtp_addr: \"::1:25\"\n", `config: smtp_addr: invalid address "::1:25": too many colons in address`},
		{"same addr twice", "smtp_addr: \":25\"\nhttp_addr: \":25\"\n", `config: http_addr: same address as smtp_addr`},
		{"bad hostname", "hostname: mx_1.provider.net\n", `config: hostname: invalid host name "mx_1.provider.net": label "mx_1" contains '_'`},
		{"zero shards", "shards: 0\n", `config: shards: must be between 1 and 1024, got 0`},
		{"tiny messages", "max_message_bytes: 100\n", `config: max_message_bytes: must be at least 1024, got 100`},
		{"zero recipients", "max_recipients: 0\n", `config: max_recipients: must be at least 1, got 0`},
		{"negative per-ip", "max_connections_per_ip: -1\n", `config: max_connections_per_ip: must be at least 1, got -1`},
		{"negative imap total", "imap_max_connections: -1\n", `config: imap_max_connections: must be at least 1, got -1`},
		{"negative imap per-ip", "imap_max_connections_per_ip: -5\n", `config: imap_max_connections_per_ip: must be at least 1, got -5`},
		{"zero imap per-ip", "imap_max_connections_per_ip: 0\n", `config: imap_max_connections_per_ip: must be at least 1, got 0`},
		{"negative submission total", "submission_max_connections: -1\n", `config: submission_max_connections: must be at least 1, got -1`},
		{"negative submission per-ip", "submission_max_connections_per_ip: -2\n", `config: submission_max_connections_per_ip: must be at least 1, got -2`},
		{"imap limit type", "imap_max_connections: lots\n", "config: line 1: cannot unmarshal !!str `lots` into int"},
		{"short data timeout", "data_timeout: 500ms\n", `config: data_timeout: must be at least 1s, got 500ms`},
		{"negative free bytes", "min_free_bytes: -1\n", `config: min_free_bytes: must not be negative, got -1`},
		{"bare newlines", "bare_newlines: fix\n", `config: bare_newlines: must be "normalize" or "reject", got "fix"`},
		{"cert without key", "tls_cert: /c.pem\n", `config: tls_key: required when tls_cert is set`},
		{"key without cert", "tls_key: /k.pem\n", `config: tls_cert: required when tls_key is set`},
		{"proxy CIDR", "proxy_protocol_from: [10.0.0.0/8, 10.0.0.0/40]\n", `config: proxy_protocol_from[1]: invalid CIDR "10.0.0.0/40"`},
		{"smarthost port", "alert_smarthost: smtp.provider.net:0\nalert_from: a@b.c\n", `config: alert_smarthost: invalid port "0"`},
		{"smarthost without from", "alert_smarthost: smtp.provider.net\n", `config: alert_from: required when alert_smarthost is set`},
		{"alert from display name", "alert_from: MXCont <mx@provider.net>\n", `config: alert_from: invalid address "MXCont <mx@provider.net>": want a bare address like user@example.com`},
		{"outbound smarthost port", "outbound_smarthost: smtp.provider.net:0\n", `config: outbound_smarthost: invalid port "0"`},
		{"short relay timeout", "relay_data_timeout: 500ms\n", `config: relay_data_timeout: must be at least 1s (or unset for the default), got 500ms`},
		{"bad relay timeout", "relay_probe_timeout: soon\n", `config: relay_probe_timeout: invalid duration "soon"`},
		{"short shadow keep", "shadow_keep: 10m\n", `config: shadow_keep: must be at least 1h, got 10m0s`},
		{"bad shadow keep", "shadow_keep: a week\n", `config: shadow_keep: invalid duration "a week"`},
		{"imaps same as imap", "imap_addr: \"127.0.0.1:1143\"\nimaps_addr: \"127.0.0.1:1143\"\n", `config: imaps_addr: same address as imap_addr`},
		{"webhook scheme", "alert_webhook: ftp://hooks.provider.net/\n", `config: alert_webhook: must be an http or https URL, got "ftp://hooks.provider.net/"`},
		{"pool size", "relay_pool_size: 0\n", `config: relay_pool_size: must be between 1 and 1000, got 0`},
		{"log level", "log_level: verbose\n", `config: log_level: must be "debug", "info", "warn" or "error", got "verbose"`},
		{"domain relay port", dom + "  - name: other.com\n    relay_host: mx.other.com:99999\n", `config: domains[1].relay_host: invalid port "99999"`},
		{"domain name", "domains:\n  - name: localhost\n    relay_host: mx\n", `config: domains[0].name: invalid domain "localhost": need at least 2 labels`},
		{"domain mode", dom + "    mode: backup\n", `config: domains[0].mode: must be "relay" or "both", got "backup"`},
		{"domain alert email", dom + "    alert_emails: [noc]\n", `config: domains[0].alert_emails[0]: invalid address "noc": mail: missing '@' or angle-addr`},
		{"domain source", dom + "    allowed_sources: [filter.provider.net]\n", `config: domains[0].allowed_sources[0]: invalid CIDR or IP address "filter.provider.net"`},
		{"domain retention", dom + "    retention_days: 5000\n", `config: domains[0].retention_days: must be between 1 and 3650, got 5000`},
		{"duplicate domain", dom + "  - name: a.com\n    relay_host: x\n  - name: Customer.COM.\n    relay_host: y\n",
			`config: domains[2].name: duplicate domain "customer.com" (also domains[0])`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadConfig(writeConfig(t, tt.yaml))
			if err == nil {
				t.Fatalf("loadConfig succeeded, want %s", tt.want)
			}
			if err.Error() != tt.want {
				t.Fatalf("loadConfig error\n got %s\nwant %s", err, tt.want)
			}
		})
	}
}

func TestLoadConfigErrorsNameTheKey(t *testing.T) {
	_, err := loadConfig(writeConfig(t, "domains:\n  - name: a.com\n    relay_host: \"h:0\"\n"))
	var ve *registry.ValidationError
	if !errors.As(err, &ve) || ve.Field != "domains[0].relay_host" {
		t.Fatalf("error %v does not wrap a ValidationError for domains[0].relay_host", err)
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.yaml")
	_, err := loadConfig(path)
	if !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "config: open "+path) {
		t.Fatalf("loadConfig(missing) = %v", err)
	}
}

func TestLoadConfigDocumentMarkers(t *testing.T) {
	for _, text := range []string{"---\nshards: 4\n", "shards: 4\n...\n", "---\nshards: 4\n---\n"} {
		c, err := loadConfig(writeConfig(t, text))
		if err != nil {
			t.Errorf("loadConfig(%q): %v", text, err)
			continue
		}
		if c.Shards != 4 {
			t.Errorf("loadConfig(%q): shards = %d", text, c.Shards)
		}
	}
}

// TestEngineConfigCarriesSettings checks that the settings a provider
// writes reach the packages that use them.
func TestEngineConfigCarriesSettings(t *testing.T) {
	c, err := loadConfig(writeConfig(t, goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	e := engineConfig(c)
	for _, chk := range []struct {
		name      string
		got, want any
	}{
		{"imap", e.IMAPAddr, c.IMAPAddr},
		{"imaps", e.IMAPSAddr, c.IMAPSAddr},
		{"submission", e.SubmissionAddr, c.SubmissionAddr},
		{"shadow keep", e.Mailbox.Keep, 72 * time.Hour},
		{"outbound smarthost", e.Outbound.Smarthost, "relay.provider.net:2525"},
		{"probe timeout", e.Relay.ProbeTimeout, 3 * time.Second},
		{"dial timeout", e.Relay.DialTimeout, 5 * time.Second},
		{"command timeout", e.Relay.CommandTimeout, 20 * time.Second},
		{"data timeout", e.Relay.DataTimeout, time.Minute},
		{"retry base", e.Relay.RetryBase, 10 * time.Second},
		{"pool size", e.Relay.PoolSize, 4},
		{"imap max connections", e.IMAP.MaxConnections, 300},
		{"imap max connections per ip", e.IMAP.MaxConnectionsPerIP, 10},
		{"submission max connections", e.Submit.MaxConns, 40},
		{"submission max connections per ip", e.Submit.MaxConnsPerIP, 5},
	} {
		if chk.got != chk.want {
			t.Errorf("%s: engine config has %v, want %v", chk.name, chk.got, chk.want)
		}
	}
}

// TestRunBadConnectionLimit: a bad limit stops the node before it starts,
// with exit code 2 and the key in the message.
func TestRunBadConnectionLimit(t *testing.T) {
	for _, key := range []string{"imap_max_connections", "imap_max_connections_per_ip",
		"submission_max_connections", "submission_max_connections_per_ip"} {
		path := writeConfig(t, "data_dir: "+t.TempDir()+"\n"+key+": -1\n")
		var stdout, stderr strings.Builder
		if code := run([]string{"serve", "-config", path}, &stdout, &stderr); code != 2 {
			t.Errorf("%s: exit code %d, want 2 (stderr %q)", key, code, stderr.String())
		}
		if want := "config: " + key + ": must be at least 1, got -1\n"; stderr.String() != want {
			t.Errorf("%s: stderr %q, want %q", key, stderr.String(), want)
		}
	}
}

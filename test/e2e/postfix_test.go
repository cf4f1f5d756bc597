package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// postfix is a private Postfix instance on a loopback port, playing the
// customer's primary server: it accepts mail for one domain and stores
// every message as a file in a Maildir the test counts.
type postfix struct {
	t    testing.TB
	conf string
	addr string
	mail string
}

func startPostfix(t testing.TB, domain string, port int) *postfix {
	t.Helper()
	bin := need(t, "postfix")
	if os.Geteuid() != 0 {
		t.Skip("running a Postfix instance needs root")
	}
	dir, err := os.MkdirTemp("", "mxcont-postfix")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	p := &postfix{t: t, conf: filepath.Join(dir, "conf"), addr: fmt.Sprintf("127.0.0.1:%d", port), mail: filepath.Join(dir, "mail")}
	for _, d := range []string{p.conf, filepath.Join(dir, "queue"), filepath.Join(dir, "data"), p.mail} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run(t, 10*time.Second, "chown", "postfix", filepath.Join(dir, "data"))
	run(t, 10*time.Second, "chown", "65534:65534", p.mail)
	main := strings.Join([]string{
		"compatibility_level = 3.6",
		"queue_directory = " + filepath.Join(dir, "queue"),
		"data_directory = " + filepath.Join(dir, "data"),
		"mail_owner = postfix",
		"setgid_group = postdrop",
		"myhostname = primary.e2e.test",
		"mydestination =",
		"inet_interfaces = 127.0.0.1",
		"inet_protocols = ipv4",
		"mynetworks = 127.0.0.0/8",
		"smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination",
		"virtual_mailbox_domains = " + domain,
		"virtual_mailbox_base = " + p.mail,
		"virtual_mailbox_maps = static:inbox/",
		"virtual_uid_maps = static:65534",
		"virtual_gid_maps = static:65534",
		"virtual_minimum_uid = 100",
		"alias_maps =",
		"alias_database =",
		"smtpd_tls_security_level = none",
		"smtp_dns_support_level = disabled",
		// No maillog_file: after a restart postsuper (root) refuses to
		// reopen the file postlogd created; the tests read the Maildir.
		"default_process_limit = 50",
		"in_flow_delay = 0",
		"",
	}, "\n")
	if err := os.WriteFile(filepath.Join(p.conf, "main.cf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	// Debian's master.cf with every service un-chrooted and smtpd moved to
	// our port.
	orig, err := os.ReadFile("/etc/postfix/master.cf")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(orig), "\n") {
		f := strings.Fields(l)
		if len(l) == 0 || l[0] == '#' || l[0] == ' ' || l[0] == '\t' || len(f) < 8 {
			out = append(out, l)
			continue
		}
		if f[0] == "smtp" && f[1] == "inet" {
			continue
		}
		f[4] = "n"
		out = append(out, strings.Join(f, " "))
	}
	out = append(out, p.addr+" inet n - n - - smtpd")
	if err := os.WriteFile(filepath.Join(p.conf, "master.cf"), []byte(strings.Join(out, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.t.Cleanup(func() {
		p.stop()
		os.RemoveAll(dir)
	})
	p.start(bin)
	return p
}

func (p *postfix) start(bin string) {
	p.t.Helper()
	if out, err := run(p.t, 60*time.Second, bin, "-c", p.conf, "start"); err != nil {
		p.t.Fatalf("postfix start: %v\n%s", err, out)
	}
	waitPort(p.t, p.addr, 30*time.Second)
}

// stop stops the instance (the test's "primary goes down" too).
func (p *postfix) stop() {
	cmd := exec.Command("/usr/sbin/postfix", "-c", p.conf, "stop")
	_ = cmd.Run()
	for i := 0; i < 100; i++ { // wait for the port to close
		if !listening(p.addr) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// delivered returns the message files in the Maildir.
func (p *postfix) delivered() []string {
	var files []string
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(p.mail, "inbox", sub))
		for _, e := range ents {
			files = append(files, filepath.Join(p.mail, "inbox", sub, e.Name()))
		}
	}
	return files
}

// messageIDs returns the Message-ID header of every delivered message.
func (p *postfix) messageIDs() map[string]int {
	ids := map[string]int{}
	for _, f := range p.delivered() {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if l == "\r" || l == "" {
				break
			}
			if strings.HasPrefix(strings.ToLower(l), "message-id:") {
				ids[strings.TrimSpace(l[len("message-id:"):])]++
			}
		}
	}
	return ids
}

func listening(addr string) bool {
	c, err := netDial(addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

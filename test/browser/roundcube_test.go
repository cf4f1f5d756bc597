package browser

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Debian's Roundcube (roundcube-core, roundcube-sqlite3) served by lighttpd
// and php-cgi from the test's own directory: nothing under /etc is used or
// changed except the read-only defaults. The recipe is the one recorded in
// ../shared/research/roundcube-e2e.md.
const (
	roundcubeRoot     = "/var/lib/roundcube/public_html"
	roundcubeDefaults = "/etc/roundcube/defaults.inc.php"
)

// roundcube is a running Roundcube instance.
type roundcube struct {
	URL string // http://127.0.0.1:port/
	dir string
	cmd *exec.Cmd
}

// needRoundcube fails under CI and skips elsewhere when Roundcube, lighttpd
// or php-cgi is missing (scripts/ci-setup.sh installs them).
func needRoundcube(t *testing.T) {
	t.Helper()
	var missing []string
	for _, p := range []string{roundcubeRoot + "/index.php", roundcubeDefaults} {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
		}
	}
	for _, tool := range []string{"lighttpd", "php-cgi"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("missing %v (scripts/ci-setup.sh installs them)", missing)
	}
	t.Skipf("missing %v", missing)
}

// startRoundcube writes Roundcube's and lighttpd's configuration under a
// temporary directory and starts lighttpd on a free loopback port. IMAP
// and SMTP (submission) point at the node; Roundcube logs full IMAP and
// SMTP transcripts under logs/, which the test prints when it fails.
func startRoundcube(t *testing.T, imapAddr, smtpAddr string) *roundcube {
	t.Helper()
	needRoundcube(t)
	dir := t.TempDir()
	for _, d := range []string{"rc/config", "rc/data", "rc/logs", "rc/temp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{roundcubeDefaults, "/etc/roundcube/mimetypes.php"} {
		if err := os.Symlink(f, filepath.Join(dir, "rc/config", filepath.Base(f))); err != nil {
			t.Fatal(err)
		}
	}
	// The node's certificate is self-signed: Roundcube talks to it on
	// loopback, so peer verification is off here. A provider points
	// Roundcube at the node's real name with a real certificate (README).
	conf := fmt.Sprintf(`<?php
$config = [];
$config['db_dsnw'] = 'sqlite:///%[1]s/rc/data/roundcube.db?mode=0640';
$config['imap_host'] = '%[2]s';
$config['smtp_host'] = '%[3]s';
$config['smtp_user'] = '%%u';
$config['smtp_pass'] = '%%p';
$config['imap_conn_options'] = ['ssl' => ['verify_peer' => false, 'verify_peer_name' => false, 'allow_self_signed' => true]];
$config['smtp_conn_options'] = ['ssl' => ['verify_peer' => false, 'verify_peer_name' => false, 'allow_self_signed' => true]];
$config['des_key'] = 'mxcont-webmail-test-key!';
$config['log_driver'] = 'file';
$config['log_dir'] = '%[1]s/rc/logs/';
$config['temp_dir'] = '%[1]s/rc/temp/';
$config['imap_debug'] = true;
$config['smtp_debug'] = true;
$config['skin'] = 'elastic';
$config['plugins'] = [];
$config['enable_installer'] = false;
$config['product_name'] = 'Webmail (mxcont continuity)';
`, dir, imapAddr, smtpAddr)
	if err := os.WriteFile(filepath.Join(dir, "rc/config/config.inc.php"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(freeAddr(t), ":")
	lconf := fmt.Sprintf(`server.modules = ( "mod_access", "mod_fastcgi", "mod_setenv" )
server.bind = "127.0.0.1"
server.port = %[2]s
server.document-root = "%[3]s"
server.pid-file = "%[1]s/lighttpd.pid"
server.errorlog = "%[1]s/lighttpd.err"
server.follow-symlink = "enable"
index-file.names = ( "index.php" )
include_shell "/usr/share/lighttpd/create-mime.conf.pl"
url.access-deny = ( "~", ".inc" )
$HTTP["url"] =~ "^/(config|temp|logs|SQL|bin)" { url.access-deny = ( "" ) }
fastcgi.server = ( ".php" => (( "bin-path" => "/usr/bin/php-cgi", "socket" => "%[1]s/php.socket", "max-procs" => 1,
    "bin-environment" => ( "PHP_FCGI_CHILDREN" => "4", "ROUNDCUBE_CONFIG_DIR" => "%[1]s/rc/config" ),
    "broken-scriptfilename" => "enable" )))
`, dir, port, roundcubeRoot)
	if err := os.WriteFile(filepath.Join(dir, "lighttpd.conf"), []byte(lconf), 0o644); err != nil {
		t.Fatal(err)
	}
	rc := &roundcube{URL: fmt.Sprintf("http://127.0.0.1:%s/", port), dir: dir}
	rc.cmd = exec.Command("lighttpd", "-D", "-f", filepath.Join(dir, "lighttpd.conf"))
	out := &syncBuffer{}
	rc.cmd.Stdout, rc.cmd.Stderr = out, out
	// lighttpd forks php-cgi children: run them in their own process
	// group and kill the group, or they outlive the test.
	rc.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	rc.cmd.WaitDelay = 5 * time.Second
	if err := rc.cmd.Start(); err != nil {
		t.Fatalf("lighttpd: %v", err)
	}
	t.Cleanup(func() {
		rc.stop()
		if t.Failed() {
			rc.dumpLogs(t)
			t.Logf("lighttpd output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(rc.URL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return rc
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if time.Now().After(deadline) {
			rc.dumpLogs(t)
			t.Fatalf("roundcube at %s not ready: %v\n%s", rc.URL, err, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop asks lighttpd to shut down, which also stops the php-cgi backends
// it spawned (they run in their own session, out of reach of a process
// group kill), then kills whatever is left.
func (rc *roundcube) stop() {
	_ = rc.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = rc.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-rc.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// dumpLogs prints Roundcube's logs (errors, IMAP and SMTP transcripts).
func (rc *roundcube) dumpLogs(t *testing.T) {
	t.Helper()
	for _, name := range []string{"errors.log", "imap.log", "smtp.log", "lighttpd.err"} {
		p := filepath.Join(rc.dir, "rc/logs", name)
		if name == "lighttpd.err" {
			p = filepath.Join(rc.dir, name)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(b)
		if len(s) > 20000 {
			s = "…" + s[len(s)-20000:]
		}
		t.Logf("roundcube %s:\n%s", name, strings.TrimSpace(s))
	}
}

// errorsLog returns Roundcube's errors.log ("" if none).
func (rc *roundcube) errorsLog() string {
	b, _ := os.ReadFile(filepath.Join(rc.dir, "rc/logs/errors.log"))
	return string(b)
}

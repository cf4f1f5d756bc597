package imapd

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestPythonImaplib runs Python's imaplib, an independent client, against
// the server: login, LIST, SELECT, FETCH BODYSTRUCTURE and the body,
// SEARCH, APPEND to Sent, STATUS, CLOSE, LOGOUT.
func TestPythonImaplib(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	e := newEnv(t)
	e.user("alice@example.com")
	e.deliver(multipart, "alice@example.com")
	e.deliver(simple("lunch"), "alice@example.com")
	host, port, _ := net.SplitHostPort(e.addr)
	cmd := exec.Command(py, "testdata/imaplib_check.py", host, port, "alice@example.com", testPassword)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	outb, err := cmd.Output()
	if err != nil {
		t.Fatalf("imaplib_check.py: %v\n%s", err, stderr.String())
	}
	var out struct {
		Capabilities []string `json:"capabilities"`
		Login        string   `json:"login"`
		List         []string `json:"list"`
		Select       []string `json:"select"`
		BodyStruct   string   `json:"bodystructure"`
		BodySHA      string   `json:"body_sha256"`
		BodyLen      int      `json:"body_len"`
		UIDSearch    string   `json:"uid_search"`
		Unseen       string   `json:"unseen"`
		Append       []string `json:"append"`
		StatusSent   string   `json:"status_sent"`
		Logout       string   `json:"logout"`
	}
	if err := json.Unmarshal(outb, &out); err != nil {
		t.Fatalf("output %q: %v", outb, err)
	}
	t.Logf("imaplib saw: %s", outb)
	if !slices.Contains(out.Capabilities, "IMAP4REV1") || out.Login != "OK" || out.Logout != "BYE" {
		t.Errorf("capabilities %v, login %s, logout %s", out.Capabilities, out.Login, out.Logout)
	}
	joined := strings.Join(out.List, "\n")
	for _, want := range []string{`"/" INBOX`, `\Sent`, `\Drafts`, `\Trash`} {
		if !strings.Contains(joined, want) {
			t.Errorf("LIST lacks %q:\n%s", want, joined)
		}
	}
	if len(out.List) != 4 {
		t.Errorf("LIST returned %d folders", len(out.List))
	}
	if len(out.Select) != 2 || out.Select[0] != "OK" || out.Select[1] != "2" {
		t.Errorf("SELECT = %v", out.Select)
	}
	bs := strings.ToUpper(out.BodyStruct)
	for _, want := range []string{`"TEXT" "PLAIN"`, `"APPLICATION" "OCTET-STREAM"`, `"MIXED"`, `"ATTACHMENT"`} {
		if !strings.Contains(bs, want) {
			t.Errorf("BODYSTRUCTURE lacks %s: %s", want, out.BodyStruct)
		}
	}
	sum := sha256.Sum256([]byte(multipart))
	if out.BodySHA != hex.EncodeToString(sum[:]) || out.BodyLen != len(multipart) {
		t.Errorf("body: %d bytes, sha256 %s; want %d bytes", out.BodyLen, out.BodySHA, len(multipart))
	}
	if out.UIDSearch != "1 2" || out.Unseen != "1 2" {
		t.Errorf("UID SEARCH ALL = %q, SEARCH UNSEEN = %q", out.UIDSearch, out.Unseen)
	}
	if len(out.Append) != 2 || out.Append[0] != "OK" || !strings.Contains(out.Append[1], "APPENDUID") {
		t.Errorf("APPEND = %v", out.Append)
	}
	if !strings.Contains(out.StatusSent, "MESSAGES 1") || !strings.Contains(out.StatusSent, "UNSEEN 0") {
		t.Errorf("STATUS Sent = %q", out.StatusSent)
	}
	_, msgs, err := e.st.Messages("alice@example.com", "Sent")
	if err != nil || len(msgs) != 1 || !hasFlag(msgs[0].Flags, `\Seen`) {
		t.Errorf("Sent in the store: %+v, %v", msgs, err)
	}
}

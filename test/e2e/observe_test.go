package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// This file holds what the fault tests read from outside the node: its
// /proc entries, its metrics, its events and its log.

// procMem returns the resident set size of pid and its peak (VmRSS and
// VmHWM), in bytes.
func procMem(t testing.TB, pid int) (rss, peak int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read status of %d: %v", pid, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v << 10
		case "VmHWM:":
			peak = v << 10
		}
	}
	return rss, peak
}

// fdKinds sorts the open descriptors of pid, read in one pass: spool
// segment files, TCP connections by remote port (listeners under 0), and
// the rest.
type fdKinds struct {
	total    int
	segments int
	peers    map[int]int
}

func procFDKinds(t testing.TB, pid int) fdKinds {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read fds of %d: %v", pid, err)
	}
	k := fdKinds{peers: map[int]int{}}
	sockets := map[string]bool{}
	for _, e := range ents {
		l, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		k.total++
		switch {
		case strings.HasPrefix(l, "socket:["):
			sockets[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		case strings.Contains(l, "/spool/shard-"):
			k.segments++
		}
	}
	for _, tab := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, tab))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// sl local rem st tx:rx tr:when retrnsmt uid timeout inode
			fs := strings.Fields(sc.Text())
			if len(fs) < 10 || !sockets[fs[9]] {
				continue
			}
			_, port, _ := strings.Cut(fs[2], ":")
			p, _ := strconv.ParseInt(port, 16, 32)
			k.peers[int(p)]++
		}
		f.Close()
	}
	return k
}

// raiseNoFile lifts this process's open-file limit to at least n (soft
// and hard, which needs root beyond the current hard limit). Processes
// started afterwards, the node included, inherit it. It reports the
// limit in force.
func raiseNoFile(t testing.TB, n uint64) uint64 {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return lim.Cur
	}
	old := lim
	want := syscall.Rlimit{Cur: n, Max: max(n, lim.Max)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		want = syscall.Rlimit{Cur: lim.Max, Max: lim.Max}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
	return want.Cur
}

// text GETs path and returns the status and body.
func (a *api) text(path string) (int, string) {
	a.t.Helper()
	resp, err := a.c.Get(a.base + path)
	if err != nil {
		a.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric returns the sum of every series of the Prometheus metric name.
func (a *api) metric(name string) float64 {
	a.t.Helper()
	code, body := a.text("/metrics")
	if code != http.StatusOK {
		a.t.Fatalf("GET /metrics: %d", code)
	}
	var sum float64
	found := false
	for _, l := range strings.Split(body, "\n") {
		rest, ok := strings.CutPrefix(l, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err == nil {
			sum += v
			found = true
		}
	}
	if !found {
		a.t.Fatalf("metric %s not exported", name)
	}
	return sum
}

// event is one entry of GET /api/v1/events.
type event struct {
	Time   time.Time `json:"time"`
	Type   string    `json:"type"`
	Actor  string    `json:"actor"`
	Domain string    `json:"domain"`
	Detail string    `json:"detail"`
}

// events returns the newest events (up to 1000) of type typ, or all.
func (a *api) events(typ string) []event {
	a.t.Helper()
	var out struct {
		Events []event `json:"events"`
	}
	if code := a.do("GET", "/api/v1/events?limit=1000", nil, &out); code != http.StatusOK {
		a.t.Fatalf("GET events: %d", code)
	}
	var evs []event
	for _, e := range out.Events {
		if typ == "" || e.Type == typ {
			evs = append(evs, e)
		}
	}
	return evs
}

// logLines returns the node's JSON log lines whose "msg" is msg.
func (n *node) logLines(msg string) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(n.log.String(), "\n") {
		if !strings.Contains(l, msg) {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// spoolOpen waits for the main spool's "spool open" log line (other
// stores of the node log the same message under their own logger name).
func (n *node) spoolOpen(d time.Duration) map[string]any {
	n.t.Helper()
	deadline := time.Now().Add(d)
	for {
		for _, l := range n.logLines("spool open") {
			if l["logger"] == "spool" {
				return l
			}
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("no \"spool open\" from the spool in the node's log after %v:\n%s", d, tail(n.log.String(), 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitLog waits until the node has logged msg (the log is flushed about
// once a second) and returns the lines.
func (n *node) waitLog(msg string, d time.Duration) []map[string]any {
	n.t.Helper()
	deadline := time.Now().Add(d)
	for {
		if l := n.logLines(msg); len(l) > 0 {
			return l
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("no %q in the node's log after %v:\n%s", msg, d, tail(n.log.String(), 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

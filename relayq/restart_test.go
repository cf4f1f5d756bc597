package relayq

import (
	"sync"
	"testing"
	"time"

	"github.com/mxcont/mxcont/internal/testutil"
)

type countMetrics struct {
	NopMetrics
	mu  sync.Mutex
	res map[string]int
}

func (m *countMetrics) Recipients(_ string, result string, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.res == nil {
		m.res = map[string]int{}
	}
	m.res[result] += n
}

func (m *countMetrics) get(result string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.res[result]
}

// TestPrimaryRestartWithIdleConnections: the primary restarts while the
// pool holds several idle connections to it. Every one of them is stale;
// none may cost a message a failed attempt (and a retry delay).
func TestPrimaryRestartWithIdleConnections(t *testing.T) {
	addr := freeAddr(t, "127.0.0.1")
	srv := testutil.StartRelayServer(t, addr)
	met := &countMetrics{}
	e := newEnv(t, func(c *Config) {
		c.Metrics = met
		c.ProbeInterval = time.Minute // the prober must not notice the restart
	})
	e.domain("restart.test", addr, nil)
	e.start()
	for i := 0; i < 16; i++ {
		e.send("restart.test", body(i, 2000))
	}
	waitFor(t, 20*time.Second, "first batch delivered", func() bool { return srv.Count() == 16 })
	if cur, _, _ := srv.Conns(); cur < 2 {
		t.Logf("only %d idle connections kept; the test is weaker", cur)
	}
	srv.Close()
	<-srv.Done()
	srv2 := testutil.StartRelayServer(t, addr)
	for i := 16; i < 32; i++ {
		e.send("restart.test", body(i, 2000))
	}
	waitFor(t, 20*time.Second, "second batch delivered", func() bool { return srv2.Count() == 16 })
	if d := met.get("deferred"); d != 0 {
		t.Fatalf("%d recipients deferred because of stale pooled connections", d)
	}
}

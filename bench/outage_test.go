package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// fakeMTA is a minimal store-and-forward MTA: it queues in memory and
// retries its relay host every few milliseconds. dup makes it deliver
// one message twice; lose makes it drop one.
type fakeMTA struct {
	relay     string
	dup, lose bool

	mu    sync.Mutex
	queue []queued
	n     int
}

type queued struct {
	from  string
	rcpts []string
	data  []byte
}

type fakeSession struct {
	m     *fakeMTA
	from  string
	rcpts []string
}

func (s *fakeSession) Mail(from string, _ *smtp.MailOptions) error { s.from = from; return nil }
func (s *fakeSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.rcpts = append(s.rcpts, to)
	return nil
}
func (s *fakeSession) Reset()        { s.from, s.rcpts = "", nil }
func (s *fakeSession) Logout() error { return nil }
func (s *fakeSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	s.m.n++
	if !(s.m.lose && s.m.n == 5) {
		s.m.queue = append(s.m.queue, queued{s.from, s.rcpts, b})
		if s.m.dup && s.m.n == 3 {
			s.m.queue = append(s.m.queue, queued{s.from, s.rcpts, b})
		}
	}
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: fmt.Sprintf("queued as Q%d", s.m.n)}
}

func (m *fakeMTA) forward(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(20 * time.Millisecond):
		}
		m.mu.Lock()
		q := m.queue
		m.mu.Unlock()
		if len(q) == 0 {
			continue
		}
		c, err := smtp.Dial(m.relay)
		if err != nil {
			continue
		}
		sent := 0
		for _, msg := range q {
			if c.SendMail(msg.from, msg.rcpts, bytes.NewReader(msg.data)) != nil {
				break
			}
			sent++
		}
		c.Quit()
		m.mu.Lock()
		m.queue = m.queue[sent:]
		m.mu.Unlock()
	}
}

func startFakeMTA(t *testing.T, relay string, dup, lose bool) string {
	t.Helper()
	m := &fakeMTA{relay: relay, dup: dup, lose: lose}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &fakeSession{m: m}, nil }))
	srv.Domain = "fake-mta"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	stop := make(chan struct{})
	go m.forward(stop)
	t.Cleanup(func() { close(stop); srv.Close() })
	return ln.Addr().String()
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestOutageScenario(t *testing.T) {
	for _, tc := range []struct {
		name      string
		dup, lose bool
	}{{"exactly-once", false, false}, {"duplicate", true, false}, {"lost", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			primary := freeAddr(t)
			mta := startFakeMTA(t, primary, tc.dup, tc.lose)
			g, _ := NewGenerator("s@example.org", 1000)
			var sinkLog bytes.Buffer
			res, err := RunOutage(context.Background(), OutageConfig{
				Load:     LoadConfig{Addr: mta, Sessions: 3, PerConn: 10, Pipelining: true, Gen: g, Count: 60},
				SinkAddr: primary, SinkLog: &sinkLog, DrainTimeout: 1500 * time.Millisecond, Settle: 200 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Load.Accepted != 60 || res.FirstDeliveryS < 0 || res.FirstDeliveryS > 1 {
				t.Fatalf("accepted %d, first delivery %.2fs", res.Load.Accepted, res.FirstDeliveryS)
			}
			switch {
			case tc.dup:
				if res.OK || res.Duplicates != 1 || res.Lost != 0 {
					t.Fatalf("duplicate not reported: %+v", res)
				}
			case tc.lose:
				if res.OK || res.Lost != 1 || !res.TimedOut || len(res.Sink.Check.MissingSample) != 1 {
					t.Fatalf("loss not reported: %+v %+v", res, res.Sink.Check)
				}
			default:
				if !res.OK || res.Lost != 0 || res.Duplicates != 0 || res.DrainRate <= 0 || res.Sink.Digests[DigestOK] != 60 {
					t.Fatalf("%+v", res)
				}
			}
			if d, _ := ReadDeliveries(&sinkLog); int64(len(d)) != res.Sink.Messages {
				t.Fatalf("sink log has %d lines for %d messages", len(d), res.Sink.Messages)
			}
		})
	}
}

func TestOutageRefusesALivePrimary(t *testing.T) {
	sink := startTestSink(t, SinkConfig{})
	g, _ := NewGenerator("s@example.org", 100)
	_, err := RunOutage(context.Background(), OutageConfig{Load: LoadConfig{Addr: sink.Addr(), Gen: g, Count: 1}, SinkAddr: sink.Addr()})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("must be down")) {
		t.Fatalf("err = %v", err)
	}
}

func TestLoadAgainstGoSMTPServer(t *testing.T) {
	mta := startFakeMTA(t, freeAddr(t), false, false)
	g, _ := NewGenerator("s@example.org", 2000)
	rec := NewRecorder(nil, true)
	res, err := RunLoad(context.Background(), LoadConfig{Addr: mta, Sessions: 2, PerConn: 5, Pipelining: true, Gen: g, Count: 30, Record: rec})
	if err != nil || res.Accepted != 30 {
		t.Fatalf("accepted %d, %v", res.Accepted, err)
	}
	for _, e := range rec.Entries() {
		if !strings.HasPrefix(e.QueueID, "Q") {
			t.Fatalf("queue id not parsed: %+v", e)
		}
	}
}

func TestSinkProtocol(t *testing.T) {
	var log bytes.Buffer
	sink := startTestSink(t, SinkConfig{Log: &log})
	long := strings.Repeat("x", 100<<10)
	body := ".leading dot\r\n..two dots\r\n" + long + "\r\n.\r\nlast\r\n"
	h := newLFHash()
	h.Write([]byte(body))
	msg := "Message-ID: <p1@x>\r\n" + DigestHeader + ": sha256=" + h.sum() + "\r\n\r\n" + body

	c, err := smtp.Dial(sink.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("a@x", []string{"b@y", "c@z"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := c.Noop(); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("b@y", nil); err == nil {
		t.Fatal("RCPT without MAIL accepted")
	}
	c.Quit()

	// Raw pipelined dialogue: every reply comes, in order.
	conn, err := net.Dial("tcp", sink.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "HELO x\r\nMAIL FROM:<a@x>\r\nRCPT TO:<d@y>\r\nDATA\r\nSubject: no digest\r\n\r\nhi\r\n.\r\nVRFY x\r\nQUIT\r\n")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	all, _ := io.ReadAll(conn)
	var codes []string
	for _, l := range strings.Split(strings.TrimSpace(string(all)), "\r\n") {
		codes = append(codes, l[:3])
	}
	if got := strings.Join(codes, " "); got != "220 250 250 250 354 250 502 221" {
		t.Fatalf("replies %q:\n%s", got, all)
	}
	sink.Close()
	ds, _ := ReadDeliveries(&log)
	if len(ds) != 2 || ds[0].Digest != DigestOK || ds[0].MessageID != "p1@x" || len(ds[0].Rcpts) != 2 || ds[1].Digest != DigestMissing {
		t.Fatalf("deliveries %+v", ds)
	}
}

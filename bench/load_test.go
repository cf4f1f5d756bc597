package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"os"
	"strings"
	"testing"
	"time"
)

func startTestSink(t *testing.T, cfg SinkConfig) *Sink {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	s, err := StartSink(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestLoadAgainstSink(t *testing.T) {
	for _, tc := range []struct {
		name       string
		pipelining bool
		perConn    int
		rcpts      int
		domains    []string
	}{
		{"pipelined", true, 10, 1, nil},
		{"lockstep", false, 1, 1, nil},
		{"rcpts-domains", true, 0, 3, []string{"a.test", "b.test"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log bytes.Buffer
			sink := startTestSink(t, SinkConfig{Log: &log})
			g, err := NewGenerator("s@example.org", 3000)
			if err != nil {
				t.Fatal(err)
			}
			var recBuf bytes.Buffer
			rec := NewRecorder(&recBuf, true)
			res, err := RunLoad(context.Background(), LoadConfig{Addr: sink.Addr(), Sessions: 4, PerConn: tc.perConn,
				Pipelining: tc.pipelining, Rcpts: tc.rcpts, Domains: tc.domains, Gen: g, Count: 200, Record: rec, PID: os.Getpid()})
			if err != nil {
				t.Fatal(err)
			}
			if res.Accepted != 200 || res.Failed != 0 || len(res.Errors) != 0 {
				t.Fatalf("accepted %d failed %d errors %v", res.Accepted, res.Failed, res.Errors)
			}
			if res.Latency.P50 <= 0 || res.Latency.P99 < res.Latency.P50 || res.MsgsPerSec <= 0 {
				t.Errorf("latency %+v rate %.1f", res.Latency, res.MsgsPerSec)
			}
			if res.Proc == nil || res.Proc.PeakRSSMiB <= 0 {
				t.Errorf("proc %+v", res.Proc)
			}
			if sink.Messages() != 200 {
				t.Fatalf("sink got %d messages", sink.Messages())
			}
			st := sink.Stats()
			if st.Digests[DigestOK] != 200 || st.Rcpts != int64(200*tc.rcpts) {
				t.Fatalf("sink stats %+v", st)
			}
			// The record written as JSONL reads back and matches the sink log.
			entries, err := ReadRecord(&recBuf)
			if err != nil || len(entries) != 200 {
				t.Fatalf("record: %d entries, %v", len(entries), err)
			}
			for _, e := range entries {
				if len(e.Rcpts) != tc.rcpts || len(e.Digest) != 64 {
					t.Fatalf("entry %+v", e)
				}
				if tc.domains != nil && !strings.HasSuffix(e.Rcpts[0], ".test") {
					t.Fatalf("entry %+v", e)
				}
			}
			sink.Close()
			ds, err := ReadDeliveries(&log)
			if err != nil {
				t.Fatal(err)
			}
			if c := Check(entries, ds); !c.OK || c.DeliveredRcpts != 200*tc.rcpts || c.Unexpected != 0 {
				t.Fatalf("check %+v", c)
			}
		})
	}
}

func TestLoadCountsInjectedFailures(t *testing.T) {
	checker := NewChecker(nil)
	sink := startTestSink(t, SinkConfig{FailRate: 0.3, FailCodes: []int{451, 554}, Checker: checker})
	g, _ := NewGenerator("s@example.org", 500)
	rec := NewRecorder(nil, true)
	res, err := RunLoad(context.Background(), LoadConfig{Addr: sink.Addr(), Sessions: 3, PerConn: 5, Pipelining: true, Gen: g, Count: 300, Record: rec})
	if err != nil {
		t.Fatal(err)
	}
	st := sink.Stats()
	if res.Accepted+res.Failed != 300 || res.Failed != st.Injected || res.Failed < 40 || res.Failed > 150 {
		t.Fatalf("accepted %d failed %d injected %d", res.Accepted, res.Failed, st.Injected)
	}
	if res.Errors["451 end of data"]+res.Errors["554 end of data"] != int(res.Failed) || res.Errors["451 end of data"] == 0 || res.Errors["554 end of data"] == 0 {
		t.Fatalf("errors %v", res.Errors)
	}
	if rec.Len() != res.Accepted || st.Messages != res.Accepted {
		t.Fatalf("recorded %d, sink accepted %d, load accepted %d", rec.Len(), st.Messages, res.Accepted)
	}
}

func TestLoadRateAndRefusedConnections(t *testing.T) {
	sink := startTestSink(t, SinkConfig{})
	g, _ := NewGenerator("s@example.org", 100)
	start := time.Now()
	res, err := RunLoad(context.Background(), LoadConfig{Addr: sink.Addr(), Sessions: 4, Gen: g, Count: 40, Rate: 100})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 350*time.Millisecond || res.Accepted != 40 {
		t.Fatalf("40 messages at 100/s took %s, accepted %d", el, res.Accepted)
	}

	addr := sink.Addr()
	sink.Close()
	res, err = RunLoad(context.Background(), LoadConfig{Addr: addr, Sessions: 2, Gen: g, Count: 4, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 0 || res.Failed != 4 || res.Errors["net: connection refused"] != 4 {
		t.Fatalf("against a closed port: %+v", res)
	}
}

func TestLoadDuration(t *testing.T) {
	sink := startTestSink(t, SinkConfig{})
	g, _ := NewGenerator("s@example.org", 100)
	res, err := RunLoad(context.Background(), LoadConfig{Addr: sink.Addr(), Sessions: 2, Gen: g, Duration: 300 * time.Millisecond, Rate: 50})
	if err != nil {
		t.Fatal(err)
	}
	if res.Elapsed < 0.25 || res.Elapsed > 2 || res.Accepted < 5 || res.Accepted > 25 {
		t.Fatalf("elapsed %.2f accepted %d", res.Elapsed, res.Accepted)
	}
}

func TestCheck(t *testing.T) {
	rec := []RecordEntry{
		{MessageID: "1@x", Rcpts: []string{"a@d1", "b@d2"}},
		{MessageID: "2@x", Rcpts: []string{"c@d1"}},
		{MessageID: "3@x", Rcpts: []string{"e@d1"}},
	}
	ds := []Delivery{
		{MessageID: "1@x", Rcpts: []string{"a@d1"}, Digest: DigestOK},
		{MessageID: "1@x", Rcpts: []string{"B@d2"}, Digest: DigestOK}, // split per domain, case differs
		{MessageID: "2@x", Rcpts: []string{"c@d1"}, Digest: DigestOK},
		{MessageID: "2@x", Rcpts: []string{"c@d1"}, Digest: DigestBad}, // a second, damaged copy
		{MessageID: "9@x", Rcpts: []string{"z@d1"}, Digest: DigestMissing},
	}
	c := Check(rec, ds)
	want := CheckResult{ExpectedMessages: 3, ExpectedRcpts: 4, DeliveredRcpts: 3, Missing: 1, MissingMessages: 1,
		Duplicates: 1, Unexpected: 1, DigestBad: 1, NoDigest: 1, MissingSample: []string{"3@x"}}
	cj, _ := json.Marshal(c)
	wj, _ := json.Marshal(want)
	if !bytes.Equal(cj, wj) {
		t.Fatalf("got  %s\nwant %s", cj, wj)
	}
	if c := Check(rec[:2], ds[:3]); !c.OK {
		t.Fatalf("complete delivery: %+v", c)
	}
}

func TestProcSamplerSelf(t *testing.T) {
	s, err := StartProcSampler(os.Getpid(), 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for i := range 20_000_000 {
		x += i % 7
	}
	_ = x
	st := s.Stop()
	if st.PeakRSSMiB <= 1 || st.PeakPSSMiB <= 0 || st.PeakProcs < 1 || st.Samples < 2 || st.CPUSeconds < 0 {
		t.Fatalf("%+v", st)
	}
	if _, err := StartProcSampler(1<<30, time.Second); err == nil {
		t.Fatal("no error for a missing process")
	}
}

func TestReportsAndChart(t *testing.T) {
	load := &LoadResult{Type: "load", Label: "postfix/s20 4KiB", Accepted: 100, Offered: 100, MsgsPerSec: 300,
		Latency: Latency{P99: 80}, Proc: &ProcStats{CPUSeconds: 0.4, PeakPSSMiB: 100, PeakRSSMiB: 900},
		Timeline: []Point{{0.5, 10}, {1, 150}, {2, 300}}}
	load2 := *load
	load2.Label, load2.MsgsPerSec = "mxcont/s20 4KiB", 3000
	sink := &SinkStats{Type: "sink", Label: "postfix/s20 4KiB", FirstS: 65, FlushAtS: 60, DrainRate: 700, Messages: 100,
		Check: &CheckResult{OK: true}}
	sink2 := &SinkStats{Type: "sink", Label: "mxcont/s20 4KiB", FirstS: 1.2, DrainRate: 7000, Messages: 100, Check: &CheckResult{OK: true}}
	var results []Result
	for _, v := range []any{load, &load2, sink, sink2} {
		b, _ := json.Marshal(v)
		r, err := DecodeResult(b)
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, r)
	}
	var out bytes.Buffer
	WriteComparison(&out, results, [2]string{"postfix", "mxcont"})
	for _, want := range []string{"| s20 4KiB | mxbench | 300 | 3000 | **10.0×** |", "**10.0×** | >60 s (none before the flush); 5.00 s after the flush | 1.20 s |", "| 900 | 900 |"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("comparison lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	WriteLoad(&out, load)
	WriteSink(&out, sink2)
	if !strings.Contains(out.String(), "300.0 msg/s") || !strings.Contains(out.String(), "1.20 s after") {
		t.Errorf("tables:\n%s", out.String())
	}
	out.Reset()
	if err := WriteSVG(&out, "t <&>", Series{Name: "a", Points: load.Timeline}, Series{Name: "b", Offset: 3, Points: load.Timeline}); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(&out)
	for {
		if _, err := dec.Token(); err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("SVG is not well-formed: %v", err)
			}
			break
		}
	}
}

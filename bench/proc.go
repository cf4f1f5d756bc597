package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// clkTck is USER_HZ, the unit of the times in /proc/PID/stat (100 on
// every Linux architecture Go supports).
const clkTck = 100

// ProcStats is what a ProcSampler saw of a process tree.
type ProcStats struct {
	PID        int     `json:"pid"`
	CPUSeconds float64 `json:"cpu_s"` // user+system, reaped children included, during the sampling
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	PeakPSSMiB float64 `json:"peak_pss_mib"` // proportional set size: shared pages split between sharers
	PeakProcs  int     `json:"peak_procs"`
	Samples    int     `json:"samples"`
}

// ProcSampler samples the CPU time and memory of a process and all its
// descendants (Postfix is a tree of master, smtpd, cleanup, qmgr...).
type ProcSampler struct {
	root  int
	start float64
	stop  chan struct{}
	done  chan struct{}

	mu    sync.Mutex
	stats ProcStats
}

// StartProcSampler begins sampling pid's tree every interval.
func StartProcSampler(pid int, interval time.Duration) (*ProcSampler, error) {
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
		return nil, fmt.Errorf("bench: process %d: %w", pid, err)
	}
	s := &ProcSampler{root: pid, stop: make(chan struct{}), done: make(chan struct{})}
	s.stats.PID = pid
	s.start = treeCPU(TreePIDs(pid))
	s.sample()
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.sample()
			}
		}
	}()
	return s, nil
}

func (s *ProcSampler) sample() {
	pids := TreePIDs(s.root)
	rss, pss := treeMem(pids)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Samples++
	s.stats.PeakRSSMiB = max(s.stats.PeakRSSMiB, float64(rss)/1024)
	s.stats.PeakPSSMiB = max(s.stats.PeakPSSMiB, float64(pss)/1024)
	s.stats.PeakProcs = max(s.stats.PeakProcs, len(pids))
}

// Snapshot returns the figures so far.
func (s *ProcSampler) Snapshot() ProcStats {
	cpu := treeCPU(TreePIDs(s.root))
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.CPUSeconds = cpu - s.start
	return st
}

// Stop takes a last sample and returns the figures.
func (s *ProcSampler) Stop() ProcStats {
	close(s.stop)
	<-s.done
	s.sample()
	return s.Snapshot()
}

// SelfCPU is the CPU time (user+system) this process has used so far, in
// seconds: the load generator's or the sink's own cost, which shares the
// machine with the MTA.
func SelfCPU() float64 { return treeCPU([]int{os.Getpid()}) }

// TreePIDs returns pid and all its live descendants.
func TreePIDs(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return []int{pid}
	}
	children := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp, ok := readPPID(p); ok {
			children[pp] = append(children[pp], p)
		}
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// statFields returns the fields of /proc/PID/stat after the command name.
func statFields(pid int) ([][]byte, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 > len(b) {
		return nil, false
	}
	return bytes.Fields(b[i+2:]), true
}

func readPPID(pid int) (int, bool) {
	f, ok := statFields(pid)
	if !ok || len(f) < 2 {
		return 0, false
	}
	pp, err := strconv.Atoi(string(f[1]))
	return pp, err == nil
}

// treeCPU sums utime+stime+cutime+cstime (stat fields 14–17) in seconds.
func treeCPU(pids []int) float64 {
	var ticks int64
	for _, p := range pids {
		f, ok := statFields(p)
		if !ok || len(f) < 15 {
			continue
		}
		for _, k := range f[11:15] {
			v, _ := strconv.ParseInt(string(k), 10, 64)
			ticks += v
		}
	}
	return float64(ticks) / clkTck
}

// treeMem sums Rss and Pss (KiB) from smaps_rollup.
func treeMem(pids []int) (rss, pss int64) {
	for _, p := range pids {
		f, err := os.Open(filepath.Join("/proc", strconv.Itoa(p), "smaps_rollup"))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			l := sc.Bytes()
			var dst *int64
			switch {
			case bytes.HasPrefix(l, []byte("Rss:")):
				dst = &rss
			case bytes.HasPrefix(l, []byte("Pss:")):
				dst = &pss
			default:
				continue
			}
			fs := bytes.Fields(l)
			if len(fs) >= 2 {
				v, _ := strconv.ParseInt(string(fs[1]), 10, 64)
				*dst += v
			}
		}
		f.Close()
	}
	return rss, pss
}

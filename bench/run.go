package bench

import (
	"context"
	"errors"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// RunResult is the outcome of an external load tool (Postfix's
// smtp-source, say) timed by RunCommand.
type RunResult struct {
	Type       string     `json:"type"` // "run"
	Label      string     `json:"label,omitempty"`
	Command    string     `json:"command"`
	Count      int64      `json:"count"` // messages the tool was told to send
	Elapsed    float64    `json:"elapsed_s"`
	MsgsPerSec float64    `json:"msgs_per_s"` // Count / Elapsed
	ExitCode   int        `json:"exit_code"`
	Proc       *ProcStats `json:"mta_proc,omitempty"`
}

// RunCommand runs argv, timing it and sampling the MTA's process tree
// (pid > 0). count is the number of messages the command sends; the rate
// is count over the wall time, so the caller must check separately that
// they were all accepted (the drain's sink does).
func RunCommand(ctx context.Context, count int64, pid int, argv []string, stdout, stderr io.Writer) (*RunResult, error) {
	if len(argv) == 0 {
		return nil, errors.New("bench: no command")
	}
	res := &RunResult{Type: "run", Command: strings.Join(argv, " "), Count: count}
	var sampler *ProcSampler
	if pid > 0 {
		var err error
		if sampler, err = StartProcSampler(pid, 500*time.Millisecond); err != nil {
			return nil, err
		}
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Its own process group, killed as a whole when ctx ends: a shell
	// pipeline of load tools must not outlive us.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	start := time.Now()
	err := cmd.Run()
	res.Elapsed = time.Since(start).Seconds()
	if sampler != nil {
		st := sampler.Stop()
		res.Proc = &st
	}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.ExitCode = ee.ExitCode()
	case err != nil:
		return nil, err
	}
	if res.Elapsed > 0 {
		res.MsgsPerSec = float64(count) / res.Elapsed
	}
	return res, nil
}

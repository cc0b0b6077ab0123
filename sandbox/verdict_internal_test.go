package sandbox

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/toolcell/toolcell/audit"
)

func TestVerdict(t *testing.T) {
	exited := func(code int) *unix.WaitStatus { ws := unix.WaitStatus(code << 8); return &ws }
	signaled := func(sig unix.Signal) *unix.WaitStatus { ws := unix.WaitStatus(sig); return &ws }
	execErr := errors.New("execve: ENOENT")
	cases := []struct {
		name     string
		status   *unix.WaitStatus
		execErr  error
		killedBy audit.Reason
		oom      uint64
		want     audit.Exit
	}{
		{"exit 0", exited(0), nil, "", 0, audit.Exit{Reason: audit.ReasonExited, Code: 0}},
		{"exit 3", exited(3), nil, "", 0, audit.Exit{Reason: audit.ReasonExited, Code: 3}},
		{"signal", signaled(unix.SIGTERM), nil, "", 0, audit.Exit{Reason: audit.ReasonSignaled, Code: -1, Signal: "SIGTERM"}},
		{"sigsys is the filter's kill", signaled(unix.SIGSYS), nil, "", 0, audit.Exit{Reason: audit.ReasonSeccompKill, Code: -1, Signal: "SIGSYS"}},
		{"no status: pid 1 died", nil, nil, "", 0, audit.Exit{Reason: audit.ReasonSignaled, Code: -1, Signal: "SIGKILL"}},
		{"exec failed", nil, execErr, "", 0, audit.Exit{Reason: audit.ReasonSetupFailed, Code: 127}},
		{"timeout kill", signaled(unix.SIGKILL), nil, audit.ReasonTimeout, 0, audit.Exit{Reason: audit.ReasonTimeout, Code: -1, Signal: "SIGKILL"}},
		{"timeout, no status", nil, nil, audit.ReasonTimeout, 0, audit.Exit{Reason: audit.ReasonTimeout, Code: -1, Signal: "SIGKILL"}},
		{"canceled", nil, nil, audit.ReasonCanceled, 0, audit.Exit{Reason: audit.ReasonCanceled, Code: -1, Signal: "SIGKILL"}},
		// The tool exited before the kill landed: its own exit counts.
		{"exited before the timeout kill", exited(0), nil, audit.ReasonTimeout, 0, audit.Exit{Reason: audit.ReasonExited, Code: 0}},
		// Past the output cap the reason says so even if the tool exited
		// by itself (on the EPIPE it got, say).
		{"output cap, tool exited", exited(0), nil, audit.ReasonOutputLimit, 0, audit.Exit{Reason: audit.ReasonOutputLimit, Code: 0}},
		{"output cap, killed", signaled(unix.SIGKILL), nil, audit.ReasonOutputLimit, 0, audit.Exit{Reason: audit.ReasonOutputLimit, Code: -1, Signal: "SIGKILL"}},
		// An OOM kill of any process of a run that failed is the reason.
		{"oom killed the tool", signaled(unix.SIGKILL), nil, "", 1, audit.Exit{Reason: audit.ReasonOOM, Code: -1, Signal: "SIGKILL"}},
		{"oom killed a child, shell failed", exited(137), nil, "", 1, audit.Exit{Reason: audit.ReasonOOM, Code: 137}},
		{"oom killed a child, shell succeeded", exited(0), nil, "", 1, audit.Exit{Reason: audit.ReasonExited, Code: 0}},
		{"oom during a timeout", nil, nil, audit.ReasonTimeout, 1, audit.Exit{Reason: audit.ReasonTimeout, Code: -1, Signal: "SIGKILL"}},
	}
	for _, c := range cases {
		got := verdict(c.status, c.execErr, c.killedBy, c.oom)
		if got.Reason != c.want.Reason || got.Code != c.want.Code || got.Signal != c.want.Signal {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
		}
	}
}

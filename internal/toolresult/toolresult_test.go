package toolresult

import (
	"testing"

	"github.com/toolcell/toolcell/sandbox"
)

func TestVerdict(t *testing.T) {
	for _, c := range []struct {
		r    Result
		want string
	}{
		{Result{Reason: sandbox.ReasonExited}, "[exit 0]"},
		{Result{Reason: sandbox.ReasonExited, ExitCode: 2, LimitsHit: []string{sandbox.LimitCPUThrottled}}, "[exit 2]"},
		{Result{Reason: sandbox.ReasonExited, LimitsHit: []string{sandbox.LimitMemory}}, "[exit 0; limit hit: memory]"},
		{Result{Reason: sandbox.ReasonOOM, LimitsHit: []string{sandbox.LimitMemory}}, "[killed: memory limit]"},
		{Result{Reason: sandbox.ReasonTimeout, LimitsHit: []string{sandbox.LimitTimeout}}, "[killed: time limit]"},
		{Result{Reason: sandbox.ReasonExited, ExitCode: 1, Denials: 3, FirstDenials: []string{"socket family=AF_INET"}, Removed: 2},
			"[exit 1; denied: socket family=AF_INET (+2 more); 2 hidden characters removed]"},
		{Result{Reason: sandbox.ReasonSeccompKill}, "[seccomp_kill]"},
	} {
		if got := c.r.Verdict(); got != c.want {
			t.Errorf("Verdict(%+v) = %q, want %q", c.r, got, c.want)
		}
	}
}

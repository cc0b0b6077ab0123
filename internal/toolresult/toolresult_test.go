package toolresult

import (
	"testing"

	"github.com/toolcell/toolcell/audit"
)

func TestVerdict(t *testing.T) {
	for _, c := range []struct {
		r    Result
		want string
	}{
		{Result{Reason: audit.ReasonExited}, "[exit 0]"},
		{Result{Reason: audit.ReasonExited, ExitCode: 2, LimitsHit: []audit.Limit{audit.LimitCPUThrottled}}, "[exit 2]"},
		{Result{Reason: audit.ReasonExited, LimitsHit: []audit.Limit{audit.LimitMemory}}, "[exit 0; limit hit: memory]"},
		{Result{Reason: audit.ReasonOOM, LimitsHit: []audit.Limit{audit.LimitMemory}}, "[killed: memory limit]"},
		{Result{Reason: audit.ReasonTimeout, LimitsHit: []audit.Limit{audit.LimitTimeout}}, "[killed: time limit]"},
		{Result{Reason: audit.ReasonExited, ExitCode: 1, Denials: 3, FirstDenials: []string{"socket family=AF_INET"}, Removed: 2},
			"[exit 1; denied: socket family=AF_INET (+2 more); 2 hidden characters removed]"},
		{Result{Reason: audit.ReasonSeccompKill}, "[seccomp_kill]"},
	} {
		if got := c.r.Verdict(); got != c.want {
			t.Errorf("Verdict(%+v) = %q, want %q", c.r, got, c.want)
		}
	}
}

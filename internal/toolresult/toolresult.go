// Package toolresult turns a sandbox run into what a model reads: the
// cleaned output and a one-line verdict. Package mcptool and agenttool
// share it so that a model sees the same words from both.
package toolresult

import (
	"fmt"
	"strings"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/internal/safetext"
	"github.com/toolcell/toolcell/sandbox"
)

// Result is a run's outcome as a model reads it.
type Result struct {
	ExitCode        int
	Reason          audit.Reason
	Stdout, Stderr  string // cleaned (safetext), cut to the cap
	StdoutTruncated bool
	StderrTruncated bool
	Removed         int // escape sequences and invisible characters removed
	LimitsHit       []audit.Limit
	Denials         int
	FirstDenials    []string
}

// From builds a Result from a run, its captured output, and the cap (0:
// none) on each stream.
func From(res *sandbox.Result, stdout, stderr []byte, limit int) Result {
	r := Result{ExitCode: res.Exit.Code, Reason: res.Exit.Reason, FirstDenials: []string{}, LimitsHit: []audit.Limit{}}
	rec := res.Audit
	if rec != nil {
		r.StdoutTruncated, r.StderrTruncated = rec.Output.StdoutTruncated, rec.Output.StderrTruncated
		if rec.Exit.LimitsHit != nil {
			r.LimitsHit = rec.Exit.LimitsHit
		}
		r.Denials = len(rec.Denials)
		for _, d := range rec.Denials {
			if len(r.FirstDenials) == 3 {
				break
			}
			r.FirstDenials = append(r.FirstDenials, strings.TrimSpace(d.Syscall+" "+d.Detail))
		}
	}
	if limit > 0 {
		if len(stdout) > limit {
			stdout, r.StdoutTruncated = stdout[:limit], true
		}
		if len(stderr) > limit {
			stderr, r.StderrTruncated = stderr[:limit], true
		}
	}
	var n1, n2 int
	r.Stdout, n1 = safetext.Clean(string(stdout))
	r.Stderr, n2 = safetext.Clean(string(stderr))
	r.Removed = n1 + n2
	return r
}

// Text is stdout, stderr (marked) and the verdict line.
func (r Result) Text() string {
	var b strings.Builder
	b.WriteString(r.Stdout)
	if r.StdoutTruncated {
		b.WriteString("\n[stdout truncated]")
	}
	if r.Stderr != "" {
		if b.Len() > 0 && !strings.HasSuffix(b.String(), "\n") {
			b.WriteByte('\n')
		}
		b.WriteString("[stderr]\n" + r.Stderr)
		if r.StderrTruncated {
			b.WriteString("\n[stderr truncated]")
		}
	}
	if b.Len() > 0 && !strings.HasSuffix(b.String(), "\n") {
		b.WriteByte('\n')
	}
	b.WriteString(r.Verdict())
	return b.String()
}

// Verdict is the one-line summary: "[exit 0]", "[exit 1]", "[killed:
// memory limit]", "[killed: time limit; denied: socket ...]".
func (r Result) Verdict() string {
	var v string
	switch r.Reason {
	case audit.ReasonExited:
		v = fmt.Sprintf("exit %d", r.ExitCode)
	case audit.ReasonOOM:
		v = "killed: memory limit"
	case audit.ReasonTimeout:
		v = "killed: time limit"
	case audit.ReasonOutputLimit:
		v = "killed: output limit"
	case audit.ReasonCanceled:
		v = "canceled"
	default:
		v = string(r.Reason)
	}
	var extra []string
	for _, l := range r.LimitsHit {
		// The verdict names limits that changed the outcome: throttling
		// only slowed the run (the record has it), and a timeout, an output
		// cap or an OOM the reason says already.
		if l != audit.LimitTimeout && l != audit.LimitOutput && l != audit.LimitCPUThrottled &&
			!(l == audit.LimitMemory && r.Reason == audit.ReasonOOM) {
			extra = append(extra, "limit hit: "+string(l))
		}
	}
	if len(r.FirstDenials) > 0 {
		d := "denied: " + r.FirstDenials[0]
		if r.Denials > 1 {
			d += fmt.Sprintf(" (+%d more)", r.Denials-1)
		}
		extra = append(extra, d)
	}
	if r.Removed > 0 {
		extra = append(extra, fmt.Sprintf("%d hidden characters removed", r.Removed))
	}
	if len(extra) > 0 {
		v += "; " + strings.Join(extra, "; ")
	}
	return "[" + v + "]"
}

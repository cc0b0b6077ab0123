package mcptool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/internal/toolresult"
	"github.com/toolcell/toolcell/sandbox"
)

// DefaultMaxResult caps each output stream in a result.
const DefaultMaxResult = 1 << 20

// Tool is a sandboxed command offered as an MCP tool whose input is In (a
// struct: the SDK infers the input schema from it, descriptions from
// `jsonschema` tags).
type Tool[In any] struct {
	Name        string
	Description string
	// Policy is what each call's sandbox may do (cloned per call).
	Policy *capability.Set
	// Args turns the client's input into the command line (Args[0] is the
	// program: a path in the view, or a name in its PATH). An error is the
	// call's error, nothing runs.
	Args func(In) ([]string, error)
	// Stdin, if set, is the tool's standard input for the input.
	Stdin func(In) io.Reader
	// Runner runs the sandboxes; nil means sandbox.DefaultRunner.
	Runner *sandbox.Runner
	// MaxResult caps each output stream in the result (and the sandbox's
	// max_output, truncating); 0 means DefaultMaxResult.
	MaxResult int
}

// Output is a call's structured result.
type Output struct {
	ExitCode        int          `json:"exit_code" jsonschema:"the tool's exit status, -1 if it did not exit by itself"`
	Reason          audit.Reason `json:"reason" jsonschema:"how the run ended: exited, signaled, timeout, oom, output_limit, canceled, seccomp_kill, setup_failed"`
	Stdout          string       `json:"stdout" jsonschema:"standard output, up to the result cap, escapes and invisible characters removed"`
	Stderr          string       `json:"stderr" jsonschema:"standard error, the same way"`
	StdoutTruncated bool         `json:"stdout_truncated" jsonschema:"standard output was longer than the cap"`
	StderrTruncated bool         `json:"stderr_truncated" jsonschema:"standard error was longer than the cap"`
	Removed         int          `json:"removed_characters" jsonschema:"escape sequences and invisible characters removed from the output"`
	Audit           Summary      `json:"audit" jsonschema:"the run's audit record, summarised"`
}

// Summary is the part of the audit record a client sees.
type Summary struct {
	ID           string        `json:"id" jsonschema:"the run's record id"`
	PolicyHash   string        `json:"policy_hash" jsonschema:"sha256 of the policy"`
	LimitsHit    []audit.Limit `json:"limits_hit" jsonschema:"limits the run ran into"`
	Denials      int           `json:"denials" jsonschema:"kinds of syscalls the sandbox refused"`
	FirstDenials []string      `json:"first_denials" jsonschema:"the first refused syscalls, decoded"`
	DurationMS   float64       `json:"duration_ms" jsonschema:"wall time of the run"`
}

// Add registers t on s. It panics, as mcp.AddTool does, if the tool cannot
// be registered (an input type without an object schema).
func Add[In any](s *mcp.Server, t Tool[In]) {
	mcp.AddTool(s, &mcp.Tool{Name: t.Name, Description: t.Description}, t.handle)
}

func (t Tool[In]) handle(ctx context.Context, req *mcp.CallToolRequest, in In) (*mcp.CallToolResult, Output, error) {
	if t.Policy == nil || t.Args == nil {
		return nil, Output{}, errors.New("mcptool: tool " + t.Name + " has no policy or no Args")
	}
	argv, err := t.Args(in)
	if err != nil {
		return nil, Output{}, err
	}
	if len(argv) == 0 {
		return nil, Output{}, errors.New("empty command")
	}
	limit := t.MaxResult
	if limit <= 0 {
		limit = DefaultMaxResult
	}
	set := t.Policy.Clone()
	if set.Workdir == "" {
		set.WithWorkdir(capability.TempWorkdir())
	}
	if set.MaxOutputOrDefault() > capability.Size(limit) {
		set.MaxOutput = capability.Size(limit)
	}
	if set.OutputOverflow == "" {
		set.OutputOverflow = capability.OverflowTruncate
	}
	cmd := sandbox.Command(argv[0], argv[1:]...)
	cmd.Tool = t.Name
	if t.Stdin != nil {
		cmd.Stdin = t.Stdin(in)
	}
	var stdout, stderr countedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	r := t.Runner
	if r == nil {
		r = sandbox.DefaultRunner
	}
	stop := progress(ctx, req, &stdout, &stderr)
	res, err := r.Run(ctx, set, cmd)
	stop()
	if res == nil {
		return nil, Output{}, fmt.Errorf("the sandbox could not be set up: %w", err)
	}
	tr := toolresult.From(res, []byte(stdout.String()), []byte(stderr.String()), 0)
	out := Output{ExitCode: tr.ExitCode, Reason: tr.Reason, Audit: summarise(res.Audit), Stdout: tr.Stdout, Stderr: tr.Stderr,
		StdoutTruncated: tr.StdoutTruncated, StderrTruncated: tr.StderrTruncated, Removed: tr.Removed}
	return &mcp.CallToolResult{
		Content: []mcp.Content{&mcp.TextContent{Text: tr.Text()}},
		IsError: out.Reason != audit.ReasonExited || out.ExitCode != 0,
	}, out, nil
}

// Text is the result as a model reads it: stdout, stderr (marked) and a
// one-line verdict ("[exit 0]", "[killed: memory limit]", "[exit 1;
// denied: socket ...]").
func Text(o Output) string { return o.result().Text() }

func (o Output) result() toolresult.Result {
	return toolresult.Result{ExitCode: o.ExitCode, Reason: o.Reason, Stdout: o.Stdout, Stderr: o.Stderr,
		StdoutTruncated: o.StdoutTruncated, StderrTruncated: o.StderrTruncated, Removed: o.Removed,
		LimitsHit: o.Audit.LimitsHit, Denials: o.Audit.Denials, FirstDenials: o.Audit.FirstDenials}
}

func summarise(rec *audit.Record) Summary {
	s := Summary{ID: rec.ID, PolicyHash: rec.Policy.Hash, LimitsHit: rec.Exit.LimitsHit,
		Denials: len(rec.Denials), DurationMS: rec.DurationMS, FirstDenials: []string{}}
	if s.LimitsHit == nil {
		s.LimitsHit = []audit.Limit{}
	}
	for _, d := range rec.Denials {
		if len(s.FirstDenials) == 3 {
			break
		}
		s.FirstDenials = append(s.FirstDenials, strings.TrimSpace(d.Syscall+" "+d.Detail))
	}
	return s
}

// progress sends a notification every second after the first, if the
// client gave a progress token; the returned function stops it.
func progress(ctx context.Context, req *mcp.CallToolRequest, out, errs *countedBuffer) func() {
	if req == nil || req.Params == nil || req.Session == nil || req.Params.GetProgressToken() == nil {
		return func() {}
	}
	token := req.Params.GetProgressToken()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case now := <-tick.C:
				elapsed := now.Sub(start).Seconds()
				n := out.Len() + errs.Len()
				_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: token,
					Progress: elapsed, Message: fmt.Sprintf("running for %.0f s, %d bytes of output", elapsed, n)})
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// countedBuffer is a buffer the progress reporter may read while the
// sandbox writes it.
type countedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (c *countedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

func (c *countedBuffer) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Len()
}

func (c *countedBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// ShellInput is the Shell tool's input.
type ShellInput struct {
	Command string `json:"command" jsonschema:"a POSIX shell command line, run with /bin/sh -c"`
}

// Shell is a tool "shell" running {command} with /bin/sh -c under policy.
func Shell(policy *capability.Set) Tool[ShellInput] {
	return Tool[ShellInput]{
		Name:        "shell",
		Description: "Run a shell command (/bin/sh -c) in a fresh sandbox with a temporary working directory. The result has stdout, stderr and the exit status.",
		Policy:      policy,
		Args: func(in ShellInput) ([]string, error) {
			if strings.TrimSpace(in.Command) == "" {
				return nil, errors.New("command is empty")
			}
			return []string{"/bin/sh", "-c", in.Command}, nil
		},
	}
}

// PythonInput is the Python tool's input.
type PythonInput struct {
	Code string `json:"code" jsonschema:"a Python 3 program, run with python3 -c"`
}

// Python is a tool "python" running {code} with python3 -c under policy.
func Python(policy *capability.Set) Tool[PythonInput] {
	return Tool[PythonInput]{
		Name:        "python",
		Description: "Run a Python 3 program (python3 -c) in a fresh sandbox with a temporary working directory. The result has stdout, stderr and the exit status.",
		Policy:      policy,
		Args: func(in PythonInput) ([]string, error) {
			if strings.TrimSpace(in.Code) == "" {
				return nil, errors.New("code is empty")
			}
			return []string{"python3", "-c", in.Code}, nil
		},
	}
}

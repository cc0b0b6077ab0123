// Package agenttool offers a sandboxed command as a tool for any agent
// framework: the method set langchaingo's tools.Tool expects (Name,
// Description, Call), an input schema for function-calling APIs
// (Anthropic tool use, OpenAI function calling), and a result text ready
// to hand back to a model, without toolcell importing any framework.
//
//	grep := agenttool.New("grep_docs", "Search the docs for a pattern.",
//		capability.New().WithBase().WithReadDirs("/srv/docs"),
//		func(input string) ([]string, error) { return []string{"grep", "-rn", "--", input, "/srv/docs"}, nil })
//	text, err := grep.Call(ctx, "timeout")
//
// Each call runs in its own sandbox (sandbox.Runner), with a fresh
// temporary workdir when the policy names none and output_overflow
// truncate unless the policy says otherwise. The text a model reads has
// terminal escapes and invisible Unicode removed (tool output is a
// prompt-injection path into the model) and says how many; the raw bytes
// are in Result.Stdout and Result.Stderr.
package agenttool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/internal/toolresult"
	"github.com/toolcell/toolcell/sandbox"
)

// DefaultMaxText caps each output stream in Call's text.
const DefaultMaxText = 64 << 10

// Tool is a sandboxed command with a string input.
type Tool struct {
	name, description string
	policy            *capability.Set
	args              func(input string) ([]string, error)
	// Runner runs the sandboxes; nil means sandbox.DefaultRunner.
	Runner *sandbox.Runner
	// MaxText caps each output stream in Call's text; 0 means
	// DefaultMaxText.
	MaxText int
}

// New returns a tool whose input args turns into a command line (args[0]
// is the program: a path in the view, or a name in its PATH).
func New(name, description string, policy *capability.Set, args func(input string) ([]string, error)) *Tool {
	return &Tool{name: name, description: description, policy: policy, args: args}
}

// Name is the tool's name.
func (t *Tool) Name() string { return t.name }

// Description is what the model reads about the tool.
func (t *Tool) Description() string { return t.description }

// InputSchema is the JSON schema of CallJSON's input, {"input": string},
// for a function-calling API's tool definition.
func (t *Tool) InputSchema() json.RawMessage {
	return json.RawMessage(`{"type":"object","properties":{"input":{"type":"string","description":"the tool's input"}},"required":["input"],"additionalProperties":false}`)
}

// Call runs the tool and returns the text to hand back to the model: the
// output and a verdict line such as "[exit 1]" or "[killed: memory
// limit]". A tool that failed is not an error (the model reads why); an
// error means nothing ran (bad input, a bad policy, a host that cannot
// enforce it).
func (t *Tool) Call(ctx context.Context, input string) (string, error) {
	res, err := t.Run(ctx, input)
	if err != nil {
		return "", err
	}
	limit := t.MaxText
	if limit <= 0 {
		limit = DefaultMaxText
	}
	return res.Text(limit), nil
}

// CallJSON is Call for a function-calling API's arguments, an object
// matching InputSchema.
func (t *Tool) CallJSON(ctx context.Context, args json.RawMessage) (string, error) {
	var in struct {
		Input *string `json:"input"`
	}
	if err := json.Unmarshal(args, &in); err != nil {
		return "", fmt.Errorf("agenttool %s: arguments: %w", t.name, err)
	}
	if in.Input == nil {
		return "", fmt.Errorf("agenttool %s: arguments: no \"input\"", t.name)
	}
	return t.Call(ctx, *in.Input)
}

// Result is a run's result with the text for a model.
type Result struct {
	*sandbox.Result
}

// Text is stdout and stderr, each cut to limit bytes (0: no cut), cleaned of
// escapes and invisible characters, and a one-line verdict.
func (r *Result) Text(limit int) string {
	return toolresult.From(r.Result, r.Stdout, r.Stderr, limit).Text()
}

// Run runs the tool once.
func (t *Tool) Run(ctx context.Context, input string) (*Result, error) {
	if t.policy == nil || t.args == nil {
		return nil, errors.New("agenttool: tool " + t.name + " has no policy or no args")
	}
	argv, err := t.args(input)
	if err != nil {
		return nil, fmt.Errorf("agenttool %s: %w", t.name, err)
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("agenttool %s: empty command", t.name)
	}
	set := t.policy.Clone()
	if set.Workdir == "" {
		set.WithWorkdir(capability.TempWorkdir())
	}
	if set.OutputOverflow == "" {
		set.OutputOverflow = capability.OverflowTruncate
	}
	cmd := sandbox.Command(argv[0], argv[1:]...)
	cmd.Tool = t.name
	r := t.Runner
	if r == nil {
		r = sandbox.DefaultRunner
	}
	res, err := r.Run(ctx, set, cmd)
	if res == nil {
		return nil, err
	}
	return &Result{res}, err
}

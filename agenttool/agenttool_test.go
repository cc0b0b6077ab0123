package agenttool_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/toolcell/toolcell/agenttool"
	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/internal/testenv"
)

// langchainTool is langchaingo's tools.Tool, spelled out here so that
// toolcell need not import langchaingo.
type langchainTool interface {
	Name() string
	Description() string
	Call(ctx context.Context, input string) (string, error)
}

var _ langchainTool = (*agenttool.Tool)(nil)

func shell() *agenttool.Tool {
	return agenttool.New("shell", "Run a shell command.", capability.New().WithBase().WithMemory(64<<20),
		func(in string) ([]string, error) { return []string{"/bin/sh", "-c", in}, nil })
}

func TestCall(t *testing.T) {
	testenv.RequireUserNS(t)
	ctx := context.Background()
	tool := shell()
	for _, c := range []struct{ in, want string }{
		{"echo hi; pwd", "hi\n/workspace\n[exit 0]"},
		{"echo oops >&2; exit 2", "[stderr]\noops\n[exit 2]"},
		{`python3 -c 'x = bytearray(1 << 30)'`, "[killed: memory limit]"},
		{"printf 'a\\033[31mb\\342\\200\\213c\\n'", "abc\n[exit 0; 2 hidden characters removed]"},
	} {
		got, err := tool.Call(ctx, c.in)
		if err != nil || !strings.HasSuffix(got, c.want) {
			t.Errorf("Call(%q) = %q, %v; want ...%q", c.in, got, err, c.want)
		}
	}
	got, err := tool.Call(ctx, "sync")
	if err != nil || !strings.Contains(got, "denied: sync") {
		t.Errorf("denied: %q %v", got, err)
	}
	tool.MaxText = 10
	if got, _ := tool.Call(ctx, "seq 100"); !strings.HasPrefix(got, "1\n2\n3\n4\n5\n\n[stdout truncated]") {
		t.Errorf("MaxText: %q", got)
	}
	res, err := shell().Run(ctx, `printf '\033[2Jraw'`)
	if err != nil || string(res.Stdout) != "\x1b[2Jraw" {
		t.Errorf("raw bytes: %q %v", res.Stdout, err)
	}
}

func TestCallJSON(t *testing.T) {
	testenv.RequireUserNS(t)
	tool := shell()
	var schema map[string]any
	if err := json.Unmarshal(tool.InputSchema(), &schema); err != nil || schema["type"] != "object" {
		t.Fatalf("schema: %v %v", schema, err)
	}
	got, err := tool.CallJSON(context.Background(), json.RawMessage(`{"input": "echo json"}`))
	if err != nil || got != "json\n[exit 0]" {
		t.Errorf("CallJSON: %q %v", got, err)
	}
	for _, bad := range []string{`{}`, `{"input": 3}`, `not json`} {
		if _, err := tool.CallJSON(context.Background(), json.RawMessage(bad)); err == nil || !strings.Contains(err.Error(), "shell") {
			t.Errorf("CallJSON(%s): %v, want an error naming the tool", bad, err)
		}
	}
}

// A tool an agent framework calls with a string, and the text it hands
// back to the model.
func ExampleNew() {
	tool := agenttool.New("count_lines", "Count the lines of the input text.",
		capability.New().WithBase(),
		func(input string) ([]string, error) {
			return []string{"/bin/sh", "-c", `printf '%s\n' "$1" | wc -l`, "sh", input}, nil
		})
	text, err := tool.Call(context.Background(), "one\ntwo\nthree")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(text)
	// Output:
	// 3
	// [exit 0]
}

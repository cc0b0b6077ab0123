package mcptool_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/internal/testenv"
	"github.com/toolcell/toolcell/mcptool"
	"github.com/toolcell/toolcell/sandbox"
)

// connect serves the shell and python tools under policy to an in-memory
// client of the Go SDK.
func connect(t *testing.T, policy *capability.Set, progress func(*mcp.ProgressNotificationClientRequest)) *mcp.ClientSession {
	return connectWith(t, nil, policy, progress)
}

// records collects the audit records of a Runner's runs.
type records struct {
	mu   sync.Mutex
	recs []*audit.Record
}

func (r *records) Record(_ context.Context, rec *audit.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
	return nil
}

func connectWith(t *testing.T, runner *sandbox.Runner, policy *capability.Set, progress func(*mcp.ProgressNotificationClientRequest)) *mcp.ClientSession {
	t.Helper()
	testenv.RequireUserNS(t)
	server := mcp.NewServer(&mcp.Implementation{Name: "toolcell-test", Version: "v0"}, nil)
	shell, python := mcptool.Shell(policy), mcptool.Python(policy)
	shell.Runner, python.Runner = runner, runner
	mcptool.Add(server, shell)
	mcptool.Add(server, python)
	st, ct := mcp.NewInMemoryTransports()
	ctx := context.Background()
	ss, err := server.Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	opts := &mcp.ClientOptions{}
	if progress != nil {
		opts.ProgressNotificationHandler = func(_ context.Context, r *mcp.ProgressNotificationClientRequest) { progress(r) }
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "client", Version: "v0"}, opts).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

func policy() *capability.Set {
	return capability.New().WithBase().WithTimeout(20 * time.Second).WithMemory(128 << 20)
}

// call calls a tool and decodes its structured result.
func call(t *testing.T, ctx context.Context, cs *mcp.ClientSession, params *mcp.CallToolParams) (*mcp.CallToolResult, mcptool.Output) {
	t.Helper()
	res, err := cs.CallTool(ctx, params)
	if err != nil {
		t.Fatalf("call %s: %v", params.Name, err)
	}
	var out mcptool.Output
	b, _ := json.Marshal(res.StructuredContent)
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("structured content %s: %v", b, err)
	}
	return res, out
}

func text(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func TestListAndCall(t *testing.T) {
	cs := connect(t, policy(), nil)
	ctx := context.Background()
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, tl := range tools.Tools {
		names[tl.Name] = tl.InputSchema != nil && tl.OutputSchema != nil
	}
	if !names["shell"] || !names["python"] {
		t.Fatalf("tools %v: want shell and python with input and output schemas", names)
	}
	res, out := call(t, ctx, cs, &mcp.CallToolParams{Name: "shell", Arguments: map[string]any{"command": "pwd; echo hi >&2; exit 3"}})
	if out.ExitCode != 3 || out.Stdout != "/workspace\n" || out.Stderr != "hi\n" || !res.IsError ||
		!strings.HasPrefix(out.Audit.PolicyHash, "sha256:") || out.Audit.ID == "" || !strings.HasSuffix(text(res), "[exit 3]") {
		t.Fatalf("shell: %+v text %q", out, text(res))
	}
	res, out = call(t, ctx, cs, &mcp.CallToolParams{Name: "python", Arguments: map[string]any{"code": "print(6*7)"}})
	if out.ExitCode != 0 || out.Stdout != "42\n" || res.IsError || text(res) != "42\n[exit 0]" {
		t.Fatalf("python: %+v text %q", out, text(res))
	}
	// Bad input is the SDK's to refuse; an empty command is the tool's.
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "shell", Arguments: map[string]any{"command": " "}})
	if err != nil || !res.IsError || !strings.Contains(text(res), "empty") {
		t.Fatalf("empty command: %v %+v", err, res)
	}
}

// A denied syscall, an OOM and a timeout are contained and visible in the
// result; escapes and invisible characters do not reach the model.
func TestContainedAndVisible(t *testing.T) {
	cs := connect(t, policy(), nil)
	ctx := context.Background()
	res, out := call(t, ctx, cs, &mcp.CallToolParams{Name: "python", Arguments: map[string]any{"code": "import socket\ntry:\n socket.socket()\nexcept OSError as e: print(e.errno)"}})
	if out.Audit.Denials == 0 || !strings.Contains(text(res), "denied: socket") {
		t.Errorf("denied socket: %+v text %q", out, text(res))
	}
	res, out = call(t, ctx, cs, &mcp.CallToolParams{Name: "python", Arguments: map[string]any{"code": "x = bytearray(1 << 30)"}})
	if out.Reason != "oom" || !strings.Contains(text(res), "memory limit") {
		t.Errorf("oom: %+v text %q", out, text(res))
	}
	quick := connect(t, policy().WithTimeout(time.Second), nil)
	res, out = call(t, ctx, quick, &mcp.CallToolParams{Name: "shell", Arguments: map[string]any{"command": "sleep 10"}})
	if out.Reason != "timeout" || !strings.Contains(text(res), "time limit") {
		t.Errorf("timeout: %+v text %q", out, text(res))
	}
	res, out = call(t, ctx, cs, &mcp.CallToolParams{Name: "shell", Arguments: map[string]any{"command": `printf 'ok\033[2J\342\200\256evil\n'`}})
	if out.Stdout != "okevil\n" || out.Removed != 2 || !strings.Contains(text(res), "2 hidden characters removed") {
		t.Errorf("escapes: %+v text %q", out, text(res))
	}
}

// 20 MiB of output is cut to the result cap, the tool runs on and the
// connection survives for the next call.
func TestLargeOutput(t *testing.T) {
	cs := connect(t, policy(), nil)
	ctx := context.Background()
	res, out := call(t, ctx, cs, &mcp.CallToolParams{Name: "shell", Arguments: map[string]any{"command": "head -c 20971520 /dev/zero | tr '\\0' x; echo done >&2"}})
	if len(out.Stdout) != mcptool.DefaultMaxResult || !out.StdoutTruncated || out.Stderr != "done\n" || out.Reason != "exited" {
		t.Fatalf("20 MiB: stdout %d bytes, %+v", len(out.Stdout), out.Audit)
	}
	if !strings.Contains(text(res), "[stdout truncated]") {
		t.Errorf("text does not say it was truncated")
	}
	if _, out := call(t, ctx, cs, &mcp.CallToolParams{Name: "shell", Arguments: map[string]any{"command": "echo after"}}); out.Stdout != "after\n" {
		t.Fatalf("next call: %+v", out)
	}
}

// Ten concurrent calls each get their own sandbox and answer.
func TestConcurrentCalls(t *testing.T) {
	cs := connect(t, policy(), nil)
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "shell",
				Arguments: map[string]any{"command": fmt.Sprintf("echo %d > f; sleep 0.2; cat f", i)}})
			if err != nil || text(res) != fmt.Sprintf("%d\n[exit 0]", i) {
				t.Errorf("call %d: %v %q", i, err, text(res))
			}
		}(i)
	}
	wg.Wait()
}

// The client's cancellation ends the run; a client that asked for
// progress gets it every second.
func TestCancelAndProgress(t *testing.T) {
	var mu sync.Mutex
	var notes []string
	recs := &records{}
	cs := connectWith(t, &sandbox.Runner{Audit: recs}, policy().WithTimeout(30*time.Second), func(r *mcp.ProgressNotificationClientRequest) {
		mu.Lock()
		notes = append(notes, r.Params.Message)
		mu.Unlock()
	})
	params := &mcp.CallToolParams{Name: "shell", Arguments: map[string]any{"command": "echo started; sleep 2.5; echo end"}}
	params.SetProgressToken("p1")
	res, out := call(t, context.Background(), cs, params)
	mu.Lock()
	got := append([]string(nil), notes...)
	mu.Unlock()
	if out.Stdout != "started\nend\n" || len(got) < 2 || !strings.Contains(got[0], "bytes of output") {
		t.Errorf("progress: %q for %+v %q", got, out, text(res))
	}

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(500*time.Millisecond, cancel)
	start := time.Now()
	_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "shell", Arguments: map[string]any{"command": "sleep 20"}})
	if !errors.Is(err, context.Canceled) || time.Since(start) > 10*time.Second {
		t.Fatalf("cancel: %v after %v", err, time.Since(start))
	}
	// The server's run ended as canceled, well before its 20 s.
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs.mu.Lock()
		var last *audit.Record
		if len(recs.recs) == 2 {
			last = recs.recs[1]
		}
		recs.mu.Unlock()
		if last != nil {
			if last.Exit.Reason != audit.ReasonCanceled || last.DurationMS > 10000 {
				t.Errorf("canceled run's record: %+v after %.0f ms", last.Exit, last.DurationMS)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no record of the canceled run")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The next call is served at once.
	if _, out := call(t, context.Background(), cs, &mcp.CallToolParams{Name: "shell", Arguments: map[string]any{"command": "echo ok"}}); out.Stdout != "ok\n" {
		t.Fatalf("after cancel: %+v", out)
	}
}

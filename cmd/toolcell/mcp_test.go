package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/internal/auditschema"
	"github.com/toolcell/toolcell/internal/testenv"
	"github.com/toolcell/toolcell/mcptool"
	"github.com/toolcell/toolcell/sandbox"
)

// TestMain lets the test binary be `toolcell mcp` for the client tests:
// TOOLCELL_TEST_MCP holds its arguments, one per line. As the tests'
// binary, it checks every audit record the tests' runs finished and every
// record the CLI wrote (cli, auditFiles) against audit's JSON Schema.
func TestMain(m *testing.M) {
	if a := os.Getenv("TOOLCELL_TEST_MCP"); a != "" {
		os.Exit(realMain(append([]string{"mcp"}, strings.Split(a, "\n")...), os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(auditschema.Main("cmd/toolcell", m.Run))
}

// useTools lists both tools and calls each through session cs.
func useTools(t *testing.T, cs *mcp.ClientSession) {
	t.Helper()
	ctx := context.Background()
	tools, err := cs.ListTools(ctx, nil)
	if err != nil || len(tools.Tools) != 2 {
		t.Fatalf("tools: %v %+v", err, tools)
	}
	for _, c := range []struct {
		name string
		args map[string]any
		want string
	}{
		{"shell", map[string]any{"command": "echo hello; pwd"}, "hello\n/workspace\n[exit 0]"},
		{"python", map[string]any{"code": "print(1 + 1)"}, "2\n[exit 0]"},
	} {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: c.name, Arguments: c.args})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := res.Content[0].(*mcp.TextContent).Text; got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
		var out mcptool.Output
		b, _ := json.Marshal(res.StructuredContent)
		if json.Unmarshal(b, &out) != nil || out.Audit.ID == "" {
			t.Errorf("%s: structured content %s", c.name, b)
		}
	}
}

// toolcell mcp over stdio, driven by the Go SDK's CommandTransport; the
// records land in --audit-dir.
func TestMCPStdio(t *testing.T) {
	testenv.RequireUserNS(t)
	dir := testenv.Tempdir(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "TOOLCELL_TEST_MCP=--base\n--audit-dir\n"+dir)
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "v0"}, nil).Connect(context.Background(), &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatal(err)
	}
	useTools(t, cs)
	cs.Close()
	recs := auditFiles(t, filepath.Join(dir, "*.json"))
	if len(recs) != 2 {
		t.Fatalf("%d records in --audit-dir, want 2", len(recs))
	}
	var rec audit.Record
	b, _ := os.ReadFile(recs[0])
	if err := json.Unmarshal(b, &rec); err != nil || rec.Schema != audit.Schema {
		t.Errorf("record: %v %.100s", err, b)
	}
}

// toolcell mcp --http, driven by the Go SDK's streamable HTTP client.
func TestMCPStreamableHTTP(t *testing.T) {
	testenv.RequireUserNS(t)
	addr := startHTTPServer(t, "--base")
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "v0"}, nil).Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: "http://" + addr + "/"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	useTools(t, cs)
}

// startHTTPServer starts toolcell mcp --http (this test binary) with args
// (newline-separated) and returns its address once it listens.
func startHTTPServer(t *testing.T, args string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "TOOLCELL_TEST_MCP="+args+"\n--http\n"+addr)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("toolcell mcp --http did not listen: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkMCPStdio compares, interleaved, a tool call through toolcell
// mcp over stdio (a long-lived server process, as a client keeps it) with
// a direct sandbox.Run of the same command in this process.
// Run: go test -run '^$' -bench MCPStdio -benchtime 40x ./cmd/toolcell
func BenchmarkMCPStdio(b *testing.B) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "TOOLCELL_TEST_MCP=--base\n--tool\nshell")
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "v0"}, nil).Connect(context.Background(), &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer cs.Close()
	set := capability.New().WithBase().WithWorkdir(capability.TempWorkdir())
	viaMCP := func() error {
		_, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "shell", Arguments: map[string]any{"command": "true"}})
		return err
	}
	direct := func() error {
		_, err := sandbox.Run(context.Background(), set, sandbox.Command("/bin/sh", "-c", "true"))
		return err
	}
	for _, f := range []func() error{viaMCP, direct} {
		if err := f(); err != nil {
			b.Fatal(err)
		}
	}
	var m, d []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := viaMCP(); err != nil {
			b.Fatal(err)
		}
		m = append(m, float64(time.Since(t0).Microseconds())/1000)
		time.Sleep(5 * time.Millisecond)
		t0 = time.Now()
		if err := direct(); err != nil {
			b.Fatal(err)
		}
		d = append(d, float64(time.Since(t0).Microseconds())/1000)
		time.Sleep(5 * time.Millisecond)
	}
	b.StopTimer()
	sort.Float64s(m)
	sort.Float64s(d)
	b.ReportMetric(m[len(m)/2], "ms-median/mcp-stdio")
	b.ReportMetric(d[len(d)/2], "ms-median/direct")
	b.ReportMetric(m[len(m)/2]/d[len(d)/2], "ratio/mcp:direct")
}

// The official TypeScript SDK's client (testdata/mcp-client, npm ci by
// scripts/deps.sh) drives toolcell mcp over stdio and over streamable
// HTTP: listing, both tools, a denial, an OOM, 20 MiB of output, 10
// concurrent calls, a cancellation and a timeout (the server's 15 s:
// python starts slowly under TCG).
func TestMCPTypeScriptClient(t *testing.T) {
	testenv.RequireUserNS(t)
	node, err := exec.LookPath("node")
	testenv.Require(t, err == nil, "node (scripts/deps.sh installs nodejs)")
	dir, _ := filepath.Abs("../../testdata/mcp-client")
	_, err = os.Stat(filepath.Join(dir, "node_modules", "@modelcontextprotocol", "sdk", "package.json"))
	testenv.Require(t, err == nil, "the TypeScript MCP SDK in testdata/mcp-client (scripts/deps.sh runs npm ci there)")
	serverArgs := "--base\n--timeout\n15s\n--memory\n128M"
	client := func(t *testing.T, args ...string) {
		cmd := exec.Command(node, append([]string{filepath.Join(dir, "client.mjs")}, args...)...)
		cmd.Env = append(os.Environ(), "TOOLCELL_TEST_MCP="+serverArgs)
		out, err := cmd.CombinedOutput()
		t.Logf("%s", out)
		oks := 0
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "ok ") {
				oks++
			}
		}
		if err != nil || strings.Contains(string(out), "FAIL") || oks != 10 {
			t.Fatalf("client: %v, %d checks ok of 10", err, oks)
		}
	}
	t.Run("stdio", func(t *testing.T) { client(t, os.Args[0]) })
	t.Run("http", func(t *testing.T) {
		addr := startHTTPServer(t, serverArgs)
		client(t, "--http", "http://"+addr+"/")
	})
}

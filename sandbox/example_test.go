package sandbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/sandbox"
)

// Run a tool with a read-only input, a workdir and limits, and keep the
// audit record.
func ExampleRun() {
	set := capability.New().
		WithBase().
		WithReadFiles("/data/in.json").
		WithWorkdir("/data/work").
		WithMemory(256 << 20).WithPids(64).WithCPU(0.5).
		WithTimeout(30 * time.Second)

	res, err := sandbox.Run(context.Background(), set, sandbox.Command("python3", "tool.py"))
	switch {
	case errors.Is(err, sandbox.ErrUnsupported):
		fmt.Println("this host cannot enforce the policy:", err)
		return
	case err != nil:
		fmt.Println("setup failed:", err)
		return
	}
	fmt.Println(res.Exit.Reason, res.Exit.Code)
	json.NewEncoder(os.Stdout).Encode(res.Audit)
}

// Stream a tool's output while it runs, and stop it early.
func ExampleStart() {
	cmd := sandbox.Command("sh", "-c", "for i in 1 2 3; do echo $i; sleep 1; done")
	cmd.Stdout = os.Stdout
	p, err := sandbox.Start(context.Background(), capability.New().WithBase(), cmd)
	if err != nil {
		fmt.Println(err)
		return
	}
	time.AfterFunc(1500*time.Millisecond, p.Kill)
	res, _ := p.Wait()
	fmt.Println(res.Exit.Reason) // canceled
}

// Give one tool call a fresh workdir, and copy out its result before the
// directory is removed. The tool wrote everything in it: read it through
// an os.Root, which does not follow the tool's symlinks out of it.
func ExampleCmd_Collect() {
	set := capability.New().WithBase().WithWorkdir(capability.TempWorkdir())
	cmd := sandbox.Command("sh", "-c", "echo 42 > report.txt")
	var report []byte
	cmd.Collect = func(dir string) error {
		root, err := os.OpenRoot(dir)
		if err != nil {
			return err
		}
		defer root.Close()
		report, err = root.ReadFile("report.txt")
		return err
	}
	res, err := sandbox.Run(context.Background(), set, cmd)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("exit %d, report %s", res.Exit.Code, report)
	// Output: exit 0, report 42
}

// Keep every run's record: one JSON line per run in a file, and a log
// line per run (Warn when a limit was hit or something was denied); at
// most 8 sandboxes at once, the rest wait.
func ExampleRunner_audit() {
	jsonl, err := sandbox.OpenJSONLAudit("/var/log/toolcell/audit.jsonl")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer jsonl.Close()
	r := &sandbox.Runner{Audit: jsonl, MaxConcurrent: 8}
	res, err := r.Run(context.Background(), capability.New().WithBase(), sandbox.Command("uname", "-a"))
	if err == nil {
		fmt.Println(res.Exit.Reason, res.Audit.Exit.LimitsHit)
	}

	logged := &sandbox.Runner{Audit: sandbox.SlogAudit{Logger: slog.Default()}}
	logged.Run(context.Background(), capability.New().WithBase(), sandbox.Command("true"))
}

// Compile a policy once and run it many times: validation, the policy hash
// and the seccomp program are worked out once, not per call.
func ExampleCompile() {
	pl, err := sandbox.Compile(capability.New().WithBase().WithTimeout(10 * time.Second))
	if err != nil {
		fmt.Println(err) // names the bad field and value, or the missing kernel feature
		return
	}
	for _, word := range []string{"one", "two"} {
		res, err := pl.Run(context.Background(), sandbox.Command("echo", word))
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s", res.Stdout)
	}
	// Output:
	// one
	// two
}

// Keep sandboxes built ahead for an agent's tool calls: a call then only
// sends its command to a sandbox whose namespaces, view, cgroup and
// privilege drop are done. Each sandbox serves one call and is replaced in
// the background; the record says whether the call found one ready.
func ExampleNewPool() {
	pl, err := sandbox.Compile(capability.New().WithBase().WithWorkdir(capability.TempWorkdir()))
	if err != nil {
		fmt.Println(err)
		return
	}
	pool, err := sandbox.NewPool(pl, sandbox.PoolOptions{Size: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()
	// At start-up, wait until the first calls will be warm.
	if err := pool.WaitReady(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	res, err := pool.Run(context.Background(), sandbox.Command("sh", "-c", "echo hi > f; cat f"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s%s\n", res.Stdout, res.Audit.Pool.State)
	// Output:
	// hi
	// warm
}

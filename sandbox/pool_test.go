package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/internal/testenv"
	"github.com/toolcell/toolcell/sandbox"
)

func newPool(t *testing.T, set *capability.Set, size int) *sandbox.Pool {
	t.Helper()
	testenv.RequireUserNS(t)
	pl, err := sandbox.Compile(set)
	if err != nil {
		t.Fatal(err)
	}
	po, err := sandbox.NewPool(pl, sandbox.PoolOptions{Size: size})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { po.Close() })
	return po
}

func poolRun(t *testing.T, po *sandbox.Pool, script string) *sandbox.Result {
	t.Helper()
	res, err := po.Run(context.Background(), sandbox.Command("/bin/sh", "-c", script))
	if err != nil {
		t.Fatalf("pool run: %v", err)
	}
	return res
}

// A warm run gets a sandbox built ahead, used once: what one run left in
// its sandbox is not there for the next.
func TestPoolWarmRunsAreFresh(t *testing.T) {
	po := newPool(t, base(), 1)
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		waitReady(t, po)
		res := poolRun(t, po, "test -e /tmp/mark && echo stale; touch /tmp/mark; echo ok")
		if string(res.Stdout) != "ok\n" || res.Exit.Code != 0 {
			t.Fatalf("run %d: stdout %q stderr %q exit %d", i, res.Stdout, res.Stderr, res.Exit.Code)
		}
		rec := res.Audit
		if rec.Pool == nil || rec.Pool.State != audit.PoolWarm || rec.Pool.WaitedMS <= 0 {
			t.Fatalf("run %d: pool info %+v, want warm with a wait", i, rec.Pool)
		}
		if seen[rec.Enforcement.Cgroup.Path] || seen[rec.ID] {
			t.Fatalf("run %d reused a sandbox: %s %s", i, rec.ID, rec.Enforcement.Cgroup.Path)
		}
		seen[rec.Enforcement.Cgroup.Path], seen[rec.ID] = true, true
		if rec.Command.Path != "/bin/sh" || rec.Tool != "sh" || len(rec.Enforcement.Namespaces) != 7 {
			t.Fatalf("run %d: record %+v %+v", i, rec.Command, rec.Enforcement.Namespaces)
		}
		if !rec.Enforcement.NoNewPrivs || len(rec.Enforcement.Capabilities) != 0 {
			t.Fatalf("run %d: privileges %+v", i, rec.Enforcement)
		}
	}
}

// A ready sandbox whose stage-2 died is never handed out: the run builds
// its own (cold) and succeeds.
func TestPoolDeadSandboxNotUsed(t *testing.T) {
	po := newPool(t, base(), 1)
	waitReady(t, po)
	po.KillReadyForTest()
	res := poolRun(t, po, "echo ok")
	if string(res.Stdout) != "ok\n" || res.Audit.Pool == nil || res.Audit.Pool.State != audit.PoolCold {
		t.Fatalf("stdout %q pool %+v, want ok and cold", res.Stdout, res.Audit.Pool)
	}
	// The replacement is warm again.
	waitReady(t, po)
	if res := poolRun(t, po, "echo ok"); res.Audit.Pool.State != audit.PoolWarm {
		t.Fatalf("after the replacement: pool %+v", res.Audit.Pool)
	}
}

// Each pooled run gets its own temporary workdir, collected after the run.
func TestPoolTempWorkdir(t *testing.T) {
	po := newPool(t, base().WithWorkdir(capability.TempWorkdir()), 2)
	waitReady(t, po)
	for i := 0; i < 2; i++ {
		var got string
		cmd := sandbox.Command("/bin/sh", "-c", "ls; echo run > out")
		cmd.Collect = func(dir string) error {
			b, err := os.ReadFile(filepath.Join(dir, "out"))
			got = string(b)
			return err
		}
		res, err := po.Run(context.Background(), cmd)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Stdout) != 0 || got != "run\n" || res.Audit.Pool.State != audit.PoolWarm {
			t.Fatalf("run %d: ls %q collected %q pool %+v", i, res.Stdout, got, res.Audit.Pool)
		}
		if _, err := os.Stat(res.Audit.TempWorkdir); !os.IsNotExist(err) {
			t.Fatalf("temp workdir %s left behind: %v", res.Audit.TempWorkdir, err)
		}
	}
}

// A command the view does not hold fails on a warm sandbox as on a cold
// one, with its record.
func TestPoolMissingCommand(t *testing.T) {
	po := newPool(t, base(), 1)
	waitReady(t, po)
	_, err := po.Run(context.Background(), sandbox.Command("/opt/not-there"))
	var re *sandbox.RunError
	if !errors.Is(err, sandbox.ErrNotFound) || !errors.As(err, &re) {
		t.Fatalf("err %v, want ErrNotFound with a record", err)
	}
	if re.Record.Exit.Reason != audit.ReasonSetupFailed || re.Record.Pool.State != audit.PoolWarm {
		t.Fatalf("record exit %+v pool %+v", re.Record.Exit, re.Record.Pool)
	}
}

// A plan whose sandboxes cannot be built (its grant is gone) fails each run
// with the setup error and its record; nothing is left behind.
func TestPoolBuildFailure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "gone")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pl, err := sandbox.Compile(base().WithReadDirs(dir))
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(dir)
	po, err := sandbox.NewPool(pl, sandbox.PoolOptions{Size: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer po.Close()
	_, err = po.Run(context.Background(), sandbox.Command("/bin/true"))
	var re *sandbox.RunError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), dir) || re.Record.Pool.State != audit.PoolCold {
		t.Fatalf("err %v, want a setup error naming %s from a cold run", err, dir)
	}
}

func TestPoolClosed(t *testing.T) {
	po := newPool(t, base(), 2)
	waitReady(t, po)
	if err := po.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := po.Run(context.Background(), sandbox.Command("/bin/true")); !errors.Is(err, sandbox.ErrPoolClosed) {
		t.Fatalf("run after Close: %v", err)
	}
	if err := po.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestPoolOptionsChecked(t *testing.T) {
	pl, err := sandbox.Compile(base())
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []sandbox.PoolOptions{{Size: 0}, {Size: 1, MaxIdle: -1}} {
		if _, err := sandbox.NewPool(pl, o); !errors.Is(err, sandbox.ErrPolicy) {
			t.Fatalf("options %+v: %v, want ErrPolicy", o, err)
		}
	}
	if _, err := sandbox.NewPool(nil, sandbox.PoolOptions{Size: 1}); !errors.Is(err, sandbox.ErrPolicy) {
		t.Fatalf("nil plan: %v", err)
	}
}

// A Plan is a copy: changing the set afterwards changes nothing of it.
func TestPlanIsACopy(t *testing.T) {
	set := base()
	pl, err := sandbox.Compile(set)
	if err != nil {
		t.Fatal(err)
	}
	h := pl.Hash()
	set.WithEnv("X", "1")
	res, err := pl.Run(context.Background(), sandbox.Command("/bin/sh", "-c", "echo ${X:-unset}"))
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Stdout) != "unset\n" || res.Audit.Policy.Hash != h || res.Audit.Pool != nil {
		t.Fatalf("stdout %q hash %s (plan %s) pool %+v", res.Stdout, res.Audit.Policy.Hash, h, res.Audit.Pool)
	}
	if _, err := sandbox.Compile(capability.New().WithMemory(-1)); !errors.Is(err, sandbox.ErrPolicy) {
		t.Fatalf("bad policy: %v, want ErrPolicy", err)
	}
}

func waitReady(t *testing.T, po *sandbox.Pool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := po.WaitReady(ctx); err != nil {
		t.Fatalf("pool: %v", err)
	}
}

// A pooled sandbox with egress grants has its DNS and relay sockets made
// ahead; the run that takes it connects through them, and each run records
// only its own connections.
func TestPoolEgress(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	}))
	defer srv.Close()
	u := newUpstreams()
	u.add("api.example.com", "203.0.113.10", 80, srv.Listener.Addr().String())
	pl, err := u.runner().Compile(base().WithEgress("api.example.com:80").WithTimeout(60 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	po, err := sandbox.NewPool(pl, sandbox.PoolOptions{Size: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer po.Close()
	for i := 0; i < 2; i++ {
		waitReady(t, po)
		path := fmt.Sprintf("/run%d", i)
		res := poolRun(t, po, "curl -sS http://api.example.com"+path)
		if res.Exit.Code != 0 || string(res.Stdout) != "hello "+path || res.Audit.Pool.State != audit.PoolWarm {
			t.Fatalf("run %d: exit %d stdout %q stderr %q pool %+v", i, res.Exit.Code, res.Stdout, res.Stderr, res.Audit.Pool)
		}
		if cs := conns(res.Audit, "connect", "api.example.com"); len(cs) != 1 || cs[0].Requests != 1 {
			t.Fatalf("run %d: network %+v, want this run's one connection", i, res.Audit.Network)
		}
	}
}

// soak runs n commands through run with callers at once and checks that
// every run succeeded and that nothing grew in the host process or on the
// host: descriptors, goroutines, children, cgroups, mounts, temp files.
func soak(t *testing.T, n, callers int, run func() (*sandbox.Result, error)) {
	t.Helper()
	before := testenv.Leaks(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	next := make(chan int)
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				res, err := run()
				if err == nil && (res.Exit.Code != 0 || string(res.Stdout) != "ok\n") {
					err = fmt.Errorf("exit %d stdout %q stderr %q", res.Exit.Code, res.Stdout, res.Stderr)
				}
				if err != nil {
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d runs failed; first: %s", len(failures), n, failures[0])
	}
	testenv.NoLeaks(t, before)
}

// TestSoak runs many short runs with 32 callers, cold and pooled. CI runs
// a short soak; TOOLCELL_SOAK_RUNS sets a long one (scripts/bench.sh).
func TestSoak(t *testing.T) {
	testenv.RequireUserNS(t)
	n := 300
	if testenv.HostKind() == "vm-v2" {
		n = 64 // an emulated VM (TCG) runs a sandbox ten times slower
	}
	if v := os.Getenv("TOOLCELL_SOAK_RUNS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			t.Fatalf("TOOLCELL_SOAK_RUNS=%q: %v", v, err)
		}
	}
	// Each run gets a temporary workdir too, which must be gone after it.
	pl, err := sandbox.Compile(base().WithWorkdir(capability.TempWorkdir()))
	if err != nil {
		t.Fatal(err)
	}
	cmd := func() *sandbox.Cmd { return sandbox.Command("/bin/sh", "-c", "echo ok >out; cat out") }
	if _, err := pl.Run(context.Background(), cmd()); err != nil { // starts the fork server
		t.Fatal(err)
	}
	left := sandbox.TrackForTest(t)
	t.Run("cold", func(t *testing.T) {
		soak(t, n, 32, func() (*sandbox.Result, error) { return pl.Run(context.Background(), cmd()) })
	})
	t.Run("pool", func(t *testing.T) {
		before := testenv.Leaks(t)
		po, err := sandbox.NewPool(pl, sandbox.PoolOptions{Size: 4})
		if err != nil {
			t.Fatal(err)
		}
		defer po.Close()
		// The pool holds its ready sandboxes before and after the runs:
		// soak compares with it full.
		waitReady(t, po)
		soak(t, n, 32, func() (*sandbox.Result, error) { return po.Run(context.Background(), cmd()) })
		if err := po.Close(); err != nil {
			t.Fatal(err)
		}
		testenv.NoLeaks(t, before)
	})
	if l := left(); len(l) > 0 {
		t.Fatalf("left on the host: %v", l)
	}
}

// A sandbox that waited longer than MaxIdle is ended, not used.
func TestPoolMaxIdle(t *testing.T) {
	testenv.RequireUserNS(t)
	pl, err := sandbox.Compile(base())
	if err != nil {
		t.Fatal(err)
	}
	po, err := sandbox.NewPool(pl, sandbox.PoolOptions{Size: 1, MaxIdle: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer po.Close()
	waitReady(t, po)
	time.Sleep(400 * time.Millisecond)
	if res := poolRun(t, po, "echo ok"); res.Audit.Pool.State != audit.PoolCold || string(res.Stdout) != "ok\n" {
		t.Fatalf("after MaxIdle: stdout %q pool %+v, want cold", res.Stdout, res.Audit.Pool)
	}
	waitReady(t, po)
	if res := poolRun(t, po, "echo ok"); res.Audit.Pool.State != audit.PoolWarm || res.Audit.Pool.WaitedMS > 300 {
		t.Fatalf("within MaxIdle: pool %+v, want warm", res.Audit.Pool)
	}
}

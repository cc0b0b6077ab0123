package sandbox_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/internal/testenv"
	"github.com/toolcell/toolcell/sandbox"
)

// settle is the pause between two timed launches.
const settle = 5 * time.Millisecond

// launchers are what the launch benchmarks compare, each running
// `sh -c true`:
//
//	exec:          plain os/exec (the floor)
//	bwrap:         bubblewrap --unshare-all, read-only /usr, /proc, /dev
//	toolcell:      a full sandbox (7 namespaces, view, cgroup, seccomp)
//	               from a compiled Plan, built on the run (cold)
//	toolcell-pool: the same from a Pool: built ahead, the run only sends
//	               its command (warm)
func launchers(b *testing.B) (map[string]func() error, func()) {
	b.Helper()
	bwrap, err := exec.LookPath("bwrap")
	if err != nil {
		b.Fatalf("bubblewrap is needed for the comparison: %v", err)
	}
	pl, err := sandbox.Compile(base())
	if err != nil {
		b.Fatal(err)
	}
	po, err := sandbox.NewPool(pl, sandbox.PoolOptions{Size: 1})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	check := func(res *sandbox.Result, err error, warm bool) error {
		if err == nil && res.Exit.Code != 0 {
			b.Fatalf("toolcell run failed: %+v %s", res.Audit.Exit, res.Stderr)
		}
		if err == nil && warm && res.Audit.Pool.State != audit.PoolWarm {
			b.Fatalf("pooled run was %s: the pool had no sandbox ready", res.Audit.Pool.State)
		}
		return err
	}
	return map[string]func() error{
		"exec": func() error { return exec.Command("/bin/sh", "-c", "true").Run() },
		"bwrap": func() error {
			return exec.Command(bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr",
				"--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
				"--proc", "/proc", "--dev", "/dev", "--", "/bin/sh", "-c", "true").Run()
		},
		"toolcell": func() error {
			res, err := pl.Run(ctx, sandbox.Command("/bin/sh", "-c", "true"))
			return check(res, err, false)
		},
		"toolcell-pool": func() error {
			res, err := po.Run(ctx, sandbox.Command("/bin/sh", "-c", "true"))
			return check(res, err, true)
		},
		// Untimed, before each pooled launch: the pool's sandbox is ready
		// (it is built while the caller does other things).
		"before:toolcell-pool": func() error { return po.WaitReady(ctx) },
	}, func() { po.Close() }
}

// interleave times each named launcher once per round, in a random order
// per round so that machine noise hits every launcher alike, with gap of
// idle time before each launch, and returns the samples in ms.
func interleave(b *testing.B, l map[string]func() error, names []string, gap time.Duration) map[string][]float64 {
	b.Helper()
	for _, n := range names { // warm up: seal the binary, build the pool
		if err := l[n](); err != nil {
			b.Fatalf("%s: %v", n, err)
		}
	}
	samples := map[string][]float64{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, j := range rand.Perm(len(names)) {
			n := names[j]
			// Work a launcher leaves behind (the kernel tearing down its
			// namespaces, the fork server forking its next stage-2, the
			// pool building its next sandbox) ends before the next
			// launcher is timed; then the launcher waits out the gap.
			time.Sleep(settle + gap)
			if before := l["before:"+n]; before != nil {
				if err := before(); err != nil {
					b.Fatalf("%s: %v", n, err)
				}
			}
			t0 := time.Now()
			if err := l[n](); err != nil {
				b.Fatalf("%s: %v", n, err)
			}
			samples[n] = append(samples[n], float64(time.Since(t0).Microseconds())/1000)
		}
	}
	b.StopTimer()
	return samples
}

// BenchmarkLaunch compares the launchers (see launchers) back to back,
// with only a short settle pause between launches. It reports the median
// of each in ms and the ratios the issue tracks.
// Run: go test -run '^$' -bench '^BenchmarkLaunch$' -benchtime 40x ./sandbox
func BenchmarkLaunch(b *testing.B) {
	l, done := launchers(b)
	defer done()
	names := []string{"exec", "bwrap", "toolcell", "toolcell-pool"}
	med := reportMedians(b, names, interleave(b, l, names, 0))
	b.ReportMetric(med["toolcell"]/med["bwrap"], "ratio/toolcell:bwrap")
	b.ReportMetric(med["toolcell"]/med["exec"], "ratio/toolcell:exec")
	b.ReportMetric(med["toolcell-pool"]/med["exec"], "ratio/pool:exec")
	b.ReportMetric(med["toolcell-pool"]/med["bwrap"], "ratio/pool:bwrap")
}

// BenchmarkLaunchIdle is BenchmarkLaunch with 200 ms of idle time before
// each launch, as an agent calls tools: seconds of model latency apart.
// Costs that back-to-back launches share (a recent RCU grace period, warm
// caches) are paid again here.
// Run: go test -run '^$' -bench LaunchIdle -benchtime 20x ./sandbox
func BenchmarkLaunchIdle(b *testing.B) {
	l, done := launchers(b)
	defer done()
	names := []string{"exec", "bwrap", "toolcell", "toolcell-pool"}
	med := reportMedians(b, names, interleave(b, l, names, 200*time.Millisecond))
	b.ReportMetric(med["toolcell"]/med["bwrap"], "ratio/toolcell:bwrap")
	b.ReportMetric(med["toolcell"]/med["exec"], "ratio/toolcell:exec")
	b.ReportMetric(med["toolcell-pool"]/med["exec"], "ratio/pool:exec")
	b.ReportMetric(med["toolcell-pool"]/med["bwrap"], "ratio/pool:bwrap")
}

// node is one object of the pointer-rich heap of BenchmarkLaunchHeap.
type node struct {
	next *node
	data [48]byte
}

// liveHeap keeps BenchmarkLaunchHeap's heap reachable.
var liveHeap []*node

// BenchmarkLaunchHeap is BenchmarkLaunch with a 256 MiB pointer-rich heap
// in the host process, allocated once and kept live across all rounds, as
// an agent framework has: the garbage collector has real work to do while
// runs are launched. heap:noheap compares toolcell's ratio to bubblewrap
// here with the same ratio measured without the heap in the same run, so
// machine drift cancels out.
// Run: go test -run '^$' -bench LaunchHeap -benchtime 40x ./sandbox
func BenchmarkLaunchHeap(b *testing.B) {
	l, done := launchers(b)
	defer done()
	names := []string{"bwrap", "toolcell"}
	base := reportMediansQuiet(interleave(b, l, names, 0))
	const objs = 256 << 20 / 64
	liveHeap = make([]*node, 0, objs/1024)
	var prev *node
	for i := 0; i < objs; i++ {
		n := &node{next: prev}
		n.data[0] = byte(i)
		prev = n
		if i%1024 == 0 {
			liveHeap = append(liveHeap, n)
		}
	}
	liveHeap = append(liveHeap, prev)
	defer func() { liveHeap = nil }()
	med := reportMedians(b, names, interleave(b, l, names, 0))
	noheap := base["toolcell"] / base["bwrap"]
	b.ReportMetric(noheap, "ratio/toolcell:bwrap-noheap")
	b.ReportMetric(med["toolcell"]/med["bwrap"], "ratio/toolcell:bwrap-heap256")
	b.ReportMetric(med["toolcell"]/med["bwrap"]/noheap, "ratio/heap256:noheap")
}

// reportMediansQuiet returns the median of each launcher's samples.
func reportMediansQuiet(samples map[string][]float64) map[string]float64 {
	med := map[string]float64{}
	for n, s := range samples {
		sort.Float64s(s)
		med[n] = s[len(s)/2]
	}
	return med
}

// reportMedians reports the median of each launcher's samples (ms) and
// returns them.
func reportMedians(b *testing.B, names []string, samples map[string][]float64) map[string]float64 {
	med := map[string]float64{}
	for _, n := range names {
		s := samples[n]
		sort.Float64s(s)
		med[n] = s[len(s)/2]
		b.ReportMetric(med[n], "ms-median/"+n)
	}
	return med
}

// BenchmarkRun is the plain per-run cost of a full sandbox (sh -c true).
func BenchmarkRun(b *testing.B) {
	set := base()
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		res, err := sandbox.Run(ctx, set, sandbox.Command("/bin/sh", "-c", "true"))
		if err != nil || res.Exit.Code != 0 {
			b.Fatalf("%v %+v", err, res)
		}
	}
}

// BenchmarkDeniedSyscall measures what one denied syscall costs the tool:
// the round trip through the supervisor (notification, decoding, the
// record, the EPERM answer). The probe calls acct("/probe-flood") b.N times
// in one sandbox; a run of the same probe with no call is subtracted, so
// the launch cost cancels out.
// b.N should stay within the burst answered at full speed (10000): past
// it the supervisor throttles a flood on purpose.
// Run: go test -run '^$' -bench DeniedSyscall -benchtime 10000x ./sandbox
func BenchmarkDeniedSyscall(b *testing.B) {
	bin := testenv.BuildC(b, "../testdata/probe/probe.c")
	set := base().WithExec(bin)
	ctx := context.Background()
	n := fmt.Sprint(b.N)
	timeRun := func(r *sandbox.Runner, args ...string) time.Duration {
		t0 := time.Now()
		res, err := r.Run(ctx, set, sandbox.Command(bin, args...))
		if err != nil || res.Exit.Code != 0 {
			b.Fatalf("%v %+v", err, res)
		}
		return time.Since(t0)
	}
	empty := timeRun(sandbox.DefaultRunner, "flood", "0")
	b.ResetTimer()
	notified := timeRun(sandbox.DefaultRunner, "flood", n)
	b.StopTimer()
	b.ReportMetric(float64((notified-empty).Nanoseconds())/float64(b.N)/1000, "µs/denied-call")
}

// BenchmarkEgress compares the egress path with a direct loopback
// connection, interleaved round by round, using one client binary
// (testdata/netbench) run inside a sandbox (through toolcell's DNS and
// relay) and on the host (straight to the server):
//
//	connect: connect, 1-byte echo, close; 200 per round
//	throughput: 1 GiB one way, acknowledged by the server
//
// Run: go test -run '^$' -bench Egress -benchtime 5x ./sandbox
func BenchmarkEgress(b *testing.B) {
	testenv.RequireUserNS(b)
	bin := testenv.BuildC(b, "../testdata/netbench/netbench.c")
	echo := serveBench(b, func(c net.Conn) {
		var x [1]byte
		if n, _ := c.Read(x[:]); n == 1 {
			c.Write(x[:])
		}
	})
	sink := serveBench(b, func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		var out [8]byte
		binary.NativeEndian.PutUint64(out[:], uint64(n))
		c.Write(out[:])
	})
	u := newUpstreams()
	u.add("bench.example.com", "203.0.113.40", 7000, echo)
	u.add("bench.example.com", "203.0.113.40", 7001, sink)
	r := u.runner()
	set := base().WithExec(bin).WithEgress("bench.example.com:7000", "bench.example.com:7001").WithTimeout(5 * time.Minute)
	const conns, mib = 200, 1024
	inside := func(args ...string) float64 {
		res, err := r.Run(context.Background(), set, sandbox.Command(bin, args...))
		if err != nil || res.Exit.Code != 0 {
			b.Fatalf("sandboxed netbench %v: %v %s %s", args, err, res.Stdout, res.Stderr)
		}
		return parseNS(b, res.Stdout)
	}
	direct := func(args ...string) float64 {
		out, err := exec.Command(bin, args...).Output()
		if err != nil {
			b.Fatalf("netbench %v: %v", args, err)
		}
		return parseNS(b, out)
	}
	_, echoPort, _ := net.SplitHostPort(echo)
	_, sinkPort, _ := net.SplitHostPort(sink)
	runs := map[string]func() float64{
		"connect-relay":     func() float64 { return inside("latency", "bench.example.com", "7000", fmt.Sprint(conns)) },
		"connect-direct":    func() float64 { return direct("latency", "127.0.0.1", echoPort, fmt.Sprint(conns)) },
		"throughput-relay":  func() float64 { return inside("throughput", "bench.example.com", "7001", fmt.Sprint(mib)) },
		"throughput-direct": func() float64 { return direct("throughput", "127.0.0.1", sinkPort, fmt.Sprint(mib)) },
	}
	names := []string{"connect-relay", "connect-direct", "throughput-relay", "throughput-direct"}
	samples := map[string][]float64{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		order := rand.Perm(len(names))
		for _, j := range order {
			samples[names[j]] = append(samples[names[j]], runs[names[j]]())
		}
	}
	b.StopTimer()
	med := func(n string) float64 {
		s := append([]float64(nil), samples[n]...)
		sort.Float64s(s)
		return s[len(s)/2]
	}
	b.ReportMetric(med("connect-relay")/1000, "us-connect/relay")
	b.ReportMetric(med("connect-direct")/1000, "us-connect/direct")
	b.ReportMetric(med("connect-relay")/med("connect-direct"), "ratio/connect")
	mbps := func(ns float64) float64 { return mib * float64(1<<20) / (ns / 1e9) / 1e6 }
	b.ReportMetric(mbps(med("throughput-relay")), "MBps/relay")
	b.ReportMetric(mbps(med("throughput-direct")), "MBps/direct")
	b.ReportMetric(med("throughput-direct")/med("throughput-relay"), "ratio/throughput")
}

func serveBench(b *testing.B, handle func(net.Conn)) string {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { handle(c); c.Close() }()
		}
	}()
	return l.Addr().String()
}

func parseNS(b *testing.B, out []byte) float64 {
	v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		b.Fatalf("netbench printed %q", out)
	}
	return v
}

// BenchmarkWorkdir measures what a writable workdir adds to a launch, the
// way agents run tools: interleaved rounds of `sh -c 'echo x > f'` under
//
//	bwrap-bind:       bubblewrap with the directory --bind'ed, as cwd
//	toolcell:         no workdir (the write goes to /tmp)
//	toolcell-workdir: the caller's directory as workdir (as root an
//	                  idmapped mount: a user namespace for the mapping,
//	                  open_tree and mount_setattr in the stage-2)
//	toolcell-temp:    a temporary workdir (made, idmapped, removed)
//
// Run: go test -run '^$' -bench '^BenchmarkWorkdir$' -benchtime 40x ./sandbox
func BenchmarkWorkdir(b *testing.B) {
	bwrap, err := exec.LookPath("bwrap")
	if err != nil {
		b.Fatalf("bubblewrap is needed for the comparison: %v", err)
	}
	wd := testenv.Tempdir(b)
	ctx := context.Background()
	run := func(set *capability.Set, script string) func() error {
		return func() error {
			res, err := sandbox.Run(ctx, set, sandbox.Command("/bin/sh", "-c", script))
			if err == nil && res.Exit.Code != 0 {
				b.Fatalf("toolcell run failed: %+v %s", res.Audit.Exit, res.Stderr)
			}
			return err
		}
	}
	launchers := map[string]func() error{
		"bwrap-bind": func() error {
			return exec.Command(bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr",
				"--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
				"--proc", "/proc", "--dev", "/dev", "--bind", wd, wd, "--chdir", wd, "--", "/bin/sh", "-c", "echo x > f").Run()
		},
		"toolcell":         run(base(), "echo x > /tmp/f"),
		"toolcell-workdir": run(base().WithWorkdir(wd), "echo x > f"),
		"toolcell-temp":    run(base().WithWorkdir(capability.TempWorkdir()), "echo x > f"),
	}
	names := []string{"bwrap-bind", "toolcell", "toolcell-workdir", "toolcell-temp"}
	med := reportMedians(b, names, interleave(b, launchers, names, 0))
	b.ReportMetric(med["toolcell-workdir"]/med["bwrap-bind"], "ratio/workdir:bwrap-bind")
	b.ReportMetric((med["toolcell-workdir"]-med["toolcell"])*1000, "us-added/workdir")
	b.ReportMetric((med["toolcell-temp"]-med["toolcell"])*1000, "us-added/temp")
}

// BenchmarkThroughput runs `sh -c true` from 32 callers at once for a
// fixed time per launcher (TOOLCELL_BENCH_SECONDS, default 3; bench.sh
// uses 10), launchers in a random order per round, and reports runs per
// second of each and the ratios to bubblewrap. Every run must succeed.
// Run: go test -run '^$' -bench Throughput -benchtime 1x ./sandbox
func BenchmarkThroughput(b *testing.B) {
	const callers = 32
	secs := 3.0
	if v := os.Getenv("TOOLCELL_BENCH_SECONDS"); v != "" {
		var err error
		if secs, err = strconv.ParseFloat(v, 64); err != nil {
			b.Fatalf("TOOLCELL_BENCH_SECONDS=%q: %v", v, err)
		}
	}
	l, done := launchers(b)
	defer done()
	pl, err := sandbox.Compile(base())
	if err != nil {
		b.Fatal(err)
	}
	po, err := sandbox.NewPool(pl, sandbox.PoolOptions{Size: callers})
	if err != nil {
		b.Fatal(err)
	}
	defer po.Close()
	ctx := context.Background()
	l["toolcell-pool"] = func() error {
		res, err := po.Run(ctx, sandbox.Command("/bin/sh", "-c", "true"))
		if err == nil && res.Exit.Code != 0 {
			err = fmt.Errorf("exit %d: %s", res.Exit.Code, res.Stderr)
		}
		return err
	}
	names := []string{"bwrap", "toolcell", "toolcell-pool"}
	runs := map[string]int{}
	took := map[string]time.Duration{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, j := range rand.Perm(len(names)) {
			n := names[j]
			if n == "toolcell-pool" {
				b.StopTimer()
				if err := po.WaitReady(ctx); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			var count atomic.Int64
			var failed atomic.Value
			stop := time.Now().Add(time.Duration(secs * float64(time.Second)))
			t0 := time.Now()
			var wg sync.WaitGroup
			for c := 0; c < callers; c++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for time.Now().Before(stop) {
						if err := l[n](); err != nil {
							failed.Store(err)
							return
						}
						count.Add(1)
					}
				}()
			}
			wg.Wait()
			if err := failed.Load(); err != nil {
				b.Fatalf("%s: %v", n, err)
			}
			runs[n] += int(count.Load())
			took[n] += time.Since(t0)
			time.Sleep(200 * time.Millisecond) // the kernel ends what the last runs left
		}
	}
	b.StopTimer()
	rate := map[string]float64{}
	for _, n := range names {
		rate[n] = float64(runs[n]) / took[n].Seconds()
		b.ReportMetric(rate[n], "runs/s/"+n)
	}
	b.ReportMetric(rate["toolcell"]/rate["bwrap"], "ratio/toolcell:bwrap")
	b.ReportMetric(rate["toolcell-pool"]/rate["bwrap"], "ratio/pool:bwrap")
}

package sandbox_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/internal/testenv"
	"github.com/toolcell/toolcell/sandbox"
)

// settle is the pause between two timed launches.
const settle = 5 * time.Millisecond

// heap is kept alive during the heap variant to give the host process a
// big heap, as agent frameworks have.
var heap [][]byte

// BenchmarkLaunch compares, interleaved round by round so that machine
// noise hits every launcher alike, the cold launch of `sh -c true` by:
//
//	exec:     plain os/exec (the floor)
//	bwrap:    bubblewrap --unshare-all, read-only /usr, /proc, /dev
//	toolcell: a full sandbox (7 namespaces, view, cgroup, seccomp)
//	toolcell-heap256: the same with a 256 MiB live heap in the host process
//
// It reports the median of each in ms and the ratios the issue tracks.
// Run: go test -run '^$' -bench Launch -benchtime 40x ./sandbox
func BenchmarkLaunch(b *testing.B) {
	bwrap, err := exec.LookPath("bwrap")
	if err != nil {
		b.Fatalf("bubblewrap is needed for the comparison: %v", err)
	}
	set := base()
	ctx := context.Background()
	launchers := map[string]func() error{
		"exec": func() error { return exec.Command("/bin/sh", "-c", "true").Run() },
		"bwrap": func() error {
			return exec.Command(bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr",
				"--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
				"--proc", "/proc", "--dev", "/dev", "--", "/bin/sh", "-c", "true").Run()
		},
		"toolcell": func() error {
			res, err := sandbox.Run(ctx, set, sandbox.Command("/bin/sh", "-c", "true"))
			if err == nil && res.ExitCode != 0 {
				b.Fatalf("toolcell run failed: %+v %s", res.Audit.Exit, res.Stderr)
			}
			return err
		},
	}
	names := []string{"exec", "bwrap", "toolcell", "toolcell-heap256"}
	samples := map[string][]float64{}
	// Warm up: seal the binary, compile the seccomp filter.
	for _, n := range names[:3] {
		if err := launchers[n](); err != nil {
			b.Fatalf("%s: %v", n, err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		order := rand.Perm(len(names))
		for _, j := range order {
			n := names[j]
			f := launchers[n]
			if n == "toolcell-heap256" {
				heap = make([][]byte, 256)
				for k := range heap {
					heap[k] = make([]byte, 1<<20)
					heap[k][0] = 1
				}
				f = launchers["toolcell"]
			}
			t0 := time.Now()
			if err := f(); err != nil {
				b.Fatalf("%s: %v", n, err)
			}
			samples[n] = append(samples[n], float64(time.Since(t0).Microseconds())/1000)
			if n == "toolcell-heap256" {
				heap = nil
				runtime.GC()
			}
			// Work a launcher leaves behind (the kernel tearing down its
			// namespaces, toolcell's fork server forking its next
			// stage-2) ends before the next launcher is timed.
			time.Sleep(settle)
		}
	}
	b.StopTimer()
	med := reportMedians(b, names, samples)
	b.ReportMetric(med["toolcell"]/med["bwrap"], "ratio/toolcell:bwrap")
	b.ReportMetric(med["toolcell"]/med["exec"], "ratio/toolcell:exec")
	b.ReportMetric(med["toolcell-heap256"]/med["toolcell"], "ratio/heap256:noheap")
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
		if err != nil || res.ExitCode != 0 {
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
		if err != nil || res.ExitCode != 0 {
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
		if err != nil || res.ExitCode != 0 {
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
			if err == nil && res.ExitCode != 0 {
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
	for _, n := range names {
		if err := launchers[n](); err != nil {
			b.Fatalf("%s: %v", n, err)
		}
	}
	samples := map[string][]float64{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, j := range rand.Perm(len(names)) {
			n := names[j]
			t0 := time.Now()
			if err := launchers[n](); err != nil {
				b.Fatalf("%s: %v", n, err)
			}
			samples[n] = append(samples[n], float64(time.Since(t0).Microseconds())/1000)
			time.Sleep(settle)
		}
	}
	b.StopTimer()
	med := reportMedians(b, names, samples)
	b.ReportMetric(med["toolcell-workdir"]/med["bwrap-bind"], "ratio/workdir:bwrap-bind")
	b.ReportMetric((med["toolcell-workdir"]-med["toolcell"])*1000, "us-added/workdir")
	b.ReportMetric((med["toolcell-temp"]-med["toolcell"])*1000, "us-added/temp")
}

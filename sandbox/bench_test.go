package sandbox_test

import (
	"context"
	"fmt"
	"math/rand"
	"os/exec"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/toolcell/toolcell/internal/testenv"
	"github.com/toolcell/toolcell/sandbox"
)

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
		}
	}
	b.StopTimer()
	med := map[string]float64{}
	for _, n := range names {
		s := samples[n]
		sort.Float64s(s)
		med[n] = s[len(s)/2]
		b.ReportMetric(med[n], "ms-median/"+n)
	}
	b.ReportMetric(med["toolcell"]/med["bwrap"], "ratio/toolcell:bwrap")
	b.ReportMetric(med["toolcell"]/med["exec"], "ratio/toolcell:exec")
	b.ReportMetric(med["toolcell-heap256"]/med["toolcell"], "ratio/heap256:noheap")
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
	set := base().ExecFile(bin)
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

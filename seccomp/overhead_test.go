package seccomp

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const benchChildEnv = "TOOLCELL_SECCOMP_BENCH_CHILD"

// overheadChild times syscall-heavy loops, under the default filter when
// mode is "filtered", and prints ns per call.
func overheadChild(mode string) int {
	runtime.LockOSThread()
	if mode == "filtered" {
		f, err := Compile(Policy{Groups: DefaultGroups()})
		if err == nil {
			err = install(f.BPF)
		}
		if err != nil {
			fmt.Println("FAIL", err)
			return 2
		}
	}
	const nGetppid, nRead = 300000, 100000
	t0 := time.Now()
	for i := 0; i < nGetppid; i++ {
		unix.RawSyscall(unix.SYS_GETPPID, 0, 0, 0)
	}
	getppid := float64(time.Since(t0).Nanoseconds()) / nGetppid
	fd, err := unix.Open("/dev/zero", unix.O_RDONLY, 0)
	if err != nil {
		fmt.Println("FAIL", err)
		return 2
	}
	buf := make([]byte, 4096)
	t0 = time.Now()
	for i := 0; i < nRead; i++ {
		unix.Read(fd, buf)
	}
	read := float64(time.Since(t0).Nanoseconds()) / nRead
	fmt.Printf("getppid=%.1f read4k=%.1f\n", getppid, read)
	return 0
}

// BenchmarkSyscallOverhead runs the same syscall-heavy loops in a child
// without a filter and in one under the default filter (1000+ BPF
// instructions, binary tree), interleaved in a random order each round, and
// reports the medians and the ratios (issue target: <= 1.05x).
// Run: go test -run '^$' -bench SyscallOverhead -benchtime 15x ./seccomp
func BenchmarkSyscallOverhead(b *testing.B) {
	samples := map[string][]float64{}
	modes := []string{"plain", "filtered"}
	for i := 0; i < b.N; i++ {
		for _, j := range rand.Perm(2) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), benchChildEnv+"="+modes[j])
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.HasPrefix(string(out), "getppid=") {
				b.Fatalf("child %s: %v %s", modes[j], err, out)
			}
			var g, r float64
			fmt.Sscanf(string(out), "getppid=%g read4k=%g", &g, &r)
			samples[modes[j]+"/getppid"] = append(samples[modes[j]+"/getppid"], g)
			samples[modes[j]+"/read4k"] = append(samples[modes[j]+"/read4k"], r)
		}
	}
	med := func(k string) float64 {
		s := samples[k]
		sort.Float64s(s)
		return s[len(s)/2]
	}
	for _, op := range []string{"getppid", "read4k"} {
		p, f := med("plain/"+op), med("filtered/"+op)
		b.ReportMetric(p, "ns-plain/"+op)
		b.ReportMetric(f, "ns-filtered/"+op)
		b.ReportMetric(f/p, "ratio/"+op)
	}
}

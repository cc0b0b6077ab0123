package main

import (
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/toolcell/toolcell/internal/testenv"
)

// BenchmarkCLIOneShot measures the CLI as a one-shot process, as a shell
// starts it: `toolcell run --base -- sh -c true`, against bubblewrap with a
// like view and against a plain fork/exec of `sh -c true`, in interleaved
// rounds (a random order each round), medians reported.
//
// Wall time is from the start to the launcher's exit. CPU time (user+sys)
// is that of the launcher and every process it left behind: the benchmark
// is a child subreaper, so what outlives the launcher (a fork server, say)
// is reparented to it, and it reaps all of them before the next launcher
// starts; the CPU figure is the growth of its RUSAGE_CHILDREN over that.
//
// The toolcell binary is built from this tree; TOOLCELL_BENCH_BINS
// (name=path,name=path) adds or replaces binaries to compare, A/B, in the
// same rounds ("toolcell" names the one built here).
//
// Run: scripts/bench-cli.sh [ROUNDS], or
// go test -run '^$' -bench CLIOneShot -benchtime 100x ./cmd/toolcell
func BenchmarkCLIOneShot(b *testing.B) {
	testenv.RequireUserNS(b)
	bwrap, err := exec.LookPath("bwrap")
	if err != nil {
		b.Fatalf("bubblewrap is needed for the comparison: %v", err)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		b.Fatal(err)
	}
	// The binary is built outside the launchers' TMPDIR, as an installed
	// one is: sealing it through overlayfs (as root) needs its directory
	// and TMPDIR apart.
	dir := b.TempDir()
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		b.Fatal(err)
	}
	bins := map[string]string{}
	var tcNames []string
	if spec := os.Getenv("TOOLCELL_BENCH_BINS"); spec != "" {
		for _, kv := range strings.Split(spec, ",") {
			n, p, ok := strings.Cut(kv, "=")
			if !ok {
				b.Fatalf("TOOLCELL_BENCH_BINS: %q is not name=path", kv)
			}
			bins[n] = p
			tcNames = append(tcNames, n)
		}
	}
	if _, ok := bins["toolcell"]; !ok {
		bin := filepath.Join(dir, "bin", "toolcell")
		if out, err := exec.Command(goTool(), "build", "-o", bin, ".").CombinedOutput(); err != nil {
			b.Fatalf("go build: %v\n%s", err, out)
		}
		bins["toolcell"] = bin
		tcNames = append([]string{"toolcell"}, tcNames...)
	}
	argv := map[string][]string{
		"exec": {sh, "-c", "true"},
		"bwrap": {bwrap, "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
			"--symlink", "usr/lib64", "/lib64", "--proc", "/proc", "--dev", "/dev", "--unshare-all", "--", "sh", "-c", "true"},
	}
	for _, n := range tcNames {
		argv[n] = []string{bins[n], "run", "--base", "--", "sh", "-c", "true"}
	}
	names := append([]string{"exec", "bwrap"}, tcNames...)

	// Every child of this process is reaped below: one left by a test
	// that ran before (a fork server) would be waited for for ever.
	if pid, err := unix.Wait4(-1, nil, unix.WNOHANG, nil); err != unix.ECHILD {
		b.Fatalf("this process has children already (pid %d, %v): run the benchmark alone (-run '^$')", pid, err)
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		b.Fatalf("PR_SET_CHILD_SUBREAPER: %v", err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer null.Close()
	env := append(os.Environ(), "TMPDIR="+tmp)
	launch := func(name string) (wall, cpu float64) {
		var before, after unix.Rusage
		unix.Getrusage(unix.RUSAGE_CHILDREN, &before)
		t0 := time.Now()
		p, err := os.StartProcess(argv[name][0], argv[name], &os.ProcAttr{Env: env, Files: []*os.File{null, null, null}})
		if err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		var ws unix.WaitStatus
		for {
			_, err = unix.Wait4(p.Pid, &ws, 0, nil)
			if err != unix.EINTR {
				break
			}
		}
		wall = float64(time.Since(t0).Microseconds()) / 1000
		if err != nil || !ws.Exited() || ws.ExitStatus() != 0 {
			b.Fatalf("%s: %v, status %v", name, err, ws)
		}
		// Reap what the launcher left behind (reparented to us).
		for {
			_, err := unix.Wait4(-1, &ws, 0, nil)
			if err == unix.ECHILD {
				break
			}
			if err != nil && err != unix.EINTR {
				b.Fatalf("%s: wait for orphans: %v", name, err)
			}
		}
		unix.Getrusage(unix.RUSAGE_CHILDREN, &after)
		cpu = float64(tvUS(after.Utime)+tvUS(after.Stime)-tvUS(before.Utime)-tvUS(before.Stime)) / 1000
		return wall, cpu
	}
	// Warm up the page cache and the file systems.
	for _, n := range names {
		launch(n)
	}
	wall := map[string][]float64{}
	cpu := map[string][]float64{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, j := range rand.Perm(len(names)) {
			w, c := launch(names[j])
			wall[names[j]] = append(wall[names[j]], w)
			cpu[names[j]] = append(cpu[names[j]], c)
			// The kernel's teardown of the namespaces ends before the
			// next launcher is timed.
			time.Sleep(5 * time.Millisecond)
		}
	}
	b.StopTimer()
	mw, mc := map[string]float64{}, map[string]float64{}
	for _, n := range names {
		mw[n], mc[n] = median(wall[n]), median(cpu[n])
		b.ReportMetric(mw[n], "ms-wall/"+n)
		b.ReportMetric(mc[n], "ms-cpu/"+n)
	}
	for _, n := range tcNames {
		b.ReportMetric(mw[n]/mw["bwrap"], "ratio-wall/"+n+":bwrap")
		b.ReportMetric(mc[n]/mc["bwrap"], "ratio-cpu/"+n+":bwrap")
		b.ReportMetric(mw[n]/mw["exec"], "ratio-wall/"+n+":exec")
	}
}

func tvUS(tv unix.Timeval) int64 { return tv.Sec*1e6 + tv.Usec }

func median(s []float64) float64 {
	s = append([]float64(nil), s...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

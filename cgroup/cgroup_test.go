package cgroup

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func killedBySIGKILL(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

func TestLimitsApplied(t *testing.T) {
	v := requireCgroups(t)
	lim := Limits{MemoryBytes: 64 << 20, Pids: 16, CPU: 0.5}
	cg := newTestCgroup(t, lim)
	if cg.Version() != v || cg.lim != lim {
		t.Fatalf("version %v limits %+v", cg.Version(), cg.lim)
	}
	dirs := cg.Dirs()
	if v == V2 {
		d := dirs["unified"]
		want := map[string]string{"memory.max": "67108864", "pids.max": "16", "cpu.max": "50000 100000"}
		if cg.swapLimited {
			want["memory.swap.max"] = "0"
		}
		for f, w := range want {
			if got := readTrim(t, d, f); got != w {
				t.Errorf("%s = %q, want %q", f, got, w)
			}
		}
		return
	}
	if got := readTrim(t, dirs["memory"], "memory.limit_in_bytes"); got != "67108864" {
		t.Errorf("memory.limit_in_bytes = %q", got)
	}
	if _, err := os.Stat(filepath.Join(dirs["memory"], "memory.memsw.limit_in_bytes")); err == nil {
		if !cg.swapLimited {
			t.Error("memsw exists but SwapLimited is false")
		}
		if got := readTrim(t, dirs["memory"], "memory.memsw.limit_in_bytes"); got != "67108864" {
			t.Errorf("memory.memsw.limit_in_bytes = %q", got)
		}
	}
	if got := readTrim(t, dirs["pids"], "pids.max"); got != "16" {
		t.Errorf("pids.max = %q", got)
	}
	if got := readTrim(t, dirs["cpu"], "cpu.cfs_period_us"); got != "100000" {
		t.Errorf("cpu.cfs_period_us = %q", got)
	}
	if got := readTrim(t, dirs["cpu"], "cpu.cfs_quota_us"); got != "50000" {
		t.Errorf("cpu.cfs_quota_us = %q", got)
	}
	if _, err := cg.OpenDir(); err == nil {
		t.Error("OpenDir succeeded on v1")
	}
}

func TestAddProcAndKill(t *testing.T) {
	requireCgroups(t)
	cg := newTestCgroup(t, Limits{MemoryBytes: 64 << 20, Pids: 16, CPU: 1})
	cmd := exec.Command("/bin/sleep", "5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	if err := cg.addProc(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), ":"+cg.Path()+"\n") {
		t.Fatalf("/proc/pid/cgroup does not show %s:\n%s", cg.Path(), b)
	}
	if p := procsIn(t, cg); len(p) == 0 {
		t.Fatal("cgroup.procs empty after AddProc")
	}
	start := time.Now()
	if err := cg.Kill(); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if !killedBySIGKILL(err) {
		t.Fatalf("Wait = %v, want killed by SIGKILL", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("kill took %v", time.Since(start))
	}
	if p := procsIn(t, cg); len(p) != 0 {
		t.Fatalf("cgroup not empty after Kill: %v", p)
	}
}

func TestKillForkingTree(t *testing.T) {
	requireCgroups(t)
	cg := newTestCgroup(t, Limits{MemoryBytes: 64 << 20, Pids: 32, CPU: 1})
	// A shell whose children outlive it (reparented to init).
	g := startGated(t, cg, "/bin/sh", "-c", "sleep 30 & sleep 30 & (sleep 30 &) ; sleep 30")
	deadline := time.Now().Add(3 * time.Second)
	for len(procsIn(t, cg)) < 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(procsIn(t, cg)); n < 4 {
		t.Fatalf("only %d tasks started", n)
	}
	if err := cg.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := g.cmd.Wait(); !killedBySIGKILL(err) {
		t.Fatalf("Wait = %v", err)
	}
	if p := procsIn(t, cg); len(p) != 0 {
		t.Fatalf("left: %v", p)
	}
}

func TestStatsMemoryAndCPU(t *testing.T) {
	requireCgroups(t)
	py := python(t)
	cg := newTestCgroup(t, Limits{MemoryBytes: 256 << 20, Pids: 16, CPU: 1})
	// b'x' * n writes every byte, so the pages are really faulted in.
	g := startGated(t, cg, py, "-c", "b = b'x' * (80 << 20); print(len(b))")
	if err := g.cmd.Wait(); err != nil {
		t.Fatalf("child: %v: %s", err, g.stderr.String())
	}
	st, err := cg.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stats: %+v", st)
	if st.MemoryPeakBytes < 60<<20 {
		t.Errorf("MemoryPeakBytes = %d, want >= 60MiB", st.MemoryPeakBytes)
	}
	if st.CPUUserUsec+st.CPUSystemUsec == 0 {
		t.Error("no CPU usage recorded")
	}
	if st.OOMKills != 0 {
		t.Errorf("OOMKills = %d", st.OOMKills)
	}
	hasPidsNote := false
	for _, n := range st.Notes {
		hasPidsNote = hasPidsNote || strings.Contains(n, "pids.peak")
	}
	if st.PidsPeak == 0 && !hasPidsNote {
		t.Error("PidsPeak is 0 without a note")
	}
}

func TestOOMKill(t *testing.T) {
	requireCgroups(t)
	py := python(t)
	cg := newTestCgroup(t, Limits{MemoryBytes: 32 << 20, Pids: 16, CPU: 1})
	g := startGated(t, cg, py, "-c", "b = b'x' * (200 << 20); print(len(b))")
	err := g.cmd.Wait()
	if !killedBySIGKILL(err) {
		t.Fatalf("Wait = %v (stdout %q stderr %q), want OOM SIGKILL", err, g.stdout.String(), g.stderr.String())
	}
	st, serr := cg.Stats()
	if serr != nil {
		t.Fatal(serr)
	}
	t.Logf("stats: %+v swapLimited=%v", st, cg.swapLimited)
	if st.OOMKills < 1 {
		t.Errorf("OOMKills = %d, want >= 1", st.OOMKills)
	}
}

func TestPidsLimit(t *testing.T) {
	requireCgroups(t)
	py := python(t)
	cg := newTestCgroup(t, Limits{MemoryBytes: 256 << 20, Pids: 5, CPU: 1})
	script := `
import os, sys
ok = 0
for i in range(20):
    try:
        pid = os.fork()
    except OSError:
        continue
    if pid == 0:
        fd = os.open("/dev/null", os.O_WRONLY)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.execv("/bin/sleep", ["sleep", "5"])
    ok += 1
print(ok)
sys.stdout.flush()
`
	g := startGated(t, cg, py, "-c", script)
	if err := g.cmd.Wait(); err != nil {
		t.Fatalf("child: %v: %s", err, g.stderr.String())
	}
	n, err := strconv.Atoi(strings.TrimSpace(g.stdout.String()))
	if err != nil {
		t.Fatalf("output %q: %v", g.stdout.String(), err)
	}
	// The python process itself takes one of the 5 slots.
	if n < 1 || n > 4 {
		t.Fatalf("%d of 20 forks succeeded, want 1..4", n)
	}
	t.Logf("%d of 20 forks succeeded", n)
	st, err := cg.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.PidsPeak > 5 || (st.PidsPeak == 0 && len(st.Notes) == 0) {
		t.Errorf("PidsPeak = %d > limit", st.PidsPeak)
	}
	if err := cg.Kill(); err != nil {
		t.Fatal(err)
	}
}

func TestDeleteRemovesDirs(t *testing.T) {
	requireCgroups(t)
	cg, err := New(Config{}, testName(), Limits{MemoryBytes: 16 << 20, Pids: 4, CPU: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	dirs := cg.Dirs()
	for _, d := range dirs {
		if _, err := os.Stat(d); err != nil {
			cg.Delete()
			t.Fatalf("%s missing after New: %v", d, err)
		}
	}
	if err := cg.Delete(); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s still exists: %v", d, err)
		}
	}
	if err := cg.Delete(); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if err := cg.addProc(os.Getpid()); err == nil {
		t.Error("AddProc after Delete succeeded")
	}
}

func TestDeleteIfEmpty(t *testing.T) {
	requireCgroups(t)
	cg := newTestCgroup(t, Limits{MemoryBytes: 64 << 20, Pids: 8, CPU: 1})
	dirs := cg.Dirs()
	g := startGated(t, cg, "/bin/sleep", "10")
	_ = g
	if ok, err := cg.DeleteIfEmpty(); ok || err != nil {
		t.Fatalf("DeleteIfEmpty with a live task: %v, %v", ok, err)
	}
	// Whatever was removed before the busy directory, Kill and Delete
	// still work on the rest.
	if err := cg.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := cg.Delete(); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s still exists: %v", d, err)
		}
	}
	empty := newTestCgroup(t, Limits{MemoryBytes: 64 << 20, Pids: 8, CPU: 1})
	if ok, err := empty.DeleteIfEmpty(); !ok || err != nil {
		t.Fatalf("DeleteIfEmpty of an empty cgroup: %v, %v", ok, err)
	}
	if ok, err := empty.DeleteIfEmpty(); !ok || err != nil {
		t.Fatalf("second DeleteIfEmpty: %v, %v", ok, err)
	}
}

func TestDeleteBusyFails(t *testing.T) {
	requireCgroups(t)
	cg := newTestCgroup(t, Limits{MemoryBytes: 64 << 20, Pids: 8, CPU: 1})
	g := startGated(t, cg, "/bin/sleep", "10")
	_ = g
	start := time.Now()
	if err := cg.Delete(); err == nil {
		t.Fatal("Delete succeeded with a live task")
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("Delete retried too long")
	}
}

func TestProbe(t *testing.T) {
	v := requireCgroups(t)
	info, err := Probe()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", info)
	if info.Version != v || !info.Writable || !info.KillSupported || len(info.Controllers) < 3 || info.Mountpoint == "" {
		t.Fatalf("%+v", info)
	}
}

// A process joins through a cgroup.procs file it did not open (the
// stage-2's way): writing "0" moves the writer.
func TestOpenProcsJoin(t *testing.T) {
	requireCgroups(t)
	cg := newTestCgroup(t, Limits{MemoryBytes: 64 << 20, Pids: 16, CPU: 1})
	files, err := cg.OpenProcs()
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(cg.uniqueDirs()) {
		t.Fatalf("%d files for %d hierarchies", len(files), len(cg.uniqueDirs()))
	}
	// The shell writes "0" to each inherited file (fds 3..), then sleeps.
	script := ""
	for i := range files {
		script += "printf 0 >&" + strconv.Itoa(3+i) + " || exit 7; "
	}
	cmd := exec.Command("/bin/sh", "-c", script+"exec sleep 60")
	cmd.ExtraFiles = files
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		f.Close()
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cgroup")
		if err != nil {
			t.Fatal(err)
		}
		// Each hierarchy names the run cgroup at its own depth.
		n := strings.Count(string(b), "/"+filepath.Base(cg.Path())+"\n")
		if n >= len(files) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("joined %d of %d hierarchies:\n%s", n, len(files), b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cg.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); !killedBySIGKILL(err) {
		t.Fatalf("Wait = %v, want killed by SIGKILL", err)
	}
	if err := cg.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := cg.OpenProcs(); err == nil {
		t.Fatal("OpenProcs succeeded on a deleted cgroup")
	}
}

package cgroup

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/toolcell/toolcell/internal/testenv"
)

// skipOrFail skips the test, unless TOOLCELL_CI is set: CI must never skip
// (testenv.Require).
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	testenv.Require(t, false, fmt.Sprintf(format, args...))
}

// requireRoot skips (or fails under TOOLCELL_CI) unless running as root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root (euid %d)", os.Geteuid())
	}
}

// requireCgroups needs a supported cgroup setup where this process may
// create cgroups: as root, or unprivileged inside a delegated subtree (how
// CI runs the rootless host kind).
func requireCgroups(t *testing.T) Version {
	t.Helper()
	d, err := detect(Config{})
	var v Version
	if d != nil {
		v = d.version
	}
	if err != nil {
		skipOrFail(t, "cgroups not usable: %v", err)
	}
	info, err := Probe()
	if err != nil || !info.Writable {
		skipOrFail(t, "cannot create cgroups here (euid %d): %v %v", os.Geteuid(), err, info.Problems)
	}
	return v
}

var nameSeq atomic.Int64

func testName() string {
	return fmt.Sprintf("toolcell-test-%d-%d", os.Getpid(), nameSeq.Add(1))
}

// newTestCgroup creates a run cgroup that is killed and deleted at cleanup.
func newTestCgroup(t *testing.T, lim Limits) *Cgroup {
	t.Helper()
	cg, err := New(Config{}, testName(), lim)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := cg.Kill(); err != nil {
			t.Errorf("cleanup Kill: %v", err)
		}
		if err := cg.Delete(); err != nil {
			t.Errorf("cleanup Delete: %v", err)
		}
		// On v2 New may have created the shared default parent
		// "<own>/toolcell"; remove it when nothing else uses it.
		if cg.Version() == V2 {
			if p := filepath.Dir(cg.Dirs()["unified"]); filepath.Base(p) == defaultParentName {
				_ = os.Remove(p)
			}
		}
	})
	return cg
}

// gated is a child process that waits on stdin before exec'ing the real
// command, so it can be moved into the cgroup before it does anything.
type gated struct {
	cmd    *exec.Cmd
	gate   *os.File
	stdout strings.Builder
	stderr strings.Builder
}

func startGated(t *testing.T, cg *Cgroup, args ...string) *gated {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	g := &gated{gate: w}
	full := append([]string{"-c", `read x; exec "$@"`, "sh"}, args...)
	g.cmd = exec.Command("/bin/sh", full...)
	g.cmd.Stdin = r
	g.cmd.Stdout = &g.stdout
	g.cmd.Stderr = &g.stderr
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	t.Cleanup(func() {
		w.Close()
		if g.cmd.ProcessState == nil {
			_ = g.cmd.Process.Kill()
			_ = g.cmd.Wait()
		}
	})
	if err := cg.addProc(g.cmd.Process.Pid); err != nil {
		t.Fatalf("AddProc: %v", err)
	}
	if _, err := w.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	return g
}

// readTrim reads a cgroup file of the test cgroup.
func readTrim(t *testing.T, dir, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// procsIn lists the pids of every directory of cg.
func procsIn(t *testing.T, cg *Cgroup) []int {
	t.Helper()
	var all []int
	for _, d := range cg.Dirs() {
		p, err := readPids(filepath.Join(d, "cgroup.procs"))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, p...)
	}
	return all
}

// python returns the real python3 interpreter (not a pyenv shim script,
// which forks helpers and would distort pids tests).
func python(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("python3")
	if err != nil {
		skipOrFail(t, "python3 not found")
	}
	out, err := exec.Command(p, "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		skipOrFail(t, "python3 does not run: %v", err)
	}
	return strings.TrimSpace(string(out))
}

package cgroup

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/toolcell/toolcell/internal/testenv"
)

// TestV2MechanicsOnUnifiedTree runs the v2 code paths that need no
// controllers (mkdir, CLONE_INTO_CGROUP via OpenDir, cgroup.kill,
// cgroup.events, cpu.stat, rmdir) on whatever cgroup2 tree is mounted, e.g.
// /sys/fs/cgroup/unified on a hybrid host. Limits are not applied here.
func TestV2MechanicsOnUnifiedTree(t *testing.T) {
	testenv.NotApplicable(t, map[string]string{
		testenv.KindRootlessHybrid: "the hybrid host's v2 tree holds only hugetlb and its root cgroup belongs to root; CI delegates the v1 hierarchies only",
	})
	requireRoot(t)
	l, err := readLayout()
	if err != nil {
		t.Fatal(err)
	}
	if l.V2Mount == "" {
		skipOrFail(t, "no cgroup2 mount")
	}
	own, err := l.ownV2()
	if err != nil {
		t.Fatal(err)
	}
	d := &detected{version: V2, layout: l, mount: l.V2Mount}
	lim := Limits{MemoryBytes: 1 << 20, Pids: 1, CPU: 1}
	cg, err := newV2(d, Config{Parent: own}, testName(), lim, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cg.Kill()
		if err := cg.Delete(); err != nil {
			t.Error(err)
		}
	})
	if _, err := os.Stat(l.V2Mount + own + "/" + "cgroup.kill"); err != nil && own != "/" {
		t.Logf("no cgroup.kill in own cgroup: %v", err)
	}
	f, err := cg.OpenDir()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sleep", "5")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	err = cmd.Start()
	f.Close()
	if err != nil {
		t.Fatalf("start with CLONE_INTO_CGROUP: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	b, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "0::"+cg.Path()+"\n") {
		t.Fatalf("child not born in %s:\n%s", cg.Path(), b)
	}
	if _, err := cg.Stats(); err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if err := cg.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); !killedBySIGKILL(err) {
		t.Fatalf("Wait = %v", err)
	}
	if p := procsIn(t, cg); len(p) != 0 {
		t.Fatalf("left: %v", p)
	}
}

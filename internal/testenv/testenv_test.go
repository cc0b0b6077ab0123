package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// fakeTB records Skipf/Fatalf; like the real ones they stop the caller
// (by panicking with stopped{}, which run recovers).
type fakeTB struct {
	testing.TB
	skipped, failed string
}

type stopped struct{}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.skipped = fmt.Sprintf(format, args...)
	panic(stopped{})
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
	panic(stopped{})
}

// run calls fn(f) and absorbs the fake's stop.
func (f *fakeTB) run(fn func(testing.TB)) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(stopped); !ok {
				panic(r)
			}
		}
	}()
	fn(f)
}

func TestCIAndHostKind(t *testing.T) {
	t.Setenv("TOOLCELL_CI", "")
	t.Setenv("TOOLCELL_HOST_KIND", "")
	if CI() || HostKind() != "" {
		t.Fatalf("CI()=%v HostKind()=%q with empty env", CI(), HostKind())
	}
	t.Setenv("TOOLCELL_CI", "1")
	t.Setenv("TOOLCELL_HOST_KIND", KindVMv2)
	if !CI() || HostKind() != "vm-v2" {
		t.Fatalf("CI()=%v HostKind()=%q", CI(), HostKind())
	}
}

// The harness must only ever announce kinds the tests know about.
func TestHarnessHostKindIsKnown(t *testing.T) {
	switch k := HostKind(); k {
	case "", KindRootHybrid, KindRootlessHybrid, KindVMv2:
		if CI() && k == "" {
			t.Fatal("TOOLCELL_CI is set but TOOLCELL_HOST_KIND is empty")
		}
	default:
		t.Fatalf("unknown TOOLCELL_HOST_KIND %q", k)
	}
}

func TestRequire(t *testing.T) {
	for _, tc := range []struct {
		ci       string
		ok       bool
		wantSkip string
		wantFail string
	}{
		{ci: "", ok: true},
		{ci: "1", ok: true},
		{ci: "", ok: false, wantSkip: "requires a frobnicator"},
		{ci: "1", ok: false, wantFail: "required: a frobnicator (TOOLCELL_CI is set: tests never skip in CI)"},
	} {
		t.Run(fmt.Sprintf("ci=%q,ok=%v", tc.ci, tc.ok), func(t *testing.T) {
			t.Setenv("TOOLCELL_CI", tc.ci)
			f := &fakeTB{}
			f.run(func(tb testing.TB) { Require(tb, tc.ok, "a frobnicator") })
			if f.skipped != tc.wantSkip || f.failed != tc.wantFail {
				t.Fatalf("skipped=%q failed=%q, want skipped=%q failed=%q", f.skipped, f.failed, tc.wantSkip, tc.wantFail)
			}
		})
	}
}

func TestRequireRootFailsInCIWhenNotRoot(t *testing.T) {
	t.Setenv("TOOLCELL_CI", "1")
	f := &fakeTB{}
	f.run(RequireRoot)
	if root := os.Geteuid() == 0; root != (f.failed == "") {
		t.Fatalf("euid %d: failed=%q", os.Geteuid(), f.failed)
	}
	if f.skipped != "" {
		t.Fatalf("skipped under CI: %q", f.skipped)
	}
}

func TestNotApplicable(t *testing.T) {
	kinds := map[string]string{KindRootlessHybrid: "v1 needs root for this", KindVMv2: " "}
	for _, tc := range []struct{ kind, wantSkip, wantFail string }{
		{kind: ""},
		{kind: KindRootHybrid},
		{kind: KindRootlessHybrid, wantSkip: "not applicable on rootless-hybrid: v1 needs root for this"},
		{kind: KindVMv2, wantFail: `testenv.NotApplicable: no reason given for host kind "vm-v2"`},
	} {
		t.Run("kind="+tc.kind, func(t *testing.T) {
			t.Setenv("TOOLCELL_CI", "1")
			t.Setenv("TOOLCELL_HOST_KIND", tc.kind)
			f := &fakeTB{}
			f.run(func(tb testing.TB) { NotApplicable(tb, kinds) })
			if f.skipped != tc.wantSkip || f.failed != tc.wantFail {
				t.Fatalf("skipped=%q failed=%q, want skipped=%q failed=%q", f.skipped, f.failed, tc.wantSkip, tc.wantFail)
			}
		})
	}
}

// Every kind the harness runs provides user namespaces.
func TestRequireUserNS(t *testing.T) {
	RequireUserNS(t)
	if err := CanUserNS(); err != nil {
		t.Fatal(err)
	}
}

func TestCgroupParentGetters(t *testing.T) {
	for _, c := range V1Controllers {
		t.Setenv("TOOLCELL_CGROUP_PARENT_"+strings.ToUpper(c), "")
	}
	if m := CgroupParentsV1(); len(m) != 0 {
		t.Fatalf("CgroupParentsV1() = %v with empty env", m)
	}
	t.Setenv("TOOLCELL_CGROUP_PARENT_MEMORY", "/a/b")
	t.Setenv("TOOLCELL_CGROUP_PARENT_PIDS", "/c")
	t.Setenv("TOOLCELL_CGROUP_PARENT", "/v2")
	if CgroupParent("memory") != "/a/b" || CgroupParent("pids") != "/c" || CgroupParent("cpu") != "" {
		t.Fatalf("CgroupParent: memory=%q pids=%q cpu=%q", CgroupParent("memory"), CgroupParent("pids"), CgroupParent("cpu"))
	}
	if m := CgroupParentsV1(); len(m) != 2 || m["memory"] != "/a/b" {
		t.Fatalf("CgroupParentsV1() = %v", m)
	}
	if CgroupParentV2() != "/v2" {
		t.Fatalf("CgroupParentV2() = %q", CgroupParentV2())
	}
}

// The rootless stage promises a delegated v1 subtree; check the harness
// kept that promise, so cgroup tests fail here first with a clear message.
func TestHarnessDelegatedCgroups(t *testing.T) {
	NotApplicable(t, map[string]string{
		KindRootHybrid: "root uses its own cgroups; nothing is delegated",
		KindVMv2:       "root in the VM uses the v2 root; nothing is delegated",
	})
	Require(t, HostKind() != "", "a run under scripts/test.sh (TOOLCELL_HOST_KIND set)")
	for _, c := range V1Controllers {
		p := CgroupParent(c)
		if p == "" {
			t.Errorf("TOOLCELL_CGROUP_PARENT_%s is not set", strings.ToUpper(c))
			continue
		}
		procs := filepath.Join("/sys/fs/cgroup", c, p, "cgroup.procs")
		if err := syscall.Access(procs, 2 /* W_OK */); err != nil {
			t.Errorf("%s: not writable by uid %d: %v", procs, os.Geteuid(), err)
		}
	}
}

func TestTempdir(t *testing.T) {
	d := Tempdir(t)
	for _, p := range []string{d, filepath.Dir(d)} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o755 {
			t.Errorf("%s: mode %v, want 0755", p, st.Mode().Perm())
		}
	}
	if err := checkTraversable(d); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(d, "hello")
	if err := os.WriteFile(f, []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		return // the cross-uid check below needs root to switch uid
	}
	cmd := exec.Command("cat", f)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || string(out) != "hi" {
		t.Fatalf("uid 65534 cannot read %s: %v %s", f, err, out)
	}
}

func TestCheckTraversable(t *testing.T) {
	d := t.TempDir()
	closed := filepath.Join(d, "closed")
	if err := os.Mkdir(closed, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	err := checkTraversable(filepath.Join(closed))
	if err == nil || !strings.Contains(err.Error(), "not searchable by other uids") {
		t.Fatalf("checkTraversable(%s) = %v, want a 'not searchable' error", closed, err)
	}
}

func TestTempdirRejectsUnusableTMPDIR(t *testing.T) {
	t.Setenv("TMPDIR", "/nonexistent/toolcell-testenv")
	t.Setenv("TOOLCELL_CI", "1")
	f := &fakeTB{TB: t}
	f.run(func(tb testing.TB) { Tempdir(tb) })
	if !strings.Contains(f.failed, "a writable TMPDIR") {
		t.Fatalf("failed=%q", f.failed)
	}
}

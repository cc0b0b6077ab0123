package testenv

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// Host kinds (values of TOOLCELL_HOST_KIND).
const (
	KindRootHybrid     = "root-hybrid"
	KindRootlessHybrid = "rootless-hybrid"
	KindVMv2           = "vm-v2"
)

// CI reports whether the tests run under scripts/test.sh (TOOLCELL_CI is
// non-empty). Under CI tests must not skip for missing prerequisites.
func CI() bool { return os.Getenv("TOOLCELL_CI") != "" }

// HostKind returns TOOLCELL_HOST_KIND: KindRootHybrid, KindRootlessHybrid,
// KindVMv2, or "" when go test was run by hand.
func HostKind() string { return os.Getenv("TOOLCELL_HOST_KIND") }

// Require stops the test unless ok. what names the prerequisite, e.g.
// "cgroup v2 with the memory controller". By hand the test is skipped; under
// CI it fails, because in CI every prerequisite is supposed to be provided.
func Require(t testing.TB, ok bool, what string) {
	t.Helper()
	if ok {
		return
	}
	if CI() {
		t.Fatalf("required: %s (TOOLCELL_CI is set: tests never skip in CI)", what)
	}
	t.Skipf("requires %s", what)
}

// RequireRoot requires euid 0.
func RequireRoot(t testing.TB) {
	t.Helper()
	Require(t, os.Geteuid() == 0, fmt.Sprintf("root (euid is %d)", os.Geteuid()))
}

var userNS struct {
	once sync.Once
	err  error
}

// CanUserNS reports whether this process may create a user namespace, and
// why not. The probe runs a short-lived child (true(1)) in a new user
// namespace; the test process itself never calls unshare(2), which a
// multi-threaded Go program must not do.
func CanUserNS() error {
	userNS.once.Do(func() { userNS.err = probeUserNS() })
	return userNS.err
}

func probeUserNS() error {
	if _, err := os.Stat("/proc/self/ns/user"); err != nil {
		return fmt.Errorf("kernel without user namespaces: %w", err)
	}
	bin := "/bin/true"
	if _, err := os.Stat(bin); err != nil {
		if bin, err = exec.LookPath("true"); err != nil {
			return fmt.Errorf("no true(1) to run the probe: %w", err)
		}
	}
	cmd := exec.Command(bin)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}},
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		hint := ""
		if b, rerr := os.ReadFile("/proc/sys/user/max_user_namespaces"); rerr == nil && strings.TrimSpace(string(b)) == "0" {
			hint = " (user.max_user_namespaces is 0)"
		}
		if b, rerr := os.ReadFile("/proc/sys/kernel/unprivileged_userns_clone"); rerr == nil && strings.TrimSpace(string(b)) == "0" {
			hint = " (kernel.unprivileged_userns_clone is 0)"
		}
		return fmt.Errorf("creating a user namespace failed: %v%s %s", err, hint, strings.TrimSpace(string(out)))
	}
	return nil
}

// RequireUserNS requires that this process can create a user namespace.
func RequireUserNS(t testing.TB) {
	t.Helper()
	err := CanUserNS()
	what := "user namespaces"
	if err != nil {
		what += ": " + err.Error()
	}
	Require(t, err == nil, what)
}

// NotApplicable skips the test when the current host kind is a key of
// kinds; the value is the reason, written in the test source, e.g.
//
//	testenv.NotApplicable(t, map[string]string{
//		testenv.KindRootlessHybrid: "cgroup v1 does not let uid 65534 set memory.memsw",
//	})
//
// This is the only skip allowed under CI.
func NotApplicable(t testing.TB, kinds map[string]string) {
	t.Helper()
	kind := HostKind()
	if kind == "" {
		return
	}
	if reason, ok := kinds[kind]; ok {
		if strings.TrimSpace(reason) == "" {
			t.Fatalf("testenv.NotApplicable: no reason given for host kind %q", kind)
		}
		t.Skipf("not applicable on %s: %s", kind, reason)
	}
}

// Controllers with a per-controller delegated v1 parent (see CgroupParent).
var V1Controllers = []string{"memory", "pids", "cpu", "cpuacct"}

// CgroupParent returns the cgroup v1 parent that the harness delegated to
// this (unprivileged) test for controller ("memory", "pids", "cpu" or
// "cpuacct"): TOOLCELL_CGROUP_PARENT_<CONTROLLER>, a path relative to the
// hierarchy root such as "/process_api/abc/toolcell-ci-1234". It is "" when
// none was provided (always the case as root and in the VM).
func CgroupParent(controller string) string {
	return os.Getenv("TOOLCELL_CGROUP_PARENT_" + strings.ToUpper(controller))
}

// CgroupParentsV1 returns CgroupParent for every controller that has one.
func CgroupParentsV1() map[string]string {
	m := map[string]string{}
	for _, c := range V1Controllers {
		if p := CgroupParent(c); p != "" {
			m[c] = p
		}
	}
	return m
}

// CgroupParentV2 returns TOOLCELL_CGROUP_PARENT, a delegated cgroup v2
// parent relative to the v2 root, or "".
func CgroupParentV2() string { return os.Getenv("TOOLCELL_CGROUP_PARENT") }

// Tempdir returns a fresh t.TempDir() that other uids can reach: the
// directories t.TempDir created are made 0755, and every ancestor must
// already be searchable by others (/tmp is 1777). Tests that bind-mount the
// directory into a sandbox running as another uid (or run rootless as 65534
// and map uids) need this. It fails clearly when TMPDIR is unusable, e.g. a
// root-owned 0700 directory inherited by a test running as uid 65534.
func Tempdir(t testing.TB) string {
	t.Helper()
	base := filepath.Clean(os.TempDir())
	if err := checkWritableDir(base); err != nil {
		Require(t, false, fmt.Sprintf("a writable TMPDIR for uid %d (%v); set TMPDIR", os.Geteuid(), err))
	}
	d := t.TempDir()
	// t.TempDir makes <base>/<TestName><random>/<NNN>, both 0700.
	for p := d; p != base && p != "/" && p != "."; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatalf("testenv.Tempdir: %v", err)
		}
		if filepath.Dir(p) == filepath.Clean(base) {
			break
		}
	}
	if err := checkTraversable(d); err != nil {
		t.Fatalf("testenv.Tempdir: %v (point TMPDIR at a directory other uids can search, e.g. /tmp)", err)
	}
	return d
}

func checkWritableDir(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	f, err := os.CreateTemp(dir, ".testenv-probe-*")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// checkTraversable verifies that every component of the absolute path p is
// a directory with the search bit for "other" set.
func checkTraversable(p string) error {
	p, err := filepath.Abs(p)
	if err != nil {
		return err
	}
	for cur := p; ; cur = filepath.Dir(cur) {
		st, err := os.Stat(cur)
		if err != nil {
			return err
		}
		if !st.IsDir() {
			return fmt.Errorf("%s is not a directory", cur)
		}
		if st.Mode().Perm()&0o001 == 0 {
			return &fs.PathError{Op: "traverse", Path: cur, Err: errors.New("not searchable by other uids (mode " + st.Mode().Perm().String() + ")")}
		}
		if cur == "/" {
			return nil
		}
	}
}

// BuildC compiles the C program src (a path, relative to the test's package
// directory or absolute) with the host's gcc into a fresh Tempdir and
// returns the binary's path. gcc is a prerequisite (Require).
func BuildC(t testing.TB, src string) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	Require(t, err == nil, "gcc (to build "+src+")")
	abs, err := filepath.Abs(src)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(Tempdir(t), strings.TrimSuffix(filepath.Base(src), ".c"))
	if b, err := exec.Command(gcc, "-O1", "-Wall", "-Werror", "-o", out, abs).CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", src, err, b)
	}
	return out
}

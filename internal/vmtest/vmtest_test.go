package vmtest

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/toolcell/toolcell/internal/testenv"
)

// TestSelfcheckFail fails on purpose when TOOLCELL_VMTEST_SELFCHECK=fail,
// so the harness can prove that a test failing inside the VM fails the run.
func TestSelfcheckFail(t *testing.T) {
	if os.Getenv("TOOLCELL_VMTEST_SELFCHECK") == "fail" {
		t.Fatal("deliberate failure (TOOLCELL_VMTEST_SELFCHECK=fail): this must fail the go test run")
	}
}

var notInVM = map[string]string{
	testenv.KindRootHybrid:     "checks the VM's own setup (pure cgroup v2); this host is hybrid",
	testenv.KindRootlessHybrid: "checks the VM's own setup (pure cgroup v2); this host is hybrid",
}

func inVM(t *testing.T) {
	t.Helper()
	testenv.NotApplicable(t, notInVM)
	testenv.Require(t, testenv.HostKind() != "", "a run through scripts/vm/vmexec with TOOLCELL_HOST_KIND=vm-v2")
}

func TestRoot(t *testing.T) {
	inVM(t)
	if os.Geteuid() != 0 || os.Getuid() != 0 {
		t.Fatalf("uid %d euid %d, want root", os.Getuid(), os.Geteuid())
	}
}

func TestPureCgroupV2(t *testing.T) {
	inVM(t)
	b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, c := range strings.Fields(string(b)) {
		have[c] = true
	}
	for _, c := range []string{"memory", "pids", "cpu"} {
		if !have[c] {
			t.Errorf("controller %s missing from /sys/fs/cgroup/cgroup.controllers (%q)", c, strings.TrimSpace(string(b)))
		}
	}
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "0::/") {
		t.Fatalf("/proc/self/cgroup = %q, want exactly one line \"0::/...\" (pure v2)", lines)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs("/sys/fs/cgroup", &st); err != nil {
		t.Fatal(err)
	}
	const cgroup2Magic = 0x63677270
	if st.Type != cgroup2Magic {
		t.Fatalf("/sys/fs/cgroup has fs type %#x, want cgroup2 (%#x)", st.Type, cgroup2Magic)
	}
}

func TestHostProgramsRun(t *testing.T) {
	inVM(t)
	for _, c := range [][]string{
		{"python3", "--version"},
		{"sh", "-c", "echo ok"},
		{"git", "--version"},
		{"gcc", "--version"},
		{"ls", "/etc/ssl/certs/ca-certificates.crt"},
	} {
		out, err := exec.Command(c[0], c[1:]...).CombinedOutput()
		if err != nil {
			t.Errorf("%q: %v\n%s", c, err, out)
			continue
		}
		t.Logf("%q: %s", c, strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0])
	}
	for _, p := range []string{"/lib64/ld-linux-x86-64.so.2", "/etc/ld.so.cache", "/etc/alternatives", "/bin/sh", "/usr/bin/python3"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

func TestVMBasics(t *testing.T) {
	inVM(t)
	var st syscall.Statfs_t
	if err := syscall.Statfs(os.TempDir(), &st); err != nil {
		t.Fatal(err)
	}
	const tmpfsMagic = 0x01021994
	if st.Type != tmpfsMagic {
		t.Errorf("TMPDIR %s is not tmpfs (type %#x)", os.TempDir(), st.Type)
	}
	// pivot_root(2) fails on the initramfs "rootfs"; init must have switched
	// to an ordinary tmpfs root, or every sandbox setup fails with EINVAL.
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == "/" && strings.Contains(l, " - rootfs ") {
			t.Errorf("/ is the initramfs rootfs (pivot_root would fail): %s", l)
		}
	}
	if err := testenv.CanUserNS(); err != nil {
		t.Errorf("user namespaces: %v", err)
	}
	if !testenv.CI() {
		t.Error("TOOLCELL_CI was not passed into the VM")
	}
	if _, err := os.Stat("go.mod"); err == nil {
		t.Error("cwd is the module root, want the package directory")
	}
	if _, err := os.Stat("doc.go"); err != nil {
		t.Errorf("the package directory is not the cwd inside the VM: %v", err)
	}
}

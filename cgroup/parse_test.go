package cgroup

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestLimitsValidate(t *testing.T) {
	good := Limits{MemoryBytes: 1 << 20, Pids: 1, CPU: 0.5}
	if err := good.validate(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		mut   func(*Limits)
		field string
	}{
		{func(l *Limits) { l.MemoryBytes = 0 }, "MemoryBytes"},
		{func(l *Limits) { l.MemoryBytes = -1 }, "MemoryBytes"},
		{func(l *Limits) { l.Pids = 0 }, "Pids"},
		{func(l *Limits) { l.Pids = -5 }, "Pids"},
		{func(l *Limits) { l.CPU = 0 }, "CPU"},
		{func(l *Limits) { l.CPU = -1 }, "CPU"},
		{func(l *Limits) { l.CPU = math.NaN() }, "CPU"},
		{func(l *Limits) { l.CPU = math.Inf(1) }, "CPU"},
		{func(l *Limits) { l.CPU = 0.001 }, "CPU"},
	}
	for _, c := range cases {
		l := good
		c.mut(&l)
		err := l.validate()
		if err == nil || !strings.Contains(err.Error(), "Limits."+c.field) {
			t.Errorf("%+v: got %v, want error naming %s", l, err, c.field)
		}
		// New must reject before touching the system.
		if _, err := New(Config{}, "x", l); err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("New(%+v): got %v, want error naming %s", l, err, c.field)
		}
	}
}

func TestNewRejectsBadNames(t *testing.T) {
	lim := Limits{MemoryBytes: 1 << 20, Pids: 1, CPU: 1}
	for _, n := range []string{"", ".", "..", "a/b", "cgroup.procs"} {
		if _, err := New(Config{}, n, lim); err == nil {
			t.Errorf("New(%q) succeeded", n)
		}
	}
	if _, err := New(Config{Parent: "relative"}, "x", lim); err == nil {
		t.Error("relative Parent accepted")
	}
}

func TestVersionString(t *testing.T) {
	if V1.String() != "v1" || V2.String() != "v2" {
		t.Fatal(V1.String(), V2.String())
	}
}

func TestParseFlatKeyed(t *testing.T) {
	cpuStat := "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\nnr_periods 10\nnr_throttled 2\nthrottled_usec 5000\nnr_bursts 0\nburst_usec 0\n"
	m, err := parseFlatKeyed(cpuStat)
	if err != nil {
		t.Fatal(err)
	}
	if m["usage_usec"] != 123456 || m["user_usec"] != 100000 || m["system_usec"] != 23456 {
		t.Fatalf("cpu.stat: %v", m)
	}
	events := "low 0\nhigh 0\nmax 17\noom 2\noom_kill 1\noom_group_kill 0\n"
	m, err = parseFlatKeyed(events)
	if err != nil || m["oom_kill"] != 1 || m["max"] != 17 {
		t.Fatalf("memory.events: %v %v", m, err)
	}
	oomControl := "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"
	m, err = parseFlatKeyed(oomControl)
	if err != nil || m["oom_kill"] != 3 {
		t.Fatalf("memory.oom_control: %v %v", m, err)
	}
	if _, err := parseFlatKeyed("garbage line here\n"); err == nil {
		t.Fatal("malformed accepted")
	}
	if v, err := parseUintOrMax("max\n"); err != nil || v != math.MaxUint64 {
		t.Fatal(v, err)
	}
	if v, err := parseUintOrMax("-1"); err != nil || v != math.MaxUint64 {
		t.Fatal(v, err)
	}
	if p, err := parsePids("12\n345\n"); err != nil || !reflect.DeepEqual(p, []int{12, 345}) {
		t.Fatal(p, err)
	}
	if _, err := parsePids("12\nx\n"); err == nil {
		t.Fatal("bad pid accepted")
	}
}

const hybridMountinfo = `22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw
30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:29 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 30 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`

const v2Mountinfo = `25 1 0:22 / /sys rw - sysfs sysfs rw
26 25 0:23 /docker/abc /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
27 1 0:24 / /mnt/with\040space rw - cgroup2 cgroup2 rw
`

func TestParseMountinfo(t *testing.T) {
	ms, err := parseMountinfo(strings.NewReader(hybridMountinfo))
	if err != nil {
		t.Fatal(err)
	}
	l := layoutFrom(ms, procCgroups{})
	if l.V2Mount != "/sys/fs/cgroup/unified" {
		t.Fatalf("v2 mount %q", l.V2Mount)
	}
	for _, c := range []string{"cpu", "cpuacct", "memory", "pids", "name=systemd"} {
		if _, ok := l.V1[c]; !ok {
			t.Errorf("v1 %s missing: %v", c, l.V1)
		}
	}
	if l.V1["memory"].MountPoint != "/sys/fs/cgroup/memory" {
		t.Error(l.V1["memory"])
	}

	ms, err = parseMountinfo(strings.NewReader(v2Mountinfo))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[1].MountPoint != "/mnt/with space" {
		t.Fatalf("%+v", ms)
	}
	l = layoutFrom(ms, procCgroups{Unified: "/docker/abc/sub"})
	if l.V2Mount != "/sys/fs/cgroup" || l.V2Root != "/docker/abc" || len(l.V1) != 0 {
		t.Fatalf("%+v", l)
	}
	own, err := l.ownV2()
	if err != nil || own != "/sub" {
		t.Fatal(own, err)
	}
}

func TestParseProcCgroup(t *testing.T) {
	in := "9:name=systemd:/\n4:memory:/process_api/abc\n2:cpu,cpuacct:/x\n0::/user.slice\n"
	pc, err := parseProcCgroup(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if pc.Unified != "/user.slice" || pc.V1["memory"] != "/process_api/abc" || pc.V1["cpuacct"] != "/x" || pc.V1["name=systemd"] != "/" {
		t.Fatalf("%+v", pc)
	}
}

func TestRelativeToMount(t *testing.T) {
	for _, c := range []struct{ cg, root, want string }{
		{"/a/b", "/", "/a/b"},
		{"/a/b", "/a", "/b"},
		{"/a", "/a", "/"},
	} {
		got, err := relativeToMount(c.cg, c.root)
		if err != nil || got != c.want {
			t.Errorf("relativeToMount(%q,%q)=%q,%v want %q", c.cg, c.root, got, err, c.want)
		}
	}
	if _, err := relativeToMount("/other", "/a"); err == nil {
		t.Error("outside path accepted")
	}
}

func TestKernelRelease(t *testing.T) {
	if !kernelAtLeast("6.18.44-fc-v769", 5, 19) || kernelAtLeast("5.4.0-generic", 5, 14) || !kernelAtLeast("5.14rc1", 5, 14) {
		t.Fatal("kernelAtLeast")
	}
	if kernelAtLeast("garbage", 1, 0) {
		t.Fatal("garbage release")
	}
}

func TestUnsupportedErrorIs(t *testing.T) {
	var err error = &unsupportedError{Missing: []string{"v1:pids"}, Detail: "x"}
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "v1:pids") {
		t.Fatal(err)
	}
}

// fakeCgroup2 builds a directory tree that looks like a cgroup2 mount
// with the given controllers at the root.
func fakeCgroup2(t *testing.T, controllers string) string {
	t.Helper()
	root := t.TempDir()
	write := func(p, s string) {
		if err := os.WriteFile(filepath.Join(root, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("cgroup.controllers", controllers+"\n")
	write("cgroup.subtree_control", "\n")
	return root
}

// TestNewV2Fake exercises the v2 creation path (parent chain, controller
// delegation, limits through the library) on a plain directory tree. The
// kernel semantics (e.g. files appearing in new cgroups) are not emulated,
// so intermediate cgroups get their interface files by hand.
func TestNewV2Fake(t *testing.T) {
	mount := fakeCgroup2(t, "cpuset cpu io memory hugetlb pids")
	// Pre-create the parent as the kernel would populate it.
	parent := filepath.Join(mount, "toolcell")
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(parent, "cgroup.controllers"), []byte("cpu memory pids\n"), 0o644)
	os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte(""), 0o644)

	d := &detected{version: V2, mount: mount, layout: layoutFrom(nil, procCgroups{Unified: "/"})}
	lim := Limits{MemoryBytes: 64 << 20, Pids: 7, CPU: 0.25}
	cg, err := newV2(d, Config{}, "run-1", lim, true)
	if err != nil {
		t.Fatal(err)
	}
	if cg.Path() != "/toolcell/run-1" || cg.Version() != V2 || cg.lim != lim {
		t.Fatalf("path %q version %v limits %+v", cg.Path(), cg.Version(), cg.lim)
	}
	dir := filepath.Join(mount, "toolcell", "run-1")
	for file, want := range map[string]string{
		"memory.max": "67108864",
		"pids.max":   "7",
		"cpu.max":    "25000 100000",
	} {
		// The library creates missing files with mode 0 (cgroupfs files
		// exist with kernel-set modes); make them readable unprivileged.
		os.Chmod(filepath.Join(dir, file), 0o644)
		if got := readTrim(t, dir, file); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	for _, p := range []string{mount, parent} {
		st := readTrim(t, p, "cgroup.subtree_control")
		for _, c := range requiredV2 {
			if !strings.Contains(st, "+"+c) && !strings.Contains(st, c) {
				t.Errorf("%s/cgroup.subtree_control = %q lacks %s", p, st, c)
			}
		}
	}
	if cg.swapLimited {
		t.Error("swap limited although memory.swap.max does not exist")
	}
	// A second run with the same name must fail.
	if _, err := newV2(d, Config{}, "run-1", lim, true); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("duplicate name: %v", err)
	}
}

func TestNewV2FakeMissingController(t *testing.T) {
	mount := fakeCgroup2(t, "cpu memory hugetlb")
	d := &detected{version: V2, mount: mount, layout: layoutFrom(nil, procCgroups{Unified: "/"})}
	_, err := newV2(d, Config{Parent: "/p"}, "run", Limits{MemoryBytes: 1 << 20, Pids: 1, CPU: 1}, true)
	if err == nil || !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "pids") {
		t.Fatalf("got %v", err)
	}
	// The parent chain created by the failed call is gone.
	if _, serr := os.Stat(filepath.Join(mount, "p")); !os.IsNotExist(serr) {
		t.Fatalf("parent left behind: %v", serr)
	}
}

func TestStatsV2Fixture(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "cpu.stat"), []byte("usage_usec 300\nuser_usec 200\nsystem_usec 100\nnr_periods 9\nnr_throttled 5\nthrottled_usec 70\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "memory.peak"), []byte("104857600\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "memory.events"), []byte("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "pids.events"), []byte("max 2\n"), 0o644)
	st, err := statsV2(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.CPUUserUsec != 200 || st.CPUSystemUsec != 100 || st.MemoryPeakBytes != 104857600 || st.OOMKills != 1 || st.PidsPeak != 0 ||
		st.PidsMaxEvents != 2 || st.CPUThrottled != 5 {
		t.Fatalf("%+v", st)
	}
	if len(st.Notes) != 1 || !strings.Contains(st.Notes[0], "pids.peak") {
		t.Fatalf("notes %q", st.Notes)
	}
	os.WriteFile(filepath.Join(dir, "pids.peak"), []byte("9\n"), 0o644)
	os.Remove(filepath.Join(dir, "memory.peak"))
	st, err = statsV2(dir)
	if err != nil || st.PidsPeak != 9 || len(st.Notes) != 1 || !strings.Contains(st.Notes[0], "memory.peak") {
		t.Fatalf("%+v %v", st, err)
	}
}

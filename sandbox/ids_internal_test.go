package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/internal/testenv"
)

func init() {
	// A host process that holds a lease (and, as root, a running sandbox)
	// and is then killed: the test checks that its ids come free.
	if os.Getenv("TOOLCELL_TEST_LEASE_HOLDER") != "1" {
		return
	}
	if d := os.Getenv("TOOLCELL_TEST_LEASE_DIR"); d != "" {
		leaseDir = d
		l, err := leaseIDs(IDRange{UID: 500000, GID: 600000, Count: 1})
		if err != nil {
			fmt.Println(`{"error":` + strconv.Quote(err.Error()) + `}`)
			os.Exit(2)
		}
		fmt.Printf("{\"uid\":%d}\n", l.uid)
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	p, err := Start(context.Background(), capability.New().WithBase(), Command("/bin/sleep", "60"))
	if err != nil {
		fmt.Println(`{"error":` + strconv.Quote(err.Error()) + `}`)
		os.Exit(2)
	}
	var dirs []string
	if p.cg != nil {
		for _, d := range p.cg.Dirs() {
			dirs = append(dirs, d)
		}
	}
	b, _ := json.Marshal(dirs)
	fmt.Printf("{\"uid\":%d,\"pid1\":%d,\"dirs\":%s}\n", p.ids.uid, p.pid1, b)
	time.Sleep(time.Minute)
	os.Exit(0)
}

// withLeaseDir points the leases at a fresh directory for one test.
func withLeaseDir(t *testing.T) string {
	d := filepath.Join(t.TempDir(), "run")
	old := leaseDir
	leaseDir = d
	t.Cleanup(func() { leaseDir = old })
	return d
}

// Ids held are never handed out again; given back, they are.
func TestLeaseNotReusedWhileHeld(t *testing.T) {
	withLeaseDir(t)
	rg := IDRange{UID: 300000, GID: 400000, Count: 3}
	seen := map[int]bool{}
	var held []*idLease
	for i := 0; i < 3; i++ {
		l, err := leaseIDs(rg)
		if err != nil {
			t.Fatal(err)
		}
		if seen[l.uid] || l.uid < 300000 || l.uid > 300002 || l.gid != l.uid+100000 {
			t.Fatalf("lease %d: uid %d gid %d (held: %v)", i, l.uid, l.gid, seen)
		}
		seen[l.uid] = true
		held = append(held, l)
		t.Cleanup(l.release)
	}
	if _, err := leaseIDs(rg); err == nil || !strings.Contains(err.Error(), "all 3 host ids") {
		t.Fatalf("a fourth lease of a range of 3: err %v", err)
	}
	for _, h := range held {
		if h.uid == 300001 {
			h.release()
		}
	}
	l, err := leaseIDs(rg)
	if err != nil || l.uid != 300001 {
		t.Fatalf("after release: %+v %v, want uid 300001", l, err)
	}
	// Released, it is free; held, it is not.
	l.release()
	if held, err := leased(uidByte(300001)); held || err != nil {
		t.Fatalf("uid 300001 after release: held %v %v", held, err)
	}
	if held, err := leased(gidByte(400000)); !held || err != nil {
		t.Fatalf("gid 400000 while leased: held %v %v", held, err)
	}
}

// A lease lives as long as its host process: another process cannot take
// the id while it runs, and can at once when it was killed.
func TestLeaseDiesWithHostProcess(t *testing.T) {
	dir := withLeaseDir(t)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TOOLCELL_TEST_LEASE_DIR", dir)
	cmd, line, err := startHelper(t, "TOOLCELL_TEST_LEASE_HOLDER")
	if err != nil || !strings.Contains(line, `"uid":500000`) {
		t.Fatalf("helper: %q %v", line, err)
	}
	rg := IDRange{UID: 500000, GID: 600000, Count: 1}
	if l, err := leaseIDs(rg); err == nil {
		t.Fatalf("leased uid %d while another process holds it", l.uid)
	}
	cmd.Process.Kill()
	cmd.Wait()
	l, err := leaseIDs(rg)
	if err != nil || l.uid != 500000 {
		t.Fatalf("after the holder was killed: %+v %v", l, err)
	}
	l.release()
}

func TestHostIDRange(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	oldSub, oldAcc := subIDFiles, accountDBs
	t.Cleanup(func() { subIDFiles, accountDBs = oldSub, oldAcc })
	accountDBs = [2]string{write("passwd", "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"), write("group", "root:x:0:\n")}
	set := func(uid, gid string) {
		subIDFiles = [2]string{write("subuid", uid), write("subgid", gid)}
		rangeCache.key = "" // files rewritten within one clock tick may look unchanged
	}
	cases := []struct {
		name     string
		r        Runner
		uid, gid string
		want     IDRange
		err      string
	}{
		{"entry", Runner{}, "alice:100000:65536\ntoolcell:200000:1000\n", "toolcell:300000:2000\n", IDRange{200000, 300000, 1000}, ""},
		{"other user", Runner{HostIDsUser: "alice"}, "alice:100000:65536\n", "alice:100000:500\n", IDRange{100000, 100000, 500}, ""},
		{"no entry: default", Runner{}, "alice:100000:65536\n", "alice:100000:65536\n", DefaultHostIDs, ""},
		{"empty files: default", Runner{}, "", "", DefaultHostIDs, ""},
		{"default overlaps a range", Runner{}, "bob:1879000000:100000\n", "", IDRange{}, "overlaps bob's range"},
		{"only one file names the user", Runner{}, "toolcell:200000:1000\n", "", IDRange{}, "only one of"},
		{"entry holds nobody", Runner{}, "toolcell:60000:10000\n", "toolcell:60000:10000\n", IDRange{}, "65534"},
		{"malformed", Runner{}, "toolcell:x:1\n", "", IDRange{}, "line 1"},
		{"explicit", Runner{HostIDs: IDRange{700000, 800000, 5}}, "toolcell:x:1\n", "", IDRange{700000, 800000, 5}, ""},
		{"explicit root", Runner{HostIDs: IDRange{0, 800000, 5}}, "", "", IDRange{}, "Runner.HostIDs"},
		{"explicit no count", Runner{HostIDs: IDRange{700000, 800000, 0}}, "", "", IDRange{}, "count 0"},
	}
	for _, c := range cases {
		set(c.uid, c.gid)
		got, _, err := c.r.hostIDRange()
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: %+v %v, want error %q", c.name, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: %+v %v, want %+v", c.name, got, err, c.want)
		}
	}
	// A database replaced (as shadow's tools do: a new file renamed over
	// it) is read again.
	set("toolcell:200000:1000\n", "toolcell:300000:1000\n")
	if got, _, err := (&Runner{}).hostIDRange(); err != nil || got.UID != 200000 {
		t.Fatalf("before replacing: %+v %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "new"), []byte("toolcell:210000:1000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "new"), subIDFiles[0]); err != nil {
		t.Fatal(err)
	}
	if got, _, err := (&Runner{}).hostIDRange(); err != nil || got.UID != 210000 {
		t.Errorf("after replacing /etc/subuid: %+v %v, want uid 210000", got, err)
	}
	// The default range is refused when an account lives in it.
	set("", "")
	accountDBs[0] = write("passwd2", "svc:x:1879048200:100::/:/bin/false\n")
	rangeCache.key = ""
	if _, _, err := (&Runner{}).hostIDRange(); err == nil || !strings.Contains(err.Error(), `"svc"`) {
		t.Errorf("account in the default range: %v", err)
	}
	// Without any subordinate-id database, the default.
	subIDFiles = [2]string{filepath.Join(dir, "none1"), filepath.Join(dir, "none2")}
	rangeCache.key = ""
	accountDBs = oldAcc
	accountDBs[0] = filepath.Join(dir, "none3")
	accountDBs[1] = filepath.Join(dir, "none4")
	if got, from, err := (&Runner{}).hostIDRange(); err != nil || got != DefaultHostIDs || from != "default" {
		t.Errorf("no database: %+v %s %v", got, from, err)
	}
}

// A run's ids come free when the run ends, and when its host process is
// killed while the run is going on (once the sandbox is gone).
func TestRunLeaseReleased(t *testing.T) {
	rootOnly(t)
	res, err := Run(context.Background(), capability.New().WithBase(), Command("/bin/true"))
	if err != nil {
		t.Fatal(err)
	}
	// The lease goes once the run's namespaces were released, which the
	// supervisor does right after the run, off its path (teardown).
	uid := hostUID(t, res.Audit)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		held, err := leased(uidByte(uid))
		if err != nil {
			t.Fatal(err)
		}
		if !held {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("uid %d still leased 5s after its run", uid)
		}
	}

	cmd, line, err := startHelper(t, "TOOLCELL_TEST_LEASE_HOLDER")
	var out struct {
		UID, Pid1 int
		Error     string
		Dirs      []string
	}
	if err != nil || json.Unmarshal([]byte(line), &out) != nil || out.Error != "" || out.UID == 0 {
		t.Fatalf("helper: %q %v", line, err)
	}
	// Nobody is left to remove the killed host process's run cgroup.
	t.Cleanup(func() {
		for _, d := range out.Dirs {
			for i := 0; i < 100; i++ {
				if err := unix.Rmdir(d); err == nil || err == unix.ENOENT {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	if held, err := leased(uidByte(out.UID)); !held || err != nil {
		t.Fatalf("uid %d of a running sandbox is not leased: %v", out.UID, err)
	}
	pidfd, err := unix.PidfdOpen(out.Pid1, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	// The sandbox dies with its host process (PDEATHSIG), then the id is
	// free.
	pfd := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	if n, err := unix.Poll(pfd, 10000); n != 1 || err != nil {
		t.Fatalf("pid 1 survived its host process: %d %v", n, err)
	}
	if held, err := leased(uidByte(out.UID)); held || err != nil {
		t.Fatalf("uid %d still leased after its host process was killed: %v %v", out.UID, held, err)
	}
}

// rootOnly: the per-run host ids exist only when the host process is root.
func rootOnly(t *testing.T) {
	t.Helper()
	testenv.NotApplicable(t, map[string]string{
		testenv.KindRootlessHybrid: "an unprivileged host process maps the sandbox to its own uid (it may map no other): its runs share that uid's counts by design",
	})
	testenv.RequireRoot(t)
	testenv.RequireUserNS(t)
}

// holdScript runs a python3 snippet that takes some per-uid resource, writes
// "<count> <errno>" to the file held, and keeps it until the file go exists.
func holdScript(take string) string {
	return `python3 -c '
import ctypes, errno, fcntl, os, time
n, err, keep = 0, 0, []
` + take + `
open("held.tmp", "w").write("%d %d" % (n, err))
os.rename("held.tmp", "held")
for i in range(3000):
    if os.path.exists("go"):
        break
    time.sleep(0.01)
'`
}

// A tool that takes as many inotify instances as it can.
const takeInotify = `libc = ctypes.CDLL(None, use_errno=True)
while n < 1000:
    fd = libc.inotify_init1(0)
    if fd < 0:
        err = ctypes.get_errno()
        break
    n += 1`

// A tool that resizes pipes to 1 MiB until the kernel refuses.
const takePipes = `while n < 200:
    r, w = os.pipe()
    keep.append((r, w))
    try:
        fcntl.fcntl(w, 1031, 1 << 20)
    except OSError as e:
        err = e.errno
        break
    n += 1`

// startHolding starts a run of script in a fresh workdir and waits until
// it reports what it holds; the returned func lets it go and waits.
func startHolding(t *testing.T, take string) (*Process, [2]int, func() *Result) {
	t.Helper()
	wd := testenv.Tempdir(t)
	if err := os.Chmod(wd, 0o777); err != nil {
		t.Fatal(err)
	}
	set := capability.New().WithBase().WithWorkdir(wd).WithTimeout(60 * time.Second)
	p, err := Start(context.Background(), set, Command("/bin/sh", "-c", holdScript(take)))
	if err != nil {
		t.Fatal(err)
	}
	done := false
	release := func() *Result {
		if done {
			return nil
		}
		done = true
		os.WriteFile(filepath.Join(wd, "go"), nil, 0o644)
		res, err := p.Wait()
		if err != nil {
			t.Errorf("holding run: %v", err)
		}
		return res
	}
	t.Cleanup(func() { release() })
	for i := 0; ; i++ {
		b, err := os.ReadFile(filepath.Join(wd, "held"))
		if err == nil {
			var got [2]int
			if _, err := fmt.Sscanf(string(b), "%d %d", &got[0], &got[1]); err != nil {
				t.Fatalf("held: %q", b)
			}
			return p, got, release
		}
		if i == 3000 {
			res := release()
			t.Fatalf("the holding run reported nothing in 30s: %+v", res)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func runScript(t *testing.T, script string) *Result {
	t.Helper()
	res, err := Run(context.Background(), capability.New().WithBase(), Command("/bin/sh", "-c", script))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// hostUID is the host uid a run's record maps the sandbox user to.
func hostUID(t *testing.T, rec *audit.Record) int {
	t.Helper()
	f := strings.Fields(rec.Enforcement.UIDMap)
	if len(f) != 3 {
		t.Fatalf("uid_map %q", rec.Enforcement.UIDMap)
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// A run's inotify instances are charged to its own uid: while one run holds
// all it may, host root and a concurrent run still create theirs. (Charged
// to root, the owner of the sandbox's user namespace, they made host root's
// inotify_init1 fail with EMFILE.)
func TestInotifyNotChargedToHostRoot(t *testing.T) {
	rootOnly(t)
	p, held, release := startHolding(t, takeInotify)
	limit := p.rec.Enforcement.UserLimits["max_inotify_instances"]
	if int64(held[0]) != limit || held[1] != int(unix.EMFILE) {
		t.Errorf("the tool got %d inotify instances (then errno %d), want the sandbox's limit %d, then EMFILE", held[0], held[1], limit)
	}
	for i := 0; i < 8; i++ {
		fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
		if err != nil {
			t.Fatalf("host root's inotify_init1 #%d while a run holds %d instances: %v", i, held[0], err)
		}
		defer unix.Close(fd)
	}
	res := runScript(t, `python3 -c '
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
print(libc.inotify_init1(0) >= 0, ctypes.get_errno())'; cat /proc/sys/user/max_inotify_instances /proc/sys/user/max_user_namespaces`)
	if want := fmt.Sprintf("True 0\n%d\n0\n", limit); string(res.Stdout) != want {
		t.Errorf("concurrent run: stdout %q stderr %q, want %q", res.Stdout, res.Stderr, want)
	}
	if a, b := hostUID(t, p.rec), hostUID(t, res.Audit); a == b {
		t.Errorf("concurrent runs share host uid %d", a)
	}
	release()
}

// Pipe buffers are accounted per uid (fs.pipe-user-pages-soft): a run that
// resizes pipes until the kernel refuses leaves the pipes of a concurrent
// run, and of host uid 65534 (nobody), alone.
func TestPipePagesPerRun(t *testing.T) {
	rootOnly(t)
	python, err := os.Stat("/usr/bin/python3")
	testenv.Require(t, err == nil && python.Mode()&0o001 != 0, "/usr/bin/python3 (run as uid 65534)")
	_, held, release := startHolding(t, takePipes)
	if held[1] != int(unix.EPERM) || held[0] == 0 {
		t.Fatalf("the tool resized %d pipes, then errno %d: want some, then EPERM", held[0], held[1])
	}
	resize := `python3 -c '
import fcntl, os
r, w = os.pipe()
try:
    print(fcntl.fcntl(w, 1031, 1 << 20))
except OSError as e:
    print("errno", e.errno)'`
	res := runScript(t, resize)
	if string(res.Stdout) != "1048576\n" {
		t.Errorf("concurrent run's F_SETPIPE_SZ: %q %q", res.Stdout, res.Stderr)
	}
	cmd := exec.Command("/usr/bin/python3", "-c", `
import fcntl, os
r, w = os.pipe()
try:
    print(fcntl.fcntl(w, 1031, 1 << 20))
except OSError as e:
    print("errno", e.errno)`)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || string(out) != "1048576\n" {
		t.Errorf("host uid 65534's F_SETPIPE_SZ while a run holds its pipes: %q %v", out, err)
	}
	release()
}

// Two concurrent runs have different host uids, and a process of one's uid
// can signal (or trace) nothing of the other.
func TestConcurrentRunsCannotSignalEachOther(t *testing.T) {
	rootOnly(t)
	_, err := os.Stat("/usr/bin/python3")
	testenv.Require(t, err == nil, "/usr/bin/python3")
	a, _, releaseA := startHolding(t, "")
	b, _, releaseB := startHolding(t, "")
	ua, ub := hostUID(t, a.rec), hostUID(t, b.rec)
	if ua == ub || ua == 65534 || ub == 65534 {
		t.Fatalf("host uids %d and %d: want two of their own", ua, ub)
	}
	ga, _ := strconv.Atoi(strings.Fields(a.rec.Enforcement.GIDMap)[1])
	// The tool of b: pid 1's child.
	kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", b.pid1, b.pid1))
	if err != nil || len(strings.Fields(string(kids))) == 0 {
		t.Fatalf("children of b's pid 1: %q %v", kids, err)
	}
	toolB := strings.Fields(string(kids))[0]
	probe := func(pid string) string {
		cmd := exec.Command("/usr/bin/python3", "-c", `
import ctypes, os, sys
pid = int(sys.argv[1])
try:
    os.kill(pid, 0); k = "kill ok"
except OSError as e:
    k = "kill errno %d" % e.errno
libc = ctypes.CDLL(None, use_errno=True)
r = libc.ptrace(16, pid, None, None)
print(k, "ptrace", "ok" if r == 0 else "errno %d" % ctypes.get_errno())`, pid)
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(ua), Gid: uint32(ga)}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("probe as uid %d: %v %s", ua, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	// The probe's uid may signal its own run's pid 1 (the check can pass)...
	if got := probe(strconv.Itoa(a.pid1)); !strings.HasPrefix(got, "kill ok") {
		t.Errorf("uid %d signalling its own run's pid 1: %s", ua, got)
	}
	// ...and neither signal nor trace the other run.
	for _, pid := range []string{strconv.Itoa(b.pid1), toolB} {
		if got := probe(pid); got != "kill errno 1 ptrace errno 1" {
			t.Errorf("uid %d (run a) against pid %s of run b (uid %d): %s, want EPERM for both", ua, pid, ub, got)
		}
	}
	releaseA()
	releaseB()
}

// BenchmarkHostIDLease is what per-run host ids add to a run's setup as
// root: finding the range (reading the id databases) and the lease.
func BenchmarkHostIDLease(b *testing.B) {
	d := filepath.Join(b.TempDir(), "run")
	old := leaseDir
	leaseDir = d
	b.Cleanup(func() { leaseDir = old })
	r := &Runner{}
	for i := 0; i < b.N; i++ {
		rg, _, err := r.hostIDRange()
		if err != nil {
			b.Fatal(err)
		}
		l, err := leaseIDs(rg)
		if err != nil {
			b.Fatal(err)
		}
		l.release()
	}
}

func BenchmarkHostIDRangeOnly(b *testing.B) {
	r := &Runner{}
	for i := 0; i < b.N; i++ {
		if _, _, err := r.hostIDRange(); err != nil {
			b.Fatal(err)
		}
	}
}

// The policy's inotify limit is the sandbox's own (max_inotify_instances of
// its user namespace), below the host's for the uid: the tool gets exactly
// that many, and the record says so.
func TestInotifyLimitFromPolicy(t *testing.T) {
	testenv.RequireUserNS(t)
	set := capability.New().WithBase().WithInotifyInstances(20).WithInotifyWatches(100)
	res, err := Run(context.Background(), set, Command("/bin/sh", "-c", `python3 -c '
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
n = 0
while n < 1000:
    if libc.inotify_init1(0) < 0:
        break
    n += 1
print(n, ctypes.get_errno())'; cat /proc/sys/user/max_inotify_watches`))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("20 %d\n100\n", unix.EMFILE); string(res.Stdout) != want {
		t.Errorf("stdout %q stderr %q, want %q", res.Stdout, res.Stderr, want)
	}
	if l := res.Audit.Enforcement.UserLimits; l["max_inotify_instances"] != 20 || l["max_inotify_watches"] != 100 || l["max_user_namespaces"] != 0 || len(l) != 3 {
		t.Errorf("record user_limits %v", l)
	}
}

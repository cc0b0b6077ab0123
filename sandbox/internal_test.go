package sandbox

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/cgroup"
	"github.com/toolcell/toolcell/internal/testenv"
	"github.com/toolcell/toolcell/seccomp"
)

// helperSupervisor is the test binary run as a supervisor that starts a
// sandbox and then hangs until TestSandboxDiesWithItsSupervisor kills it.
func init() {
	if os.Getenv("TOOLCELL_TEST_SUPERVISOR") != "1" {
		return
	}
	p, err := Start(context.Background(), capability.New().WithBase(), Command("/bin/sleep", "60"))
	if err == nil {
		// A second run's end makes the fork server fork a spare.
		_, err = Run(context.Background(), capability.New().WithBase(), Command("/bin/true"))
	}
	if err != nil {
		fmt.Println(`{"error":` + strconv.Quote(err.Error()) + `}`)
		os.Exit(2)
	}
	out := struct {
		Pid1   int      `json:"pid1"`
		Stage2 int      `json:"stage2"`
		Server int      `json:"server"`
		Dirs   []string `json:"dirs"`
		Forked bool     `json:"forked"`
	}{Pid1: p.pid1, Stage2: p.stage2.pid, Server: theForkServer.proc.Pid, Forked: p.cgClone}
	if p.cg != nil {
		for _, d := range p.cg.Dirs() {
			out.Dirs = append(out.Dirs, d)
		}
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
	select {}
}

// If the supervisor dies (it crashed, or was killed), pid 1 must die too and
// take the sandbox with it, even though pid 1 changed its credentials (which
// clears the parent-death signal unless it is re-armed); so must the fork
// server and the spare stage-2 it holds.
func TestSandboxDiesWithItsSupervisor(t *testing.T) {
	testenv.RequireUserNS(t)
	cmd, line, err := startHelper(t, "TOOLCELL_TEST_SUPERVISOR")
	var got struct {
		Pid1   int      `json:"pid1"`
		Stage2 int      `json:"stage2"`
		Server int      `json:"server"`
		Dirs   []string `json:"dirs"`
		Forked bool     `json:"forked"` // v2: the stage-2 forked itself into the cgroup
		Error  string   `json:"error"`
	}
	if err != nil || json.Unmarshal([]byte(line), &got) != nil || got.Pid1 <= 0 {
		t.Fatalf("helper said %q (%v)", line, err)
	}
	// The pidfd is pid 1's if, once it is open, the process it names is
	// the helper's stage-2's child (which reaps only pid 1).
	pidfd, err := unix.PidfdOpen(got.Pid1, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
		unix.Close(pidfd)
		for _, d := range got.Dirs {
			for i := 0; i < 100; i++ {
				if err := unix.Rmdir(d); err == nil || err == unix.ENOENT {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	if !underStage2(got.Pid1, got.Stage2, got.Forked) {
		t.Fatalf("pid 1 is not the stage-2's child (or its fork's, on cgroup v2: %v)", got.Forked)
	}
	if !parentIs(mustRead(t, got.Stage2), got.Server) {
		t.Fatal("the stage-2 is not the fork server's child")
	}
	// The server's children: the running stage-2 and the spare it forked
	// once the second run ended.
	others := []int{spareOf(t, got.Server)}
	var watch []int
	for _, pid := range []int{got.Server, others[0]} {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		watch = append(watch, fd)
	}
	cmd.Process.Kill()
	cmd.Wait()
	for i, fd := range watch {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(fds, 10000); err != nil || n != 1 {
			t.Fatalf("%s survived its supervisor for 10s (poll %d, %v)", []string{"the fork server", "the spare stage-2"}[i], n, err)
		}
	}
	// The pidfd becomes readable when pid 1 exits.
	deadline := time.Now().Add(10 * time.Second)
	for {
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(time.Until(deadline).Milliseconds()))
		if err == unix.EINTR && time.Now().Before(deadline) {
			continue
		}
		if err != nil || n != 1 {
			t.Fatalf("pid 1 survived its supervisor for 10s (poll %d, %v)", n, err)
		}
		break
	}
}

// startHelper runs the test binary as a helper process (the init function
// that env selects) and returns it with the first line it printed; the
// helper is killed when the test ends.
func startHelper(t *testing.T, env string) (*exec.Cmd, string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env+"=1")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	return cmd, line, err
}

func mustRead(t *testing.T, pid int) []byte {
	b, err := readProc(pid, "stat")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The Go list of namespaces matches the stage-2's, and the evidence claims
// a namespace only when the kernel confirms a descriptor's type and that it
// differs from the supervisor's own.
func TestNamespaceEvidence(t *testing.T) {
	if len(sandboxNamespaces) != nsCount {
		t.Fatalf("%d namespaces in Go, %d in stage2.h", len(sandboxNamespaces), nsCount)
	}
	open := func(path string) int {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		return fd
	}
	var own []int
	for _, ns := range sandboxNamespaces {
		own = append(own, open("/proc/self/ns/"+ns.name))
	}
	p := &Process{rec: &audit.Record{}}
	p.namespaceEvidence(own)
	if len(p.rec.Enforcement.Namespaces) != 0 || len(p.rec.Enforcement.Notes) != 0 {
		t.Fatalf("own namespaces claimed: %v %v", p.rec.Enforcement.Namespaces, p.rec.Enforcement.Notes)
	}
	// A descriptor of the wrong type (here: swapped user and mnt, and a
	// plain file) is a note, not a claim.
	bad := append([]int(nil), own...)
	bad[0], bad[1] = own[1], own[0]
	bad[2] = open("/dev/null")
	p = &Process{rec: &audit.Record{}}
	p.namespaceEvidence(bad)
	if len(p.rec.Enforcement.Namespaces) != 0 || len(p.rec.Enforcement.Notes) != 3 {
		t.Fatalf("wrong descriptors: namespaces %v notes %v", p.rec.Enforcement.Namespaces, p.rec.Enforcement.Notes)
	}
	p = &Process{rec: &audit.Record{}}
	p.namespaceEvidence(own[:3])
	if len(p.rec.Enforcement.Notes) != 1 || len(p.rec.Enforcement.Namespaces) != 0 {
		t.Fatalf("short list: %v %v", p.rec.Enforcement.Namespaces, p.rec.Enforcement.Notes)
	}
}

// If the supervisor stops answering (it died: its listener is closed), a
// tool waiting on a denied call is not stuck: the kernel answers ENOSYS,
// then and for every later denied call, and the run ends normally.
func TestListenerClosedAnswersENOSYS(t *testing.T) {
	testenv.RequireUserNS(t)
	bin := testenv.BuildC(t, "../testdata/probe/probe.c")
	seen := 0
	testHookNotif = func(n seccomp.Notif) bool {
		seen++
		return seen < 3 // answer two, then close the listener unanswered
	}
	t.Cleanup(func() { testHookNotif = nil })
	res, err := Run(context.Background(), capability.New().WithBase().WithExec(bin), Command(bin, "until-not"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(res.Stdout)); got != "after 2 EPERM: ENOSYS" || res.Exit.Reason != audit.ReasonExited {
		t.Fatalf("stdout %q reason %s, want %q", got, res.Exit.Reason, "after 2 EPERM: ENOSYS")
	}
	if len(res.Audit.Denials) != 1 || res.Audit.Denials[0].Count != 2 {
		t.Fatalf("denials %+v, want acct twice", res.Audit.Denials)
	}
}

// Without seccomp user notification the run fails closed, naming it,
// unless the caller allowed exactly that degradation; then denied calls get
// EPERM from the filter itself and the record says denials are unknown.
func TestNoUserNotifFailsClosed(t *testing.T) {
	testenv.RequireUserNS(t)
	haveUserNotif = func() error { return fmt.Errorf("%w: SECCOMP_RET_USER_NOTIF (test)", seccomp.ErrNotSupported) }
	t.Cleanup(func() { haveUserNotif = seccomp.HaveUserNotif })
	set := capability.New().WithBase()
	script := Command("/bin/sh", "-c", "mount -t tmpfs none /tmp 2>/dev/null; echo rc=$?")

	_, err := Run(context.Background(), set, script)
	var re *RunError
	if !errors.Is(err, ErrUnsupported) || !errors.As(err, &re) || !strings.Contains(err.Error(), "seccomp user notification") {
		t.Fatalf("err = %v, want ErrUnsupported naming seccomp user notification", err)
	}
	if re.Record.Exit.Reason != audit.ReasonSetupFailed {
		t.Fatalf("record exit %+v", re.Record.Exit)
	}

	r := &Runner{AllowNoSyscallAudit: true}
	res, err := r.Run(context.Background(), set, script)
	if err != nil {
		t.Fatal(err)
	}
	rec := res.Audit
	if strings.TrimSpace(string(res.Stdout)) == "rc=0" || len(rec.Denials) != 0 ||
		rec.Enforcement.Seccomp.DeniedAction != string(seccomp.ActionErrnoEPERM) ||
		len(rec.Enforcement.Degraded) != 1 || !strings.HasPrefix(rec.Enforcement.Degraded[0], "seccomp_user_notif:") {
		t.Fatalf("stdout %q denials %v seccomp %+v degraded %q", res.Stdout, rec.Denials, rec.Enforcement.Seccomp, rec.Enforcement.Degraded)
	}
}

// SelfTest holds on every host kind CI runs on.
func TestSelfTest(t *testing.T) {
	testenv.RequireUserNS(t)
	ps, err := SelfTest(context.Background())
	for _, p := range ps {
		t.Logf("%-28s ok=%v skipped=%v %s", p.Name, p.OK, p.Skipped, p.Detail)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 18 {
		t.Fatalf("%d protections checked, want 18", len(ps))
	}
	for _, p := range ps {
		if p.Skipped {
			t.Errorf("%s skipped: %s", p.Name, p.Detail)
		}
	}
}

func TestSelfTestJudgeEgress(t *testing.T) {
	rec := &audit.Record{Enforcement: audit.Enforcement{Egress: &audit.EgressInfo{}},
		Network: []audit.NetEvent{{Kind: "dns", Name: "leak." + selfTestName, Reason: "not granted"}}}
	good := "127.77.0.2      " + selfTestName + "\n"
	if p := judgeEgress(good, rec); !p.OK {
		t.Fatalf("good run judged broken: %+v", p)
	}
	for what, c := range map[string]struct {
		out string
		rec *audit.Record
	}{
		"leak resolved":    {good + "203.0.113.1 leak." + selfTestName + "\nleak-resolved\n", rec},
		"granted missing":  {"", rec},
		"refusal missing":  {good, &audit.Record{Enforcement: rec.Enforcement}},
		"no egress record": {good, &audit.Record{Network: rec.Network}},
	} {
		if p := judgeEgress(c.out, c.rec); p.OK {
			t.Errorf("%s: judged OK: %+v", what, p)
		}
	}
}

// A broken protection is an error naming it, not a warning.
func TestSelfTestJudges(t *testing.T) {
	good := "Uid:\t1000\t1000\t1000\t1000\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n" +
		"CapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\npids 4\npid1 toolcell-stage2 \n" +
		"ifaces lo\nenv PATH PWD\nsync 0\nmount / ro,nosuid,nodev,relatime\nmount /usr ro,nosuid,nodev,relatime\n" +
		"memfd_noexec 2\n" +
		"landlock ls: cannot open directory '/': Permission denied\n"
	two := 2
	rec := &audit.Record{Enforcement: audit.Enforcement{UIDMap: "1000 65534 1", NoNewPrivs: true,
		Namespaces: []string{"user", "mnt", "net", "pid", "ipc", "uts", "cgroup"}, MemfdNoexec: &two, Landlock: &audit.LandlockInfo{Applied: 7}},
		Denials: []audit.Denial{{Syscall: "sync", Answer: "EPERM", Count: 1}}}
	if err := selfTestErr(judgeInside(good, rec)); err != nil {
		t.Fatalf("good host judged bad: %v", err)
	}
	for name, broken := range map[string]string{
		"no capabilities":           strings.Replace(good, "CapEff:\t0000000000000000", "CapEff:\t0000000000200000", 1),
		"no_new_privs":              strings.Replace(good, "NoNewPrivs:\t1", "NoNewPrivs:\t0", 1),
		"seccomp filter":            strings.Replace(good, "Seccomp:\t2", "Seccomp:\t0", 1),
		"host processes hidden":     strings.Replace(good, "pids 4", "pids 212", 1),
		"no network":                strings.Replace(good, "ifaces lo", "ifaces lo eth0", 1),
		"only granted paths":        good + "canary-visible\n",
		"only granted paths ":       good + "shadow-visible\n",
		"read-only system view":     strings.Replace(good, "mount /usr ro,nosuid", "mount /usr rw,nosuid", 1),
		"read-only system view ":    strings.Replace(good, "mount / ro,", "mount / rw,", 1),
		"read-only system view  ":   strings.Replace(good, "mount /usr ro,nosuid,", "mount /usr ro,", 1),
		"read-only system view   ":  strings.Replace(good, "mount /usr ro,nosuid,nodev,relatime\n", "", 1),
		"host environment withheld": strings.Replace(good, "env PATH PWD", "env AWS_SECRET_ACCESS_KEY PATH", 1),
		"host processes hidden ":    strings.Replace(good, "pid1 toolcell-stage2", "pid1 /sbin/init", 1),
		"unprivileged mapped user":  strings.Replace(good, "Uid:\t1000", "Uid:\t0", 1),
		"no executable memfds":      strings.Replace(good, "memfd_noexec 2", "memfd_noexec 0", 1),
		"landlock":                  strings.Replace(good, "landlock ls: cannot open directory '/': Permission denied", "landlock ", 1),
	} {
		err := selfTestErr(judgeInside(broken, rec))
		if !errors.Is(err, ErrSelfTest) || !strings.Contains(err.Error(), strings.TrimSpace(name)) {
			t.Errorf("broken %q: err %v", name, err)
		}
	}
	for name, broken := range map[string]*audit.Record{
		"seven namespaces":         {Enforcement: audit.Enforcement{UIDMap: rec.Enforcement.UIDMap, NoNewPrivs: true, Namespaces: rec.Enforcement.Namespaces[:6]}, Denials: rec.Denials},
		"denied syscalls recorded": {Enforcement: rec.Enforcement},
		"no executable memfds":     {Enforcement: audit.Enforcement{UIDMap: rec.Enforcement.UIDMap, NoNewPrivs: true, Namespaces: rec.Enforcement.Namespaces}, Denials: rec.Denials},
	} {
		err := selfTestErr(judgeInside(good, broken))
		if !errors.Is(err, ErrSelfTest) || !strings.Contains(err.Error(), name) {
			t.Errorf("broken %q: err %v", name, err)
		}
	}
	// Where the sysctl cannot be set, the filter's condition holds instead.
	fallback := *rec
	fallback.Enforcement.MemfdNoexec, fallback.Enforcement.Seccomp.MemfdCreate = nil, memfdCreateCondition
	if err := selfTestErr(judgeInside(strings.Replace(good, "memfd_noexec 2", "memfd_noexec none", 1), &fallback)); err != nil {
		t.Errorf("seccomp fallback judged bad: %v", err)
	}
	// Without Landlock (allowed by the Runner) its check is skipped.
	noLL := *rec
	noLL.Enforcement.Landlock = nil
	for _, p := range judgeInside(good, &noLL) {
		if p.Name == "landlock" && (!p.Skipped || p.OK) {
			t.Errorf("no Landlock: %+v", p)
		}
	}
	// Without sync(1) the denial check is skipped, and says so.
	ps := judgeInside(strings.Replace(good, "sync 0\n", "", 1), rec)
	for _, p := range ps {
		if p.Name == "denied syscalls recorded" && (!p.Skipped || p.OK) {
			t.Errorf("no sync(1): %+v", p)
		}
	}
	rootMap := *rec
	rootMap.Enforcement.UIDMap = "1000 0 1"
	if err := selfTestErr(judgeInside(good, &rootMap)); !errors.Is(err, ErrSelfTest) {
		t.Errorf("uid map to host root accepted")
	}
	if p := judgeMemory(&audit.Record{Exit: audit.Exit{Reason: audit.ReasonExited}}, 32<<20); p.OK {
		t.Errorf("memory limit held without an OOM kill")
	}
	if p := judgeMemory(&audit.Record{Resources: audit.Resources{OOMKills: 1, MemoryPeakBytes: 64 << 20}}, 32<<20); p.OK {
		t.Errorf("memory peak over the limit accepted")
	}
	if p := judgePids(&audit.Record{Exit: audit.Exit{Reason: audit.ReasonExited}, Resources: audit.Resources{PidsPeak: 17}}, 8); p.OK {
		t.Errorf("pids peak over the limit accepted")
	}
	if p := judgeTimeout(&audit.Record{Exit: audit.Exit{Reason: audit.ReasonExited}}, 0); p.OK {
		t.Errorf("timeout held without a timeout")
	}
	if p := judgeTimeout(&audit.Record{Exit: audit.Exit{Reason: audit.ReasonTimeout}}, 1); p.OK {
		t.Errorf("timeout held with a process left")
	}
}

// A grant's source swapped after Go resolved and opened it, before the
// stage-2 mounts it: for another directory (the device/inode comparison
// refuses it) or for a symlink to a host secret (the stage-2's
// RESOLVE_NO_SYMLINKS open refuses it). Nothing is mounted either way.
func TestGrantSwapRefused(t *testing.T) {
	testenv.RequireUserNS(t)
	for _, c := range []struct {
		swap string
		late bool
	}{{"directory", false}, {"symlink", false}, {"symlink", true}} {
		swap, late := c.swap, c.late
		t.Run(fmt.Sprintf("%s/exec-after-exit=%v", swap, late), func(t *testing.T) {
			root := testenv.Tempdir(t)
			secret := filepath.Join(root, "secret")
			data := filepath.Join(root, "data")
			for _, d := range []string{secret, data} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			os.WriteFile(filepath.Join(secret, "key"), []byte("canary\n"), 0o644)
			testHookBeforeStage2 = func() {
				if err := os.Rename(data, data+".old"); err != nil {
					t.Error(err)
				}
				var err error
				if swap == "directory" {
					err = os.Mkdir(data, 0o755)
				} else {
					err = os.Symlink(secret, data)
				}
				if err != nil {
					t.Error(err)
				}
			}
			t.Cleanup(func() { testHookBeforeStage2 = nil })
			if late {
				// The stage-2 fails and exits before the EXEC message
				// is sent: its own report must still be the error.
				testHookAfterPlan = func(p *Process) {
					for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
						p.ctlMu.Lock()
						closed := p.ctlClosed
						p.ctlMu.Unlock()
						if closed {
							return
						}
					}
					t.Error("the stage-2 did not end after the swapped grant")
				}
				t.Cleanup(func() { testHookAfterPlan = nil })
			}
			res, err := Run(context.Background(), capability.New().WithBase().WithReadDirs(data), Command("/bin/cat", data+"/key"))
			if err == nil {
				t.Fatalf("swapped grant ran: stdout %q", res.Stdout)
			}
			// A symlink is never followed: the open either refuses it or
			// returns the link itself, which then is not the grant.
			var se *SetupError
			want := map[string]string{"directory": "bind_verify", "symlink": "bind_open bind_verify"}[swap]
			if !errors.As(err, &se) || !strings.Contains(want, se.Step) || se.Detail != data {
				t.Fatalf("err %v, want setup step %s for %s", err, want, data)
			}
		})
	}
}

// The record's mount modes come from the kernel's mount table, not the
// plan: a planned read-only mount that the kernel holds read-write is
// recorded read-write, and a planned mount that is not there is "missing".
func TestMountsFromKernel(t *testing.T) {
	mi := `22 1 0:40 / / ro,nosuid,nodev - tmpfs tmpfs ro
23 22 8:1 /usr /usr rw,nosuid,nodev - ext4 /dev/sda1 rw
28 22 8:1 /home/me /home/me rw,nosuid,nodev,idmapped - ext4 /dev/sda1 rw
24 22 0:41 / /my\040dir ro,nosuid,nodev,noexec - tmpfs tmpfs ro
25 22 0:42 / /proc rw,nosuid,nodev,noexec - proc proc rw
26 25 0:42 /sys /proc/sys rw,nosuid,nodev,noexec - proc proc rw
27 26 0:42 /sys /proc/sys ro,nosuid,nodev,noexec - proc proc rw
`
	mounts := []audit.MountInfo{
		{Dst: "/usr", Src: "/usr", Mode: "ro,nosuid,nodev"},
		{Dst: "/my dir", Src: "/host/my dir", Mode: "ro,nosuid,nodev,noexec"},
		{Dst: "/proc/sys", Src: "mask", Mode: "ro,nosuid,nodev,noexec"},
		{Dst: "/etc/passwd", Src: "generated", Mode: "ro"},
		{Dst: "/workdir", Src: "/host/workdir", Mode: "rw,nosuid,nodev,noexec"},
		{Dst: "/proc/toolcell-no-such-entry", Src: "mask", Mode: "rw"},
	}
	notes, idmapped := mountsFromKernel(mounts, mi)
	if !idmapped["/home/me"] || idmapped["/usr"] || len(idmapped) != 6 {
		t.Errorf("idmapped %v: want /home/me only", idmapped)
	}
	want := []string{"rw,nosuid,nodev", "ro,nosuid,nodev,noexec", "ro,nosuid,nodev,noexec", "ro,nosuid,nodev", "missing", "absent"}
	for i, w := range want {
		if mounts[i].Mode != w {
			t.Errorf("%s: mode %q, want %q", mounts[i].Dst, mounts[i].Mode, w)
		}
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "/workdir") {
		t.Errorf("notes %q", notes)
	}
}

// A tool killed for its output while the supervisor still reads its
// evidence ends as output_limit, not as a setup failure.
func TestOutputLimitDuringEvidence(t *testing.T) {
	testenv.RequireUserNS(t)
	set := capability.New().WithBase().WithMaxOutput(4 << 10)
	// Slow evidence reading: the tool passes its cap meanwhile.
	testHookEvidence = func() { time.Sleep(300 * time.Millisecond) }
	t.Cleanup(func() { testHookEvidence = nil })
	for i := 0; i < 2; i++ {
		res, err := Run(context.Background(), set, Command("/bin/sh", "-c", "yes xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"))
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		if res.Exit.Reason != audit.ReasonOutputLimit {
			t.Fatalf("run %d: reason %s", i, res.Exit.Reason)
		}
	}
}

// A grant that was a directory when the policy was validated and became a
// symlink to a host directory afterwards (a tool in another sandbox with
// W writable swapped W/proj) is refused in every window before the mount:
// while the view is built (the grant's own check, naming it), between
// that and the Go open (openat2 refuses the link), and between the Go open
// and the stage-2's (the stage-2 refuses it). The canary is never read.
func TestSymlinkSwapAfterValidateRefused(t *testing.T) {
	testenv.RequireUserNS(t)
	type window struct {
		name string
		hook *func()
	}
	for _, w := range []window{{"before_view", &testHookBeforeView}, {"before_open", &testHookBeforeOpen}, {"before_stage2", &testHookBeforeStage2}} {
		for _, kind := range []string{"workdir", "read_dirs", "write_dirs", "read_files", "write_files", "exec", "nested"} {
			t.Run(w.name+"/"+kind, func(t *testing.T) {
				root := testenv.Tempdir(t)
				canary := filepath.Join(root, "canary")
				w1 := filepath.Join(root, "w")
				for _, d := range []string{filepath.Join(canary, "b"), filepath.Join(w1, "proj", "b")} {
					if err := os.MkdirAll(d, 0o755); err != nil {
						t.Fatal(err)
					}
				}
				for _, d := range []string{canary, filepath.Join(w1, "proj")} {
					os.WriteFile(filepath.Join(d, "secret"), []byte("canary secret\n"), 0o755)
					os.WriteFile(filepath.Join(d, "b", "secret"), []byte("canary secret\n"), 0o644)
				}
				os.WriteFile(filepath.Join(w1, "proj", "secret"), []byte("decoy\n"), 0o755)
				os.WriteFile(filepath.Join(w1, "proj", "b", "secret"), []byte("decoy\n"), 0o644)
				proj := filepath.Join(w1, "proj")
				set := capability.New().WithBase()
				field, path := "", proj
				switch kind {
				case "workdir":
					set.WithWorkdir(proj)
					field = "workdir"
				case "read_dirs":
					set.WithReadDirs(filepath.Join(canary, "b"), proj)
					field = "read_dirs[1]"
				case "write_dirs":
					set.WithWriteDirs(proj)
					field = "write_dirs[0]"
				case "read_files":
					path = filepath.Join(proj, "secret")
					set.WithReadFiles(path)
					field = "read_files[0]"
				case "write_files":
					path = filepath.Join(proj, "secret")
					set.WithWriteFiles(path)
					field = "write_files[0]"
				case "exec":
					path = filepath.Join(proj, "secret")
					set.WithExec(path)
					field = "exec[0]"
				case "nested":
					path = filepath.Join(proj, "b")
					set.WithReadDirs(path)
					field = "read_dirs[0]"
				}
				*w.hook = func() {
					if err := os.Rename(proj, proj+".old"); err != nil {
						t.Error(err)
					}
					if err := os.Symlink(canary, proj); err != nil {
						t.Error(err)
					}
				}
				t.Cleanup(func() { *w.hook = nil })
				cmd := Command("/bin/sh", "-c", "cat "+filepath.Join(proj, "secret")+" "+filepath.Join(proj, "b", "secret")+" "+filepath.Join(canary, "secret"))
				res, err := Run(context.Background(), set, cmd)
				if err == nil {
					t.Fatalf("swapped grant ran: stdout %q", res.Stdout)
				}
				if res != nil && strings.Contains(string(res.Stdout), "canary") {
					t.Fatalf("canary read: %q", res.Stdout)
				}
				var fe *capability.FieldError
				var se *SetupError
				switch w.name {
				case "before_view":
					// The grant's own check names it, the link and its target.
					if !errors.Is(err, ErrPolicy) || !errors.As(err, &fe) || fe.Field != field || fe.Value != path ||
						!strings.Contains(fe.Reason, "symbolic link "+proj+" -> "+canary) {
						t.Fatalf("err %v, want %s %q refused for the link %s -> %s", err, field, path, proj, canary)
					}
				case "before_open":
					// A link in a component fails the open (ELOOP); one
					// in the last is opened as itself (O_NOFOLLOW), a type
					// that is not the grant's.
					if !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), field+": open "+path+": too many levels of symbolic links") &&
						!(path == proj && strings.Contains(err.Error(), field+": "+path+" changed type")) {
						t.Fatalf("err %v, want the open of %s refused for %s", err, path, field)
					}
				case "before_stage2":
					if !errors.As(err, &se) || !strings.Contains("bind_open bind_verify", se.Step) || se.Detail != path {
						t.Fatalf("err %v, want setup step bind_open or bind_verify for %s", err, path)
					}
				}
			})
		}
	}
}

// Where pid 1 cannot set vm.memfd_noexec (rootless, a read-only /proc/sys,
// a kernel before 6.3), the filter refuses every memfd that is not sealed
// non-executable, each attempt is recorded, and the record names the
// mechanism. The probe forced to fail takes that path on any host.
func TestMemfdNoexecSeccompFallback(t *testing.T) {
	testenv.RequireUserNS(t)
	bin := testenv.BuildC(t, "../testdata/escape/attack.c")
	orig := memfdSysctlProbe
	memfdSysctlProbe = func() error { return unix.EACCES }
	t.Cleanup(func() { memfdSysctlProbe = orig })
	var host *int
	if b, err := os.ReadFile(memfdNoexecPath); err == nil {
		v, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		host = &v
	}
	set := capability.New().WithBase().WithExec(bin)
	for _, c := range []struct{ attack, flags string }{
		{"memfd_exec", "flags=0x0"}, {"memfd_exec_flag", "flags=MFD_EXEC"}, {"memfd_exec_procfd", "flags=0x0"},
		{"memfd_exec_sealed", ""},
	} {
		res, err := Run(context.Background(), set, Command(bin, c.attack))
		if err != nil {
			t.Fatal(err)
		}
		rec := res.Audit
		out := string(res.Stdout)
		var denied *audit.Denial
		for i, d := range rec.Denials {
			if d.Syscall == "memfd_create" {
				denied = &rec.Denials[i]
			}
		}
		switch {
		case c.flags == "": // allowed by the filter, sealed by the kernel
			if !strings.Contains(out, "RESULT EACCES") && !(host == nil && strings.Contains(out, "RESULT EINVAL")) || denied != nil {
				t.Errorf("%s: stdout %q denial %+v, want EACCES and no denial", c.attack, out, denied)
			}
		case !strings.Contains(out, "RESULT EPERM") || denied == nil || denied.Detail != `name="payload" `+c.flags:
			t.Errorf("%s: stdout %q denial %+v, want EPERM and a memfd_create denial with %s", c.attack, out, denied, c.flags)
		}
		if rec.Enforcement.Seccomp.MemfdCreate != memfdCreateCondition {
			t.Errorf("%s: record seccomp.memfd_create %q", c.attack, rec.Enforcement.Seccomp.MemfdCreate)
		}
		// Not set by pid 1: the value the sandbox inherited from the host.
		if (host == nil) != (rec.Enforcement.MemfdNoexec == nil) || host != nil && *host != *rec.Enforcement.MemfdNoexec {
			t.Errorf("%s: record memfd_noexec %v, host has %v", c.attack, rec.Enforcement.MemfdNoexec, host)
		}
	}
}

// A vm.memfd_noexec (from STARTED or READY) that is not 2 after pid 1 set
// it fails the run; a short one is a protocol error; -1 (no such knob) is
// no claim.
func TestMemfdEvidence(t *testing.T) {
	started := func(v int32) []byte {
		return binary.NativeEndian.AppendUint32(nil, uint32(v))
	}
	for _, c := range []struct {
		body    []byte
		planned bool
		ok      bool
		want    string
	}{
		{started(2), true, true, "2"},
		{started(1), true, false, "1"},
		{started(0), false, true, "0"},
		{started(-1), false, true, "<nil>"},
		{started(-1), true, false, "<nil>"},
		{started(2)[:2], false, false, "<nil>"},
	} {
		p := &Process{rec: &audit.Record{}}
		err := p.memfdEvidence(c.body, c.planned)
		got := "<nil>"
		if p.rec.Enforcement.MemfdNoexec != nil {
			got = strconv.Itoa(*p.rec.Enforcement.MemfdNoexec)
		}
		if (err == nil) != c.ok || got != c.want || err != nil && !errors.Is(err, ErrSetup) {
			t.Errorf("body %x planned %v: err %v, memfd_noexec %s; want ok %v, %s", c.body, c.planned, err, got, c.ok, c.want)
		}
	}
}

// A cgroup that cannot be made is an error (or, when allowed, a named
// degradation) that says "cgroup:" once.
func TestCgroupErrorNamedOnce(t *testing.T) {
	testenv.RequireUserNS(t)
	r := &Runner{Cgroup: cgroup.Config{Mountpoint: "/proc/toolcell-no-cgroup2-here"}}
	_, err := r.Run(context.Background(), capability.New().WithBase(), Command("true"))
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "cgroup: ") || strings.Contains(err.Error(), "cgroup: cgroup:") {
		t.Fatalf("err %v, want ErrUnsupported naming the cgroup once", err)
	}
	r.AllowNoCgroup = true
	res, err := r.Run(context.Background(), capability.New().WithBase(), Command("true"))
	if err != nil {
		t.Fatal(err)
	}
	d := strings.Join(res.Audit.Enforcement.Degraded, "; ")
	if !strings.HasPrefix(d, "cgroup: no limits") || strings.Count(d, "cgroup:") != 1 {
		t.Fatalf("degraded %q", d)
	}
}

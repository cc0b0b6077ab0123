package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/internal/testenv"
)

// serverPid returns the running fork server's pid, starting one if needed.
func serverPid(t *testing.T) int {
	t.Helper()
	res, err := Run(context.Background(), capability.New().WithBase(), Command("/bin/true"))
	if err != nil || res.Exit.Code != 0 {
		t.Fatalf("run: %v %+v", err, res)
	}
	theForkServer.mu.Lock()
	defer theForkServer.mu.Unlock()
	if theForkServer.proc == nil {
		t.Fatal("no fork server after a run")
	}
	return theForkServer.proc.Pid
}

// procStatus returns the fields of /proc/<pid>/status.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// waitGone waits until pid no longer exists (not even as a zombie).
func waitGone(t *testing.T, pid int, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			t.Fatalf("%s (pid %d) still exists after 10s: %s", what, pid, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A stage-2 handed out by the fork server holds nothing but /dev/null on
// 0-2 and its control socket on 3, runs with no blocked, ignored or caught
// signal, is the server's child, and is reaped by the server once it ends.
func TestForkServerSpareHoldsNothing(t *testing.T) {
	testenv.RequireUserNS(t)
	server := serverPid(t)
	s, ctl, err := theForkServer.take()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ctl)
	// Look once it waits for its plan, its first read of the control
	// socket (it may still be closing what the fork gave it before).
	deadline := time.Now().Add(10 * time.Second)
	for !waitingForPlan(s.pid) {
		if time.Now().After(deadline) {
			t.Fatalf("stage-2 %d not waiting for its plan after 10s", s.pid)
		}
		time.Sleep(time.Millisecond)
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.pid))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		dst, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", s.pid, e.Name()))
		got = append(got, e.Name()+"->"+dst)
	}
	if len(got) != 4 || got[0] != "0->/dev/null" || got[1] != "1->/dev/null" || got[2] != "2->/dev/null" ||
		!strings.HasPrefix(got[3], "3->socket:") {
		t.Errorf("stage-2 descriptors: %v, want /dev/null on 0-2 and the control socket on 3", got)
	}
	st := procStatus(t, s.pid)
	for _, k := range []string{"SigBlk", "SigIgn", "SigCgt"} {
		if v, err := strconv.ParseUint(st[k], 16, 64); err != nil || v != 0 {
			t.Errorf("stage-2 %s = %q, want none", k, st[k])
		}
	}
	if st["PPid"] != strconv.Itoa(server) {
		t.Errorf("stage-2 parent %s, want the fork server %d", st["PPid"], server)
	}
	s.kill()
	s.release()
	waitGone(t, s.pid, "a killed stage-2")
}

// The server keeps no more than the one spare: every stage-2 it handed out
// is reaped, and it leaves no zombie behind.
func TestForkServerReapsEverything(t *testing.T) {
	testenv.RequireUserNS(t)
	server := serverPid(t)
	for i := 0; i < 10; i++ {
		serverPid(t)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		kids := childrenOf(t, server)
		if len(kids) <= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fork server %d has %d children after 10 runs: %v", server, len(kids), kids)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitingForPlan reports whether pid is blocked reading fd 3, as a spare
// stage-2 waiting for its plan is.
func waitingForPlan(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", pid))
	f := strings.Fields(string(b))
	return err == nil && len(f) > 1 && f[0] == strconv.Itoa(unix.SYS_RECVMSG) && f[1] == "0x3"
}

// spareOf returns the spare stage-2 the server holds.
func spareOf(t *testing.T, server int) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, k := range childrenOf(t, server) {
			if pid, _ := strconv.Atoi(strings.Split(k, ":")[0]); waitingForPlan(pid) {
				return pid
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("fork server %d holds no spare after 10s: %v", server, childrenOf(t, server))
		}
		time.Sleep(time.Millisecond)
	}
}

// childrenOf lists the pids and states of pid's children.
func childrenOf(t *testing.T, pid int) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			kids = append(kids, e.Name()+":"+f[0])
		}
	}
	return kids
}

// A fork server that died between runs is replaced; one that dies during a
// run ends that run (its stage-2 dies with it, and the sandbox with the
// stage-2), and the next run gets a new server.
func TestForkServerRestarts(t *testing.T) {
	testenv.RequireUserNS(t)
	old := serverPid(t)
	unix.Kill(old, unix.SIGKILL)
	waitGone(t, old, "the killed fork server")
	if now := serverPid(t); now == old {
		t.Fatalf("fork server %d still in use after it was killed", now)
	}

	p, err := Start(context.Background(), capability.New().WithBase(), Command("/bin/sleep", "60"))
	if err != nil {
		t.Fatal(err)
	}
	theForkServer.mu.Lock()
	server := theForkServer.proc.Pid
	theForkServer.mu.Unlock()
	start := time.Now()
	unix.Kill(server, unix.SIGKILL)
	res, _ := p.Wait()
	if res == nil || res.Exit.Reason == audit.ReasonExited || time.Since(start) > 10*time.Second {
		t.Fatalf("a run outlived its fork server: %+v after %v", res, time.Since(start))
	}
	if now := serverPid(t); now == server {
		t.Fatalf("fork server %d still in use after it was killed", now)
	}
}

// The server runs with the effective ids it was started with: when those
// of the host process differ, the next run starts a new one.
func TestForkServerFollowsCredentials(t *testing.T) {
	testenv.RequireUserNS(t)
	old := serverPid(t)
	theForkServer.mu.Lock()
	theForkServer.creds = "" // as if the host process's credentials had changed
	theForkServer.mu.Unlock()
	if now := serverPid(t); now == old {
		t.Fatal("fork server kept after the host's effective uid changed")
	}
	waitGone(t, old, "the replaced fork server")
}

// Replacing the server (here: the host's credentials changed) leaves the
// runs in flight alone: the old server ends its spare, stays until its
// stage-2s have ended, then exits.
func TestForkServerReplacedRunsGoOn(t *testing.T) {
	testenv.RequireUserNS(t)
	old := serverPid(t)
	p, err := Start(context.Background(), capability.New().WithBase(), Command("/bin/sh", "-c", "sleep 1; echo done"))
	if err != nil {
		t.Fatal(err)
	}
	theForkServer.mu.Lock()
	theForkServer.creds = ""
	theForkServer.mu.Unlock()
	if now := serverPid(t); now == old {
		t.Fatal("fork server not replaced")
	}
	res, err := p.Wait()
	if err != nil || res.Exit.Reason != audit.ReasonExited || res.Exit.Code != 0 || string(res.Stdout) != "done\n" {
		t.Fatalf("a run in flight did not survive its fork server's replacement: %v %+v %q", err, res, res.Stdout)
	}
	waitGone(t, old, "the replaced fork server")
}

// A spare that died before it was handed out is not handed out.
func TestForkServerDeadSpare(t *testing.T) {
	testenv.RequireUserNS(t)
	server := serverPid(t)
	spare := spareOf(t, server)
	unix.Kill(spare, unix.SIGKILL)
	waitGone(t, spare, "the killed spare")
	if now := serverPid(t); now != server {
		t.Fatalf("fork server replaced (%d -> %d) instead of forking a new spare", server, now)
	}
}

// Signals the host process ignores (SIGPIPE here; nohup does SIGHUP) are
// ignored in its children across execve: not in the sandbox.
func TestHostIgnoredSignalsNotInherited(t *testing.T) {
	testenv.RequireUserNS(t)
	signal.Ignore(unix.SIGPIPE, unix.SIGHUP)
	t.Cleanup(func() { signal.Reset(unix.SIGPIPE, unix.SIGHUP) })
	// 33 is libc's own (SIGSETXID), which libc's sigaction refuses to
	// touch: ignored here with the raw call, restored after.
	ignored, old := kernelSigaction{handler: 1 /* SIG_IGN */}, kernelSigaction{}
	if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, 33, uintptr(unsafe.Pointer(&ignored)), uintptr(unsafe.Pointer(&old)), 8, 0, 0); e != 0 {
		t.Fatal(e)
	}
	t.Cleanup(func() { unix.RawSyscall6(unix.SYS_RT_SIGACTION, 33, uintptr(unsafe.Pointer(&old)), 0, 8, 0, 0) })
	theForkServer.mu.Lock()
	theForkServer.creds = "" // a server started now inherits the ignored signals
	theForkServer.mu.Unlock()
	// cat installs no handler of its own.
	res, err := Run(context.Background(), capability.New().WithBase(), Command("/usr/bin/cat", "/proc/self/status"))
	if err != nil || res.Exit.Code != 0 {
		t.Fatalf("%v %+v", err, res)
	}
	var got []string
	for _, l := range strings.Split(string(res.Stdout), "\n") {
		if strings.HasPrefix(l, "Sig") && !strings.HasPrefix(l, "SigQ") {
			got = append(got, l)
		}
	}
	if want := []string{"SigPnd:\t0000000000000000", "SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000", "SigCgt:\t0000000000000000"}; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("the tool's signals: %q, want none pending, blocked, ignored or caught", got)
	}
}

// helperDyingSpares is the test binary run as a host whose own seccomp
// filter refuses PR_SET_PDEATHSIG, which every stage-2 needs: each spare
// dies before it is handed out. It prints the fork server's pid after one
// run and waits.
func init() {
	if os.Getenv("TOOLCELL_TEST_DYING_SPARES") != "1" {
		return
	}
	// nr == prctl && arg0 == PR_SET_PDEATHSIG -> EPERM, else allow.
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 3, K: unix.SYS_PRCTL},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 16},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.PR_SET_PDEATHSIG},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Println("no_new_privs:", err)
		os.Exit(2)
	}
	if _, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog))); e != 0 {
		fmt.Println("seccomp:", e)
		os.Exit(2)
	}
	_, err := Run(context.Background(), capability.New().WithBase(), Command("/bin/true"))
	if err == nil {
		fmt.Println("a run succeeded without PR_SET_PDEATHSIG")
		os.Exit(2)
	}
	fmt.Println(theForkServer.proc.Pid)
	select {}
}

// A spare that keeps dying (here: the host's own seccomp filter refuses
// what every stage-2 does first) does not keep the fork server forking: it
// is replaced on the next request only.
func TestForkServerDyingSparesNoStorm(t *testing.T) {
	testenv.RequireUserNS(t)
	_, line, err := startHelper(t, "TOOLCELL_TEST_DYING_SPARES")
	server, _ := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || server <= 0 {
		t.Fatalf("helper said %q (%v)", line, err)
	}
	switches := func() int {
		n, _ := strconv.Atoi(procStatus(t, server)["voluntary_ctxt_switches"])
		return n
	}
	time.Sleep(200 * time.Millisecond)
	before := switches()
	time.Sleep(time.Second)
	if d := switches() - before; d > 5 {
		t.Fatalf("idle fork server woke %d times in 1s: forking spares that die", d)
	}
}

// kernelSigaction is the kernel's struct sigaction on amd64 and arm64.
type kernelSigaction struct {
	handler, flags, restorer uintptr
	mask                     uint64
}

// The view's sources travel in the PLAN message, TC_FD_CHUNK descriptors
// per packet: a view with more sources than one packet takes still works,
// and one with more than the stage-2 accepts is a policy error naming the
// count, before anything started.
func TestManyBindSources(t *testing.T) {
	testenv.RequireUserNS(t)
	dir := testenv.Tempdir(t) // the stage-2 opens grants as the run's uid
	set := capability.New().WithBase()
	n := fdChunk + 50
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, fmt.Sprintf("f%03d", i))
		if err := os.WriteFile(p, []byte(strconv.Itoa(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		set = set.WithReadFiles(p)
	}
	res, err := Run(context.Background(), set, Command("/bin/sh", "-c", "cat "+filepath.Join(dir, "f000")+" "+filepath.Join(dir, fmt.Sprintf("f%03d", n-1))))
	if err != nil {
		t.Fatalf("%d bind sources: %v", n, err)
	}
	if res.Exit.Code != 0 || string(res.Stdout) != "0"+strconv.Itoa(n-1) {
		t.Fatalf("%d bind sources: exit %d, %q %q", n, res.Exit.Code, res.Stdout, res.Stderr)
	}

	for i := n; i < maxPlanFDs; i++ {
		p := filepath.Join(dir, fmt.Sprintf("f%04d", i))
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		set = set.WithReadFiles(p)
	}
	_, err = Run(context.Background(), set, Command("/bin/true"))
	if !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), "binds") {
		t.Fatalf("a view of %d sources: %v, want a policy error naming the count", maxPlanFDs, err)
	}
}

package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/internal/testenv"
)

// A Runner with OneShot runs the tool as any other, from a stage-2 exec'd
// for the run: this process's child, not the fork server's.
func TestOneShotRun(t *testing.T) {
	testenv.RequireUserNS(t)
	var parent int
	testHookAfterPlan = func(p *Process) { parent = procPPid(t, p.stage2.pid) }
	t.Cleanup(func() { testHookAfterPlan = nil })
	r := &Runner{OneShot: true}
	res, err := r.Run(context.Background(), capability.New().WithBase(), Command("/bin/sh", "-c", "echo hi; exit 3"))
	if err != nil || res.Exit.Code != 3 || string(res.Stdout) != "hi\n" {
		t.Fatalf("%v %+v", err, res)
	}
	if parent != os.Getpid() {
		t.Fatalf("the stage-2's parent is %d, want this process (%d)", parent, os.Getpid())
	}
	// Killed from outside (the timeout) as a stage-2 of the server's is.
	res, err = r.Run(context.Background(), capability.New().WithBase().WithTimeout(200*time.Millisecond), Command("/bin/sleep", "30"))
	if err != nil || res.Audit.Exit.Reason != audit.ReasonTimeout {
		t.Fatalf("timeout: %v %+v", err, res)
	}
}

// A stage-2 exec'd directly holds /dev/null on 0-2 and its control socket
// on 3, nothing else; no signal the host ignores or blocks; it runs from
// the sealed copy of the binary, which cannot be opened for writing
// through its /proc/<pid>/exe (CVE-2019-5736); it exits when its control
// socket closes and this process reaps it.
func TestOneShotStage2(t *testing.T) {
	testenv.RequireUserNS(t)
	signal.Ignore(unix.SIGPIPE, unix.SIGHUP)
	t.Cleanup(func() { signal.Reset(unix.SIGPIPE, unix.SIGHUP) })
	s, ctl, err := execStage2()
	if err != nil {
		t.Fatal(err)
	}
	defer s.release()
	defer func() {
		if ctl >= 0 {
			unix.Close(ctl)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	var st map[string]string
	for {
		st = procStatus(t, s.pid)
		if st["Name"] == "toolcell-stage2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stage-2 did not start: %v", st)
		}
		time.Sleep(time.Millisecond)
	}
	for _, k := range []string{"SigBlk", "SigIgn", "SigCgt"} {
		if st[k] != "0000000000000000" {
			t.Errorf("%s: %s, want none", k, st[k])
		}
	}
	if st["PPid"] != fmt.Sprint(os.Getpid()) {
		t.Errorf("PPid %s, want %d", st["PPid"], os.Getpid())
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.pid))
	if err != nil {
		t.Fatal(err)
	}
	var fds []string
	for _, e := range ents {
		l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", s.pid, e.Name()))
		if strings.HasPrefix(l, "socket:") {
			l = "socket"
		}
		fds = append(fds, e.Name()+"="+l)
	}
	if got, want := strings.Join(fds, " "), "0=/dev/null 1=/dev/null 2=/dev/null 3=socket"; got != want {
		t.Errorf("descriptors %q, want %q", got, want)
	}
	exe := fmt.Sprintf("/proc/%d/exe", s.pid)
	var sealed, host unix.Stat_t
	if err := unix.Stat(exe, &sealed); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat("/proc/self/exe", &host); err != nil {
		t.Fatal(err)
	}
	if sealed.Dev == host.Dev && sealed.Ino == host.Ino {
		t.Errorf("the stage-2 runs the host binary itself (%s), not a sealed copy", exe)
	}
	if f, err := os.OpenFile(exe, os.O_WRONLY, 0); err == nil {
		f.Close()
		t.Errorf("%s opened for writing", exe)
	} else if t.Logf("open %s for writing: %v", exe, err); !errors.Is(err, unix.ETXTBSY) && !errors.Is(err, unix.EROFS) && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EACCES) {
		t.Errorf("open %s for writing: %v", exe, err)
	}
	unix.Close(ctl)
	ctl = -1
	s.release()
	waitGone(t, s.pid, "the stage-2")
}

func procPPid(t *testing.T, pid int) int {
	var ppid int
	fmt.Sscan(procStatus(t, pid)["PPid"], &ppid)
	return ppid
}

// A stage-2 Prepare started is the next run's; one no run took ends on
// cancel.
func TestOneShotPrepare(t *testing.T) {
	testenv.RequireUserNS(t)
	r := &Runner{OneShot: true}
	cancel := r.Prepare()
	v, ok := prepared.Load(r)
	if !ok {
		t.Fatal("nothing prepared")
	}
	res := <-v.(*preparedStage2).ch
	v.(*preparedStage2).ch <- res // as if not yet looked at
	if res.err != nil {
		t.Fatal(res.err)
	}
	var used int
	testHookAfterPlan = func(p *Process) { used = p.stage2.pid }
	t.Cleanup(func() { testHookAfterPlan = nil })
	out, err := r.Run(context.Background(), capability.New().WithBase(), Command("/bin/true"))
	if err != nil || out.Exit.Code != 0 {
		t.Fatalf("%v %+v", err, out)
	}
	if used != res.s.pid {
		t.Fatalf("the run used stage-2 %d, not the prepared %d", used, res.s.pid)
	}
	cancel() // nothing left to end
	if _, ok := prepared.Load(r); ok {
		t.Fatal("still prepared after the run")
	}

	cancel = r.Prepare()
	v, _ = prepared.Load(r)
	res = <-v.(*preparedStage2).ch
	v.(*preparedStage2).ch <- res
	if res.err != nil {
		t.Fatal(res.err)
	}
	cancel()
	waitGone(t, res.s.pid, "the prepared stage-2 after cancel")
	if _, ok := prepared.Load(r); ok {
		t.Fatal("still prepared after cancel")
	}
}

package sandbox

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// newStage2 gets a run's stage-2: from the fork server, or, for a Runner
// with OneShot, exec'd for this run alone (or by Prepare before it).
func (r *Runner) newStage2() (*stage2Proc, int, error) {
	if r.OneShot {
		if v, ok := prepared.LoadAndDelete(r); ok {
			pr := v.(*preparedStage2)
			res := <-pr.ch
			if res.err == nil && pr.creds == hostCreds() {
				return res.s, res.ctl, nil
			}
			if res.err == nil {
				// The host's credentials changed since: the
				// stage-2 would run with the old ones.
				unix.Close(res.ctl) // it reads EOF and exits
				res.s.kill()
				go res.s.release()
			}
		}
		return execStage2()
	}
	return theForkServer.take()
}

// prepared holds, per Runner, the stage-2 Prepare started.
var prepared sync.Map // *Runner -> *preparedStage2

type preparedStage2 struct {
	creds string // hostCreds when it was started
	ch    chan spareResult
}

// Prepare starts in the background what the next run of r needs and what
// holds nothing of any run, so that it overlaps with the caller's own work
// (parsing flags, building the capability set): the sealed copy of the
// binary and, with OneShot, the next run's stage-2, which waits for its
// plan. For a process that runs one sandbox: the CLI calls it first thing.
// Calling it again before a run has no effect. cancel ends a prepared
// stage-2 that no run took (after a run it does nothing); a stage-2
// prepared and never used also dies with this process.
func (r *Runner) Prepare() (cancel func()) {
	if !r.OneShot {
		go sealedSelf()
		return func() {}
	}
	pr := &preparedStage2{creds: hostCreds(), ch: make(chan spareResult, 1)}
	if _, loaded := prepared.LoadOrStore(r, pr); loaded {
		return func() {}
	}
	go func() {
		s, ctl, err := execStage2()
		pr.ch <- spareResult{s, ctl, err}
	}()
	return func() {
		if !prepared.CompareAndDelete(r, pr) {
			return // a run took it
		}
		if res := <-pr.ch; res.err == nil {
			unix.Close(res.ctl)
			res.s.kill()
			res.s.release()
		}
	}
}

// execStage2 execs the sealed binary as one run's stage-2 (stage2.c,
// direct_stage2): /dev/null on 0-2, its control socket on 3, no server in
// between. This process is its parent and reaps it; it holds a pidfd as
// for a stage-2 from the server. The same sealed binary as the server's is
// exec'd, so /proc/<pid>/exe of the stage-2 and of pid 1 (its clone) names
// the sealed copy, never the host binary (see selfexe.go).
func execStage2() (*stage2Proc, int, error) {
	exe, err := sealedSelf()
	if err != nil {
		return nil, -1, err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, -1, fmt.Errorf("%w: stage-2: socketpair: %w", ErrSetup, err)
	}
	defer unix.Close(fds[1])
	null, err := os.Open(os.DevNull)
	if err != nil {
		unix.Close(fds[0])
		return nil, -1, fmt.Errorf("%w: stage-2: %w", ErrSetup, err)
	}
	defer null.Close()
	// Exec'd through a descriptor number above those the child gets.
	bin, err := unix.FcntlInt(exe.Fd(), unix.F_DUPFD_CLOEXEC, 16)
	if err != nil {
		unix.Close(fds[0])
		return nil, -1, fmt.Errorf("%w: stage-2: dup sealed binary: %w", ErrSetup, err)
	}
	defer unix.Close(bin)
	pidfd := -1
	n := null.Fd()
	pid, err := syscall.ForkExec(fmt.Sprintf("/proc/self/fd/%d", bin), []string{"toolcell-stage2"}, &syscall.ProcAttr{
		Dir:   "/", // keeps no host directory busy
		Env:   []string{stage2Env + "=" + stage2EnvDirect + strconv.Itoa(os.Getpid())},
		Files: []uintptr{n, n, n, uintptr(fds[1])},
		Sys:   &syscall.SysProcAttr{PidFD: &pidfd},
	})
	if err != nil {
		unix.Close(fds[0])
		return nil, -1, fmt.Errorf("%w: start stage-2: %w", ErrSetup, err)
	}
	// This process reaps it; until then its pid cannot name another.
	go func() {
		var ws unix.WaitStatus
		for {
			if _, err := unix.Wait4(pid, &ws, 0, nil); err != unix.EINTR {
				return
			}
		}
	}()
	if pidfd < 0 {
		// The kernel gave none with the clone: open one now (the child is
		// not reaped before it has ended, and its pid is ours until then).
		if pidfd, err = unix.PidfdOpen(pid, 0); err != nil {
			unix.Kill(pid, unix.SIGKILL)
			unix.Close(fds[0])
			return nil, -1, fmt.Errorf("%w: stage-2: pidfd_open: %w", ErrSetup, err)
		}
	}
	return newStage2Proc(pid, pidfd), fds[0], nil
}

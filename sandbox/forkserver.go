package sandbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The fork server is the sealed binary exec'd once per host process; it
// forks every run's stage-2 (stage2.c), one ahead: a spare stage-2 waits on
// its control socket until a run takes it, and the server forks the next.
// An exec of the whole binary costs about 2.5 ms per run on a small VM
// (exec.Cmd.Start, the loader, libc) and a fork of it from the host's Go
// process grows with the host's heap; a fork of a process that never started
// Go costs a fraction of that, and forking ahead takes even that off the
// run. A spare holds nothing of any run: its plan, the view's sources and
// the cgroup files to join come on its control socket. The server is started
// on first use, restarted when it died or when the host process's effective
// credentials changed (it runs with those it was started with, hostCreds),
// and exits when the host process goes away.
//
// The server is the stage-2's parent and reaps it; the supervisor holds a
// pidfd, which cannot name another process, to watch and kill it.

// forkServerTimeout bounds one request: a server that does not answer
// (stopped, say) is replaced, and the run fails naming it.
const forkServerTimeout = 10 * time.Second

type forkServer struct {
	mu    sync.Mutex
	sock  int           // our end of the server's socket; -1: none
	proc  *os.Process   // the server
	gone  chan struct{} // closed once the server was reaped
	creds string        // hostCreds when it was started
}

var theForkServer = forkServer{sock: -1}

// start execs the server; f.mu is held.
func (f *forkServer) start() error {
	exe, err := sealedSelf()
	if err != nil {
		return err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%w: fork server: socketpair: %w", ErrSetup, err)
	}
	tv := unix.NsecToTimeval(forkServerTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fds[0], unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return fmt.Errorf("%w: fork server: SO_RCVTIMEO: %w", ErrSetup, err)
	}
	theirs := os.NewFile(uintptr(fds[1]), "toolcell-fork-server")
	defer theirs.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		unix.Close(fds[0])
		return fmt.Errorf("%w: fork server: %w", ErrSetup, err)
	}
	defer null.Close()
	// The server exits at once when this process is gone (its pidfd
	// polls readable), and the sandboxes with it.
	pidfd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		unix.Close(fds[0])
		return fmt.Errorf("%w: fork server: pidfd_open: %w", ErrSetup, err)
	}
	self := os.NewFile(uintptr(pidfd), "toolcell-host-pidfd")
	defer self.Close()
	// The child resolves the path after it placed Files at 0-4: the
	// sealed binary is exec'd through a descriptor number above those.
	bin, err := unix.FcntlInt(exe.Fd(), unix.F_DUPFD_CLOEXEC, 16)
	if err != nil {
		unix.Close(fds[0])
		return fmt.Errorf("%w: fork server: dup sealed binary: %w", ErrSetup, err)
	}
	defer unix.Close(bin)
	creds := hostCreds() // before the start: a change meanwhile replaces it
	// The server's directory is / so that it keeps no host directory busy.
	proc, err := os.StartProcess(fmt.Sprintf("/proc/self/fd/%d", bin), []string{"toolcell-stage2"},
		&os.ProcAttr{Dir: "/", Env: []string{stage2Env + "=3"}, Files: []*os.File{null, null, null, theirs, self}})
	if err != nil {
		unix.Close(fds[0])
		return fmt.Errorf("%w: start fork server: %w", ErrSetup, err)
	}
	gone := make(chan struct{})
	go func() {
		proc.Wait()
		close(gone)
	}()
	f.sock, f.proc, f.gone = fds[0], proc, gone
	f.creds = creds
	return nil
}

// stop lets the server go: once its socket is closed it ends its spare and
// exits when the stage-2s it handed out have ended, so that the runs in
// flight go on. f.mu is held.
func (f *forkServer) stop() {
	if f.sock < 0 {
		return
	}
	unix.Close(f.sock)
	f.sock, f.proc = -1, nil
}

// hostCreds is what the server's stage-2s inherit from the host process
// and a run depends on: effective ids, supplementary groups, capability
// sets, no_new_privs. The server keeps what the host had when it started;
// when any of it changed, the next run gets a new server. They are read on
// the calling thread: a change made to one thread only (a raw setuid or
// capset) is not followed.
func hostCreds() string {
	groups, _ := unix.Getgroups()
	var hdr = unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var caps [2]unix.CapUserData
	_ = unix.Capget(&hdr, &caps[0])
	nnp, _ := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
	return fmt.Sprint(os.Geteuid(), os.Getegid(), groups, caps, nnp)
}

func (f *forkServer) usable() bool {
	if f.sock < 0 || f.creds != hostCreds() {
		return false
	}
	select {
	case <-f.gone:
		return false
	default:
		return true
	}
}

// take gets a stage-2 from the server: the process and our end of its
// control socket.
// errServerGone: the server's end of its socket is closed (it exited).
var errServerGone = errors.New("the fork server is gone")

func (f *forkServer) take() (*stage2Proc, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.usable() {
		f.stop()
		if err := f.start(); err != nil {
			return nil, -1, err
		}
	}
	s, ctl, err := f.request()
	if errors.Is(err, errServerGone) {
		// It died since it was last checked (its reaper may not have
		// noticed yet): nothing was asked of it; a new one is.
		f.stop()
		if err := f.start(); err != nil {
			return nil, -1, err
		}
		s, ctl, err = f.request()
	}
	var se *SetupError
	if err != nil && !(errors.As(err, &se) && se.Step == "fork_stage2") {
		// The server is in an unknown state: the next run gets a new one.
		f.stop()
	}
	return s, ctl, err
}

// request sends one FORK request and reads the answer; f.mu is held.
func (f *forkServer) request() (*stage2Proc, int, error) {
	if err := unix.Sendmsg(f.sock, u32msg(msgFork), nil, nil, 0); err != nil {
		if err == unix.EPIPE || err == unix.ECONNRESET {
			err = errServerGone
		}
		return nil, -1, fmt.Errorf("%w: fork server: send: %w", ErrSetup, err)
	}
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(2*4))
	for {
		n, oobn, fl, _, err := unix.Recvmsg(f.sock, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, -1, fmt.Errorf("%w: fork server: no answer: %w", ErrSetup, err)
		}
		got, _ := parseControl(oob[:oobn])
		if n == 0 {
			return nil, -1, fmt.Errorf("%w: fork server exited", ErrSetup)
		}
		if n < 4 || fl&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
			closeFDs(got)
			return nil, -1, fmt.Errorf("%w: fork server: malformed answer", ErrSetup)
		}
		switch typ := binary.NativeEndian.Uint32(buf); {
		case typ == msgForked && n >= 8 && len(got) == 2:
			return newStage2Proc(int(binary.NativeEndian.Uint32(buf[4:])), got[0]), got[1], nil
		case typ == msgError && len(got) == 0:
			// A SetupError: fork_stage2 when the server could not fork
			// (it goes on serving), fork_server when it gave up.
			return nil, -1, decodeError(buf[4:n])
		default:
			closeFDs(got)
			return nil, -1, fmt.Errorf("%w: fork server: unexpected answer %d", ErrSetup, typ)
		}
	}
}

// stage2Proc is one run's stage-2, watched through its pidfd.
type stage2Proc struct {
	pid   int
	mu    sync.Mutex
	pidfd int // -1 once released
	once  sync.Once
	done  chan struct{}
}

func newStage2Proc(pid, pidfd int) *stage2Proc {
	return &stage2Proc{pid: pid, pidfd: pidfd, done: make(chan struct{})}
}

// wait returns once the stage-2 has exited.
func (s *stage2Proc) wait() {
	s.once.Do(func() {
		go func() {
			// A pidfd polls readable once its process has exited.
			pfd := []unix.PollFd{{Fd: int32(s.pidfd), Events: unix.POLLIN}}
			for {
				if _, err := unix.Poll(pfd, -1); err != unix.EINTR {
					break
				}
			}
			close(s.done)
		}()
	})
	<-s.done
}

func (s *stage2Proc) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// gone says, without waiting, whether the stage-2 has exited.
func (s *stage2Proc) gone() bool {
	if s.exited() {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pidfd < 0 {
		return true
	}
	pfd := []unix.PollFd{{Fd: int32(s.pidfd), Events: unix.POLLIN}}
	n, _ := unix.Poll(pfd, 0)
	return n > 0
}

// kill sends SIGKILL; through the pidfd it cannot reach a recycled pid.
func (s *stage2Proc) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pidfd >= 0 {
		unix.PidfdSendSignal(s.pidfd, unix.SIGKILL, nil, 0)
	}
}

// release waits for the stage-2 and closes the pidfd.
func (s *stage2Proc) release() {
	s.wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pidfd >= 0 {
		unix.Close(s.pidfd)
		s.pidfd = -1
	}
}

// spareResult is a stage-2 taken from the fork server concurrently with the
// rest of the setup.
type spareResult struct {
	s   *stage2Proc
	ctl int
	err error
}

// takeStage2 waits for the stage-2 asked for at the start of the setup.
func (p *Process) takeStage2() error {
	if p.spare == nil {
		return nil
	}
	r := <-p.spare
	p.spare = nil
	if r.err != nil {
		return fmt.Errorf("start stage-2: %w", r.err)
	}
	p.stage2, p.ctl = r.s, r.ctl
	return nil
}

package seccomp

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrNotSupported is returned by the feature probes when the running kernel
// lacks the feature; the wrapping error names it.
var ErrNotSupported = errors.New("seccomp: not supported by this kernel")

// HaveUserNotif reports whether the kernel supports SECCOMP_RET_USER_NOTIF
// (Linux 5.0; the listener's poll hang-up when the last user is gone needs
// 5.8). The answer is the kernel's, through SECCOMP_GET_ACTION_AVAIL.
func HaveUserNotif() error {
	return haveUserNotif()
}

var haveUserNotif = sync.OnceValue(func() error {
	act := uint32(unix.SECCOMP_RET_USER_NOTIF)
	_, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_GET_ACTION_AVAIL, 0, uintptr(unsafe.Pointer(&act)))
	if e != 0 {
		return fmt.Errorf("%w: SECCOMP_RET_USER_NOTIF: %v", ErrNotSupported, e)
	}
	return nil
})

// Notif is one syscall suspended by a USER_NOTIF rule (struct seccomp_notif).
type Notif struct {
	ID    uint64
	Pid   uint32 // the caller, in the listener holder's pid namespace
	Flags uint32
	Nr    int32
	Arch  uint32 // AUDIT_ARCH_*
	IP    uint64
	Args  [6]uint64
}

// sizeofNotif is sizeof(struct seccomp_notif), encoded in
// SECCOMP_IOCTL_NOTIF_RECV.
const sizeofNotif = 80

// Compile-time checks: the Go mirrors have the kernel structs' sizes.
var (
	_ [sizeofNotif - unsafe.Sizeof(Notif{})]byte
	_ [unsafe.Sizeof(Notif{}) - sizeofNotif]byte
	_ [24 - unsafe.Sizeof(notifResp{})]byte
	_ [unsafe.Sizeof(notifResp{}) - 24]byte
)

type notifResp struct {
	id    uint64
	val   int64
	err   int32
	flags uint32
}

// Listener is the supervisor's end of a filter installed with
// SECCOMP_FILTER_FLAG_NEW_LISTENER. A notification is evidence, never a
// reason to let a call through (the kernel documents that CONTINUE is racy
// against the caller's memory): it answers with an error, but for the
// calls Policy.Inspect sends, which Decide may let run (see inspect.go).
type Listener struct {
	f *os.File
}

// NewListener takes ownership of fd, a seccomp listener.
func NewListener(fd int) (*Listener, error) {
	if fd < 0 {
		return nil, fmt.Errorf("seccomp: listener: bad descriptor %d", fd)
	}
	l := &Listener{f: os.NewFile(uintptr(fd), "seccomp-listener")}
	// Linux 6.6+: wake the caller on the answering CPU, which roughly
	// halves a notification's round trip. Older kernels refuse the ioctl;
	// the listener works the same, only slower.
	// The flags are the ioctl's argument itself, not a pointer.
	_ = l.ioctlArg(unix.SECCOMP_IOCTL_NOTIF_SET_FLAGS, unix.SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, "NOTIF_SET_FLAGS")
	return l, nil
}

// Receive waits for the next notification. It returns io.EOF once no task
// uses the filter any more (every process of the sandbox exited), and
// os.ErrClosed after Close. It waits in poll(2) in steps of at most 250 ms
// so that a Close from another goroutine ends it promptly.
func (l *Listener) Receive() (Notif, error) {
	rc, err := l.f.SyscallConn()
	if err != nil {
		return Notif{}, err
	}
	for {
		var n Notif
		var opErr error
		done := false
		err := rc.Control(func(fd uintptr) {
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			k, err := unix.Poll(pfd, 250)
			switch {
			case err == unix.EINTR || (err == nil && k == 0):
				return
			case err != nil:
				opErr, done = fmt.Errorf("seccomp: listener poll: %w", err), true
				return
			case pfd[0].Revents&unix.POLLIN == 0:
				if pfd[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 {
					opErr, done = io.EOF, true
				}
				return
			}
			var buf [sizeofNotif]byte
			_, _, e := unix.Syscall(unix.SYS_IOCTL, fd, unix.SECCOMP_IOCTL_NOTIF_RECV, uintptr(unsafe.Pointer(&buf[0])))
			switch e {
			case 0:
				n = *(*Notif)(unsafe.Pointer(&buf[0]))
				done = true
			case unix.ENOENT, unix.EINTR:
				// The caller was killed before we read it; wait again.
			default:
				opErr, done = fmt.Errorf("seccomp: NOTIF_RECV: %w", e), true
			}
		})
		if err != nil {
			return Notif{}, err
		}
		if done {
			return n, opErr
		}
	}
}

// Deny answers notification id with -errno. An answer for a caller that
// is gone (ENOENT) is not an error.
func (l *Listener) Deny(id uint64, errno syscall.Errno) error {
	resp := notifResp{id: id, err: -int32(errno)}
	return l.ioctl(unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(&resp), "NOTIF_SEND")
}

// Continue lets notification id's call run as if the filter had allowed
// it (SECCOMP_USER_NOTIF_FLAG_CONTINUE). Only for calls that stay safe
// whatever the caller changes in its memory after the supervisor read it.
func (l *Listener) Continue(id uint64) error {
	resp := notifResp{id: id, flags: unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE}
	return l.ioctl(unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(&resp), "NOTIF_SEND")
}

// Valid reports whether notification id is still pending: its caller is
// alive and still in the syscall. Data read from the caller's memory is
// only trusted if Valid holds after the read (the pid may be reused).
func (l *Listener) Valid(id uint64) bool {
	return l.ioctl(unix.SECCOMP_IOCTL_NOTIF_ID_VALID, unsafe.Pointer(&id), "NOTIF_ID_VALID") == nil
}

// ioctl passes a pointer; the conversion to uintptr stays inside the
// Syscall call, as package unsafe requires.
func (l *Listener) ioctl(req uintptr, arg unsafe.Pointer, name string) error {
	return l.doIoctl(req, name, func(fd uintptr) syscall.Errno {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, fd, req, uintptr(arg))
		return e
	})
}

// ioctlArg passes a plain value.
func (l *Listener) ioctlArg(req, arg uintptr, name string) error {
	return l.doIoctl(req, name, func(fd uintptr) syscall.Errno {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, fd, req, arg)
		return e
	})
}

func (l *Listener) doIoctl(req uintptr, name string, call func(fd uintptr) syscall.Errno) error {
	rc, err := l.f.SyscallConn()
	if err != nil {
		return err
	}
	var e syscall.Errno
	if err := rc.Control(func(fd uintptr) { e = call(fd) }); err != nil {
		return err
	}
	if e == unix.ENOENT && req == unix.SECCOMP_IOCTL_NOTIF_SEND {
		return nil
	}
	if e != 0 {
		return fmt.Errorf("seccomp: %s: %w", name, e)
	}
	return nil
}

// Close closes the listener. Callers suspended on it, and any later call
// that hits a USER_NOTIF rule of its filter, get ENOSYS from the kernel.
func (l *Listener) Close() error { return l.f.Close() }

// The control socket: the messages between the supervisor and the stage-2
// (stage2.h is the contract) and the encoding of the plan.

package sandbox

import (
	"encoding/binary"
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

type ctlMsg struct {
	typ  uint32
	body []byte
	fds  []int // passed with the message (close-on-exec)
	pid  int   // the sender, as the kernel names it in our pid namespace
	err  error
}

// readCtl owns the control socket once started: it closes it on exit, and
// teardown only shuts it down, so the descriptor number is never reused
// under a blocked read.
func (p *Process) readCtl() {
	defer close(p.msgs)
	defer func() {
		p.ctlMu.Lock()
		unix.Close(p.ctl)
		p.ctlClosed = true
		p.ctlMu.Unlock()
	}()
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*max(nsCount+1, maxSockets))+unix.CmsgSpace(unix.SizeofUcred))
	for {
		n, oobn, flags, _, err := unix.Recvmsg(p.ctl, buf, oob, unix.MSG_CMSG_CLOEXEC)
		// ECONNRESET: the sandbox's end was closed with our messages
		// unread; the kernel reports that once, before the messages it
		// still has queued for us.
		if err == unix.EINTR || err == unix.ECONNRESET {
			continue
		}
		if err != nil || n == 0 {
			return
		}
		fds, pid := parseControl(oob[:oobn])
		if n < 4 {
			closeFDs(fds)
			continue
		}
		m := ctlMsg{typ: binary.NativeEndian.Uint32(buf), body: append([]byte(nil), buf[4:n]...), fds: fds, pid: pid}
		if m.typ != msgStarted && m.typ != msgSockets && m.typ != msgReady {
			closeFDs(m.fds) // only STARTED, SOCKETS and READY carry descriptors
			m.fds = nil
		} else if flags&unix.MSG_CTRUNC != 0 {
			closeFDs(m.fds)
			m.fds = nil
			m.err = fmt.Errorf("%w: descriptors passed with message %d were dropped (MSG_CTRUNC: is the host process at its descriptor limit?)", ErrSetup, m.typ)
		}
		if m.typ == msgError {
			m.err = decodeError(m.body)
		}
		p.msgs <- m
	}
}

// parseControl returns the descriptors passed with a message and the
// sender's pid (0 if the kernel attached none).
func parseControl(oob []byte) (fds []int, pid int) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, 0
	}
	for _, m := range msgs {
		if f, err := unix.ParseUnixRights(&m); err == nil {
			fds = append(fds, f...)
		} else if c, err := unix.ParseUnixCredentials(&m); err == nil {
			pid = int(c.Pid)
		}
	}
	return fds, pid
}

func (p *Process) send(b []byte) error { return p.sendFDs(b, nil) }

func (p *Process) sendFDs(b, oob []byte) error {
	p.ctlMu.Lock()
	defer p.ctlMu.Unlock()
	if p.ctlClosed {
		return fmt.Errorf("%w: control socket closed: stage-2 exited", ErrSetup)
	}
	if err := unix.Sendmsg(p.ctl, b, oob, nil, 0); err != nil {
		return fmt.Errorf("%w: control socket: %w", ErrSetup, err)
	}
	return nil
}

// expect waits for one message of type typ during setup. The caller closes
// the descriptors it carries.
func (p *Process) expect(typ uint32) (ctlMsg, error) {
	select {
	case m, ok := <-p.msgs:
		if !ok {
			return ctlMsg{}, p.stage2Died()
		}
		if m.err != nil {
			return ctlMsg{}, m.err
		}
		if m.typ != typ {
			closeFDs(m.fds)
			return ctlMsg{}, fmt.Errorf("%w: protocol: got message %d, want %d", ErrSetup, m.typ, typ)
		}
		return m, nil
	case <-p.ctx.Done():
		return ctlMsg{}, p.ctx.Err()
	case <-time.After(30 * time.Second):
		return ctlMsg{}, fmt.Errorf("%w: stage-2 did not answer within 30s (waiting for message %d)", ErrSetup, typ)
	}
}

// sendErr is the error of a setup whose message could not be sent: the
// stage-2's own report of the step that failed when it sent one (a step
// that fails early, a swapped grant say, ends the stage-2 before the
// supervisor queued its next message), else err.
func (p *Process) sendErr(err error) error {
	timeout := time.After(time.Second)
	for {
		select {
		case m, ok := <-p.msgs:
			if !ok {
				return err
			}
			closeFDs(m.fds)
			if m.err != nil {
				return m.err
			}
		case <-timeout:
			return err
		}
	}
}

func (p *Process) stage2Died() error {
	p.stage2.wait()
	return fmt.Errorf("%w: stage-2 exited during setup", ErrSetup)
}

func decodeError(b []byte) error {
	step, b := getStr(b)
	var errno uint32
	if len(b) >= 4 {
		errno = binary.NativeEndian.Uint32(b)
		b = b[4:]
	}
	detail, _ := getStr(b)
	return &SetupError{Step: step, Errno: syscall.Errno(errno), Detail: detail}
}

func getStr(b []byte) (string, []byte) {
	if len(b) < 4 {
		return "", nil
	}
	n := int(binary.NativeEndian.Uint32(b))
	b = b[4:]
	if n < 1 || n > len(b) {
		return "", nil
	}
	return string(b[:n-1]), b[n:]
}

func u32msg(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

func putU32(b []byte, v uint32) []byte { return binary.NativeEndian.AppendUint32(b, v) }

func putStr(b []byte, s string) []byte {
	b = putU32(b, uint32(len(s)+1))
	b = append(b, s...)
	return append(b, 0)
}

func putList(b []byte, l []string) []byte {
	b = putU32(b, uint32(len(l)))
	for _, s := range l {
		b = putStr(b, s)
	}
	return b
}

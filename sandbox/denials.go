package sandbox

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/toolcell/toolcell/seccomp"
)

// maxDenials caps the distinct entries of Record.Denials; attempts past
// the cap are only counted (Record.DenialsDropped).
const maxDenials = 128

// denialLog collects the denied syscalls of one run, deduplicated by
// syscall and decoded signature. Its size is bounded by maxDenials whatever
// the tool does.
type denialLog struct {
	mu      sync.Mutex
	byKey   map[string]*Denial
	order   []*Denial
	dropped int64
}

func (d *denialLog) add(n seccomp.Notif, name, detail string, comm func() string, at time.Time) {
	key := fmt.Sprintf("%d|%d|%s", n.Arch, n.Nr, detail)
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.byKey[key]; ok {
		e.Count++
		e.LastAt = at.UTC()
		return
	}
	if len(d.order) >= maxDenials {
		d.dropped++
		return
	}
	args := make([]string, len(n.Args))
	for i, a := range n.Args {
		args[i] = fmt.Sprintf("%#x", a)
	}
	e := &Denial{Syscall: name, Nr: int(n.Nr), Arch: seccomp.ArchName(n.Arch), Args: args, Detail: detail,
		Process: comm(), Answer: "EPERM", Count: 1, FirstAt: at.UTC(), LastAt: at.UTC()}
	if d.byKey == nil {
		d.byKey = map[string]*Denial{}
	}
	d.byKey[key] = e
	d.order = append(d.order, e)
}

func (d *denialLog) result() ([]Denial, int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Denial, len(d.order))
	for i, e := range d.order {
		out[i] = *e
	}
	return out, d.dropped
}

// testHookNotif, when set (tests only), sees each notification before it
// is answered; returning false closes the listener without an answer, as
// if the supervisor had died.
var testHookNotif func(seccomp.Notif) bool

// watchDenials answers every notification of the tool's filter with EPERM
// and records it. It ends when no process uses the filter any more (the
// sandbox is gone) or the listener is closed.
func (p *Process) watchDenials(l *seccomp.Listener) {
	defer close(p.denialsDone)
	for {
		n, err := l.Receive()
		if err != nil {
			return
		}
		if testHookNotif != nil && !testHookNotif(n) {
			l.Close()
			return
		}
		at := time.Now()
		name := seccomp.SyscallName(n.Arch, n.Nr)
		pid := int(n.Pid)
		detail := seccomp.Describe(name, n.Args, func(addr uint64, b []byte) (int, error) {
			return readMem(pid, addr, b)
		})
		// What was read belongs to the caller only if the notification
		// is still pending now (the pid cannot have been reused).
		if !l.Valid(n.ID) {
			detail = "<caller gone before its arguments were read>"
		}
		comm := func() string {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			if err != nil || !l.Valid(n.ID) {
				return ""
			}
			return strings.TrimSpace(string(b))
		}
		p.denials.add(n, name, detail, comm, at)
		if err := l.Deny(n.ID, unix.EPERM); err != nil {
			p.log("seccomp answer", "err", err)
		}
	}
}

// readMem reads another process's memory for the record. It needs the
// ptrace access the supervisor has over its own sandbox (as root, or as the
// owner of the sandbox's user namespace).
func readMem(pid int, addr uint64, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	local := []unix.Iovec{{Base: (*byte)(unsafe.Pointer(&b[0]))}}
	local[0].SetLen(len(b))
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(b)}}
	return unix.ProcessVMReadv(pid, local, remote, 0)
}

package sandbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/seccomp"
)

// maxDenials caps the entries of audit.Record.Denials that are itemised by
// arguments. Past it, each further syscall still gets one entry of its own
// (so no kind of attempt can be hidden behind junk), counting every attempt
// whose arguments were not itemised; audit.Record.DenialsDropped sums those.
const maxDenials = 128

// overflowDetail marks the one entry per syscall that collects attempts
// past maxDenials.
const overflowDetail = "<further attempts, arguments not itemised>"

// Flood control: the supervisor spends about as much CPU on a denied call
// as the tool does, outside the tool's cgroup. A run gets a burst of
// denialBurst answers at full speed, then denialRate per second: the tool
// waits for its answers, so a flood slows the tool, not the host.
const (
	denialBurst = 10000
	denialRate  = 2000.0
)

// denialLog collects the denied syscalls of one run, deduplicated by
// syscall and decoded signature. Its size is bounded whatever the tool
// does: at most maxDenials itemised entries plus one per syscall number.
type denialLog struct {
	mu      sync.Mutex
	byKey   map[string]*audit.Denial
	order   []*audit.Denial
	dropped int64
	notes   []string
}

func denialKey(n seccomp.Notif, detail string) string {
	return fmt.Sprintf("%d|%d|%s", n.Arch, n.Nr, detail)
}

// key returns the entry an attempt belongs to, and whether that entry is
// new.
func (d *denialLog) key(n seccomp.Notif, detail string) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := denialKey(n, detail)
	if _, ok := d.byKey[k]; ok {
		return k, false
	}
	if len(d.order) >= maxDenials {
		k = denialKey(n, overflowDetail)
		_, ok := d.byKey[k]
		return k, !ok
	}
	return k, true
}

func (d *denialLog) add(key string, n seccomp.Notif, name, detail, process, answer string, at time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if key == denialKey(n, overflowDetail) {
		d.dropped++
		detail = overflowDetail
	}
	if e, ok := d.byKey[key]; ok {
		e.Count++
		e.LastAt = at.UTC()
		return
	}
	args := make([]string, len(n.Args))
	for i, a := range n.Args {
		args[i] = fmt.Sprintf("%#x", a)
	}
	e := &audit.Denial{Syscall: name, Nr: int(n.Nr), Arch: seccomp.ArchName(n.Arch), Args: args, Detail: detail,
		Process: process, Answer: answer, Count: 1, FirstAt: at.UTC(), LastAt: at.UTC()}
	if d.byKey == nil {
		d.byKey = map[string]*audit.Denial{}
	}
	d.byKey[key] = e
	d.order = append(d.order, e)
}

func (d *denialLog) note(s string) {
	d.mu.Lock()
	d.notes = append(d.notes, s)
	d.mu.Unlock()
}

func (d *denialLog) result() ([]audit.Denial, int64, []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]audit.Denial, len(d.order))
	for i, e := range d.order {
		out[i] = *e
	}
	return out, d.dropped, append([]string(nil), d.notes...)
}

// testHookNotif, when set (tests only), sees each notification before it
// is answered; returning false closes the listener without an answer, as
// if the supervisor had died.
var testHookNotif func(seccomp.Notif) bool

// watchDenials answers every notification of the tool's filter with EPERM
// and records it. It ends when no process uses the filter any more (the
// sandbox is gone) or the listener is closed. If the listener fails, it
// is closed, so the kernel answers the tool's denied calls with ENOSYS
// from then on, and the record says so.
func (p *Process) watchDenials(l *seccomp.Listener) {
	defer close(p.denialsDone)
	tokens, last := float64(denialBurst), time.Now()
	for {
		n, err := l.Receive()
		if errors.Is(err, io.EOF) || errors.Is(err, os.ErrClosed) {
			return
		}
		if err != nil {
			l.Close()
			p.denials.note("seccomp listener failed (" + err.Error() + "); later denied syscalls got ENOSYS and are not recorded")
			return
		}
		if testHookNotif != nil && !testHookNotif(n) {
			l.Close()
			return
		}
		at := time.Now()
		tokens += at.Sub(last).Seconds() * denialRate
		last = at
		if tokens > denialBurst {
			tokens = denialBurst
		}
		name := seccomp.SyscallName(n.Arch, n.Nr)
		pid := int(n.Pid)
		if seccomp.IsInspected(name) && inspect(l, n, name, pid) {
			continue // let through: the supervisor's check passed
		}
		detail := seccomp.Describe(name, n.Args, func(addr uint64, b []byte) (int, error) {
			return readMem(pid, addr, b)
		})
		// What was read belongs to the caller only if the notification
		// is still pending now (the pid cannot have been reused).
		if !l.Valid(n.ID) {
			detail = "<caller gone before its arguments were read>"
		}
		key, fresh := p.denials.key(n, detail)
		process := ""
		if fresh {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && l.Valid(n.ID) {
				process = strings.TrimSpace(string(b))
			}
		}
		if tokens < 1 {
			time.Sleep(time.Duration((1 - tokens) / denialRate * float64(time.Second)))
			tokens = 1
		}
		tokens--
		answer := "EPERM"
		if err := l.Deny(n.ID, unix.EPERM); err != nil {
			answer = "none: " + err.Error()
		}
		p.denials.add(key, n, name, detail, process, answer, at)
	}
}

// inspect lets an inspected call (seccomp.Policy.Inspect) run if
// seccomp.Decide allows it on the arguments it read, and reports whether
// it did; otherwise the call is a denial like any other. What was read
// from the caller's memory counts only if the notification is still
// pending afterwards.
func inspect(l *seccomp.Listener, n seccomp.Notif, name string, pid int) bool {
	d := seccomp.Decide(name, n.Args, func(addr uint64, b []byte) (int, error) { return readMem(pid, addr, b) })
	if d != seccomp.Continue || !l.Valid(n.ID) {
		return false
	}
	return l.Continue(n.ID) == nil
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
	n, err := unix.ProcessVMReadv(pid, local, remote, 0)
	if n < 0 {
		n = 0 // the raw call's -1 when nothing could be read
	}
	return n, err
}

// startDenialWatch takes the filter's listener, the last descriptor passed
// with STARTED, after checking with the kernel that it is one.
func (p *Process) startDenialWatch(fd int) error {
	if link, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd)); err != nil || link != "anon_inode:seccomp notify" {
		return fmt.Errorf("%w: descriptor passed as the seccomp listener is %q (%v)", ErrSetup, link, err)
	}
	l, err := seccomp.NewListener(fd)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSetup, err)
	}
	p.listener = l
	p.denialsDone = make(chan struct{})
	go p.watchDenials(l)
	return nil
}

// endDenialWatch waits for the watcher, which ends by itself once the
// sandbox's last process is gone, and puts the denials in the record.
func (p *Process) endDenialWatch() {
	if p.listener == nil {
		return
	}
	select {
	case <-p.denialsDone:
	case <-time.After(2 * time.Second):
		p.log("seccomp listener still in use after the sandbox ended")
	}
	p.listener.Close()
	select {
	case <-p.denialsDone:
	case <-time.After(2 * time.Second):
		// Stuck reading the tool's memory (a hung file system under a
		// mapping, say): the record says the audit may be incomplete.
		p.denials.note("syscall audit: the supervisor was still decoding a denied call when the run ended; denials may be incomplete")
	}
	p.listener = nil
	var notes []string
	p.rec.Denials, p.rec.DenialsDropped, notes = p.denials.result()
	p.rec.Enforcement.Notes = append(p.rec.Enforcement.Notes, notes...)
}

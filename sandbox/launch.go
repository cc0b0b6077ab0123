// Launching the tool in a prepared sandbox: the command sent, STARTED
// (or READY first, for a sandbox built ahead), the evidence, DONE.

package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/toolcell/toolcell/capability"
	"golang.org/x/sys/unix"
)

// resolveInView finds the command's path and working directory and checks
// that the view holds the program.
func (p *Process) resolveInView() error {
	path, cwd, err := p.resolveCommand()
	if err != nil {
		return err
	}
	if !p.view.shows(path) {
		return fmt.Errorf("%w: %s is not in the sandbox's view (grant it with exec, or a directory holding it; /usr comes with base)", ErrNotFound, path)
	}
	p.path, p.cwd = path, cwd
	p.rec.Command.Path, p.rec.Command.Cwd = path, cwd
	return nil
}

// awaitSockets serves the plan's egress sockets once pid 1 made them in
// the sandbox's network namespace (before it waits for the command).
func (p *Process) awaitSockets() error {
	if len(p.socks) == 0 || p.socketsServed {
		return nil
	}
	m, err := p.expect(msgSockets)
	if err != nil {
		return err
	}
	p.socketsServed = true
	return p.serveEgress(m.fds)
}

// launch sends the command to a prepared sandbox, whose pid 1 starts the
// tool as soon as its view is built, and returns once the tool runs and
// its evidence was read.
func (p *Process) launch() error {
	for _, step := range []func() error{
		p.resolveInViewOnce, // the program and working directory, checked against the view
		p.sendExec,          // path, cwd, argv, envp and the tool's stdio
		p.awaitSockets,      // the egress sockets pid 1 made (cold runs: now)
		p.awaitStarted,      // STARTED: pid 1's pid, namespaces, the seccomp listener
		p.evidence,          // read pid 1's state from the kernel; DONE
	} {
		if err := step(); err != nil {
			return err
		}
	}
	p.rec.SetupMS = ms(time.Since(p.start))
	p.log("started", "setup_ms", p.rec.SetupMS)
	go p.supervise()
	return nil
}

func (p *Process) resolveInViewOnce() error {
	if p.path != "" {
		return nil
	}
	return p.resolveInView()
}

// sendExec sends the command; pid 1 reads it once its view is built.
func (p *Process) sendExec() error {
	stdio, err := p.stdio()
	if err != nil {
		return err
	}
	env := append(slices.Clone(p.pl.env), tempWorkdirEnv(p.set, p.cwd)...)
	args := p.cmd.Args
	if len(args) == 0 {
		args = []string{p.cmd.Path}
	}
	m := u32msg(msgExec)
	m = putStr(m, p.path)
	m = putStr(m, p.cwd)
	m = putList(m, args)
	m = putList(m, env)
	err = p.sendFDs(m, unix.UnixRights(int(stdio[0].Fd()), int(stdio[1].Fd()), int(stdio[2].Fd())))
	for _, f := range stdio {
		f.Close()
	}
	if err != nil {
		return p.sendErr(err)
	}
	return nil
}

// awaitStarted waits for STARTED: the tool runs. It takes pid 1's pid (the
// kernel's, SO_PASSCRED), checks vm.memfd_noexec, starts answering denied
// syscalls, and keeps pid 1's namespace descriptors for the evidence.
func (p *Process) awaitStarted() error {
	m, err := p.expect(msgStarted)
	if err != nil {
		return err
	}
	// The namespaces came with READY when the sandbox was built ahead.
	want := nsCount
	if p.ready {
		want = 0
	}
	if p.pl.notify {
		want++
	}
	if len(m.fds) != want || len(m.body) != 8 {
		closeFDs(m.fds)
		return fmt.Errorf("%w: protocol: STARTED has %d bytes and %d descriptors, want 8 and %d (namespaces unless READY had them, and the seccomp listener)", ErrSetup, len(m.body), len(m.fds), want)
	}
	fds := m.fds
	if p.pl.notify {
		// The tool may already be waiting on a denied call: answer first.
		if err := p.startDenialWatch(fds[len(fds)-1]); err != nil {
			closeFDs(fds)
			return err
		}
		fds = fds[:len(fds)-1]
	}
	if p.ready {
		return nil
	}
	p.pid1 = m.pid
	p.nsFDs = fds
	return p.memfdEvidence(m.body[4:], p.pl.memfdSysctl)
}

// awaitReady waits for READY from a sandbox built ahead: pid 1 is complete
// and waits for EXEC. Its state is the one the tool will start from, so the
// evidence is read now, off the run's path.
func (p *Process) awaitReady() error {
	m, err := p.expect(msgReady)
	if err != nil {
		return err
	}
	if len(m.fds) != nsCount || len(m.body) != 4 {
		closeFDs(m.fds)
		return fmt.Errorf("%w: protocol: READY has %d bytes and %d descriptors, want 4 and %d", ErrSetup, len(m.body), len(m.fds), nsCount)
	}
	p.pid1, p.nsFDs, p.ready = m.pid, m.fds, true
	if err := p.memfdEvidence(m.body, p.pl.memfdSysctl); err != nil {
		return err
	}
	p.readEvidence(p.nsFDs)
	return nil
}

// evidence reads the evidence while the tool runs (pid 1 holds the state
// the tool started from and waits for DONE before it exits), then sends
// DONE.
func (p *Process) evidence() error {
	if !p.ready {
		p.readEvidence(p.nsFDs)
	}
	// The descriptors are kept until the run is over: see teardown.
	if err := p.send(u32msg(msgDone)); err != nil {
		// The tool runs from STARTED on: if it was killed meanwhile (it
		// passed the output cap while its evidence was read, say), that
		// is the run's outcome, which supervise reports, not a setup
		// failure.
		p.mu.Lock()
		killed := p.killedBy != ""
		p.mu.Unlock()
		if !killed {
			return err
		}
	}
	return nil
}

func (p *Process) resolveCommand() (path, cwd string, err error) {
	cwd = p.cmd.Dir
	if cwd == "" {
		cwd = p.set.Workdir
		if p.set.HasTempWorkdir() {
			cwd = capability.TempWorkdirPath
		}
	}
	if cwd == "" {
		cwd = "/"
	}
	if !filepath.IsAbs(cwd) {
		return "", "", fmt.Errorf("%w: working directory %q is not absolute", ErrPolicy, cwd)
	}
	path = p.cmd.Path
	if strings.Contains(path, "/") {
		if !filepath.IsAbs(path) {
			path = filepath.Join(cwd, path)
		}
		return path, cwd, nil
	}
	search := defaultPATH
	if v, ok := p.set.Env["PATH"]; ok {
		search = v
	}
	for _, d := range filepath.SplitList(search) {
		cand := filepath.Join(d, path)
		if fi, err := os.Stat(cand); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return cand, cwd, nil
		}
	}
	return "", "", fmt.Errorf("%w: %q in PATH %q", ErrNotFound, path, search)
}

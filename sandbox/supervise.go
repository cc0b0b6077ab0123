// Supervision: the run from STARTED to its end, the exit verdict, and the
// teardown that leaves nothing behind.

package sandbox

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/cgroup"
	"golang.org/x/sys/unix"
)

// kill ends the whole sandbox, remembering the first reason.
func (p *Process) kill(reason audit.Reason) {
	p.mu.Lock()
	if p.killedBy == "" {
		p.killedBy = reason
	}
	p.mu.Unlock()
	p.killAll()
}

func (p *Process) killAll() {
	if p.cg != nil {
		if err := p.cg.Kill(); err != nil {
			p.log("cgroup kill", "err", err)
		}
	}
	// The stage-2 is signalled through its pidfd, which cannot name a
	// recycled pid; pid 1 dies with it (PDEATHSIG) and takes the pid
	// namespace along. pid 1's own number is never signalled: once reaped it
	// may name an unrelated process.
	if p.stage2 != nil {
		p.stage2.kill()
	}
}

func (p *Process) supervise() {
	// Reaping starts now, so that the end of the sandbox is noticed as
	// soon as it happens.
	exited := make(chan struct{})
	go func() { p.stage2.wait(); close(exited) }()
	timeout := p.set.TimeoutOrDefault()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	done := p.ctx.Done()
	var status *unix.WaitStatus
	var execErr error
	for status == nil && execErr == nil {
		select {
		case m, ok := <-p.msgs:
			if !ok {
				goto out
			}
			switch {
			case m.err != nil:
				execErr = m.err
			case m.typ == msgExit && len(m.body) >= 4:
				ws := unix.WaitStatus(binary.NativeEndian.Uint32(m.body))
				status = &ws
			}
		case <-timer.C:
			p.kill(audit.ReasonTimeout)
		case <-done:
			done = nil // once: a closed channel would spin
			p.kill(audit.ReasonCanceled)
		}
	}
out:
	// The tool is gone (or pid 1 died). When the tool exited, pid 1 exits
	// too and the kernel kills the rest of the pid namespace before the
	// stage-2 sees it go, so waiting is enough; killing the cgroup then is a
	// no-op. Give that a bounded time, then kill: nothing outlives the run.
	var st cgroup.Stats
	var stErr error
	statsRead := false
	if status != nil {
		// The tool has exited and the rest of the sandbox dies with pid 1
		// now: usage is read while they exit (the last instants of a
		// process the tool left behind go uncounted).
		if p.cg != nil {
			st, stErr = p.cg.Stats()
			statsRead = true
		}
		select {
		case <-exited:
		case <-time.After(2 * time.Second):
			p.killAll()
		}
	} else {
		p.killAll()
	}
	<-exited
	p.outWG.Wait()
	p.endDenialWatch()
	p.endEgress()
	res := &Result{Exit: audit.Exit{Code: -1}, Audit: p.rec}
	if p.cg != nil {
		if !statsRead {
			st, stErr = p.cg.Stats()
		}
		err := stErr
		if err != nil {
			p.rec.Resources.Notes = append(p.rec.Resources.Notes, "stats: "+err.Error())
		}
		p.rec.Resources = audit.Resources{CPUUserUS: st.CPUUserUsec, CPUSystemUS: st.CPUSystemUsec,
			MemoryPeakBytes: st.MemoryPeakBytes, PidsPeak: st.PidsPeak, OOMKills: st.OOMKills,
			PidsMaxEvents: st.PidsMaxEvents, CPUThrottled: st.CPUThrottled,
			Notes: append(p.rec.Resources.Notes, st.Notes...)}
	}
	p.mu.Lock()
	killedBy := p.killedBy
	p.mu.Unlock()
	res.Exit = verdict(status, execErr, killedBy, p.rec.Resources.OOMKills)
	if execErr != nil {
		p.rec.Error = execErr.Error()
	}
	p.rec.Output = audit.Output{StdoutBytes: p.stdout.n, StderrBytes: p.stderr.n,
		StdoutTruncated: p.stdout.truncated, StderrTruncated: p.stderr.truncated}
	res.Exit.LimitsHit = limitsHit(res.Exit.Reason, res.Exit.Signal, p.rec.Resources, p.rec.Output)
	p.rec.Exit = res.Exit
	if p.cmd.Stdout == nil {
		res.Stdout = p.stdout.buf.Bytes()
	}
	if p.cmd.Stderr == nil {
		res.Stderr = p.stderr.buf.Bytes()
	}
	p.teardown()
	p.endTempWorkdir(res.Exit.Reason != audit.ReasonSetupFailed)
	p.finishTimes()
	p.release()
	p.audit()
	p.result = res
	close(p.done)
}

// verdict says how a run ended (all of audit.Exit but LimitsHit), from
// what the supervisor saw: the tool's wait status (nil when the sandbox
// ended without one: pid 1 died, or was killed first), a failure to exec
// the tool in a complete sandbox, the reason the supervisor killed the
// sandbox for (first one only; "" if it did not), and the cgroup's OOM
// kills.
func verdict(status *unix.WaitStatus, execErr error, killedBy audit.Reason, oomKills uint64) audit.Exit {
	var e audit.Exit
	switch {
	case execErr != nil:
		e.Reason, e.Code = audit.ReasonSetupFailed, 127
	case status != nil && status.Exited():
		e.Reason, e.Code = audit.ReasonExited, status.ExitStatus()
	case status != nil && status.Signaled():
		e.Reason, e.Code, e.Signal = audit.ReasonSignaled, -1, unix.SignalName(status.Signal())
		if status.Signal() == unix.SIGSYS {
			e.Reason = audit.ReasonSeccompKill
		}
	default:
		e.Reason, e.Code, e.Signal = audit.ReasonSignaled, -1, "SIGKILL"
	}
	// A kill by the supervisor names the reason unless the tool exited by
	// itself first; passing the output cap names it either way (the tool
	// may exit 0 on the EPIPE it got).
	if killedBy != "" && (status == nil || !status.Exited()) || killedBy == audit.ReasonOutputLimit {
		e.Reason = killedBy
	}
	// The kernel's OOM killer picks a process of the cgroup, not always the
	// tool itself (a shell's child, say): any OOM kill in a run that did not
	// succeed is the reason.
	if oomKills > 0 && (e.Reason == audit.ReasonSignaled || (e.Reason == audit.ReasonExited && e.Code != 0)) {
		e.Reason = audit.ReasonOOM
	}
	return e
}

// limitsHit says which limits the run ran into, from the cgroup's counters,
// the exit and the output caps.
func limitsHit(reason audit.Reason, signal string, r audit.Resources, o audit.Output) []audit.Limit {
	hit := []audit.Limit{}
	add := func(ok bool, l audit.Limit) {
		if ok {
			hit = append(hit, l)
		}
	}
	add(r.OOMKills > 0, audit.LimitMemory)
	add(r.PidsMaxEvents > 0, audit.LimitPids)
	add(r.CPUThrottled > 0, audit.LimitCPUThrottled)
	add(signal == "SIGXFSZ", audit.LimitFileSize)
	add(o.StdoutTruncated || o.StderrTruncated || reason == audit.ReasonOutputLimit, audit.LimitOutput)
	add(reason == audit.ReasonTimeout, audit.LimitTimeout)
	return hit
}

// Wait waits for the tool to end and returns its result.
func (p *Process) Wait() (*Result, error) {
	<-p.done
	if p.rec.Exit.Reason == audit.ReasonSetupFailed {
		return p.result, &RunError{Err: fmt.Errorf("%w: %s", ErrSetup, p.rec.Error), Record: p.rec}
	}
	return p.result, p.collectErr
}

// Kill ends the sandbox now; Wait reports the reason "canceled".
func (p *Process) Kill() { p.kill(audit.ReasonCanceled) }

func (p *Process) teardown() {
	p.joinCgroupSetup() // a cgroup still being made is removed below
	p.takeStage2()      // a stage-2 still being taken is ended below
	defer p.endDenialWatch()
	defer p.endEgress()
	if p.vplan != nil {
		p.vplan.close()
		p.vplan = nil
	}
	for _, c := range p.closers {
		c.Close()
	}
	if p.stage2 != nil {
		if !p.stage2.exited() {
			p.killAll()
		}
		p.stage2.release()
	}
	p.ctlMu.Lock()
	if p.ctl >= 0 && !p.ctlClosed {
		if p.msgs != nil {
			unix.Shutdown(p.ctl, unix.SHUT_RDWR) // wakes readCtl, which closes it
		} else {
			unix.Close(p.ctl)
			p.ctlClosed = true
		}
	}
	p.ctlMu.Unlock()
	if p.msgs != nil {
		// Messages nobody read (a setup that failed or was canceled) may
		// carry descriptors; readCtl closes the channel once the socket is
		// down.
		for m := range p.msgs {
			closeFDs(m.fds)
		}
	}
	// Every holder of the output pipes' write ends is gone now (the sandbox
	// and any EXEC message in flight), so the copiers end at EOF: wait for
	// them, boundedly, so a failed run leaves no descriptor behind.
	copied := make(chan struct{})
	go func() { p.outWG.Wait(); close(copied) }()
	select {
	case <-copied:
	case <-time.After(2 * time.Second):
		p.log("output copiers still running after teardown")
	}
	gone := true
	if p.cg != nil {
		// A cgroup that can be removed had no task left; only a busy one
		// needs the kill (which reads every cgroup.procs) first.
		if ok, err := p.cg.DeleteIfEmpty(); !ok || err != nil {
			p.cg.Kill()
			if err := p.cg.Delete(); err != nil {
				p.log("cgroup delete", "err", err)
				gone = false
			}
		}
	}
	// The host ids go back once no process of the run is left: the
	// stage-2 was reaped above (after pid 1, whose exit waits for its pid
	// namespace to empty), and the cgroup holding all of them is gone. A
	// cgroup that could not be removed may still hold a process of the
	// run: its ids stay leased until this host process exits.
	p.lingering = !gone
	if !gone && p.ids != nil {
		p.log("host ids kept: the run's cgroup could not be removed", "uid", p.ids.uid)
	}
	// The supervisor holds pid 1's namespaces (passed with STARTED) until
	// here, so that pid 1 exits without tearing down its mount tree and
	// network namespace (an expedited RCU grace period, a millisecond or
	// more): the last reference goes now, off the run's path, and the
	// host ids only after it. No process is left in them (pid 1 is gone,
	// and the kernel killed the rest of its pid namespace before), and no
	// one else holds a descriptor of them.
	ns, ids := p.nsFDs, p.ids
	p.nsFDs = nil
	if !gone {
		ids = nil
	}
	if len(ns) == 0 || p.discarding {
		closeFDs(ns)
		ids.release()
		return
	}
	go func() {
		closeFDs(ns)
		ids.release()
	}()
}

func (p *Process) finishTimes() {
	end := time.Now()
	p.rec.EndedAt = end.UTC()
	p.rec.DurationMS = ms(end.Sub(p.start))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

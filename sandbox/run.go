package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/cgroup"
	"github.com/toolcell/toolcell/internal/egress"
	"github.com/toolcell/toolcell/seccomp"
)

// Process is a running sandbox.
type Process struct {
	r      *Runner
	pl     *Plan
	set    *capability.Set // pl.set
	cmd    *Cmd
	rec    *audit.Record
	start  time.Time
	cg     *cgroup.Cgroup
	stage2 *stage2Proc
	ctl    int
	msgs   chan ctlMsg

	ctlMu     sync.Mutex
	ctlClosed bool
	cgDone    chan cgResult    // non-nil while the cgroup is made concurrently
	spare     chan spareResult // non-nil while the stage-2 is taken concurrently
	pid1      int

	proxy      *egress.Proxy
	socks      []planSock
	netFlags   uint32
	netClosers []io.Closer

	ids     *idLease // the host uid/gid this run holds (root only)
	release func()   // gives the Runner.MaxConcurrent slot back
	// tempDir is the run's temporary workdir on the host, "" if none.
	tempDir   string
	view      *view     // what the sandbox shows (prepare)
	path, cwd string    // the command's program and working directory in the view
	vplan     *compiled // the view's mount plan and sources, until sent
	landlock  llPlan
	nsFDs     []int // pid 1's namespaces, from STARTED until the run is over
	// socketsServed: the egress relay serves the sockets pid 1 made.
	socketsServed bool
	creds         string    // hostCreds when a pooled sandbox was built
	pooled        bool      // built ahead: pid 1 sends READY
	discarding    bool      // a pooled sandbox ended unused: teardown all at once
	readyAt       time.Time // when a sandbox built ahead was ready
	cgClone       bool      // v2: the stage-2 forks itself into the cgroup, pid 1's parent is that fork
	ready         bool      // READY came: the evidence was read
	collectErr    error
	lingering     bool // the run's cgroup could not be removed: a process may be left
	// idmapped maps an index into rec.Enforcement.Mounts to the host owner its
	// bind was planned idmapped to.
	idmapped map[int]hostOwner

	denials     denialLog
	listener    *seccomp.Listener
	denialsDone chan struct{} // closed when watchDenials ends

	mu       sync.Mutex
	killedBy audit.Reason
	outWG    sync.WaitGroup
	stdout   *capWriter
	stderr   *capWriter
	closers  []io.Closer
	done     chan struct{}
	result   *Result
	ctx      context.Context
}

// newProcess makes the Process of one run of pl (nil: a policy that did
// not compile) with its record begun.
func newProcess(ctx context.Context, r *Runner, pl *Plan, cmd *Cmd) *Process {
	p := &Process{r: r, pl: pl, ctx: ctx, ctl: -1, start: time.Now(), done: make(chan struct{}), release: func() {}}
	id := make([]byte, 8)
	rand.Read(id)
	p.rec = &audit.Record{Schema: audit.Schema, ID: hex.EncodeToString(id), StartedAt: p.start.UTC(),
		Denials: []audit.Denial{}, Network: []audit.NetEvent{}}
	p.rec.Enforcement.Degraded = []string{}
	p.rec.Enforcement.Capabilities = []string{}
	if pl != nil {
		p.set = pl.set
		p.rec.Policy = audit.PolicyRef{Hash: pl.hash, Name: pl.set.Name}
		p.rec.Enforcement.Seccomp = pl.seccompInfo
		p.rec.Enforcement.Degraded = append(p.rec.Enforcement.Degraded, pl.degraded...)
	}
	p.setCommand(cmd)
	if testHookProcess != nil {
		testHookProcess(p)
	}
	return p
}

// setCommand puts cmd, as given, in the record.
func (p *Process) setCommand(cmd *Cmd) {
	p.cmd = cmd
	if cmd == nil {
		return
	}
	p.rec.Tool = cmd.Tool
	if p.rec.Tool == "" {
		p.rec.Tool = filepath.Base(cmd.Path)
	}
	p.rec.Command = audit.CommandRef{Path: cmd.Path, Args: append([]string{}, cmd.Args...), Cwd: cmd.Dir, EnvNames: []string{"PATH"}}
	if p.pl != nil {
		p.rec.Command.EnvNames = append([]string{}, p.pl.envNames...)
	}
}

// failed ends a run whose sandbox was never complete: nothing of it is left
// and its record goes out with the reason setup_failed.
func (p *Process) failed(err error) error {
	err = p.explainAccess(err)
	p.teardown()
	p.endTempWorkdir(false)
	p.rec.Exit = audit.Exit{Reason: audit.ReasonSetupFailed, Code: -1, LimitsHit: []audit.Limit{}}
	p.rec.Error = err.Error()
	p.finishTimes()
	p.release()
	p.audit()
	return &RunError{Err: err, Record: p.rec}
}

func (p *Process) log(msg string, args ...any) {
	if p.r.Logger != nil {
		p.r.Logger.Debug(msg, append([]any{"run", p.rec.ID}, args...)...)
	}
}

// setup builds the sandbox and starts the tool in it.
func (p *Process) setup() error {
	if err := p.checkCommand(); err != nil {
		return err
	}
	if err := p.prepare(); err != nil {
		return err
	}
	return p.launch()
}

func (p *Process) checkCommand() error {
	if p.cmd == nil || p.cmd.Path == "" {
		return fmt.Errorf("%w: empty command", ErrPolicy)
	}
	return nil
}

// prepare builds the sandbox up to the point where its pid 1 waits for the
// command: everything but the command itself.
func (p *Process) prepare() error {
	for _, step := range []func() error{
		p.makeTempWorkdir, // the run's own workdir, when the policy asks for one
		p.leaseHostIDs,    // as root: a host uid and gid no other run holds
		p.startConcurrent, // the cgroup and the stage-2, made meanwhile
		p.planEgress,      // the DNS and relay listeners, the APIs' secrets
		p.ctx.Err,         // canceled meanwhile: stop before the view
		p.planView,        // resolve and open the grants; the Landlock rules
		p.connectStage2,   // the stage-2's control socket, its reader
		p.sendPlan,        // the plan, the cgroup.procs files, the view's sources
	} {
		if err := step(); err != nil {
			return err
		}
	}
	if testHookAfterPlan != nil {
		testHookAfterPlan(p)
	}
	return nil
}

// leaseHostIDs, as root, leases the run's host uid and gid.
func (p *Process) leaseHostIDs() error {
	if os.Geteuid() == 0 {
		rg, from, err := p.r.hostIDRange()
		if err != nil {
			return err
		}
		if p.ids, err = leaseIDs(rg); err != nil {
			return err
		}
		p.log("host ids", "uid", p.ids.uid, "gid", p.ids.gid, "range", from)
	}
	return nil
}

// startConcurrent starts making the cgroup and taking a stage-2 from the
// fork server while the rest of the plan is computed; the stage-2 joins
// the cgroup before it clones pid 1.
func (p *Process) startConcurrent() error {
	// The cgroup is made while the rest of the plan is computed; the
	// stage-2 joins it before it clones pid 1.
	p.cgDone = make(chan cgResult, 1)
	go func() { p.cgDone <- p.makeCgroup() }()
	// So is the stage-2 taken from the fork server.
	p.spare = make(chan spareResult, 1)
	go func() {
		s, ctl, err := p.r.newStage2()
		p.spare <- spareResult{s, ctl, err}
	}()
	return nil
}

// planView resolves the view's grants, opens their sources and checks
// them, and computes the Landlock rules from the view.
func (p *Process) planView() error {
	if testHookBeforeView != nil {
		testHookBeforeView()
	}
	v, err := buildView(p.set, p.tempDir)
	if err != nil {
		return err
	}
	if p.proxy != nil {
		if err := v.generated(p.networkFiles(), "connect"); err != nil {
			return err
		}
	}
	if p.landlock, err = p.planLandlock(v); err != nil {
		return err
	}
	if testHookView != nil {
		testHookView(v)
	}
	if testHookBeforeOpen != nil {
		testHookBeforeOpen()
	}
	plan, err := v.compile()
	if err != nil {
		return err
	}
	p.vplan = plan // closed once sent, or by teardown
	// Only the host's root may idmap a mount of a host file system; the
	// caller's own user namespace already maps the sandbox user to the
	// caller, who then owns what the tool writes.
	writesAs := plan.idmapped // the host ids the tool writes each writable grant as
	if p.ids == nil {
		writesAs = map[int]hostOwner{}
		for i := range plan.idmapped {
			writesAs[i] = hostOwner{uint32(os.Geteuid()), uint32(os.Getegid())}
		}
		plan.noIDMaps()
	}
	p.rec.Enforcement.Mounts = plan.mounts
	p.idmapped = plan.idmapped
	if err := noSetIDFiles(plan.mounts, writesAs); err != nil {
		return err
	}

	p.view = v
	if p.cmd != nil {
		// Known already: a command the view does not hold fails before
		// a stage-2 is spent on it.
		if err := p.resolveInView(); err != nil {
			return err
		}
	}

	if n := len(plan.files); n > maxPlanFDs-maxCgroupFDs {
		return fmt.Errorf("%w: the view binds %d host paths, at most %d are supported", ErrPolicy, n, maxPlanFDs-maxCgroupFDs)
	}
	return nil
}

// connectStage2 waits for the stage-2 taken from the fork server and
// starts reading its control socket.
func (p *Process) connectStage2() error {
	if testHookBeforeStage2 != nil {
		testHookBeforeStage2()
	}
	if err := p.takeStage2(); err != nil {
		return err
	}
	_ = unix.SetsockoptInt(p.ctl, unix.SOL_SOCKET, unix.SO_SNDBUF, maxMsg)
	// With SO_PASSCRED the kernel stamps every message with its sender's
	// pid, translated into our pid namespace: that is how pid 1's host pid
	// is known, without pid 1 (which cannot see it) or a message saying so.
	// The stage-2 sends nothing before it has its plan.
	if err := unix.SetsockoptInt(p.ctl, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		return fmt.Errorf("%w: control socket: SO_PASSCRED: %w", ErrSetup, err)
	}
	p.msgs = make(chan ctlMsg, 8)
	go p.readCtl()
	return nil
}

// sendPlan sends the plan with the cgroup.procs files to join and the
// view's sources.
func (p *Process) sendPlan() error {
	// The stage-2 joins the cgroup itself before it clones pid 1, so pid 1
	// is born in it: on v1 through cgroup.procs files opened here, on v2
	// by forking itself into the directory opened here (see
	// fork_into_cgroup).
	if err := p.joinCgroupSetup(); err != nil {
		return err
	}
	var procs []*os.File
	var err error
	switch {
	case p.cg != nil && p.cg.Version() == cgroup.V2:
		var dir *os.File
		if dir, err = p.cg.OpenDir(); err != nil {
			return fmt.Errorf("%w: join cgroup: %w", ErrSetup, err)
		}
		procs = []*os.File{dir}
		p.cgClone = true
		p.rec.Enforcement.Cgroup.Join = audit.JoinCloneIntoCgroup
	case p.cg != nil:
		if procs, err = p.cg.OpenProcs(); err != nil {
			return fmt.Errorf("%w: join cgroup: %w", ErrSetup, err)
		}
		p.rec.Enforcement.Cgroup.Join = audit.JoinCgroupProcs
	}
	defer func() {
		for _, f := range procs {
			f.Close()
		}
	}()
	if len(procs) > maxCgroupFDs {
		return fmt.Errorf("%w: %d cgroup hierarchies, at most %d supported", ErrSetup, len(procs), maxCgroupFDs)
	}
	// The PLAN carries the cgroup.procs files, then the view's sources (a
	// bind names its source by index), fdChunk per packet.
	plan := p.vplan
	give := make([]int, 0, len(procs)+len(plan.files))
	for _, f := range procs {
		give = append(give, int(f.Fd()))
	}
	for _, f := range plan.files {
		give = append(give, int(f.Fd()))
	}
	ids := p.planIDs()
	flags := p.planFlags()
	if p.pl.notify {
		flags |= planNotify
	}
	flags |= p.netFlags
	if p.pl.memfdSysctl {
		flags |= planMemfd
	}
	if p.r.AllowNoIDMap {
		flags |= planIDMapOpt
	}
	if p.pooled {
		flags |= planReady
	}
	if p.cgClone {
		flags |= planCgroupClone
	}
	m := encodePlan(flags, plan, p.pl.filter.BPF, uint64(p.set.MaxFileSizeOrDefault()), ids, len(procs), p.socks, p.landlock)
	for i := 0; i == 0 || i < len(give); i += fdChunk {
		var oob []byte
		if j := min(i+fdChunk, len(give)); j > i {
			oob = unix.UnixRights(give[i:j]...)
		}
		if i > 0 {
			m = u32msg(msgPlanFDs)
		}
		if err := p.sendFDs(m, oob); err != nil {
			return p.sendErr(err)
		}
	}
	plan.close()
	p.vplan = nil
	return nil
}

// testHookProcess, when set (tests only), sees every Process made.
var testHookProcess func(*Process)

// testHookEvidence, when set (tests only), runs before the evidence of a
// started sandbox is read: the tool already runs.
var testHookEvidence func()

// testHookAfterPlan, when set (tests only), runs after the plan was sent
// and before the EXEC message is.
var testHookAfterPlan func(*Process)

// testHookBeforeView, when set (tests only), runs after the policy was
// validated and before its grants are resolved: a path swapped here is
// what the view's own checks must catch.
var testHookBeforeView func()

// testHookBeforeOpen, when set (tests only), runs after the grants were
// resolved and before they are opened in Go.
var testHookBeforeOpen func()

// testHookView, when set (tests only), may change the view after the
// Landlock rules were computed from it: a view broken on purpose.
var testHookView func(*view)

// testHookBeforeStage2, when set (tests only), runs after the grants were
// resolved and opened in Go and before the stage-2 opens them again: the
// window a path swap would aim at.
var testHookBeforeStage2 func()

// lastCap is the highest capability number the kernel knows, read once.
var lastCap = sync.OnceValue(func() uint32 {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 && n < 64 {
			return uint32(n)
		}
	}
	return 63 // dropping unknown numbers is harmless: EINVAL is ignored
})

var procEntries sync.Map

func sortedKeys(m map[string]string) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}

package sandbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/cgroup"
	"github.com/toolcell/toolcell/internal/egress"
	"github.com/toolcell/toolcell/seccomp"
)

// Cmd is the command to run inside a sandbox, shaped like os/exec.Cmd.
type Cmd struct {
	// Path is the program to run: an absolute path in the view, or a name
	// looked up in the sandbox's PATH.
	Path string
	// Args holds the command line including the program name (Args[0]).
	Args []string
	// Dir is the working directory; default: the Workdir grant, else "/".
	Dir string
	// Collect, when the policy asks for a temporary workdir (Workdir
	// capability.TempWorkdir()), is called with its host path once the
	// tool and every process of the sandbox have ended, before the
	// directory is removed: copy out what the caller wants to keep. Its
	// error is Wait's (the Result is returned too). Not called when the
	// sandbox was never complete (setup failed), nor when a process of the
	// run may be left (its cgroup could not be removed; the directory is
	// then kept, and Wait's error says so). The tool made everything
	// in it: read it through an os.Root (no symlink leads out), and expect
	// any file type (a FIFO blocks a plain read).
	Collect func(dir string) error
	// Tool names the tool in the audit record; default: base name of Path.
	Tool string

	// Stdin is the tool's standard input; nil means /dev/null.
	Stdin io.Reader
	// Stdout and Stderr receive the tool's output, up to MaxOutput bytes
	// each. When nil, the output is captured into Result.Stdout/Stderr.
	Stdout io.Writer
	Stderr io.Writer
}

// Command returns a Cmd for name with args.
func Command(name string, arg ...string) *Cmd {
	return &Cmd{Path: name, Args: append([]string{name}, arg...)}
}

// Result is the outcome of a run whose sandbox was set up.
type Result struct {
	ExitCode int    // the tool's exit status; -1 when it did not exit by itself
	Signal   string // signal that killed the tool, if any
	Reason   string // Record.Exit.Reason
	Stdout   []byte // captured when Cmd.Stdout was nil
	Stderr   []byte
	Audit    *Record
}

// Runner holds the host-side configuration. The zero value is ready to use:
// as root each run gets a host uid/gid of its own (see HostIDs),
// unprivileged the tool runs as the caller.
type Runner struct {
	// HostIDs is the range of host ids runs map their sandbox user to when
	// the host process is root: each run holds one uid and gid of it that
	// no other run (of any host process) holds meanwhile, so that runs
	// share no per-uid kernel limit with each other or the host. Zero: the
	// /etc/subuid and /etc/subgid entries of HostIDsUser; DefaultHostIDs
	// when the host has neither file. It may not hold 0 or 65534.
	HostIDs IDRange
	// HostIDsUser names the subordinate-id entry HostIDs defaults to;
	// default DefaultHostIDsUser ("toolcell").
	HostIDsUser string
	// Cgroup configures where the per-run cgroups are created.
	Cgroup cgroup.Config
	// AllowNoCgroup lets a run go ahead without cgroup limits when no
	// cgroup can be created (rootless without delegation). The record then
	// lists "cgroup" in enforcement.degraded. Off by default: fail closed.
	AllowNoCgroup bool
	// AllowNoSyscallAudit lets a run go ahead on a kernel without seccomp
	// user notification (SECCOMP_RET_USER_NOTIF). The filter then answers
	// denied syscalls with EPERM itself, no denial can be recorded, and the
	// record lists "seccomp_user_notif" in enforcement.degraded. Off by
	// default: fail closed.
	AllowNoSyscallAudit bool
	// AllowNoLandlock lets a run go ahead when the kernel has no Landlock,
	// or an ABI below what the policy needs (3; 4 with egress grants).
	// Whatever the kernel has is applied; enforcement.degraded says what
	// is missing. Off by default: fail closed.
	AllowNoLandlock bool
	// AllowNoIDMap lets a run go ahead when the kernel or a file system
	// cannot idmap a writable grant's mount (see Set.Workdir): that grant
	// is then bound plain, the tool writes there as the run's host uid,
	// not as the grant's owner, and enforcement.degraded names the mount.
	// Only the host's root idmaps; unprivileged, the sandbox user is the
	// caller already. Off by default: fail closed.
	AllowNoIDMap bool
	// Resolver and Dialer are what the egress relay uses to look up and
	// connect granted names on the host; nil means net.DefaultResolver and
	// a net.Dialer. The address checks apply to whatever Resolver returns.
	Resolver Resolver
	Dialer   Dialer
	// Egress caps the relay of each run (zero fields: defaults).
	Egress EgressLimits
	// Secrets resolves the secret references of HTTP API grants; nil
	// means HostSecrets (env:NAME, file:/path).
	Secrets SecretSource
	// UpstreamTLS is the base TLS configuration for HTTP API upstreams
	// (RootCAs, say); nil means the host's roots. ServerName is always
	// the API's host.
	UpstreamTLS *tls.Config
	// Logger receives debug events; nil means no logging.
	Logger *slog.Logger
	// Audit receives every run's record once the run has ended (setup
	// failures included): SlogAudit, JSONLAudit, or your own AuditSink.
	Audit AuditSink
	// MaxConcurrent bounds the runs of this Runner at once; a Start beyond
	// it waits for a slot (or its context: then the error is the
	// context's, and nothing ran). 0 means no bound. Set it before the
	// first run; it is read once.
	MaxConcurrent int
	// OneShot: each run execs its own stage-2, without the fork server
	// (for a process that runs one sandbox and exits: the CLI). See oneshot.go.
	OneShot bool
}

// DefaultRunner is used by the package-level Run and Start.
var DefaultRunner = &Runner{}

// Run runs cmd in a new sandbox built from set and waits for it.
func Run(ctx context.Context, set *capability.Set, cmd *Cmd) (*Result, error) {
	return DefaultRunner.Run(ctx, set, cmd)
}

// Start starts cmd in a new sandbox built from set.
func Start(ctx context.Context, set *capability.Set, cmd *Cmd) (*Process, error) {
	return DefaultRunner.Start(ctx, set, cmd)
}

// Run runs cmd in a new sandbox and waits for it. The error is non-nil only
// when the sandbox could not be set up; the tool's own failure is in the
// Result. Either way a Record is produced (Result.Audit, or *RunError).
func (r *Runner) Run(ctx context.Context, set *capability.Set, cmd *Cmd) (*Result, error) {
	p, err := r.Start(ctx, set, cmd)
	if err != nil {
		return nil, err
	}
	return p.Wait()
}

// RunError is a setup failure together with its audit record.
type RunError struct {
	Err    error
	Record *Record
}

func (e *RunError) Error() string { return e.Err.Error() }
func (e *RunError) Unwrap() error { return e.Err }

// Process is a running sandbox.
type Process struct {
	r      *Runner
	set    *capability.Set
	cmd    *Cmd
	rec    *Record
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
	tempDir    string
	collectErr error
	lingering  bool // the run's cgroup could not be removed: a process may be left
	// idmapped maps an index into rec.Enforce.Mounts to the host owner its
	// bind was planned idmapped to.
	idmapped map[int]hostOwner

	denials     denialLog
	listener    *seccomp.Listener
	denialsDone chan struct{} // closed when watchDenials ends

	mu       sync.Mutex
	killedBy string
	outWG    sync.WaitGroup
	stdout   *capWriter
	stderr   *capWriter
	closers  []io.Closer
	done     chan struct{}
	result   *Result
	ctx      context.Context
}

type ctlMsg struct {
	typ  uint32
	body []byte
	fds  []int // passed with the message (close-on-exec)
	pid  int   // the sender, as the kernel names it in our pid namespace
	err  error
}

// Start builds the sandbox, starts the tool in it, and returns at once.
func (r *Runner) Start(ctx context.Context, set *capability.Set, cmd *Cmd) (*Process, error) {
	release, err := r.acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("sandbox: waiting for a run slot (Runner.MaxConcurrent %d): %w", r.MaxConcurrent, err)
	}
	p := &Process{r: r, set: set, cmd: cmd, ctx: ctx, ctl: -1, start: time.Now(), done: make(chan struct{}), release: release}
	p.rec = newRecord(set, cmd, p.start)
	if err := p.setup(); err != nil {
		err = p.explainAccess(err)
		p.teardown()
		p.endTempWorkdir(false)
		p.rec.Exit = Exit{Reason: ReasonSetupFailed, Code: -1, LimitsHit: []string{}}
		p.rec.Error = err.Error()
		p.finishTimes()
		release()
		p.audit()
		return nil, &RunError{Err: err, Record: p.rec}
	}
	return p, nil
}

// explainAccess adds, to a setup step the kernel refused for lack of
// permission on a path (the working directory, a grant's source), which
// host uid needed the access and what the path allows: as root the tool is
// a uid of the run's own, which a directory only its owner may enter keeps
// out.
func (p *Process) explainAccess(err error) error {
	var se *SetupError
	if errors.As(err, &se) && se.Step == "idmap" {
		fsType := "?"
		var sf unix.Statfs_t
		if unix.Statfs(se.Detail, &sf) == nil {
			fsType = fsName(sf.Type)
		}
		return fmt.Errorf("%w: the kernel cannot idmap the writable grant %s (file system %s), which would make the tool's files its owner's; Runner.AllowNoIDMap runs it without (the tool then writes as host uid %d)",
			err, se.Detail, fsType, p.ids.uid)
	}
	if !errors.As(err, &se) || se.Errno != syscall.EACCES || se.Detail == "" ||
		(se.Step != "chdir" && se.Step != "bind_open") {
		return err
	}
	uid := os.Geteuid()
	if p.ids != nil {
		uid = p.ids.uid
	}
	var st unix.Stat_t
	if unix.Stat(se.Detail, &st) != nil {
		return err
	}
	return fmt.Errorf("%w: host uid %d (the sandbox's uid %d) needed access; %s belongs to uid %d, mode %04o, and every directory above it must let that uid pass",
		err, uid, sandboxUID, se.Detail, st.Uid, st.Mode&0o7777)
}

// fsName names a file system magic number (statfs f_type) of those agents
// commonly write to, else prints it in hex.
func fsName(magic int64) string {
	switch magic {
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs"
	case unix.RAMFS_MAGIC:
		return "ramfs"
	case unix.V9FS_MAGIC:
		return "9p"
	case unix.NFS_SUPER_MAGIC:
		return "nfs"
	case unix.FUSE_SUPER_MAGIC:
		return "fuse"
	}
	return fmt.Sprintf("0x%x", magic)
}

func newRecord(set *capability.Set, cmd *Cmd, start time.Time) *Record {
	id := make([]byte, 8)
	rand.Read(id)
	rec := &Record{Schema: Schema, ID: hex.EncodeToString(id), StartedAt: start.UTC(),
		Denials: []Denial{}, Network: []Conn{}}
	if cmd != nil {
		rec.Tool = cmd.Tool
		if rec.Tool == "" {
			rec.Tool = filepath.Base(cmd.Path)
		}
		rec.Command = CommandRef{Path: cmd.Path, Args: append([]string{}, cmd.Args...), Cwd: cmd.Dir, EnvNames: []string{"PATH"}}
	}
	if set != nil {
		rec.Policy.Name = set.Name
		for k := range set.Env {
			if k != "PATH" {
				rec.Command.EnvNames = append(rec.Command.EnvNames, k)
			}
		}
		for _, kv := range tempWorkdirEnv(set, "") {
			k, _, _ := strings.Cut(kv, "=")
			rec.Command.EnvNames = append(rec.Command.EnvNames, k)
		}
		sort.Strings(rec.Command.EnvNames)
	}
	rec.Enforce.Degraded = []string{}
	rec.Enforce.Capabilities = []string{}
	return rec
}

func (p *Process) log(msg string, args ...any) {
	if p.r.Logger != nil {
		p.r.Logger.Debug(msg, append([]any{"run", p.rec.ID}, args...)...)
	}
}

func (p *Process) setup() error {
	if p.cmd == nil || p.cmd.Path == "" {
		return fmt.Errorf("%w: empty command", ErrPolicy)
	}
	if p.set == nil {
		return fmt.Errorf("%w: nil capability set", ErrPolicy)
	}
	if err := p.set.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	hash, err := p.set.Hash()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	p.rec.Policy.Hash = hash
	if p.set.HasTempWorkdir() {
		if err := p.makeTempWorkdir(); err != nil {
			return err
		}
	}
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
	if err := p.planEgress(); err != nil {
		return err
	}
	if err := p.ctx.Err(); err != nil {
		return err
	}

	pol := SyscallPolicy(p.set)
	denied := pol.DeniedAction
	if err := haveUserNotif(); err != nil {
		if !p.r.AllowNoSyscallAudit {
			return fmt.Errorf("%w: seccomp user notification (denied syscalls cannot be recorded): %w", ErrUnsupported, err)
		}
		denied = seccomp.ActionErrnoEPERM
		p.rec.Enforce.Degraded = append(p.rec.Enforce.Degraded, "seccomp_user_notif: denied syscalls get EPERM from the filter and are not recorded ("+err.Error()+")")
	}
	pol.DeniedAction = denied
	// With a listener, the set*id and setxattr calls reach it too: ids
	// other than the tool's own and security.* and trusted.* attribute
	// names are refused and recorded (the kernel refuses them anyway: the
	// tool holds no capability), the rest run.
	pol.Inspect = denied == seccomp.ActionNotify
	// Executable memfds: the kernel's vm.memfd_noexec = 2 where pid 1 can
	// set it, else the filter refuses every memfd that is not sealed
	// non-executable. The stage-2 sets it (see set_memfd_noexec) where
	// the host process may write /proc/sys: only the global root uid.
	memfdSysctl := memfdSysctlProbe() == nil
	pol.MemfdNoexec = !memfdSysctl
	filter, err := compileFilter(pol)
	if err != nil {
		return fmt.Errorf("%w: seccomp: %w", ErrSetup, err)
	}
	p.rec.Enforce.Seccomp = SeccompInfo{
		DefaultAction: string(filter.DefaultAction), DeniedAction: string(filter.DeniedAction),
		ForeignArchAction: string(filter.ForeignArchAction), Groups: groupNames(pol.Groups),
		GroupsVersion: filter.GroupsVersion, AllowedSyscalls: filter.Allowed,
		Arches: filter.Arches, FilterHash: filter.Hash,
	}
	if slices.Contains(filter.Conditional, "memfd_create") && pol.MemfdNoexec {
		p.rec.Enforce.Seccomp.MemfdCreate = memfdCreateCondition
	}
	if pol.Inspect {
		for _, n := range seccomp.InspectedCalls() {
			if slices.Contains(filter.Conditional, n) {
				p.rec.Enforce.Seccomp.Inspected = append(p.rec.Enforce.Seccomp.Inspected, n)
			}
		}
	}

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
	ll, err := p.planLandlock(v)
	if err != nil {
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
	defer plan.close()
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
	p.rec.Enforce.Mounts = plan.mounts
	p.idmapped = plan.idmapped
	if err := noSetIDFiles(plan.mounts, writesAs); err != nil {
		return err
	}

	path, cwd, err := p.resolveCommand()
	if err != nil {
		return err
	}
	if !v.shows(path) {
		return fmt.Errorf("%w: %s is not in the sandbox's view (grant it with exec, or a directory holding it; /usr comes with base)", ErrNotFound, path)
	}
	p.rec.Command.Path, p.rec.Command.Cwd = path, cwd

	if n := len(plan.files); n > maxPlanFDs-maxCgroupFDs {
		return fmt.Errorf("%w: the view binds %d host paths, at most %d are supported", ErrPolicy, n, maxPlanFDs-maxCgroupFDs)
	}
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

	// The stage-2 joins the cgroup itself, through cgroup.procs files
	// opened here, before it clones pid 1: pid 1 is born in it.
	if err := p.joinCgroupSetup(); err != nil {
		return err
	}
	var procs []*os.File
	if p.cg != nil {
		if procs, err = p.cg.OpenProcs(); err != nil {
			return fmt.Errorf("%w: join cgroup: %w", ErrSetup, err)
		}
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
	give := make([]int, 0, len(procs)+len(plan.files))
	for _, f := range procs {
		give = append(give, int(f.Fd()))
	}
	for _, f := range plan.files {
		give = append(give, int(f.Fd()))
	}
	ids := p.planIDs()
	flags := p.planFlags()
	if denied == seccomp.ActionNotify {
		flags |= planNotify
	}
	flags |= p.netFlags
	if memfdSysctl {
		flags |= planMemfd
	}
	if p.r.AllowNoIDMap {
		flags |= planIDMapOpt
	}
	m := encodePlan(flags, plan, filter.BPF, uint64(p.set.FileSizeLimit()), ids, len(procs), p.socks, ll)
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
	if testHookAfterPlan != nil {
		testHookAfterPlan(p)
	}
	// The EXEC message is queued at once: pid 1 reads it once the view is
	// built, and the supervisor does not sit between the two.
	stdio, err := p.stdio()
	if err != nil {
		return err
	}
	env := []string{"PATH=" + defaultPATH}
	for _, k := range sortedKeys(p.set.Env) {
		if k == "PATH" {
			env[0] = "PATH=" + p.set.Env[k]
			continue
		}
		env = append(env, k+"="+p.set.Env[k])
	}
	env = append(env, tempWorkdirEnv(p.set, cwd)...)
	args := p.cmd.Args
	if len(args) == 0 {
		args = []string{p.cmd.Path}
	}
	m = u32msg(msgExec)
	m = putStr(m, path)
	m = putStr(m, cwd)
	m = putList(m, args)
	m = putList(m, env)
	err = p.sendFDs(m, unix.UnixRights(int(stdio[0].Fd()), int(stdio[1].Fd()), int(stdio[2].Fd())))
	for _, f := range stdio {
		f.Close()
	}
	if err != nil {
		return p.sendErr(err)
	}
	if len(p.socks) > 0 {
		m, err := p.expect(msgSockets)
		if err != nil {
			return err
		}
		if err := p.serveEgress(m.fds); err != nil {
			return err
		}
	}
	m2, err := p.expect(msgStarted)
	if err != nil {
		return err
	}
	p.pid1 = m2.pid
	nsFDs := m2.fds
	if err := p.memfdEvidence(m2.body, memfdSysctl); err != nil {
		closeFDs(m2.fds)
		return err
	}
	if denied == seccomp.ActionNotify {
		// The tool may already be waiting on a denied call: answer first.
		if err := p.startDenialWatch(m2.fds); err != nil {
			closeFDs(m2.fds)
			return err
		}
		nsFDs = m2.fds[:len(m2.fds)-1]
	}
	// The tool runs while its evidence is read: pid 1 holds the state the
	// tool started from and waits for DONE before it exits.
	p.readEvidence(nsFDs)
	closeFDs(nsFDs)
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
	p.rec.SetupMS = ms(time.Since(p.start))
	p.log("started", "setup_ms", p.rec.SetupMS)
	go p.supervise()
	return nil
}

// SyscallPolicy is the seccomp policy a run of set gets: the base and exec
// groups always (every program needs the first; the tool itself is exec'd
// under the filter), plus one group per syscall capability of set
// (capability.Set.SyscallKinds; all of them by default). Denied syscalls go
// to the supervisor, which records them and answers EPERM. (With
// Runner.AllowNoSyscallAudit on a kernel without user notification, the
// filter answers EPERM itself.)
func SyscallPolicy(set *capability.Set) seccomp.Policy {
	groups := []seccomp.Group{seccomp.GroupBase, seccomp.GroupExec}
	for _, k := range set.SyscallKinds() {
		groups = append(groups, seccomp.Group(k))
	}
	if len(set.Egress) > 0 || len(set.APIs) > 0 {
		groups = append(groups, seccomp.GroupNetwork)
	}
	return seccomp.Policy{Groups: groups, DeniedAction: seccomp.ActionNotify}
}

func groupNames(gs []seccomp.Group) []string {
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = string(g)
	}
	sort.Strings(out)
	return out
}

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

// haveUserNotif is the kernel probe; tests replace it to take the
// degraded path.
var haveUserNotif = seccomp.HaveUserNotif

// memfdNoexecPath is vm.memfd_noexec (Linux 6.3+), kept per pid namespace.
const memfdNoexecPath = "/proc/sys/vm/memfd_noexec"

// memfdCreateCondition is what the record says of the filter's fallback.
const memfdCreateCondition = "allowed only with MFD_NOEXEC_SEAL and without MFD_EXEC (vm.memfd_noexec cannot be set here)"

// memfdSysctlProbe says whether the stage-2 can set vm.memfd_noexec for
// pid 1's pid namespace. The kernel lets only the global root uid write
// /proc/sys (and a read-only /proc/sys nobody); the stage-2's writer child
// has the host process's credentials again (see set_memfd_noexec), so the
// kernel's access check for this process (effective ids, the same
// permission hook) answers for it. Tests replace it to take the seccomp
// fallback.
var memfdSysctlProbe = func() error {
	return unix.Faccessat(unix.AT_FDCWD, memfdNoexecPath, unix.W_OK, unix.AT_EACCESS)
}

// memfdEvidence records vm.memfd_noexec as pid 1 read it (STARTED's second
// word). When pid 1 was to set it, anything but 2 fails the run.
func (p *Process) memfdEvidence(body []byte, planned bool) error {
	if len(body) < 8 {
		return fmt.Errorf("%w: protocol: STARTED has %d bytes, want 8", ErrSetup, len(body))
	}
	v := int(int32(binary.NativeEndian.Uint32(body[4:])))
	if v >= 0 {
		p.rec.Enforce.MemfdNoexec = &v
	}
	if planned && v != 2 {
		return fmt.Errorf("%w: vm.memfd_noexec in the sandbox is %d after pid 1 set it to 2", ErrSetup, v)
	}
	return nil
}

// startDenialWatch takes the filter's listener, the last descriptor passed
// with STARTED, after checking with the kernel that it is one.
func (p *Process) startDenialWatch(fds []int) error {
	if len(fds) != nsCount+1 {
		return fmt.Errorf("%w: pid 1 passed %d descriptors with STARTED, want %d (namespaces and the seccomp listener)", ErrSetup, len(fds), nsCount+1)
	}
	fd := fds[len(fds)-1]
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
	p.rec.Enforce.Notes = append(p.rec.Enforce.Notes, notes...)
}

func (p *Process) planFlags() uint32 {
	if p.ids != nil {
		return planDropGroups | planRunIDs
	}
	return 0
}

// joinCgroupSetup waits for a cgroup made concurrently (v1).
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

func (p *Process) joinCgroupSetup() error {
	if p.cgDone == nil {
		return nil
	}
	r := <-p.cgDone
	p.cgDone = nil
	if r.cg != nil {
		p.cg = r.cg
		p.rec.Enforce.Cgroup = r.info
	}
	if r.degraded != "" {
		p.rec.Enforce.Degraded = append(p.rec.Enforce.Degraded, r.degraded)
	}
	return r.err
}

// cgResult is a cgroup made concurrently with the rest of the setup; it
// reaches the record in joinCgroupSetup.
type cgResult struct {
	cg       *cgroup.Cgroup
	info     CgroupInfo
	degraded string
	err      error
}

func (p *Process) makeCgroup() cgResult {
	lim := cgroup.Limits{MemoryBytes: int64(p.set.MemoryLimit()), Pids: p.set.PidsLimit(), CPU: p.set.CPULimit()}
	cg, err := cgroup.New(p.r.Cgroup, "toolcell-"+p.rec.ID, lim)
	if err != nil {
		if p.r.AllowNoCgroup {
			return cgResult{degraded: "cgroup: no limits on memory, pids, cpu (" + strings.TrimPrefix(err.Error(), "cgroup: ") + ")"}
		}
		return cgResult{err: fmt.Errorf("%w: %w", ErrUnsupported, err)} // err says "cgroup: ..."
	}
	return cgResult{cg: cg, info: CgroupInfo{Version: cg.Version().String(), Path: cg.Path(), Limits: map[string]string{
		"memory_bytes": strconv.FormatInt(lim.MemoryBytes, 10),
		"swap_bytes":   "0",
		"pids":         strconv.FormatInt(lim.Pids, 10),
		"cpu":          strconv.FormatFloat(lim.CPU, 'f', -1, 64),
	}}}
}

// planIDs maps the sandbox user to an unprivileged host id: the run's own
// leased ids when we are root, the caller's own ids otherwise. As root the
// stage-2 becomes that uid/gid before it creates the user namespace, so the
// namespace is owned, and its counts charged, by the run's uid, not root's.
// Either way the stage-2 then writes pid 1's maps as an unprivileged owner
// may: its own ids only, setgroups denied first.
func (p *Process) planIDs() planIDs {
	hu, hg := os.Geteuid(), os.Getegid()
	if p.ids != nil {
		hu, hg = p.ids.uid, p.ids.gid
	}
	ids := planIDs{uid: uint32(hu), gid: uint32(hg),
		uidMap: fmt.Sprintf("%d %d 1\n", sandboxUID, hu),
		gidMap: fmt.Sprintf("%d %d 1\n", sandboxGID, hg),
		limits: sandboxUserLimits(p.set)}
	p.rec.Enforce.UIDMap = strings.TrimSpace(ids.uidMap)
	p.rec.Enforce.GIDMap = strings.TrimSpace(ids.gidMap)
	p.rec.Enforce.UserLimits = map[string]int64{}
	for _, l := range ids.limits {
		p.rec.Enforce.UserLimits[l.name] = l.value
	}
	return ids
}

// planIDs is the identity part of the plan.
type planIDs struct {
	uid, gid       uint32 // host ids the stage-2 becomes (planRunIDs)
	uidMap, gidMap string
	limits         []userLimit
}

// nsGetNSType is NS_GET_NSTYPE from linux/nsfs.h: _IO(0xb7, 0x3).
const nsGetNSType = 0xb703

// sandboxNamespaces are the namespaces every run gets, in the order pid 1
// passes their descriptors (TC_NS_NAMES in stage2.h), with their types.
var sandboxNamespaces = []struct {
	name string
	typ  int
}{
	{"user", unix.CLONE_NEWUSER}, {"mnt", unix.CLONE_NEWNS}, {"net", unix.CLONE_NEWNET},
	{"pid", unix.CLONE_NEWPID}, {"ipc", unix.CLONE_NEWIPC}, {"uts", unix.CLONE_NEWUTS},
	{"cgroup", unix.CLONE_NEWCGROUP},
}

// namespaceEvidence records each namespace of pid 1 that differs from the
// supervisor's own. pid 1 passes descriptors of its namespaces (it is not
// dumpable, so an unprivileged supervisor could not open them from /proc);
// the kernel confirms each one's type (NS_GET_NSTYPE) and identity (its
// nsfs inode), so a wrong or missing descriptor is a note, never a claim.
func (p *Process) namespaceEvidence(fds []int) {
	if len(fds) != len(sandboxNamespaces) {
		p.rec.Enforce.Notes = append(p.rec.Enforce.Notes, fmt.Sprintf("evidence: pid 1 passed %d namespace descriptors, want %d", len(fds), len(sandboxNamespaces)))
		return
	}
	for i, ns := range sandboxNamespaces {
		typ, err := unix.IoctlRetInt(fds[i], nsGetNSType)
		if err != nil || typ != ns.typ {
			p.rec.Enforce.Notes = append(p.rec.Enforce.Notes, fmt.Sprintf("evidence: descriptor for namespace %s has type %#x (%v)", ns.name, typ, err))
			continue
		}
		var theirs, mine unix.Stat_t
		if err := unix.Fstat(fds[i], &theirs); err != nil {
			p.rec.Enforce.Notes = append(p.rec.Enforce.Notes, "evidence: namespace "+ns.name+": "+err.Error())
			continue
		}
		if err := unix.Stat("/proc/self/ns/"+ns.name, &mine); err != nil {
			p.rec.Enforce.Notes = append(p.rec.Enforce.Notes, "evidence: own namespace "+ns.name+": "+err.Error())
			continue
		}
		if theirs.Dev != mine.Dev || theirs.Ino != mine.Ino {
			p.rec.Enforce.Namespaces = append(p.rec.Enforce.Namespaces, ns.name)
		}
	}
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// readEvidence reads, from the kernel, what pid 1 of the sandbox holds
// after it dropped privileges: the tool starts from exactly this state.
func (p *Process) readEvidence(nsFDs []int) {
	if testHookEvidence != nil {
		testHookEvidence()
	}
	p.namespaceEvidence(nsFDs)
	// pid 1 stays alive until DONE, but check it is still the stage-2's
	// child before trusting its number.
	// A pidfd pins the process checked here: if it still exists after the
	// reads, its number was not reused in between.
	pidfd, err := unix.PidfdOpen(p.pid1, 0)
	if err != nil {
		p.rec.Enforce.Notes = append(p.rec.Enforce.Notes, "evidence: pid 1 is gone: "+err.Error())
		return
	}
	defer unix.Close(pidfd)
	if stat, err := readProc(p.pid1, "stat"); err != nil || !parentIs(stat, p.stage2.pid) {
		p.rec.Enforce.Notes = append(p.rec.Enforce.Notes, "evidence: pid 1 is gone or not the stage-2's child")
		return
	}
	defer func() {
		if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); err != nil {
			p.rec.Enforce.Notes = append(p.rec.Enforce.Notes, "evidence: pid 1 ended while it was read: "+err.Error())
			p.rec.Enforce.CapSets, p.rec.Enforce.Capabilities, p.rec.Enforce.NoNewPrivs = nil, nil, false
		}
	}()
	if b, err := readProc(p.pid1, "uid_map"); err == nil {
		p.rec.Enforce.UIDMap = strings.Join(strings.Fields(string(b)), " ")
	}
	if b, err := readProc(p.pid1, "gid_map"); err == nil {
		p.rec.Enforce.GIDMap = strings.Join(strings.Fields(string(b)), " ")
	}
	if b, err := readProc(p.pid1, "limits"); err == nil {
		p.rec.Enforce.Rlimits = parseLimits(string(b))
	}
	if b, err := readProc(p.pid1, "mountinfo"); err == nil {
		notes, idmapped := mountsFromKernel(p.rec.Enforce.Mounts, string(b))
		p.rec.Enforce.Notes = append(p.rec.Enforce.Notes, notes...)
		p.idmapEvidence(idmapped)
	} else {
		p.rec.Enforce.Notes = append(p.rec.Enforce.Notes, "evidence: cannot read pid 1's mount table: "+err.Error())
		for i := range p.rec.Enforce.Mounts {
			p.rec.Enforce.Mounts[i].Mode = "unverified"
		}
	}
	status, err := readProc(p.pid1, "status")
	if err != nil {
		p.rec.Enforce.Notes = append(p.rec.Enforce.Notes, "evidence: cannot read pid 1 status: "+err.Error())
		return
	}
	sets := map[string]string{}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb":
			sets[k] = v
		case "NoNewPrivs":
			p.rec.Enforce.NoNewPrivs = v == "1"
		}
	}
	p.rec.Enforce.CapSets = sets
	eff, _ := strconv.ParseUint(sets["CapEff"], 16, 64)
	for i := 0; i < 64; i++ {
		if eff&(1<<i) != 0 {
			p.rec.Enforce.Capabilities = append(p.rec.Enforce.Capabilities, "cap_"+strconv.Itoa(i))
		}
	}
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

// stdio returns the three descriptors handed to the tool.
func (p *Process) stdio() ([3]*os.File, error) {
	var out [3]*os.File
	fail := func(err error) ([3]*os.File, error) {
		for _, f := range out {
			if f != nil {
				f.Close()
			}
		}
		return [3]*os.File{}, fmt.Errorf("%w: stdio: %w", ErrSetup, err)
	}
	in := p.cmd.Stdin
	if f, ok := in.(*os.File); ok {
		// A regular file is reopened read-only and a pipe passed as is;
		// anything else (a terminal, a socket) is copied through a pipe,
		// so the tool never holds the caller's terminal.
		pass, ok, err := passThroughStdin(f)
		if err != nil {
			return fail(err)
		}
		if ok {
			out[0] = pass
			in = nil
		}
	}
	switch {
	case out[0] != nil:
	case in == nil:
		f, err := os.Open(os.DevNull)
		if err != nil {
			return fail(err)
		}
		out[0] = f
	default:
		pr, pw, err := os.Pipe()
		if err != nil {
			return fail(err)
		}
		out[0] = pr
		p.closers = append(p.closers, pw)
		go func() {
			io.Copy(pw, in)
			pw.Close()
		}()
	}
	limit := int64(p.set.OutputLimit())
	for i, dst := range []io.Writer{p.cmd.Stdout, p.cmd.Stderr} {
		pr, pw, err := os.Pipe()
		if err != nil {
			return fail(err)
		}
		out[i+1] = pw
		w := &capWriter{dst: dst, limit: limit, onLimit: func() { p.kill(ReasonOutputLimit) }}
		if p.set.OutputOverflow == capability.OverflowTruncate {
			w.onLimit = func() {} // the rest is counted, not kept
		}
		if dst == nil {
			w.dst = &w.buf
		}
		if i == 0 {
			p.stdout = w
		} else {
			p.stderr = w
		}
		p.outWG.Add(1)
		go func() {
			defer p.outWG.Done()
			io.Copy(w, pr)
			pr.Close()
		}()
	}
	return out, nil
}

func passThroughStdin(in *os.File) (*os.File, bool, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(in.Fd()), &st); err != nil {
		return nil, false, err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		f, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", in.Fd()), os.O_RDONLY, 0)
		return f, err == nil, err
	case unix.S_IFIFO:
		fd, err := unix.FcntlInt(in.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil, false, err
		}
		return os.NewFile(uintptr(fd), "stdin"), true, nil
	}
	return nil, false, nil
}

// capWriter passes through at most limit bytes and counts the rest.
type capWriter struct {
	dst       io.Writer
	buf       bytes.Buffer
	limit     int64
	n         int64
	truncated bool
	onLimit   func()
}

func (w *capWriter) Write(b []byte) (int, error) {
	w.n += int64(len(b))
	room := w.limit - (w.n - int64(len(b)))
	if room < 0 {
		room = 0
	}
	if int64(len(b)) > room {
		if !w.truncated {
			w.truncated = true
			w.onLimit()
		}
		if room > 0 {
			w.dst.Write(b[:room])
		}
		return len(b), nil
	}
	if _, err := w.dst.Write(b); err != nil {
		return len(b), nil // a failing caller writer must not stall the tool
	}
	return len(b), nil
}

// kill ends the whole sandbox, remembering the first reason.
func (p *Process) kill(reason string) {
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
	timeout := p.set.TimeoutLimit()
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
			p.kill(ReasonTimeout)
		case <-done:
			done = nil // once: a closed channel would spin
			p.kill(ReasonCanceled)
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
	res := &Result{ExitCode: -1, Audit: p.rec}
	if p.cg != nil {
		if !statsRead {
			st, stErr = p.cg.Stats()
		}
		err := stErr
		if err != nil {
			p.rec.Resources.Notes = append(p.rec.Resources.Notes, "stats: "+err.Error())
		}
		p.rec.Resources = Resources{CPUUserUS: st.CPUUserUsec, CPUSystemUS: st.CPUSystemUsec,
			MemoryPeakBytes: st.MemoryPeakBytes, PidsPeak: st.PidsPeak, OOMKills: st.OOMKills,
			PidsMaxEvents: st.PidsMaxEvents, CPUThrottled: st.CPUThrottled,
			Notes: append(p.rec.Resources.Notes, st.Notes...)}
	}
	p.mu.Lock()
	killedBy := p.killedBy
	p.mu.Unlock()
	switch {
	case execErr != nil:
		res.Reason = ReasonSetupFailed
		p.rec.Error = execErr.Error()
		res.ExitCode = 127
	case status != nil && status.Exited():
		res.ExitCode = status.ExitStatus()
		res.Reason = ReasonExited
	case status != nil && status.Signaled():
		res.Signal = unix.SignalName(status.Signal())
		res.Reason = ReasonSignaled
		if status.Signal() == unix.SIGSYS {
			res.Reason = ReasonSeccompKill
		}
	default:
		res.Signal = "SIGKILL"
		res.Reason = ReasonSignaled
	}
	if killedBy != "" && (status == nil || !status.Exited()) {
		res.Reason = killedBy
	} else if killedBy == ReasonOutputLimit {
		res.Reason = killedBy
	}
	// The kernel's OOM killer picks a process of the cgroup, not always the
	// tool itself (a shell's child, say): any OOM kill in a run that did not
	// succeed is the reason.
	if p.rec.Resources.OOMKills > 0 && (res.Reason == ReasonSignaled || (res.Reason == ReasonExited && res.ExitCode != 0)) {
		res.Reason = ReasonOOM
	}
	p.rec.Output = Output{StdoutBytes: p.stdout.n, StderrBytes: p.stderr.n,
		StdoutTruncated: p.stdout.truncated, StderrTruncated: p.stderr.truncated}
	p.rec.Exit = Exit{Reason: res.Reason, Code: res.ExitCode, Signal: res.Signal,
		LimitsHit: limitsHit(res.Reason, res.Signal, p.rec.Resources, p.rec.Output)}
	if p.cmd.Stdout == nil {
		res.Stdout = p.stdout.buf.Bytes()
	}
	if p.cmd.Stderr == nil {
		res.Stderr = p.stderr.buf.Bytes()
	}
	p.teardown()
	p.endTempWorkdir(res.Reason != ReasonSetupFailed)
	p.finishTimes()
	p.release()
	p.audit()
	p.result = res
	close(p.done)
}

// limitsHit says which limits the run ran into, from the cgroup's counters,
// the exit and the output caps.
func limitsHit(reason, signal string, r Resources, o Output) []string {
	hit := []string{}
	add := func(ok bool, l string) {
		if ok {
			hit = append(hit, l)
		}
	}
	add(r.OOMKills > 0, LimitMemory)
	add(r.PidsMaxEvents > 0, LimitPids)
	add(r.CPUThrottled > 0, LimitCPUThrottled)
	add(signal == "SIGXFSZ", LimitFileSize)
	add(o.StdoutTruncated || o.StderrTruncated || reason == ReasonOutputLimit, LimitOutput)
	add(reason == ReasonTimeout, LimitTimeout)
	return hit
}

// Wait waits for the tool to end and returns its result.
func (p *Process) Wait() (*Result, error) {
	<-p.done
	if p.rec.Exit.Reason == ReasonSetupFailed {
		return p.result, &RunError{Err: fmt.Errorf("%w: %s", ErrSetup, p.rec.Error), Record: p.rec}
	}
	return p.result, p.collectErr
}

// Kill ends the sandbox now; Wait reports the reason "canceled".
func (p *Process) Kill() { p.kill(ReasonCanceled) }

func (p *Process) teardown() {
	p.joinCgroupSetup() // a cgroup still being made is removed below
	p.takeStage2()      // a stage-2 still being taken is ended below
	defer p.endDenialWatch()
	defer p.endEgress()
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
	if gone {
		p.ids.release()
	} else if p.ids != nil {
		p.log("host ids kept: the run's cgroup could not be removed", "uid", p.ids.uid)
	}
}

func (p *Process) finishTimes() {
	end := time.Now()
	p.rec.EndedAt = end.UTC()
	p.rec.DurationMS = ms(end.Sub(p.start))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// ---- control socket ----

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
		if m.typ != msgStarted && m.typ != msgSockets {
			closeFDs(m.fds) // only STARTED and SOCKETS carry descriptors
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

func encodePlan(flags uint32, c *compiled, bpf []byte, fsize uint64, ids planIDs, ncg int, socks []planSock, ll llPlan) []byte {
	m := u32msg(msgPlan)
	m = putU32(m, flags)
	m = putU32(m, sandboxUID)
	m = putU32(m, sandboxGID)
	m = putU32(m, lastCap())
	m = putStr(m, "/tmp")
	m = putStr(m, sandboxHost)
	m = putStr(m, "size=4m,nr_inodes=4096,mode=0755")
	m = putStr(m, ids.uidMap)
	m = putStr(m, ids.gidMap)
	m = putU32(m, ids.uid)
	m = putU32(m, ids.gid)
	m = putU32(m, uint32(ncg))
	m = putU32(m, uint32(len(c.files)))
	// An idmapped bind shows its owner's files as the run's host ids,
	// which the sandbox user is mapped to.
	m = putU32(m, uint32(len(c.owners)))
	for _, o := range c.owners {
		m = putStr(m, fmt.Sprintf("%d %d 1\n", o.uid, ids.uid))
		m = putStr(m, fmt.Sprintf("%d %d 1\n", o.gid, ids.gid))
	}
	m = putU32(m, uint32(len(c.ops)))
	for _, o := range c.ops {
		m = putU32(m, o.kind)
		m = putU32(m, o.attr)
		m = putU32(m, o.mode)
		m = putU32(m, uint32(int32(o.fd))) // an index into c.files, or -1
		m = putStr(m, o.a)
		m = putStr(m, o.b)
		m = putU32(m, uint32(o.idmap))
	}
	rl := []struct {
		res      uint32
		cur, max uint64
	}{
		{unix.RLIMIT_CORE, 0, 0},
		{unix.RLIMIT_NOFILE, 1024, 1024},
		{unix.RLIMIT_FSIZE, fsize, fsize},
	}
	m = putU32(m, uint32(len(rl)))
	for _, r := range rl {
		m = putU32(m, r.res)
		m = binary.NativeEndian.AppendUint64(m, r.cur)
		m = binary.NativeEndian.AppendUint64(m, r.max)
	}
	m = putU32(m, uint32(len(ids.limits)))
	for _, l := range ids.limits {
		m = putStr(m, l.name)
		m = putStr(m, strconv.FormatInt(l.value, 10))
	}
	m = putU32(m, uint32(len(bpf)/8))
	m = append(m, bpf...)
	m = putU32(m, uint32(len(socks)))
	for _, s := range socks {
		m = putU32(m, s.kind)
		m = putU32(m, s.addr)
		m = putU32(m, s.port)
	}
	return ll.encode(m)
}

func readProc(pid int, file string) ([]byte, error) {
	return os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
}

// mountsFromKernel replaces each planned mount's mode with what pid 1's
// mount table (/proc/<pid 1>/mountinfo, paths relative to its root) says
// of the topmost mount at that path: the record shows the kernel's view,
// not the plan's. A generated file is no mount of its own: it gets the mode
// of the mount holding it. A mask over a /proc file this kernel does not
// have is "absent"; any other planned mount missing from the table is
// marked "missing" and noted.
// idmapEvidence records the idmap of each writable grant the kernel reports
// idmapped; one planned but not idmapped is degraded (the stage-2 left it
// plain only because the Runner allowed it) or, otherwise, a note.
func (p *Process) idmapEvidence(idmapped map[string]bool) {
	for _, i := range slices.Sorted(maps.Keys(p.idmapped)) {
		m := &p.rec.Enforce.Mounts[i]
		o := p.idmapped[i]
		switch {
		case idmapped[m.Dst]:
			m.IDMap = &IDMap{UID: o.uid, GID: o.gid}
		case p.r.AllowNoIDMap:
			p.rec.Enforce.Degraded = append(p.rec.Enforce.Degraded, fmt.Sprintf(
				"idmap: %s is not idmapped (the kernel or its file system refused): the tool writes there as host uid %d, not as its owner %d",
				m.Dst, p.ids.uid, o.uid))
		default:
			p.rec.Enforce.Notes = append(p.rec.Enforce.Notes, "evidence: planned idmapped mount "+m.Dst+" is not idmapped in pid 1's mount table")
		}
	}
}

// mountsFromKernel sets each mount's mode from pid 1's mountinfo and
// returns notes on mounts missing there and the mount points the kernel
// reports idmapped.
func mountsFromKernel(mounts []MountInfo, mountinfo string) ([]string, map[string]bool) {
	modes := map[string]string{}
	idmapped := map[string]bool{}
	for _, l := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(l)
		if len(f) < 6 {
			continue
		}
		opts := map[string]bool{}
		for _, o := range strings.Split(f[5], ",") {
			opts[o] = true
		}
		mode := "rw"
		if opts["ro"] {
			mode = "ro"
		}
		for _, o := range []string{"nosuid", "nodev", "noexec"} {
			if opts[o] {
				mode += "," + o
			}
		}
		dst := unescapeMountinfo(f[4])
		modes[dst] = mode // later lines are mounted on top
		idmapped[dst] = opts["idmapped"]
	}
	var notes []string
	for i := range mounts {
		m := &mounts[i]
		mode, ok := modes[m.Dst]
		switch {
		case ok:
			m.Mode = mode
		case m.Src == "generated":
			m.Mode = "missing"
			for d := path.Dir(m.Dst); ; d = path.Dir(d) {
				if mode, ok := modes[d]; ok {
					m.Mode = mode
					break
				}
				if d == "/" {
					break
				}
			}
		case m.Src == "mask" && !hostHas(m.Dst):
			m.Mode = "absent"
		default:
			m.Mode = "missing"
			notes = append(notes, "evidence: planned mount "+m.Dst+" is not in pid 1's mount table")
		}
	}
	return notes, idmapped
}

// hostHas reports whether this kernel has a /proc entry (the sandbox's own
// /proc shows the same kernel's entries). The kernel does not change under
// a running process, so each answer is kept.
func hostHas(p string) bool {
	if v, ok := procEntries.Load(p); ok {
		return v.(bool)
	}
	_, err := os.Lstat(p)
	procEntries.Store(p, err == nil)
	return err == nil
}

var procEntries sync.Map

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// parseLimits picks the limits toolcell sets from /proc/<pid>/limits.
func parseLimits(s string) map[string]string {
	names := map[string]string{"Max core file size": "core", "Max open files": "nofile", "Max file size": "fsize"}
	out := map[string]string{}
	for _, l := range strings.Split(s, "\n") {
		for prefix, key := range names {
			if rest, ok := strings.CutPrefix(l, prefix); ok {
				if f := strings.Fields(rest); len(f) >= 2 {
					out[key] = f[0] + "/" + f[1]
				}
			}
		}
	}
	return out
}

// parentIs reports whether a /proc/<pid>/stat line names ppid as parent.
func parentIs(stat []byte, ppid int) bool {
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(s[i+1:])
	return len(f) > 1 && f[1] == strconv.Itoa(ppid)
}

func sortedKeys(m map[string]string) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}

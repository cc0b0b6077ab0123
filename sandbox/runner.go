// The API of one run: the command (Cmd), the host-side configuration
// (Runner), and the result.

package sandbox

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/cgroup"
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
	// Exit says how the run ended, as Audit.Exit does: the reason, the
	// tool's exit status (-1 when it did not exit by itself), the signal
	// that killed it, the limits the run ran into.
	Exit   audit.Exit
	Stdout []byte // captured when Cmd.Stdout was nil
	Stderr []byte
	Audit  *audit.Record
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
// Result. Either way a audit.Record is produced (Result.Audit, or *RunError).
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
	Record *audit.Record
}

func (e *RunError) Error() string { return e.Err.Error() }
func (e *RunError) Unwrap() error { return e.Err }

// Start builds the sandbox, starts the tool in it, and returns at once. It
// is Compile and Plan.Start in one; a caller that runs one policy many
// times compiles it once instead.
func (r *Runner) Start(ctx context.Context, set *capability.Set, cmd *Cmd) (*Process, error) {
	pl, err := r.Compile(set)
	if err != nil {
		p := newProcess(ctx, r, nil, cmd)
		if set != nil {
			p.rec.Policy.Name = set.Name
		}
		p.release = func() {}
		return nil, p.failed(err)
	}
	return pl.Start(ctx, cmd)
}

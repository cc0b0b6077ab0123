package sandbox

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/seccomp"
)

// Plan is a capability set compiled for one Runner: everything that is a
// function of the policy and the host's kernel is worked out once (the
// validation, the policy hash, the seccomp program, the environment), so a
// run of it does only what belongs to that run (its host ids, cgroup, view,
// stage-2). A Plan is immutable and safe for concurrent use; it holds a copy
// of the set, so later changes to the caller's Set do not reach it.
//
// What a Plan does not fix: the view is resolved again for each sandbox (a
// granted path swapped or removed meanwhile is noticed then, not used
// stale), and the Runner's fields are read when each sandbox is built, as
// for Runner.Start: at Plan.Start, or ahead for a Pool's sandboxes.
type Plan struct {
	r    *Runner
	set  *capability.Set
	hash string

	filter      *seccomp.Filter
	seccompInfo audit.SeccompInfo
	notify      bool     // denied syscalls reach the supervisor's listener
	memfdSysctl bool     // the stage-2 sets vm.memfd_noexec in the sandbox
	degraded    []string // what the kernel lacks and the Runner allowed
	env         []string // the tool's environment, less the temp workdir's
	envNames    []string // names of env and the temp workdir's, sorted
}

// Compile compiles set for DefaultRunner.
func Compile(set *capability.Set) (*Plan, error) { return DefaultRunner.Compile(set) }

// Compile checks set and compiles what its runs share. Its errors are
// those Start would return for the same set: ErrPolicy for a bad policy
// (naming the field and the value), ErrUnsupported for a kernel that lacks
// a mechanism the policy needs and r does not allow to go without, ErrSetup
// for a seccomp program libseccomp could not build.
func (r *Runner) Compile(set *capability.Set) (*Plan, error) {
	if set == nil {
		return nil, fmt.Errorf("%w: nil capability set", ErrPolicy)
	}
	set = set.Clone()
	if err := set.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	hash, err := set.Hash()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	pl := &Plan{r: r, set: set, hash: hash, degraded: []string{}}

	pol := seccomp.PolicyFor(set)
	if err := haveUserNotif(); err != nil {
		if !r.AllowNoSyscallAudit {
			return nil, fmt.Errorf("%w: seccomp user notification (denied syscalls cannot be recorded): %w", ErrUnsupported, err)
		}
		pol.DeniedAction = seccomp.ActionErrnoEPERM
		pl.degraded = append(pl.degraded, "seccomp_user_notif: denied syscalls get EPERM from the filter and are not recorded ("+err.Error()+")")
	}
	pl.notify = pol.DeniedAction == seccomp.ActionNotify
	// With a listener, the set*id and setxattr calls reach it too: ids
	// other than the tool's own and security.* and trusted.* attribute
	// names are refused and recorded (the kernel refuses them anyway: the
	// tool holds no capability), the rest run.
	pol.Inspect = pl.notify
	// Executable memfds: the kernel's vm.memfd_noexec = 2 where pid 1 can
	// set it, else the filter refuses every memfd that is not sealed
	// non-executable. The stage-2 sets it (see set_memfd_noexec) where
	// the host process may write /proc/sys: only the global root uid.
	pl.memfdSysctl = memfdSysctlProbe() == nil
	pol.MemfdNoexec = !pl.memfdSysctl
	filter, err := compileFilter(pol)
	if err != nil {
		return nil, fmt.Errorf("%w: seccomp: %w", ErrSetup, err)
	}
	pl.filter = filter
	pl.seccompInfo = audit.SeccompInfo{
		DefaultAction: string(filter.DefaultAction), DeniedAction: string(filter.DeniedAction),
		ForeignArchAction: string(filter.ForeignArchAction), Groups: groupNames(pol.Groups),
		GroupsVersion: filter.GroupsVersion, AllowedSyscalls: filter.Allowed,
		Arches: filter.Arches, FilterHash: filter.Hash,
	}
	if slices.Contains(filter.Conditional, "memfd_create") && pol.MemfdNoexec {
		pl.seccompInfo.MemfdCreate = memfdCreateCondition
	}
	if pol.Inspect {
		for _, n := range seccomp.InspectedCalls() {
			if slices.Contains(filter.Conditional, n) {
				pl.seccompInfo.Inspected = append(pl.seccompInfo.Inspected, n)
			}
		}
	}

	pl.env = []string{"PATH=" + defaultPATH}
	pl.envNames = []string{"PATH"}
	for _, k := range sortedKeys(set.Env) {
		if k == "PATH" {
			pl.env[0] = "PATH=" + set.Env[k]
			continue
		}
		pl.env = append(pl.env, k+"="+set.Env[k])
		pl.envNames = append(pl.envNames, k)
	}
	for _, kv := range tempWorkdirEnv(set, "") {
		k, _, _ := strings.Cut(kv, "=")
		pl.envNames = append(pl.envNames, k)
	}
	sort.Strings(pl.envNames)
	return pl, nil
}

// Hash is the canonical hash of the plan's capability set (the record's
// policy.hash).
func (pl *Plan) Hash() string { return pl.hash }

// Set returns a copy of the capability set the plan was compiled from.
func (pl *Plan) Set() *capability.Set { return pl.set.Clone() }

// Run runs cmd in a new sandbox of the plan and waits for it; see
// Runner.Run.
func (pl *Plan) Run(ctx context.Context, cmd *Cmd) (*Result, error) {
	p, err := pl.Start(ctx, cmd)
	if err != nil {
		return nil, err
	}
	return p.Wait()
}

// Start builds a new sandbox of the plan, starts cmd in it, and returns at
// once; see Runner.Start.
func (pl *Plan) Start(ctx context.Context, cmd *Cmd) (*Process, error) {
	release, err := pl.r.acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("sandbox: waiting for a run slot (Runner.MaxConcurrent %d): %w", pl.r.MaxConcurrent, err)
	}
	p := newProcess(ctx, pl.r, pl, cmd)
	p.release = release
	if err := p.setup(); err != nil {
		return nil, p.failed(err)
	}
	return p, nil
}

//go:build cgo

package seccomp

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"

	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// Action is what the filter does with a syscall.
type Action string

// Actions understood by this package.
const (
	ActionAllow       Action = "allow"
	ActionErrnoEPERM  Action = "errno_eperm"
	ActionErrnoENOSYS Action = "errno_enosys"
	ActionKillProcess Action = "kill_process"
	// ActionNotify suspends the caller and asks the supervisor holding the
	// filter's listener (SECCOMP_RET_USER_NOTIF). toolcell's supervisor
	// records the attempt and always answers EPERM; with no listener left,
	// the kernel answers ENOSYS.
	ActionNotify Action = "user_notif"
)

func (a Action) scmp() (libseccomp.ScmpAction, error) {
	switch a {
	case ActionAllow:
		return libseccomp.ActAllow, nil
	case ActionErrnoEPERM:
		return libseccomp.ActErrno.SetReturnCode(int16(unix.EPERM)), nil
	case ActionErrnoENOSYS:
		return libseccomp.ActErrno.SetReturnCode(int16(unix.ENOSYS)), nil
	case ActionKillProcess:
		return libseccomp.ActKillProcess, nil
	case ActionNotify:
		return libseccomp.ActNotify, nil
	}
	return libseccomp.ActInvalid, fmt.Errorf("seccomp: unknown action %q", a)
}

// Fixed actions of every filter (see doc.go).
const (
	defaultAction     = ActionErrnoENOSYS
	foreignArchAction = ActionKillProcess
	defaultDenied     = ActionErrnoEPERM
)

// maxSyscallNr bounds the scan for syscall numbers libseccomp knows on
// x86_64 (the table of libseccomp 2.5.4 ends at 456).
const maxSyscallNr = 1024

// Policy selects what a sandboxed tool may call.
type Policy struct {
	Groups []Group
	// DeniedAction applies to known syscalls that the groups do not allow
	// and to argument-filtered calls outside their allowed values. Empty
	// means ActionErrnoEPERM.
	DeniedAction Action
	// MemfdNoexec narrows memfd_create, where a group allows it, to memfds
	// sealed non-executable (MFD_NOEXEC_SEAL without MFD_EXEC); any other
	// flags get DeniedAction. For kernels where vm.memfd_noexec = 2 cannot
	// be set for the sandbox, which would enforce the same.
	MemfdNoexec bool
	// Inspect sends every call of InspectedCalls, where a group allows
	// them, to the listener, whose holder answers with Decide: the set*id
	// family with ids other than the tool's own, and setxattr calls for
	// security.* and trusted.* names, are refused; the rest run. Needs
	// DeniedAction ActionNotify. See inspect.go.
	Inspect bool
}

// Filter is a compiled policy.
type Filter struct {
	// BPF is the classic BPF program: an array of struct sock_filter
	// (8 bytes each, native endian), ready for seccomp(SECCOMP_SET_MODE_FILTER).
	BPF []byte
	// Hash is the hex sha256 of BPF.
	Hash string
	// Allowed lists, sorted, every syscall allowed unconditionally or for
	// some argument values.
	Allowed []string
	// Conditional lists, sorted, the allowed syscalls that carry argument
	// conditions.
	Conditional []string
	// Unresolved lists group syscall names the installed libseccomp does
	// not know for x86_64; they fall to DefaultAction.
	Unresolved []string

	DefaultAction     Action
	DeniedAction      Action
	Arches            []string
	ForeignArchAction Action
	GroupsVersion     string
}

func (f *Filter) clone() *Filter {
	c := *f
	c.BPF = append([]byte(nil), f.BPF...)
	c.Allowed = append([]string(nil), f.Allowed...)
	c.Conditional = append([]string(nil), f.Conditional...)
	c.Unresolved = append([]string(nil), f.Unresolved...)
	c.Arches = append([]string(nil), f.Arches...)
	return &c
}

// Rule explains the fate of one syscall under a policy.
type Rule struct {
	Syscall   string
	Action    Action
	Group     Group // the group that allowed it; empty if none did
	Condition string
}

// normalize returns the groups sorted and deduplicated, and the effective
// denied action.
func (p Policy) normalize() ([]Group, Action, error) {
	gs := append([]Group(nil), p.Groups...)
	sort.Slice(gs, func(i, j int) bool { return gs[i] < gs[j] })
	out := gs[:0]
	for i, g := range gs {
		if i == 0 || g != gs[i-1] {
			out = append(out, g)
		}
	}
	d := p.DeniedAction
	if d == "" {
		d = defaultDenied
	}
	switch d {
	case ActionErrnoEPERM, ActionErrnoENOSYS, ActionKillProcess, ActionNotify:
	default:
		return nil, "", fmt.Errorf("seccomp: invalid denied action %q", d)
	}
	if p.Inspect && d != ActionNotify {
		return nil, "", fmt.Errorf("seccomp: Inspect needs denied action %q, not %q", ActionNotify, d)
	}
	return out, d, nil
}

// key is the canonical cache key of a policy.
func (p Policy) key() (string, error) {
	gs, d, err := p.normalize()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(GroupsVersion)
	b.WriteByte('|')
	b.WriteString(string(d))
	for _, g := range gs {
		b.WriteByte('|')
		b.WriteString(string(g))
	}
	if p.MemfdNoexec {
		b.WriteString("|memfd_noexec")
	}
	if p.Inspect {
		b.WriteString("|inspect")
	}
	return b.String(), nil
}

// grant is one allowed syscall in a plan.
type grant struct {
	group Group
	cond  *argFilter // nil: unconditional
}

// plan resolves a policy against a table: which syscall is allowed by which
// group and how. Groups are visited in DefaultGroups order, so the first
// group listing a syscall is the one reported.
func plan(table groupTable, groups []Group, memfdNoexec, inspect bool) (map[string]grant, error) {
	if err := table.validate(groups); err != nil {
		return nil, err
	}
	selected := map[Group]bool{}
	for _, g := range groups {
		selected[g] = true
	}
	order := append(DefaultGroups(), GroupNetwork)
	for _, g := range groups {
		if _, std := defaultTable[g]; !std {
			order = append(order, g) // extra groups of a test table
		}
	}
	grants := map[string]grant{}
	for _, g := range order {
		if !selected[g] {
			continue
		}
		def := table[g]
		for _, n := range def.syscalls {
			if old, ok := grants[n]; !ok || old.cond != nil {
				grants[n] = grant{group: g}
			}
		}
		for i := range def.conditional {
			c := &def.conditional[i]
			if _, ok := grants[c.syscall]; !ok {
				grants[c.syscall] = grant{group: g, cond: c}
			}
		}
	}
	// socket(2): one filter for the union of the selected groups'
	// families, credited to the first group that has any.
	var fams []socketFamily
	var first Group
	for _, g := range order {
		if selected[g] && len(table[g].families) > 0 {
			if first == "" {
				first = g
			}
			fams = append(fams, table[g].families...)
		}
	}
	if len(fams) > 0 {
		if _, ok := grants["socket"]; !ok {
			f := socketFilter(fams)
			grants["socket"] = grant{group: first, cond: &f}
		}
	}
	for n, mode := range noSetIDFilters {
		if g, ok := grants[n]; ok && g.cond == nil {
			f := noSetIDFilter(n, mode)
			grants[n] = grant{group: g.group, cond: &f}
		}
	}
	for n, flags := range map[string]uint{"open": 1, "openat": 2} {
		if g, ok := grants[n]; ok && g.cond == nil {
			f := noSetIDOpenFilter(n, flags)
			grants[n] = grant{group: g.group, cond: &f}
		}
	}
	if g, ok := grants["memfd_create"]; ok && memfdNoexec {
		f := memfdNoexecFilter()
		grants["memfd_create"] = grant{group: g.group, cond: &f}
	}
	for _, n := range InspectedCalls() {
		if g, ok := grants[n]; ok && inspect {
			f := inspectFilter(n)
			grants[n] = grant{group: g.group, cond: &f}
		}
	}
	return grants, nil
}

// Compile compiles p into a BPF program. It builds a libseccomp filter with
// default action ERRNO(ENOSYS), bad-arch action KILL_PROCESS, NNP and TSYNC
// off (the stage-2 sets no_new_privs itself), ALLOW and argument-filtered
// rules for the policy, and an explicit denied-action rule for every other
// syscall libseccomp knows on x86_64.
func Compile(p Policy) (*Filter, error) {
	return compile(p, defaultTable)
}

func compile(p Policy, table groupTable) (*Filter, error) {
	groups, denied, err := p.normalize()
	if err != nil {
		return nil, err
	}
	grants, err := plan(table, groups, p.MemfdNoexec, p.Inspect)
	if err != nil {
		return nil, err
	}
	deniedAct, err := denied.scmp()
	if err != nil {
		return nil, err
	}
	defAct, _ := defaultAction.scmp()
	badArch, _ := foreignArchAction.scmp()
	enosys, _ := ActionErrnoENOSYS.scmp()

	f, err := libseccomp.NewFilter(defAct)
	if err != nil {
		return nil, fmt.Errorf("seccomp: new filter: %w", err)
	}
	defer f.Release()
	// NewFilter adds the native arch only; make it explicit and fail loudly
	// if this is not an x86_64 host libseccomp.
	if ok, err := f.IsArchPresent(libseccomp.ArchAMD64); err != nil || !ok {
		return nil, fmt.Errorf("seccomp: native arch is not x86_64 (present=%v, err=%v)", ok, err)
	}
	if err := f.SetBadArchAction(badArch); err != nil {
		return nil, fmt.Errorf("seccomp: bad arch action: %w", err)
	}
	if err := f.SetNoNewPrivsBit(false); err != nil {
		return nil, fmt.Errorf("seccomp: nnp attribute: %w", err)
	}
	// TSYNC is a load-time flag and off by default; nothing to do.
	// Binary-tree layout needs libseccomp >= 2.5.0 (API level 4). Without it
	// the filter is the default linear layout: slower, same semantics.
	_ = f.SetOptimize(2)

	out := &Filter{
		DefaultAction:     defaultAction,
		DeniedAction:      denied,
		Arches:            []string{"x86_64"},
		ForeignArchAction: foreignArchAction,
		GroupsVersion:     GroupsVersion,
	}

	handled := map[string]bool{}
	names := make([]string, 0, len(grants))
	for n := range grants {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		g := grants[n]
		nr, err := libseccomp.GetSyscallFromNameByArch(n, libseccomp.ArchAMD64)
		if err != nil || nr < 0 {
			out.Unresolved = append(out.Unresolved, n)
			continue
		}
		handled[n] = true
		out.Allowed = append(out.Allowed, n)
		if g.cond == nil {
			if err := f.AddRuleExact(nr, libseccomp.ActAllow); err != nil {
				return nil, fmt.Errorf("seccomp: allow %s: %w", n, err)
			}
			continue
		}
		out.Conditional = append(out.Conditional, n)
		if err := addConds(f, nr, libseccomp.ActAllow, g.cond.allow); err != nil {
			return nil, fmt.Errorf("seccomp: allow %s: %w", n, err)
		}
		if deniedAct == defAct {
			// Denied == default: the unmatched arguments already get it.
			continue
		}
		if err := addConds(f, nr, deniedAct, g.cond.deny); err != nil {
			return nil, fmt.Errorf("seccomp: deny %s: %w", n, err)
		}
	}
	for n := range fixedENOSYS {
		nr, err := libseccomp.GetSyscallFromNameByArch(n, libseccomp.ArchAMD64)
		if err != nil || nr < 0 {
			continue // unknown to libseccomp: the default is ENOSYS anyway
		}
		handled[n] = true
		if err := addRule(f, nr, enosys, defAct); err != nil {
			return nil, fmt.Errorf("seccomp: enosys %s: %w", n, err)
		}
	}
	for nr := 0; nr < maxSyscallNr; nr++ {
		n, err := libseccomp.ScmpSyscall(nr).GetNameByArch(libseccomp.ArchAMD64)
		if err != nil || handled[n] {
			continue
		}
		handled[n] = true
		if err := addRule(f, libseccomp.ScmpSyscall(nr), deniedAct, defAct); err != nil {
			return nil, fmt.Errorf("seccomp: deny %s (%d): %w", n, nr, err)
		}
	}

	bpf, err := exportBPF(f)
	if err != nil {
		return nil, err
	}
	if len(bpf) == 0 || len(bpf)%8 != 0 {
		return nil, fmt.Errorf("seccomp: exported BPF has bad length %d", len(bpf))
	}
	if len(bpf)/8 > 4096 { // BPF_MAXINSNS
		return nil, fmt.Errorf("seccomp: BPF program too long (%d instructions)", len(bpf)/8)
	}
	sum := sha256.Sum256(bpf)
	out.BPF = bpf
	out.Hash = hex.EncodeToString(sum[:])
	return out, nil
}

// addRule adds an unconditional rule. libseccomp refuses rules whose action
// equals the filter default; those are left to the default, same result.
func addRule(f *libseccomp.ScmpFilter, nr libseccomp.ScmpSyscall, act, def libseccomp.ScmpAction) error {
	if act == def {
		return nil
	}
	return f.AddRuleExact(nr, act)
}

// addConds adds one rule per conjunction; libseccomp ANDs the conditions of
// a rule (they test distinct arguments).
func addConds(f *libseccomp.ScmpFilter, nr libseccomp.ScmpSyscall, act libseccomp.ScmpAction, rules []rule) error {
	for _, r := range rules {
		var scs []libseccomp.ScmpCondition
		var desc []string
		for _, c := range r {
			sc, err := libseccomp.MakeCondition(c.arg, libseccomp.CompareMaskedEqual, c.mask, c.value)
			if err != nil {
				return err
			}
			scs = append(scs, sc)
			desc = append(desc, fmt.Sprintf("arg%d&%#x==%#x", c.arg, c.mask, c.value))
		}
		if len(scs) == 0 { // every call
			if err := f.AddRuleExact(nr, act); err != nil {
				return err
			}
			continue
		}
		if err := f.AddRuleConditionalExact(nr, act, scs); err != nil {
			return fmt.Errorf("%s: %w", strings.Join(desc, " && "), err)
		}
	}
	return nil
}

// exportBPF returns the filter's BPF. ExportBPFMem needs libseccomp 2.6;
// on older libraries the program is written to a memfd and read back.
func exportBPF(f *libseccomp.ScmpFilter) ([]byte, error) {
	if b, err := f.ExportBPFMem(); err == nil {
		return b, nil
	} else {
		var verr *libseccomp.VersionError
		if !errors.As(err, &verr) {
			return nil, fmt.Errorf("seccomp: export: %w", err)
		}
	}
	fd, err := unix.MemfdCreate("toolcell-seccomp-bpf", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("seccomp: memfd_create: %w", err)
	}
	file := os.NewFile(uintptr(fd), "toolcell-seccomp-bpf")
	defer file.Close()
	if err := f.ExportBPF(file); err != nil {
		return nil, fmt.Errorf("seccomp: export: %w", err)
	}
	if _, err := file.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("seccomp: export: %w", err)
	}
	b, err := io.ReadAll(file)
	if err != nil {
		return nil, fmt.Errorf("seccomp: export: %w", err)
	}
	return b, nil
}

var cache = struct {
	sync.Mutex
	m map[string]*Filter
}{m: map[string]*Filter{}}

// CompileCached is Compile with a process-wide cache keyed by the canonical
// policy (groups version, denied action, sorted distinct groups). Each call
// returns its own copy, so callers may modify the result.
func CompileCached(p Policy) (*Filter, error) {
	k, err := p.key()
	if err != nil {
		return nil, err
	}
	if f := cacheGet(k); f != nil {
		return f.clone(), nil
	}
	f, err := Compile(p)
	if err != nil {
		return nil, err
	}
	return cachePut(k, f).clone(), nil
}

// cacheGet returns the cached filter for key k, or nil.
func cacheGet(k string) *Filter {
	cache.Lock()
	defer cache.Unlock()
	return cache.m[k]
}

// cachePut caches f under k and returns the cached filter: f, or the one a
// concurrent compile stored first (one canonical entry per key).
func cachePut(k string, f *Filter) *Filter {
	cache.Lock()
	defer cache.Unlock()
	if old, ok := cache.m[k]; ok {
		return old
	}
	cache.m[k] = f
	return f
}

// Explain lists, sorted by name, every syscall libseccomp knows on x86_64
// plus the group syscalls it does not know, with the action the compiled
// policy takes and the group that allowed it. An invalid policy yields nil.
func Explain(p Policy) []Rule {
	groups, denied, err := p.normalize()
	if err != nil {
		return nil
	}
	grants, err := plan(defaultTable, groups, p.MemfdNoexec, p.Inspect)
	if err != nil {
		return nil
	}
	rules := map[string]Rule{}
	for n, g := range grants {
		r := Rule{Syscall: n, Action: ActionAllow, Group: g.group}
		if g.cond != nil {
			r.Condition = fmt.Sprintf("allowed if %s, else %s", g.cond.desc, denied)
			if len(g.cond.allow) == 0 {
				r.Condition = fmt.Sprintf("every call to the listener (%s): %s; others run", denied, g.cond.desc)
			}
		}
		if nr, err := libseccomp.GetSyscallFromNameByArch(n, libseccomp.ArchAMD64); err != nil || nr < 0 {
			r.Action = defaultAction
			r.Condition = "unknown to the installed libseccomp; default action"
		}
		rules[n] = r
	}
	for n, why := range fixedENOSYS {
		rules[n] = Rule{Syscall: n, Action: ActionErrnoENOSYS, Condition: "always: " + why}
	}
	for n, why := range alwaysDenied {
		rules[n] = Rule{Syscall: n, Action: denied, Condition: "always denied: " + why}
	}
	for nr := 0; nr < maxSyscallNr; nr++ {
		n, err := libseccomp.ScmpSyscall(nr).GetNameByArch(libseccomp.ArchAMD64)
		if err != nil {
			continue
		}
		if _, ok := rules[n]; !ok {
			rules[n] = Rule{Syscall: n, Action: denied, Condition: "not granted by any selected group"}
		}
	}
	out := make([]Rule, 0, len(rules))
	for _, r := range rules {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Syscall < out[j].Syscall })
	return out
}

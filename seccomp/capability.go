package seccomp

import "github.com/toolcell/toolcell/capability"

// PolicyFor is the policy a toolcell run under set gets (package sandbox
// compiles it): GroupBase and GroupExec always (every program needs the
// first; the tool itself is exec'd under the filter), one group per syscall
// capability of set (capability.Set.SyscallsOrDefault: all of them by
// default), and GroupNetwork only with an egress or HTTP API grant. Denied
// syscalls go to the supervisor (ActionNotify), which records them and
// answers EPERM. The sandbox adjusts what depends on the host before it
// compiles (Inspect, MemfdNoexec, and with Runner.AllowNoSyscallAudit on a
// kernel without user notification ActionErrnoEPERM).
//
// With Explain and Diff it answers what a policy lets a tool call, and
// whether a change of policy widens that, without running anything.
func PolicyFor(set *capability.Set) Policy {
	groups := []Group{GroupBase, GroupExec}
	for _, k := range set.SyscallsOrDefault() {
		groups = append(groups, Group(k))
	}
	if len(set.Egress) > 0 || len(set.HTTPAPI) > 0 {
		groups = append(groups, GroupNetwork)
	}
	return Policy{Groups: groups, DeniedAction: ActionNotify}
}

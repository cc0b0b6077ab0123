// Package cgroup places every toolcell run in its own Linux control group.
//
// # Why a cgroup per run
//
// A tool invocation is not one process: a shell script forks, pipelines
// spawn helpers, and a misbehaving tool may daemonize. Resource limits set
// with setrlimit apply per process and are trivially escaped by forking, so
// toolcell puts the whole sandbox tree into a fresh cgroup created for that
// run only:
//
//   - Limits apply to the tree. Memory, number of tasks and CPU time are
//     accounted for every descendant, including ones that reparent to init.
//   - Nothing outlives the run. Kill terminates every task in the cgroup,
//     whether or not toolcell still knows its pid, and Delete then removes
//     the (now empty) cgroup. A run that leaves a daemon behind is a bug the
//     caller learns about through an error, not a silent leak.
//   - Stats become audit evidence. Peak memory, peak task count, CPU time and
//     OOM kills are read from the kernel's own counters after the run and can
//     be recorded next to the tool's output, so "why did this tool fail" has
//     an answer that does not depend on the tool's cooperation.
//
// # cgroup v2 (primary target)
//
// On a unified (v2) host a run cgroup is one directory below a parent
// cgroup. New writes
//
//	memory.max       = Limits.MemoryBytes
//	memory.swap.max  = 0            (only if the file exists)
//	pids.max         = Limits.Pids
//	cpu.max          = "<CPU*100000> 100000"
//
// Stats reads cpu.stat (user_usec, system_usec), memory.peak (Linux 5.19+),
// pids.peak (recent kernels), and the oom_kill counter of memory.events.
// When a file is missing the value is reported as 0 and a note explains why
// (Stats.Notes). Kill writes "1" to cgroup.kill (Linux 5.14+), which makes the
// kernel SIGKILL every task of the cgroup atomically with respect to forks.
// A process joins through OpenProcs (v1 and v2), which opens the
// cgroup.procs files for it to write "0" to before it starts anything to
// confine, or on v2 through OpenDir, a descriptor of the cgroup directory
// to clone a child into (clone3 CLONE_INTO_CGROUP: no migration, so no
// wait for an RCU grace period on the cgroup threadgroup lock). The
// sandbox's stage-2 joins before it clones the sandbox's pid 1 (on v2 by
// forking itself into the cgroup), so nothing of the run is ever
// unconfined.
//
// The no-internal-process rule: a non-root v2 cgroup may only hand the
// memory, pids and cpu controllers to its children (cgroup.subtree_control)
// if it contains no processes itself. The default parent is "<own>/toolcell"
// where <own> is the caller's cgroup from /proc/self/cgroup. To create it,
// New enables the controllers in every ancestor's cgroup.subtree_control,
// including <own>. That works when <own> is the root cgroup (exempt from the
// rule, e.g. a VM or a container with its own cgroup namespace where the
// caller runs as PID 1 of the namespace root), when <own> already delegates
// the controllers, or when <own> is empty. If <own> still holds processes
// (typical for a systemd service with Delegate=yes) there are exactly two
// correct options, and New does not pick one silently:
//
//   - set Config.EvacuateSelf: every process in <own> is moved to the leaf
//     "<own>/supervisor" first (what systemd recommends for delegated
//     services), then the controllers are enabled in <own>; or
//   - set Config.Parent to a cgroup that the caller may manage and that has
//     no processes of its own.
//
// Otherwise New fails with an error that names the rule. Parents that New
// had to create are left in place after a successful New (they are shared by
// concurrent runs); only the per-run cgroup is removed by Delete.
//
// # cgroup v1 (hybrid and legacy hosts)
//
// When the v2 tree lacks the controllers (a hybrid host where v2 is mounted
// at /sys/fs/cgroup/unified only for systemd or hugetlb), the v1
// hierarchies memory, pids, cpu and cpuacct are used instead. The run
// cgroup is created as <parent>/<name> in each hierarchy, where <parent>
// defaults to the caller's own cgroup in that hierarchy (v1 has no
// internal-process rule). The equivalents are:
//
//	memory.limit_in_bytes        = Limits.MemoryBytes
//	memory.memsw.limit_in_bytes  = Limits.MemoryBytes  (swap 0; only if the kernel has swap accounting)
//	pids.max                     = Limits.Pids
//	cpu.cfs_period_us / cfs_quota_us = 100000 / CPU*100000
//
// What differs on v1:
//
//   - There is no cgroup.kill. Kill reads cgroup.procs of every hierarchy of
//     the run and SIGKILLs each listed pid (through a pidfd, after checking
//     that the pid still belongs to this cgroup, so a recycled pid is never
//     signalled) until all of them are empty or a 2s deadline passes. The
//     pids limit bounds how many new tasks a fork bomb can make in between.
//   - Peak memory is memory.max_usage_in_bytes (includes page cache, like
//     memory.peak).
//   - OOM kills come from the "oom_kill" line of memory.oom_control
//     (Linux 4.13+); memory.failcnt only counts limit hits and is reported in
//     a note when the counter is missing.
//   - CPU time is cpuacct.usage_user / cpuacct.usage_sys (nanoseconds),
//     falling back to the tick counts of cpuacct.stat.
//   - There is no CLONE_INTO_CGROUP (OpenDir fails); OpenProcs works the
//     same on both.
//
// The kernel interfaces used here are described in
// Documentation/admin-guide/cgroup-v2.rst and
// Documentation/admin-guide/cgroup-v1/ of the Linux source tree.
package cgroup

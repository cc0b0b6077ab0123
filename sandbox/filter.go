// The seccomp side of a run: the memfd fallback when vm.memfd_noexec
// cannot be set. Which syscall groups it gets is seccomp.PolicyFor.

package sandbox

import (
	"sort"

	"github.com/toolcell/toolcell/seccomp"
	"golang.org/x/sys/unix"
)

func groupNames(gs []seccomp.Group) []string {
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = string(g)
	}
	sort.Strings(out)
	return out
}

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

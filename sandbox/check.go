package sandbox

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/toolcell/toolcell/cgroup"
)

// Mechanism is one kernel facility a sandbox relies on.
type Mechanism struct {
	Name     string
	OK       bool
	Required bool // a default run fails without it
	Detail   string
}

// HostReport is what CheckHost found.
type HostReport struct {
	Mechanisms []Mechanism
}

// OK reports whether every required mechanism is present.
func (r *HostReport) OK() bool {
	for _, m := range r.Mechanisms {
		if m.Required && !m.OK {
			return false
		}
	}
	return true
}

// Missing returns the names of the required mechanisms that are absent.
func (r *HostReport) Missing() []string {
	var s []string
	for _, m := range r.Mechanisms {
		if m.Required && !m.OK {
			s = append(s, m.Name)
		}
	}
	return s
}

// CheckHost probes the mechanisms a run needs, without running a sandbox.
// SelfTest runs one and checks the protections from the inside.
func CheckHost() *HostReport {
	r := &HostReport{}
	add := func(name string, required, ok bool, detail string) {
		r.Mechanisms = append(r.Mechanisms, Mechanism{Name: name, OK: ok, Required: required, Detail: detail})
	}
	b, err := os.ReadFile("/proc/sys/user/max_user_namespaces")
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	add("user namespaces", true, err == nil && n > 0, "max_user_namespaces="+strings.TrimSpace(string(b)))

	// Probing with invalid arguments: ENOSYS means the syscall is missing.
	probe := func(nr uintptr, args ...uintptr) bool {
		a := append(args, 0, 0, 0, 0, 0, 0)
		_, _, e := unix.Syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
		return e != unix.ENOSYS
	}
	bad := ^uintptr(0)
	add("mount API (open_tree, move_mount, fsopen, mount_setattr)", true,
		probe(unix.SYS_OPEN_TREE, bad) && probe(unix.SYS_MOVE_MOUNT, bad) && probe(unix.SYS_FSOPEN, 0, bad) && probe(unix.SYS_MOUNT_SETATTR, bad),
		"kernel 5.12+")
	add("openat2 (RESOLVE_IN_ROOT)", true, probe(unix.SYS_OPENAT2, bad), "kernel 5.6+")
	add("close_range", true, probe(unix.SYS_CLOSE_RANGE, bad, 0, bad), "kernel 5.9+ (CLOEXEC flag 5.11+)")

	if err := memfdSysctlProbe(); err == nil {
		add("vm.memfd_noexec", false, true, "set to 2 in each sandbox's pid namespace: no memfd is executable")
	} else {
		add("vm.memfd_noexec", false, false, fmt.Sprintf("cannot be set here (%v: needs Linux 6.3+ and the global root uid); seccomp allows memfd_create only with MFD_NOEXEC_SEAL instead", err))
	}

	acts, err := os.ReadFile("/proc/sys/kernel/seccomp/actions_avail")
	a := strings.Fields(string(acts))
	has := func(s string) bool {
		for _, x := range a {
			if x == s {
				return true
			}
		}
		return false
	}
	add("seccomp filter (errno, kill_process)", true, err == nil && has("errno") && has("kill_process"), strings.TrimSpace(string(acts)))
	add("seccomp user notification", true, has("user_notif"), "records denied syscalls (denials[]); Runner.AllowNoSyscallAudit runs without it")

	info, err := cgroup.Probe()
	switch {
	case err != nil:
		add("cgroup", true, false, err.Error())
	default:
		detail := fmt.Sprintf("%s at %s, controllers %s", info.Version, info.Mountpoint, strings.Join(info.Controllers, ","))
		if len(info.Problems) > 0 {
			detail += "; " + strings.Join(info.Problems, "; ")
		}
		add("cgroup (memory, pids, cpu)", true, info.Writable, detail)
		add("cgroup.kill", false, info.KillSupported, "v2 kills the whole cgroup at once; v1 kills task by task")
	}

	abi, err := landlockABI()
	switch {
	case err != nil:
		add("landlock", true, false, err.Error()+"; Runner.AllowNoLandlock runs without it")
	default:
		add("landlock", true, abi >= llNeedFS, fmt.Sprintf("ABI %d: the second file-system barrier; ABI %d needed, %d with egress grants, %d for signal and abstract socket scoping; Runner.AllowNoLandlock runs with less", abi, llNeedFS, llNeedNet, 6))
	}
	return r
}

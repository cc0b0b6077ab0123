package seccomp

import (
	"fmt"
	"sort"
	"strings"
)

// GroupsVersion identifies the revision of the curated group table below.
// Bump it whenever a group gains or loses a syscall so that cached filters,
// audit records and golden files can tell policies apart.
const GroupsVersion = "2026.3"

// Group names a curated set of syscalls, in the spirit of systemd's
// @system-service style groups but narrowed to what a single tool run needs.
type Group string

// The groups known to this package.
const (
	GroupBase      Group = "base"
	GroupFileRead  Group = "file_read"
	GroupFileWrite Group = "file_write"
	GroupExec      Group = "exec"
	GroupProcess   Group = "process"
	GroupIPCLocal  Group = "ipc_local"
	GroupIoctl     Group = "ioctl"
	// GroupNetwork allows IPv4 and IPv6 stream and datagram sockets and
	// the calls that use them. It is not in DefaultGroups: a run gets it
	// only with an egress grant (PolicyFor).
	GroupNetwork Group = "network"
)

// DefaultGroups returns the groups a run gets by default: every group but
// GroupNetwork, so AF_INET and AF_INET6 sockets stay denied.
func DefaultGroups() []Group {
	return []Group{
		GroupBase, GroupFileRead, GroupFileWrite, GroupExec,
		GroupProcess, GroupIPCLocal, GroupIoctl,
	}
}

// cond is a single "(arg & mask) == value" test on one syscall argument.
// libseccomp cannot AND two tests on the same argument, and a rule without
// conditions silently overrides conditional rules on the same syscall, so
// every argument filter here is a disjoint pair of OR-lists of such tests:
// one list that allows and one that yields the denied action. Together they
// cover every argument value, so no call falls through to the default
// (ENOSYS) action.
type cond struct {
	arg   uint
	mask  uint64
	value uint64
}

// rule is a conjunction of tests on distinct arguments (libseccomp ANDs the
// conditions of one rule; it cannot AND two tests on the same argument).
type rule []cond

// singles makes one single-test rule of each cond.
func singles(cs []cond) []rule {
	out := make([]rule, len(cs))
	for i, c := range cs {
		out[i] = rule{c}
	}
	return out
}

// argFilter is a syscall allowed only for some argument values.
type argFilter struct {
	syscall string
	desc    string // human readable, for Explain
	allow   []rule // any match -> ALLOW
	deny    []rule // any match -> denied action
}

// socketFamily is an address family a group allows sockets of, with the
// socket types it allows (nil: any type).
type socketFamily struct {
	family uint32
	name   string
	types  []uint32
}

// groupDef is the content of one group. socket(2) is filtered from the
// union of the selected groups' families (see socketFilter).
type groupDef struct {
	syscalls    []string
	conditional []argFilter
	families    []socketFamily
}

type groupTable map[Group]groupDef

const low32 = 0xffffffff

// low32In returns tests matching an argument whose low 32 bits are one of
// vals. The kernel reads these arguments as (unsigned) int, so the upper half
// is ignored, as the kernel ignores it.
func low32In(arg uint, vals ...uint32) []cond {
	out := make([]cond, 0, len(vals))
	for _, v := range dedup32(vals) {
		out = append(out, cond{arg: arg, mask: low32, value: uint64(v)})
	}
	return out
}

// low32NotIn returns tests whose union is exactly the set of arguments whose
// low 32 bits are not in vals. It walks a binary trie of vals from the top bit
// down and emits one masked test for every subtree that contains none of them.
func low32NotIn(arg uint, vals ...uint32) []cond { return lowBitsNotIn(arg, 32, vals...) }

// lowBitsNotIn is low32NotIn for the low bits of an argument (bits <= 32).
func lowBitsNotIn(arg uint, bits int, vals ...uint32) []cond {
	var out []cond
	var walk func(bit int, mask, prefix uint32, set []uint32)
	walk = func(bit int, mask, prefix uint32, set []uint32) {
		if len(set) == 0 {
			out = append(out, cond{arg: arg, mask: uint64(mask), value: uint64(prefix)})
			return
		}
		if bit < 0 {
			return // an excluded value
		}
		b := uint32(1) << uint(bit)
		var zero, one []uint32
		for _, v := range set {
			if v&b != 0 {
				one = append(one, v)
			} else {
				zero = append(zero, v)
			}
		}
		walk(bit-1, mask|b, prefix, zero)
		walk(bit-1, mask|b, prefix|b, one)
	}
	walk(bits-1, 0, 0, dedup32(vals))
	return out
}

func dedup32(vals []uint32) []uint32 {
	s := append([]uint32(nil), vals...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// Namespace-creating clone flags (linux/sched.h).
const (
	cloneNewNS     = 0x00020000
	cloneNewCgroup = 0x02000000
	cloneNewUTS    = 0x04000000
	cloneNewIPC    = 0x08000000
	cloneNewUser   = 0x10000000
	cloneNewPID    = 0x20000000
	cloneNewNet    = 0x40000000
	cloneNSFlags   = cloneNewNS | cloneNewCgroup | cloneNewUTS | cloneNewIPC |
		cloneNewUser | cloneNewPID | cloneNewNet
)

// Socket types (the low 4 bits of socket(2)'s type; the rest are
// SOCK_NONBLOCK and SOCK_CLOEXEC).
const (
	sockStream   = 1
	sockDgram    = 2
	sockTypeBits = 4
)

// socketFilter builds the socket(2) filter for the union of families: a
// family with types is allowed only with those (compared on the type's low
// 4 bits), every other family is denied.
func socketFilter(fams []socketFamily) argFilter {
	f := argFilter{syscall: "socket"}
	var all []uint32
	var desc []string
	for _, fm := range fams {
		all = append(all, fm.family)
		fam := cond{arg: 0, mask: low32, value: uint64(fm.family)}
		d := fmt.Sprintf("%s (%d)", fm.name, fm.family)
		if fm.types == nil {
			f.allow = append(f.allow, rule{fam})
			desc = append(desc, d)
			continue
		}
		for _, t := range fm.types {
			f.allow = append(f.allow, rule{fam, {arg: 1, mask: 1<<sockTypeBits - 1, value: uint64(t)}})
		}
		for _, c := range lowBitsNotIn(1, sockTypeBits, fm.types...) {
			f.deny = append(f.deny, rule{fam, c})
		}
		desc = append(desc, d+" with type (arg1 & 0xf) SOCK_STREAM or SOCK_DGRAM")
	}
	f.deny = append(f.deny, singles(low32NotIn(0, all...))...)
	f.desc = "domain (arg0) is " + strings.Join(desc, ", or ")
	return f
}

func cloneFilter() argFilter {
	f := argFilter{
		syscall: "clone",
		desc:    "flags (arg0) contain no CLONE_NEW* namespace flag",
		allow:   []rule{{{arg: 0, mask: cloneNSFlags, value: 0}}},
	}
	for _, fl := range []uint64{cloneNewNS, cloneNewCgroup, cloneNewUTS, cloneNewIPC,
		cloneNewUser, cloneNewPID, cloneNewNet} {
		f.deny = append(f.deny, rule{{arg: 0, mask: fl, value: fl}})
	}
	return f
}

// prctl options that only read state or change the calling process in
// harmless ways. Everything else (PR_SET_MM, PR_CAP_AMBIENT, PR_SET_PTRACER,
// PR_SET_SPECULATION_CTRL, ...) is denied.
var prctlAllowed = []uint32{
	1,          // PR_SET_PDEATHSIG
	2,          // PR_GET_PDEATHSIG
	3,          // PR_GET_DUMPABLE
	4,          // PR_SET_DUMPABLE
	7,          // PR_GET_KEEPCAPS
	15,         // PR_SET_NAME
	16,         // PR_GET_NAME
	21,         // PR_GET_SECCOMP
	22,         // PR_SET_SECCOMP (can only add restrictions)
	23,         // PR_CAPBSET_READ
	29,         // PR_SET_TIMERSLACK
	30,         // PR_GET_TIMERSLACK
	37,         // PR_GET_CHILD_SUBREAPER
	38,         // PR_SET_NO_NEW_PRIVS (can only add restrictions)
	39,         // PR_GET_NO_NEW_PRIVS
	40,         // PR_GET_TID_ADDRESS
	42,         // PR_GET_THP_DISABLE
	0x53564d41, // PR_SET_VMA (naming anonymous mappings; Go and glibc do it)
}

// Set-user-ID and set-group-ID bits (S_ISUID, S_ISGID), and the open
// flags that make open create a file (O_CREAT; __O_TMPFILE, the bit
// O_TMPFILE adds to O_DIRECTORY).
const (
	modeSetID  = 0o6000
	modeSetUID = 0o4000
	modeSetGID = 0o2000
	oCreat     = 0o100
	oTmpfile   = 0o20000000
)

// noSetIDFilters refuse every mode with S_ISUID or S_ISGID in the calls
// that set a file's mode (the chmod family) or create one (creat, mkdir,
// open with O_CREAT or O_TMPFILE). Files a tool writes into a granted
// directory belong to a host user (the run's own uid as root, the caller
// rootless): a set-ID program left there would run as that user for
// whoever starts it on the host, where mounts are not nosuid. Inside the
// sandbox nosuid hides the bits anyway, so a tool loses nothing it could
// use. Each entry: the call, and the argument holding the mode.
var noSetIDFilters = map[string]uint{
	"chmod": 1, "fchmod": 1, "fchmodat": 2, "fchmodat2": 2, "creat": 1, "mkdir": 1, "mkdirat": 2,
}

// noSetIDFilter is the filter for a call of noSetIDFilters.
func noSetIDFilter(name string, mode uint) argFilter {
	return argFilter{
		syscall: name,
		desc:    fmt.Sprintf("mode (arg%d) has neither S_ISUID nor S_ISGID: no set-ID file for the host", mode),
		allow:   []rule{{{arg: mode, mask: modeSetID, value: 0}}},
		deny:    []rule{{{arg: mode, mask: modeSetUID, value: modeSetUID}}, {{arg: mode, mask: modeSetGID, value: modeSetGID}}},
	}
}

// noSetIDOpenFilter is the same for open (flags arg0+1, mode arg0+2) and
// openat (arg1+1, arg1+2): the mode counts only when the call creates.
func noSetIDOpenFilter(name string, flags uint) argFilter {
	mode := flags + 1
	var deny []rule
	for _, create := range []uint64{oCreat, oTmpfile} {
		for _, bit := range []uint64{modeSetUID, modeSetGID} {
			deny = append(deny, rule{{arg: flags, mask: create, value: create}, {arg: mode, mask: bit, value: bit}})
		}
	}
	return argFilter{
		syscall: name,
		desc:    fmt.Sprintf("mode (arg%d) has neither S_ISUID nor S_ISGID, or flags (arg%d) create nothing (no O_CREAT, O_TMPFILE): no set-ID file for the host", mode, flags),
		allow:   []rule{{{arg: mode, mask: modeSetID, value: 0}}, {{arg: flags, mask: oCreat | oTmpfile, value: 0}}},
		deny:    deny,
	}
}

// memfd_create flags (linux/memfd.h): a memfd is created executable (mode
// 0777) unless MFD_NOEXEC_SEAL asks for mode 0666 sealed with F_SEAL_EXEC
// (Linux 6.3+); MFD_EXEC asks for an executable one explicitly.
const (
	mfdNoexecSeal = 0x0008
	mfdExec       = 0x0010
)

// memfdNoexecFilter allows memfd_create only for memfds that can never be
// executed: MFD_NOEXEC_SEAL set and MFD_EXEC clear. It stands in for
// vm.memfd_noexec = 2 where the sandbox cannot set that (see
// Policy.MemfdNoexec). A kernel older than 6.3 refuses the flag (EINVAL), so
// there no memfd can be created at all: each one would be executable.
func memfdNoexecFilter() argFilter {
	return argFilter{
		syscall: "memfd_create",
		desc:    "flags (arg1) have MFD_NOEXEC_SEAL (0x8) and not MFD_EXEC (0x10): the memfd can never be executed",
		allow:   []rule{{{arg: 1, mask: mfdNoexecSeal | mfdExec, value: mfdNoexecSeal}}},
		deny: []rule{
			{{arg: 1, mask: mfdNoexecSeal, value: 0}},
			{{arg: 1, mask: mfdExec, value: mfdExec}},
		},
	}
}

func prctlFilter() argFilter {
	return argFilter{
		syscall: "prctl",
		desc:    "option (arg0) in a read-only/self-only allowlist",
		allow:   singles(low32In(0, prctlAllowed...)),
		deny:    singles(low32NotIn(0, prctlAllowed...)),
	}
}

// defaultTable is the curated group content. Names are libseccomp's x86_64
// names; a name that the installed libseccomp cannot resolve is reported in
// Filter.Unresolved and left to the default (ENOSYS) action.
var defaultTable = groupTable{
	GroupBase: {
		syscalls: []string{
			// memory management
			"mmap", "munmap", "mprotect", "brk", "madvise", "mremap", "msync", "mincore",
			// memory protection keys of its own pages (V8 guards its JIT code with them)
			"pkey_alloc", "pkey_free", "pkey_mprotect",
			// signals aimed at itself (or, via kill, at processes in its own pid namespace)
			"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigsuspend", "rt_sigpending",
			"rt_sigtimedwait", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "sigaltstack",
			"kill", "tgkill", "tkill", "pause", "alarm", "signalfd", "signalfd4",
			// time and timers
			"clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep", "gettimeofday", "time",
			"getitimer", "setitimer", "timer_create", "timer_settime", "timer_gettime",
			"timer_getoverrun", "timer_delete", "timerfd_create", "timerfd_settime", "timerfd_gettime",
			// threads and process lifetime
			"exit", "exit_group", "futex", "futex_waitv", "set_robust_list", "get_robust_list", "rseq",
			"set_tid_address", "restart_syscall", "membarrier", "arch_prctl",
			"sched_yield", "sched_getaffinity", "sched_getparam", "sched_getscheduler",
			"sched_get_priority_max", "sched_get_priority_min", "getcpu",
			// identity and limits (read-only, or own-process only)
			"getpid", "getppid", "gettid", "getuid", "geteuid", "getgid", "getegid", "getgroups",
			"getresuid", "getresgid", "capget", "uname", "sysinfo", "getrusage", "times",
			// set*id: no capability for them, so only the tool's own ids (see Inspect)
			"setuid", "setgid", "setfsuid", "setfsgid", "setreuid", "setregid", "setresuid", "setresgid",
			"prlimit64", "getrlimit", "setrlimit", "umask", "getrandom", "getcwd",
			"getpgrp", "getpgid", "setpgid", "getsid", "setsid", "wait4", "waitid",
			// polling
			"poll", "ppoll", "select", "pselect6", "epoll_create", "epoll_create1", "epoll_ctl",
			"epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2",
			// I/O on already open descriptors
			"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev",
			"preadv2", "pwritev2", "close", "close_range", "dup", "dup2", "dup3", "fcntl", "lseek",
		},
		conditional: []argFilter{
			{
				syscall: "personality",
				desc:    "persona (arg0) is PER_LINUX (0) or the 0xffffffff query",
				allow:   singles(low32In(0, 0, 0xffffffff)),
				deny:    singles(low32NotIn(0, 0, 0xffffffff)),
			},
			prctlFilter(),
		},
	},
	GroupFileRead: {
		syscalls: []string{
			"open", "openat", "stat", "fstat", "lstat", "newfstatat", "statx",
			"access", "faccessat", "faccessat2", "readlink", "readlinkat", "getdents", "getdents64",
			"chdir", "fchdir", "statfs", "fstatfs", "fadvise64", "readahead", "flock",
			"sendfile", "copy_file_range", "splice", "tee", "vmsplice",
			"getxattr", "lgetxattr", "fgetxattr", "listxattr", "llistxattr", "flistxattr",
			"inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch",
		},
	},
	GroupFileWrite: {
		syscalls: []string{
			"mkdir", "mkdirat", "unlink", "unlinkat", "rename", "renameat", "renameat2", "rmdir",
			"creat", "truncate", "ftruncate", "fallocate", "fsync", "fdatasync", "sync_file_range",
			"syncfs", "symlink", "symlinkat", "link", "linkat", "chmod", "fchmod", "fchmodat",
			"fchmodat2", "chown", "fchown", "lchown", "fchownat", "utimensat", "utime", "utimes",
			"futimesat", "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr",
			"fremovexattr",
			// mknod/mknodat are deliberately absent: device nodes are never needed.
		},
	},
	GroupExec: {
		syscalls: []string{"execve", "execveat"},
	},
	GroupProcess: {
		syscalls:    []string{"fork", "vfork", "wait4", "waitid", "pidfd_open", "pidfd_send_signal"},
		conditional: []argFilter{cloneFilter()},
	},
	GroupIPCLocal: {
		syscalls: []string{
			"pipe", "pipe2", "socketpair", "connect", "accept", "accept4", "bind", "listen",
			"sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "shutdown",
			"getsockname", "getpeername", "setsockopt", "getsockopt",
			// memfd_create: anonymous memory files; JITs and some language
			// runtimes need it. It creates no filesystem-visible object.
			"memfd_create",
		},
		families: []socketFamily{{family: 1, name: "AF_UNIX"}},
	},
	GroupNetwork: {
		syscalls: []string{
			"connect", "bind", "listen", "accept", "accept4", "sendto", "recvfrom", "sendmsg",
			"recvmsg", "sendmmsg", "recvmmsg", "shutdown", "getsockname", "getpeername",
			"setsockopt", "getsockopt",
		},
		// Raw, packet, netlink, vsock and alg sockets never: only the
		// stream and datagram types of the internet families.
		families: []socketFamily{
			{family: 2, name: "AF_INET", types: []uint32{sockStream, sockDgram}},
			{family: 10, name: "AF_INET6", types: []uint32{sockStream, sockDgram}},
		},
	},
	GroupIoctl: {
		conditional: []argFilter{ioctlFilter()},
	},
}

// alwaysDenied are never allowed, whatever the groups; Compile fails if a
// group lists one of them. They get the policy's denied action.
var alwaysDenied = map[string]string{
	"ptrace":            "inspects and controls other processes",
	"process_vm_readv":  "reads another process's memory",
	"process_vm_writev": "writes another process's memory",
	"pidfd_getfd":       "steals file descriptors from another process",
	"kcmp":              "compares kernel objects of other processes (info leak)",
	"bpf":               "loads eBPF programs; large kernel attack surface",
	"perf_event_open":   "kernel/hardware profiling; frequent exploit vector",
	"userfaultfd":       "lets races in the kernel be widened at will",
	"io_uring_setup":    "io_uring bypasses seccomp for the operations it performs",
	"io_uring_enter":    "io_uring bypasses seccomp for the operations it performs",
	"io_uring_register": "io_uring bypasses seccomp for the operations it performs",
	"keyctl":            "kernel keyring is not namespaced",
	"add_key":           "kernel keyring is not namespaced",
	"request_key":       "kernel keyring is not namespaced",
	"mount":             "changes the mount table",
	"umount2":           "changes the mount table",
	"pivot_root":        "changes the root mount",
	"chroot":            "changes the root directory (escape primitive)",
	"fsopen":            "new mount API",
	"fsconfig":          "new mount API",
	"fsmount":           "new mount API",
	"fspick":            "new mount API",
	"open_tree":         "new mount API",
	"move_mount":        "new mount API",
	"mount_setattr":     "new mount API",
	"unshare":           "creates namespaces (user namespaces expose kernel attack surface)",
	"setns":             "joins other namespaces",
	"open_by_handle_at": "opens files by handle, bypassing path-based confinement",
	"name_to_handle_at": "companion of open_by_handle_at",
	"kexec_load":        "replaces the running kernel",
	"kexec_file_load":   "replaces the running kernel",
	"init_module":       "loads kernel modules",
	"finit_module":      "loads kernel modules",
	"delete_module":     "unloads kernel modules",
	"reboot":            "reboots the host",
	"swapon":            "host-wide swap configuration",
	"swapoff":           "host-wide swap configuration",
	"syslog":            "reads/clears the kernel log",
	"acct":              "host-wide process accounting",
	"quotactl":          "host-wide quota management",
	"iopl":              "raw I/O port access",
	"ioperm":            "raw I/O port access",
	"lookup_dcookie":    "kernel profiling helper; leaks paths",
	"settimeofday":      "sets the host clock",
	"clock_settime":     "sets the host clock",
	"adjtimex":          "adjusts the host clock",
	"clock_adjtime":     "adjusts the host clock",
}

// fixedENOSYS are answered with ENOSYS whatever the policy, so that libc falls
// back to an older, filterable interface.
var fixedENOSYS = map[string]string{
	// clone3 passes its flags in a struct in memory, which seccomp cannot
	// inspect; glibc falls back to clone(2), whose flags are filtered.
	"clone3": "flags live in memory seccomp cannot read; glibc falls back to clone",
	// openat2 passes its flags and mode in a struct: a set-user-ID mode
	// could not be refused (noSetIDFilters). Its callers fall back to
	// openat, which is filtered.
	"openat2": "flags and mode live in memory seccomp cannot read; callers fall back to openat",
}

// AlwaysDenied returns the sorted names of the syscalls that no policy can
// allow.
func AlwaysDenied() []string {
	out := make([]string, 0, len(alwaysDenied))
	for n := range alwaysDenied {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// validate checks that no group of the table touches an always-denied or
// fixed syscall.
func (t groupTable) validate(groups []Group) error {
	for _, g := range groups {
		def, ok := t[g]
		if !ok {
			return fmt.Errorf("seccomp: unknown group %q", g)
		}
		names := append([]string(nil), def.syscalls...)
		for _, c := range def.conditional {
			names = append(names, c.syscall)
		}
		for _, n := range names {
			if why, bad := alwaysDenied[n]; bad {
				return fmt.Errorf("seccomp: group %q lists always-denied syscall %q (%s)", g, n, why)
			}
			if _, bad := fixedENOSYS[n]; bad {
				return fmt.Errorf("seccomp: group %q lists %q, which is always ENOSYS", g, n)
			}
		}
	}
	return nil
}

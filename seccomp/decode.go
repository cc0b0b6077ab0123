//go:build cgo

package seccomp

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// Audit architecture tokens (linux/audit.h).
const (
	auditArchX8664 = 0xc000003e
	auditArchI386  = 0x40000003
)

// ArchName names an AUDIT_ARCH_* value.
func ArchName(arch uint32) string {
	switch arch {
	case auditArchX8664:
		return "x86_64"
	case auditArchI386:
		return "i386"
	}
	return fmt.Sprintf("arch_%#x", arch)
}

var x8664Names = sync.OnceValue(func() map[int32]string {
	m := map[int32]string{}
	for nr := 0; nr < maxSyscallNr; nr++ {
		if n, err := libseccomp.ScmpSyscall(nr).GetNameByArch(libseccomp.ArchAMD64); err == nil {
			m[int32(nr)] = n
		}
	}
	return m
})

// SyscallName names a syscall number of arch as libseccomp does; unknown
// numbers are "nr_<n>".
func SyscallName(arch uint32, nr int32) string {
	if arch == auditArchX8664 {
		if n, ok := x8664Names()[nr]; ok {
			return n
		}
	}
	return "nr_" + strconv.Itoa(int(nr))
}

// MemReader reads up to len(b) bytes of the caller's memory at addr.
type MemReader func(addr uint64, b []byte) (int, error)

// maxString bounds a string argument read from the caller for the record.
const maxString = 256

// Describe decodes a denied call's arguments into a short, stable signature
// such as `path="/mnt" flags=MS_BIND`: path and name strings (read through
// mem, at most 256 bytes, for the record only), socket families and types,
// clone and namespace flags, ioctl commands, and the operation of
// multiplexed calls (ptrace, prctl, bpf, keyctl, ...). Pointers and other
// values that vary from call to call are left out, so that repeated
// attempts of the same kind share one signature. Calls it has no decoder for
// get "". mem may be nil: strings are then not read.
func Describe(name string, args [6]uint64, mem MemReader) string {
	var parts []string
	str := func(label string, i int) {
		parts = append(parts, label+"="+readString(mem, args[i]))
	}
	num := func(label string, i int) {
		parts = append(parts, label+"="+strconv.FormatInt(int64(int32(args[i])), 10))
	}
	flags := func(label string, v uint64, names []flagName) {
		parts = append(parts, label+"="+flagString(v, names))
	}
	switch name {
	case "mount":
		str("source", 0)
		str("target", 1)
		str("fstype", 2)
		flags("flags", args[3], mountFlags)
	case "umount2":
		str("target", 0)
	case "setxattr", "lsetxattr":
		str("name", 1)
		str("path", 0)
	case "fsetxattr":
		str("name", 1)
		num("fd", 0)
	case "pivot_root":
		str("new_root", 0)
		str("put_old", 1)
	case "chroot", "swapon", "swapoff", "acct", "mknod", "delete_module":
		str("path", 0)
	case "mknodat", "open_tree", "fspick", "mount_setattr", "name_to_handle_at":
		str("path", 1)
	case "move_mount":
		str("from", 1)
		str("to", 3)
	case "fsopen":
		str("fstype", 0)
	case "quotactl":
		str("special", 1)
	case "sethostname", "setdomainname":
		parts = append(parts, "name="+readBytes(mem, args[0], int(args[1])))
	case "clone", "unshare":
		flags("flags", args[0]&^0xff, cloneFlags) // the low byte of clone's is the exit signal
	case "setns":
		flags("nstype", args[1], cloneFlags)
	case "socket", "socketpair":
		parts = append(parts, "family="+lookup(families, args[0]&0xffffffff),
			"type="+sockType(args[1]&0xffffffff))
		num("protocol", 2)
	case "ioctl":
		parts = append(parts, "request="+lookup(ioctls, args[1]&0xffffffff))
	case "ptrace":
		parts = append(parts, "request="+lookup(ptraceReqs, args[0]))
		num("pid", 1)
	case "personality":
		parts = append(parts, fmt.Sprintf("persona=%#x", uint32(args[0])))
	case "prctl":
		parts = append(parts, "option="+lookup(prctlOpts, args[0]&0xffffffff))
	case "bpf":
		parts = append(parts, "cmd="+lookup(bpfCmds, args[0]&0xffffffff))
	case "keyctl":
		num("operation", 0)
	case "add_key", "request_key":
		str("type", 0)
	case "kill", "tkill", "tgkill", "pidfd_open", "process_vm_readv", "process_vm_writev", "kcmp":
		num("pid", 0)
	case "setuid", "setgid", "setfsuid", "setfsgid":
		num("id", 0)
	case "reboot":
		parts = append(parts, fmt.Sprintf("cmd=%#x", uint32(args[2])))
	case "init_module":
		str("params", 2)
	case "finit_module":
		str("params", 1)
	case "perf_event_open":
		num("pid", 1)
		num("cpu", 2)
	case "io_uring_setup":
		num("entries", 0)
	case "memfd_create":
		str("name", 0)
		flags("flags", args[1]&0xffffffff, memfdFlags)
	}
	return strings.Join(parts, " ")
}

func readString(mem MemReader, addr uint64) string {
	if addr == 0 {
		return "NULL"
	}
	if mem == nil {
		return "?"
	}
	var b [maxString]byte
	n := 0
	// Read page by page: a string that ends just before an unmapped page
	// must not fail as a whole.
	for n < len(b) {
		a := addr + uint64(n)
		room := 4096 - int(a%4096)
		if room > len(b)-n {
			room = len(b) - n
		}
		k, err := mem(a, b[n:n+room])
		k = max(0, min(k, room)) // a raw call's -1 is no count
		n += k
		if i := bytes.IndexByte(b[:n], 0); i >= 0 {
			return strconv.Quote(string(b[:i]))
		}
		if err != nil || k < room {
			if n == 0 {
				return unreadable(err)
			}
			break
		}
	}
	return strconv.Quote(string(b[:n])) + "..."
}

func readBytes(mem MemReader, addr uint64, n int) string {
	if mem == nil {
		return "?"
	}
	if n < 0 || n > maxString {
		n = maxString
	}
	b := make([]byte, n)
	k, err := mem(addr, b)
	k = max(0, min(k, n))
	if err != nil && k == 0 {
		return unreadable(err)
	}
	return strconv.Quote(string(b[:k]))
}

// unreadable tells a pointer the caller could not have used either (a bad
// address) from memory the supervisor may not read (no ptrace access).
func unreadable(err error) string {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return "<no access to the caller's memory>"
	}
	return "<unreadable>"
}

type flagName struct {
	v    uint64
	name string
}

func flagString(v uint64, names []flagName) string {
	var out []string
	for _, f := range names {
		if v&f.v == f.v && f.v != 0 {
			out = append(out, f.name)
			v &^= f.v
		}
	}
	if v != 0 || len(out) == 0 {
		out = append(out, fmt.Sprintf("%#x", v))
	}
	return strings.Join(out, "|")
}

func lookup(m map[uint64]string, v uint64) string {
	if n, ok := m[v]; ok {
		return n
	}
	return fmt.Sprintf("%#x", v)
}

func sockType(v uint64) string {
	base := lookup(sockTypes, v&0xf)
	var fl []flagName
	fl = append(fl, flagName{unix.SOCK_CLOEXEC, "SOCK_CLOEXEC"}, flagName{unix.SOCK_NONBLOCK, "SOCK_NONBLOCK"})
	if rest := v &^ 0xf; rest != 0 {
		return base + "|" + flagString(rest, fl)
	}
	return base
}

var cloneFlags = []flagName{
	{unix.CLONE_NEWUSER, "CLONE_NEWUSER"}, {unix.CLONE_NEWNS, "CLONE_NEWNS"},
	{unix.CLONE_NEWPID, "CLONE_NEWPID"}, {unix.CLONE_NEWNET, "CLONE_NEWNET"},
	{unix.CLONE_NEWIPC, "CLONE_NEWIPC"}, {unix.CLONE_NEWUTS, "CLONE_NEWUTS"},
	{unix.CLONE_NEWCGROUP, "CLONE_NEWCGROUP"}, {unix.CLONE_NEWTIME, "CLONE_NEWTIME"},
	{unix.CLONE_VM, "CLONE_VM"}, {unix.CLONE_FS, "CLONE_FS"}, {unix.CLONE_FILES, "CLONE_FILES"},
	{unix.CLONE_SIGHAND, "CLONE_SIGHAND"}, {unix.CLONE_THREAD, "CLONE_THREAD"},
	{unix.CLONE_VFORK, "CLONE_VFORK"}, {unix.CLONE_PARENT, "CLONE_PARENT"},
	{unix.CLONE_PIDFD, "CLONE_PIDFD"}, {unix.CLONE_SYSVSEM, "CLONE_SYSVSEM"},
	{unix.CLONE_SETTLS, "CLONE_SETTLS"}, {unix.CLONE_PARENT_SETTID, "CLONE_PARENT_SETTID"},
	{unix.CLONE_CHILD_CLEARTID, "CLONE_CHILD_CLEARTID"}, {unix.CLONE_CHILD_SETTID, "CLONE_CHILD_SETTID"},
	{unix.CLONE_PTRACE, "CLONE_PTRACE"}, {unix.CLONE_UNTRACED, "CLONE_UNTRACED"},
	{unix.CLONE_IO, "CLONE_IO"},
}

var mountFlags = []flagName{
	{unix.MS_RDONLY, "MS_RDONLY"}, {unix.MS_NOSUID, "MS_NOSUID"}, {unix.MS_NODEV, "MS_NODEV"},
	{unix.MS_NOEXEC, "MS_NOEXEC"}, {unix.MS_REMOUNT, "MS_REMOUNT"}, {unix.MS_BIND, "MS_BIND"},
	{unix.MS_MOVE, "MS_MOVE"}, {unix.MS_REC, "MS_REC"}, {unix.MS_PRIVATE, "MS_PRIVATE"},
	{unix.MS_SLAVE, "MS_SLAVE"}, {unix.MS_SHARED, "MS_SHARED"}, {unix.MS_UNBINDABLE, "MS_UNBINDABLE"},
}

var memfdFlags = []flagName{
	{unix.MFD_CLOEXEC, "MFD_CLOEXEC"}, {unix.MFD_ALLOW_SEALING, "MFD_ALLOW_SEALING"},
	{unix.MFD_HUGETLB, "MFD_HUGETLB"}, {unix.MFD_NOEXEC_SEAL, "MFD_NOEXEC_SEAL"},
	{unix.MFD_EXEC, "MFD_EXEC"},
}

var families = map[uint64]string{
	unix.AF_UNSPEC: "AF_UNSPEC", unix.AF_UNIX: "AF_UNIX", unix.AF_INET: "AF_INET", unix.AF_INET6: "AF_INET6",
	unix.AF_NETLINK: "AF_NETLINK", unix.AF_PACKET: "AF_PACKET", unix.AF_VSOCK: "AF_VSOCK",
	unix.AF_ALG: "AF_ALG", unix.AF_KEY: "AF_KEY", unix.AF_BLUETOOTH: "AF_BLUETOOTH",
	unix.AF_CAN: "AF_CAN", unix.AF_TIPC: "AF_TIPC", unix.AF_XDP: "AF_XDP", unix.AF_RDS: "AF_RDS",
}

var sockTypes = map[uint64]string{
	unix.SOCK_STREAM: "SOCK_STREAM", unix.SOCK_DGRAM: "SOCK_DGRAM", unix.SOCK_RAW: "SOCK_RAW",
	unix.SOCK_SEQPACKET: "SOCK_SEQPACKET", unix.SOCK_RDM: "SOCK_RDM", unix.SOCK_PACKET: "SOCK_PACKET",
}

var ioctls = map[uint64]string{
	unix.TIOCSTI: "TIOCSTI", unix.TIOCLINUX: "TIOCLINUX",
}

var ptraceReqs = map[uint64]string{
	unix.PTRACE_TRACEME: "PTRACE_TRACEME", unix.PTRACE_PEEKTEXT: "PTRACE_PEEKTEXT",
	unix.PTRACE_PEEKDATA: "PTRACE_PEEKDATA", unix.PTRACE_POKETEXT: "PTRACE_POKETEXT",
	unix.PTRACE_POKEDATA: "PTRACE_POKEDATA", unix.PTRACE_CONT: "PTRACE_CONT",
	unix.PTRACE_KILL: "PTRACE_KILL", unix.PTRACE_ATTACH: "PTRACE_ATTACH",
	unix.PTRACE_DETACH: "PTRACE_DETACH", unix.PTRACE_SEIZE: "PTRACE_SEIZE",
	unix.PTRACE_GETREGS: "PTRACE_GETREGS", unix.PTRACE_SETREGS: "PTRACE_SETREGS",
	unix.PTRACE_SYSCALL: "PTRACE_SYSCALL",
}

var prctlOpts = map[uint64]string{
	unix.PR_SET_MM: "PR_SET_MM", unix.PR_CAP_AMBIENT: "PR_CAP_AMBIENT",
	unix.PR_SET_PTRACER: "PR_SET_PTRACER", unix.PR_SET_SECUREBITS: "PR_SET_SECUREBITS",
	unix.PR_SET_DUMPABLE: "PR_SET_DUMPABLE", unix.PR_SET_SECCOMP: "PR_SET_SECCOMP",
	unix.PR_CAPBSET_DROP: "PR_CAPBSET_DROP", unix.PR_SET_CHILD_SUBREAPER: "PR_SET_CHILD_SUBREAPER",
	unix.PR_SET_KEEPCAPS: "PR_SET_KEEPCAPS", unix.PR_SET_SPECULATION_CTRL: "PR_SET_SPECULATION_CTRL",
}

var bpfCmds = map[uint64]string{
	unix.BPF_MAP_CREATE: "BPF_MAP_CREATE", unix.BPF_PROG_LOAD: "BPF_PROG_LOAD",
	unix.BPF_OBJ_GET: "BPF_OBJ_GET", unix.BPF_PROG_ATTACH: "BPF_PROG_ATTACH",
	unix.BPF_BTF_LOAD: "BPF_BTF_LOAD", unix.BPF_LINK_CREATE: "BPF_LINK_CREATE",
}

package seccomp

import (
	"sort"
	"strings"
)

// Inspected calls. A few syscalls are safe or not by their arguments in a
// way a BPF filter cannot express cheaply or at all. With Policy.Inspect
// every call of them, where a group allows them, goes to the listener
// (ActionNotify), and the supervisor decides with Decide: it lets the
// call run (SECCOMP_USER_NOTIF_FLAG_CONTINUE) or refuses and records it.
//
//   - The set*id family: allowed when every id is the tool's own (ToolID)
//     or -1 ("unchanged"), as when a program drops privileges it does not
//     have (make: setresuid(-1, getuid(), -1)). The ids are in registers,
//     which the caller cannot change after the supervisor read them. Any
//     other id (root's first) is a recorded denial; the kernel would refuse
//     it anyway, the tool holding no CAP_SETUID or CAP_SETGID. (Written as
//     BPF, the complement of two values in each of up to three 32-bit
//     arguments doubled the filter: 1161 -> 2103 instructions.)
//   - The setxattr family: attributes in the security and trusted
//     namespaces carry privilege (security.capability makes an executable
//     grant capabilities; LSM labels and trusted.* steer the kernel), and a
//     tool whose files belong to a real host user (an idmapped workdir)
//     must never leave one for the host to find. The name is read from the
//     caller's memory: a caller that rewrites it after the read gets past
//     the supervisor, not past the kernel, which refuses those names to a
//     tool without CAP_SETFCAP and CAP_SYS_ADMIN whatever it reads; but on
//     SELinux hosts security.selinux is the policy's to allow (relabel
//     rules), and the record names the attribute the supervisor read.
//
// Without a listener (Policy.Inspect off) these calls are plainly allowed
// and the kernel's capability checks are the whole enforcement.

// ToolID is the uid and gid the sandbox runs the tool as (in its user
// namespace): the one id the set*id calls may name.
const ToolID = 1000

// idCalls maps each set*id call to how many ids it takes.
var idCalls = map[string]int{
	"setuid": 1, "setgid": 1, "setfsuid": 1, "setfsgid": 1,
	"setreuid": 2, "setregid": 2, "setresuid": 3, "setresgid": 3,
}

// xattrCalls take an attribute name as their second argument
// (setxattrat, Linux 6.13, is outside every group: ENOSYS).
var xattrCalls = map[string]bool{"setxattr": true, "lsetxattr": true, "fsetxattr": true}

// InspectedCalls lists, sorted, the syscalls Policy.Inspect sends to the
// listener.
func InspectedCalls() []string { return append([]string(nil), inspectedCalls...) }

var inspectedCalls = func() []string {
	var l []string
	for n := range idCalls {
		l = append(l, n)
	}
	for n := range xattrCalls {
		l = append(l, n)
	}
	sort.Strings(l)
	return l
}()

// IsInspected reports whether name is one of InspectedCalls.
func IsInspected(name string) bool { _, id := idCalls[name]; return id || xattrCalls[name] }

// Decision is the supervisor's answer to an inspected call.
type Decision int

const (
	Deny     Decision = iota // refuse (EPERM) and record
	Continue                 // let it run
)

// Decide answers an inspected call from its arguments; mem reads the
// caller's memory (for an attribute name). Anything it cannot read or does
// not know is denied.
func Decide(name string, args [6]uint64, mem MemReader) Decision {
	if n, ok := idCalls[name]; ok {
		for i := 0; i < n; i++ {
			if v := uint32(args[i]); v != ToolID && v != 0xffffffff {
				return Deny
			}
		}
		return Continue
	}
	if xattrCalls[name] {
		if s, ok := readCString(mem, args[1], xattrNameMax); ok && XattrNameAllowed(s) {
			return Continue
		}
	}
	return Deny
}

// xattrNameMax is XATTR_NAME_MAX: a longer name is ERANGE for the kernel.
const xattrNameMax = 255

// XattrNameAllowed reports whether a tool may set the attribute name: not
// in the security or trusted namespace.
func XattrNameAllowed(name string) bool {
	return !strings.HasPrefix(name, "security.") && !strings.HasPrefix(name, "trusted.")
}

// readCString reads a NUL-terminated string of at most limit bytes at addr,
// page by page (a string that ends just before an unmapped page reads).
func readCString(mem MemReader, addr uint64, limit int) (string, bool) {
	if mem == nil || addr == 0 {
		return "", false
	}
	b := make([]byte, limit+1)
	n := 0
	for n < len(b) {
		room := min(4096-int((addr+uint64(n))%4096), len(b)-n)
		k, _ := mem(addr+uint64(n), b[n:n+room])
		k = max(0, min(k, room))
		for i := n; i < n+k; i++ {
			if b[i] == 0 {
				return string(b[:i]), true
			}
		}
		n += k
		if k < room {
			return "", false
		}
	}
	return "", false
}

// inspectFilter sends every call of name to the listener (one
// unconditional rule with the denied action, ActionNotify).
func inspectFilter(name string) argFilter {
	desc := "the supervisor checks every id is the tool's own (1000) or -1"
	if xattrCalls[name] {
		desc = "the supervisor reads the attribute name: security.* and trusted.* denied"
	}
	return argFilter{syscall: name, desc: desc, deny: []rule{{}}}
}

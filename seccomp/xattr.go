package seccomp

import "strings"

// Extended attributes in the security and trusted namespaces carry
// privilege: security.capability makes an executable grant capabilities,
// trusted.* and the LSMs' security.* labels steer the kernel. A tool whose
// files belong to a real host user (an idmapped workdir) must never leave
// one for the host to find. The kernel already refuses them to the tool,
// which holds no capability; Policy.InspectXattrs sends every
// setxattr-family call to the listener as well, so that the supervisor
// records the attempt (a denial) and refuses it itself, and lets any other
// name (user.*, system.posix_acl_*) through. The name is read from the
// caller's memory before the call runs: a caller that rewrites it in
// between gets past the supervisor, not past the kernel's capability
// check.

// XattrSetCalls are the calls Policy.InspectXattrs sends to the listener
// (setxattrat, Linux 6.13, is outside every group: ENOSYS).
var XattrSetCalls = []string{"fsetxattr", "lsetxattr", "setxattr"}

// IsXattrSet reports whether name is one of XattrSetCalls.
func IsXattrSet(name string) bool {
	for _, c := range XattrSetCalls {
		if c == name {
			return true
		}
	}
	return false
}

// XattrNameAllowed reports whether a tool may set the attribute name: not
// in the security or trusted namespace.
func XattrNameAllowed(name string) bool {
	return !strings.HasPrefix(name, "security.") && !strings.HasPrefix(name, "trusted.")
}

// xattrFilter sends every call of a setxattr-family syscall to the
// listener (one unconditional rule with the denied action, ActionNotify).
func xattrFilter(name string) argFilter {
	return argFilter{syscall: name, desc: "the supervisor reads the attribute name: security.* and trusted.* denied", deny: []rule{{}}}
}

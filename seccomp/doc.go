// Package seccomp compiles a toolcell syscall policy into a classic BPF
// seccomp program. The C stage-2 installs the raw bytes with
// seccomp(SECCOMP_SET_MODE_FILTER) as its last step before execve. The
// program is compiled once per policy in the parent; see CompileCached.
//
// # Why an allowlist
//
// A default-allow denylist fails open. Every syscall a newer kernel adds
// (io_uring, the new mount API, and so on) would be reachable until somebody
// remembered to list it. Here the filter is built from the capability set
// instead: a policy names Groups, and each group is a curated, versioned
// (GroupsVersion) list of syscalls narrowed to what one tool run needs.
// Anything not granted is refused.
//
// # Actions
//
//   - A syscall allowed by a selected group: ALLOW.
//   - A syscall libseccomp knows for x86_64 that the policy does not allow:
//     Policy.DeniedAction (default ERRNO(EPERM)). Each such syscall gets an
//     explicit rule. toolcell's runs use ActionNotify (USER_NOTIF): the
//     caller waits while the supervisor holding the filter's Listener
//     records the call (Describe decodes its arguments) and answers EPERM.
//     With no listener left the kernel answers ENOSYS. HaveUserNotif probes
//     the kernel for the action.
//   - A number nobody knows (a newer kernel than the libseccomp tables):
//     ERRNO(ENOSYS), the filter's default action, so libc falls back to
//     older interfaces as it would on an old kernel. clone3 always returns
//     ENOSYS too: its flags live in memory, where seccomp cannot read them,
//     and glibc then falls back to clone(2), whose flags are filtered.
//   - Foreign architectures: KILL_PROCESS. This covers i386 (int 0x80,
//     AUDIT_ARCH_I386) and every other non-x86_64 audit arch (the bad-arch
//     action). It also covers x32. libseccomp 2.5 adds this check for
//     x86_64 filters by itself: on AUDIT_ARCH_X86_64, any nr >= 0x40000000
//     (X32_SYSCALL_BIT) goes to the bad-arch action, except nr == -1. That
//     value is what a tracer writes to skip a syscall; it falls through to
//     the default, ENOSYS. So any number >= 0x40000000, x32 or not, kills
//     the process. The tests prove this on the exported bytes.
//
// # Argument filters
//
// libseccomp cannot AND two tests on the same argument. A rule without
// conditions also silently overrides conditional rules on the same syscall.
// So every argument filter is built from two disjoint lists of single
// masked-equality tests, one that allows and one that denies. Together they
// cover every value, so a filtered syscall never falls through to ENOSYS.
// "Low 32 bits not in {v...}" is written as a union of masked prefixes
// (a bit trie). Where the kernel reads an argument as int or unsigned int,
// only the low 32 bits are compared, as in the kernel. A value in the high
// half therefore cannot smuggle in a forbidden low half (0x100005412 is
// still TIOCSTI).
//
//   - clone: allowed when arg0 contains none of CLONE_NEWNS, CLONE_NEWUSER,
//     CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS or
//     CLONE_NEWCGROUP (mask test against 0). Otherwise denied.
//   - socket: one filter for the union of the selected groups' families:
//     AF_UNIX (arg0 == 1, any type) with ipc_local; AF_INET and AF_INET6
//     with network, and then only SOCK_STREAM or SOCK_DGRAM (arg1's low 4
//     bits; SOCK_NONBLOCK and SOCK_CLOEXEC may be set). A family with types
//     is one rule per type ANDing a test on arg0 with one on arg1, and the
//     complement (that family, any other type) is denied the same way.
//     Raw, packet, netlink, vsock and alg sockets are never allowed. The
//     network group is not in DefaultGroups. The other socket calls
//     (connect, bind, sendmsg, ...) are allowed unconditionally; they do
//     nothing without a socket of a granted family. socketpair is
//     unconditional: the kernel supports it only for local families.
//   - ioctl: allowed except TIOCSTI (0x5412, fakes terminal input) and
//     TIOCLINUX (0x541c), compared on the low 32 bits of arg1.
//   - personality: only PER_LINUX (0) and the 0xffffffff query. Denying
//     flags such as READ_IMPLIES_EXEC and ADDR_NO_RANDOMIZE blocks
//     W^X and ASLR downgrades.
//   - prctl: a broad multiplexer, so only a read-only or self-only
//     allowlist of options (PR_SET_NAME, PR_SET_PDEATHSIG,
//     PR_SET_NO_NEW_PRIVS, PR_SET_VMA, PR_GET_*, ...) is allowed.
//
// memfd_create (ipc_local) is allowed because JITs and some language
// runtimes need anonymous executable or shared memory. It creates no
// filesystem-visible object, but a memfd can be exec'd (fexecve) unless it
// is sealed non-executable: the sandbox sets vm.memfd_noexec = 2 for its
// pid namespace, and where it cannot, Policy.MemfdNoexec narrows the call
// to flags with MFD_NOEXEC_SEAL and without MFD_EXEC (a single masked test
// on arg1 allows, two deny). kill/tgkill are in base because the sandbox's
// pid namespace limits what they can reach.
//
// Some syscalls are always denied, whatever the groups: ptrace,
// process_vm_*, bpf, io_uring_*, the mount API, unshare, setns, module
// loading, clock setting, and so on (see alwaysDenied, which gives each
// one's reason). Compile fails if any group lists one of them.
//
// # What is and is not enforced
//
// Enforced: which x86_64 syscall numbers may run, the arguments listed above
// (register values only), that only the x86_64 ABI may be used, and that the
// filter applies to every thread and every descendant. That last part holds
// once the stage-2 loads it, with no_new_privs set, before execve.
//
// Not enforced here: anything behind a pointer (paths, clone3 and openat2
// structs, sockaddr contents, ioctl payloads); which files may be read or
// written (open with O_WRONLY is in file_read, so write protection comes from
// read-only mounts and the file-system layout); resource use (cgroups); or
// the network reachable through an inherited fd. A group name describes
// syscall surface, not a security boundary by itself. The filter sets
// neither no_new_privs nor TSYNC: the stage-2 owns the no_new_privs bit and
// the load flags.
package seccomp

// A build without cgo stops in needcgo with one line naming the fix.
import _ "github.com/toolcell/toolcell/internal/needcgo"

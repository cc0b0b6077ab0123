// Package sandbox runs one tool invocation in its own ephemeral Linux
// sandbox, built from a capability.Set, and returns the tool's result with
// an audit record of what was enforced. The record (audit.Record) and its
// schema live in package audit, which builds without cgo; Result.Exit is
// the record's Exit.
//
// # Why this shape
//
// Agent frameworks call tools with arguments a model chose. A prompt-injected
// model or a compromised tool must not be able to reach the host, its secrets
// or the network beyond what the policy grants. Every protection here is the
// kernel's: namespaces, mounts, cgroups, seccomp, and dropped privileges. The
// tool's cooperation is never assumed.
//
// A run has three processes besides the host's, and a fork server serves
// all the runs of a host process:
//
//	host process (Go)        computes the plan: the filesystem view (paths resolved,
//	                         O_PATH descriptors opened), the seccomp program, limits;
//	                         creates the cgroup; supervises; writes the record.
//	fork server (C, pre-Go)  a sealed copy of the host binary, exec'd once per host
//	                         process; keeps one stage-2 forked ahead and hands it
//	                         out (pid, pidfd, the supervisor's end of its control
//	                         socket); reaps the stage-2s; exits with the host process.
//	stage-2 (C, pre-Go)      waits for its plan, which brings the view's source
//	                         descriptors and the cgroup.procs files; joins the run's
//	                         cgroup, becomes the run's host uid/gid (as root), clones
//	                         pid 1 into new user, mount, net, pid, ipc, uts and
//	                         cgroup namespaces, writes pid 1's id maps, and waits
//	                         for it.
//	pid 1 of the sandbox     builds the view, pivots into it, drops every privilege,
//	                         then on the EXEC message (queued long before) forks the
//	                         tool, reports STARTED with descriptors of its
//	                         namespaces and the seccomp listener, reaps, and reports
//	                         the tool's exit status.
//	tool                     cloned like vfork but sharing pid 1's descriptor table
//	                         (CLONE_VM|CLONE_VFORK|CLONE_FILES): it installs the
//	                         filter with a listener, which lands in that table, and
//	                         execs; execve gives the tool a private copy without it.
//
// The C part (stage2.c) runs from a constructor before the Go runtime starts,
// like runc's nsenter: a multithreaded Go process cannot unshare a user
// namespace, and a Go stage-2 costs milliseconds of runtime start per run. It
// makes no decision: every path, flag and byte it uses arrives in the plan.
// The fork server exists for speed: an exec of the binary per run costs
// about 2.5 ms (start, loader, libc) where a fork of a process that never
// started Go costs a fraction of that, done ahead of the run; the host's
// heap no longer matters to a run either. The server is started on first
// use and replaced when it died or the host's credentials changed.
//
// # Plans and pools
//
// Compile (Runner.Compile) does once what depends only on the policy and
// the kernel: validation, the policy hash, the seccomp program (libseccomp
// is called once per distinct policy), the tool's environment. A Plan is
// immutable and holds a copy of the set. What a run needs of its own is
// made per run: the host uid lease, the cgroup, the temporary workdir, the
// view (resolved and opened again, so a grant swapped since Compile is
// caught as before), the egress relay, the stage-2.
//
// A Pool keeps Size sandboxes of a plan built up to the EXEC message: the
// stage-2 has joined the cgroup and cloned pid 1, pid 1 has built the view,
// made the egress sockets and dropped every privilege, and waits on its
// control socket. Moving a process into a cgroup (a write to cgroup.procs)
// waits for an RCU grace period unless another move ran just before, which
// costs milliseconds after idle time; a pooled sandbox has paid it before
// the run. A run through the pool sends only its command, then reads the
// evidence as a cold run does. Each sandbox serves one run. Before one is
// handed out, the pool checks that its stage-2 is alive, that it sent
// nothing while it waited (an error would come that way), and that the
// host process's credentials are those it was built under; else it is
// ended and the next one tried, and with none ready the run builds its own
// (record: pool.state "cold").
//
// # What the tool gets
//
//   - Namespaces: user, mount, net, pid, ipc, uts, cgroup, every run.
//   - Identity: uid/gid 1000 inside, mapped to the caller's own ids when the
//     host process is not root. As root, each run holds a host uid and gid of
//     its own (Runner.HostIDs, the /etc/subuid and /etc/subgid entries of
//     Runner.HostIDsUser, or DefaultHostIDs), leased through an open file
//     description lock on its byte of /run/toolcell/ids.leases: no other
//     run of any host process gets it until nothing of the run is left (its
//     cgroup is gone, and its namespaces, released just after the run), and a lease dies with its host process. The stage-2 becomes that uid before it
//     creates the user namespace, so the namespace is the run's: what the
//     sandbox counts in it (inotify instances, namespaces) is charged to the
//     run's uid, not to root, and per-uid quotas (pipe buffer pages) are not
//     shared with other runs or host daemons. Supplementary groups are
//     dropped when root; setgroups is denied.
//   - Per-namespace limits: pid 1 writes /proc/sys/user of the sandbox's
//     user namespace while it holds its capabilities there (inotify
//     instances and watches from Set.InotifyInstances and InotifyWatches,
//     no user namespace) and reads each back; audit.Record.Enforcement.UserLimits
//     lists them.
//   - Filesystem: a fresh tmpfs root, read-only once built; each grant
//     bind-mounted at its own path (the symlinks a FollowSymlinks grant met
//     on the way recreated), with nosuid, nodev, noexec unless executable,
//     read-only unless writable;
//     /proc of its own pid namespace with host knobs masked or read-only; a
//     /dev holding null, zero, full, random, urandom (no tty); /tmp and
//     /dev/shm as size-capped tmpfs. The host's root is detached. Nothing
//     else exists: an ungranted path is ENOENT, not EACCES. A temporary
//     workdir (capability.TempWorkdir) is a fresh directory in the host's
//     TMPDIR bound at capability.TempWorkdirPath, removed after the run.
//   - Ownership (workdir.go, idmap_sources in stage2.c): as root each
//     writable grant is an idmapped mount showing its host owner as the
//     sandbox user, so the tool's files there are the owner's; the stage-2
//     makes them (MOUNT_ATTR_IDMAP needs the host's root, on a detached
//     mount) before it drops root, pid 1 attaches them. Rootless the
//     sandbox user is the caller. Nothing the tool writes may carry
//     privilege to the host: set-ID modes and security.*/trusted.* xattrs
//     are refused and recorded.
//   - Executable code: only the exec grants. Every other mount is noexec,
//     and no memfd is executable: vm.memfd_noexec = 2 for the sandbox's
//     pid namespace, written by a child of the stage-2 that is the host's
//     root again and entered that namespace (the kernel lets only the
//     global root uid write /proc/sys, and sets the writer's own pid
//     namespace), while pid 1 waits for its id maps; and where it cannot
//     (rootless, kernels before 6.3) the seccomp filter allows
//     memfd_create only with MFD_NOEXEC_SEAL and without MFD_EXEC.
//   - Landlock (landlock.go), a second barrier: the tool child restricts
//     itself, before its seccomp filter, to the same grants, each opened at
//     its path inside the view; /tmp and /dev/shm read-write, /proc and the
//     generated /etc files read-only, the /dev nodes read-write, nothing on
//     "/" or the view's own directories (listing "/" is EACCES). A path the
//     view shows that no grant names gets EACCES. With egress grants, TCP
//     connect to the relay's ports only and no bind; abstract unix sockets
//     and signals scoped to the sandbox. No Landlock, or an ABI below 3 (4
//     with egress), is an ErrUnsupported error unless
//     Runner.AllowNoLandlock.
//   - Privileges: no capability in any set (effective, permitted, inheritable,
//     bounding, ambient), no_new_privs, a new session (no controlling
//     terminal), RLIMIT_CORE 0, RLIMIT_NOFILE 1024, RLIMIT_FSIZE from
//     Set.MaxFileSize, not dumpable (pid 1).
//   - Descriptors: only stdin, stdout and stderr; every other descriptor is
//     closed at execve whatever its close-on-exec flag.
//   - Environment: PATH plus what Set.Env names (with a temporary workdir,
//     HOME and PWD at it unless Set.Env names them). The host environment never
//     reaches the tool, nor pid 1 (whose environment is the fork server's
//     marker).
//   - Network: an empty network namespace with loopback up; with egress
//     grants, the relay below.
//   - Syscalls: the seccomp allowlist compiled by package seccomp
//     (seccomp.PolicyFor), installed as the last step before execve.
//
// # Egress
//
// With Set.Egress or Set.HTTPAPI the namespace stays empty, and pid 1 (still
// holding its capabilities there) adds local routes for all of IPv4 and
// IPv6 on loopback and opens the relay's sockets: UDP and TCP on port 53
// and a TCP listener (plus a recording UDP socket) per granted port. It
// passes them to the supervisor (SOCKETS) and closes its copies; the tool,
// which shares pid 1's descriptor table until its execve, sees them only
// as close-on-exec descriptors it loses at exec. The supervisor answers
// DNS for granted names only (synthetic 127.77.x.y addresses, also in the
// view's /etc/hosts; resolv.conf names 127.77.0.1) and relays each
// connection after checking the name and port, the TLS SNI or the HTTP
// Host of every request on it, and the address the host resolves the name to (Runner.Resolver; loopback,
// private, link-local, CGNAT, multicast and reserved ranges refused unless
// Set.EgressAllow lists them), then dials it (Runner.Dialer) and copies
// both ways under Runner.Egress caps. HTTP API grants are served by the
// supervisor itself, adding the secret (Runner.Secrets) on its side. Every
// query and connection is in audit.Record.Network; the seccomp network group
// (AF_INET/AF_INET6 stream and datagram sockets only) is added to the
// filter.
//
// # Denied syscalls
//
// A known syscall the policy does not allow stops the calling thread
// (SECCOMP_RET_USER_NOTIF) until the supervisor, which holds the filter's
// listener, has recorded it and answered EPERM. The supervisor never lets a
// denied call proceed (no SECCOMP_USER_NOTIF_FLAG_CONTINUE): the
// notification is evidence, the filter is the enforcement. Two families
// reach it on every call (seccomp.Policy.Inspect,
// audit.Record.Enforcement.Seccomp.Inspected) and run when seccomp.Decide allows: the
// set*id calls naming only the tool's own id or -1 (register values, which
// the tool cannot change after the check), and setxattr calls whose
// attribute name is outside the security and trusted namespaces, so that
// an attempt to leave a file capability or a security label on a file the
// host will own is refused and recorded. For both the kernel refuses the
// privileged case too (the tool holds no capability, whatever a name reads
// when the call runs); the supervisor adds the evidence. For the record it decodes the
// arguments (strings are read from the tool's memory with
// process_vm_readv, at most 256 bytes, and kept only if the notification
// is still pending afterwards, so a recycled pid cannot feed it another
// process's memory). audit.Record.Denials holds one entry per syscall and decoded
// signature with a count and the first and last time. Past 128 such
// entries, each further syscall still gets one entry that counts its
// attempts without itemising their arguments (audit.Record.DenialsDropped sums
// those), so no kind of call can be hidden behind junk. A flood is
// throttled: 10000 answers at full speed, then 2000 per second (the tool
// waits; the supervisor's CPU, which is outside the tool's cgroup, stays
// bounded). If the supervisor
// dies, the kernel answers the pending and every later denied call with
// ENOSYS, so the tool never hangs on it. Unknown syscall numbers get
// ENOSYS and are not recorded; foreign ABIs (int 0x80, x32) kill the tool,
// which the record shows as exit.reason "seccomp_kill".
//
// A kernel without user notification is an ErrUnsupported error, unless
// Runner.AllowNoSyscallAudit is set: then the filter answers EPERM itself,
// nothing is recorded, and enforcement.degraded says so.
//   - Limits: a per-run cgroup (memory with swap 0, pids, cpu), killed as a
//     whole when the run ends, so nothing outlives it.
//
// # The TOCTOU guard for grants
//
// A grant may not pass through a symlink unless Set.FollowSymlinks lists
// it (the root's merged-/usr links excepted): Validate checks that, and
// the view checks it again while resolving the grant, so a link planted
// after validation is refused by name; the path opened is then the
// granted one, with no link on it.
//
// Grants are resolved in Go, symlink by symlink, and the resolved path is
// opened with openat2(RESOLVE_NO_SYMLINKS) before the stage-2 starts. The
// kernel does not allow cloning a mount from a descriptor that belongs to
// another mount namespace, so the stage-2 opens the same resolved path the
// same way after unsharing, clones that (open_tree), and compares device and
// inode with the descriptor Go opened. A component swapped for a symlink
// fails the open; a directory swapped for another fails the comparison
// (step "bind_verify"); it never mounts something else. Mount targets are
// resolved with RESOLVE_IN_ROOT|RESOLVE_NO_SYMLINKS against the new root.
//
// A grant listed in FollowSymlinks that resolves through a symlink lying
// inside a writable grant of the same set is refused too: the tool, in
// this run or an earlier one, controls that link and could aim the grant
// at any host path.
//
// # Nothing outlives the supervisor
//
// The stage-2 and pid 1 carry PR_SET_PDEATHSIG(SIGKILL). The kernel clears
// it on every credential change, so it is re-armed after each one, and the
// parent's presence is checked right after (pid 1 watches a pipe only the
// stage-2 holds). When pid 1 dies the kernel kills its pid namespace.
//
// # Limits of this package, stated plainly
//
//   - Files a tool writes into a granted directory are owned by the mapped
//     host uid (as root, the run's own, a different one each run); a
//     directory must be writable by that uid (by others, as root), and a
//     later run may write to a file an earlier one created only if its mode
//     lets others write. Idmapped mounts are not used yet.
//   - As root, a run's lease is given back once its cgroup is gone. If the
//     host process dies, the kernel drops its locks at once while the
//     sandbox is still being killed: for that moment another host process
//     may lease the same uid.
//   - exit.reason "seccomp_kill" means the tool died of SIGSYS; a tool that
//     sends itself SIGSYS is recorded the same way.
//   - Each denied call costs a round trip through the supervisor (about
//     27 µs here, then the flood throttle); a tool looping on one slows
//     only itself.
//   - audit.Record.Denials lists what reached toolcell's filter. A tool may stack
//     a filter of its own (seccomp is allowed, as browsers and sshd need
//     it); a call that filter refuses first is refused without reaching
//     the supervisor, and so is not recorded. Detail is the arguments as
//     read when the notification arrived (another thread of the tool may
//     change them); Process is the thread's name, which the tool sets.
//   - A host process that itself runs under a syscall-intercepting
//     supervisor (a seccomp listener already in its filter chain, as with
//     LXD syscall interception) cannot add one: the run fails with
//     ErrUnsupported (step "seccomp", EBUSY).
//   - As root, the stage-2 resolves grant paths as the run's host uid, with
//     no capability in the host's user namespace: a grant below a directory
//     others cannot search (a root-owned 0700 one, say) fails (step
//     "bind_open").
//   - The fork server keeps what the host process had when it started it:
//     credentials are compared before every run (effective ids, groups,
//     capabilities, no_new_privs, as the calling thread has them; a change
//     starts a new server), but namespaces, rlimits, umask, CPU affinity,
//     nice value, oom_score_adj, personality, the host's own seccomp
//     filter, LSM label and cgroup are those of that moment (with
//     Runner.AllowNoCgroup and no cgroup, the sandbox stays in that
//     cgroup).
//   - A standard input that is an *os.File is passed through only when it is
//     a regular file (reopened read-only) or a pipe; a terminal or socket is
//     copied through a pipe, so the tool never holds the caller's terminal.
//   - Kernel bugs reachable through allowed syscalls are not stopped by any
//     of this; see THREAT_MODEL.md.
package sandbox

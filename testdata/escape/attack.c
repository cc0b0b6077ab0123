/*
 * attack.c: the attacker of toolcell's escape suite (sandbox/escape_test.go).
 * Each run tries exactly one thing, named by argv[1], against canaries the
 * test set up (their host paths, the canary listener's port and the canary
 * process's pid come in the environment), and prints one line:
 *
 *   RESULT <errno name>   the attempt failed with that errno
 *   RESULT OK             the syscall succeeded (the test decides if that is bad)
 *   ESCAPED <what>        the attempt reached something it must not
 *
 * A run killed by the kernel prints nothing. Attacks only aim at the
 * canaries, so a broken sandbox cannot harm the machine running the suite:
 * calls that would change host state if they ever ran privileged carry
 * arguments the kernel rejects (an invalid command, a bad timestamp), host
 * knobs are opened for writing but never written, and every exhaustion
 * attack stops itself at a bound past the policy's limit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/timex.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef AF_ALG
#define AF_ALG 38
#endif
#define X32_BIT 0x40000000L

static const char *ename(int e)
{
	const char *n = strerrorname_np(e);
	return n ? n : "E?";
}

static void result(long r)
{
	if (r < 0)
		printf("RESULT %s\n", ename(errno));
	else
		printf("RESULT OK\n");
}

static long env_long(const char *k)
{
	const char *v = getenv(k);
	return v ? atol(v) : 0;
}

static const char *env_str(const char *k)
{
	const char *v = getenv(k);
	return v ? v : "";
}

/* sys makes one raw syscall; a clone that succeeded exits in the child. */
static void sys(long nr, long a, long b, long c, long d, long e, long f)
{
	long r;
	errno = 0;
	r = syscall(nr, a, b, c, d, e, f);
	if (r == 0 && nr == SYS_clone)
		_exit(0);
	result(r);
}

#define P(s) ((long)(s))

static long int80(long nr, long a, long b)
{
	long r;
	__asm__ volatile("int $0x80" : "=a"(r) : "a"(nr), "b"(a), "c"(b) : "memory");
	return r;
}

/* tcp connects to the canary listener on the host's loopback. */
static void tcp(int family, const char *addr)
{
	int port = (int)env_long("CANARY_PORT");
	int s = socket(family, SOCK_STREAM, 0);
	if (s < 0) {
		result(-1);
		return;
	}
	if (family == AF_INET) {
		struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
		inet_pton(AF_INET, addr, &sa.sin_addr);
		if (connect(s, (struct sockaddr *)&sa, sizeof sa) == 0) {
			printf("ESCAPED connected to %s:%d\n", addr, port);
			return;
		}
	} else {
		struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
		inet_pton(AF_INET6, addr, &sa.sin6_addr);
		if (connect(s, (struct sockaddr *)&sa, sizeof sa) == 0) {
			printf("ESCAPED connected to [%s]:%d\n", addr, port);
			return;
		}
	}
	result(-1);
}

/* unix_connect tries a unix socket by path, or an abstract one (@name). */
static void unix_connect(const char *name)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	socklen_t len;
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (s < 0) {
		result(-1);
		return;
	}
	if (name[0] == '@') {
		strncpy(sa.sun_path + 1, name + 1, sizeof sa.sun_path - 2);
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name + 1));
	} else {
		strncpy(sa.sun_path, name, sizeof sa.sun_path - 1);
		len = sizeof sa;
	}
	if (connect(s, (struct sockaddr *)&sa, len) == 0) {
		printf("ESCAPED connected to %s\n", name);
		return;
	}
	result(-1);
}

/* masked reports whether fd is /dev/null, which the sandbox binds over the
 * host knobs it hides: reading or writing it reaches nothing. */
static int masked(int fd)
{
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 3) {
		printf("RESULT MASKED\n");
		return 1;
	}
	return 0;
}

/* read_file prints ESCAPED with the first bytes if path can be read. */
static void read_file(const char *path)
{
	char buf[64] = {0};
	int fd = open(path, O_RDONLY);
	if (fd < 0) {
		result(-1);
		return;
	}
	if (read(fd, buf, sizeof buf - 1) > 0 && strstr(buf, "canary")) {
		printf("ESCAPED read %s: %s\n", path, buf);
		return;
	}
	printf("RESULT OK\n");
}

/* open_knob opens a host file or knob for writing and never writes it:
 * the open succeeding is the escape. A file it created is removed again. */
static void open_knob(const char *path, int flags)
{
	int fd = open(path, O_WRONLY | flags, 0644);
	if (fd < 0) {
		result(-1);
		return;
	}
	if (masked(fd))
		return;
	if (flags & O_CREAT)
		unlink(path);
	printf("ESCAPED opened %s for writing\n", path);
}

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif

/* copy_self writes this program's own ELF into fd and tries to make it
 * executable (a refusal of the chmod is left for the exec to show). */
static int copy_self(int fd)
{
	char b[65536];
	ssize_t n;
	int self = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	if (self < 0)
		return -1;
	while ((n = read(self, b, sizeof b)) > 0)
		if (write(fd, b, (size_t)n) != n)
			return -1;
	close(self);
	fchmod(fd, 0755);
	return n < 0 ? -1 : 0;
}

enum { BY_FD, BY_PROC_LINK, BY_READONLY_FD };

/* exec_fd runs a copy of this program from fd: by the descriptor
 * (execveat AT_EMPTY_PATH), by its /proc/self/fd link, or by a read-only
 * descriptor reopened through that link once the writable one is closed
 * (an exec of a file open for writing fails with ETXTBSY). The copy, given
 * "ran_from_fd", prints ESCAPED. Only the exec's failure returns. */
static void exec_fd(int fd, int how)
{
	char *argv[] = {"attack", "ran_from_fd", NULL}, *envp[] = {NULL}, p[64];
	if (fd < 0 || copy_self(fd) < 0) {
		result(-1);
		return;
	}
	snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
	if (how == BY_PROC_LINK) {
		execve(p, argv, envp);
	} else {
		if (how == BY_READONLY_FD) {
			int ro = open(p, O_RDONLY);
			if (ro < 0) {
				result(-1);
				return;
			}
			close(fd);
			fd = ro;
		}
		syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH);
	}
	result(-1);
}

/* mmap_exec maps a file written to dir with PROT_EXEC. */
static void mmap_exec(const char *dir)
{
	char p[4200];
	void *m;
	int fd;
	snprintf(p, sizeof p, "%s/toolcell-mmap-exec", dir);
	fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	if (fd < 0 || copy_self(fd) < 0) {
		result(-1);
		return;
	}
	m = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
	if (m == MAP_FAILED)
		result(-1);
	else
		printf("ESCAPED mapped %s executable\n", p);
}

int main(int argc, char **argv)
{
	const char *m = argc > 1 ? argv[1] : "";
	const char *canary = env_str("CANARY_FILE"), *canary_dir = env_str("CANARY_DIR");
	long victim = env_long("CANARY_PID");
	struct timex tx = {0};
	struct timespec ts = {0, 2000000000L}; /* invalid: never sets a clock */
	char c = 'x', path[4200];

	setvbuf(stdout, NULL, _IOLBF, 0);
	/* ---- always-denied syscalls ---- */
	if (!strcmp(m, "ptrace"))
		sys(SYS_ptrace, 16 /* PTRACE_ATTACH */, victim, 0, 0, 0, 0);
	else if (!strcmp(m, "ptrace_pid1"))
		sys(SYS_ptrace, 16, 1, 0, 0, 0, 0);
	else if (!strcmp(m, "ptrace_sibling")) {
		/* another process of the same sandbox and user */
		pid_t sib = fork();
		if (sib == 0) {
			pause();
			_exit(0);
		}
		sys(SYS_ptrace, 16, sib, 0, 0, 0, 0);
		kill(sib, SIGKILL);
		waitpid(sib, NULL, 0);
	} else if (!strcmp(m, "ptrace_traceme"))
		sys(SYS_ptrace, 0 /* PTRACE_TRACEME */, 0, 0, 0, 0, 0);
	else if (!strcmp(m, "process_vm_readv"))
		sys(SYS_process_vm_readv, victim, 0, 0, 0, 0, 0);
	else if (!strcmp(m, "process_vm_writev"))
		sys(SYS_process_vm_writev, victim, 0, 0, 0, 0, 0);
	else if (!strcmp(m, "pidfd_getfd")) {
		int pfd = (int)syscall(SYS_pidfd_open, 1, 0); /* the sandbox's pid 1 */
		sys(SYS_pidfd_getfd, pfd, 3, 0, 0, 0, 0);
	} else if (!strcmp(m, "kcmp"))
		sys(SYS_kcmp, victim, getpid(), 0 /* KCMP_FILE */, 3, 0, 0);
	else if (!strcmp(m, "bpf"))
		sys(SYS_bpf, 5 /* BPF_PROG_LOAD */, 0, 0, 0, 0, 0);
	else if (!strcmp(m, "perf_event_open"))
		sys(SYS_perf_event_open, 0, 0, -1, -1, 0, 0);
	else if (!strcmp(m, "userfaultfd"))
		sys(SYS_userfaultfd, 0, 0, 0, 0, 0, 0);
	else if (!strcmp(m, "io_uring_setup"))
		sys(SYS_io_uring_setup, 4, 0, 0, 0, 0, 0);
	else if (!strcmp(m, "io_uring_enter"))
		sys(SYS_io_uring_enter, -1, 0, 0, 0, 0, 0);
	else if (!strcmp(m, "io_uring_register"))
		sys(SYS_io_uring_register, -1, 0, 0, 0, 0, 0);
	else if (!strcmp(m, "keyctl"))
		sys(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -4, 0, 0, 0, 0);
	else if (!strcmp(m, "add_key"))
		sys(SYS_add_key, P("user"), P("toolcell-canary"), P("x"), 1, -1 /* thread keyring */, 0);
	else if (!strcmp(m, "request_key"))
		sys(SYS_request_key, P("user"), P("toolcell-canary"), 0, 0, 0, 0);
	else if (!strcmp(m, "mount"))
		sys(SYS_mount, P("none"), P(canary_dir), P("tmpfs"), 0, 0, 0);
	else if (!strcmp(m, "mount_bind_proc"))
		sys(SYS_mount, P("/proc"), P(canary_dir), 0, MS_BIND | MS_REC, 0, 0);
	else if (!strcmp(m, "umount2"))
		sys(SYS_umount2, P(canary_dir), MNT_DETACH, 0, 0, 0, 0);
	else if (!strcmp(m, "pivot_root"))
		sys(SYS_pivot_root, P(canary_dir), P(canary_dir), 0, 0, 0, 0);
	else if (!strcmp(m, "chroot"))
		sys(SYS_chroot, P("/tmp"), 0, 0, 0, 0, 0);
	else if (!strcmp(m, "fsopen"))
		sys(SYS_fsopen, P("tmpfs"), 0, 0, 0, 0, 0);
	else if (!strcmp(m, "fsconfig"))
		sys(SYS_fsconfig, 3, 0, 0, 0, 0, 0);
	else if (!strcmp(m, "fsmount"))
		sys(SYS_fsmount, 3, 0, 0, 0, 0, 0);
	else if (!strcmp(m, "fspick"))
		sys(SYS_fspick, AT_FDCWD, P("/"), 0, 0, 0, 0);
	else if (!strcmp(m, "open_tree"))
		sys(SYS_open_tree, AT_FDCWD, P("/proc"), 1 /* OPEN_TREE_CLONE */, 0, 0, 0);
	else if (!strcmp(m, "move_mount")) {
		snprintf(path, sizeof path, "%s/home", canary_dir);
		sys(SYS_move_mount, AT_FDCWD, P(canary_dir), AT_FDCWD, P(path), 0, 0);
	} else if (!strcmp(m, "mount_setattr"))
		sys(SYS_mount_setattr, AT_FDCWD, P(canary_dir), 0, 0, 0, 0);
	else if (!strcmp(m, "unshare_user"))
		sys(SYS_unshare, CLONE_NEWUSER, 0, 0, 0, 0, 0);
	else if (!strcmp(m, "unshare_mnt"))
		sys(SYS_unshare, CLONE_NEWNS, 0, 0, 0, 0, 0);
	else if (!strcmp(m, "unshare_net"))
		sys(SYS_unshare, CLONE_NEWNET, 0, 0, 0, 0, 0);
	else if (!strcmp(m, "setns")) {
		int fd = open("/proc/self/ns/net", O_RDONLY);
		sys(SYS_setns, fd, CLONE_NEWNET, 0, 0, 0, 0);
	} else if (!strcmp(m, "open_by_handle_at"))
		sys(SYS_open_by_handle_at, AT_FDCWD, P(path), O_RDONLY, 0, 0, 0);
	else if (!strcmp(m, "name_to_handle_at"))
		sys(SYS_name_to_handle_at, AT_FDCWD, P("/usr"), P(path), P(path + 64), 0, 0);
	else if (!strcmp(m, "kexec_load")) /* invalid flags: never an unload */
		sys(SYS_kexec_load, 0, 0, 0, 0xffff0000L, 0, 0);
	else if (!strcmp(m, "kexec_file_load"))
		sys(SYS_kexec_file_load, -1, -1, 0, 0, 0, 0);
	else if (!strcmp(m, "init_module"))
		sys(SYS_init_module, 0, 0, P(""), 0, 0, 0);
	else if (!strcmp(m, "finit_module"))
		sys(SYS_finit_module, 0, P(""), 0, 0, 0, 0);
	else if (!strcmp(m, "delete_module"))
		sys(SYS_delete_module, P("toolcell_canary"), O_NONBLOCK, 0, 0, 0, 0);
	else if (!strcmp(m, "reboot")) /* an invalid command */
		sys(SYS_reboot, 0xfee1dead, 672274793, 0x7f7f7f7f, 0, 0, 0);
	else if (!strcmp(m, "swapon"))
		sys(SYS_swapon, P(canary), 0, 0, 0, 0, 0);
	else if (!strcmp(m, "swapoff"))
		sys(SYS_swapoff, P(canary), 0, 0, 0, 0, 0);
	else if (!strcmp(m, "syslog"))
		sys(SYS_syslog, 3 /* READ_ALL */, P(path), 100, 0, 0, 0);
	else if (!strcmp(m, "acct")) /* a directory: accounting can never start */
		sys(SYS_acct, P(canary_dir), 0, 0, 0, 0, 0);
	else if (!strcmp(m, "quotactl"))
		sys(SYS_quotactl, 0, P("/usr"), 0, 0, 0, 0);
	else if (!strcmp(m, "iopl"))
		sys(SYS_iopl, 3, 0, 0, 0, 0, 0);
	else if (!strcmp(m, "ioperm"))
		sys(SYS_ioperm, 0x60, 1, 1, 0, 0, 0);
	else if (!strcmp(m, "lookup_dcookie"))
		sys(SYS_lookup_dcookie, 0, 0, 0, 0, 0, 0);
	else if (!strcmp(m, "settimeofday"))
		sys(SYS_settimeofday, 0, 0, 0, 0, 0, 0);
	else if (!strcmp(m, "clock_settime"))
		sys(SYS_clock_settime, CLOCK_REALTIME, P(&ts), 0, 0, 0, 0);
	else if (!strcmp(m, "adjtimex"))
		sys(SYS_adjtimex, P(&tx), 0, 0, 0, 0, 0); /* modes 0: a query anyone may make */
	else if (!strcmp(m, "clock_adjtime"))
		sys(SYS_clock_adjtime, CLOCK_REALTIME, P(&tx), 0, 0, 0, 0);
	/* ---- denied by argument ---- */
	else if (!strcmp(m, "clone_newuser"))
		sys(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0, 0);
	else if (!strcmp(m, "clone_newns_thread"))
		sys(SYS_clone, CLONE_NEWNS | CLONE_VM | CLONE_THREAD | CLONE_SIGHAND, 0, 0, 0, 0, 0);
	else if (!strcmp(m, "clone_newpid"))
		sys(SYS_clone, CLONE_NEWPID | SIGCHLD, 0, 0, 0, 0, 0);
	else if (!strcmp(m, "clone_newnet"))
		sys(SYS_clone, CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0, 0);
	else if (!strcmp(m, "clone_newcgroup"))
		sys(SYS_clone, CLONE_NEWCGROUP | SIGCHLD, 0, 0, 0, 0, 0);
	else if (!strcmp(m, "clone_newipc"))
		sys(SYS_clone, CLONE_NEWIPC | SIGCHLD, 0, 0, 0, 0, 0);
	else if (!strcmp(m, "clone_newuts"))
		sys(SYS_clone, CLONE_NEWUTS | SIGCHLD, 0, 0, 0, 0, 0);
	else if (!strcmp(m, "clone3"))
		sys(435 /* clone3 */, 0, 88, 0, 0, 0, 0);
	else if (!strcmp(m, "socket_inet"))
		tcp(AF_INET, "127.0.0.1");
	else if (!strcmp(m, "socket_inet6"))
		tcp(AF_INET6, "::1");
	else if (!strcmp(m, "socket_udp"))
		sys(SYS_socket, AF_INET, SOCK_DGRAM, 0, 0, 0, 0);
	else if (!strcmp(m, "socket_raw"))
		sys(SYS_socket, AF_INET, SOCK_RAW, IPPROTO_ICMP, 0, 0, 0);
	else if (!strcmp(m, "socket_packet"))
		sys(SYS_socket, AF_PACKET, SOCK_RAW, htons(ETH_P_ALL), 0, 0, 0);
	else if (!strcmp(m, "socket_netlink"))
		sys(SYS_socket, AF_NETLINK, SOCK_RAW, 0 /* NETLINK_ROUTE */, 0, 0, 0);
	else if (!strcmp(m, "socket_vsock"))
		sys(SYS_socket, AF_VSOCK, SOCK_STREAM, 0, 0, 0, 0);
	else if (!strcmp(m, "socket_alg"))
		sys(SYS_socket, AF_ALG, SOCK_SEQPACKET, 0, 0, 0, 0);
	else if (!strcmp(m, "socket_inet_hibits"))
		sys(SYS_socket, 0x100000000L | AF_INET, SOCK_STREAM, 0, 0, 0, 0);
	else if (!strcmp(m, "ioctl_tiocsti"))
		sys(SYS_ioctl, 0, 0x5412 /* TIOCSTI */, P(&c), 0, 0, 0);
	else if (!strcmp(m, "ioctl_tiocsti_hibits"))
		sys(SYS_ioctl, 0, 0xffffffff00005412L, P(&c), 0, 0, 0);
	else if (!strcmp(m, "ioctl_tioclinux"))
		sys(SYS_ioctl, 0, 0x541c /* TIOCLINUX */, P(&c), 0, 0, 0);
	else if (!strcmp(m, "personality_rie"))
		sys(SYS_personality, 0x0400000 /* READ_IMPLIES_EXEC */, 0, 0, 0, 0, 0);
	else if (!strcmp(m, "personality_norandom"))
		sys(SYS_personality, 0x0040000 /* ADDR_NO_RANDOMIZE */, 0, 0, 0, 0, 0);
	else if (!strcmp(m, "prctl_set_mm"))
		sys(SYS_prctl, 35 /* PR_SET_MM */, 1, 0, 0, 0, 0);
	/* ---- compat ABIs ---- */
	else if (!strcmp(m, "int80")) {
		printf("getpid via int 0x80: %ld\n", int80(20, 0, 0));
		puts("ESCAPED survived int 0x80");
	} else if (!strcmp(m, "socketcall")) {
		long args[3] = {AF_INET, SOCK_STREAM, 0};
		printf("socketcall: %ld\n", int80(102, 1, (long)args));
		puts("ESCAPED survived socketcall");
	} else if (!strcmp(m, "x32")) {
		printf("x32: %ld\n", syscall(X32_BIT | SYS_getpid));
		puts("ESCAPED survived the x32 bit");
	}
	/* ---- files ---- */
	else if (!strcmp(m, "read_canary"))
		read_file(canary);
	else if (!strcmp(m, "write_canary"))
		open_knob(canary, 0);
	else if (!strcmp(m, "create_outside")) {
		snprintf(path, sizeof path, "%s/new-file", canary_dir);
		open_knob(path, O_CREAT | O_EXCL);
	} else if (!strcmp(m, "symlink_to_canary")) {
		/* a link in the workdir to the host file: resolves in the view */
		unlink("link");
		if (symlink(canary, "link") < 0)
			result(-1);
		else
			read_file("link");
	} else if (!strcmp(m, "hardlink_to_canary")) {
		unlink("hard");
		if (link(canary, "hard") < 0)
			result(-1);
		else
			read_file("hard");
	} else if (!strcmp(m, "dotdot_from_workdir")) {
		/* openat(fd, "..") climbing out of a granted directory */
		int fd = open(".", O_RDONLY | O_DIRECTORY);
		for (int i = 0; i < 64 && fd >= 0; i++)
			fd = openat(fd, "..", O_RDONLY | O_DIRECTORY);
		if (fd < 0) { /* the climb itself was refused (Landlock: "/") */
			result(-1);
			return 0;
		}
		snprintf(path, sizeof path, "%s", canary + 1); /* relative to / */
		int f = openat(fd, path, O_RDONLY);
		if (f >= 0)
			printf("ESCAPED reached %s through ..\n", canary);
		else
			result(-1);
	} else if (!strcmp(m, "leaked_fds")) {
		/* CVE-2024-21626: a descriptor of the host left open */
		int leaked = 0;
		for (int fd = 3; fd < 1024; fd++)
			if (fcntl(fd, F_GETFD) >= 0) {
				char l[64], t[256] = {0};
				snprintf(l, sizeof l, "/proc/self/fd/%d", fd);
				readlink(l, t, sizeof t - 1);
				printf("fd %d -> %s\n", fd, t);
				leaked++;
			}
		if (leaked)
			printf("ESCAPED %d descriptors besides stdio\n", leaked);
		else
			printf("RESULT ENOENT\n");
	} else if (!strcmp(m, "proc_self_exe")) {
		/* CVE-2019-5736: overwrite the binary that started us */
		open_knob("/proc/self/exe", 0);
	} else if (!strcmp(m, "proc_pid1_exe")) {
		open_knob("/proc/1/exe", 0);
	} else if (!strcmp(m, "proc_pid1_root")) {
		snprintf(path, sizeof path, "/proc/1/root%s", canary);
		read_file(path);
	} else if (!strcmp(m, "write_usr")) {
		open_knob("/usr/toolcell-canary", O_CREAT | O_EXCL);
	} else if (!strcmp(m, "write_root")) {
		/* the view's root belongs to the sandbox user: only the
		 * read-only remount stops this */
		open_knob("/toolcell-canary", O_CREAT | O_EXCL);
	} else if (!strcmp(m, "write_etc_passwd")) {
		open_knob("/etc/passwd", 0);
	} else if (!strcmp(m, "write_dev")) {
		open_knob("/dev/toolcell-canary", O_CREAT | O_EXCL);
	} else if (!strcmp(m, "session_leader")) {
		/* setsid: no controlling terminal, and a session of its own */
		int tty = open("/dev/tty", O_RDWR);
		if (getsid(0) != getpid())
			printf("ESCAPED not a session leader (sid %d, pid %d)\n", (int)getsid(0), (int)getpid());
		else if (tty >= 0)
			printf("ESCAPED opened /dev/tty\n");
		else
			result(-1);
	} else if (!strcmp(m, "core_pattern")) {
		open_knob("/proc/sys/kernel/core_pattern", 0);
	} else if (!strcmp(m, "sysrq_trigger")) {
		open_knob("/proc/sysrq-trigger", 0);
	} else if (!strcmp(m, "uevent_helper")) {
		open_knob("/sys/kernel/uevent_helper", 0);
	} else if (!strcmp(m, "release_agent")) {
		open_knob("/sys/fs/cgroup/memory/release_agent", 0);
	} else if (!strcmp(m, "proc_kcore")) {
		int fd = open("/proc/kcore", O_RDONLY);
		char b[16];
		if (fd >= 0 && masked(fd))
			;
		else if (fd >= 0 && read(fd, b, sizeof b) > 0)
			printf("ESCAPED read /proc/kcore\n");
		else
			result(-1);
	} else if (!strcmp(m, "proc_keys")) {
		int fd = open("/proc/keys", O_RDONLY);
		char b[256];
		ssize_t n;
		if (fd >= 0 && masked(fd))
			return 0;
		n = fd >= 0 ? read(fd, b, sizeof b) : -1;
		if (n > 0)
			printf("ESCAPED read /proc/keys (%zd bytes)\n", n);
		else
			result(n < 0 ? -1 : 0);
	} else if (!strcmp(m, "host_pid_kill")) {
		/* the canary process lives in the host's pid namespace */
		sys(SYS_kill, victim, SIGKILL, 0, 0, 0, 0);
	} else if (!strcmp(m, "setuid_binary")) {
		/* su, a setuid-root binary, must not raise privileges */
		execl("/usr/bin/su", "su", "-c", "id -u", (char *)NULL);
		result(-1);
	}
	/* ---- network and sockets ---- */
	else if (!strcmp(m, "abstract_socket"))
		unix_connect(env_str("CANARY_ABSTRACT"));
	else if (!strcmp(m, "host_unix_socket"))
		unix_connect(env_str("CANARY_SOCKET"));
	else if (!strcmp(m, "dns")) {
		/* no resolver is reachable: the view's resolv.conf points nowhere */
		int s = socket(AF_INET, SOCK_DGRAM, 0);
		if (s < 0)
			result(-1);
		else
			printf("ESCAPED UDP socket\n");
	}
	/* ---- resources ---- */
	else if (!strcmp(m, "fork_bomb")) {
		int n = 0;
		for (int i = 0; i < 64; i++) { /* the policy allows 16 */
			pid_t p = fork();
			if (p == 0) { /* named, so a survivor would be found */
				prctl(PR_SET_NAME, env_str("CANARY_NAME"), 0, 0, 0);
				pause();
				_exit(0);
			}
			if (p < 0)
				break;
			n++;
		}
		printf("forked %d\n", n);
		if (n == 64)
			printf("ESCAPED forked 64 processes\n");
		else
			result(-1);
	} else if (!strcmp(m, "memory_balloon")) {
		for (long i = 0; i < 32; i++) { /* 512 MiB; the policy allows 64 */
			char *p = mmap(NULL, 16 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (p == MAP_FAILED) {
				result(-1);
				return 0;
			}
			memset(p, 1, 16 << 20);
		}
		printf("ESCAPED touched 512 MiB\n");
	} else if (!strcmp(m, "tmpfs_fill")) {
		int fd = open("/tmp/toolcell-canary-fill", O_WRONLY | O_CREAT | O_EXCL, 0644);
		static char b[1 << 16];
		long total = 0;
		ssize_t w;
		memset(b, 'x', sizeof b);
		while (total < (16L << 20) && (w = write(fd, b, sizeof b)) > 0)
			total += w; /* 16 MiB at most; the policy allows 1 */
		printf("wrote %ld\n", total);
		unlink("/tmp/toolcell-canary-fill");
		if (total >= (16L << 20))
			printf("ESCAPED wrote 16 MiB to /tmp\n");
		else
			result(-1);
	} else if (!strcmp(m, "fd_exhaustion")) {
		int n = 0;
		while (n < 8192 && open("/dev/null", O_RDONLY) >= 0)
			n++;
		printf("opened %d\n", n);
		if (n == 8192)
			printf("ESCAPED opened 8192 descriptors\n");
		else
			result(-1);
	} else if (!strcmp(m, "cpu_spin")) {
		time_t end = time(NULL) + 15; /* the policy's timeout is 1 s */
		while (time(NULL) < end)
			;
		printf("ESCAPED spun 15 s\n");
	} else if (!strcmp(m, "outlive")) {
		/* double fork + setsid: try to survive the run */
		if (fork() == 0) {
			setsid();
			if (fork() == 0) {
				prctl(PR_SET_NAME, env_str("CANARY_NAME"), 0, 0, 0);
				sleep(60);
				_exit(0);
			}
			_exit(0);
		}
		printf("RESULT OK\n");
	}
	/* ---- secrets ---- */
	else if (!strcmp(m, "env_secret")) {
		if (getenv("TOOLCELL_CANARY_SECRET"))
			printf("ESCAPED env %s\n", getenv("TOOLCELL_CANARY_SECRET"));
		else
			printf("RESULT ENOENT\n");
	} else if (!strcmp(m, "aws_credentials")) {
		snprintf(path, sizeof path, "%s/.aws/credentials", env_str("CANARY_HOME"));
		read_file(path);
	} else if (!strcmp(m, "stdio_sockets")) {
		/* a socket on stdio would let the tool receive host descriptors
		 * (SCM_RIGHTS) */
		int sockets = 0;
		for (int fd = 0; fd < 3; fd++) {
			struct stat st;
			if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode))
				sockets++;
		}
		if (sockets)
			printf("ESCAPED %d stdio descriptors are sockets\n", sockets);
		else
			printf("RESULT ENOTSOCK\n");
	} else if (!strcmp(m, "plant_symlink")) {
		/* a link a later policy might grant through */
		if (symlink(canary_dir, "planted") < 0)
			result(-1);
		else
			printf("RESULT OK\n");
	} else if (!strcmp(m, "caps")) {
		/* run from a copy carrying file capabilities: none may apply */
		char line[256];
		FILE *f = fopen("/proc/self/status", "r");
		while (f && fgets(line, sizeof line, f))
			if (!strncmp(line, "Cap", 3) && !strstr(line, "0000000000000000"))
				printf("ESCAPED %s", line);
		printf("RESULT EPERM\n");
	} else if (!strcmp(m, "ssh_dir")) {
		snprintf(path, sizeof path, "%s/.ssh", env_str("CANARY_HOME"));
		int fd = open(path, O_RDONLY | O_DIRECTORY);
		if (fd >= 0)
			printf("ESCAPED opened %s\n", path);
		else
			result(-1);
	} else if (!strcmp(m, "ssh_auth_sock")) {
		const char *s = getenv("SSH_AUTH_SOCK");
		if (s)
			printf("ESCAPED SSH_AUTH_SOCK=%s\n", s);
		unix_connect(env_str("CANARY_SOCKET"));
	}
	/* ---- code that was never granted exec ---- */
	else if (!strcmp(m, "ran_from_fd"))
		printf("ESCAPED ran code exec'd from a descriptor\n");
	else if (!strcmp(m, "memfd_exec")) /* fexecve of a plain memfd */
		exec_fd((int)syscall(SYS_memfd_create, "payload", 0), BY_FD);
	else if (!strcmp(m, "memfd_exec_flag")) /* one asked to be executable */
		exec_fd((int)syscall(SYS_memfd_create, "payload", MFD_EXEC), BY_FD);
	else if (!strcmp(m, "memfd_exec_procfd")) /* by its /proc/self/fd link */
		exec_fd((int)syscall(SYS_memfd_create, "payload", 0), BY_PROC_LINK);
	else if (!strcmp(m, "memfd_exec_sealed")) /* what the fallback allows */
		exec_fd((int)syscall(SYS_memfd_create, "payload", MFD_NOEXEC_SEAL), BY_FD);
	else if (!strcmp(m, "memfd_noexec_lower")) { /* undo the sandbox's own setting */
		int fd = open("/proc/sys/vm/memfd_noexec", O_WRONLY);
		if (fd < 0 || write(fd, "0", 1) != 1)
			result(-1);
		else
			printf("ESCAPED lowered vm.memfd_noexec\n");
	} else if (!strcmp(m, "tmpfile_exec_tmp")) /* an unnamed file on /tmp */
		exec_fd(open("/tmp", O_TMPFILE | O_RDWR, 0755), BY_READONLY_FD);
	else if (!strcmp(m, "tmpfile_exec_shm"))
		exec_fd(open("/dev/shm", O_TMPFILE | O_RDWR, 0755), BY_READONLY_FD);
	else if (!strcmp(m, "mmap_exec_tmp"))
		mmap_exec("/tmp");
	else if (!strcmp(m, "mmap_exec_workdir")) {
		char cwd[4096];
		mmap_exec(getcwd(cwd, sizeof cwd) ? cwd : ".");
	} else {
		fprintf(stderr, "attack: unknown attack %s\n", m);
		return 2;
	}
	return 0;
}

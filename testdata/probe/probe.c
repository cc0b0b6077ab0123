/*
 * probe.c: a tool that tries what the sandbox forbids, for toolcell's tests.
 * It is built with the host's gcc by the tests and run inside a sandbox.
 *
 *   probe denied         each always-denied syscall once (plus some calls
 *                        denied by argument); prints "<name> <errno name>"
 *   probe enosys         an unknown syscall number and clone3; same format
 *   probe int80          i386 getpid through int 0x80 (the filter kills)
 *   probe socketcall     i386 socketcall through int 0x80 (the filter kills)
 *   probe x32            getpid with the x32 bit set (the filter kills)
 *   probe flood N        acct("/probe-flood") N times; prints the EPERM count
 *   probe distinct N     acct("/probe-distinct-<i>") for i < N, then one mount
 *   probe hide N NR...   acct("/probe-hide-<i>") for i < N, then each
 *                        syscall number NR once (arguments 1..6: the
 *                        test passes only numbers the filter denies)
 *   probe until-not      acct() until it fails with something other than
 *                        EPERM; prints that errno's name
 *
 * Every path argument is a name that exists nowhere, so a call that slipped
 * through would fail harmlessly; the tests read these names back from the
 * audit record.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timex.h>
#include <time.h>
#include <unistd.h>

#ifndef __NR_clone3
#define __NR_clone3 435
#endif
#define X32_BIT 0x40000000

static const char *ename(int e)
{
	switch (e) {
	case 0: return "OK";
	case EPERM: return "EPERM";
	case ENOSYS: return "ENOSYS";
	case EINVAL: return "EINVAL";
	case EBADF: return "EBADF";
	case EFAULT: return "EFAULT";
	case ENOENT: return "ENOENT";
	}
	return strerrorname_np(e) ? strerrorname_np(e) : "E?";
}

/* try makes one raw syscall and reports its errno. A call that succeeded
 * in a child of clone/fork exits at once. */
static void try(const char *name, long nr, long a, long b, long c, long d, long e, long f)
{
	long r;
	errno = 0;
	r = syscall(nr, a, b, c, d, e, f);
	if (r == 0 && (nr == SYS_clone))
		_exit(0);
	printf("%s %s\n", name, r < 0 ? ename(errno) : "OK");
	fflush(stdout);
}

#define P(s) ((long)(s))

static void denied(void)
{
	struct timex tx = {0};
	struct timespec ts = {0, 0};
	char c = 'x';

	try("ptrace", SYS_ptrace, 16 /* PTRACE_ATTACH */, 1, 0, 0, 0, 0);
	try("process_vm_readv", SYS_process_vm_readv, 1, 0, 0, 0, 0, 0);
	try("process_vm_writev", SYS_process_vm_writev, 1, 0, 0, 0, 0, 0);
	try("pidfd_getfd", SYS_pidfd_getfd, 0, 0, 0, 0, 0, 0);
	try("kcmp", SYS_kcmp, 1, 1, 0, 0, 0, 0);
	try("bpf", SYS_bpf, 5 /* BPF_PROG_LOAD */, 0, 0, 0, 0, 0);
	try("perf_event_open", SYS_perf_event_open, 0, 0, -1, -1, 0, 0);
	try("userfaultfd", SYS_userfaultfd, 0, 0, 0, 0, 0, 0);
	try("io_uring_setup", SYS_io_uring_setup, 4, 0, 0, 0, 0, 0);
	try("io_uring_enter", SYS_io_uring_enter, -1, 0, 0, 0, 0, 0);
	try("io_uring_register", SYS_io_uring_register, -1, 0, 0, 0, 0, 0);
	try("keyctl", SYS_keyctl, 0, 0, 0, 0, 0, 0);
	try("add_key", SYS_add_key, P("user"), P("probe"), 0, 0, -4, 0);
	try("request_key", SYS_request_key, P("user"), P("probe"), 0, 0, 0, 0);
	try("mount", SYS_mount, P("none"), P("/probe-mount"), P("tmpfs"), 0, 0, 0);
	try("umount2", SYS_umount2, P("/probe-umount"), 0, 0, 0, 0, 0);
	try("pivot_root", SYS_pivot_root, P("/probe-new"), P("/probe-old"), 0, 0, 0, 0);
	try("chroot", SYS_chroot, P("/probe-chroot"), 0, 0, 0, 0, 0);
	try("fsopen", SYS_fsopen, P("tmpfs"), 0, 0, 0, 0, 0);
	try("fsconfig", SYS_fsconfig, -1, 0, 0, 0, 0, 0);
	try("fsmount", SYS_fsmount, -1, 0, 0, 0, 0, 0);
	try("fspick", SYS_fspick, AT_FDCWD, P("/probe-fspick"), 0, 0, 0, 0);
	try("open_tree", SYS_open_tree, AT_FDCWD, P("/probe-tree"), 0, 0, 0, 0);
	try("move_mount", SYS_move_mount, -1, P("/probe-from"), -1, P("/probe-to"), 0, 0);
	try("mount_setattr", SYS_mount_setattr, -1, P("/probe-attr"), 0, 0, 0, 0);
	try("unshare", SYS_unshare, CLONE_NEWUSER, 0, 0, 0, 0, 0);
	try("setns", SYS_setns, 0, CLONE_NEWNET, 0, 0, 0, 0);
	try("open_by_handle_at", SYS_open_by_handle_at, -1, 0, 0, 0, 0, 0);
	try("name_to_handle_at", SYS_name_to_handle_at, AT_FDCWD, P("/probe-handle"), 0, 0, 0, 0);
	try("kexec_load", SYS_kexec_load, 0, 0, 0, 0, 0, 0);
	try("kexec_file_load", SYS_kexec_file_load, -1, -1, 0, 0, 0, 0);
	try("init_module", SYS_init_module, 0, 0, P("probe=1"), 0, 0, 0);
	try("finit_module", SYS_finit_module, -1, P("probe=2"), 0, 0, 0, 0);
	try("delete_module", SYS_delete_module, P("probe_module"), 0, 0, 0, 0, 0);
	try("reboot", SYS_reboot, 0xfee1dead, 672274793, 0 /* CAD_OFF */, 0, 0, 0);
	try("swapon", SYS_swapon, P("/probe-swap"), 0, 0, 0, 0, 0);
	try("swapoff", SYS_swapoff, P("/probe-swap"), 0, 0, 0, 0, 0);
	try("syslog", SYS_syslog, 10 /* SIZE_BUFFER */, 0, 0, 0, 0, 0);
	try("acct", SYS_acct, P("/probe-acct"), 0, 0, 0, 0, 0);
	try("quotactl", SYS_quotactl, 0, P("/probe-quota"), 0, 0, 0, 0);
	try("iopl", SYS_iopl, 3, 0, 0, 0, 0, 0);
	try("ioperm", SYS_ioperm, 0, 1, 1, 0, 0, 0);
	try("lookup_dcookie", SYS_lookup_dcookie, 0, 0, 0, 0, 0, 0);
	try("settimeofday", SYS_settimeofday, 0, 0, 0, 0, 0, 0);
	try("clock_settime", SYS_clock_settime, CLOCK_REALTIME, P(&ts), 0, 0, 0, 0);
	/* modes = 0 is a read-only query any process may make: only the
	 * filter can make it fail. */
	try("adjtimex", SYS_adjtimex, P(&tx), 0, 0, 0, 0, 0);
	try("clock_adjtime", SYS_clock_adjtime, CLOCK_REALTIME, P(&tx), 0, 0, 0, 0);

	/* denied by argument */
	try("clone(CLONE_NEWNS)", SYS_clone, CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0, 0);
	try("socket(AF_INET)", SYS_socket, AF_INET, SOCK_STREAM, 0, 0, 0, 0);
	try("socket(AF_NETLINK)", SYS_socket, AF_NETLINK, SOCK_RAW, 0, 0, 0, 0);
	try("ioctl(TIOCSTI)", SYS_ioctl, 0, 0x5412, P(&c), 0, 0, 0);
	try("personality(READ_IMPLIES_EXEC)", SYS_personality, 0x0400000, 0, 0, 0, 0, 0);
}

/* int80 enters the kernel through the i386 gate. */
static long int80(long nr, long a, long b)
{
	long r;
	__asm__ volatile("int $0x80" : "=a"(r) : "a"(nr), "b"(a), "c"(b) : "memory");
	return r;
}

int main(int argc, char **argv)
{
	const char *m = argc > 1 ? argv[1] : "";
	long n = argc > 2 ? atol(argv[2]) : 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(m, "denied")) {
		denied();
	} else if (!strcmp(m, "enosys")) {
		try("nr_1000", 1000, 0, 0, 0, 0, 0, 0);
		try("clone3", __NR_clone3, 0, 0, 0, 0, 0, 0);
	} else if (!strcmp(m, "int80")) {
		printf("getpid via int 0x80: %ld\n", int80(20 /* i386 getpid */, 0, 0));
		puts("survived");
	} else if (!strcmp(m, "socketcall")) {
		long args[3] = {AF_INET, SOCK_STREAM, 0};
		printf("socketcall via int 0x80: %ld\n", int80(102, 1 /* SYS_SOCKET */, (long)args));
		puts("survived");
	} else if (!strcmp(m, "x32")) {
		printf("x32 getpid: %ld\n", syscall(X32_BIT | 39));
		puts("survived");
	} else if (!strcmp(m, "flood")) {
		long eperm = 0;
		for (long i = 0; i < n; i++)
			if (syscall(SYS_acct, "/probe-flood") < 0 && errno == EPERM)
				eperm++;
		printf("flood %ld EPERM of %ld\n", eperm, n);
	} else if (!strcmp(m, "distinct")) {
		char p[64];
		for (long i = 0; i < n; i++) {
			snprintf(p, sizeof p, "/probe-distinct-%ld", i);
			syscall(SYS_acct, p);
		}
		/* one more kind of call after the junk: it must not be hidden */
		syscall(SYS_mount, "none", "/probe-after-junk", "tmpfs", 0, 0);
		printf("distinct %ld\n", n);
	} else if (!strcmp(m, "hide")) {
		char p[64];
		long eperm = 0;
		for (long i = 0; i < n; i++) {
			snprintf(p, sizeof p, "/probe-hide-%ld", i);
			syscall(SYS_acct, p);
		}
		for (int i = 3; i < argc; i++) {
			/* Denied by the filter: the supervisor answers, the
			 * kernel never runs it. */
			if (syscall(atol(argv[i]), 1, 2, 3, 4, 5, 6) < 0 && errno == EPERM)
				eperm++;
		}
		printf("hide %ld EPERM of %d\n", eperm, argc - 3);
	} else if (!strcmp(m, "until-not")) {
		long i = 0;
		while (syscall(SYS_acct, "/probe-until") < 0 && errno == EPERM)
			i++;
		printf("after %ld EPERM: %s\n", i, ename(errno));
	} else {
		fprintf(stderr, "probe: unknown mode %s\n", m);
		return 2;
	}
	return 0;
}

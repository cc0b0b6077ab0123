/*
 * stage2_forkserver.c: the fork server, which keeps a stage-2 forked ahead
 * and hands it out on request, and the constructor that starts it before
 * the Go runtime.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stage2_int.h"

/* The supervisor execs the sealed binary once per host process as the fork
 * server (TC_ENV names its socket, at 3; a pidfd of the host process is at
 * 4). The server keeps one stage-2 forked ahead, blocked on its control
 * socket, and hands it out on request (the supervisor's end of that socket
 * and a pidfd); it forks the next once a stage-2 it handed out has ended
 * (or on the next request). A fork of this small process, which never
 * started Go, costs a fraction of an exec of the whole binary, and forking
 * ahead takes it off a run's critical path. A spare stage-2 holds nothing of
 * any run: the plan, the view's sources and the cgroup to join all arrive on
 * its control socket once it was handed out. The server is the stage-2's
 * parent (the stage-2 dies with it: PDEATHSIG) and reaps it; the supervisor
 * watches and kills it through the pidfd.
 *
 * When the host process is gone the server exits at once, and the sandboxes
 * with it. When only its socket closed (the supervisor replaced it), it ends
 * its spare and stays until the stage-2s it handed out have ended, so that
 * the runs in flight go on. */

/* clone_args as the kernel reads it (CLONE_ARGS_SIZE_VER0, Linux 5.3). */
struct clone3_args {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x1000
#endif

struct spare {
	pid_t pid;
	int pidfd, sock; /* sock: the supervisor's end of its control socket */
	int err;         /* errno of a failed fork, 0 if none */
};

static void on_sigchld(int sig) { (void)sig; }

/* The kernel's struct sigaction (rt_sigaction(2)) where its layout is
 * handler, flags, restorer, mask. */
#if !defined(__x86_64__) && !defined(__aarch64__)
#error "check struct kernel_sigaction's layout on this architecture"
#endif
struct kernel_sigaction {
	void (*handler)(int);
	unsigned long flags;
	void (*restorer)(void);
	uint64_t mask;
};

/* reset_signal sets sig's disposition to SIG_DFL. */
static int reset_signal(int sig)
{
	struct kernel_sigaction ka = {SIG_DFL, 0, NULL, 0};
	return (int)syscall(SYS_rt_sigaction, sig, &ka, NULL, sizeof ka.mask);
}

/* reset_signals gives every signal its default disposition and unblocks
 * all: no signal disposition or mask of the server's or the host process's
 * (one it ignored, say) reaches the stage-2 or the tool (both survive
 * execve). The raw call: libc's sigaction refuses its own signals (32, 33),
 * which a host may still have ignored. */
static int reset_signals(void)
{
	sigset_t none;
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP && reset_signal(sig) < 0)
			return -1;
	sigemptyset(&none);
	return sigprocmask(SIG_SETMASK, &none, NULL);
}

/* fork_spare forks a stage-2 that waits for its plan on a new control
 * socket; the server keeps the other end for the supervisor. */
static struct spare fork_spare(void)
{
	struct spare sp = {-1, -1, -1, 0};
	struct clone3_args a = {0};
	pid_t self = getpid();
	int pair[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) {
		sp.err = errno;
		return sp;
	}
	a.flags = CLONE_PIDFD;
	a.pidfd = (uint64_t)(uintptr_t)&sp.pidfd;
	a.exit_signal = SIGCHLD;
	sp.pid = (pid_t)syscall(SYS_clone3, &a, sizeof a);
	if (sp.pid == 0) {
		if (reset_signals() < 0 || dup2(pair[1], 3) < 0 || syscall(SYS_close_range, 4, ~0U, 0) < 0)
			_exit(TC_EXIT_SETUP);
		/* Only stdin, stdout, stderr (/dev/null) and the control
		 * socket at 3 are left: the server's socket and its pidfd of
		 * the host are closed. */
		tc_parent0 = self;
		tc_stage2();
	}
	sp.err = sp.pid < 0 ? errno : 0;
	close(pair[1]);
	if (sp.pid < 0) {
		close(pair[0]);
		return sp;
	}
	sp.sock = pair[0];
	return sp;
}

static void drop_spare(struct spare *sp)
{
	if (sp->pid < 0)
		return;
	close(sp->pidfd);
	close(sp->sock); /* the spare reads EOF and exits */
	sp->pid = -1;
}

/* reap reaps every ended child and forgets the spare if it was one; it
 * reports whether a stage-2 that was handed out ended. */
static int reap(struct spare *sp)
{
	int handed = 0;
	pid_t w;
	while ((w = waitpid(-1, NULL, WNOHANG)) > 0) {
		if (w == sp->pid)
			drop_spare(sp);
		else
			handed = 1;
	}
	return handed;
}

/* drain ends the spare and waits for the stage-2s handed out, or for the
 * host process to go (then they die with the server). */
static void __attribute__((noreturn)) drain(struct spare *sp, int host, const sigset_t *waiting)
{
	close(tc_ctl); /* a supervisor still waiting for an answer gets EOF */
	drop_spare(sp);
	for (;;) {
		struct pollfd p = {host, POLLIN, 0};
		pid_t w = waitpid(-1, NULL, WNOHANG);
		if (w < 0 && errno == ECHILD)
			_exit(0);
		if (w > 0)
			continue;
		if (ppoll(&p, 1, NULL, waiting) > 0)
			_exit(0);
	}
}

static void __attribute__((noreturn)) fork_server(const char *fdstr)
{
	struct sigaction sa = {0};
	struct spare sp;
	sigset_t chld, waiting;
	const int host = 4;

	/* The supervisor passes the socket at 3, its own pidfd at 4. */
	if (strcmp(fdstr, "3") != 0)
		_exit(TC_EXIT_SETUP);
	tc_ctl = 3;
	/* Named in ps and top like its argv (exec'd as /proc/self/fd/N, its
	 * name would be N); the stage-2s inherit the name. */
	prctl(PR_SET_NAME, "toolcell-stage2", 0, 0, 0);
	/* Keep only stdio, the socket and the pidfd: whatever else the host
	 * process left inheritable would otherwise live as long as the server. */
	tc_check(syscall(SYS_close_range, 5, ~0U, 0), "fork_server", "close_range");
	/* SIGCHLD is blocked except inside ppoll, which unblocks it
	 * atomically: a child that ended at any time wakes the wait. */
	sa.sa_handler = on_sigchld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	if (sigaction(SIGCHLD, &sa, NULL) < 0 || sigprocmask(SIG_BLOCK, &chld, &waiting) < 0)
		tc_fail("fork_server", "sigaction");
	sigdelset(&waiting, SIGCHLD);
	sp = fork_spare();
	for (;;) {
		uint32_t req[2];
		ssize_t n = -1;

		for (;;) {
			struct pollfd p[2] = {{tc_ctl, POLLIN, 0}, {host, POLLIN, 0}};
			if (ppoll(p, 2, NULL, &waiting) > 0) {
				if (p[1].revents)
					_exit(0); /* the host is gone: so are its runs */
				n = recv(tc_ctl, req, sizeof req, MSG_DONTWAIT);
				if (n >= 0 || (errno != EINTR && errno != EAGAIN))
					break;
			} else if (errno != EINTR) {
				break;
			}
			/* SIGCHLD: reap, and fork the next spare once a stage-2
			 * handed out has ended, so that the fork does not compete
			 * with a running setup. A spare that died itself is
			 * replaced on the next request only: one that keeps dying
			 * must not keep the server forking. */
			if (reap(&sp) && sp.pid < 0)
				sp = fork_spare();
		}
		/* Replaced (EOF), a socket or ppoll error, or a request this
		 * server does not know: stop serving, let the runs finish. */
		if (n != sizeof req[0] || req[0] != TC_MSG_FORK)
			drain(&sp, host, &waiting);
		reap(&sp); /* a spare that died is not handed out */
		if (sp.pid < 0)
			sp = fork_spare();
		if (sp.pid < 0) {
			/* Reported, not fatal: the next run may fit (EAGAIN,
			 * ENOMEM). */
			tc_send_error(sp.err, "fork_stage2", "clone3");
			continue;
		}
		{
			char s[8];
			int fds[2] = {sp.pidfd, sp.sock};
			struct buf b = {s, 0, sizeof s};
			tc_put_u32(&b, TC_MSG_FORKED);
			tc_put_u32(&b, (uint32_t)sp.pid);
			if (!tc_send_fds(&b, fds, 2))
				drain(&sp, host, &waiting);
		}
		close(sp.pidfd);
		close(sp.sock);
		sp.pid = -1;
	}
}

/* A host process that runs one sandbox and exits (the CLI: Runner.OneShot)
 * execs the sealed binary as the stage-2 itself, TC_ENV being TC_ENV_DIRECT
 * followed by the host's pid: a fork server would cost it an exec and a
 * spare it never uses. Its control socket is at 3, stdio is /dev/null. The
 * host process is the parent, which it watches as a spare watches the
 * server: PDEATHSIG, armed and then checked against the pid it was given,
 * so that a host gone before this ran is noticed too. */
static void __attribute__((noreturn)) direct_stage2(const char *host)
{
	char *end;
	long pid;

	errno = 0;
	pid = strtol(host, &end, 10);
	if (errno != 0 || end == host || *end != '\0' || pid <= 0)
		_exit(TC_EXIT_SETUP);
	if (reset_signals() < 0 || syscall(SYS_close_range, 4, ~0U, 0) < 0)
		_exit(TC_EXIT_SETUP);
	/* Named like a stage-2 of the server's (exec'd as /proc/self/fd/N,
	 * its name would be N), once the above is done. */
	prctl(PR_SET_NAME, "toolcell-stage2", 0, 0, 0);
	tc_parent0 = (pid_t)pid;
	tc_stage2();
}

/* Runs when the binary is loaded, before the Go runtime. */
__attribute__((constructor)) static void toolcell_stage2_init(void)
{
	const char *fd = getenv(TC_ENV);
	if (!fd)
		return;
	if (strncmp(fd, TC_ENV_DIRECT, sizeof TC_ENV_DIRECT - 1) == 0)
		direct_stage2(fd + sizeof TC_ENV_DIRECT - 1);
	fork_server(fd);
}

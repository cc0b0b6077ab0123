/*
 * stage2_pid1.c: pid 1 of the sandbox and the tool's start: pid 1 builds the
 * sandbox from inside (view, user limits, hostname, network, rlimits,
 * descriptors, privileges), then on EXEC clones the tool (run_tool: stdio,
 * Landlock, seccomp, execve), reports STARTED, and reaps until the tool
 * exits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stage2_int.h"

/* tc_wait_maps waits for the stage-2's next signal on fd: first that pid 1's
 * id maps are written, later that vm.memfd_noexec is set. EOF means the
 * stage-2 failed (and reported why) or died. */
void tc_wait_maps(int fd)
{
	char c;
	ssize_t n;
	do
		n = read(fd, &c, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1)
		_exit(TC_EXIT_SETUP);
}

/* toolctx is what pid 1 and the tool child share until the child's execve:
 * the child is cloned with CLONE_VM | CLONE_VFORK | CLONE_FILES, so it runs
 * on pid 1's memory and descriptor table while pid 1 waits. execve gives the
 * tool a private copy of the table and closes its close-on-exec entries
 * there; pid 1 keeps the originals, among them the filter's listener. */
struct toolctx {
	const struct plan *pl;
	const struct execmsg *x;
	const char *step, *detail; /* set when the child failed */
	int err;
	int listener; /* seccomp listener (close-on-exec), or -1 */
	int ruleset;  /* the Landlock ruleset pid 1 built, or -1 */
	int dups[3];  /* stdio copies the child made in the shared table, or -1 */
};

/* tool_fail records a failure for pid 1 and exits. After the filter is in
 * place the child must make no syscall the policy might refuse (a refusal
 * would wait for a supervisor that has no listener yet), so pid 1, not the
 * child, reports it. */
static void __attribute__((noreturn)) tool_fail(struct toolctx *t, const char *step, const char *detail)
{
	t->err = errno;
	t->detail = detail;
	t->step = step;
	_exit(127);
}

/* ---- Landlock ---- */

/* The kernel's structures and calls (linux/landlock.h), spelled out: the
 * build host's headers may predate them. An older kernel takes the larger
 * ruleset attribute as long as the fields it does not know are zero, which
 * the plan sees to (Go handles only what the probed ABI has). */
struct ll_ruleset_attr {
	uint64_t handled_access_fs, handled_access_net, scoped;
};

struct ll_path_beneath {
	uint64_t allowed_access;
	int32_t parent_fd;
} __attribute__((packed));

struct ll_net_port {
	uint64_t allowed_access, port;
};

#define LL_RULE_PATH_BENEATH 1
#define LL_RULE_NET_PORT 2
#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_add_rule 445
#define SYS_landlock_restrict_self 446
#endif

/* landlock_ruleset builds the plan's ruleset in pid 1, once its view is
 * complete, and returns it (close-on-exec), or -1 when the plan applies
 * none. Each rule's path is opened here, inside the view and without
 * following a symlink, so a rule lands on what the view shows at that path;
 * whatever else the view holds gets no right from Landlock. Nothing changes
 * the view after this (pid 1 is its only process until the tool). A failure
 * fails the run: nothing is skipped. Building the ruleset restricts no one:
 * the tool child enters it (landlock_apply), pid 1 stays outside. */
static int landlock_ruleset(const struct llplan *ll)
{
	struct ll_ruleset_attr attr = {ll->fs, ll->net, ll->scoped};
	struct open_how how = {
		.flags = O_PATH | O_CLOEXEC,
		.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	int rs;

	if (ll->abi == 0)
		return -1;
	rs = (int)tc_check(syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0), "landlock_create_ruleset", NULL);
	for (uint32_t i = 0; i < ll->nrules; i++) {
		struct ll_path_beneath pb = {ll->rules[i].access, -1};
		pb.parent_fd = (int32_t)tc_check(syscall(SYS_openat2, AT_FDCWD, ll->rules[i].path, &how, sizeof how),
		                                 "landlock_open", ll->rules[i].path);
		tc_check(syscall(SYS_landlock_add_rule, rs, LL_RULE_PATH_BENEATH, &pb, 0), "landlock_add_rule", ll->rules[i].path);
		close(pb.parent_fd);
	}
	for (uint32_t i = 0; i < ll->nports; i++) {
		struct ll_net_port np = {ll->ports[i].access, ll->ports[i].port};
		tc_check(syscall(SYS_landlock_add_rule, rs, LL_RULE_NET_PORT, &np, 0), "landlock_add_rule", "tcp port");
	}
	return rs;
}

/* landlock_apply restricts the tool child to pid 1's ruleset and closes it
 * (in the table it shares with pid 1). */
static void landlock_apply(struct toolctx *t)
{
	if (t->ruleset < 0)
		return;
	/* no_new_privs is set (tc_drop_privileges), as the kernel requires. */
	if (syscall(SYS_landlock_restrict_self, t->ruleset, 0) < 0)
		tool_fail(t, "landlock_restrict_self", NULL);
	close(t->ruleset);
}

/* run_tool is the tool child: it writes only t and its own stack (a
 * separate one), and never returns. */
static int run_tool(void *arg)
{
	struct toolctx *t = arg;
	const struct execmsg *x = t->x;
	struct sock_fprog prog = {(unsigned short)t->pl->nfilter, t->pl->filter};
	int fds[3] = {x->fds[0], x->fds[1], x->fds[2]};

	if (setsid() < 0)
		tool_fail(t, "setsid", NULL);
	for (int i = 0; i < 3; i++)
		if (fds[i] < 3) { /* keep dup2 below from clobbering a source */
			int f = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
			if (f < 0)
				tool_fail(t, "stdio", NULL);
			fds[i] = t->dups[i] = f;
		}
	for (int i = 0; i < 3; i++)
		if (dup2(fds[i], i) < 0)
			tool_fail(t, "stdio", NULL);
	/* Every other descriptor closes at execve, whatever its flag. */
	if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
		tool_fail(t, "close_range", NULL);
	if (chdir(x->cwd) < 0)
		tool_fail(t, "chdir", x->cwd);
	landlock_apply(t);
	if (t->pl->flags & TC_PLAN_NOTIFY) {
		/* The listener lands in the shared table, close-on-exec. */
		t->listener = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
		                           SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
		if (t->listener < 0)
			tool_fail(t, "seccomp", NULL);
	} else if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0) {
		tool_fail(t, "seccomp", NULL);
	}
	execve(x->path, x->argv, x->envp);
	tool_fail(t, "execve", x->path);
}

/* move_fd puts fd at number to (close-on-exec), closing the old number. */
static int move_fd(int fd, int to)
{
	if (fd == to) {
		tc_check(fcntl(fd, F_SETFD, FD_CLOEXEC), "move_fd", NULL);
		return fd;
	}
	tc_check(dup3(fd, to, O_CLOEXEC), "move_fd", NULL);
	close(fd);
	return to;
}

/* send_started reports the tool's pid with pid 1's namespaces (nns of
 * them: none when READY carried them) and the seccomp listener (if any)
 * attached, so the supervisor can check the namespaces against its own and
 * collect the tool's denied syscalls. The kernel adds pid 1's host pid (the
 * supervisor set SO_PASSCRED). */
static void send_started(pid_t tool, int32_t memfd_noexec, const int *ns, int nns, int listener)
{
	char s[12];
	int fds[TC_NS_COUNT + 1];
	struct buf b = {s, 0, sizeof s};
	memcpy(fds, ns, sizeof(int) * (size_t)nns);
	fds[nns] = listener;
	tc_put_u32(&b, TC_MSG_STARTED);
	tc_put_u32(&b, (uint32_t)tool);
	tc_put_u32(&b, (uint32_t)memfd_noexec);
	/* Without STARTED the supervisor neither answers the tool's denied
	 * calls nor times it: end the sandbox instead. */
	if (!tc_send_fds(&b, fds, listener >= 0 ? nns + 1 : nns))
		_exit(TC_EXIT_SETUP);
}

/* send_ready tells the supervisor, of a sandbox built ahead, that pid 1 is
 * complete and waits for EXEC: the evidence can be read now, with the
 * namespaces passed here. */
static void send_ready(int32_t memfd_noexec, const int *ns)
{
	char s[8];
	struct buf b = {s, 0, sizeof s};
	tc_put_u32(&b, TC_MSG_READY);
	tc_put_u32(&b, (uint32_t)memfd_noexec);
	if (!tc_send_fds(&b, ns, TC_NS_COUNT))
		_exit(TC_EXIT_SETUP);
}

/* The tool child's stack: clone with CLONE_VM needs one of its own, since
 * pid 1's frames stay live while the child runs. */
static char tool_stack[256 * 1024] __attribute__((aligned(16)));

/* start_tool forks the tool and returns its pid, with the seccomp listener
 * (or -1) in *listener; a failure of the child is reported here. */
static pid_t start_tool(const struct plan *pl, const struct execmsg *x, int ruleset, int *listener)
{
	struct toolctx t;
	pid_t tool;
	int st;

	/* Like vfork (no copy of pid 1's page tables, pid 1 resumes once the
	 * tool has exec'd or failed), plus a shared descriptor table. */
	t = (struct toolctx){pl, x, NULL, NULL, 0, -1, ruleset, {-1, -1, -1}};
	tool = clone(run_tool, tool_stack + sizeof tool_stack,
	             CLONE_VM | CLONE_VFORK | CLONE_FILES | SIGCHLD, &t);
	if (tool < 0)
		tc_fail("fork_tool", NULL);
	/* pid 1's table now holds the tool's stdio at 0-2 and the copies the
	 * child made; pid 1 keeps none of them. */
	for (int i = 0; i < 3; i++) {
		close(x->fds[i]);
		if (t.dups[i] >= 0)
			close(t.dups[i]);
		close(i);
	}
	if (t.step) { /* no STARTED, no namespace fds, no listener */
		while (waitpid(tool, &st, 0) < 0 && errno == EINTR)
			;
		tc_fail_errno(t.err, t.step, t.detail);
	}
	if ((pl->flags & TC_PLAN_NOTIFY) && t.listener < 0)
		tc_fail_errno(EBADF, "seccomp", "no listener");
	*listener = t.listener;
	return tool;
}

/* reap reaps everything; when the tool exits, pid 1 exits and the kernel
 * kills whatever is left in the pid namespace. */
static void __attribute__((noreturn)) reap(pid_t tool)
{
	int st;

	for (;;) {
		pid_t w = waitpid(-1, &st, 0);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			tc_fail("wait", NULL);
		if (w == tool) {
			char ack[8];
			tc_send_int(TC_MSG_EXIT, st);
			/* Stay until the supervisor has read its evidence from
			 * /proc (DONE) or is gone (EOF): a fast tool must not take
			 * the sandbox down before it was inspected. */
			while (recv(tc_ctl, ack, sizeof ack, 0) < 0 && errno == EINTR)
				;
			_exit(0);
		}
	}
}

/* set_rlimits sets the plan's resource limits, which the tool inherits. */
static void set_rlimits(const struct plan *pl)
{
	for (uint32_t i = 0; i < pl->nrlim; i++) {
		struct rlimit rl = {pl->rlims[i].cur, pl->rlims[i].max};
		tc_check(setrlimit((int)pl->rlims[i].resource, &rl), "setrlimit", NULL);
	}
}

/* keep_fds closes all but the control socket (3) and the life pipe (4);
 * both are close-on-exec, so the tool gets neither. */
static void keep_fds(void)
{
	tc_ctl = move_fd(tc_ctl, 3);
	tc_life = move_fd(tc_life, 4);
	tc_check(syscall(SYS_close_range, 5, ~0U, 0), "close_range", NULL);
}

/* open_namespaces opens pid 1's namespaces, in TC_NS_NAMES order. */
static void open_namespaces(int *ns)
{
	static const char *const ns_names[TC_NS_COUNT] = {TC_NS_NAMES};

	for (int i = 0; i < TC_NS_COUNT; i++) {
		char path[32];
		snprintf(path, sizeof path, "/proc/self/ns/%s", ns_names[i]);
		ns[i] = open(path, O_RDONLY | O_CLOEXEC);
		if (ns[i] < 0)
			tc_fail("namespace_fd", ns_names[i]);
	}
}

/* tc_pid1 is pid 1: maps is its end of the stage-2's sync socket. */
void __attribute__((noreturn)) tc_pid1(struct plan *pl, int maps)
{
	struct execmsg x;
	pid_t tool;
	int ns[TC_NS_COUNT], nns = TC_NS_COUNT, listener, ruleset;
	int32_t memfd_noexec;

	tc_arm_pdeath();
	tc_open_user_limits(pl);
	tc_build_view(pl, maps);
	tc_set_user_limits(pl);
	if (pl->flags & TC_PLAN_MEMFD_NOEXEC)
		tc_wait_maps(maps); /* set by now, while the view was built */
	close(maps);
	memfd_noexec = tc_read_memfd_noexec();
	tc_check(sethostname(pl->hostname, strlen(pl->hostname)), "sethostname", pl->hostname);
	tc_loopback_up();
	set_rlimits(pl);
	keep_fds();
	open_namespaces(ns);
	tc_make_sockets(pl);
	tc_drop_privileges(pl);
	ruleset = landlock_ruleset(&pl->ll);
	if (pl->flags & TC_PLAN_READY) {
		send_ready(memfd_noexec, ns);
		for (int i = 0; i < TC_NS_COUNT; i++)
			close(ns[i]);
		nns = 0;
	}

	tc_read_exec(&x);
	tool = start_tool(pl, &x, ruleset, &listener);
	send_started(tool, memfd_noexec, ns, nns, listener);
	if (listener >= 0)
		close(listener);
	for (int i = 0; i < nns; i++)
		close(ns[i]);
	reap(tool);
}

/*
 * stage2.c: toolcell's stage-2, run before the Go runtime starts. This file
 * holds its main flow, from the plan to pid 1's clone and end.
 *
 * The supervisor starts a sealed copy of its own binary with TC_ENV set; the
 * constructor (stage2_forkserver.c) notices it and never returns to Go. The stage-2 executes
 * a plan the Go side computed and validated: it creates the namespaces, builds
 * the filesystem view, drops privileges, and execs the tool when told to. It
 * makes no policy decision: every path, flag, limit and filter arrives in the
 * plan. Each failure is reported to the supervisor as (step, errno, detail).
 *
 * Process shape:
 *   outer  (host):    join the cgroup (v2: fork itself into it, the fork
 *                     goes on), become the run's uid (as root), clone
 *                     pid 1 into seven new namespaces, write its id maps,
 *                     wait for it.
 *   pid 1  (sandbox): mounts, pivot_root, drop privileges; on EXEC fork the
 *                     tool, report STARTED, and reap until it exits.
 *   tool:             setsid, stdio, seccomp (+ listener), execve.
 *
 * The outer writes pid 1's id maps because a process may not write its own
 * namespace's maps to anything but its own ids, and pid 1's own id would be
 * unmapped. As root the outer has become the run's host uid/gid first
 * (TC_PLAN_RUN_IDS), so the namespace is that uid's, and it maps only that
 * uid and gid, never root. pid 1 needs the maps only when it first creates
 * files, so it clones the mount sources while they are written.
 *
 * One file per mechanism: stage2_forkserver.c (the constructor and the fork
 * server), stage2_wire.c (messages, failure reports, the plan reader),
 * stage2_privs.c (ids and privileges), stage2_view.c (the mount tree),
 * stage2_net.c (loopback, routes, sockets), stage2_pid1.c (pid 1 and the
 * tool's start). stage2_int.h holds what they share; stage2.h is the wire
 * contract with Go.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stage2_int.h"

/* raise_nofile: the plan may bring up to TC_MAX_PLAN_FDS descriptors: the
 * soft limit the host process gave its children (often 1024) may be too
 * low. */
static void raise_nofile(void)
{
	struct rlimit nofile;

	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &nofile);
	}
}

/* exit_as waits for child (pid 1, or the stage-2 forked into a v2
 * cgroup) and exits as it did. */
static void __attribute__((noreturn)) exit_as(pid_t child)
{
	int st;

	while (waitpid(child, &st, 0) < 0)
		if (errno != EINTR)
			_exit(TC_EXIT_SETUP);
	if (WIFSIGNALED(st))
		_exit(128 + WTERMSIG(st));
	_exit(WEXITSTATUS(st));
}

/* clone_args up to its cgroup field (CLONE_ARGS_SIZE_VER2, Linux 5.7). */
struct clone3_cgroup_args {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
	uint64_t set_tid, set_tid_size, cgroup;
};

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

/* fork_into_cgroup (cgroup v2) forks this process into the cgroup whose
 * directory is cgfd, and returns in the child, which goes on as the
 * stage-2. A write to cgroup.procs takes the cgroup threadgroup lock for
 * writing, which waits for an RCU grace period unless another migration
 * ran just before (milliseconds after idle time); a clone into the cgroup
 * takes it only for reading. The child is forked as this process is, before
 * it becomes the run's uid, which may not write the cgroup's cgroup.procs
 * (the clone is checked like a migration). This process keeps nothing:
 * it waits for the child and exits as it did; the child dies with it
 * (parent-death signal), as it would with the fork server. */
static void fork_into_cgroup(int cgfd)
{
	struct clone3_cgroup_args a = {0};
	pid_t self = getpid(), child;

	a.flags = CLONE_INTO_CGROUP;
	a.exit_signal = SIGCHLD;
	a.cgroup = (uint64_t)cgfd;
	child = (pid_t)tc_check(syscall(SYS_clone3, &a, sizeof a), "join_cgroup", "clone3(CLONE_INTO_CGROUP)");
	if (child == 0) {
		close(cgfd);
		tc_parent0 = self;
		tc_arm_pdeath();
		return;
	}
	syscall(SYS_close_range, 0, ~0U, 0);
	exit_as(child);
}

/* join_cgroup joins the run's cgroup (each v1 hierarchy, or v2) before the
 * clone, so that pid 1 is born in it and its cgroup namespace is rooted
 * there. */
static void join_cgroup(const struct plan *pl)
{
	if (pl->flags & TC_PLAN_CGROUP_CLONE) {
		if (pl->ncgfds != 1)
			tc_fail_errno(EBADMSG, "plan", "CGROUP_CLONE needs exactly one cgroup descriptor");
		fork_into_cgroup(pl->fds[0]);
		return;
	}
	for (int i = 0; i < pl->ncgfds; i++) {
		if (write(pl->fds[i], "0", 1) != 1)
			tc_fail("join_cgroup", "cgroup.procs");
		close(pl->fds[i]);
	}
}

/* clone_pid1 clones pid 1 into seven new namespaces and returns its pid,
 * with this process's end of the sync socket in *maps. pid 1 gets the other
 * end and the read end of the life pipe, whose write end only this process
 * holds. */
static pid_t clone_pid1(struct plan *pl, int *maps)
{
	int lifepipe[2], pair[2];
	pid_t child;

	/* The maps signal goes over a socket: send(MSG_NOSIGNAL) fails with
	 * EPIPE, where a pipe would raise SIGPIPE, if pid 1 died already. */
	if (pipe2(lifepipe, O_CLOEXEC) < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
		tc_fail("pipe", NULL);
	/* A raw clone returns in the child on a copy of this stack, as fork.
	 * With every pointer NULL the argument order only matters where the
	 * stack comes first. */
#if defined(__s390__) || defined(__CRIS__)
#error "raw clone argument order: stack comes first on this architecture"
#endif
	child = (pid_t)syscall(SYS_clone, CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID |
	                                  CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP | SIGCHLD,
	                       NULL, NULL, NULL, 0);
	if (child < 0)
		tc_fail("clone_pid1", NULL);
	if (child == 0) {
		close(lifepipe[1]);
		close(pair[1]);
		tc_life = lifepipe[0];
		tc_pid1(pl, pair[0]);
	}
	close(lifepipe[0]);
	close(pair[0]);
	*maps = pair[1];
	return child;
}

/* close_sources: pid 1 has its own copies of the view's sources: this
 * process, which a process of the run's uid could reach, keeps none. */
static void close_sources(const struct plan *pl)
{
	for (int i = pl->ncgfds; i < pl->nfds; i++)
		close(pl->fds[i]);
	for (uint32_t i = 0; i < pl->nops; i++)
		if (pl->ops[i].tree >= 0)
			close(pl->ops[i].tree);
}

/* signal_pid1 sends pid 1 its next signal on the sync socket (see
 * tc_wait_maps). */
static void signal_pid1(int maps, const char *step)
{
	if (send(maps, "", 1, MSG_NOSIGNAL) != 1)
		tc_fail(step, "sync");
}

/* tc_stage2 runs one sandbox over the control socket at fd 3; tc_parent0 is
 * the fork server, set before the fork. */
void __attribute__((noreturn)) tc_stage2(void)
{
	struct plan pl;
	pid_t child;
	int maps;

	tc_ctl = 3;
	tc_arm_pdeath();
	raise_nofile();
	tc_read_plan(&pl);
	join_cgroup(&pl);
	tc_idmap_sources(&pl);
	tc_become_run_ids(&pl);
	tc_arm_pdeath();
	child = clone_pid1(&pl, &maps);
	close_sources(&pl);
	tc_write_id_maps(&pl, child);
	signal_pid1(maps, "id_maps");
	/* Off pid 1's path: it builds its view meanwhile, and waits for this
	 * second signal only before it reads the value back. */
	if (pl.flags & TC_PLAN_MEMFD_NOEXEC) {
		tc_set_memfd_noexec(&pl, child);
		signal_pid1(maps, "memfd_noexec");
	}
	close(maps);
	/* The maps are written: nothing needs this process's /proc files any
	 * more, and a process of the run's uid must not trace it. */
	if (pl.flags & TC_PLAN_RUN_IDS)
		tc_check(prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "dumpable", "run ids");
	close(tc_ctl);
	exit_as(child);
}

/*
 * stage2_privs.c: ids and privileges: the parent-death signal re-armed after
 * each credential change, the run's host ids (securebits, capabilities
 * check), pid 1's id maps, user limits, the final drop of every privilege,
 * and vm.memfd_noexec (its writer and its reader).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stage2_int.h"

pid_t tc_parent0;
int tc_life = -1;

/* tc_arm_pdeath (re)arms the parent-death signal and then checks that the
 * parent is still there. The kernel clears the signal on every credential
 * change, so it is re-armed after each one. The outer stage-2 sees its parent
 * with getppid(); pid 1's parent is outside its pid namespace (getppid() is
 * 0), so pid 1 watches for the hangup of a pipe only the outer holds. */
void tc_arm_pdeath(void)
{
	tc_check(prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0), "pdeathsig", NULL);
	if (tc_life >= 0) {
		struct pollfd p = {tc_life, POLLIN, 0};
		if (poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR)))
			_exit(TC_EXIT_SETUP);
	} else if (getppid() != tc_parent0) {
		_exit(TC_EXIT_SETUP);
	}
}

/* tc_write_file writes s to path in one write(2), as /proc's id map files
 * require. */
void tc_write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	size_t n = strlen(s);
	if (fd < 0 || write(fd, s, n) != (ssize_t)n)
		tc_fail("write_id_map", path);
	close(fd);
}

/* check_no_caps confirms that the stage-2, now the run's uid for good,
 * holds no capability on the host. */
static void check_no_caps(void)
{
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2] = {{0}};
	tc_check(syscall(SYS_capget, &h, d), "capabilities", "capget");
	if (d[0].permitted | d[1].permitted | d[0].effective | d[1].effective)
		tc_fail_errno(EPERM, "capabilities", "left after becoming the run's uid");
}

/* tc_become_run_ids drops the supplementary groups (TC_PLAN_DROP_GROUPS,
 * as root), then, with TC_PLAN_RUN_IDS: as root, become the run's own host
 * uid/gid before creating the user namespace: the namespace is then owned by that uid, and
 * what the sandbox counts in it (inotify instances, namespaces) is charged
 * to that uid up the namespace hierarchy, not to root. From here on the
 * stage-2 holds no capability on the host, and may map only its own ids, as
 * a rootless one. Dumpable again (the id change cleared it), so that pid 1's
 * /proc files, its id maps among them, belong to the run's uid and not to
 * root. */
void tc_become_run_ids(const struct plan *pl)
{
	if ((pl->flags & TC_PLAN_DROP_GROUPS) && setgroups(0, NULL) < 0)
		tc_fail("setgroups", NULL);
	if (!(pl->flags & TC_PLAN_RUN_IDS))
		return;
	/* No securebit of the host process's (SECBIT_NO_SETUID_FIXUP,
	 * SECBIT_KEEP_CAPS) may keep capabilities across the id change. */
	tc_check(prctl(PR_SET_SECUREBITS, 0, 0, 0, 0), "securebits", NULL);
	tc_check(setresgid(pl->run_gid, pl->run_gid, pl->run_gid), "setresgid", "run ids");
	/* The saved uid stays 0 only until vm.memfd_noexec is set. */
	tc_check(setresuid(pl->run_uid, pl->run_uid, (pl->flags & TC_PLAN_MEMFD_NOEXEC) ? 0 : pl->run_uid),
	         "setresuid", "run ids");
	tc_check(prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "dumpable", "run ids");
	if (!(pl->flags & TC_PLAN_MEMFD_NOEXEC))
		check_no_caps();
}

/* tc_write_id_maps writes pid 1's id maps. setgroups is denied first: an
 * unprivileged writer must, and the sandbox must never regain a group by
 * setgroups(2). */
void tc_write_id_maps(const struct plan *pl, pid_t child)
{
	char path[64];

	snprintf(path, sizeof path, "/proc/%d/setgroups", (int)child);
	tc_write_file(path, "deny");
	snprintf(path, sizeof path, "/proc/%d/uid_map", (int)child);
	tc_write_file(path, pl->uid_map);
	snprintf(path, sizeof path, "/proc/%d/gid_map", (int)child);
	tc_write_file(path, pl->gid_map);
}

/* tc_open_user_limits opens the plan's /proc/sys/user files while the host's
 * /proc is still mounted; user sysctls are those of the opener's user
 * namespace, here the sandbox's, which pid 1 holds CAP_SYS_RESOURCE in. */
void tc_open_user_limits(struct plan *pl)
{
	int dir;
	if (pl->nulim == 0)
		return;
	dir = open("/proc/sys/user", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		tc_fail("user_limit", "/proc/sys/user");
	for (uint32_t i = 0; i < pl->nulim; i++) {
		pl->ulims[i].fd = openat(dir, pl->ulims[i].name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
		if (pl->ulims[i].fd < 0)
			tc_fail("user_limit", pl->ulims[i].name);
	}
	close(dir);
}

/* tc_set_user_limits writes each limit and reads it back, before pid 1 drops
 * the capabilities the writes need; the files were opened while the host's
 * /proc was still there. */
void tc_set_user_limits(struct plan *pl)
{
	for (uint32_t i = 0; i < pl->nulim; i++) {
		struct ulim *u = &pl->ulims[i];
		size_t n = strlen(u->value);
		char got[32];
		ssize_t k;
		if (write(u->fd, u->value, n) != (ssize_t)n)
			tc_fail("user_limit", u->name);
		k = pread(u->fd, got, sizeof got - 1, 0);
		if (k < 0)
			tc_fail("user_limit_read", u->name);
		while (k > 0 && got[k - 1] == '\n')
			k--;
		got[k] = '\0';
		if (strcmp(got, u->value) != 0)
			tc_fail_errno(EIO, "user_limit_verify", u->name);
		close(u->fd);
	}
}

/* tc_drop_privileges leaves pid 1 (and so the tool) with no capability in any
 * set, no_new_privs, the mapped uid/gid, and not dumpable. */
void tc_drop_privileges(struct plan *pl)
{
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2] = {{0}};

	tc_check(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs", NULL);
	for (uint32_t c = 0; c <= pl->last_cap; c++)
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
			tc_fail("capbset_drop", NULL);
	tc_check(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "ambient_clear", NULL);
	tc_check(setresgid(pl->gid, pl->gid, pl->gid), "setresgid", NULL);
	tc_check(setresuid(pl->uid, pl->uid, pl->uid), "setresuid", NULL);
	tc_check(syscall(SYS_capset, &h, d), "capset", NULL);
	tc_check(prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "dumpable", NULL);
	tc_arm_pdeath();
}

/* ---- memfds ---- */

/* tc_read_memfd_noexec reads vm.memfd_noexec of pid 1's pid namespace (the
 * kernel keeps it per pid namespace, whichever /proc it is reached through)
 * for the record, -1 if the kernel has none. pid 1 reads it once its view
 * is built, after the stage-2 set it (tc_set_memfd_noexec). */
int32_t tc_read_memfd_noexec(void)
{
	char b[16] = {0};
	ssize_t n;
	int fd = open("/proc/sys/vm/memfd_noexec", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = pread(fd, b, sizeof b - 1, 0);
	close(fd);
	if (n <= 0 || b[0] < '0' || b[0] > '9')
		return -1;
	return (int32_t)atoi(b);
}

/* tc_set_memfd_noexec sets vm.memfd_noexec = 2 for pid 1's pid namespace:
 * memfd_create then refuses MFD_EXEC and seals every memfd non-executable,
 * so no memfd can be exec'd, and a nested pid namespace cannot go lower.
 * The kernel sets the value of the writer's own pid namespace, lets only
 * the global root uid write /proc/sys, and wants CAP_SYS_ADMIN over the
 * namespace's owner; neither pid 1 (the run's uid) nor anything after it
 * qualifies. So a child of this process, root again (the saved uid kept 0
 * for this) and moved into pid 1's pid namespace, writes it while pid 1
 * builds its view; pid 1 waits for it before it reads the value back, long
 * before the tool exists. Then the stage-2 drops root for good. Go checked
 * that the host process may write the file. */
static char writer_stack[16 * 1024] __attribute__((aligned(16)));

/* write_memfd_noexec is the writer: it shares the stage-2's memory and
 * writes only *err. */
static int write_memfd_noexec(void *err)
{
	int fd = open("/proc/sys/vm/memfd_noexec", O_WRONLY | O_CLOEXEC);
	*(int *)err = fd >= 0 && write(fd, "2", 1) == 1 ? 0 : errno;
	_exit(0);
}

void tc_set_memfd_noexec(const struct plan *pl, pid_t child)
{
	char path[64];
	int ns, st, werr = 0;
	pid_t w;

	snprintf(path, sizeof path, "/proc/%d/ns/pid", (int)child);
	if ((pl->flags & TC_PLAN_RUN_IDS) && setresuid((uid_t)-1, 0, (uid_t)-1) < 0)
		tc_fail("memfd_noexec", "regain root");
	ns = open(path, O_RDONLY | O_CLOEXEC);
	if (ns < 0 || setns(ns, CLONE_NEWPID) < 0)
		tc_fail("memfd_noexec", "enter the pid namespace");
	close(ns);
	/* Like vfork: no copy of this process's page tables (a fork cost
	 * most of a millisecond here); this process resumes once it exited. */
	w = clone(write_memfd_noexec, writer_stack + sizeof writer_stack, CLONE_VM | CLONE_VFORK | SIGCHLD, &werr);
	if (w < 0)
		tc_fail("memfd_noexec", "clone");
	while (waitpid(w, &st, 0) < 0)
		if (errno != EINTR)
			tc_fail("memfd_noexec", "wait");
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || werr != 0)
		tc_fail_errno(werr ? werr : EINTR, "memfd_noexec", "/proc/sys/vm/memfd_noexec");
	if (pl->flags & TC_PLAN_RUN_IDS) {
		tc_check(setresuid(pl->run_uid, pl->run_uid, pl->run_uid), "memfd_noexec", "drop root");
		check_no_caps();
	}
	tc_arm_pdeath(); /* each change of credentials cleared it */
}


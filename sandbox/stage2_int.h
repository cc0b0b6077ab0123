/*
 * stage2_int.h: what the stage-2's C files share (the plan, message buffers,
 * the failure helpers, the shared globals and functions); stage2.h is the
 * wire contract with Go. Every symbol visible outside its file is named tc_*:
 * the stage-2 links into every Go program that imports the package.
 */
#ifndef TOOLCELL_STAGE2_INT_H
#define TOOLCELL_STAGE2_INT_H

#include <errno.h>
#include <linux/filter.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "stage2.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* ---- the plan (read by tc_read_plan, layout in stage2.h) ---- */

struct op {
	uint32_t kind, attr, mode;
	int32_t fd;
	const char *a, *b;
	uint32_t idmap; /* TC_OP_BIND: 1 + index into plan.idmaps, 0: none */
	int tree;       /* detached mount cloned from the source (TC_OP_BIND) */
};

/* An idmapping for writable binds: the id maps of a user namespace that
 * shows the grant's owner as the run's host ids (see tc_idmap_sources). */
struct idmapspec {
	const char *uid_map, *gid_map;
};

struct rlim {
	uint32_t resource;
	uint64_t cur, max;
};

struct sock {
	uint32_t kind, addr, port;
};

/* Landlock rules for the tool (see stage2.h); abi 0: none. */
struct llrule {
	uint64_t access;
	const char *path;
};

struct llport {
	uint64_t access, port;
};

struct llplan {
	uint32_t abi, nrules, nports;
	uint64_t fs, net, scoped;
	struct llrule *rules;
	struct llport ports[TC_MAX_LL_PORTS];
};

struct ulim {
	const char *name, *value; /* /proc/sys/user/<name> gets value */
	int fd;
};

struct plan {
	uint32_t flags, uid, gid, last_cap;
	const char *staging, *hostname, *rootopts, *uid_map, *gid_map;
	uint32_t run_uid, run_gid; /* host ids of the run (TC_PLAN_RUN_IDS) */
	uint32_t nulim;
	struct ulim ulims[TC_MAX_USER_LIMITS];
	int fds[TC_MAX_PLAN_FDS]; /* cgroup.procs files, then the view's sources */
	int ncgfds, nfds;
	uint32_t nops, nrlim, nfilter, nsock, nidmaps;
	struct idmapspec idmaps[TC_MAX_IDMAPS];
	struct sock socks[TC_MAX_SOCKETS];
	struct op *ops;
	struct rlim *rlims;
	struct sock_filter *filter;
	struct llplan ll;
};

/* The EXEC message: what pid 1 runs as the tool. */
struct execmsg {
	const char *path, *cwd;
	char **argv, **envp;
	int fds[3];
};

/* ---- shared state ---- */

extern int tc_ctl;        /* the control socket (the fork server's, or the run's) */
extern pid_t tc_parent0;  /* the outer stage-2's parent: the fork server */
extern int tc_life;       /* pid 1: read end of a pipe only the outer holds open */

/* ---- messages (stage2_wire.c) ---- */

struct buf {
	char *p;
	size_t n, cap;
};

void tc_put_u32(struct buf *b, uint32_t v);
int tc_send_fds(struct buf *b, const int *fds, int nfds);
void tc_send_int(uint32_t type, int32_t v);
void tc_read_plan(struct plan *pl);
void tc_read_exec(struct execmsg *x);

/* ---- failures ----
 * A failing step is reported to the supervisor as TC_MSG_ERROR: step, int32
 * errno, detail (NULL: ""). tc_send_error only reports; tc_fail_errno
 * reports and ends the process with TC_EXIT_SETUP; tc_fail does so with the
 * errno of the call that failed; tc_check fails the step if a call returned
 * less than 0 (as system calls report failure) and returns its result. */
void tc_send_error(int err, const char *step, const char *detail);
void __attribute__((noreturn)) tc_fail_errno(int err, const char *step, const char *detail);

static inline void __attribute__((noreturn)) tc_fail(const char *step, const char *detail)
{
	tc_fail_errno(errno, step, detail);
}

static inline long tc_check(long r, const char *step, const char *detail)
{
	if (r < 0)
		tc_fail(step, detail);
	return r;
}

/* ---- the view (stage2_view.c) ---- */

void tc_idmap_sources(struct plan *pl);
void tc_build_view(struct plan *pl, int maps);

/* ---- network (stage2_net.c) ---- */

void tc_loopback_up(void);
void tc_make_sockets(struct plan *pl);

/* ---- privileges (stage2_privs.c) ---- */

void tc_arm_pdeath(void);
void tc_write_file(const char *path, const char *s);
void tc_become_run_ids(const struct plan *pl);
void tc_write_id_maps(const struct plan *pl, pid_t child);
void tc_open_user_limits(struct plan *pl);
void tc_set_user_limits(struct plan *pl);
void tc_drop_privileges(struct plan *pl);
void tc_set_memfd_noexec(const struct plan *pl, pid_t child);
int32_t tc_read_memfd_noexec(void);

/* ---- pid 1 and the tool (stage2_pid1.c) ---- */

void tc_wait_maps(int fd);
void __attribute__((noreturn)) tc_pid1(struct plan *pl, int maps);

/* ---- the stage-2's main flow (stage2.c) ---- */

void __attribute__((noreturn)) tc_stage2(void);

#endif

/*
 * stage2.c: toolcell's stage-2, run before the Go runtime starts.
 *
 * The supervisor starts a sealed copy of its own binary with TC_ENV set; the
 * constructor below notices it and never returns to Go. The stage-2 executes
 * a plan the Go side computed and validated: it creates the namespaces, builds
 * the filesystem view, drops privileges, and execs the tool when told to. It
 * makes no policy decision: every path, flag, limit and filter arrives in the
 * plan. Each failure is reported to the supervisor as (step, errno, detail).
 *
 * Process shape:
 *   outer  (host):    join the cgroup, become the run's uid (as root),
 *                     clone pid 1 into seven new namespaces, write its id
 *                     maps, wait for it.
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
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stage2.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

struct op {
	uint32_t kind, attr, mode;
	int32_t fd;
	const char *a, *b;
	uint32_t idmap; /* TC_OP_BIND: 1 + index into plan.idmaps, 0: none */
	int tree;       /* detached mount cloned from the source (TC_OP_BIND) */
};

/* An idmapping for writable binds: the id maps of a user namespace that
 * shows the grant's owner as the run's host ids (see idmap_sources). */
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

static int ctl = -1;
static pid_t parent0;   /* the outer stage-2's parent: the fork server */
static int life = -1;   /* pid 1: read end of a pipe only the outer holds open */

/* ---- messages ---- */

struct buf {
	char *p;
	size_t n, cap;
};

static void put(struct buf *b, const void *p, size_t n)
{
	if (b->n + n > b->cap)
		n = b->cap - b->n; /* truncate: error details are best-effort */
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void put_u32(struct buf *b, uint32_t v) { put(b, &v, 4); }

static void put_str(struct buf *b, const char *s)
{
	uint32_t n = (uint32_t)strlen(s) + 1;
	if (n > 1024)
		n = 1024;
	put_u32(b, n);
	put(b, s, n - 1);
	put(b, "", 1);
}

/* send_fds sends one message with nfds descriptors attached (SCM_RIGHTS);
 * it returns whether the message went out. */
static int send_fds(struct buf *b, const int *fds, int nfds)
{
	union {
		struct cmsghdr align;
		char b[CMSG_SPACE(sizeof(int) * TC_MAX_SOCKETS)];
	} cbuf;
	struct iovec iov = {b->p, b->n};
	struct msghdr mh = {0};
	ssize_t r;

	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	if (nfds > 0 && nfds <= TC_MAX_SOCKETS) {
		struct cmsghdr *c;
		mh.msg_control = cbuf.b;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	do
		r = sendmsg(ctl, &mh, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	return r == (ssize_t)b->n;
}

static void send_msg(struct buf *b) { (void)send_fds(b, NULL, 0); }

static void send_int(uint32_t type, int32_t v)
{
	char s[8];
	struct buf b = {s, 0, sizeof s};
	put_u32(&b, type);
	put_u32(&b, (uint32_t)v);
	send_msg(&b);
}

/* fail reports (step, errno, detail) and exits; it never returns. */
static void __attribute__((noreturn)) fail(const char *step, const char *detail)
{
	int e = errno;
	char s[2200];
	struct buf b = {s, 0, sizeof s};
	put_u32(&b, TC_MSG_ERROR);
	put_str(&b, step);
	put_u32(&b, (uint32_t)e);
	put_str(&b, detail ? detail : "");
	send_msg(&b);
	_exit(TC_EXIT_SETUP);
}

/* recv_msg reads one packet and the fds passed with it into a malloc'd
 * buffer: exactly nfds of them, or, with nfds < 0, up to -nfds (the count is
 * returned in *got). EOF means the supervisor went away, which ends the
 * stage-2. */
static size_t recv_msg(char **out, int *fds, int nfds, int *got)
{
	char *p = malloc(TC_MAX_MSG);
	char cbuf[CMSG_SPACE(sizeof(int) * TC_FD_CHUNK)];
	int max = nfds < 0 ? -nfds : nfds, n_fds = 0;
	struct iovec iov = {p, TC_MAX_MSG};
	struct msghdr mh = {0};
	ssize_t n;

	if (!p)
		fail("recv", "out of memory");
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cbuf;
	mh.msg_controllen = sizeof cbuf;
	do
		n = recvmsg(ctl, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		_exit(TC_EXIT_SETUP); /* supervisor gone: nobody to report to */
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		errno = EMSGSIZE;
		fail("recv", "message truncated");
	}
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			if (n_fds || k > max) {
				errno = EBADMSG;
				fail("recv", "too many file descriptors");
			}
			memcpy(fds, CMSG_DATA(c), sizeof(int) * (size_t)k);
			n_fds = k;
		}
	}
	if (nfds >= 0 && n_fds != nfds) {
		errno = EBADMSG;
		fail("recv", "wrong number of file descriptors");
	}
	if (got)
		*got = n_fds;
	*out = p;
	return (size_t)n;
}

/* arm_pdeath (re)arms the parent-death signal and then checks that the
 * parent is still there. The kernel clears the signal on every credential
 * change, so it is re-armed after each one. The outer stage-2 sees its parent
 * with getppid(); pid 1's parent is outside its pid namespace (getppid() is
 * 0), so pid 1 watches for the hangup of a pipe only the outer holds. */
static void arm_pdeath(void)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
		fail("pdeathsig", NULL);
	if (life >= 0) {
		struct pollfd p = {life, POLLIN, 0};
		if (poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR)))
			_exit(TC_EXIT_SETUP);
	} else if (getppid() != parent0) {
		_exit(TC_EXIT_SETUP);
	}
}

/* ---- plan decoding: bounds-checked, any malformation is fatal ---- */

struct rd {
	const char *p;
	size_t n;
};

static void need(struct rd *r, size_t n)
{
	if (r->n < n) {
		errno = EBADMSG;
		fail("plan", "short message");
	}
}

static uint32_t get_u32(struct rd *r)
{
	uint32_t v;
	need(r, 4);
	memcpy(&v, r->p, 4);
	r->p += 4;
	r->n -= 4;
	return v;
}

static uint64_t get_u64(struct rd *r)
{
	uint64_t v;
	need(r, 8);
	memcpy(&v, r->p, 8);
	r->p += 8;
	r->n -= 8;
	return v;
}

/* get_str: uint32 length including the NUL, then the bytes. */
static const char *get_str(struct rd *r)
{
	uint32_t n = get_u32(r);
	const char *s = r->p;
	need(r, n);
	if (n == 0 || s[n - 1] != '\0' || memchr(s, '\0', n) != s + n - 1) {
		errno = EBADMSG;
		fail("plan", "bad string");
	}
	r->p += n;
	r->n -= n;
	return s;
}

static void *alloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz);
	if (!p)
		fail("plan", "out of memory");
	return p;
}

/* read_landlock decodes the plan's Landlock part (layout in stage2.h). */
static void read_landlock(struct rd *r, struct llplan *ll)
{
	ll->abi = get_u32(r);
	if (ll->abi == 0)
		return;
	ll->fs = get_u64(r);
	ll->net = get_u64(r);
	ll->scoped = get_u64(r);
	ll->nrules = get_u32(r);
	if (ll->nrules > TC_MAX_LL_RULES) {
		errno = E2BIG;
		fail("plan", "too many landlock rules");
	}
	ll->rules = alloc(ll->nrules, sizeof(struct llrule));
	for (uint32_t i = 0; i < ll->nrules; i++) {
		ll->rules[i].access = get_u64(r);
		ll->rules[i].path = get_str(r);
		if (ll->rules[i].path[0] != '/') {
			errno = EINVAL;
			fail("plan", "landlock rule path");
		}
	}
	ll->nports = get_u32(r);
	if (ll->nports > TC_MAX_LL_PORTS) {
		errno = E2BIG;
		fail("plan", "too many landlock ports");
	}
	for (uint32_t i = 0; i < ll->nports; i++) {
		ll->ports[i].access = get_u64(r);
		ll->ports[i].port = get_u64(r);
		if (ll->ports[i].port > 65535) {
			errno = EINVAL;
			fail("plan", "landlock port");
		}
	}
}

static void read_plan(struct plan *pl)
{
	char *m;
	struct rd r;
	uint32_t ncg, nfiles;
	r.n = recv_msg(&m, pl->fds, -TC_FD_CHUNK, &pl->nfds);
	r.p = m;
	if (get_u32(&r) != TC_MSG_PLAN) {
		errno = EBADMSG;
		fail("plan", "expected PLAN");
	}
	pl->flags = get_u32(&r);
	pl->uid = get_u32(&r);
	pl->gid = get_u32(&r);
	pl->last_cap = get_u32(&r);
	pl->staging = get_str(&r);
	pl->hostname = get_str(&r);
	pl->rootopts = get_str(&r);
	pl->uid_map = get_str(&r);
	pl->gid_map = get_str(&r);
	pl->run_uid = get_u32(&r);
	pl->run_gid = get_u32(&r);
	ncg = get_u32(&r);
	nfiles = get_u32(&r);
	if (ncg > TC_MAX_CGROUP_FDS || nfiles > TC_MAX_PLAN_FDS - TC_MAX_CGROUP_FDS) {
		errno = E2BIG;
		fail("plan", "too many file descriptors");
	}
	pl->ncgfds = (int)ncg;
	/* Descriptors beyond the first packet's follow in PLAN_FDS packets. */
	while (pl->nfds < pl->ncgfds + (int)nfiles) {
		char *more;
		int got, left = pl->ncgfds + (int)nfiles - pl->nfds;
		struct rd r2;
		r2.n = recv_msg(&more, pl->fds + pl->nfds, -(left < TC_FD_CHUNK ? left : TC_FD_CHUNK), &got);
		r2.p = more;
		if (get_u32(&r2) != TC_MSG_PLAN_FDS || got == 0) {
			errno = EBADMSG;
			fail("plan", "expected PLAN_FDS");
		}
		pl->nfds += got;
		free(more);
	}
	if (pl->nfds != pl->ncgfds + (int)nfiles) {
		errno = EBADMSG;
		fail("plan", "wrong number of file descriptors");
	}
	pl->nidmaps = get_u32(&r);
	if (pl->nidmaps > TC_MAX_IDMAPS) {
		errno = E2BIG;
		fail("plan", "too many idmaps");
	}
	for (uint32_t i = 0; i < pl->nidmaps; i++) {
		pl->idmaps[i].uid_map = get_str(&r);
		pl->idmaps[i].gid_map = get_str(&r);
	}
	pl->nops = get_u32(&r);
	if (pl->nops > 4096) {
		errno = E2BIG;
		fail("plan", "too many operations");
	}
	pl->ops = alloc(pl->nops, sizeof(struct op));
	for (uint32_t i = 0; i < pl->nops; i++) {
		struct op *o = &pl->ops[i];
		o->kind = get_u32(&r);
		o->attr = get_u32(&r);
		o->mode = get_u32(&r);
		o->fd = (int32_t)get_u32(&r);
		o->a = get_str(&r);
		o->b = get_str(&r);
		o->idmap = get_u32(&r);
		o->tree = -1;
		if (o->idmap > pl->nidmaps || (o->idmap && o->kind != TC_OP_BIND)) {
			errno = EBADMSG;
			fail("plan", "idmap index");
		}
		/* fd indexes the view's sources; only a bind has one. */
		if (o->kind == TC_OP_BIND) {
			if (o->fd < 0 || (uint32_t)o->fd >= nfiles) {
				errno = EBADMSG;
				fail("plan", "bind source index");
			}
			o->fd = pl->fds[pl->ncgfds + o->fd];
		} else {
			o->fd = -1;
		}
	}
	pl->nrlim = get_u32(&r);
	if (pl->nrlim > 64) {
		errno = E2BIG;
		fail("plan", "too many rlimits");
	}
	pl->rlims = alloc(pl->nrlim, sizeof(struct rlim));
	for (uint32_t i = 0; i < pl->nrlim; i++) {
		pl->rlims[i].resource = get_u32(&r);
		pl->rlims[i].cur = get_u64(&r);
		pl->rlims[i].max = get_u64(&r);
	}
	pl->nulim = get_u32(&r);
	if (pl->nulim > TC_MAX_USER_LIMITS) {
		errno = E2BIG;
		fail("plan", "too many user limits");
	}
	for (uint32_t i = 0; i < pl->nulim; i++) {
		pl->ulims[i].name = get_str(&r);
		pl->ulims[i].value = get_str(&r);
		pl->ulims[i].fd = -1;
		if (strchr(pl->ulims[i].name, '/') || pl->ulims[i].name[0] == '.') {
			errno = EINVAL;
			fail("plan", "user limit name");
		}
	}
	pl->nfilter = get_u32(&r);
	if (pl->nfilter == 0 || pl->nfilter > BPF_MAXINSNS) {
		errno = EINVAL;
		fail("plan", "seccomp filter size");
	}
	need(&r, (size_t)pl->nfilter * sizeof(struct sock_filter));
	pl->filter = alloc(pl->nfilter, sizeof(struct sock_filter));
	memcpy(pl->filter, r.p, (size_t)pl->nfilter * sizeof(struct sock_filter));
	r.p += (size_t)pl->nfilter * sizeof(struct sock_filter);
	r.n -= (size_t)pl->nfilter * sizeof(struct sock_filter);
	pl->nsock = get_u32(&r);
	if (pl->nsock > TC_MAX_SOCKETS) {
		errno = E2BIG;
		fail("plan", "too many sockets");
	}
	for (uint32_t i = 0; i < pl->nsock; i++) {
		pl->socks[i].kind = get_u32(&r);
		pl->socks[i].addr = get_u32(&r);
		pl->socks[i].port = get_u32(&r);
		if (pl->socks[i].port == 0 || pl->socks[i].port > 65535) {
			errno = EINVAL;
			fail("plan", "socket port");
		}
	}
	read_landlock(&r, &pl->ll);
}

/* ---- the view ---- */

/* open_parent opens the directory holding rel (relative to root) without
 * following any symlink, and points *base at the last component. */
static int open_parent(int root, const char *rel, char *tmp, size_t tmpsz, const char **base)
{
	struct open_how how = {
		.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	char *slash;
	if (strlen(rel) >= tmpsz) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(tmp, rel);
	slash = strrchr(tmp, '/');
	if (!slash) {
		*base = rel;
		return (int)syscall(SYS_openat2, root, ".", &how, sizeof how);
	}
	*slash = '\0';
	*base = rel + (slash - tmp) + 1;
	return (int)syscall(SYS_openat2, root, tmp, &how, sizeof how);
}

static int attach(int tree, int dir, const char *base)
{
	return move_mount(tree, "", dir, base, MOVE_MOUNT_F_EMPTY_PATH);
}

static int new_tmpfs(const char *opts, uint32_t attr)
{
	char kv[512];
	int fs = fsopen("tmpfs", FSOPEN_CLOEXEC), m;
	if (fs < 0)
		return -1;
	if (strlen(opts) >= sizeof kv) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(kv, opts);
	for (char *save = NULL, *t = strtok_r(kv, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(t, '=');
		if (!eq) {
			errno = EINVAL;
			return -1;
		}
		*eq = '\0';
		if (fsconfig(fs, FSCONFIG_SET_STRING, t, eq + 1, 0) < 0)
			return -1;
	}
	if (fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		return -1;
	m = fsmount(fs, FSMOUNT_CLOEXEC, attr);
	close(fs);
	return m;
}

static int set_attr(int fd, const char *path, unsigned flags, uint64_t attr)
{
	struct mount_attr ma = {.attr_set = attr, .propagation = MS_PRIVATE};
	return mount_setattr(fd, path, flags, &ma, sizeof ma);
}

/* write_file writes s to path in one write(2), as /proc's id map files
 * require. */
static void write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	size_t n = strlen(s);
	if (fd < 0 || write(fd, s, n) != (ssize_t)n)
		fail("write_id_map", path);
	close(fd);
}

/* clone_source clones o's bind source while the host tree is still
 * visible, and checks that the path still names the inode Go opened. A
 * symlink or directory swapped in since then fails the run. */
static void clone_source(struct op *o)
{
	struct open_how how = {
		.flags = O_PATH | O_CLOEXEC | O_NOFOLLOW,
		.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	struct stat want, got;
	int src;

	if (fstat(o->fd, &want) < 0)
		fail("bind_source_fd", o->b);
	/* Go resolved every symlink already: the path must have none left, in
	 * any component, or it changed since. */
	src = (int)syscall(SYS_openat2, AT_FDCWD, o->b, &how, sizeof how);
	if (src < 0)
		fail("bind_open", o->b);
	o->tree = open_tree(src, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_EMPTY_PATH);
	if (o->tree < 0)
		fail("bind_clone", o->b);
	close(src);
	if (fstat(o->tree, &got) < 0)
		fail("bind_clone_stat", o->b);
	if (got.st_dev != want.st_dev || got.st_ino != want.st_ino ||
	    (got.st_mode & S_IFMT) != (want.st_mode & S_IFMT)) {
		errno = ESTALE;
		fail("bind_verify", o->b);
	}
}

/* clone_sources clones the bind sources idmap_sources left to pid 1. */
static void clone_sources(struct plan *pl)
{
	for (uint32_t i = 0; i < pl->nops; i++) {
		struct op *o = &pl->ops[i];
		if (o->kind != TC_OP_BIND)
			continue;
		if (o->tree < 0) {
			clone_source(o);
			if (set_attr(o->tree, "", AT_EMPTY_PATH | AT_RECURSIVE, o->attr) < 0)
				fail("bind_setattr", o->b);
		}
		close(o->fd);
	}
}

/* The holder of an idmap's user namespace: it shares the stage-2's memory
 * (like vfork: no copy of its page tables, most of a millisecond here) but
 * runs beside it, on a stack of its own, only until the pipe at hold[0]
 * ends. Raw syscalls: errno is the stage-2's. */
static char holder_stack[4096] __attribute__((aligned(16)));

static int hold_userns(void *arg)
{
	int *hold = arg;
	char c;
	syscall(SYS_close, hold[1]); /* its own copy of the descriptor table */
	syscall(SYS_read, hold[0], &c, 1);
	syscall(SYS_exit, 0);
	return 0;
}

/* idmap_userns returns a user namespace whose maps are m's: a child is
 * cloned into a new one only to hold it while its maps are written and the
 * namespace is opened, then it exits. Needs CAP_SETUID and CAP_SETGID on
 * the host (any ids are mapped), so the stage-2 runs it while still root. */
static int idmap_userns(const struct idmapspec *m)
{
	char path[64];
	int hold[2], fd;
	pid_t pid;

	if (pipe2(hold, O_CLOEXEC) < 0)
		fail("idmap_pipe", NULL);
	pid = clone(hold_userns, holder_stack + sizeof holder_stack, CLONE_VM | CLONE_NEWUSER | SIGCHLD, hold);
	if (pid < 0)
		fail("idmap_userns", NULL);
	snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
	write_file(path, m->uid_map);
	snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
	write_file(path, m->gid_map);
	snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	close(hold[1]);
	close(hold[0]);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	if (fd < 0)
		fail("idmap_userns", path);
	return fd;
}

/* idmap_sources clones the writable binds' sources as idmapped mounts:
 * files of the grant's owner show as the sandbox user, and what the tool
 * creates there belongs to that owner on the host. The kernel allows
 * MOUNT_ATTR_IDMAP only to a holder of CAP_SYS_ADMIN over the file system
 * (the host's root), on a detached mount: so the stage-2 does it before it
 * drops root, and pid 1 inherits the mounts with its descriptor table.
 * Where the file system or kernel refuses, the run fails, or, with
 * TC_PLAN_IDMAP_OPTIONAL, that bind is left to pid 1 as a plain one (the
 * supervisor reads which mounts are idmapped from pid 1's mountinfo). */
static void idmap_sources(struct plan *pl)
{
	for (uint32_t m = 0; m < pl->nidmaps; m++) {
		int ns = idmap_userns(&pl->idmaps[m]);
		for (uint32_t i = 0; i < pl->nops; i++) {
			struct op *o = &pl->ops[i];
			struct mount_attr ma = {
				.attr_set = o->attr | MOUNT_ATTR_IDMAP,
				.userns_fd = (uint64_t)ns,
				.propagation = MS_PRIVATE,
			};
			if (o->idmap != m + 1)
				continue;
			clone_source(o);
			if (mount_setattr(o->tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &ma, sizeof ma) == 0)
				continue;
			if (!(pl->flags & TC_PLAN_IDMAP_OPTIONAL))
				fail("idmap", o->b);
			close(o->tree);
			o->tree = -1;
		}
		close(ns);
	}
}

static void do_op(int root, struct op *o)
{
	char tmp[4096];
	const char *base;
	int dir = open_parent(root, o->a, tmp, sizeof tmp, &base), fd, t;
	int optional = o->kind == TC_OP_MASK_FILE || o->kind == TC_OP_MASK_DIR || o->kind == TC_OP_READONLY;

	if (dir < 0) {
		if (optional && errno == ENOENT)
			return;
		fail("view_parent", o->a);
	}
	if (optional) { /* masks apply to what this kernel has */
		struct stat st;
		if (fstatat(dir, base, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT) {
			close(dir);
			return;
		}
	}
	switch (o->kind) {
	case TC_OP_MKDIR:
		if (mkdirat(dir, base, 0700) < 0 || fchmodat(dir, base, o->mode, 0) < 0)
			fail("mkdir", o->a);
		break;
	case TC_OP_FILE: {
		size_t n = strlen(o->b);
		fd = openat(dir, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0)
			fail("file", o->a);
		for (size_t off = 0; off < n;) {
			ssize_t w = write(fd, o->b + off, n - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				fail("file_write", o->a);
			off += (size_t)w;
		}
		if (fchmod(fd, o->mode) < 0)
			fail("file_chmod", o->a);
		close(fd);
		break;
	}
	case TC_OP_SYMLINK:
		if (symlinkat(o->b, dir, base) < 0)
			fail("symlink", o->a);
		break;
	case TC_OP_BIND:
		if (attach(o->tree, dir, base) < 0)
			fail("bind_attach", o->a);
		close(o->tree);
		break;
	case TC_OP_TMPFS:
		t = new_tmpfs(o->b, o->attr);
		if (t < 0)
			fail("tmpfs", o->a);
		if (attach(t, dir, base) < 0)
			fail("tmpfs_attach", o->a);
		close(t);
		break;
	case TC_OP_PROC: {
		/* mount(2) through the parent's fd: the kernel checks that a
		 * fully visible proc exists in this mount namespace. */
		char path[64];
		snprintf(path, sizeof path, "/proc/self/fd/%d/%s", dir, base);
		if (strlen(base) > 32 || strchr(base, '/')) {
			errno = EINVAL;
			fail("proc", o->a);
		}
		if (mount("proc", path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
			fail("proc", o->a);
		break;
	}
	case TC_OP_MASK_FILE:
		t = open_tree(root, "dev/null", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
		if (t < 0)
			fail("mask_source", "dev/null");
		if (attach(t, dir, base) < 0 && errno != ENOENT)
			fail("mask_file", o->a);
		close(t);
		break;
	case TC_OP_MASK_DIR:
		t = new_tmpfs("size=4k,nr_inodes=1,mode=0555", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
		if (t < 0)
			fail("mask_dir", o->a);
		if (attach(t, dir, base) < 0 && errno != ENOENT)
			fail("mask_dir_attach", o->a);
		close(t);
		break;
	case TC_OP_SETATTR:
		if (set_attr(dir, base, AT_SYMLINK_NOFOLLOW, o->attr) < 0)
			fail("setattr", o->a);
		break;
	case TC_OP_READONLY:
		t = open_tree(dir, base, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_SYMLINK_NOFOLLOW);
		if (t < 0) {
			if (errno == ENOENT)
				break;
			fail("readonly", o->a);
		}
		if (set_attr(t, "", AT_EMPTY_PATH | AT_RECURSIVE, o->attr) < 0 || attach(t, dir, base) < 0)
			fail("readonly", o->a);
		close(t);
		break;
	default:
		errno = EINVAL;
		fail("plan", "unknown operation");
	}
	close(dir);
}

/* wait_maps waits for the stage-2's next signal on fd: first that pid 1's
 * id maps are written, later that vm.memfd_noexec is set. EOF means the
 * stage-2 failed (and reported why) or died. */
static void wait_maps(int fd)
{
	char c;
	ssize_t n;
	do
		n = read(fd, &c, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1)
		_exit(TC_EXIT_SETUP);
}

static void build_view(struct plan *pl, int maps)
{
	int root;

	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		fail("make_private", "/");
	clone_sources(pl);
	wait_maps(maps);
	/* The maps are written: nothing needs pid 1 dumpable (traceable by a
	 * host process of the run's uid) any more. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		fail("dumpable", NULL);
	/* Sources are resolved with the host process's ids (it opened them
	 * too); from here on, become the mapped sandbox user so that files made
	 * on the view's tmpfs belong to a mapped id. Capabilities in the new
	 * user namespace survive: its uid 0 is unmapped, so no setuid fixup
	 * applies; every set is cleared explicitly before READY. */
	if (setresgid(pl->gid, pl->gid, pl->gid) < 0)
		fail("setresgid", NULL);
	if (setresuid(pl->uid, pl->uid, pl->uid) < 0)
		fail("setresuid", NULL);
	arm_pdeath();
	if (mount("tmpfs", pl->staging, "tmpfs", MS_NOSUID | MS_NODEV, pl->rootopts) < 0)
		fail("root_tmpfs", pl->staging);
	root = open(pl->staging, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		fail("root_open", pl->staging);
	for (uint32_t i = 0; i < pl->nops; i++)
		do_op(root, &pl->ops[i]);

	/* pivot_root(".", ".") stacks the old root on the new one; detach it. */
	if (fchdir(root) < 0)
		fail("pivot_chdir", pl->staging);
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		fail("pivot_root", pl->staging);
	if (umount2(".", MNT_DETACH) < 0)
		fail("detach_old_root", "/");
	if (chdir("/") < 0)
		fail("chdir", "/");
	close(root);
	if (set_attr(AT_FDCWD, "/", 0, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV) < 0)
		fail("root_readonly", "/");
}

static void loopback_up(void)
{
	struct ifreq ifr = {0};
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		fail("loopback", "socket");
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		fail("loopback", "get flags");
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		fail("loopback", "set flags");
	close(s);
}

/* route_local makes every address of family local to the sandbox's
 * loopback (ip route add local 0.0.0.0/0 dev lo table local): a connection
 * to any address reaches the relay's listeners, so direct IP attempts are
 * seen and recorded instead of failing unseen. Nothing leaves: loopback is
 * the namespace's only interface. */
static void route_local(int family)
{
	struct {
		struct nlmsghdr n;
		struct rtmsg r;
		char attrs[16];
	} req;
	union {
		struct nlmsghdr h;
		char b[256];
	} ack;
	struct rtattr *a;
	struct nlmsghdr *h = &ack.h;
	const char *what = family == AF_INET ? "0.0.0.0/0" : "::/0";
	int s, oif = (int)if_nametoindex("lo");
	ssize_t n;

	if (oif == 0)
		fail("route_lo", what);
	memset(&req, 0, sizeof req);
	req.n.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg));
	req.n.nlmsg_type = RTM_NEWROUTE;
	req.n.nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK;
	req.n.nlmsg_seq = 1;
	req.r.rtm_family = (unsigned char)family;
	req.r.rtm_table = RT_TABLE_LOCAL;
	req.r.rtm_protocol = RTPROT_BOOT;
	req.r.rtm_scope = RT_SCOPE_HOST;
	req.r.rtm_type = RTN_LOCAL;
	a = (struct rtattr *)((char *)&req + NLMSG_ALIGN(req.n.nlmsg_len));
	a->rta_type = RTA_OIF;
	a->rta_len = RTA_LENGTH(sizeof oif);
	memcpy(RTA_DATA(a), &oif, sizeof oif);
	req.n.nlmsg_len = NLMSG_ALIGN(req.n.nlmsg_len) + RTA_ALIGN(a->rta_len);

	s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (s < 0)
		fail("route_socket", what);
	if (send(s, &req, req.n.nlmsg_len, 0) != (ssize_t)req.n.nlmsg_len)
		fail("route_send", what);
	do
		n = recv(s, ack.b, sizeof ack.b, 0);
	while (n < 0 && errno == EINTR);
	if (n < (ssize_t)NLMSG_LENGTH(sizeof(struct nlmsgerr)) || h->nlmsg_type != NLMSG_ERROR) {
		errno = EBADMSG;
		fail("route_ack", what);
	}
	if (((struct nlmsgerr *)NLMSG_DATA(h))->error != 0) {
		errno = -((struct nlmsgerr *)NLMSG_DATA(h))->error;
		fail("route_add", what);
	}
	close(s);
}

/* make_sockets creates the plan's sockets in the sandbox's network
 * namespace (while pid 1 still holds its capabilities there: ports below
 * 1024) and passes them to the supervisor, which serves them from outside.
 * They are close-on-exec: the tool, which shares pid 1's descriptor table
 * until its execve, never holds one. */
static void make_sockets(struct plan *pl)
{
	int fds[TC_MAX_SOCKETS];
	char s[8];
	struct buf b = {s, 0, sizeof s};

	if (pl->flags & TC_PLAN_ROUTE4)
		route_local(AF_INET);
	if (pl->flags & TC_PLAN_ROUTE6)
		route_local(AF_INET6);
	if (pl->nsock == 0)
		return;
	for (uint32_t i = 0; i < pl->nsock; i++) {
		struct sock *k = &pl->socks[i];
		int one = 1, zero = 0, v6 = k->kind == TC_SOCK_TCP6 || k->kind == TC_SOCK_UDP6;
		int tcp = k->kind == TC_SOCK_TCP || k->kind == TC_SOCK_TCP6;
		struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)k->port),
		                         .sin_addr = {htonl(k->addr)}};
		struct sockaddr_in6 sa6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)k->port),
		                           .sin6_addr = IN6ADDR_ANY_INIT};
		if (k->kind < TC_SOCK_TCP || k->kind > TC_SOCK_UDP6) {
			errno = EINVAL;
			fail("socket", "unknown kind");
		}
		fds[i] = socket(v6 ? AF_INET6 : AF_INET, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0);
		if (fds[i] < 0)
			fail("socket", NULL);
		/* Not on UDP: there SO_REUSEADDR would let the tool bind the
		 * same port and take datagrams meant for the supervisor. */
		if (tcp && setsockopt(fds[i], SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
			fail("socket", "SO_REUSEADDR");
		/* TCP over IPv6 takes IPv4 too; UDP answers from the address
		 * asked, so each family has its own socket and PKTINFO. */
		if (v6 && setsockopt(fds[i], IPPROTO_IPV6, IPV6_V6ONLY, tcp ? &zero : &one, sizeof one) < 0)
			fail("socket", "IPV6_V6ONLY");
		if (!tcp && !v6 && setsockopt(fds[i], IPPROTO_IP, IP_PKTINFO, &one, sizeof one) < 0)
			fail("socket", "IP_PKTINFO");
		if (!tcp && v6 && setsockopt(fds[i], IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one) < 0)
			fail("socket", "IPV6_RECVPKTINFO");
		if ((v6 ? bind(fds[i], (struct sockaddr *)&sa6, sizeof sa6) : bind(fds[i], (struct sockaddr *)&sa, sizeof sa)) < 0)
			fail("socket", "bind");
		if (tcp && listen(fds[i], 128) < 0)
			fail("socket", "listen");
	}
	put_u32(&b, TC_MSG_SOCKETS);
	put_u32(&b, pl->nsock);
	if (!send_fds(&b, fds, (int)pl->nsock))
		fail("socket", "send");
	for (uint32_t i = 0; i < pl->nsock; i++)
		close(fds[i]);
}

/* drop_privileges leaves pid 1 (and so the tool) with no capability in any
 * set, no_new_privs, the mapped uid/gid, and not dumpable. */
static void drop_privileges(struct plan *pl)
{
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2] = {{0}};

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		fail("no_new_privs", NULL);
	for (uint32_t c = 0; c <= pl->last_cap; c++)
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
			fail("capbset_drop", NULL);
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
		fail("ambient_clear", NULL);
	if (setresgid(pl->gid, pl->gid, pl->gid) < 0)
		fail("setresgid", NULL);
	if (setresuid(pl->uid, pl->uid, pl->uid) < 0)
		fail("setresuid", NULL);
	if (syscall(SYS_capset, &h, d) < 0)
		fail("capset", NULL);
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		fail("dumpable", NULL);
	arm_pdeath();
}

/* ---- memfds ---- */

/* read_memfd_noexec reads vm.memfd_noexec of pid 1's pid namespace (the
 * kernel keeps it per pid namespace, whichever /proc it is reached through)
 * for the record, -1 if the kernel has none. pid 1 reads it once its view
 * is built, after the stage-2 set it (set_memfd_noexec). */
static int32_t read_memfd_noexec(void)
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

/* ---- the tool ---- */

struct execmsg {
	const char *path, *cwd;
	char **argv, **envp;
	int fds[3];
};

static char **get_list(struct rd *r)
{
	uint32_t n = get_u32(r);
	char **v;
	if (n > 65536) {
		errno = E2BIG;
		fail("exec_message", "too many strings");
	}
	v = alloc(n + 1, sizeof(char *));
	for (uint32_t i = 0; i < n; i++)
		v[i] = (char *)get_str(r);
	return v;
}

static void read_exec(struct execmsg *x)
{
	char *m;
	struct rd r;
	r.n = recv_msg(&m, x->fds, 3, NULL);
	r.p = m;
	if (get_u32(&r) != TC_MSG_EXEC) {
		errno = EBADMSG;
		fail("exec_message", "expected EXEC");
	}
	x->path = get_str(&r);
	x->cwd = get_str(&r);
	x->argv = get_list(&r);
	x->envp = get_list(&r);
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

/* landlock_apply restricts the tool child (pid 1 stays unrestricted) to
 * the plan's rules. Each rule's path is opened here, inside the view and
 * without following a symlink, so a rule lands on what the view shows at
 * that path; whatever else the view holds gets no right from Landlock. A
 * failure fails the run: nothing is skipped. */
static void landlock_apply(struct toolctx *t, const struct llplan *ll)
{
	struct ll_ruleset_attr attr = {ll->fs, ll->net, ll->scoped};
	struct open_how how = {
		.flags = O_PATH | O_CLOEXEC,
		.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	int rs;

	if (ll->abi == 0)
		return;
	rs = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
	if (rs < 0)
		tool_fail(t, "landlock_create_ruleset", NULL);
	for (uint32_t i = 0; i < ll->nrules; i++) {
		struct ll_path_beneath pb = {ll->rules[i].access, -1};
		pb.parent_fd = (int32_t)syscall(SYS_openat2, AT_FDCWD, ll->rules[i].path, &how, sizeof how);
		if (pb.parent_fd < 0)
			tool_fail(t, "landlock_open", ll->rules[i].path);
		if (syscall(SYS_landlock_add_rule, rs, LL_RULE_PATH_BENEATH, &pb, 0) < 0)
			tool_fail(t, "landlock_add_rule", ll->rules[i].path);
		close(pb.parent_fd);
	}
	for (uint32_t i = 0; i < ll->nports; i++) {
		struct ll_net_port np = {ll->ports[i].access, ll->ports[i].port};
		if (syscall(SYS_landlock_add_rule, rs, LL_RULE_NET_PORT, &np, 0) < 0)
			tool_fail(t, "landlock_add_rule", "tcp port");
	}
	/* no_new_privs is set (drop_privileges), as the kernel requires. */
	if (syscall(SYS_landlock_restrict_self, rs, 0) < 0)
		tool_fail(t, "landlock_restrict_self", NULL);
	close(rs);
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
	landlock_apply(t, &t->pl->ll);
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
		if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
			fail("move_fd", NULL);
		return fd;
	}
	if (dup3(fd, to, O_CLOEXEC) < 0)
		fail("move_fd", NULL);
	close(fd);
	return to;
}

/* send_started reports the tool's pid with pid 1's namespaces and the
 * seccomp listener (if any) attached, so the supervisor can check the
 * namespaces against its own and collect the tool's denied syscalls. The
 * kernel adds pid 1's host pid (the supervisor set SO_PASSCRED). */
static void send_started(pid_t tool, int32_t memfd_noexec, const int *ns, int listener)
{
	char s[12];
	int fds[TC_NS_COUNT + 1];
	struct buf b = {s, 0, sizeof s};
	memcpy(fds, ns, sizeof(int) * TC_NS_COUNT);
	fds[TC_NS_COUNT] = listener;
	put_u32(&b, TC_MSG_STARTED);
	put_u32(&b, (uint32_t)tool);
	put_u32(&b, (uint32_t)memfd_noexec);
	/* Without STARTED the supervisor neither answers the tool's denied
	 * calls nor times it: end the sandbox instead. */
	if (!send_fds(&b, fds, listener >= 0 ? TC_NS_COUNT + 1 : TC_NS_COUNT))
		_exit(TC_EXIT_SETUP);
}

/* open_user_limits opens the plan's /proc/sys/user files while the host's
 * /proc is still mounted; user sysctls are those of the opener's user
 * namespace, here the sandbox's, which pid 1 holds CAP_SYS_RESOURCE in. */
static void open_user_limits(struct plan *pl)
{
	int dir;
	if (pl->nulim == 0)
		return;
	dir = open("/proc/sys/user", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		fail("user_limit", "/proc/sys/user");
	for (uint32_t i = 0; i < pl->nulim; i++) {
		pl->ulims[i].fd = openat(dir, pl->ulims[i].name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
		if (pl->ulims[i].fd < 0)
			fail("user_limit", pl->ulims[i].name);
	}
	close(dir);
}

/* set_user_limits writes each limit and reads it back, before pid 1 drops
 * the capabilities the writes need; the files were opened while the host's
 * /proc was still there. */
static void set_user_limits(struct plan *pl)
{
	for (uint32_t i = 0; i < pl->nulim; i++) {
		struct ulim *u = &pl->ulims[i];
		size_t n = strlen(u->value);
		char got[32];
		ssize_t k;
		if (write(u->fd, u->value, n) != (ssize_t)n)
			fail("user_limit", u->name);
		k = pread(u->fd, got, sizeof got - 1, 0);
		if (k < 0)
			fail("user_limit_read", u->name);
		while (k > 0 && got[k - 1] == '\n')
			k--;
		got[k] = '\0';
		if (strcmp(got, u->value) != 0) {
			errno = EIO;
			fail("user_limit_verify", u->name);
		}
		close(u->fd);
	}
}

/* The tool child's stack: clone with CLONE_VM needs one of its own, since
 * pid 1's frames stay live while the child runs. */
static char tool_stack[256 * 1024] __attribute__((aligned(16)));

static void __attribute__((noreturn)) pid1(struct plan *pl, int maps)
{
	static const char *const ns_names[TC_NS_COUNT] = {TC_NS_NAMES};
	struct execmsg x;
	struct toolctx t;
	pid_t tool;
	int st, ns[TC_NS_COUNT];
	int32_t memfd_noexec;

	arm_pdeath();
	open_user_limits(pl);
	build_view(pl, maps);
	set_user_limits(pl);
	if (pl->flags & TC_PLAN_MEMFD_NOEXEC)
		wait_maps(maps); /* set by now, while the view was built */
	close(maps);
	memfd_noexec = read_memfd_noexec();
	if (sethostname(pl->hostname, strlen(pl->hostname)) < 0)
		fail("sethostname", pl->hostname);
	loopback_up();
	for (uint32_t i = 0; i < pl->nrlim; i++) {
		struct rlimit rl = {pl->rlims[i].cur, pl->rlims[i].max};
		if (setrlimit((int)pl->rlims[i].resource, &rl) < 0)
			fail("setrlimit", NULL);
	}
	/* Only the control socket (3) and the life pipe (4) survive; both are
	 * close-on-exec, so the tool gets neither. */
	ctl = move_fd(ctl, 3);
	life = move_fd(life, 4);
	if (syscall(SYS_close_range, 5, ~0U, 0) < 0)
		fail("close_range", NULL);
	for (int i = 0; i < TC_NS_COUNT; i++) {
		char path[32];
		snprintf(path, sizeof path, "/proc/self/ns/%s", ns_names[i]);
		ns[i] = open(path, O_RDONLY | O_CLOEXEC);
		if (ns[i] < 0)
			fail("namespace_fd", ns_names[i]);
	}
	make_sockets(pl);
	drop_privileges(pl);

	read_exec(&x);
	/* Like vfork (no copy of pid 1's page tables, pid 1 resumes once the
	 * tool has exec'd or failed), plus a shared descriptor table. */
	t = (struct toolctx){pl, &x, NULL, NULL, 0, -1, {-1, -1, -1}};
	tool = clone(run_tool, tool_stack + sizeof tool_stack,
	             CLONE_VM | CLONE_VFORK | CLONE_FILES | SIGCHLD, &t);
	if (tool < 0)
		fail("fork_tool", NULL);
	/* pid 1's table now holds the tool's stdio at 0-2 and the copies the
	 * child made; pid 1 keeps none of them. */
	for (int i = 0; i < 3; i++) {
		close(x.fds[i]);
		if (t.dups[i] >= 0)
			close(t.dups[i]);
		close(i);
	}
	if (t.step) { /* no STARTED, no namespace fds, no listener */
		while (waitpid(tool, &st, 0) < 0 && errno == EINTR)
			;
		errno = t.err;
		fail(t.step, t.detail);
	}
	if ((pl->flags & TC_PLAN_NOTIFY) && t.listener < 0) {
		errno = EBADF;
		fail("seccomp", "no listener");
	}
	send_started(tool, memfd_noexec, ns, t.listener);
	if (t.listener >= 0)
		close(t.listener);
	for (int i = 0; i < TC_NS_COUNT; i++)
		close(ns[i]);
	/* Reap everything; when the tool exits, pid 1 exits and the kernel
	 * kills whatever is left in the pid namespace. */
	for (;;) {
		pid_t w = waitpid(-1, &st, 0);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			fail("wait", NULL);
		if (w == tool) {
			char ack[8];
			send_int(TC_MSG_EXIT, st);
			/* Stay until the supervisor has read its evidence from
			 * /proc (DONE) or is gone (EOF): a fast tool must not take
			 * the sandbox down before it was inspected. */
			while (recv(ctl, ack, sizeof ack, 0) < 0 && errno == EINTR)
				;
			_exit(0);
		}
	}
}

/* check_no_caps confirms that the stage-2, now the run's uid for good,
 * holds no capability on the host. */
static void check_no_caps(void)
{
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2] = {{0}};
	if (syscall(SYS_capget, &h, d) < 0)
		fail("capabilities", "capget");
	if (d[0].permitted | d[1].permitted | d[0].effective | d[1].effective) {
		errno = EPERM;
		fail("capabilities", "left after becoming the run's uid");
	}
}

/* set_memfd_noexec sets vm.memfd_noexec = 2 for pid 1's pid namespace:
 * memfd_create then refuses MFD_EXEC and seals every memfd non-executable,
 * so no memfd can be exec'd, and a nested pid namespace cannot go lower.
 * The kernel sets the value of the writer's own pid namespace, lets only
 * the global root uid write /proc/sys, and wants CAP_SYS_ADMIN over the
 * namespace's owner; neither pid 1 (the run's uid) nor anything after it
 * qualifies. So a child of this process, root again (the saved uid kept 0
 * for this) and moved into pid 1's pid namespace, writes it while pid 1
 * builds its view; pid 1 waits for it before it reads the value back, long
 * before the tool exists. Then the stage-2 drops root for good. Go checked that the host process may write
 * the file. */
static char writer_stack[16 * 1024] __attribute__((aligned(16)));

/* write_memfd_noexec is the writer: it shares the stage-2's memory and
 * writes only *err. */
static int write_memfd_noexec(void *err)
{
	int fd = open("/proc/sys/vm/memfd_noexec", O_WRONLY | O_CLOEXEC);
	*(int *)err = fd >= 0 && write(fd, "2", 1) == 1 ? 0 : errno;
	_exit(0);
}

static void set_memfd_noexec(const struct plan *pl, pid_t child)
{
	char path[64];
	int ns, st, werr = 0;
	pid_t w;

	snprintf(path, sizeof path, "/proc/%d/ns/pid", (int)child);
	if ((pl->flags & TC_PLAN_RUN_IDS) && setresuid((uid_t)-1, 0, (uid_t)-1) < 0)
		fail("memfd_noexec", "regain root");
	ns = open(path, O_RDONLY | O_CLOEXEC);
	if (ns < 0 || setns(ns, CLONE_NEWPID) < 0)
		fail("memfd_noexec", "enter the pid namespace");
	close(ns);
	/* Like vfork: no copy of this process's page tables (a fork cost
	 * most of a millisecond here); this process resumes once it exited. */
	w = clone(write_memfd_noexec, writer_stack + sizeof writer_stack, CLONE_VM | CLONE_VFORK | SIGCHLD, &werr);
	if (w < 0)
		fail("memfd_noexec", "clone");
	while (waitpid(w, &st, 0) < 0)
		if (errno != EINTR)
			fail("memfd_noexec", "wait");
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || werr != 0) {
		errno = werr ? werr : EINTR;
		fail("memfd_noexec", "/proc/sys/vm/memfd_noexec");
	}
	if (pl->flags & TC_PLAN_RUN_IDS) {
		if (setresuid(pl->run_uid, pl->run_uid, pl->run_uid) < 0)
			fail("memfd_noexec", "drop root");
		check_no_caps();
	}
	arm_pdeath(); /* each change of credentials cleared it */
}

/* stage2 runs one sandbox over the control socket at fd 3; parent0 is the
 * fork server, set before the fork. */
static void __attribute__((noreturn)) stage2(void)
{
	struct rlimit nofile;
	struct plan pl;
	char path[64];
	pid_t child;
	int st, lifepipe[2], maps[2];

	ctl = 3;
	arm_pdeath();
	/* The plan may bring up to TC_MAX_PLAN_FDS descriptors: the soft limit
	 * the host process gave its children (often 1024) may be too low. */
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &nofile);
	}
	read_plan(&pl);

	/* Join the run's cgroup (each v1 hierarchy, or v2) before the clone, so
	 * that pid 1 is born in it and its cgroup namespace is rooted there. */
	for (int i = 0; i < pl.ncgfds; i++) {
		if (write(pl.fds[i], "0", 1) != 1)
			fail("join_cgroup", "cgroup.procs");
		close(pl.fds[i]);
	}
	idmap_sources(&pl);
	if ((pl.flags & TC_PLAN_DROP_GROUPS) && setgroups(0, NULL) < 0)
		fail("setgroups", NULL);
	/* As root, become the run's own host uid/gid before creating the user
	 * namespace: the namespace is then owned by that uid, and what the
	 * sandbox counts in it (inotify instances, namespaces) is charged to
	 * that uid up the namespace hierarchy, not to root. From here on the
	 * stage-2 holds no capability on the host, and may map only its own ids,
	 * as a rootless one. Dumpable again (the id change cleared it), so
	 * that pid 1's /proc files, its id maps among them, belong to the run's
	 * uid and not to root. */
	if (pl.flags & TC_PLAN_RUN_IDS) {
		/* No securebit of the host process's (SECBIT_NO_SETUID_FIXUP,
		 * SECBIT_KEEP_CAPS) may keep capabilities across the id change. */
		if (prctl(PR_SET_SECUREBITS, 0, 0, 0, 0) < 0)
			fail("securebits", NULL);
		if (setresgid(pl.run_gid, pl.run_gid, pl.run_gid) < 0)
			fail("setresgid", "run ids");
		/* The saved uid stays 0 only until vm.memfd_noexec is set. */
		if (setresuid(pl.run_uid, pl.run_uid, (pl.flags & TC_PLAN_MEMFD_NOEXEC) ? 0 : pl.run_uid) < 0)
			fail("setresuid", "run ids");
		if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0)
			fail("dumpable", "run ids");
		if (!(pl.flags & TC_PLAN_MEMFD_NOEXEC))
			check_no_caps();
	}
	arm_pdeath();
	/* The maps signal goes over a socket: send(MSG_NOSIGNAL) fails with
	 * EPIPE, where a pipe would raise SIGPIPE, if pid 1 died already. */
	if (pipe2(lifepipe, O_CLOEXEC) < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, maps) < 0)
		fail("pipe", NULL);
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
		fail("clone_pid1", NULL);
	if (child == 0) {
		close(lifepipe[1]);
		close(maps[1]);
		life = lifepipe[0];
		pid1(&pl, maps[0]);
	}
	close(lifepipe[0]);
	close(maps[0]);
	/* pid 1 has its own copies of the view's sources: this process, which
	 * a process of the run's uid could reach, keeps none. */
	for (int i = pl.ncgfds; i < pl.nfds; i++)
		close(pl.fds[i]);
	for (uint32_t i = 0; i < pl.nops; i++)
		if (pl.ops[i].tree >= 0)
			close(pl.ops[i].tree);
	/* setgroups is denied first: an unprivileged writer must, and the
	 * sandbox must never regain a group by setgroups(2). */
	snprintf(path, sizeof path, "/proc/%d/setgroups", (int)child);
	write_file(path, "deny");
	snprintf(path, sizeof path, "/proc/%d/uid_map", (int)child);
	write_file(path, pl.uid_map);
	snprintf(path, sizeof path, "/proc/%d/gid_map", (int)child);
	write_file(path, pl.gid_map);
	if (send(maps[1], "", 1, MSG_NOSIGNAL) != 1)
		fail("id_maps", "sync");
	/* Off pid 1's path: it builds its view meanwhile, and waits for this
	 * second signal only before it reads the value back. */
	if (pl.flags & TC_PLAN_MEMFD_NOEXEC) {
		set_memfd_noexec(&pl, child);
		if (send(maps[1], "", 1, MSG_NOSIGNAL) != 1)
			fail("memfd_noexec", "sync");
	}
	close(maps[1]);
	/* The maps are written: nothing needs this process's /proc files any
	 * more, and a process of the run's uid must not trace it. */
	if ((pl.flags & TC_PLAN_RUN_IDS) && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		fail("dumpable", "run ids");
	close(ctl);
	while (waitpid(child, &st, 0) < 0)
		if (errno != EINTR)
			_exit(TC_EXIT_SETUP);
	if (WIFSIGNALED(st))
		_exit(128 + WTERMSIG(st));
	_exit(WEXITSTATUS(st));
}

/* ---- the fork server ---- */

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
		parent0 = self;
		stage2();
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
	close(ctl); /* a supervisor still waiting for an answer gets EOF */
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
	ctl = 3;
	/* Named in ps and top like its argv (exec'd as /proc/self/fd/N, its
	 * name would be N); the stage-2s inherit the name. */
	prctl(PR_SET_NAME, "toolcell-stage2", 0, 0, 0);
	/* Keep only stdio, the socket and the pidfd: whatever else the host
	 * process left inheritable would otherwise live as long as the server. */
	if (syscall(SYS_close_range, 5, ~0U, 0) < 0)
		fail("fork_server", "close_range");
	/* SIGCHLD is blocked except inside ppoll, which unblocks it
	 * atomically: a child that ended at any time wakes the wait. */
	sa.sa_handler = on_sigchld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	if (sigaction(SIGCHLD, &sa, NULL) < 0 || sigprocmask(SIG_BLOCK, &chld, &waiting) < 0)
		fail("fork_server", "sigaction");
	sigdelset(&waiting, SIGCHLD);
	sp = fork_spare();
	for (;;) {
		uint32_t req[2];
		ssize_t n = -1;

		for (;;) {
			struct pollfd p[2] = {{ctl, POLLIN, 0}, {host, POLLIN, 0}};
			if (ppoll(p, 2, NULL, &waiting) > 0) {
				if (p[1].revents)
					_exit(0); /* the host is gone: so are its runs */
				n = recv(ctl, req, sizeof req, MSG_DONTWAIT);
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
			char s[128];
			struct buf b = {s, 0, sizeof s};
			put_u32(&b, TC_MSG_ERROR);
			put_str(&b, "fork_stage2");
			put_u32(&b, (uint32_t)sp.err);
			put_str(&b, "clone3");
			send_msg(&b);
			continue;
		}
		{
			char s[8];
			int fds[2] = {sp.pidfd, sp.sock};
			struct buf b = {s, 0, sizeof s};
			put_u32(&b, TC_MSG_FORKED);
			put_u32(&b, (uint32_t)sp.pid);
			if (!send_fds(&b, fds, 2))
				drain(&sp, host, &waiting);
		}
		close(sp.pidfd);
		close(sp.sock);
		sp.pid = -1;
	}
}

/* ---- a stage-2 exec'd directly ---- */

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
	parent0 = (pid_t)pid;
	stage2();
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

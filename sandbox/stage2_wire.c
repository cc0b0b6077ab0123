/*
 * stage2_wire.c: the stage-2's side of the control socket: message buffers,
 * sending and receiving (with descriptors), the failure report, and the
 * bounds-checked readers of the PLAN and EXEC messages (layout in stage2.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stage2_int.h"

int tc_ctl = -1;

/* ---- messages ---- */

static void put(struct buf *b, const void *p, size_t n)
{
	if (b->n + n > b->cap)
		n = b->cap - b->n; /* truncate: error details are best-effort */
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

void tc_put_u32(struct buf *b, uint32_t v) { put(b, &v, 4); }

static void put_str(struct buf *b, const char *s)
{
	uint32_t n = (uint32_t)strlen(s) + 1;
	if (n > 1024)
		n = 1024;
	tc_put_u32(b, n);
	put(b, s, n - 1);
	put(b, "", 1);
}

/* tc_send_fds sends one message with nfds descriptors attached (SCM_RIGHTS);
 * it returns whether the message went out. */
int tc_send_fds(struct buf *b, const int *fds, int nfds)
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
		r = sendmsg(tc_ctl, &mh, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	return r == (ssize_t)b->n;
}

static void send_msg(struct buf *b) { (void)tc_send_fds(b, NULL, 0); }

void tc_send_int(uint32_t type, int32_t v)
{
	char s[8];
	struct buf b = {s, 0, sizeof s};
	tc_put_u32(&b, type);
	tc_put_u32(&b, (uint32_t)v);
	send_msg(&b);
}

/* tc_send_error reports (step, err, detail): TC_MSG_ERROR, step, int32
 * errno, detail (NULL: ""); a detail is truncated to fit. */
void tc_send_error(int err, const char *step, const char *detail)
{
	char s[2200];
	struct buf b = {s, 0, sizeof s};
	tc_put_u32(&b, TC_MSG_ERROR);
	put_str(&b, step);
	tc_put_u32(&b, (uint32_t)err);
	put_str(&b, detail ? detail : "");
	send_msg(&b);
}

/* tc_fail_errno reports (step, err, detail) and exits; it never returns.
 * tc_fail (stage2_int.h) passes the errno of the call that failed. */
void __attribute__((noreturn)) tc_fail_errno(int err, const char *step, const char *detail)
{
	tc_send_error(err, step, detail);
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
		tc_fail("recv", "out of memory");
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cbuf;
	mh.msg_controllen = sizeof cbuf;
	do
		n = recvmsg(tc_ctl, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		_exit(TC_EXIT_SETUP); /* supervisor gone: nobody to report to */
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
		tc_fail_errno(EMSGSIZE, "recv", "message truncated");
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			if (n_fds || k > max)
				tc_fail_errno(EBADMSG, "recv", "too many file descriptors");
			memcpy(fds, CMSG_DATA(c), sizeof(int) * (size_t)k);
			n_fds = k;
		}
	}
	if (nfds >= 0 && n_fds != nfds)
		tc_fail_errno(EBADMSG, "recv", "wrong number of file descriptors");
	if (got)
		*got = n_fds;
	*out = p;
	return (size_t)n;
}

/* ---- plan decoding: bounds-checked, any malformation is fatal ---- */

struct rd {
	const char *p;
	size_t n;
};

static void need(struct rd *r, size_t n)
{
	if (r->n < n)
		tc_fail_errno(EBADMSG, "plan", "short message");
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
	if (n == 0 || s[n - 1] != '\0' || memchr(s, '\0', n) != s + n - 1)
		tc_fail_errno(EBADMSG, "plan", "bad string");
	r->p += n;
	r->n -= n;
	return s;
}

/* get_struct copies the next n bytes (one of the wire structs). */
static void get_struct(struct rd *r, void *v, size_t n)
{
	need(r, n);
	memcpy(v, r->p, n);
	r->p += n;
	r->n -= n;
}

static void *alloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz);
	if (!p)
		tc_fail("plan", "out of memory");
	return p;
}

/* read_landlock decodes the plan's Landlock part (layout in stage2.h). */
static void read_landlock(struct rd *r, struct llplan *ll)
{
	struct tc_plan_landlock h;
	get_struct(r, &h, sizeof h);
	ll->abi = h.abi;
	if (ll->abi == 0)
		return;
	ll->fs = h.fs;
	ll->net = h.net;
	ll->scoped = h.scoped;
	ll->nrules = h.nrules;
	if (ll->nrules > TC_MAX_LL_RULES)
		tc_fail_errno(E2BIG, "plan", "too many landlock rules");
	ll->rules = alloc(ll->nrules, sizeof(struct llrule));
	for (uint32_t i = 0; i < ll->nrules; i++) {
		ll->rules[i].access = get_u64(r);
		ll->rules[i].path = get_str(r);
		if (ll->rules[i].path[0] != '/')
			tc_fail_errno(EINVAL, "plan", "landlock rule path");
	}
	ll->nports = h.nports;
	if (ll->nports > TC_MAX_LL_PORTS)
		tc_fail_errno(E2BIG, "plan", "too many landlock ports");
	for (uint32_t i = 0; i < ll->nports; i++) {
		struct tc_plan_llport w;
		get_struct(r, &w, sizeof w);
		ll->ports[i].access = w.access;
		ll->ports[i].port = w.port;
		if (ll->ports[i].port > 65535)
			tc_fail_errno(EINVAL, "plan", "landlock port");
	}
}

void tc_read_plan(struct plan *pl)
{
	char *m;
	struct rd r;
	struct tc_plan_head h;
	uint32_t ncg, nfiles;
	r.n = recv_msg(&m, pl->fds, -TC_FD_CHUNK, &pl->nfds);
	r.p = m;
	if (get_u32(&r) != TC_MSG_PLAN)
		tc_fail_errno(EBADMSG, "plan", "expected PLAN");
	get_struct(&r, &h, sizeof h);
	pl->flags = h.flags;
	pl->uid = h.uid;
	pl->gid = h.gid;
	pl->last_cap = h.last_cap;
	pl->run_uid = h.run_uid;
	pl->run_gid = h.run_gid;
	pl->staging = get_str(&r);
	pl->hostname = get_str(&r);
	pl->rootopts = get_str(&r);
	pl->uid_map = get_str(&r);
	pl->gid_map = get_str(&r);
	ncg = h.ncgfds;
	nfiles = h.nfiles;
	if (ncg > TC_MAX_CGROUP_FDS || nfiles > TC_MAX_PLAN_FDS - TC_MAX_CGROUP_FDS)
		tc_fail_errno(E2BIG, "plan", "too many file descriptors");
	pl->ncgfds = (int)ncg;
	/* Descriptors beyond the first packet's follow in PLAN_FDS packets. */
	while (pl->nfds < pl->ncgfds + (int)nfiles) {
		char *more;
		int got, left = pl->ncgfds + (int)nfiles - pl->nfds;
		struct rd r2;
		r2.n = recv_msg(&more, pl->fds + pl->nfds, -(left < TC_FD_CHUNK ? left : TC_FD_CHUNK), &got);
		r2.p = more;
		if (get_u32(&r2) != TC_MSG_PLAN_FDS || got == 0)
			tc_fail_errno(EBADMSG, "plan", "expected PLAN_FDS");
		pl->nfds += got;
		free(more);
	}
	if (pl->nfds != pl->ncgfds + (int)nfiles)
		tc_fail_errno(EBADMSG, "plan", "wrong number of file descriptors");
	pl->nidmaps = h.nidmaps;
	if (pl->nidmaps > TC_MAX_IDMAPS)
		tc_fail_errno(E2BIG, "plan", "too many idmaps");
	for (uint32_t i = 0; i < pl->nidmaps; i++) {
		pl->idmaps[i].uid_map = get_str(&r);
		pl->idmaps[i].gid_map = get_str(&r);
	}
	pl->nops = h.nops;
	if (pl->nops > 4096)
		tc_fail_errno(E2BIG, "plan", "too many operations");
	pl->ops = alloc(pl->nops, sizeof(struct op));
	for (uint32_t i = 0; i < pl->nops; i++) {
		struct op *o = &pl->ops[i];
		struct tc_plan_op w;
		get_struct(&r, &w, sizeof w);
		o->kind = w.kind;
		o->attr = w.attr;
		o->mode = w.mode;
		o->fd = w.fd;
		o->idmap = w.idmap;
		o->a = get_str(&r);
		o->b = get_str(&r);
		o->tree = -1;
		if (o->idmap > pl->nidmaps || (o->idmap && o->kind != TC_OP_BIND))
			tc_fail_errno(EBADMSG, "plan", "idmap index");
		/* fd indexes the view's sources; only a bind has one. */
		if (o->kind == TC_OP_BIND) {
			if (o->fd < 0 || (uint32_t)o->fd >= nfiles)
				tc_fail_errno(EBADMSG, "plan", "bind source index");
			o->fd = pl->fds[pl->ncgfds + o->fd];
		} else {
			o->fd = -1;
		}
	}
	pl->nrlim = h.nrlim;
	if (pl->nrlim > 64)
		tc_fail_errno(E2BIG, "plan", "too many rlimits");
	pl->rlims = alloc(pl->nrlim, sizeof(struct rlim));
	for (uint32_t i = 0; i < pl->nrlim; i++) {
		struct tc_plan_rlimit w;
		get_struct(&r, &w, sizeof w);
		pl->rlims[i].resource = w.resource;
		pl->rlims[i].cur = w.cur;
		pl->rlims[i].max = w.max;
	}
	pl->nulim = h.nulim;
	if (pl->nulim > TC_MAX_USER_LIMITS)
		tc_fail_errno(E2BIG, "plan", "too many user limits");
	for (uint32_t i = 0; i < pl->nulim; i++) {
		pl->ulims[i].name = get_str(&r);
		pl->ulims[i].value = get_str(&r);
		pl->ulims[i].fd = -1;
		if (strchr(pl->ulims[i].name, '/') || pl->ulims[i].name[0] == '.')
			tc_fail_errno(EINVAL, "plan", "user limit name");
	}
	pl->nfilter = h.nfilter;
	if (pl->nfilter == 0 || pl->nfilter > BPF_MAXINSNS)
		tc_fail_errno(EINVAL, "plan", "seccomp filter size");
	need(&r, (size_t)pl->nfilter * sizeof(struct sock_filter));
	pl->filter = alloc(pl->nfilter, sizeof(struct sock_filter));
	memcpy(pl->filter, r.p, (size_t)pl->nfilter * sizeof(struct sock_filter));
	r.p += (size_t)pl->nfilter * sizeof(struct sock_filter);
	r.n -= (size_t)pl->nfilter * sizeof(struct sock_filter);
	pl->nsock = h.nsock;
	if (pl->nsock > TC_MAX_SOCKETS)
		tc_fail_errno(E2BIG, "plan", "too many sockets");
	for (uint32_t i = 0; i < pl->nsock; i++) {
		struct tc_plan_sock w;
		get_struct(&r, &w, sizeof w);
		pl->socks[i].kind = w.kind;
		pl->socks[i].addr = w.addr;
		pl->socks[i].port = w.port;
		if (pl->socks[i].port == 0 || pl->socks[i].port > 65535)
			tc_fail_errno(EINVAL, "plan", "socket port");
	}
	read_landlock(&r, &pl->ll);
}

/* ---- the EXEC message ---- */

static char **get_list(struct rd *r)
{
	uint32_t n = get_u32(r);
	char **v;
	if (n > 65536)
		tc_fail_errno(E2BIG, "exec_message", "too many strings");
	v = alloc(n + 1, sizeof(char *));
	for (uint32_t i = 0; i < n; i++)
		v[i] = (char *)get_str(r);
	return v;
}

void tc_read_exec(struct execmsg *x)
{
	char *m;
	struct rd r;
	r.n = recv_msg(&m, x->fds, 3, NULL);
	r.p = m;
	if (get_u32(&r) != TC_MSG_EXEC)
		tc_fail_errno(EBADMSG, "exec_message", "expected EXEC");
	x->path = get_str(&r);
	x->cwd = get_str(&r);
	x->argv = get_list(&r);
	x->envp = get_list(&r);
}


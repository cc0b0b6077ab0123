/*
 * stage2_view.c: the sandbox's filesystem view: the bind sources cloned (and
 * idmapped) while the host tree is visible, the plan's operations against a
 * new tmpfs root (binds, tmpfs, proc, masks, read-only remounts), and
 * pivot_root into it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stage2_int.h"

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

	tc_check(fstat(o->fd, &want), "bind_source_fd", o->b);
	/* Go resolved every symlink already: the path must have none left, in
	 * any component, or it changed since. */
	src = (int)syscall(SYS_openat2, AT_FDCWD, o->b, &how, sizeof how);
	if (src < 0)
		tc_fail("bind_open", o->b);
	o->tree = open_tree(src, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_EMPTY_PATH);
	if (o->tree < 0)
		tc_fail("bind_clone", o->b);
	close(src);
	tc_check(fstat(o->tree, &got), "bind_clone_stat", o->b);
	if (got.st_dev != want.st_dev || got.st_ino != want.st_ino ||
	    (got.st_mode & S_IFMT) != (want.st_mode & S_IFMT))
		tc_fail_errno(ESTALE, "bind_verify", o->b);
}

/* clone_sources clones the bind sources tc_idmap_sources left to pid 1. */
static void clone_sources(struct plan *pl)
{
	for (uint32_t i = 0; i < pl->nops; i++) {
		struct op *o = &pl->ops[i];
		if (o->kind != TC_OP_BIND)
			continue;
		if (o->tree < 0) {
			clone_source(o);
			tc_check(set_attr(o->tree, "", AT_EMPTY_PATH | AT_RECURSIVE, o->attr),
			         "bind_setattr", o->b);
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

	tc_check(pipe2(hold, O_CLOEXEC), "idmap_pipe", NULL);
	pid = clone(hold_userns, holder_stack + sizeof holder_stack, CLONE_VM | CLONE_NEWUSER | SIGCHLD, hold);
	if (pid < 0)
		tc_fail("idmap_userns", NULL);
	snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
	tc_write_file(path, m->uid_map);
	snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
	tc_write_file(path, m->gid_map);
	snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	close(hold[1]);
	close(hold[0]);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	if (fd < 0)
		tc_fail("idmap_userns", path);
	return fd;
}

/* tc_idmap_sources clones the writable binds' sources as idmapped mounts:
 * files of the grant's owner show as the sandbox user, and what the tool
 * creates there belongs to that owner on the host. The kernel allows
 * MOUNT_ATTR_IDMAP only to a holder of CAP_SYS_ADMIN over the file system
 * (the host's root), on a detached mount: so the stage-2 does it before it
 * drops root, and pid 1 inherits the mounts with its descriptor table.
 * Where the file system or kernel refuses, the run fails, or, with
 * TC_PLAN_IDMAP_OPTIONAL, that bind is left to pid 1 as a plain one (the
 * supervisor reads which mounts are idmapped from pid 1's mountinfo). */
void tc_idmap_sources(struct plan *pl)
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
				tc_fail("idmap", o->b);
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
		tc_fail("view_parent", o->a);
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
			tc_fail("mkdir", o->a);
		break;
	case TC_OP_FILE: {
		size_t n = strlen(o->b);
		fd = openat(dir, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0)
			tc_fail("file", o->a);
		for (size_t off = 0; off < n;) {
			ssize_t w = write(fd, o->b + off, n - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				tc_fail("file_write", o->a);
			off += (size_t)w;
		}
		tc_check(fchmod(fd, o->mode), "file_chmod", o->a);
		close(fd);
		break;
	}
	case TC_OP_SYMLINK:
		tc_check(symlinkat(o->b, dir, base), "symlink", o->a);
		break;
	case TC_OP_BIND:
		tc_check(attach(o->tree, dir, base), "bind_attach", o->a);
		close(o->tree);
		break;
	case TC_OP_TMPFS:
		t = new_tmpfs(o->b, o->attr);
		if (t < 0)
			tc_fail("tmpfs", o->a);
		tc_check(attach(t, dir, base), "tmpfs_attach", o->a);
		close(t);
		break;
	case TC_OP_PROC: {
		/* mount(2) through the parent's fd: the kernel checks that a
		 * fully visible proc exists in this mount namespace. */
		char path[64];
		snprintf(path, sizeof path, "/proc/self/fd/%d/%s", dir, base);
		if (strlen(base) > 32 || strchr(base, '/'))
			tc_fail_errno(EINVAL, "proc", o->a);
		tc_check(mount("proc", path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL), "proc", o->a);
		break;
	}
	case TC_OP_MASK_FILE:
		t = open_tree(root, "dev/null", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
		if (t < 0)
			tc_fail("mask_source", "dev/null");
		if (attach(t, dir, base) < 0 && errno != ENOENT)
			tc_fail("mask_file", o->a);
		close(t);
		break;
	case TC_OP_MASK_DIR:
		t = new_tmpfs("size=4k,nr_inodes=1,mode=0555", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
		if (t < 0)
			tc_fail("mask_dir", o->a);
		if (attach(t, dir, base) < 0 && errno != ENOENT)
			tc_fail("mask_dir_attach", o->a);
		close(t);
		break;
	case TC_OP_SETATTR:
		tc_check(set_attr(dir, base, AT_SYMLINK_NOFOLLOW, o->attr), "setattr", o->a);
		break;
	case TC_OP_READONLY:
		t = open_tree(dir, base, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_SYMLINK_NOFOLLOW);
		if (t < 0) {
			if (errno == ENOENT)
				break;
			tc_fail("readonly", o->a);
		}
		if (set_attr(t, "", AT_EMPTY_PATH | AT_RECURSIVE, o->attr) < 0 || attach(t, dir, base) < 0)
			tc_fail("readonly", o->a);
		close(t);
		break;
	default:
		tc_fail_errno(EINVAL, "plan", "unknown operation");
	}
	close(dir);
}

/* tc_build_view is pid 1's: it clones the remaining bind sources, waits
 * for its id maps (on maps), becomes the sandbox user, builds the view on a
 * tmpfs at the plan's staging path, and pivots into it. */
void tc_build_view(struct plan *pl, int maps)
{
	int root;

	tc_check(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), "make_private", "/");
	clone_sources(pl);
	tc_wait_maps(maps);
	/* The maps are written: nothing needs pid 1 dumpable (traceable by a
	 * host process of the run's uid) any more. */
	tc_check(prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "dumpable", NULL);
	/* Sources are resolved with the host process's ids (it opened them
	 * too); from here on, become the mapped sandbox user so that files made
	 * on the view's tmpfs belong to a mapped id. Capabilities in the new
	 * user namespace survive: its uid 0 is unmapped, so no setuid fixup
	 * applies; every set is cleared explicitly before READY. */
	tc_check(setresgid(pl->gid, pl->gid, pl->gid), "setresgid", NULL);
	tc_check(setresuid(pl->uid, pl->uid, pl->uid), "setresuid", NULL);
	tc_arm_pdeath();
	tc_check(mount("tmpfs", pl->staging, "tmpfs", MS_NOSUID | MS_NODEV, pl->rootopts),
	         "root_tmpfs", pl->staging);
	root = open(pl->staging, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		tc_fail("root_open", pl->staging);
	for (uint32_t i = 0; i < pl->nops; i++)
		do_op(root, &pl->ops[i]);

	/* pivot_root(".", ".") stacks the old root on the new one; detach it. */
	tc_check(fchdir(root), "pivot_chdir", pl->staging);
	tc_check(syscall(SYS_pivot_root, ".", "."), "pivot_root", pl->staging);
	tc_check(umount2(".", MNT_DETACH), "detach_old_root", "/");
	tc_check(chdir("/"), "chdir", "/");
	close(root);
	tc_check(set_attr(AT_FDCWD, "/", 0, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV),
	         "root_readonly", "/");
}

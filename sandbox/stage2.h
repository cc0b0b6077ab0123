/*
 * stage2.h: the wire contract between the Go supervisor and the C stage-2.
 * Every constant here is mirrored in Go through cgo (stage2_cgo.go), so the
 * two sides cannot drift apart.
 */
#ifndef TOOLCELL_STAGE2_H
#define TOOLCELL_STAGE2_H

#include <stdint.h>

/* Environment variable that turns a process into the fork server; its value
 * is the number of the server's socket (SOCK_SEQPACKET) descriptor, 3; a
 * pidfd of the host process is at 4. A value TC_ENV_DIRECT "<host pid>"
 * makes it a stage-2 itself, its control socket at 3 (Runner.OneShot). */
#define TC_ENV "_TOOLCELL_STAGE2"
#define TC_ENV_DIRECT "direct:"

/* Messages on the control socket (SOCK_SEQPACKET: one message per packet).
 * Each starts with a uint32 type. */
enum {
	TC_MSG_PLAN = 1,    /* Go -> C: the setup plan + the cgroup.procs files   */
	                    /* to join, then the view's sources (O_PATH; a bind's */
	                    /* fd indexes these), TC_FD_CHUNK per packet          */
	TC_MSG_EXEC = 6,    /* Go -> C: path, cwd, argv, envp + 3 stdio fds        */
	TC_MSG_STARTED = 7, /* C -> Go: int32 tool pid (inside the pid namespace) */
	                    /* and int32 vm.memfd_noexec as pid 1 reads it (-1:  */
	                    /* none) + pid 1's namespace fds, in TC_NS_NAMES     */
	                    /* order, then the seccomp listener (TC_PLAN_NOTIFY) */
	TC_MSG_EXIT = 8,    /* C -> Go: int32 wait status of the tool              */
	TC_MSG_ERROR = 9,   /* C -> Go: step, int32 errno, detail                  */
	TC_MSG_DONE = 10,   /* Go -> C: evidence read, pid 1 may exit              */
	TC_MSG_SOCKETS = 11, /* C -> Go: the plan's sockets, in plan order, made  */
	                     /* inside the sandbox's network namespace            */

	TC_MSG_PLAN_FDS = 12, /* Go -> C: more of the PLAN's descriptors           */
	TC_MSG_READY = 15,    /* C -> Go (TC_PLAN_READY): int32 vm.memfd_noexec   */
	                      /* as pid 1 reads it + pid 1's namespace fds, in    */
	                      /* TC_NS_NAMES order: pid 1 is complete and waits   */
	                      /* for EXEC; STARTED then carries only the listener */

	/* On the fork server's socket: */
	TC_MSG_FORK = 13,   /* Go -> C: hand out a stage-2                        */
	TC_MSG_FORKED = 14, /* C -> Go: uint32 stage-2 pid + its pidfd and the    */
	                    /* supervisor's end of its control socket; or         */
	                    /* TC_MSG_ERROR                                       */
};

/* The PLAN's layout. Its fixed-size parts are these structs, which the Go
 * side fills field by field through cgo (stage2_cgo.go), so a field renamed,
 * removed or retyped here fails the Go build, and both sides use the same
 * size and padding. In order:
 *   uint32 TC_MSG_PLAN, struct tc_plan_head,
 *   strings staging, hostname, rootopts, uid_map, gid_map  (uint32 length
 *     including the NUL, then the bytes),
 *   nidmaps x (string uid_map, string gid_map),
 *   nops x (struct tc_plan_op, string a, string b),
 *   nrlim x struct tc_plan_rlimit, nulim x (string name, string value),
 *   nfilter x struct sock_filter (the seccomp program),
 *   nsock x struct tc_plan_sock, then the Landlock part (below). */
struct tc_plan_head {
	uint32_t flags;            /* TC_PLAN_* */
	uint32_t uid, gid;         /* the sandbox user inside */
	uint32_t last_cap;         /* the highest capability the kernel knows */
	uint32_t run_uid, run_gid; /* the run's host ids (TC_PLAN_RUN_IDS) */
	uint32_t ncgfds, nfiles;   /* descriptors: the cgroup's, then the view's sources */
	uint32_t nidmaps, nops, nrlim, nulim, nfilter, nsock;
};

struct tc_plan_op {
	uint32_t kind, attr, mode;
	int32_t fd;     /* TC_OP_BIND: index into the view's sources; else -1 */
	uint32_t idmap; /* TC_OP_BIND: 1 + index of its id maps, 0: none */
};

struct tc_plan_rlimit {
	uint32_t resource, pad;
	uint64_t cur, max;
};

struct tc_plan_sock {
	uint32_t kind, addr, port;
};

/* Descriptors per packet (SCM_RIGHTS takes at most 253), and per plan. */
#define TC_FD_CHUNK 200
#define TC_MAX_PLAN_FDS 1000

/* Sockets pid 1 makes for the egress relay (plan order): kind, IPv4
 * address (host byte order; the IPv6 kinds bind ::), port. */
enum {
	TC_SOCK_TCP = 1,  /* listening TCP socket (SO_REUSEADDR)               */
	TC_SOCK_UDP = 2,  /* bound UDP socket, IP_PKTINFO on                   */
	TC_SOCK_TCP6 = 3, /* listening TCP socket on [::], IPv4 too (dual)     */
	TC_SOCK_UDP6 = 4, /* bound UDP socket on [::], IPv6 only, PKTINFO on   */
};
#define TC_MAX_SOCKETS 64

/* The namespaces every sandbox gets, in the order pid 1 passes their fds. */
#define TC_NS_NAMES "user", "mnt", "net", "pid", "ipc", "uts", "cgroup"
#define TC_NS_COUNT 7
#define TC_MAX_CGROUP_FDS 8

/* Plan operations, executed in order against the new root. Paths are
 * relative to the new root and never resolved through a symlink. */
enum {
	TC_OP_MKDIR = 1,     /* a: path; mode                                     */
	TC_OP_FILE = 2,      /* a: path; b: content; mode                         */
	TC_OP_SYMLINK = 3,   /* a: path; b: link text                             */
	TC_OP_BIND = 4,      /* a: target; b: host source; fd: O_PATH of source;   */
	                     /* attr: MOUNT_ATTR_* to set; idmap                  */
	TC_OP_TMPFS = 5,     /* a: target; b: "k=v,k=v" options; attr             */
	TC_OP_PROC = 6,      /* a: target                                         */
	TC_OP_MASK_FILE = 7, /* a: path to hide under /dev/null, if present       */
	TC_OP_MASK_DIR = 8,  /* a: dir to hide under an empty read-only tmpfs     */
	TC_OP_READONLY = 9,  /* a: path to remount with attr, if present          */
	TC_OP_SETATTR = 10,  /* a: mount point whose own attributes get attr      */
};

/* Plan flags. */
#define TC_PLAN_DROP_GROUPS 1 /* setgroups(0, NULL) before the user ns (root) */
#define TC_PLAN_NOTIFY 2      /* install the filter with a listener and pass it */
#define TC_PLAN_ROUTE4 4      /* route all of IPv4 to loopback as local (AnyIP) */
#define TC_PLAN_ROUTE6 8      /* the same for IPv6                              */
#define TC_PLAN_MEMFD_NOEXEC 16 /* the stage-2 sets vm.memfd_noexec = 2 in pid 1's pid ns */

/* Landlock, applied by the tool child before its seccomp filter (the
 * kernel's struct layouts are spelled out in stage2_pid1.c). The PLAN ends
 * with struct tc_plan_landlock, then, when its ABI is not 0:
 *   nrules x (uint64 rights, string path)  path-beneath rules, paths
 *                                          absolute in the view
 *   nports x struct tc_plan_llport         TCP port rules
 * Every right, path and port is Go's choice; C opens each path inside the
 * view (O_PATH, no symlink) and adds it as given. */
struct tc_plan_landlock {
	uint32_t abi; /* the ABI to apply, 0: none */
	uint32_t nrules, nports;
	uint32_t pad;
	uint64_t fs, net, scoped; /* handled fs and net rights, scopes */
};

struct tc_plan_llport {
	uint64_t access, port;
};
#define TC_MAX_LL_RULES 4096
#define TC_MAX_LL_PORTS 64

#define TC_PLAN_RUN_IDS 32    /* become the run's host uid/gid before the user  */
                              /* ns, so it is owned and charged by that uid     */
#define TC_PLAN_IDMAP_OPTIONAL 64 /* a bind the kernel cannot idmap stays plain */
#define TC_PLAN_READY 128     /* pid 1 sends READY before it waits for EXEC     */
                              /* (a sandbox built ahead: sandbox.Pool)          */
#define TC_PLAN_CGROUP_CLONE 256 /* cgroup v2: the one cgroup fd is the run's    */
                              /* cgroup directory; the stage-2 forks itself into */
                              /* it (clone3 CLONE_INTO_CGROUP), no cgroup.procs  */
                              /* write                                           */

/* Writable binds may be idmapped (root only). Before the operations the PLAN
 * holds uint32 n, n x (string uid_map, string gid_map); each operation ends
 * with uint32 idmap: 1 + the index of its maps, 0 for none. */
#define TC_MAX_IDMAPS 8

/* Limits pid 1 sets in the sandbox's user namespace (/proc/sys/user). */
#define TC_MAX_USER_LIMITS 16

#define TC_MAX_MSG (1 << 20)
#define TC_EXIT_SETUP 125

#endif

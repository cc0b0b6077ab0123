package sandbox_test

// The escape suite: real attack attempts (testdata/escape/attack.c), one
// per sandbox run, under a realistic policy (Base + a workdir). A case
// passes only when the attempt failed, the audit record shows the evidence,
// and the host's canaries are unchanged. Attacks aim only at canaries set
// up here, so a broken sandbox cannot harm the machine running the suite.

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/internal/testenv"
	"github.com/toolcell/toolcell/sandbox"
)

// canaries are host objects the attacks aim at.
type canaries struct {
	dir, file, home, socket, abstract, name string
	port                                    int
	accepted                                chan string
	victim                                  *exec.Cmd
	victimFD                                int
}

func newCanaries(t *testing.T) *canaries {
	t.Helper()
	c := &canaries{accepted: make(chan string, 16)}
	c.dir = testenv.Tempdir(t)
	c.file = filepath.Join(c.dir, "secret.txt")
	c.home = filepath.Join(c.dir, "home")
	for _, d := range []string{filepath.Join(c.home, ".ssh"), filepath.Join(c.home, ".aws")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for path, body := range map[string]string{
		c.file:                                  "canary secret\n",
		filepath.Join(c.home, ".ssh", "id_rsa"): "canary private key\n",
		filepath.Join(c.home, ".aws", "credentials"): "canary aws key\n",
	} {
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	accept := func(ln net.Listener, what string) {
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				conn.Close()
				c.accepted <- what
			}
		}()
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.port = ln.Addr().(*net.TCPAddr).Port
	accept(ln, "tcp 127.0.0.1")
	if ln6, err := net.Listen("tcp6", fmt.Sprintf("[::1]:%d", c.port)); err == nil {
		accept(ln6, "tcp [::1]")
	}
	c.socket = filepath.Join(c.dir, "agent.sock")
	if ln, err := net.Listen("unix", c.socket); err == nil {
		accept(ln, "unix "+c.socket)
	} else {
		t.Fatal(err)
	}
	c.abstract = fmt.Sprintf("@toolcell-canary-%d", time.Now().UnixNano())
	if ln, err := net.Listen("unix", c.abstract); err == nil {
		accept(ln, "abstract "+c.abstract)
	} else {
		t.Fatal(err)
	}
	c.name = fmt.Sprintf("tcorph%d", time.Now().UnixNano()%1000000)
	c.victim = exec.Command("/bin/sleep", "600")
	if err := c.victim.Start(); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.PidfdOpen(c.victim.Process.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	c.victimFD = fd
	t.Cleanup(func() { c.victim.Process.Kill(); c.victim.Wait(); unix.Close(fd) })
	return c
}

// snapshot digests the canary directory: names, modes, sizes, contents.
func (c *canaries) snapshot(t *testing.T) string {
	h := sha256.New()
	err := filepath.WalkDir(c.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %v %d\n", p, fi.Mode(), fi.Size())
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// intact fails the test if any canary was touched.
func (c *canaries) intact(t *testing.T, before string) {
	t.Helper()
	if after := c.snapshot(t); after != before {
		t.Errorf("canary directory changed")
	}
	select {
	case what := <-c.accepted:
		t.Errorf("canary listener got a connection: %s", what)
	default:
	}
	if err := unix.PidfdSendSignal(c.victimFD, 0, nil, 0); err != nil {
		t.Errorf("canary process gone: %v", err)
	}
	// Nothing the tool started may survive the run.
	matches, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, m := range matches {
		if b, err := os.ReadFile(m); err == nil && strings.TrimSpace(string(b)) == c.name {
			t.Errorf("a process of the tool outlived the run: %s", m)
		}
	}
}

type escapeCase struct {
	attack string
	class  string
	// policy changes the default policy (Base, workdir, the attacker).
	policy func(*capability.Set)
	// check asserts the failure and its evidence in the record.
	check func(t *testing.T, c *canaries, res *sandbox.Result, out string)
	na    map[string]string // host kinds where the case cannot run, with why
	// naIf, when set, must hold for na to apply (the reason is checked).
	naIf func() bool
	// run replaces the default single run (cases that need a setup).
	run func(t *testing.T, c *canaries, set *capability.Set, bin string) (*sandbox.Result, string)
}

// deniedBy: the attack got EPERM and the record names the syscall (and,
// when given, parts of its decoded arguments; "{canary}" stands for the
// canary directory).
func deniedBy(syscall string, detail ...string) func(*testing.T, *canaries, *sandbox.Result, string) {
	return func(t *testing.T, c *canaries, res *sandbox.Result, out string) {
		t.Helper()
		if !strings.Contains(out, "RESULT EPERM") {
			t.Errorf("attack saw %q, want EPERM", out)
		}
		for _, d := range res.Audit.Denials {
			if d.Syscall != syscall {
				continue
			}
			ok := true
			for _, s := range detail {
				ok = ok && strings.Contains(d.Detail, strings.ReplaceAll(s, "{canary}", c.dir))
			}
			if ok && d.Answer == "EPERM" && d.Count >= 1 {
				return
			}
		}
		t.Errorf("no denial of %s %v in the record: %+v", syscall, detail, res.Audit.Denials)
	}
}

// failsWith: the attempt failed with one of errnos; evidence adds the
// record's part.
func failsWith(evidence func(*testing.T, *canaries, *sandbox.Result), errnos ...string) func(*testing.T, *canaries, *sandbox.Result, string) {
	return func(t *testing.T, c *canaries, res *sandbox.Result, out string) {
		t.Helper()
		ok := false
		for _, e := range errnos {
			ok = ok || strings.Contains(out, "RESULT "+e)
		}
		if !ok {
			t.Errorf("attack saw %q, want one of %v", out, errnos)
		}
		if evidence != nil {
			evidence(t, c, res)
		}
	}
}

// killedBySeccomp: the kernel killed the tool for a foreign syscall ABI.
func killedBySeccomp(t *testing.T, c *canaries, res *sandbox.Result, out string) {
	t.Helper()
	if res.Audit.Exit.Reason != audit.ReasonSeccompKill || res.Audit.Exit.Signal != "SIGSYS" {
		t.Errorf("exit %+v, want seccomp_kill by SIGSYS", res.Audit.Exit)
	}
}

// notMounted: the record's view has no mount at or above the canaries.
func notMounted(t *testing.T, c *canaries, res *sandbox.Result) {
	t.Helper()
	for _, m := range res.Audit.Enforcement.Mounts {
		src := m.Src
		if !strings.HasPrefix(src, "/") {
			continue // tmpfs, proc: nothing of the host's file tree
		}
		if src == c.dir || strings.HasPrefix(c.dir, src+"/") || strings.HasPrefix(src, c.dir+"/") {
			t.Errorf("mount %+v exposes the canary directory %s", m, c.dir)
		}
	}
}

// mountedWith: the record shows dst mounted with every given mode flag.
func mountedWith(dst string, modes ...string) func(*testing.T, *canaries, *sandbox.Result) {
	return func(t *testing.T, c *canaries, res *sandbox.Result) {
		t.Helper()
		for _, m := range res.Audit.Enforcement.Mounts {
			if m.Dst != dst {
				continue
			}
			for _, want := range modes {
				if !strings.Contains(","+m.Mode+",", ","+want+",") {
					t.Errorf("mount %s has mode %q, want %s", dst, m.Mode, want)
				}
			}
			return
		}
		t.Errorf("no mount at %s in the record", dst)
	}
}

// absentHere: the hybrid hosts' kernel (a PVM guest) is built without the
// /proc file a case attacks; the VM's kernel has it.
func absentHere(p string) map[string]string {
	why := "this host's kernel has no " + p + " (checked at run time); the vm-v2 stage attacks it"
	return map[string]string{testenv.KindRootHybrid: why, testenv.KindRootlessHybrid: why}
}

func hostHasFile(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// maskedIfPresent: where the host has the file, the record shows it
// masked; where it has not (a kernel built without it), it is absent.
func maskedIfPresent(path string) func(*testing.T, *canaries, *sandbox.Result) {
	return func(t *testing.T, c *canaries, res *sandbox.Result) {
		t.Helper()
		if _, err := os.Stat(path); err != nil {
			return
		}
		mountedWith(path)(t, c, res)
	}
}

// lacksMount: nothing is mounted at or under dst in the record's view.
func lacksMount(dst string) func(*testing.T, *canaries, *sandbox.Result) {
	return func(t *testing.T, c *canaries, res *sandbox.Result) {
		t.Helper()
		for _, m := range res.Audit.Enforcement.Mounts {
			if m.Dst == dst || strings.HasPrefix(m.Dst, dst+"/") {
				t.Errorf("mount %+v: %s should not exist in the view", m, dst)
			}
		}
	}
}

// rootReadOnly: the record shows the generated files (on the view's root)
// on a read-only mount.
func rootReadOnly(t *testing.T, c *canaries, res *sandbox.Result) {
	t.Helper()
	mountedWith("/etc/passwd", "ro")(t, c, res)
}

// exitedNormally: the attack ran to its verdict (it was not killed on the
// way), as the record's exit shows.
func exitedNormally(t *testing.T, c *canaries, res *sandbox.Result) {
	t.Helper()
	if res.Audit.Exit.Reason != audit.ReasonExited || res.Audit.Exit.Code != 0 {
		t.Errorf("exit %+v, want exited 0", res.Audit.Exit)
	}
}

func noNetwork(t *testing.T, c *canaries, res *sandbox.Result) {
	t.Helper()
	if !strings.Contains(strings.Join(res.Audit.Enforcement.Namespaces, ","), "net") {
		t.Errorf("record lacks the net namespace: %v", res.Audit.Enforcement.Namespaces)
	}
}

func seesNoHostPids(t *testing.T, c *canaries, res *sandbox.Result) {
	t.Helper()
	if !strings.Contains(strings.Join(res.Audit.Enforcement.Namespaces, ","), "pid") {
		t.Errorf("record lacks the pid namespace: %v", res.Audit.Enforcement.Namespaces)
	}
}

func escapeCases() []escapeCase {
	var cs []escapeCase
	add := func(class string, list ...escapeCase) {
		for _, c := range list {
			c.class = class
			cs = append(cs, c)
		}
	}
	sys := func(attack, syscall string, detail ...string) escapeCase {
		return escapeCase{attack: attack, check: deniedBy(syscall, detail...)}
	}
	add("process access (ptrace and friends)",
		sys("ptrace", "ptrace", "request=PTRACE_ATTACH"),
		sys("ptrace_pid1", "ptrace", "pid=1"),
		sys("ptrace_traceme", "ptrace", "request=PTRACE_TRACEME"),
		sys("ptrace_sibling", "ptrace", "request=PTRACE_ATTACH"),
		sys("process_vm_readv", "process_vm_readv"),
		sys("process_vm_writev", "process_vm_writev"),
		sys("pidfd_getfd", "pidfd_getfd"),
		sys("kcmp", "kcmp"),
		escapeCase{attack: "host_pid_kill", check: failsWith(seesNoHostPids, "ESRCH")},
	)
	add("kernel attack surface",
		sys("bpf", "bpf", "cmd=BPF_PROG_LOAD"),
		sys("perf_event_open", "perf_event_open"),
		sys("userfaultfd", "userfaultfd"),
		sys("io_uring_setup", "io_uring_setup"),
		sys("io_uring_enter", "io_uring_enter"),
		sys("io_uring_register", "io_uring_register"),
		sys("keyctl", "keyctl"),
		sys("add_key", "add_key", `type="user"`),
		sys("request_key", "request_key", `type="user"`),
		sys("kexec_load", "kexec_load"),
		sys("kexec_file_load", "kexec_file_load"),
		sys("init_module", "init_module"),
		sys("finit_module", "finit_module"),
		sys("delete_module", "delete_module", `path="toolcell_canary"`),
		sys("syslog", "syslog"),
		sys("lookup_dcookie", "lookup_dcookie"),
	)
	add("host state",
		sys("reboot", "reboot"),
		sys("swapon", "swapon"),
		sys("swapoff", "swapoff"),
		sys("acct", "acct", `path="{canary}"`),
		sys("quotactl", "quotactl"),
		sys("iopl", "iopl"),
		sys("ioperm", "ioperm"),
		sys("settimeofday", "settimeofday"),
		sys("clock_settime", "clock_settime"),
		sys("adjtimex", "adjtimex"),
		sys("clock_adjtime", "clock_adjtime"),
	)
	add("mount API",
		sys("mount", "mount", `target="{canary}"`, `fstype="tmpfs"`),
		sys("mount_bind_proc", "mount", `source="/proc"`, `target="{canary}"`, "MS_BIND"),
		sys("umount2", "umount2", `target="{canary}"`),
		sys("pivot_root", "pivot_root"),
		sys("chroot", "chroot", `path="/tmp"`),
		sys("fsopen", "fsopen", `fstype="tmpfs"`),
		sys("fsconfig", "fsconfig"),
		sys("fsmount", "fsmount"),
		sys("fspick", "fspick", `path="/"`),
		sys("open_tree", "open_tree", `path="/proc"`),
		sys("move_mount", "move_mount", `from="{canary}"`, `to="{canary}/home"`),
		sys("mount_setattr", "mount_setattr", `path="{canary}"`),
		sys("open_by_handle_at", "open_by_handle_at"),
		sys("name_to_handle_at", "name_to_handle_at", `path="/usr"`),
	)
	add("namespaces (nested user ns for netfilter, fsconfig, overlayfs)",
		sys("unshare_user", "unshare", "CLONE_NEWUSER"),
		sys("unshare_mnt", "unshare", "CLONE_NEWNS"),
		sys("unshare_net", "unshare", "CLONE_NEWNET"),
		sys("setns", "setns", "CLONE_NEWNET"),
		sys("clone_newuser", "clone", "CLONE_NEWUSER"),
		sys("clone_newns_thread", "clone", "CLONE_NEWNS"),
		sys("clone_newpid", "clone", "CLONE_NEWPID"),
		sys("clone_newnet", "clone", "CLONE_NEWNET"),
		sys("clone_newcgroup", "clone", "CLONE_NEWCGROUP"),
		sys("clone_newipc", "clone", "CLONE_NEWIPC"),
		sys("clone_newuts", "clone", "CLONE_NEWUTS"),
		escapeCase{attack: "clone3", check: failsWith(func(t *testing.T, c *canaries, res *sandbox.Result) {
			if len(res.Audit.Denials) != 0 {
				t.Errorf("clone3 is answered ENOSYS by the filter, not notified: %+v", res.Audit.Denials)
			}
		}, "ENOSYS")},
	)
	add("socket families",
		sys("socket_inet", "socket", "family=AF_INET "),
		sys("socket_inet6", "socket", "family=AF_INET6"),
		sys("socket_udp", "socket", "type=SOCK_DGRAM"),
		sys("socket_raw", "socket", "type=SOCK_RAW"),
		sys("socket_packet", "socket", "family=AF_PACKET"),
		sys("socket_netlink", "socket", "family=AF_NETLINK"),
		sys("socket_vsock", "socket", "family=AF_VSOCK"),
		sys("socket_alg", "socket", "family=AF_ALG"),
		sys("socket_inet_hibits", "socket", "family=AF_INET "),
		sys("dns", "socket", "type=SOCK_DGRAM"),
		escapeCase{attack: "abstract_socket", check: failsWith(noNetwork, "ECONNREFUSED", "ENOENT")},
		escapeCase{attack: "host_unix_socket", check: failsWith(notMounted, "ENOENT")},
	)
	add("terminal injection and personality",
		sys("ioctl_tiocsti", "ioctl", "request=TIOCSTI"),
		sys("ioctl_tiocsti_hibits", "ioctl", "request=TIOCSTI"),
		sys("ioctl_tioclinux", "ioctl", "request=TIOCLINUX"),
		sys("personality_rie", "personality", "persona=0x400000"),
		sys("personality_norandom", "personality", "persona=0x40000"),
		sys("prctl_set_mm", "prctl", "option=PR_SET_MM"),
	)
	int80NA := map[string]string{
		testenv.KindRootHybrid:     "this host (a PVM guest) answers int 0x80 from a 64-bit process with SIGSEGV before any syscall entry; the vm-v2 stage runs it",
		testenv.KindRootlessHybrid: "this host (a PVM guest) answers int 0x80 from a 64-bit process with SIGSEGV before any syscall entry; the vm-v2 stage runs it",
	}
	noInt80 := func() bool { ok, _ := hostRunsInt80(nil, attackBin); return !ok }
	add("compat ABI bypass",
		escapeCase{attack: "int80", check: killedBySeccomp, na: int80NA, naIf: noInt80},
		escapeCase{attack: "socketcall", check: killedBySeccomp, na: int80NA, naIf: noInt80},
		escapeCase{attack: "x32", check: killedBySeccomp},
	)
	add("files outside the grants",
		escapeCase{attack: "read_canary", check: failsWith(notMounted, "ENOENT")},
		escapeCase{attack: "write_canary", check: failsWith(notMounted, "ENOENT")},
		escapeCase{attack: "create_outside", check: failsWith(notMounted, "ENOENT")},
		escapeCase{attack: "symlink_to_canary", check: failsWith(notMounted, "ENOENT")},
		escapeCase{attack: "hardlink_to_canary", check: failsWith(notMounted, "ENOENT")},
		// ENOENT: the view has no such path; EACCES: Landlock refused
		// reading "/" (no grant covers it) before the climb got there.
		escapeCase{attack: "dotdot_from_workdir", check: failsWith(notMounted, "ENOENT", "EACCES")},
		escapeCase{attack: "proc_pid1_root", check: failsWith(notMounted, "EACCES", "ENOENT")},
		escapeCase{attack: "write_usr", check: failsWith(mountedWith("/usr", "ro"), "EROFS")},
		escapeCase{attack: "write_root", check: failsWith(rootReadOnly, "EROFS")},
		escapeCase{attack: "write_etc_passwd", check: failsWith(rootReadOnly, "EROFS")},
		escapeCase{attack: "write_dev", check: failsWith(mountedWith("/dev", "ro"), "EROFS")},
		escapeCase{attack: "session_leader", check: failsWith(exitedNormally, "ENXIO", "ENOENT")},
		escapeCase{attack: "setuid_binary", check: func(t *testing.T, c *canaries, res *sandbox.Result, out string) {
			if strings.Contains(out, "\n0\n") || strings.HasPrefix(out, "0\n") {
				t.Errorf("setuid binary ran as root: %q", out)
			}
			mountedWith("/usr", "nosuid")(t, c, res)
			if !res.Audit.Enforcement.NoNewPrivs {
				t.Error("record: no_new_privs not set")
			}
		}},
	)
	add("set-ID files for the host (the tool's files belong to a host user)",
		escapeCase{attack: "plant_setid", run: plantSetID, check: func(t *testing.T, c *canaries, res *sandbox.Result, out string) {
			for _, want := range []string{"chmod EPERM", "chmod_g EPERM", "fchmod EPERM", "fchmodat2 EPERM", "creat EPERM",
				"open_creat EPERM", "openat_tmpfile EPERM", "mkdir EPERM", "openat2 ENOSYS", "plain ok"} {
				if !strings.Contains(out, want) {
					t.Errorf("tool saw %q, want %q", out, want)
				}
			}
			seen := map[string]bool{}
			for _, d := range res.Audit.Denials {
				seen[d.Syscall] = true
			}
			for _, sc := range []string{"chmod", "fchmod", "fchmodat2", "creat", "openat", "mkdir"} {
				if !seen[sc] {
					t.Errorf("no %s denial recorded: %+v", sc, res.Audit.Denials)
				}
			}
		}},
	)
	add("privileged xattrs for the host (the tool's files belong to a host user)",
		escapeCase{attack: "plant_xattr", run: plantXattr, check: func(t *testing.T, c *canaries, res *sandbox.Result, out string) {
			for _, want := range []string{"setxattr_cap EPERM", "lsetxattr_cap EPERM", "fsetxattr_cap EPERM",
				"setxattr_trusted EPERM", "setxattr_selinux EPERM", "fsetxattr_ima EPERM", "user ok"} {
				if !strings.Contains(out, want) {
					t.Errorf("tool saw %q, want %q", out, want)
				}
			}
			seen := map[string]bool{}
			for _, d := range res.Audit.Denials {
				if strings.Contains(d.Detail, `name="security.`) || strings.Contains(d.Detail, `name="trusted.`) {
					seen[d.Syscall] = true
				}
			}
			for _, sc := range []string{"setxattr", "lsetxattr", "fsetxattr"} {
				if !seen[sc] {
					t.Errorf("no %s denial naming the attribute: %+v", sc, res.Audit.Denials)
				}
			}
		}},
	)
	add("symlink swaps on mount sources (CVE-2025-31133 class)",
		escapeCase{attack: "plant_symlink", run: plantThenGrant, check: func(t *testing.T, c *canaries, res *sandbox.Result, out string) {
			if res.Audit.Exit.Reason != audit.ReasonSetupFailed || !strings.Contains(res.Audit.Error, "inside the writable grant") {
				t.Errorf("second run: exit %+v error %q, want a refusal naming the writable grant", res.Audit.Exit, res.Audit.Error)
			}
			notMounted(t, c, res)
		}},
		escapeCase{attack: "plant_symlink_workdir", run: plantThenWorkdir, check: func(t *testing.T, c *canaries, res *sandbox.Result, out string) {
			if res.Audit.Exit.Reason != audit.ReasonSetupFailed || !strings.Contains(res.Audit.Error, "workdir") ||
				!strings.Contains(res.Audit.Error, "passes through the symbolic link") || !strings.Contains(res.Audit.Error, " -> "+c.dir) {
				t.Errorf("second run: exit %+v error %q, want the workdir refused naming the link to %s", res.Audit.Exit, res.Audit.Error, c.dir)
			}
			notMounted(t, c, res)
		}},
	)
	add("file capabilities",
		escapeCase{attack: "caps", run: runWithFileCaps, check: func(t *testing.T, c *canaries, res *sandbox.Result, out string) {
			if !strings.Contains(out, "RESULT EPERM") {
				t.Errorf("caps: %q", out)
			}
			if len(res.Audit.Enforcement.Capabilities) != 0 || !res.Audit.Enforcement.NoNewPrivs {
				t.Errorf("record: capabilities %v no_new_privs %v", res.Audit.Enforcement.Capabilities, res.Audit.Enforcement.NoNewPrivs)
			}
		}, na: map[string]string{
			testenv.KindRootlessHybrid: "an unprivileged user cannot give a file capabilities (security.capability needs CAP_SETFCAP), so there is nothing to escalate with",
		}},
	)
	add("host binaries and descriptors (CVE-2019-5736, CVE-2024-21626)",
		escapeCase{attack: "proc_self_exe", check: failsWith(mountedWith("/usr", "ro"), "ETXTBSY", "EROFS", "EACCES")},
		escapeCase{attack: "proc_pid1_exe", check: failsWith(seesNoHostPids, "EACCES", "ETXTBSY", "EROFS")},
		escapeCase{attack: "leaked_fds", check: failsWith(exitedNormally, "ENOENT")},
	)
	add("host knobs",
		escapeCase{attack: "core_pattern", check: failsWith(mountedWith("/proc/sys", "ro"), "EROFS", "EACCES")},
		escapeCase{attack: "sysrq_trigger", check: failsWith(mountedWith("/proc/sysrq-trigger"), "MASKED"),
			na: absentHere("/proc/sysrq-trigger"), naIf: func() bool { return !hostHasFile("/proc/sysrq-trigger") }},
		escapeCase{attack: "uevent_helper", check: failsWith(lacksMount("/sys"), "ENOENT")},
		escapeCase{attack: "release_agent", check: failsWith(lacksMount("/sys"), "ENOENT")},
		escapeCase{attack: "proc_kcore", check: failsWith(mountedWith("/proc/kcore"), "MASKED"),
			na: absentHere("/proc/kcore"), naIf: func() bool { return !hostHasFile("/proc/kcore") }},
		escapeCase{attack: "proc_keys", check: failsWith(maskedIfPresent("/proc/keys"), "MASKED", "EACCES", "EPERM", "ENOENT")},
	)
	add("secrets",
		escapeCase{attack: "env_secret", check: failsWith(func(t *testing.T, c *canaries, res *sandbox.Result) {
			for _, n := range res.Audit.Command.EnvNames {
				if n == "TOOLCELL_CANARY_SECRET" || n == "SSH_AUTH_SOCK" {
					t.Errorf("record env_names has %s", n)
				}
			}
		}, "ENOENT")},
		escapeCase{attack: "ssh_dir", check: failsWith(notMounted, "ENOENT")},
		escapeCase{attack: "aws_credentials", check: failsWith(notMounted, "ENOENT")},
		escapeCase{attack: "stdio_sockets", run: socketOnStdin, check: failsWith(exitedNormally, "ENOTSOCK")},
		escapeCase{attack: "ssh_auth_sock", check: failsWith(notMounted, "ENOENT")},
	)
	add("resources",
		escapeCase{attack: "fork_bomb", policy: func(s *capability.Set) { s.WithPids(16) },
			check: func(t *testing.T, c *canaries, res *sandbox.Result, out string) {
				if !strings.Contains(out, "RESULT EAGAIN") {
					t.Errorf("fork bomb saw %q, want EAGAIN", out)
				}
				if p := res.Audit.Resources.PidsPeak; p == 0 || p > 16 {
					t.Errorf("pids_peak %d, want 1..16", p)
				}
			}},
		escapeCase{attack: "memory_balloon", policy: func(s *capability.Set) { s.WithMemory(64 * capability.MiB) },
			check: func(t *testing.T, c *canaries, res *sandbox.Result, out string) {
				if res.Audit.Exit.Reason != audit.ReasonOOM || res.Audit.Resources.OOMKills == 0 {
					t.Errorf("exit %+v resources %+v, want oom", res.Audit.Exit, res.Audit.Resources)
				}
			}},
		escapeCase{attack: "tmpfs_fill", policy: func(s *capability.Set) { s.WithTmp(1 * capability.MiB) },
			check: failsWith(mountedWith("/tmp", "rw"), "ENOSPC")},
		escapeCase{attack: "fd_exhaustion", check: failsWith(func(t *testing.T, c *canaries, res *sandbox.Result) {
			if got := res.Audit.Enforcement.Rlimits["nofile"]; got != "1024/1024" {
				t.Errorf("record rlimits nofile %q, want 1024/1024", got)
			}
		}, "EMFILE")},
		escapeCase{attack: "cpu_spin", policy: func(s *capability.Set) { s.WithTimeout(time.Second).WithCPU(0.5) },
			check: func(t *testing.T, c *canaries, res *sandbox.Result, out string) {
				if res.Audit.Exit.Reason != audit.ReasonTimeout || res.Audit.Resources.CPUUserUS == 0 {
					t.Errorf("exit %+v resources %+v, want timeout with CPU used", res.Audit.Exit, res.Audit.Resources)
				}
			}},
		escapeCase{attack: "outlive", check: func(t *testing.T, c *canaries, res *sandbox.Result, out string) {
			if !strings.Contains(out, "RESULT OK") || res.Audit.Exit.Reason != audit.ReasonExited {
				t.Errorf("outlive: %q %+v", out, res.Audit.Exit)
			}
			// canaries.intact checks that no process named c.name is left.
		}},
	)
	add("code that was never granted exec (memfd, O_TMPFILE, mmap)",
		escapeCase{attack: "memfd_exec", check: memfdRefused("flags=0x0")},
		escapeCase{attack: "memfd_exec_flag", check: memfdRefused("flags=MFD_EXEC")},
		escapeCase{attack: "memfd_exec_procfd", check: memfdRefused("flags=0x0")},
		// What the seccomp fallback lets through is sealed non-executable;
		// a kernel before 6.3 does not know the flag.
		escapeCase{attack: "memfd_exec_sealed", check: failsWith(exitedNormally, "EACCES", "EINVAL")},
		// The kernel keeps a pid namespace from going below its parent
		// only: the read-only /proc/sys and the global-root check keep
		// the tool from lowering its own.
		escapeCase{attack: "memfd_noexec_lower", check: failsWith(mountedWith("/proc/sys", "ro"), "EROFS", "EACCES", "EPERM")},
		escapeCase{attack: "tmpfile_exec_tmp", check: failsWith(mountedWith("/tmp", "noexec"), "EACCES")},
		escapeCase{attack: "tmpfile_exec_shm", check: failsWith(mountedWith("/dev/shm", "noexec"), "EACCES")},
		escapeCase{attack: "mmap_exec_tmp", check: failsWith(mountedWith("/tmp", "noexec"), "EPERM")},
		escapeCase{attack: "mmap_exec_workdir", check: func(t *testing.T, c *canaries, res *sandbox.Result, out string) {
			failsWith(mountedWith(res.Audit.Command.Cwd, "noexec"), "EPERM")(t, c, res, out)
		}},
	)
	add("network egress (escape_net_test.go)", netEscapeCases()...)
	return cs
}

// memfdSysctlExpected: where the host process is root and the kernel has
// vm.memfd_noexec, the sandbox must set it (a silent fallback fails);
// elsewhere the seccomp filter must refuse executable memfds.
func memfdSysctlExpected() bool {
	return os.Geteuid() == 0 && hostHasFile("/proc/sys/vm/memfd_noexec")
}

// memfdRefused: no memfd could be exec'd, by the mechanism this host
// allows: vm.memfd_noexec = 2 in the sandbox's pid namespace (memfd_create
// refuses MFD_EXEC, exec of a sealed memfd EACCES), or the seccomp filter
// (memfd_create with flags, the decoded detail, denied and recorded).
func memfdRefused(flags string) func(*testing.T, *canaries, *sandbox.Result, string) {
	return func(t *testing.T, c *canaries, res *sandbox.Result, out string) {
		t.Helper()
		e := res.Audit.Enforcement
		if memfdSysctlExpected() {
			if !strings.Contains(out, "RESULT EACCES") {
				t.Errorf("attack saw %q, want EACCES", out)
			}
			if e.MemfdNoexec == nil || *e.MemfdNoexec != 2 {
				t.Errorf("record memfd_noexec %v, want 2", e.MemfdNoexec)
			}
			if e.Seccomp.MemfdCreate != "" {
				t.Errorf("record: the seccomp fallback was used where the sysctl can be set: %q", e.Seccomp.MemfdCreate)
			}
			return
		}
		deniedBy("memfd_create", `name="payload"`, flags)(t, c, res, out)
		if e.Seccomp.MemfdCreate == "" {
			t.Error("record: enforcement.seccomp.memfd_create is empty")
		}
	}
}

// plantThenGrant: one run plants a symlink to the canary directory in its
// writable workdir; a later policy granting a path through that link must be
// refused, not mount the canary.
func plantThenGrant(t *testing.T, c *canaries, set *capability.Set, bin string) (*sandbox.Result, string) {
	t.Helper()
	res := runCmd(t, set, sandbox.Command(bin, "plant_symlink"))
	if !strings.Contains(string(res.Stdout), "RESULT OK") {
		t.Fatalf("plant: %q %q", res.Stdout, res.Stderr)
	}
	// The grant lists follow_symlinks: a link inside a writable grant of
	// the same policy is refused even then (plant_symlink_workdir is the
	// grant without it).
	p := filepath.Join(set.Workdir, "planted", "secret.txt")
	grant := set.Clone().WithReadFiles(p).WithFollowSymlinks(p)
	_, err := sandbox.Run(context.Background(), grant, sandbox.Command(bin, "read_canary"))
	var re *sandbox.RunError
	if !errors.As(err, &re) || !errors.Is(err, sandbox.ErrPolicy) {
		t.Fatalf("grant through the planted link: err %v, want ErrPolicy", err)
	}
	return &sandbox.Result{Audit: re.Record}, ""
}

// plantSetID: the tool tries every route to a set-user-ID or set-group-ID
// file in its writable workdir (chmod family, creating calls, O_TMPFILE,
// openat2); afterwards no file there has either bit on the host.
// pyTryOut starts a python3 attack script: try_(name, fn) notes "name ok"
// or "name ERRNO" in out, which the script prints at its end.
const pyTryOut = `
import errno, os
out = []
def try_(name, fn):
    try:
        fn()
        out.append(name + " ok")
    except OSError as e:
        out.append(name + " " + errno.errorcode[e.errno])
`

func plantSetID(t *testing.T, c *canaries, set *capability.Set, bin string) (*sandbox.Result, string) {
	t.Helper()
	script := pyTryOut + `
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
def raw(nr, *args):
    r = libc.syscall(nr, *args)
    if r < 0:
        raise OSError(ctypes.get_errno(), "")
    return r
shutil_copy = open("/bin/sh", "rb").read()
with open("sh", "wb") as f:
    f.write(shutil_copy)
fd = os.open("sh", os.O_RDONLY)
try_("chmod", lambda: os.chmod("sh", 0o4755))
try_("chmod_g", lambda: os.chmod("sh", 0o2755))
try_("fchmod", lambda: os.fchmod(fd, 0o6755))
try_("fchmodat2", lambda: raw(452, -100, b"sh", 0o4755, 0))
try_("creat", lambda: os.close(raw(85, b"c", 0o4755)))
try_("open_creat", lambda: os.close(os.open("o", os.O_CREAT | os.O_WRONLY, 0o4755)))
try_("openat_tmpfile", lambda: os.close(os.open(".", os.O_TMPFILE | os.O_WRONLY, 0o2755)))
try_("mkdir", lambda: os.mkdir("d", 0o2755))
how = (ctypes.c_uint64 * 3)(os.O_CREAT | os.O_WRONLY, 0o4755, 0)
try_("openat2", lambda: os.close(raw(437, -100, b"o2", how, 24)))
try_("plain", lambda: os.chmod("sh", 0o755))
print(" ".join(out))
`
	res := runCmd(t, set, sandbox.Command("python3", "-c", script))
	err := filepath.WalkDir(set.Workdir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
			t.Errorf("set-ID file on the host: %s %v", p, fi.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return res, string(res.Stdout)
}

// plantXattr: the tool tries to leave a file capability (a v2
// security.capability that would make its copy of sh grant cap_setuid),
// an LSM label and a trusted.* attribute on files of its workdir, which
// as root is idmapped to a host user (root here). Then the host side:
// no file under the workdir carries a security.* or trusted.* attribute,
// while the tool's user.* attribute did land.
func plantXattr(t *testing.T, c *canaries, set *capability.Set, bin string) (*sandbox.Result, string) {
	t.Helper()
	script := pyTryOut + `
with open("sh", "wb") as f:
    f.write(open("/bin/sh", "rb").read())
os.symlink("sh", "link")
fd = os.open("sh", os.O_RDONLY)
cap = bytes([1, 0, 0, 2, 0x80, 0, 0, 0]) + bytes(12)  # v2, effective; permitted cap_setuid
try_("setxattr_cap", lambda: os.setxattr("sh", "security.capability", cap))
try_("lsetxattr_cap", lambda: os.setxattr("link", "security.capability", cap, follow_symlinks=False))
try_("fsetxattr_cap", lambda: os.setxattr(fd, "security.capability", cap))
try_("setxattr_trusted", lambda: os.setxattr("sh", "trusted.overlay.opaque", b"y"))
try_("setxattr_selinux", lambda: os.setxattr("sh", "security.selinux", b"system_u:object_r:bin_t:s0"))
try_("fsetxattr_ima", lambda: os.setxattr(fd, "security.ima", b"x"))
try_("user", lambda: os.setxattr("sh", "user.note", b"kept"))
print(" ".join(out))
`
	res := runCmd(t, set, sandbox.Command("python3", "-c", script))
	err := filepath.WalkDir(set.Workdir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		buf := make([]byte, 4096)
		n, err := unix.Llistxattr(p, buf)
		if err != nil {
			return fmt.Errorf("listxattr %s: %w", p, err)
		}
		for _, name := range strings.Split(string(buf[:n]), "\x00") {
			if strings.HasPrefix(name, "security.") || strings.HasPrefix(name, "trusted.") {
				t.Errorf("privileged xattr on the host: %s %s", p, name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	v := make([]byte, 16)
	if n, err := unix.Getxattr(filepath.Join(set.Workdir, "sh"), "user.note", v); err != nil || string(v[:n]) != "kept" {
		t.Errorf("user.note on the host: %q %v (the tool's own attributes must land)", v[:max(n, 0)], err)
	}
	return res, string(res.Stdout)
}

// plantThenWorkdir: one run plants a symlink to the canary directory in
// its writable workdir W; the next run, which agents reuse the workspace
// for, gets W/planted as its workdir (W itself not granted). It must be
// refused, not given the canary directory.
func plantThenWorkdir(t *testing.T, c *canaries, set *capability.Set, bin string) (*sandbox.Result, string) {
	t.Helper()
	res := runCmd(t, set, sandbox.Command(bin, "plant_symlink"))
	if !strings.Contains(string(res.Stdout), "RESULT OK") {
		t.Fatalf("plant: %q %q", res.Stdout, res.Stderr)
	}
	next := set.Clone().WithWorkdir(filepath.Join(set.Workdir, "planted"))
	res, err := sandbox.Run(context.Background(), next, sandbox.Command(bin, "read_canary"))
	if err == nil {
		return res, string(res.Stdout)
	}
	var re *sandbox.RunError
	if !errors.As(err, &re) || !errors.Is(err, sandbox.ErrPolicy) {
		t.Fatalf("workdir through the planted link: err %v, want ErrPolicy", err)
	}
	return &sandbox.Result{Audit: re.Record}, ""
}

// socketOnStdin hands the tool a unix socket as its standard input, as a
// careless caller might: the sandbox must copy it through a pipe, so the
// tool never holds a socket it could receive host descriptors on.
func socketOnStdin(t *testing.T, c *canaries, set *capability.Set, bin string) (*sandbox.Result, string) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	in, peer := os.NewFile(uintptr(fds[0]), "stdin-socket"), os.NewFile(uintptr(fds[1]), "peer")
	defer in.Close()
	peer.Close() // EOF for the copier
	cmd := sandbox.Command(bin, "stdio_sockets")
	cmd.Stdin = in
	res := runCmd(t, set, cmd)
	return res, string(res.Stdout)
}

// runWithFileCaps runs a copy of the attacker that carries file
// capabilities (cap_sys_admin, cap_net_raw, cap_setuid: effective and
// permitted), as a setcap'ed host binary would.
func runWithFileCaps(t *testing.T, c *canaries, set *capability.Set, bin string) (*sandbox.Result, string) {
	t.Helper()
	testenv.RequireRoot(t)
	dir := testenv.Tempdir(t)
	cp := filepath.Join(dir, "attack-caps")
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cp, b, 0o755); err != nil {
		t.Fatal(err)
	}
	// struct vfs_cap_data, revision 2: magic|effective, then permitted
	// and inheritable, low and high words.
	perm := uint32(1<<unix.CAP_SYS_ADMIN | 1<<unix.CAP_NET_RAW | 1<<unix.CAP_SETUID)
	data := make([]byte, 20)
	binary.LittleEndian.PutUint32(data[0:], 0x02000000|1)
	binary.LittleEndian.PutUint32(data[4:], perm)
	if err := unix.Setxattr(cp, "security.capability", data, 0); err != nil {
		t.Fatalf("set file capabilities: %v", err)
	}
	res := runCmd(t, set.Clone().WithExec(cp), sandbox.Command(cp, "caps"))
	return res, string(res.Stdout)
}

// attackBin is the attacker built for the running suite.
var attackBin string

func TestEscapeSuite(t *testing.T) {
	testenv.RequireUserNS(t)
	bin := testenv.BuildC(t, "../testdata/escape/attack.c")
	attackBin = bin
	c := newCanaries(t)
	cases := escapeCases()
	if len(cases) < 150 {
		t.Fatalf("only %d cases", len(cases))
	}
	t.Setenv("TOOLCELL_CANARY_SECRET", "canary-env-secret")
	t.Setenv("SSH_AUTH_SOCK", c.socket)
	seen := map[string]bool{}
	for _, ec := range cases {
		if seen[ec.attack] {
			t.Fatalf("case %s listed twice", ec.attack)
		}
		seen[ec.attack] = true
		t.Run(ec.attack, func(t *testing.T) {
			if ec.na != nil && (ec.naIf == nil || ec.naIf()) {
				testenv.NotApplicable(t, ec.na)
			}
			wd := workdir(t)
			set := base().WithWorkdir(wd).WithExec(bin).
				WithEnv("CANARY_FILE", c.file).WithEnv("CANARY_DIR", c.dir).WithEnv("CANARY_HOME", c.home).
				WithEnv("CANARY_SOCKET", c.socket).WithEnv("CANARY_ABSTRACT", c.abstract).
				WithEnv("CANARY_NAME", c.name).WithEnv("CANARY_PORT", fmt.Sprint(c.port)).
				WithEnv("CANARY_PID", fmt.Sprint(c.victim.Process.Pid)).WithTimeout(20 * time.Second)
			if ec.policy != nil {
				ec.policy(set)
			}
			before := c.snapshot(t)
			var res *sandbox.Result
			var out string
			if ec.run != nil {
				res, out = ec.run(t, c, set, bin)
			} else {
				res = runCmd(t, set, sandbox.Command(bin, ec.attack))
				out = string(res.Stdout)
			}
			if strings.Contains(out, "ESCAPED") {
				t.Errorf("escaped: %s", out)
			}
			if strings.Contains(string(res.Stderr), "unknown attack") {
				t.Fatalf("attack.c lacks %s", ec.attack)
			}
			ec.check(t, c, res, out)
			c.intact(t, before)
			if t.Failed() {
				t.Logf("class %s; stdout %q stderr %q exit %+v denials %+v", ec.class, out, res.Stderr, res.Audit.Exit, res.Audit.Denials)
			}
		})
	}
}

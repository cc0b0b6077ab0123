package sandbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/internal/testenv"
	"github.com/toolcell/toolcell/sandbox"
)

// run runs a shell snippet under set and fails the test on a setup error.
func run(t *testing.T, set *capability.Set, script string) *sandbox.Result {
	t.Helper()
	return runCmd(t, set, sandbox.Command("/bin/sh", "-c", script))
}

func runCmd(t *testing.T, set *capability.Set, cmd *sandbox.Cmd) *sandbox.Result {
	t.Helper()
	return runCmdWith(t, sandbox.DefaultRunner, set, cmd)
}

// runCmdWith runs cmd under set with r, failing the test on a setup error
// and logging the record when the test fails.
func runCmdWith(t *testing.T, r *sandbox.Runner, set *capability.Set, cmd *sandbox.Cmd) *sandbox.Result {
	t.Helper()
	testenv.RequireUserNS(t)
	res, err := r.Run(context.Background(), set, cmd)
	if err != nil {
		var re *sandbox.RunError
		if errors.As(err, &re) {
			b, _ := json.MarshalIndent(re.Record, "", "  ")
			t.Logf("record: %s", b)
		}
		t.Fatalf("setup: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := json.MarshalIndent(res.Audit, "", "  ")
			t.Logf("stdout: %q\nstderr: %q\nrecord: %s", res.Stdout, res.Stderr, b)
		}
	})
	return res
}

// workdir returns a host directory of the caller's (mode 0755) that the
// sandbox user can write to: as root its mount is idmapped to the caller,
// unprivileged the sandbox user is the caller.
func workdir(t *testing.T) string { return testenv.Tempdir(t) }

func base() *capability.Set { return capability.New().WithBase() }

func TestEchoAndRecord(t *testing.T) {
	res := run(t, base(), "echo hello; echo oops >&2; exit 3")
	if string(res.Stdout) != "hello\n" || string(res.Stderr) != "oops\n" {
		t.Fatalf("stdout %q stderr %q", res.Stdout, res.Stderr)
	}
	if res.Exit.Code != 3 || res.Exit.Reason != audit.ReasonExited {
		t.Fatalf("exit %d reason %s", res.Exit.Code, res.Exit.Reason)
	}
	rec := res.Audit
	if rec.Schema != audit.Schema || rec.ID == "" || !strings.HasPrefix(rec.Policy.Hash, "sha256:") {
		t.Fatalf("record header: %+v %+v", rec.Schema, rec.Policy)
	}
	want := []string{"user", "mnt", "net", "pid", "ipc", "uts", "cgroup"}
	if strings.Join(rec.Enforcement.Namespaces, ",") != strings.Join(want, ",") {
		t.Fatalf("namespaces %v, want %v", rec.Enforcement.Namespaces, want)
	}
	if !rec.Enforcement.NoNewPrivs || len(rec.Enforcement.Capabilities) != 0 {
		t.Fatalf("nnp %v caps %v", rec.Enforcement.NoNewPrivs, rec.Enforcement.Capabilities)
	}
	for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		if v := rec.Enforcement.CapSets[k]; v != "0000000000000000" {
			t.Errorf("%s = %q, want all zero", k, v)
		}
	}
	if rec.Output.StdoutBytes != 6 || rec.Output.StderrBytes != 5 {
		t.Fatalf("output %+v", rec.Output)
	}
	if rec.Exit.Code != 3 || rec.DurationMS <= 0 || rec.SetupMS <= 0 {
		t.Fatalf("exit %+v duration %v setup %v", rec.Exit, rec.DurationMS, rec.SetupMS)
	}
	wantCG := map[string]string{testenv.KindVMv2: "v2", testenv.KindRootHybrid: "v1", testenv.KindRootlessHybrid: "v1"}[testenv.HostKind()]
	if rec.Enforcement.Cgroup.Version == "" || (wantCG != "" && rec.Enforcement.Cgroup.Version != wantCG) {
		t.Fatalf("cgroup %+v on host kind %q, want version %q", rec.Enforcement.Cgroup, testenv.HostKind(), wantCG)
	}
	if rec.Enforcement.Cgroup.Limits["memory_bytes"] != strconv.FormatInt(int64(capability.DefaultMemory), 10) || rec.Enforcement.Cgroup.Path == "" {
		t.Fatalf("cgroup %+v", rec.Enforcement.Cgroup)
	}
	if len(rec.Enforcement.Seccomp.AllowedSyscalls) == 0 || rec.Enforcement.Seccomp.FilterHash == "" {
		t.Fatalf("seccomp %+v", rec.Enforcement.Seccomp)
	}
	if _, err := json.Marshal(rec); err != nil {
		t.Fatal(err)
	}
}

func TestIdentityAndPrivileges(t *testing.T) {
	res := run(t, base(), `id -u; id -g; grep -E '^(CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status; cat /proc/self/uid_map`)
	out := string(res.Stdout)
	for _, want := range []string{"1000\n1000\n", "CapEff:\t0000000000000000", "CapBnd:\t0000000000000000",
		"CapAmb:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	// Unprivileged, the caller's own uid; as root, the run's own uid of the
	// host id range: never root, never nobody (65534), and the record says
	// which.
	hostUID := os.Geteuid()
	if hostUID == 0 {
		f := strings.Fields(res.Audit.Enforcement.UIDMap)
		if len(f) != 3 {
			t.Fatalf("record uid_map %q", res.Audit.Enforcement.UIDMap)
		}
		hostUID, _ = strconv.Atoi(f[1])
		if hostUID <= 0 || hostUID == 65534 {
			t.Fatalf("record uid_map %q: want a uid of the run's own", res.Audit.Enforcement.UIDMap)
		}
	}
	if f := strings.Fields(strings.Split(out, "\n")[len(strings.Split(out, "\n"))-2]); len(f) != 3 || f[0] != "1000" || f[1] != strconv.Itoa(hostUID) || f[2] != "1" {
		t.Errorf("uid_map line %q, want 1000 %d 1", f, hostUID)
	}
}

func TestNoSetuidEscalation(t *testing.T) {
	// su and passwd are setuid root on the host; with no_new_privs and nosuid
	// they must not gain anything.
	res := run(t, base(), `for f in /usr/bin/su /usr/bin/passwd /usr/bin/mount; do [ -u "$f" ] && echo "$f"; done | head -1`)
	suid := strings.TrimSpace(string(res.Stdout))
	if suid == "" {
		testenv.Require(t, false, "a setuid-root binary in /usr/bin")
	}
	res = run(t, base(), suid+` --help >/dev/null 2>&1; grep CapEff /proc/self/status; id -u`)
	if !strings.Contains(string(res.Stdout), "0000000000000000") || !strings.HasSuffix(string(res.Stdout), "1000\n") {
		t.Fatalf("setuid binary changed privileges: %q", res.Stdout)
	}
}

func TestFilesystemView(t *testing.T) {
	wd := workdir(t)
	secretDir := testenv.Tempdir(t)
	canary := filepath.Join(secretDir, "canary")
	if err := os.WriteFile(canary, []byte("host secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	ro := testenv.Tempdir(t)
	os.WriteFile(filepath.Join(ro, "data"), []byte("readable"), 0o644)

	set := base().WithWorkdir(wd).WithReadDirs(ro)
	script := fmt.Sprintf(`
pwd
echo written > out.txt && echo write-workdir-ok
cat %[1]s/data && echo
echo x > %[1]s/data 2>/dev/null || echo write-ro-denied
cat %[2]s 2>/dev/null || echo canary-absent
ls %[3]s 2>/dev/null || echo canary-dir-absent
echo x > /usr/evil 2>/dev/null || echo usr-ro
echo x > /evil 2>/dev/null || echo root-ro
echo x > /etc/evil 2>/dev/null || echo etc-ro
test -e /etc/shadow || echo no-shadow
test -e /root || echo no-root-home
test -e /home || echo no-home
test -e /sys || echo no-sys
cat /proc/kcore 2>/dev/null | head -c1 | wc -c
echo 1 > /proc/sys/kernel/hostname 2>/dev/null || echo proc-sys-ro
`, ro, canary, secretDir)
	res := run(t, set, script)
	out := string(res.Stdout)
	for _, want := range []string{wd + "\n", "write-workdir-ok", "readable", "write-ro-denied", "canary-absent",
		"canary-dir-absent", "usr-ro", "root-ro", "etc-ro", "no-shadow", "no-root-home", "no-home", "no-sys", "\n0\n", "proc-sys-ro"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in output:\n%s", want, out)
		}
	}
	b, err := os.ReadFile(filepath.Join(wd, "out.txt"))
	if err != nil || string(b) != "written\n" {
		t.Fatalf("workdir write did not reach the host: %q %v", b, err)
	}
	if b, _ := os.ReadFile(filepath.Join(ro, "data")); string(b) != "readable" {
		t.Fatalf("read-only grant was modified: %q", b)
	}
	// The record lists the whole view.
	var sawWD, sawRO bool
	for _, m := range res.Audit.Enforcement.Mounts {
		if m.Dst == wd && m.Mode == "rw,nosuid,nodev,noexec" {
			sawWD = true
		}
		if m.Dst == ro && m.Mode == "ro,nosuid,nodev,noexec" {
			sawRO = true
		}
		if m.Dst == secretDir {
			t.Errorf("ungranted dir in mounts: %+v", m)
		}
	}
	if !sawWD || !sawRO {
		t.Fatalf("mounts lack the grants: %+v", res.Audit.Enforcement.Mounts)
	}
}

func TestNoexecAndExecGrant(t *testing.T) {
	wd := workdir(t)
	script := filepath.Join(wd, "tool.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho from-exec-grant\n"), 0o755)
	other := filepath.Join(wd, "other.sh")
	os.WriteFile(other, []byte("#!/bin/sh\necho should-not-run\n"), 0o755)
	set := base().WithWorkdir(wd).WithExec(script)
	res := run(t, set, `./tool.sh; ./other.sh 2>/dev/null || echo other-noexec; cp /bin/true /tmp/t && /tmp/t 2>/dev/null || echo tmp-noexec`)
	out := string(res.Stdout)
	for _, want := range []string{"from-exec-grant", "other-noexec", "tmp-noexec"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in %q", want, out)
		}
	}
	if strings.Contains(out, "should-not-run") {
		t.Fatalf("noexec workdir executed a file")
	}
}

func TestSymlinkedGrantAppearsAtSamePath(t *testing.T) {
	d := testenv.Tempdir(t)
	real := filepath.Join(d, "real")
	os.Mkdir(real, 0o755)
	os.WriteFile(filepath.Join(real, "f"), []byte("via-link"), 0o644)
	link := filepath.Join(d, "link")
	if err := os.Symlink("real", link); err != nil {
		t.Fatal(err)
	}
	// Passing through a link needs the policy's word (follow_symlinks).
	res := run(t, base().WithReadDirs(link).WithFollowSymlinks(link), "cat "+link+"/f")
	if string(res.Stdout) != "via-link" {
		t.Fatalf("got %q", res.Stdout)
	}
	_, err := sandbox.Run(context.Background(), base().WithReadDirs(link), sandbox.Command("/bin/true"))
	var fe *capability.FieldError
	if !errors.Is(err, sandbox.ErrPolicy) || !errors.As(err, &fe) || fe.Field != "read_dirs[0]" || !strings.Contains(fe.Reason, link+" -> real") {
		t.Fatalf("unlisted link: err %v, want read_dirs[0] refused naming %s -> real", err, link)
	}
}

// The root's merged-/usr links need no follow_symlinks: /bin/true is
// granted as written (where /bin is a link into /usr, the view mounts the
// resolved path), and a link after /bin is still refused.
func TestMergedUsrLinkGrant(t *testing.T) {
	res := runCmd(t, base().WithExec("/bin/true").WithReadFiles("/bin/cat"), sandbox.Command("/bin/true"))
	want := "/bin/true"
	if text, err := os.Readlink("/bin"); err == nil && capability.IsMergedUsrLink("/bin", text) {
		want = filepath.Join("/", text, "true")
	}
	found := false
	for _, m := range res.Audit.Enforcement.Mounts {
		found = found || (m.Src == want && m.Dst == want)
	}
	if !found {
		t.Fatalf("no mount of %s in %+v", want, res.Audit.Enforcement.Mounts)
	}
	if text, err := os.Readlink("/bin/sh"); err == nil {
		_, err := sandbox.Run(context.Background(), base().WithExec("/bin/sh"), sandbox.Command("/bin/true"))
		var fe *capability.FieldError
		if !errors.As(err, &fe) || fe.Field != "exec[0]" || !strings.Contains(fe.Reason, " -> "+text) {
			t.Fatalf("exec /bin/sh (a link to %s): err %v, want exec[0] refused naming the link", text, err)
		}
	}
}

// Issue 13: a tool with a writable W plants links there; a later run
// granted a path through them (W itself not granted) is refused, naming
// the grant, the link and its target, and never sees the canary. Only
// follow_symlinks lets a grant through, and then the view shows the link.
func TestPlantedSymlinkRefused(t *testing.T) {
	root := testenv.Tempdir(t)
	canary := filepath.Join(root, "canary")
	other := filepath.Join(root, "other")
	for _, d := range []string{filepath.Join(canary, "b"), other} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(canary, "secret"), []byte("canary secret\n"), 0o644)
	os.WriteFile(filepath.Join(canary, "tool"), []byte("#!/bin/sh\necho canary tool\n"), 0o755)
	os.WriteFile(filepath.Join(canary, "b", "secret"), []byte("canary nested\n"), 0o644)
	w := workdir(t)
	// Run 1: the tool plants the links in its writable workdir.
	res := run(t, base().WithWorkdir(w), "ln -s "+canary+" proj && ln -s "+canary+" a && echo planted")
	if string(res.Stdout) != "planted\n" {
		t.Fatalf("plant failed: %q %q", res.Stdout, res.Stderr)
	}
	proj, a := filepath.Join(w, "proj"), filepath.Join(w, "a")
	read := "cat " + filepath.Join(canary, "secret") + " " + filepath.Join(canary, "b", "secret") + " " + filepath.Join(proj, "secret") + " " + filepath.Join(a, "b", "secret") + " 2>&1"
	for _, c := range []struct {
		name, field, path, link string
		set                     *capability.Set
	}{
		{"workdir", "workdir", proj, proj, base().WithWorkdir(proj)},
		{"read_dirs", "read_dirs[2]", proj, proj, base().WithReadDirs(other, filepath.Join(canary, "b"), proj)},
		{"read_files", "read_files[0]", filepath.Join(proj, "secret"), proj, base().WithReadFiles(filepath.Join(proj, "secret"))},
		{"exec", "exec[0]", filepath.Join(proj, "tool"), proj, base().WithExec(filepath.Join(proj, "tool"))},
		{"write_dirs", "write_dirs[1]", proj, proj, base().WithWriteDirs(other, proj)},
		{"write_files", "write_files[0]", filepath.Join(proj, "secret"), proj, base().WithWriteFiles(filepath.Join(proj, "secret"))},
		{"nested", "read_dirs[0]", filepath.Join(a, "b"), a, base().WithReadDirs(filepath.Join(a, "b"))},
		{"follow listed for another grant", "read_dirs[0]", proj, proj, base().WithReadDirs(proj, other).WithFollowSymlinks(other)},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := sandbox.Run(context.Background(), c.set, sandbox.Command("/bin/sh", "-c", read))
			if err == nil {
				t.Fatalf("ran through the planted link: stdout %q", res.Stdout)
			}
			var fe *capability.FieldError
			if !errors.Is(err, sandbox.ErrPolicy) || !errors.As(err, &fe) || fe.Field != c.field || fe.Value != c.path ||
				!strings.Contains(fe.Reason, "symbolic link "+c.link+" -> "+canary) {
				t.Fatalf("err %v, want %s %q refused naming the link %s -> %s", err, c.field, c.path, c.link, canary)
			}
			var re *sandbox.RunError
			if !errors.As(err, &re) || re.Record.Exit.Reason != audit.ReasonSetupFailed || !strings.Contains(re.Record.Error, c.field) {
				t.Fatalf("record: %+v", re)
			}
			for _, m := range re.Record.Enforcement.Mounts {
				if strings.HasPrefix(m.Src, canary) {
					t.Fatalf("record mounts the canary: %+v", m)
				}
			}
		})
	}
	// The opt-in: the grant passes the link, the view recreates it, and
	// the tool reads through it (here the link's target is the data).
	t.Run("follow_symlinks", func(t *testing.T) {
		res := run(t, base().WithReadDirs(filepath.Join(a, "b")).WithFollowSymlinks(filepath.Join(a, "b")),
			"readlink "+a+"; cat "+filepath.Join(a, "b", "secret"))
		if string(res.Stdout) != canary+"\ncanary nested\n" {
			t.Fatalf("stdout %q stderr %q", res.Stdout, res.Stderr)
		}
	})
}

func TestNoHostProcesses(t *testing.T) {
	res := run(t, base(), `ls -d /proc/[0-9]* | wc -l; cat /proc/1/cmdline | tr '\0' ' '`)
	f := strings.Fields(string(res.Stdout))
	n, _ := strconv.Atoi(f[0])
	// pid 1, sh, ls, wc (and maybe the cat pipeline): never the host's.
	if n < 2 || n > 6 {
		t.Fatalf("sandbox sees %d processes: %q", n, res.Stdout)
	}
	if f[1] != "toolcell-stage2" {
		t.Fatalf("pid 1 is %q", f[1])
	}
}

func TestHostEnvironmentNotLeaked(t *testing.T) {
	t.Setenv("TOOLCELL_CANARY_SECRET", "s3cr3t-canary")
	set := base().WithEnv("GIVEN", "yes")
	res := run(t, set, `env; cat /proc/1/environ | tr '\0' '\n'`)
	if bytes.Contains(res.Stdout, []byte("s3cr3t-canary")) {
		t.Fatalf("host environment leaked: %s", res.Stdout)
	}
	if !bytes.Contains(res.Stdout, []byte("GIVEN=yes")) || !bytes.Contains(res.Stdout, []byte("PATH=")) {
		t.Fatalf("granted env missing: %s", res.Stdout)
	}
	if got := res.Audit.Command.EnvNames; strings.Join(got, ",") != "GIVEN,PATH" {
		t.Fatalf("env_names %v", got)
	}
	if b, _ := json.Marshal(res.Audit); bytes.Contains(b, []byte("yes")) && bytes.Contains(b, []byte("GIVEN=yes")) {
		t.Fatalf("env value in record")
	}
}

func TestInheritedDescriptorsClosed(t *testing.T) {
	// A descriptor without O_CLOEXEC in the host process must not reach the tool.
	fd, err := syscall.Open("/etc/hostname", syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	res := run(t, base(), `ls /proc/self/fd`)
	fds := strings.Fields(string(res.Stdout))
	// 0, 1, 2 and ls's own directory descriptor.
	if len(fds) > 4 {
		t.Fatalf("tool sees descriptors %v", fds)
	}
}

func TestNoNetwork(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
			accepted <- struct{}{}
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	res := run(t, base(), fmt.Sprintf(`python3 - <<'EOF'
import socket
for fam, addr in ((socket.AF_INET, ("127.0.0.1", %d)), (socket.AF_INET, ("1.1.1.1", 53))):
    try:
        s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(1); s.connect(addr); print("CONNECTED", addr)
    except OSError as e:
        print("refused", addr, e.errno)
EOF
cat /sys/class/net/*/address 2>/dev/null; ls /sys 2>/dev/null | wc -l`, port))
	if strings.Contains(string(res.Stdout), "CONNECTED") {
		t.Fatalf("network reachable: %s", res.Stdout)
	}
	select {
	case <-accepted:
		t.Fatal("host canary listener got a connection")
	case <-time.After(50 * time.Millisecond):
	}
}

func TestOutputLimit(t *testing.T) {
	set := base().WithMaxOutput(64 << 10)
	res := run(t, set, `yes xxxxxxxxxxxxxxx`)
	if res.Exit.Reason != audit.ReasonOutputLimit || !res.Audit.Output.StdoutTruncated {
		t.Fatalf("reason %s output %+v", res.Exit.Reason, res.Audit.Output)
	}
	if len(res.Stdout) != 64<<10 {
		t.Fatalf("captured %d bytes, want %d", len(res.Stdout), 64<<10)
	}
}

func TestTimeoutKillsWholeTree(t *testing.T) {
	marker := fmt.Sprintf("toolcell-orphan-%d", time.Now().UnixNano())
	set := base().WithTimeout(1500 * time.Millisecond)
	start := time.Now()
	res := run(t, set, fmt.Sprintf(`setsid sh -c 'exec -a %[1]s sleep 300' & (sh -c 'exec -a %[1]s sleep 300' &) ; sleep 300`, marker))
	if res.Exit.Reason != audit.ReasonTimeout {
		t.Fatalf("reason %s", res.Exit.Reason)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("timeout took %v", d)
	}
	// Nothing with the marker survives on the host.
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.Contains(b, []byte(marker)) {
			t.Fatalf("process %s outlived the run: %q", e.Name(), b)
		}
	}
}

func TestContextCancel(t *testing.T) {
	testenv.RequireUserNS(t)
	ctx, cancel := context.WithCancel(context.Background())
	p, err := sandbox.Start(ctx, base(), sandbox.Command("/bin/sleep", "300"))
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(200*time.Millisecond, cancel)
	res, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if res.Exit.Reason != audit.ReasonCanceled {
		t.Fatalf("reason %s", res.Exit.Reason)
	}
}

func TestMemoryLimitOOM(t *testing.T) {
	set := base().WithMemory(48 << 20)
	// Also through a shell: the OOM killer takes the child, the shell exits 137.
	if res := run(t, set, `python3 -c 'b = bytearray(400 << 20)'`); res.Exit.Reason != audit.ReasonOOM {
		t.Fatalf("via shell: reason %s exit %+v", res.Exit.Reason, res.Audit.Exit)
	}
	res := runCmd(t, set, sandbox.Command("python3", "-c", "b = bytearray(400 << 20); print(len(b))"))
	if res.Exit.Signal != "SIGKILL" {
		t.Fatalf("tool not killed: %+v", res.Audit.Exit)
	}
	if res.Exit.Reason != audit.ReasonOOM || res.Audit.Resources.OOMKills < 1 {
		t.Fatalf("reason %s resources %+v", res.Exit.Reason, res.Audit.Resources)
	}
	if res.Audit.Enforcement.Cgroup.Limits["memory_bytes"] != strconv.Itoa(48<<20) {
		t.Fatalf("cgroup %+v", res.Audit.Enforcement.Cgroup)
	}
}

func TestPidsLimit(t *testing.T) {
	set := base().WithPids(16)
	res := run(t, set, `ok=0; for i in $(seq 40); do sleep 5 2>/dev/null & done 2>/dev/null; jobs -p | wc -l`)
	n, _ := strconv.Atoi(strings.TrimSpace(string(res.Stdout)))
	if n >= 40 {
		t.Fatalf("started %d sleeps under pids=16", n)
	}
	if res.Audit.Resources.PidsPeak > 16 {
		t.Fatalf("pids peak %d above the limit", res.Audit.Resources.PidsPeak)
	}
}

func TestResourcesRecorded(t *testing.T) {
	res := run(t, base(), `python3 -c 'b = bytearray(40 << 20); sum(range(2000000))'`)
	r := res.Audit.Resources
	if r.MemoryPeakBytes < 30<<20 || r.CPUUserUS+r.CPUSystemUS == 0 {
		t.Fatalf("resources %+v", r)
	}
}

func TestRealPrograms(t *testing.T) {
	wd := workdir(t)
	bin := filepath.Join(wd, "hello")
	os.WriteFile(bin, nil, 0o755)
	os.Chmod(bin, 0o777) // written by the mapped sandbox user
	set := base().WithWorkdir(wd).WithExec(bin).WithWriteFiles(bin).WithMemory(1 << 30).WithTimeout(120 * time.Second)
	cases := []struct{ name, script, want string }{
		{"coreutils", `printf 'b\na\n' | sort | tr a-z A-Z | head -1; ls / | wc -l >/dev/null; awk 'BEGIN{print 6*7}'`, "A\n42\n"},
		{"python3", `python3 -c 'import json,hashlib; print(json.dumps({"h": hashlib.sha256(b"x").hexdigest()[:8]}))'`, `{"h": "2d711642"}` + "\n"},
		{"git", `git init -q repo && cd repo && echo hi > f && git add f && git -c user.name=t -c user.email=t@e commit -qm init && git log --format=%s`, "init\n"},
		{"gcc", `printf '#include <stdio.h>\nint main(void){puts("hello from gcc");return 0;}\n' > h.c && gcc -o /tmp/h h.c && cat /tmp/h > hello && ./hello`, "hello from gcc\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := run(t, set, c.script)
			if res.Exit.Code != 0 || string(res.Stdout) != c.want {
				t.Fatalf("exit %d stdout %q stderr %q", res.Exit.Code, res.Stdout, res.Stderr)
			}
			if len(res.Audit.Denials) != 0 {
				t.Fatalf("denials: %+v", res.Audit.Denials)
			}
		})
	}
}

func TestBadPolicyIsSetupError(t *testing.T) {
	_, err := sandbox.Run(context.Background(), capability.New().WithReadDirs("relative/path"), sandbox.Command("/bin/true"))
	if !errors.Is(err, sandbox.ErrPolicy) {
		t.Fatalf("err %v, want ErrPolicy", err)
	}
	var re *sandbox.RunError
	if !errors.As(err, &re) || re.Record.Exit.Reason != audit.ReasonSetupFailed || re.Record.Error == "" {
		t.Fatalf("no setup_failed record: %v", err)
	}
}

// A tool plants a symlink inside its writable workdir, where a later run's
// grant resolves; that run must refuse, not mount the link's target.
func TestSymlinkPlantedInWritableGrantRefused(t *testing.T) {
	wd := workdir(t)
	sub := filepath.Join(wd, "sub")
	os.MkdirAll(filepath.Join(sub, "data"), 0o777)
	os.Chmod(sub, 0o777)
	// follow_symlinks lists the grant: this refusal holds even when the
	// policy trusts the grant's links (without it the link is refused
	// before, see TestPlantedSymlinkRefused).
	set := base().WithWorkdir(wd).WithReadDirs(filepath.Join(sub, "data")).WithFollowSymlinks(filepath.Join(sub, "data"))
	res := run(t, set, `mv sub sub.old && mkdir sub && ln -s /usr/share sub/data && echo planted`)
	if string(res.Stdout) != "planted\n" {
		t.Fatalf("plant failed: %q %q", res.Stdout, res.Stderr)
	}
	_, err := sandbox.Run(context.Background(), set, sandbox.Command("/bin/true"))
	if !errors.Is(err, sandbox.ErrPolicy) || !strings.Contains(err.Error(), "inside the writable grant") {
		t.Fatalf("second run: err %v, want a refusal naming the writable grant", err)
	}
}

func TestStdinFileIsReadOnly(t *testing.T) {
	testenv.RequireUserNS(t)
	f, err := os.CreateTemp(testenv.Tempdir(t), "in")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString("original")
	f.Seek(0, 0)
	cmd := sandbox.Command("/bin/sh", "-c", `cat; echo overwritten >&0 2>/dev/null || echo write-denied`)
	cmd.Stdin = f // opened read-write by the caller
	res := runCmd(t, base(), cmd)
	if string(res.Stdout) != "originalwrite-denied\n" {
		t.Fatalf("stdout %q", res.Stdout)
	}
	if b, _ := os.ReadFile(f.Name()); string(b) != "original" {
		t.Fatalf("stdin file changed: %q", b)
	}
}

// Executing a file the view mounts noexec fails at execve, inside: a setup
// error naming the step and the kernel's answer, with a record.
func TestExecOfNoexecFileIsSetupError(t *testing.T) {
	testenv.RequireUserNS(t)
	wd := workdir(t)
	prog := filepath.Join(wd, "prog")
	os.WriteFile(prog, []byte("#!/bin/sh\necho ran\n"), 0o755)
	_, err := sandbox.Run(context.Background(), base().WithWorkdir(wd), sandbox.Command(prog))
	var se *sandbox.SetupError
	if !errors.As(err, &se) || se.Step != "execve" || se.Errno != syscall.EACCES || !errors.Is(err, sandbox.ErrSetup) {
		t.Fatalf("err %v, want setup step execve: EACCES", err)
	}
	var re *sandbox.RunError
	if !errors.As(err, &re) || re.Record.Exit.Reason != audit.ReasonSetupFailed {
		t.Fatalf("no setup_failed record: %v", err)
	}
}

// Failed runs leave no descriptor behind in the host process (pid 1's
// namespace descriptors travel only with STARTED, which a failed exec never
// sends; unread messages are drained).
func TestFailedRunsLeakNoDescriptors(t *testing.T) {
	testenv.RequireUserNS(t)
	wd := workdir(t)
	prog := filepath.Join(wd, "prog")
	os.WriteFile(prog, []byte("#!/bin/sh\n"), 0o755)
	set := base().WithWorkdir(wd)
	fds := func() []string {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		var l []string
		for _, e := range ents {
			dst, _ := os.Readlink("/proc/self/fd/" + e.Name())
			l = append(l, e.Name()+"->"+dst)
		}
		return l
	}
	count := func() int { return len(fds()) }
	if _, err := sandbox.Run(context.Background(), set, sandbox.Command(prog)); err == nil {
		t.Fatal("exec of a noexec file succeeded")
	}
	before := count()
	for i := 0; i < 5; i++ {
		if _, err := sandbox.Run(context.Background(), set, sandbox.Command(prog)); err == nil {
			t.Fatal("exec of a noexec file succeeded")
		}
	}
	if after := count(); after != before {
		t.Fatalf("open descriptors %d before 5 failed runs, %d after: %v", before, after, fds())
	}
}

func TestMaxFileSize(t *testing.T) {
	wd := workdir(t)
	set := base().WithWorkdir(wd).WithMaxFileSize(64 << 10)
	res := run(t, set, `trap '' XFSZ; head -c 100000 /dev/zero > big; echo "rc=$?"; wc -c < big`)
	if !strings.Contains(string(res.Stdout), "rc=1") || !strings.HasSuffix(string(res.Stdout), "65536\n") {
		t.Fatalf("stdout %q stderr %q", res.Stdout, res.Stderr)
	}
	if fi, err := os.Stat(filepath.Join(wd, "big")); err != nil || fi.Size() != 64<<10 {
		t.Fatalf("file on host: %v %v", fi, err)
	}
}

// The cgroup namespace is rooted at the run's own cgroup: the tool sees
// "/" in every hierarchy, never the host's cgroup names.
func TestCgroupNamespaceRootedAtRun(t *testing.T) {
	res := run(t, base(), "cat /proc/self/cgroup")
	lines := strings.Split(strings.TrimSpace(string(res.Stdout)), "\n")
	if len(lines) == 0 || res.Exit.Code != 0 {
		t.Fatalf("no /proc/self/cgroup: %q %q", res.Stdout, res.Stderr)
	}
	for _, l := range lines {
		if !strings.HasSuffix(l, ":/") {
			t.Errorf("cgroup line %q: not rooted at the run's cgroup", l)
		}
	}
	// How pid 1 came into the cgroup: on v2 without a write to
	// cgroup.procs (clone3 CLONE_INTO_CGROUP), on v1 through it.
	cg := res.Audit.Enforcement.Cgroup
	want := map[string]string{"v1": audit.JoinCgroupProcs, "v2": audit.JoinCloneIntoCgroup}[cg.Version]
	if want == "" || cg.Join != want {
		t.Errorf("cgroup %s joined by %q, want %q", cg.Version, cg.Join, want)
	}
}

// The record holds the resource limits the kernel reports for pid 1, which
// the tool inherits.
func TestRlimitsRecorded(t *testing.T) {
	res := run(t, base().WithMaxFileSize(3*capability.MiB), "true")
	want := map[string]string{"core": "0/0", "nofile": "1024/1024", "fsize": "3145728/3145728"}
	for k, v := range want {
		if got := res.Audit.Enforcement.Rlimits[k]; got != v {
			t.Errorf("rlimits[%s] = %q, want %q", k, got, v)
		}
	}
}

// ErrNotFound (its own error, not ErrPolicy): a command not in PATH, or on
// the host but not in the view. A path through one of the view's own links
// (/bin -> usr/bin) is in it.
func TestMissingCommand(t *testing.T) {
	for _, c := range []struct {
		cmd, want string
	}{
		{"no-such-command-here", `"no-such-command-here" in PATH`},
		{"/etc/shadow-tool", "/etc/shadow-tool is not in the sandbox's view"},
	} {
		_, err := sandbox.Run(context.Background(), base(), sandbox.Command(c.cmd))
		if !errors.Is(err, sandbox.ErrNotFound) || errors.Is(err, sandbox.ErrPolicy) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want ErrNotFound naming %q", c.cmd, err, c.want)
		}
	}
	testenv.RequireUserNS(t)
	res := runCmd(t, base(), sandbox.Command("/bin/sh", "-c", "echo via-link"))
	if string(res.Stdout) != "via-link\n" {
		t.Fatalf("/bin/sh through the view's /bin link: %+v", res)
	}
}

// exec_dirs: every file below an exec dir may run and the dir stays
// read-only; a workdir that is also an exec dir (the policy said so) runs
// what the tool builds there, as gcc does; without that, the workdir stays
// noexec, and so does a read_dir.
func TestExecDirs(t *testing.T) {
	root := testenv.Tempdir(t)
	bin, data := filepath.Join(root, "bin"), filepath.Join(root, "data")
	for _, d := range []string{bin, data} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(d, "tool"), []byte("#!/bin/sh\necho ran "+filepath.Base(d)+"\n"), 0o755)
	}
	res := run(t, base().WithExecDirs(bin).WithReadDirs(data), bin+"/tool; "+data+"/tool; touch "+bin+"/new")
	if out := string(res.Stdout); out != "ran bin\n" || !strings.Contains(string(res.Stderr), "Permission denied") ||
		!strings.Contains(string(res.Stderr), "Read-only file system") {
		t.Fatalf("exec dir and read dir: %q %q", out, res.Stderr)
	}
	var mode string
	for _, m := range res.Audit.Enforcement.Mounts {
		if m.Dst == bin {
			mode = m.Mode
		}
	}
	if !strings.Contains(mode, "ro") || strings.Contains(mode, "noexec") {
		t.Errorf("exec dir mounted %q, want ro and exec", mode)
	}

	wd := workdir(t)
	os.WriteFile(filepath.Join(wd, "hello.c"), []byte("#include <stdio.h>\nint main(void){puts(\"hello from gcc\");return 0;}\n"), 0o644)
	build := "gcc -o hello hello.c && ./hello"
	res = run(t, base().WithWorkdir(wd), build)
	if res.Exit.Code == 0 || !strings.Contains(string(res.Stderr), "Permission denied") {
		t.Fatalf("noexec workdir ran what gcc built: %d %q %q", res.Exit.Code, res.Stdout, res.Stderr)
	}
	res = run(t, base().WithWorkdir(wd).WithExecDirs(wd), build)
	if res.Exit.Code != 0 || string(res.Stdout) != "hello from gcc\n" {
		t.Fatalf("workdir granted exec: %d %q %q", res.Exit.Code, res.Stdout, res.Stderr)
	}
}

// A working directory the tool's host uid cannot enter is a setup error
// that names that uid and what the directory allows. As root a workdir is
// idmapped to its owner, so its own 0700 lets the tool in; a read-only
// grant is not, and a 0700 one of root's keeps the run's uid out. Rootless
// the tool is the caller, the directories' owner, and gets in everywhere.
func TestUnreachableWorkdirNamesTheUID(t *testing.T) {
	testenv.RequireUserNS(t)
	dir := testenv.Tempdir(t)
	wd, ro := filepath.Join(dir, "private"), filepath.Join(dir, "readonly")
	for _, d := range []string{wd, ro} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sandbox.Run(context.Background(), base().WithWorkdir(wd), sandbox.Command("true")); err != nil {
		t.Fatalf("the owner's own 0700 workdir: %v", err)
	}
	cmd := sandbox.Command("true")
	cmd.Dir = ro
	_, err := sandbox.Run(context.Background(), base().WithReadDirs(ro), cmd)
	if os.Geteuid() != 0 {
		if err != nil {
			t.Fatalf("rootless, the owner's own 0700 directory: %v", err)
		}
		return
	}
	var se *sandbox.SetupError
	if !errors.As(err, &se) {
		t.Fatalf("err %v, want a setup error", err)
	}
	if !strings.Contains(err.Error(), "needed access") || !strings.Contains(err.Error(), "mode 0700") || !strings.Contains(err.Error(), "host uid ") {
		t.Fatalf("err %v, want the uid and the mode named", err)
	}
}

// exit.limits_hit names each limit a run ran into from the kernel's
// counters, also when the tool's exit status hides it (a child killed for
// memory under a shell that exits 0).
func TestLimitsHit(t *testing.T) {
	for _, c := range []struct {
		name   string
		set    *capability.Set
		script string
		want   audit.Limit
	}{
		{"memory", base().WithMemory(64 << 20), `python3 -c 'x = bytearray(400 << 20)'; exit 0`, audit.LimitMemory},
		{"pids", base().WithPids(8), `i=0; while [ $i -lt 16 ]; do sleep 1 & i=$((i+1)); done 2>/dev/null; exit 0`, audit.LimitPids},
		{"cpu", base().WithCPU(0.1), `i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done`, audit.LimitCPUThrottled},
		{"output", base().WithMaxOutput(4 << 10), `head -c 100000 /dev/zero`, audit.LimitOutput},
		{"timeout", base().WithTimeout(300 * time.Millisecond), `sleep 5`, audit.LimitTimeout},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := run(t, c.set, c.script)
			if !slices.Contains(res.Audit.Exit.LimitsHit, c.want) {
				t.Errorf("limits_hit %q, want %s (exit %+v, resources %+v)", res.Audit.Exit.LimitsHit, c.want, res.Audit.Exit, res.Audit.Resources)
			}
		})
	}
	// The tool itself past max_file_size dies of SIGXFSZ.
	wd := workdir(t)
	cmd := sandbox.Command("/usr/bin/dd", "if=/dev/zero", "of=f", "bs=1M", "count=2")
	res := runCmd(t, base().WithWorkdir(wd).WithMaxFileSize(1<<20), cmd)
	if !slices.Contains(res.Audit.Exit.LimitsHit, audit.LimitFileSize) || res.Exit.Signal != "SIGXFSZ" {
		t.Errorf("file size: limits_hit %q signal %q", res.Audit.Exit.LimitsHit, res.Exit.Signal)
	}
	if res := run(t, base(), "true"); res.Audit.Exit.LimitsHit == nil || len(res.Audit.Exit.LimitsHit) != 0 {
		t.Errorf("a quiet run: limits_hit %#v, want []", res.Audit.Exit.LimitsHit)
	}
}

// output_overflow truncate: the tool runs on past max_output, the rest of
// the stream is counted and dropped, and the record says the limit was
// hit; kill (the default) ends the sandbox.
func TestOutputOverflowTruncate(t *testing.T) {
	res := run(t, base().WithMaxOutput(4<<10).WithOutputOverflow(capability.OverflowTruncate), `head -c 100000 /dev/zero; echo done >&2; exit 5`)
	o := res.Audit.Output
	if res.Exit.Code != 5 || res.Exit.Reason != audit.ReasonExited || len(res.Stdout) != 4<<10 || string(res.Stderr) != "done\n" ||
		o.StdoutBytes != 100000 || !o.StdoutTruncated || !slices.Contains(res.Audit.Exit.LimitsHit, audit.LimitOutput) {
		t.Errorf("truncate: exit %d reason %s stdout %d bytes stderr %q output %+v limits %q", res.Exit.Code, res.Exit.Reason, len(res.Stdout), res.Stderr, o, res.Audit.Exit.LimitsHit)
	}
	res = run(t, base().WithMaxOutput(4<<10), `head -c 100000 /dev/zero; sleep 5`)
	if res.Exit.Reason != audit.ReasonOutputLimit {
		t.Errorf("kill: reason %s", res.Exit.Reason)
	}
}

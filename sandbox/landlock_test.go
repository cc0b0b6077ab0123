package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/internal/testenv"
	"github.com/toolcell/toolcell/sandbox"
)

// pyTry runs Python attempts and prints "<name> OK" or "<name> <ERRNO>".
const pyTry = `
import errno, os, socket, subprocess
def t(name, f):
    try:
        f()
        print(name, "OK")
    except OSError as e:
        print(name, errno.errorcode.get(e.errno, e.errno))
`

func pyRun(t *testing.T, r *sandbox.Runner, set *capability.Set, script string) *sandbox.Result {
	t.Helper()
	return runCmdWith(t, r, set, sandbox.Command("/usr/bin/python3", "-c", pyTry+script))
}

// wantLines fails unless out has every line of want.
func wantLines(t *testing.T, out string, want ...string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, w := range want {
		if !slices.Contains(lines, w) {
			t.Errorf("output %q lacks %q", out, w)
		}
	}
}

func rulesOf(info *audit.LandlockInfo) map[string][]string {
	m := map[string][]string{}
	for _, r := range info.Rules {
		m[r.Path] = r.Access
	}
	return m
}

// The record names the kernel's ABI, what was handled, and each rule; the
// rules follow the grants and nothing else (no rule on "/" or the view's
// own directories). A tool still signals its own children (signal scoping
// only stops signals leaving the Landlock domain).
func TestLandlockRecorded(t *testing.T) {
	abi, err := sandbox.LandlockABIForTest()
	if err != nil {
		t.Fatalf("this host has no Landlock: %v", err)
	}
	wd := workdir(t)
	res := run(t, base().WithWorkdir(wd), "sleep 5 & kill $!; wait $!; echo rc=$?")
	if got := strings.TrimSpace(string(res.Stdout)); got != "rc=143" {
		t.Errorf("signal to own child: %q, want rc=143", got)
	}
	ll := res.Audit.Enforcement.Landlock
	if ll == nil {
		t.Fatal("no enforcement.landlock in the record")
	}
	if ll.ABI != abi || ll.Applied != min(abi, 7) || len(res.Audit.Enforcement.Degraded) != 0 {
		t.Errorf("abi %d applied %d degraded %v, want %d", ll.ABI, ll.Applied, res.Audit.Enforcement.Degraded, abi)
	}
	for _, r := range []string{"read_file", "write_file", "execute", "make_reg", "truncate"} {
		if !slices.Contains(ll.Handled.FS, r) {
			t.Errorf("handled fs %v lacks %s", ll.Handled.FS, r)
		}
	}
	if abi >= 6 && (!slices.Contains(ll.Handled.Scope, "signal") || !slices.Contains(ll.Handled.Scope, "abstract_unix_socket")) {
		t.Errorf("handled scope %v at ABI %d", ll.Handled.Scope, abi)
	}
	if abi >= 4 && !slices.Contains(ll.Handled.Net, "connect_tcp") {
		t.Errorf("handled net %v at ABI %d", ll.Handled.Net, abi)
	}
	rules := rulesOf(ll)
	has := func(path string, want, not []string) {
		t.Helper()
		acc, ok := rules[path]
		if !ok {
			t.Errorf("no rule for %s in %v", path, rules)
			return
		}
		for _, w := range want {
			if !slices.Contains(acc, w) {
				t.Errorf("rule %s %v lacks %s", path, acc, w)
			}
		}
		for _, n := range not {
			if slices.Contains(acc, n) {
				t.Errorf("rule %s %v has %s", path, acc, n)
			}
		}
	}
	has("/usr", []string{"read_file", "read_dir", "execute"}, []string{"write_file", "make_reg", "truncate"})
	has(wd, []string{"read_file", "write_file", "make_reg", "remove_file", "truncate"}, []string{"execute", "make_char", "make_block"})
	has("/etc/passwd", []string{"read_file"}, []string{"write_file", "read_dir", "truncate"})
	has("/tmp", []string{"write_file", "make_dir"}, []string{"execute"})
	has("/proc", []string{"read_file", "read_dir"}, []string{"write_file"})
	has("/dev/null", []string{"read_file", "write_file"}, []string{"execute", "read_dir"})
	for _, p := range []string{"/", "/etc", "/dev"} {
		if _, ok := rules[p]; ok {
			t.Errorf("rule for %s: %v", p, rules[p])
		}
	}
}

// brokenView makes a canary directory any uid may read, write and
// execute in, and mounts it (not granted) at /canary in every view of the
// test: only Landlock stands between the tool and it.
func brokenView(t *testing.T) string {
	t.Helper()
	dir := testenv.Tempdir(t)
	b, err := os.ReadFile("/usr/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"secret": "canary secret\n", "true": string(b)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	for name, mode := range map[string]os.FileMode{"secret": 0o666, "true": 0o777, ".": 0o777} {
		if err := os.Chmod(filepath.Join(dir, name), mode); err != nil { // past the umask
			t.Fatal(err)
		}
	}
	sandbox.BreakViewForTest(t, map[string]string{"/canary": dir})
	return dir
}

const canaryAttempts = `
t("read", lambda: open("/canary/secret").read())
t("write", lambda: open("/canary/secret", "a").write("x"))
t("truncate", lambda: os.truncate("/canary/secret", 0))
t("create", lambda: open("/canary/new", "x"))
t("mkdir", lambda: os.mkdir("/canary/d"))
t("exec", lambda: subprocess.run(["/canary/true"], check=True))
t("list", lambda: os.listdir("/canary"))
t("symlink", lambda: os.symlink("/canary/secret", "/canary/link"))
`

// Landlock is a barrier of its own: with a directory mounted into the view
// by mistake (read-write, executable), the tool can neither read, write,
// create in, execute from nor list it. The control run, with Landlock off,
// shows the same attempts succeed on that view, so the first result is
// Landlock's doing.
func TestLandlockGuardsBrokenView(t *testing.T) {
	dir := brokenView(t)
	set := base().WithWorkdir(workdir(t))
	res := pyRun(t, sandbox.DefaultRunner, set, canaryAttempts)
	wantLines(t, string(res.Stdout), "read EACCES", "write EACCES", "truncate EACCES", "create EACCES",
		"mkdir EACCES", "exec EACCES", "list EACCES", "symlink EACCES")
	mounted := false
	for _, m := range res.Audit.Enforcement.Mounts {
		mounted = mounted || (m.Dst == "/canary" && m.Src == dir && strings.HasPrefix(m.Mode, "rw"))
	}
	if !mounted {
		t.Errorf("the view was not broken: no rw mount of %s at /canary in %+v", dir, res.Audit.Enforcement.Mounts)
	}
	if res.Audit.Enforcement.Landlock == nil {
		t.Fatal("no enforcement.landlock in the record")
	}
	for p := range rulesOf(res.Audit.Enforcement.Landlock) {
		if p == "/canary" || strings.HasPrefix(p, "/canary/") || p == "/" {
			t.Errorf("a Landlock rule covers the canary: %s", p)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "secret")); string(b) != "canary secret\n" {
		t.Errorf("canary changed: %q", b)
	}

	sandbox.LandlockProbeForTest(t, 0, errors.New("landlock: switched off by the test"))
	ctl := pyRun(t, &sandbox.Runner{AllowNoLandlock: true}, set, canaryAttempts)
	wantLines(t, string(ctl.Stdout), "read OK", "write OK", "truncate OK", "create OK", "mkdir OK", "exec OK", "list OK", "symlink OK")
	if ctl.Audit.Enforcement.Landlock != nil || !strings.Contains(strings.Join(ctl.Audit.Enforcement.Degraded, ";"), "landlock") {
		t.Errorf("control run: landlock %+v degraded %v", ctl.Audit.Enforcement.Landlock, ctl.Audit.Enforcement.Degraded)
	}
}

// Fail closed: no Landlock, or an ABI below what the policy needs, is an
// ErrUnsupported error naming it, unless the Runner allows it; then the
// record says what is missing, and what the kernel has is still applied.
func TestLandlockFailsClosed(t *testing.T) {
	testenv.RequireUserNS(t)
	abi, err := sandbox.LandlockABIForTest()
	if err != nil {
		t.Fatalf("this host has no Landlock: %v", err)
	}
	set := base()
	cmd := func() *sandbox.Cmd { return sandbox.Command("/bin/cat", "/etc/hostname") }

	sandbox.LandlockProbeForTest(t, 0, errors.New("landlock: not built into this kernel (ENOSYS)"))
	_, err = sandbox.Run(context.Background(), set, cmd())
	if !errors.Is(err, sandbox.ErrUnsupported) || !strings.Contains(err.Error(), "landlock: not built") {
		t.Errorf("no Landlock: err %v, want ErrUnsupported naming landlock", err)
	}
	res := runCmdWith(t, &sandbox.Runner{AllowNoLandlock: true}, set, cmd())
	if res.Audit.Enforcement.Landlock != nil || len(res.Audit.Enforcement.Degraded) != 1 ||
		!strings.Contains(res.Audit.Enforcement.Degraded[0], "landlock: not built") {
		t.Errorf("allowed, no Landlock: landlock %+v degraded %v", res.Audit.Enforcement.Landlock, res.Audit.Enforcement.Degraded)
	}

	if abi < 4 {
		t.Fatalf("the host's Landlock ABI %d is below 4: the low-ABI path below needs a newer one to emulate 2", abi)
	}
	brokenView(t)
	sandbox.LandlockProbeForTest(t, 2, nil)
	_, err = sandbox.Run(context.Background(), set, cmd())
	if !errors.Is(err, sandbox.ErrUnsupported) || !strings.Contains(err.Error(), "ABI 2, this policy needs 3") {
		t.Errorf("ABI 2: err %v, want ErrUnsupported naming the ABI", err)
	}
	res = pyRun(t, &sandbox.Runner{AllowNoLandlock: true}, set, canaryAttempts)
	// ABI 2 has no truncate right: truncate(2) is not Landlock's to refuse.
	wantLines(t, string(res.Stdout), "read EACCES", "write EACCES", "create EACCES", "exec EACCES", "truncate OK")
	ll := res.Audit.Enforcement.Landlock
	if ll == nil || ll.ABI != 2 || ll.Applied != 2 || slices.Contains(ll.Handled.FS, "truncate") ||
		!slices.Contains(ll.Missing, "truncate") || !slices.Contains(ll.Missing, "net.connect_tcp") || !slices.Contains(ll.Missing, "scope.signal") {
		t.Errorf("ABI 2 record: %+v", ll)
	}
	if len(res.Audit.Enforcement.Degraded) != 1 || !strings.Contains(res.Audit.Enforcement.Degraded[0], "ABI 2") {
		t.Errorf("ABI 2 degraded: %v", res.Audit.Enforcement.Degraded)
	}
}

// With egress grants (TCP sockets allowed), Landlock lets the tool connect
// to the relay's ports only and bind none; the control run at ABI 3 (no
// network rights) shows the same attempts get through to the kernel.
func TestLandlockTCP(t *testing.T) {
	abi, err := sandbox.LandlockABIForTest()
	if err != nil || abi < 4 {
		t.Fatalf("this host's Landlock (ABI %d, %v) has no TCP rights", abi, err)
	}
	c := newCanaries(t)
	script := `
def bind():
    s = socket.socket(); s.bind(("127.0.0.1", 8080)); s.listen()
def other():
    s = socket.socket(); s.settimeout(5); s.connect(("127.0.0.1", 9))
def relay():
    s = socket.socket(); s.settimeout(5); s.connect(("api.example.com", 80))
t("bind", bind)
t("other", other)
t("relay", relay)
`
	set := base().WithWorkdir(workdir(t)).WithTimeout(30 * time.Second)
	attack := netAttack([]string{"api.example.com:80"}, nil, pyTry+script, nil)
	res, out := attack(t, c, set, "")
	wantLines(t, out, "bind EACCES", "other EACCES", "relay OK")
	ll := res.Audit.Enforcement.Landlock
	if ll == nil {
		t.Fatal("no enforcement.landlock in the record")
	}
	ports := map[uint16]string{}
	for _, p := range ll.Ports {
		ports[p.Port] = strings.Join(p.Access, ",")
	}
	if fmt.Sprint(ports) != "map[53:connect_tcp 80:connect_tcp]" {
		t.Errorf("port rules %v, want connect_tcp on 53 and 80", ports)
	}

	sandbox.LandlockProbeForTest(t, 3, nil)
	attack = netAttack([]string{"api.example.com:80"}, func(r *sandbox.Runner) { r.AllowNoLandlock = true }, pyTry+script, nil)
	_, out = attack(t, c, set, "")
	wantLines(t, out, "bind OK", "other ECONNREFUSED", "relay OK")
}

// The file-system escapes of the suite, rerun with the canaries mounted
// into the view by mistake (at /canary, read-write, executable, open to
// any uid): Landlock alone must refuse each. The control run without
// Landlock must escape, or the case proves nothing here. Not rerun:
// hardlink_to_canary (a link across mounts is EXDEV before any LSM
// check), host_unix_socket and ssh_auth_sock (Landlock up to ABI 7 does
// not restrict connect(2) to a pathname socket: THREAT_MODEL.md).
func TestEscapeSuiteLandlockAlone(t *testing.T) {
	testenv.RequireUserNS(t)
	bin := testenv.BuildC(t, "../testdata/escape/attack.c")
	c := newCanaries(t)
	err := filepath.WalkDir(c.dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.Chmod(p, 0o777)
		case d.Type().IsRegular():
			return os.Chmod(p, 0o666)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sandbox.BreakViewForTest(t, map[string]string{"/canary": c.dir})
	env := func(s *capability.Set) *capability.Set {
		return s.WithExec(bin).WithEnv("CANARY_FILE", "/canary/secret.txt").WithEnv("CANARY_DIR", "/canary").
			WithEnv("CANARY_HOME", "/canary/home").WithEnv("CANARY_PID", fmt.Sprint(c.victim.Process.Pid)).
			WithTimeout(20 * time.Second)
	}
	for _, attack := range []string{"read_canary", "write_canary", "create_outside", "symlink_to_canary",
		"dotdot_from_workdir", "ssh_dir", "aws_credentials"} {
		t.Run(attack, func(t *testing.T) {
			before := c.snapshot(t)
			res := runCmd(t, env(base().WithWorkdir(workdir(t))), sandbox.Command(bin, attack))
			out := string(res.Stdout)
			if strings.Contains(out, "ESCAPED") || !strings.Contains(out, "RESULT EACCES") {
				t.Errorf("Landlock alone: %q, want RESULT EACCES", out)
			}
			if res.Audit.Enforcement.Landlock == nil {
				t.Error("no enforcement.landlock in the record")
			}
			c.intact(t, before)

			sandbox.LandlockProbeForTest(t, 0, errors.New("landlock: switched off by the test"))
			ctl := runCmdWith(t, &sandbox.Runner{AllowNoLandlock: true}, env(base().WithWorkdir(workdir(t))), sandbox.Command(bin, attack))
			if !strings.Contains(string(ctl.Stdout), "ESCAPED") {
				t.Errorf("control run without Landlock did not escape (%q): the case tests nothing here", ctl.Stdout)
			}
		})
	}
}

// The other half of the independence: the suite's file cases with Landlock
// off, so that the view alone must refuse each (ENOENT, EROFS: not
// Landlock's EACCES) with the same checks as in TestEscapeSuite.
func TestEscapeSuiteViewAlone(t *testing.T) {
	testenv.RequireUserNS(t)
	bin := testenv.BuildC(t, "../testdata/escape/attack.c")
	c := newCanaries(t)
	sandbox.LandlockProbeForTest(t, 0, errors.New("landlock: switched off by the test"))
	r := &sandbox.Runner{AllowNoLandlock: true}
	t.Setenv("TOOLCELL_CANARY_SECRET", "canary-env-secret")
	t.Setenv("SSH_AUTH_SOCK", c.socket)
	n := 0
	for _, ec := range escapeCases() {
		if ec.class != "files outside the grants" && ec.class != "secrets" || ec.run != nil || ec.policy != nil {
			continue
		}
		n++
		t.Run(ec.attack, func(t *testing.T) {
			set := base().WithWorkdir(workdir(t)).WithExec(bin).
				WithEnv("CANARY_FILE", c.file).WithEnv("CANARY_DIR", c.dir).WithEnv("CANARY_HOME", c.home).
				WithEnv("CANARY_SOCKET", c.socket).WithEnv("CANARY_PID", fmt.Sprint(c.victim.Process.Pid)).
				WithTimeout(20 * time.Second)
			before := c.snapshot(t)
			res := runCmdWith(t, r, set, sandbox.Command(bin, ec.attack))
			out := string(res.Stdout)
			if strings.Contains(out, "ESCAPED") || strings.Contains(out, "RESULT EACCES") && ec.attack != "proc_pid1_root" {
				t.Errorf("view alone: %q", out)
			}
			if res.Audit.Enforcement.Landlock != nil {
				t.Errorf("Landlock was applied: %+v", res.Audit.Enforcement.Landlock)
			}
			ec.check(t, c, res, out)
			c.intact(t, before)
		})
	}
	if n < 15 {
		t.Fatalf("only %d file and secret cases", n)
	}
}

package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/capability"
)

// ErrSelfTest means a default protection does not hold on this host; the
// error names which.
var ErrSelfTest = errors.New("sandbox: self-test failed")

// Protection is one protection SelfTest checked on the live host.
type Protection struct {
	Name   string
	OK     bool
	Detail string // what was seen; for a skipped check, why it was skipped
	// Skipped is set when the host lacks what the check needs (not a
	// failure of the protection).
	Skipped bool
}

// SelfTest runs DefaultRunner.SelfTest.
func SelfTest(ctx context.Context) ([]Protection, error) { return DefaultRunner.SelfTest(ctx) }

// SelfTest tries, on this host and with this Runner's configuration, a fast
// subset of the escape suite: five short sandboxes under Base that look for
// privileges, host files, host processes, the network, host environment and
// executable memfds from inside, whether Landlock refuses what no grant covers,
// make a denied syscall (sync(1) from coreutils), resolve a
// granted and a made-up name through the egress DNS, and run into the
// pids, memory and time limits. Each protection is judged from what
// the tool saw and from the audit record. It takes a few hundred
// milliseconds. Every protection checked is returned; the error matches
// ErrSelfTest and names those that do not hold. A sandbox that cannot be set
// up at all returns that setup error (ErrUnsupported, ErrSetup).
func (r *Runner) SelfTest(ctx context.Context) ([]Protection, error) {
	canaryDir, err := os.MkdirTemp("", "toolcell-selftest-")
	if err != nil {
		return nil, fmt.Errorf("sandbox: self-test: %w", err)
	}
	defer os.RemoveAll(canaryDir)
	// Searchable by the sandbox user: only the mount view may hide it.
	if err := os.Chmod(canaryDir, 0o755); err != nil {
		return nil, fmt.Errorf("sandbox: self-test: %w", err)
	}
	canary := filepath.Join(canaryDir, "canary")
	if err := os.WriteFile(canary, []byte("canary\n"), 0o644); err != nil {
		return nil, fmt.Errorf("sandbox: self-test: %w", err)
	}
	script := fmt.Sprintf(`grep -E '^(Uid|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status
echo "pids $(ls -d /proc/[0-9]* | wc -l)"
echo "pid1 $(tr '\0' ' ' < /proc/1/cmdline)"
echo "ifaces $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ' ')"
test -e %s && echo canary-visible
test -e /etc/shadow && echo shadow-visible
grep -E '^[0-9]+ [0-9]+ [0-9]+:[0-9]+ [^ ]+ /(usr)? ' /proc/self/mountinfo | cut -d' ' -f5,6 | sed 's/^/mount /'
echo "env $(env | cut -d= -f1 | sort | tr '\n' ' ')"
echo "memfd_noexec $(cat /proc/sys/vm/memfd_noexec 2>/dev/null || echo none)"
echo "landlock $(ls / 2>&1 >/dev/null | head -n 1)"
for c in /usr/bin/sync /bin/sync; do
  if [ -x $c ]; then $c; echo "sync $?"; break; fi
done`, canary)
	var out []Protection
	res, err := r.Run(ctx, capability.New().WithBase(), Command("/bin/sh", "-c", script))
	if err != nil {
		return nil, err
	}
	out = append(out, judgeInside(string(res.Stdout), res.Audit)...)

	res, err = r.Run(ctx, capability.New().WithBase().WithPids(8), Command("/bin/sh", "-c",
		`i=0; while [ $i -lt 16 ]; do sleep 2 & i=$((i+1)); done 2>/dev/null; kill $(jobs -p) 2>/dev/null; echo done`))
	if err != nil {
		return nil, err
	}
	out = append(out, judgePids(res.Audit, 8))

	res, err = r.Run(ctx, capability.New().WithBase().WithMemory(32*capability.MiB), Command("/bin/sh", "-c",
		`tr '\0' x < /dev/zero | head -c 200000000 | tail -n 1 | wc -c`))
	if err != nil {
		return nil, err
	}
	out = append(out, judgeMemory(res.Audit, uint64(32*capability.MiB)))

	// Egress: a granted name resolves to its synthetic address; any other
	// name is refused by toolcell's DNS and shows in the record.
	res, err = r.Run(ctx, capability.New().WithBase().WithEgress(selfTestName+":9"), Command("/bin/sh", "-c",
		`command -v getent >/dev/null || { echo no-getent; exit 0; }
getent hosts `+selfTestName+`
getent hosts leak.`+selfTestName+` && echo leak-resolved
exit 0`))
	if err != nil {
		return nil, err
	}
	out = append(out, judgeEgress(string(res.Stdout), res.Audit))

	// The tool's files: in a temporary workdir, a file the tool makes is
	// the caller's on the host (idmapped as root), and a set-user-ID bit
	// on it is refused and recorded. Seen from the host before removal.
	wcmd := Command("/bin/sh", "-c", `echo x > f; chmod u+s f; echo "chmod $?"`)
	var hostSide string
	wcmd.Collect = func(dir string) error {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dir, "f"), &st); err != nil {
			return err
		}
		hostSide = fmt.Sprintf("%d:%d %04o", st.Uid, st.Gid, st.Mode&0o7777)
		return nil
	}
	res, err = r.Run(ctx, capability.New().WithBase().WithWorkdir(capability.TempWorkdir()), wcmd)
	if err != nil && res == nil {
		return nil, err
	}
	out = append(out, judgeFiles(string(res.Stdout), hostSide, res.Audit, err))

	// A sleeper in a session of its own must die with the sandbox; its
	// odd duration marks it in the host's process list.
	marker := fmt.Sprintf("%d.%03d", 20+time.Now().UnixNano()%10, time.Now().UnixNano()%1000)
	res, err = r.Run(ctx, capability.New().WithBase().WithTimeout(200*time.Millisecond), Command("/bin/sh", "-c",
		`setsid sleep `+marker+` & sleep 30`))
	if err != nil {
		return nil, err
	}
	out = append(out, judgeTimeout(res.Audit, survivors("sleep\x00"+marker+"\x00")))
	return out, selfTestErr(out)
}

// judgeFiles: the file is the caller's on the host, without set-ID bits,
// the chmod failed, and the refusal is in the record.
func judgeFiles(stdout, hostSide string, rec *audit.Record, collectErr error) Protection {
	want := fmt.Sprintf("%d:%d", os.Geteuid(), os.Getegid())
	denied := false
	for _, d := range rec.Denials {
		denied = denied || strings.HasPrefix(d.Syscall, "fchmodat") || d.Syscall == "chmod"
	}
	idmapOK := os.Geteuid() != 0
	for _, m := range rec.Enforcement.Mounts {
		if m.Dst == capability.TempWorkdirPath && m.IDMap != nil {
			idmapOK = true
		}
	}
	owner, mode, _ := strings.Cut(hostSide, " ")
	ok := collectErr == nil && owner == want && mode != "" && mode[0] == '0' && denied && idmapOK &&
		strings.Contains(stdout, "chmod ") && !strings.Contains(stdout, "chmod 0")
	return Protection{Name: "the tool's files are the caller's, never set-ID", OK: ok,
		Detail: fmt.Sprintf("host side %q (want %s, no set-ID bit), chmod u+s: %q, denial recorded %v, idmap %v, collect %v",
			hostSide, want, strings.TrimSpace(stdout), denied, idmapOK, collectErr)}
}

func selfTestErr(ps []Protection) error {
	var bad []string
	for _, p := range ps {
		if !p.OK && !p.Skipped {
			bad = append(bad, p.Name+" ("+p.Detail+")")
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrSelfTest, strings.Join(bad, "; "))
}

// judgeInside judges the first self-test run: what the tool printed and
// the record of its run.
func judgeInside(out string, rec *audit.Record) []Protection {
	lines := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		k, v, _ := strings.Cut(l, ":")
		if strings.HasPrefix(l, "pids ") || strings.HasPrefix(l, "pid1 ") || strings.HasPrefix(l, "ifaces ") ||
			strings.HasPrefix(l, "env ") || strings.HasPrefix(l, "sync ") || strings.HasPrefix(l, "mount ") ||
			strings.HasPrefix(l, "memfd_noexec ") || strings.HasPrefix(l, "landlock ") {
			k, v, _ = strings.Cut(l, " ")
			if k == "mount" { // "mount <path> <options>": one key per path
				var opts string
				k, opts, _ = strings.Cut(v, " ")
				k, v = "mount "+k, opts
			}
		}
		lines[k] = strings.TrimSpace(v)
	}
	p := func(name string, ok bool, detail string) Protection {
		return Protection{Name: name, OK: ok, Detail: detail}
	}
	var ps []Protection

	m := strings.Fields(rec.Enforcement.UIDMap)
	uidOK := strings.HasPrefix(lines["Uid"], strconv.Itoa(sandboxUID)+"\t") && len(m) == 3 &&
		m[0] == strconv.Itoa(sandboxUID) && m[1] != "0"
	ps = append(ps, p("unprivileged mapped user", uidOK, fmt.Sprintf("uid inside %q, uid_map %q", lines["Uid"], rec.Enforcement.UIDMap)))
	ps = append(ps, p("seven namespaces", len(rec.Enforcement.Namespaces) == 7, strings.Join(rec.Enforcement.Namespaces, ",")))
	capsOK := true
	var caps []string
	for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		caps = append(caps, k+"="+lines[k])
		capsOK = capsOK && lines[k] == "0000000000000000"
	}
	ps = append(ps, p("no capabilities", capsOK, strings.Join(caps, " ")))
	ps = append(ps, p("no_new_privs", lines["NoNewPrivs"] == "1" && rec.Enforcement.NoNewPrivs, "NoNewPrivs="+lines["NoNewPrivs"]))
	ps = append(ps, p("seccomp filter", lines["Seccomp"] == "2", "Seccomp="+lines["Seccomp"]))

	if _, ok := lines["sync"]; !ok {
		ps = append(ps, Protection{Name: "denied syscalls recorded", Skipped: true, Detail: "no sync(1) on this host to make a denied call"})
	} else {
		found := false
		for _, d := range rec.Denials {
			found = found || (d.Syscall == "sync" && d.Answer == "EPERM" && d.Count >= 1)
		}
		ps = append(ps, p("denied syscalls recorded", found, fmt.Sprintf("sync(2) denial recorded: %v", found)))
	}

	var leaks []string
	for _, k := range []string{"canary-visible", "shadow-visible"} {
		if _, ok := lines[k]; ok {
			leaks = append(leaks, k)
		}
	}
	ps = append(ps, p("only granted paths", len(leaks) == 0, "host files seen: "+strings.Join(leaks, ",")))
	root, usr := lines["mount /"], lines["mount /usr"]
	ps = append(ps, p("read-only system view", strings.HasPrefix(root, "ro,") && strings.HasPrefix(usr, "ro,") && strings.Contains(usr, "nosuid"),
		fmt.Sprintf("/ %q, /usr %q (from the sandbox's mount table)", root, usr)))
	n, _ := strconv.Atoi(lines["pids"])
	ps = append(ps, p("host processes hidden", n > 0 && n <= 8 && strings.HasPrefix(lines["pid1"], "toolcell-stage2"),
		fmt.Sprintf("%d processes visible, pid 1 %q", n, lines["pid1"])))
	ps = append(ps, p("no network", lines["ifaces"] == "lo", "interfaces: "+lines["ifaces"]))
	// Either the kernel seals every memfd (the tool reads 2, as the record
	// does), or the filter refuses the ones that are not sealed.
	sealed := lines["memfd_noexec"] == "2" && rec.Enforcement.MemfdNoexec != nil && *rec.Enforcement.MemfdNoexec == 2
	ps = append(ps, p("no executable memfds", sealed || rec.Enforcement.Seccomp.MemfdCreate != "",
		fmt.Sprintf("vm.memfd_noexec inside %q; seccomp memfd_create %q", lines["memfd_noexec"], rec.Enforcement.Seccomp.MemfdCreate)))
	envOK := true
	for _, k := range strings.Fields(lines["env"]) {
		switch k {
		case "PATH", "PWD", "SHLVL", "_", "OLDPWD":
		default:
			envOK = false
		}
	}
	ps = append(ps, p("host environment withheld", envOK && lines["env"] != "", "names: "+lines["env"]))
	// Landlock: "/" exists in the view but no rule covers it, so listing
	// it is refused (the view alone would allow it).
	if rec.Enforcement.Landlock == nil {
		ps = append(ps, Protection{Name: "landlock", Skipped: true, Detail: "not applied: " + strings.Join(rec.Enforcement.Degraded, "; ")})
	} else {
		ps = append(ps, p("landlock", strings.HasSuffix(lines["landlock"], "Permission denied"),
			fmt.Sprintf("ABI %d; listing / gave %q", rec.Enforcement.Landlock.Applied, lines["landlock"])))
	}
	return ps
}

// selfTestName is the name the egress self-test grants (.invalid never
// resolves anywhere; nothing connects to it).
const selfTestName = "granted.toolcell-selftest.invalid"

// judgeEgress: the granted name got the first synthetic address, the other
// name got nothing, and the record shows the refused query.
func judgeEgress(out string, rec *audit.Record) Protection {
	name := "egress only to granted names"
	if strings.Contains(out, "no-getent") {
		return Protection{Name: name, Skipped: true, Detail: "no getent(1) on this host to resolve names"}
	}
	granted := strings.HasPrefix(out, "127.77.0.2 ")
	leaked := strings.Contains(out, "leak-resolved")
	recorded := false
	for _, c := range rec.Network {
		recorded = recorded || (c.Kind == "dns" && c.Name == "leak."+selfTestName && !c.Allowed && c.Reason == "not granted")
	}
	return Protection{Name: name, OK: granted && !leaked && recorded && rec.Enforcement.Egress != nil,
		Detail: fmt.Sprintf("granted name resolved to 127.77.0.2: %v; other name resolved: %v; refusal recorded: %v", granted, leaked, recorded)}
}

func judgePids(rec *audit.Record, limit uint64) Protection {
	peak := rec.Resources.PidsPeak
	return Protection{Name: "pids limit", OK: rec.Exit.Reason == audit.ReasonExited && peak > 1 && peak <= limit,
		Detail: fmt.Sprintf("peak %d with limit %d (exit %s)", peak, limit, rec.Exit.Reason)}
}

// judgeMemory: the kernel killed a process of the pipeline at the limit
// (which one it picks, and so the shell's exit status, varies).
func judgeMemory(rec *audit.Record, limit uint64) Protection {
	peak := rec.Resources.MemoryPeakBytes
	return Protection{Name: "memory limit", OK: rec.Resources.OOMKills > 0 && peak <= limit,
		Detail: fmt.Sprintf("exit %s, oom kills %d, peak %d bytes with limit %d", rec.Exit.Reason, rec.Resources.OOMKills, peak, limit)}
}

func judgeTimeout(rec *audit.Record, survivors int) Protection {
	return Protection{Name: "timeout kills the sandbox", OK: rec.Exit.Reason == audit.ReasonTimeout && survivors == 0,
		Detail: fmt.Sprintf("exit %s after %.0f ms, %d process(es) left", rec.Exit.Reason, rec.DurationMS, survivors)}
}

// survivors counts the host's processes whose command line is cmdline.
func survivors(cmdline string) int {
	n := 0
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, d := range dirs {
		if b, err := os.ReadFile(d); err == nil && string(b) == cmdline {
			n++
		}
	}
	return n
}

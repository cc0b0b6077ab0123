package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/internal/auditschema"
	"github.com/toolcell/toolcell/internal/testenv"
)

// cli runs toolcell with args. The records it wrote to an --audit file or
// an --audit-dir are kept for TestMain's check against the schema.
func cli(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := realMain(args, strings.NewReader(stdin), &out, &errb)
	for i, a := range args {
		if a == "--" {
			break
		}
		if i+1 < len(args) && (a == "--audit" || a == "-audit") && args[i+1] != "-" {
			auditFiles(t, args[i+1])
		}
		if i+1 < len(args) && (a == "--audit-dir" || a == "-audit-dir") {
			auditFiles(t, filepath.Join(args[i+1], "*.json"))
		}
	}
	return code, out.String(), errb.String()
}

// auditFiles hands the records in the files pattern matches (one record,
// or JSON lines, each) to TestMain's check against the schema, and returns
// the files' names.
func auditFiles(t *testing.T, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // a run that wrote no record
		}
		auditschema.AddJSON(f, b)
	}
	return files
}

func TestRunExitStatusContract(t *testing.T) {
	testenv.RequireUserNS(t)
	if code, out, _ := cli(t, "", "run", "--base", "--", "sh", "-c", "echo hi; exit 7"); code != 7 || out != "hi\n" {
		t.Fatalf("exit 7: got %d %q", code, out)
	}
	if code, _, _ := cli(t, "", "run", "--base", "--", "sh", "-c", "kill -TERM $$"); code != 128+15 {
		t.Fatalf("SIGTERM: got %d, want 143", code)
	}
	if code, out, _ := cli(t, "from stdin", "run", "--base", "--", "cat"); code != 0 || out != "from stdin" {
		t.Fatalf("stdin: got %d %q", code, out)
	}
}

func TestRunSetupFailureIs125WithOneLine(t *testing.T) {
	code, _, errs := cli(t, "", "run", "--read", "/definitely/not/here", "--", "true")
	if code != exitSetup {
		t.Fatalf("got %d, want 125", code)
	}
	if lines := strings.Split(strings.TrimSpace(errs), "\n"); len(lines) != 1 || !strings.Contains(errs, "/definitely/not/here") {
		t.Fatalf("stderr %q: want one line naming the path", errs)
	}
	if code, _, _ := cli(t, "", "run", "--memory", "lots", "--", "true"); code != 2 {
		t.Fatalf("bad flag: got %d, want 2", code)
	}
}

func TestRunAuditFileAndPolicyManifest(t *testing.T) {
	testenv.RequireUserNS(t)
	dir := testenv.Tempdir(t)
	policy := filepath.Join(dir, "p.yaml")
	os.WriteFile(policy, []byte("name: cli-test\nbase: true\nmemory: 128MiB\nenv:\n  GREETING: hello\n"), 0o644)
	audit := filepath.Join(dir, "audit.json")
	code, out, errs := cli(t, "", "run", "--policy", policy, "--pids", "32", "--audit", audit, "--", "sh", "-c", "echo $GREETING")
	if code != 0 || out != "hello\n" {
		t.Fatalf("got %d %q %q", code, out, errs)
	}
	b, err := os.ReadFile(audit)
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Schema string `json:"schema"`
		Policy struct{ Name string }
		Exit   struct{ Reason string }
		Enf    struct {
			Cgroup struct{ Limits map[string]string }
		} `json:"enforcement"`
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Schema != "toolcell.audit/v1" || rec.Policy.Name != "cli-test" || rec.Exit.Reason != "exited" ||
		rec.Enf.Cgroup.Limits["pids"] != "32" || rec.Enf.Cgroup.Limits["memory_bytes"] != "134217728" {
		t.Fatalf("record %s", b)
	}
	// The compact form, and the record of a run that could not be set up.
	compact := filepath.Join(dir, "compact.json")
	if code, _, errs := cli(t, "", "run", "--base", "--audit", compact, "--audit-compact", "--", "true"); code != 0 {
		t.Fatalf("compact: %d %q", code, errs)
	}
	failed := filepath.Join(dir, "failed.json")
	if code, _, errs := cli(t, "", "run", "--base", "--read", "/definitely/not/here", "--audit", failed, "--", "true"); code != exitSetup {
		t.Fatalf("setup failure: %d %q", code, errs)
	}
	for f, want := range map[string]string{compact: `"compacted"`, failed: `"reason": "setup_failed"`} {
		if b, err := os.ReadFile(f); err != nil || !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s: %v %s", f, want, err, b)
		}
	}
	if code, _, errs := cli(t, "", "run", "--policy", filepath.Join(dir, "missing.yaml"), "--", "true"); code != exitSetup || !strings.Contains(errs, "missing.yaml") {
		t.Fatalf("missing manifest: %d %q", code, errs)
	}
}

func TestExplainAndCheck(t *testing.T) {
	code, out, errs := cli(t, "", "explain", "--base", "--workdir", os.TempDir(), "--memory", "64M", "--inotify-instances", "20")
	if code != 0 {
		t.Fatalf("explain: %d %s", code, errs)
	}
	for _, want := range []string{"policy sha256:", "workdir " + os.TempDir(), "memory 64MiB", "seccomp allowlist", "enforcement.mounts", "inotify 20 instances, 65536 watches"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = cli(t, "", "explain", "--list-syscalls")
	if code != 0 || !strings.Contains(out, "SYSCALL") || !strings.Contains(out, "execve") || strings.Contains(out, "\nptrace ") {
		t.Fatalf("explain --list-syscalls: %d\n%s", code, out)
	}
	testenv.RequireUserNS(t)
	code, out, errs = cli(t, "", "check", "--deep")
	if code != 0 || !strings.Contains(out, "self-test: denied syscalls recorded") || !strings.Contains(out, "self-test: memory limit") {
		t.Fatalf("check: %d\n%s\n%s", code, out, errs)
	}
}

// Egress flags: grants, ranges and HTTP APIs reach the policy, and bad
// ones are named.
func TestEgressFlags(t *testing.T) {
	code, out, errs := cli(t, "", "explain", "--egress", "pypi.org:443", "--egress-allow", "10.20.0.0/16",
		"--http-api", "api.example.com,Authorization,env:API_KEY,Bearer ")
	if code != 0 {
		t.Fatalf("explain: %d %s", code, errs)
	}
	for _, want := range []string{"egress pypi.org:443", "egress allow 10.20.0.0/16", "http api api.example.com", "adds Authorization from secret env:API_KEY", "network[]"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}
	for _, c := range [][]string{
		{"--http-api", "api.example.com,Authorization"},
		{"--http-api", "*.example.com,Authorization,env:K"},
		{"--egress-allow", "10.0.0.1/8"},
	} {
		code, _, errs := cli(t, "", append([]string{"explain"}, c...)...)
		if code == 0 || errs == "" {
			t.Errorf("%v accepted", c)
		}
	}
}

// With --policy, every flag still counts: lists add to the manifest's,
// --syscalls replaces its syscall kinds (nothing given is dropped).
func TestPolicyAndFlagsMerge(t *testing.T) {
	policy := filepath.Join(testenv.Tempdir(t), "p.yaml")
	os.WriteFile(policy, []byte("base: true\negress: [\"a.example.com:443\"]\nsyscalls: [file_read, file_write, process]\n"), 0o644)
	code, out, errs := cli(t, "", "explain", "--policy", policy, "--egress", "pypi.org:443", "--egress-allow", "10.20.0.0/16",
		"--http-api", "api.example.com,Authorization,env:API_KEY,Bearer ", "--syscalls", "file_read,process")
	if code != 0 {
		t.Fatalf("explain: %d %s", code, errs)
	}
	for _, want := range []string{"egress a.example.com:443", "egress pypi.org:443", "egress allow 10.20.0.0/16", "http api api.example.com"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}
	_, plain, _ := cli(t, "", "explain", "--policy", policy)
	if strings.Contains(plain, "pypi.org") || !strings.Contains(plain, "file_write") {
		t.Fatalf("the manifest alone: %s", plain)
	}
	if strings.Contains(syscallKindsLine(out), "file_write") || !strings.Contains(syscallKindsLine(out), "file_read") {
		t.Errorf("--syscalls did not replace the manifest's kinds: %q", syscallKindsLine(out))
	}
}

// syscallKindsLine is the line of explain's output that names the
// syscall kinds.
func syscallKindsLine(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "file_read") {
			return l
		}
	}
	return ""
}

// --follow-symlinks and the manifest's follow_symlinks let a grant pass a
// link; without them the grant is refused, naming it and the link.
func TestFollowSymlinksFlag(t *testing.T) {
	dir := testenv.Tempdir(t)
	real, link := filepath.Join(dir, "real"), filepath.Join(dir, "link")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(real, "f"), []byte("via-link\n"), 0o644)
	if err := os.Symlink("real", link); err != nil {
		t.Fatal(err)
	}
	code, _, errs := cli(t, "", "explain", "--read", link)
	if code != exitSetup || !strings.Contains(errs, "read_dirs[0]") || !strings.Contains(errs, "symbolic link "+link+" -> real") {
		t.Fatalf("unlisted link: %d %q", code, errs)
	}
	code, out, errs := cli(t, "", "explain", "--read", link, "--follow-symlinks", link)
	if code != 0 || !strings.Contains(out, "follow symlinks "+link) || !strings.Contains(out, "grants pass no symlinks") {
		t.Fatalf("explain --follow-symlinks: %d %s %s", code, out, errs)
	}
	if code, _, errs := cli(t, "", "explain", "--read", real, "--follow-symlinks", link); code != exitSetup || !strings.Contains(errs, "follow_symlinks[0]") {
		t.Fatalf("--follow-symlinks naming no grant: %d %q", code, errs)
	}
	policy := filepath.Join(dir, "p.yaml")
	os.WriteFile(policy, []byte("base: true\nread_dirs: ["+link+"]\nfollow_symlinks: ["+link+"]\n"), 0o644)
	if code, out, errs := cli(t, "", "explain", "--policy", policy); code != 0 || !strings.Contains(out, "follow symlinks "+link) {
		t.Fatalf("manifest follow_symlinks: %d %s %s", code, out, errs)
	}
	testenv.RequireUserNS(t)
	if code, out, errs := cli(t, "", "run", "--base", "--read", link, "--follow-symlinks", link, "--", "cat", link+"/f"); code != 0 || out != "via-link\n" {
		t.Fatalf("run --follow-symlinks: %d %q %q", code, out, errs)
	}
	if code, out, errs := cli(t, "", "run", "--policy", policy, "--", "cat", link+"/f"); code != 0 || out != "via-link\n" {
		t.Fatalf("run with the manifest: %d %q %q", code, out, errs)
	}
	if code, out, errs := cli(t, "", "run", "--base", "--workdir", link, "--", "cat", "f"); code != exitSetup || out != "" || !strings.Contains(errs, "workdir") {
		t.Fatalf("run --workdir through a link: %d %q %q", code, out, errs)
	}
}

// explain --diff lists what a policy change widens; --syscalls
// narrows the groups and bad kinds are named.
func TestExplainDiff(t *testing.T) {
	old := filepath.Join(t.TempDir(), "old.yaml")
	if err := os.WriteFile(old, []byte("syscalls: [file_read]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := cli(t, "", "explain", "--syscalls", "file_read,process", "--diff", old)
	if code != 0 {
		t.Fatalf("explain --diff: %d %s", code, errs)
	}
	if !strings.Contains(out, "syscalls base,exec,file_read,process") {
		t.Errorf("groups missing:\n%s", out)
	}
	var fork string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "fork ") {
			fork = l
		}
	}
	if !strings.Contains(fork, "user_notif") || !strings.Contains(fork, "allow (process)") || !strings.HasSuffix(fork, "WIDENS") {
		t.Errorf("fork line %q in:\n%s", fork, out)
	}
	if strings.Contains(out, "\nopenat ") {
		t.Errorf("unchanged syscall listed:\n%s", out)
	}
	code, _, errs = cli(t, "", "explain", "--syscalls", "file_read,network")
	if code != exitSetup || !strings.Contains(errs, "syscalls[1]") || !strings.Contains(errs, "network") {
		t.Fatalf("bad kind: %d %q", code, errs)
	}
}

// A flag of an earlier version is refused with an error naming the flag
// that replaced it, in every spelling and every subcommand taking it, and
// a flag's value that happens to look like one is no flag.
func TestRenamedFlags(t *testing.T) {
	for old, nw := range renamedFlags {
		if policyFlags(flag.NewFlagSet("", flag.ContinueOnError)).fs.Lookup(nw) == nil {
			t.Errorf("--%s is renamed to --%s, which is no flag", old, nw)
		}
		for _, args := range [][]string{
			{"explain", "--" + old, "x"}, {"explain", "-" + old + "=x"},
			{"run", "--base", "--" + old, "x", "--", "true"}, {"mcp", "--" + old + "=x"},
		} {
			code, out, errs := cli(t, "", args...)
			want := "flag --" + old + " was renamed to --" + nw
			if code != 2 || !strings.Contains(errs, want) {
				t.Errorf("%v: exit %d, stderr %q, stdout %q; want 2 and %q", args, code, errs, out, want)
			}
		}
	}
	code, out, errs := cli(t, "", "explain", "--name", "--connect", "--egress", "pypi.org:443")
	if code != 0 || !strings.Contains(out, "(--connect)") || !strings.Contains(out, "egress pypi.org:443") {
		t.Errorf("a value spelled like an old flag: %d %q %q", code, out, errs)
	}
}

// Every policy field has the flag named as its manifest key (see package
// capability), but the path fields, whose flags take either kind of path.
func TestFlagPerField(t *testing.T) {
	fs := policyFlags(flag.NewFlagSet("", flag.ContinueOnError)).fs
	paths := map[string]string{"read_files": "read", "read_dirs": "read", "write_files": "write",
		"write_dirs": "write", "exec": "exec", "exec_dirs": "exec"}
	st := reflect.TypeOf(capability.Set{})
	for i := 0; i < st.NumField(); i++ {
		key, _, _ := strings.Cut(st.Field(i).Tag.Get("json"), ",")
		name := paths[key]
		if name == "" {
			name = strings.ReplaceAll(key, "_", "-")
		}
		if fs.Lookup(name) == nil {
			t.Errorf("field %s (%s): no flag --%s", st.Field(i).Name, key, name)
		}
	}
}

// Help spells the flags as the README does (--egress, not -egress), and
// asking for it is no error.
func TestHelpSpellsFlagsWithTwoDashes(t *testing.T) {
	for _, args := range [][]string{{"run", "--help"}, {"explain", "-h"}, {"check", "--help"}, {"--help"}} {
		code, out, errs := cli(t, "", args...)
		text := out + errs
		if code != 0 {
			t.Errorf("%v: exit %d", args, code)
		}
		if !strings.Contains(text, "\n  --") {
			t.Errorf("%v: no --flag in %q", args, text)
		}
		for _, l := range strings.Split(text, "\n") {
			if strings.HasPrefix(l, "  -") && !strings.HasPrefix(l, "  --") {
				t.Errorf("%v: flag spelled with one dash: %q", args, l)
			}
		}
	}
	if _, out, errs := cli(t, "", "run", "--help"); !strings.Contains(out+errs, "--egress value") || !strings.Contains(out+errs, "-- CMD [ARGS...]") {
		t.Errorf("run --help: %s%s", out, errs)
	}
}

// A command that is not there exits 127, as in a shell: not in PATH, or on
// the host but outside the view (named as such).
func TestRunCommandNotFoundIs127(t *testing.T) {
	code, _, errs := cli(t, "", "run", "--base", "--", "python4-not-here")
	if code != exitNotFound || !strings.Contains(errs, "command not found") || !strings.Contains(errs, "python4-not-here") {
		t.Fatalf("missing command: %d %q", code, errs)
	}
	dir := testenv.Tempdir(t)
	tool := filepath.Join(dir, "tool")
	os.WriteFile(tool, []byte("#!/bin/sh\necho hi\n"), 0o755)
	code, _, errs = cli(t, "", "run", "--base", "--", tool)
	if code != exitNotFound || !strings.Contains(errs, tool+" is not in the sandbox's view") {
		t.Fatalf("command outside the view: %d %q", code, errs)
	}
	testenv.RequireUserNS(t)
	if code, out, errs := cli(t, "", "run", "--base", "--exec", tool, "--", tool); code != 0 || out != "hi\n" {
		t.Fatalf("granted: %d %q %q", code, out, errs)
	}
}

// --exec takes a file (exec) or a directory (exec_dirs); explain warns when
// a granted directory is writable and executable at once.
func TestExecDirFlag(t *testing.T) {
	dir := testenv.Tempdir(t)
	code, out, errs := cli(t, "", "explain", "--base", "--exec", "/usr/bin", "--exec", "/usr/bin/env", "--workdir", dir)
	if code != 0 || !strings.Contains(out, "exec dir /usr/bin") || !strings.Contains(out, "exec /usr/bin/env") || strings.Contains(out, "WARNING") {
		t.Fatalf("explain: %d %s %s", code, out, errs)
	}
	code, out, errs = cli(t, "", "explain", "--base", "--workdir", dir, "--exec", dir)
	if code != 0 || !strings.Contains(out, "workdir "+dir) || !strings.Contains(out, "WARNING: code the tool writes here can run") {
		t.Fatalf("explain writable exec: %d %s %s", code, out, errs)
	}
}

// Paths on the command line may be relative, as a shell user writes them:
// they mean the same as from the current directory.
func TestRelativePathFlags(t *testing.T) {
	dir := testenv.Tempdir(t)
	if err := os.Mkdir(filepath.Join(dir, "wd"), 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(dir, "wd"), 0o777)
	t.Chdir(dir)
	code, out, errs := cli(t, "", "explain", "--base", "--workdir", "wd", "--exec", "wd", "--read", ".")
	if code != 0 || !strings.Contains(out, "workdir "+filepath.Join(dir, "wd")) || !strings.Contains(out, "read "+dir) {
		t.Fatalf("explain with relative paths: %d %s %s", code, out, errs)
	}
}

// The two commands, as a new user types them: a directory made by
// mkdir (0755, the caller's) is the tool's workdir without a chmod, the
// tool's files belong to the caller, and with --exec on it the tool builds
// and runs a program there.
func TestWorkdirJustWorks(t *testing.T) {
	testenv.RequireUserNS(t)
	dir := testenv.Tempdir(t)
	t.Chdir(dir)
	if err := os.Mkdir("wd", 0o755); err != nil {
		t.Fatal(err)
	}
	code, out, errs := cli(t, "", "run", "--base", "--workdir", "wd", "--", "sh", "-c", "echo ok > out")
	if code != 0 {
		t.Fatalf("write in the workdir: exit %d %q %q", code, out, errs)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, "wd", "out"), &st); err != nil || st.Uid != uint32(os.Geteuid()) || st.Gid != uint32(os.Getegid()) {
		t.Fatalf("out: %v, owner %d:%d, want the caller's", err, st.Uid, st.Gid)
	}
	src := "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n"
	if err := os.WriteFile(filepath.Join("wd", "hello.c"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs = cli(t, "", "run", "--base", "--workdir", "wd", "--exec", "wd", "--", "sh", "-c", "gcc -o hello hello.c && ./hello")
	if code != 0 || out != "hello\n" {
		t.Fatalf("gcc in the workdir: exit %d %q %q", code, out, errs)
	}
	code, out, errs = cli(t, "", "run", "--base", "--workdir", "temp", "--workdir-exec", "--", "sh", "-c", "pwd; cp /usr/bin/true t && ./t && echo ran")
	if code != 0 || out != "/workspace\nran\n" {
		t.Fatalf("--workdir temp: exit %d %q %q", code, out, errs)
	}
}

// Command toolcell runs a command in a toolcell sandbox, explains a policy,
// and checks what this host can enforce.
//
//	toolcell run [flags] -- CMD [ARGS...]
//	toolcell explain [flags]
//	toolcell check
//	toolcell mcp [--tool shell,python] [--http ADDR] [--audit FILE|-] [--audit-dir DIR]
//
// Exit status of run: the tool's own; 128+N when it was killed by signal N;
// 125 when the sandbox could not be set up (with a one-line reason on
// stderr).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/sandbox"
)

const exitSetup = 125

// exitNotFound is a shell's status for a command that is not there.
const exitNotFound = 127

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  toolcell run [flags] -- CMD [ARGS...]   run CMD in a sandbox
  toolcell explain [flags]                print the policy as grant -> mechanism -> evidence
  toolcell check [--deep]                 report which mechanisms this host has
  toolcell mcp [flags]                    serve sandboxed shell and python tools to MCP
                                          clients (stdio, or --http ADDR)

flags of run and explain:
`)
}

// newFlagSet is a flag set for one subcommand whose help spells the flags
// as the README does (--name), with what the subcommand takes after them.
func newFlagSet(name, operands string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: toolcell %s [flags]%s\n\nflags:\n", name, operands)
		printFlags(fs.Output(), fs)
	}
	return fs
}

// parseExit is the exit status after a flag parse error: 0 when help was
// asked for, 2 otherwise (the flag package printed why).
func parseExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}

// renamedFlags maps each flag an earlier version had to the flag that
// replaced it, named as the policy field is (see package capability). The
// old names are refused with an error naming the new one, not accepted as
// aliases.
var renamedFlags = map[string]string{
	"connect":        "egress",
	"allow-range":    "egress-allow",
	"allow-syscalls": "syscalls",
}

// parseFlags parses args with fs, after refusing a renamed flag by name
// (the flag package would only say it is not defined). It looks at the
// flags where the flag package will: up to the first operand or "--".
func parseFlags(fs *flag.FlagSet, args []string) error {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || len(a) < 2 || a[0] != '-' {
			break
		}
		name, _, hasValue := strings.Cut(strings.TrimPrefix(a[1:], "-"), "=")
		f := fs.Lookup(name)
		if nw, ok := renamedFlags[name]; ok && f == nil {
			err := fmt.Errorf("flag --%s was renamed to --%s", name, nw)
			fmt.Fprintf(fs.Output(), "toolcell %s: %v\n", fs.Name(), err)
			return err
		}
		if f == nil {
			break // the flag package says what is wrong
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !hasValue && !(ok && b.IsBoolFlag()) {
			i++ // the flag's value
		}
	}
	return fs.Parse(args)
}

// printFlags prints fs's flags as --name, each with its usage.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		if arg != "" {
			arg = " " + arg
		}
		fmt.Fprintf(w, "  --%s%s\n    \t%s\n", f.Name, arg, usage)
	})
}

func realMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stdin, stdout, stderr)
	case "explain":
		return cmdExplain(args[1:], stdout, stderr)
	case "check":
		return cmdCheck(args[1:], stdout, stderr)
	case "mcp":
		return cmdMCP(args[1:], stdin, stdout, stderr)
	case "-h", "--help", "help":
		usage(stdout)
		printFlags(stdout, policyFlags(flag.NewFlagSet("", flag.ContinueOnError)).fs)
		return 0
	}
	fmt.Fprintf(stderr, "toolcell: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

// policyOpts collects the policy flags shared by run and explain.
type policyOpts struct {
	fs     *flag.FlagSet
	policy string
	set    *capability.Set
	audit  string
}

func policyFlags(fs *flag.FlagSet) *policyOpts {
	o := &policyOpts{fs: fs, set: capability.New()}
	list := func(name, usage string, add func(string)) {
		fs.Func(name, usage+" (repeatable)", func(v string) error { add(v); return nil })
	}
	size := func(name, usage string, set func(capability.Size)) {
		fs.Func(name, usage, func(v string) error {
			n, err := capability.ParseSize(v)
			if err != nil {
				return err
			}
			set(n)
			return nil
		})
	}
	fs.StringVar(&o.policy, "policy", "", "JSON or YAML policy manifest; flags add to it")
	fs.Func("name", "the policy's name (name)", func(v string) error { o.set.Name = v; return nil })
	fs.BoolFunc("base", "grant the read-only system view (/usr, loader cache, generated /etc)", func(string) error { o.set.Base = true; return nil })
	list("read", "grant read-only access to a file or directory", func(v string) { o.addPath(absPath(v), false) })
	list("write", "grant read-write access to a file or directory", func(v string) { o.addPath(absPath(v), true) })
	list("exec", "let a file, or every file below a directory, be executed (exec, exec_dirs); a directory also granted writable (--write, --workdir) lets written code run", func(v string) {
		v = absPath(v)
		if fi, err := os.Stat(v); err == nil && fi.IsDir() {
			o.set.ExecDirs = append(o.set.ExecDirs, v)
			return
		}
		o.set.Exec = append(o.set.Exec, v)
	})
	fs.Func("workdir", "read-write directory that becomes the working directory; \"temp\": a fresh empty one for this run, at "+capability.TempWorkdirPath+", removed afterwards (./temp for a directory named temp)", func(v string) error {
		if v == capability.TempWorkdir() {
			o.set.Workdir = v
			return nil
		}
		o.set.Workdir = absPath(v)
		return nil
	})
	fs.BoolFunc("workdir-exec", "let files in the workdir be executed (workdir_exec): code the tool writes there can run", func(string) error { o.set.WorkdirExec = true; return nil })
	list("follow-symlinks", "let the grant of this path (as given to --read, --write, --exec or --workdir) pass through symbolic links (follow_symlinks); other grants meeting a link are refused", func(v string) {
		o.set.FollowSymlinks = append(o.set.FollowSymlinks, absPath(v))
	})
	size("tmp", "size of /tmp (e.g. 64M)", func(n capability.Size) { o.set.Tmp = n })
	list("env", "NAME=VALUE for the tool, or NAME to pass the host's value", func(v string) { o.addEnv(v) })
	size("memory", "memory limit (e.g. 256M)", func(n capability.Size) { o.set.Memory = n })
	fs.Func("pids", "task limit", func(v string) error {
		var n int64
		if _, err := fmt.Sscan(v, &n); err != nil {
			return fmt.Errorf("pids %q: not an integer", v)
		}
		o.set.Pids = n
		return nil
	})
	for _, c := range []struct {
		name, usage string
		dst         *int64
	}{
		{"inotify-instances", "inotify instances the tool may hold (inotify_instances)", &o.set.InotifyInstances},
		{"inotify-watches", "inotify watches the tool may hold (inotify_watches)", &o.set.InotifyWatches},
	} {
		fs.Func(c.name, c.usage, func(v string) error {
			var n int64
			if _, err := fmt.Sscan(v, &n); err != nil {
				return fmt.Errorf("%s %q: not an integer", c.name, v)
			}
			*c.dst = n
			return nil
		})
	}
	fs.Func("cpu", "CPU limit as a fraction of one CPU (e.g. 0.5)", func(v string) error {
		var f float64
		if _, err := fmt.Sscan(v, &f); err != nil {
			return fmt.Errorf("cpu %q: not a number", v)
		}
		o.set.CPU = f
		return nil
	})
	fs.Func("timeout", "wall-clock limit (e.g. 30s)", func(v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return err
		}
		o.set.Timeout = capability.Duration(d)
		return nil
	})
	size("max-output", "bytes captured per output stream", func(n capability.Size) { o.set.MaxOutput = n })
	fs.Func("output-overflow", "what passing --max-output does: kill (the default: the sandbox ends) or truncate (the tool runs on, the rest is counted) (output_overflow)", func(v string) error {
		o.set.OutputOverflow = v
		return nil
	})
	size("max-file-size", "largest file the tool may write (RLIMIT_FSIZE)", func(n capability.Size) { o.set.MaxFileSize = n })
	list("egress", "grant egress to name:port or *.domain:port (DNS and relay by toolcell; see README)", func(v string) { o.set.Egress = append(o.set.Egress, v) })
	list("egress-allow", "CIDR range a granted name may resolve into although private/loopback/link-local (egress_allow)", func(v string) { o.set.EgressAllow = append(o.set.EgressAllow, v) })
	fs.Func("http-api", "HOST,HEADER,SECRET[,PREFIX]: the tool calls http://HOST/, the supervisor adds HEADER: PREFIX+secret and forwards to https://HOST/ (SECRET: env:NAME or file:/path; the value never enters the sandbox)", func(v string) error {
		f := strings.SplitN(v, ",", 4)
		if len(f) < 3 {
			return fmt.Errorf("http-api %q: want HOST,HEADER,SECRET[,PREFIX]", v)
		}
		a := capability.HTTPAPI{Host: f[0], Header: f[1], Secret: f[2]}
		if len(f) == 4 {
			a.Prefix = f[3]
		}
		o.set.HTTPAPI = append(o.set.HTTPAPI, a)
		return nil
	})
	fs.Func("syscalls", "comma-separated syscall kinds the tool may use besides the base set and exec ("+strings.Join(capability.AllSyscalls(), ",")+"; default all) (syscalls)", func(v string) error {
		if strings.HasPrefix(v, "-") {
			// explain's --syscalls listed the syscalls before the flag
			// named the policy field.
			return fmt.Errorf("want comma-separated syscall kinds, not %q (explain lists the allowed syscalls with --list-syscalls)", v)
		}
		for _, k := range strings.Split(v, ",") {
			o.set.Syscalls = append(o.set.Syscalls, strings.TrimSpace(k))
		}
		return nil
	})
	return o
}

// absPath makes a path given on the command line absolute, as a shell user
// means it (a manifest's paths must be absolute already). Where the current
// directory cannot be had, p is kept for validation to name.
func absPath(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// addPath sorts a --read/--write path into the file or directory list by
// what it is on the host; a missing path is left for validation to name.
func (o *policyOpts) addPath(p string, write bool) {
	fi, err := os.Stat(p)
	dir := err == nil && fi.IsDir()
	switch {
	case write && dir:
		o.set.WriteDirs = append(o.set.WriteDirs, p)
	case write:
		o.set.WriteFiles = append(o.set.WriteFiles, p)
	case dir:
		o.set.ReadDirs = append(o.set.ReadDirs, p)
	default:
		o.set.ReadFiles = append(o.set.ReadFiles, p)
	}
}

func (o *policyOpts) addEnv(v string) {
	name, value, ok := strings.Cut(v, "=")
	if !ok {
		value = os.Getenv(name)
	}
	o.set.WithEnv(name, value)
}

// build merges the manifest (if any) with the flags.
func (o *policyOpts) build() (*capability.Set, error) {
	if o.policy == "" {
		return o.set, nil
	}
	m, err := capability.LoadManifest(o.policy)
	if err != nil {
		return nil, err
	}
	f := o.set
	if f.Name != "" {
		m.Name = f.Name
	}
	m.Base = m.Base || f.Base
	m.ReadFiles = append(m.ReadFiles, f.ReadFiles...)
	m.ReadDirs = append(m.ReadDirs, f.ReadDirs...)
	m.WriteFiles = append(m.WriteFiles, f.WriteFiles...)
	m.WriteDirs = append(m.WriteDirs, f.WriteDirs...)
	m.Exec = append(m.Exec, f.Exec...)
	m.ExecDirs = append(m.ExecDirs, f.ExecDirs...)
	if f.Workdir != "" {
		m.Workdir = f.Workdir
	}
	m.WorkdirExec = m.WorkdirExec || f.WorkdirExec
	m.FollowSymlinks = append(m.FollowSymlinks, f.FollowSymlinks...)
	m.Egress = append(m.Egress, f.Egress...)
	m.EgressAllow = append(m.EgressAllow, f.EgressAllow...)
	m.HTTPAPI = append(m.HTTPAPI, f.HTTPAPI...)
	if len(f.Syscalls) > 0 {
		// --syscalls narrows or widens what the manifest allowed:
		// the flag's list replaces it, as the scalar flags do.
		m.Syscalls = f.Syscalls
	}
	for k, v := range f.Env {
		m.WithEnv(k, v)
	}
	if f.Tmp != 0 {
		m.Tmp = f.Tmp
	}
	if f.Memory != 0 {
		m.Memory = f.Memory
	}
	if f.Pids != 0 {
		m.Pids = f.Pids
	}
	if f.CPU != 0 {
		m.CPU = f.CPU
	}
	if f.Timeout != 0 {
		m.Timeout = f.Timeout
	}
	if f.MaxOutput != 0 {
		m.MaxOutput = f.MaxOutput
	}
	if f.OutputOverflow != "" {
		m.OutputOverflow = f.OutputOverflow
	}
	if f.MaxFileSize != 0 {
		m.MaxFileSize = f.MaxFileSize
	}
	if f.InotifyInstances != 0 {
		m.InotifyInstances = f.InotifyInstances
	}
	if f.InotifyWatches != 0 {
		m.InotifyWatches = f.InotifyWatches
	}
	return m, nil
}

func cmdRun(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	// One run, then the process exits: no fork server (Runner.OneShot);
	// its stage-2 starts while the flags are parsed.
	r := &sandbox.Runner{OneShot: true}
	defer r.Prepare()()
	fs := newFlagSet("run", " -- CMD [ARGS...]", stderr)
	o := policyFlags(fs)
	fs.StringVar(&o.audit, "audit", "", "write the audit record (JSON) to FILE; - means stderr")
	compact := fs.Bool("audit-compact", false, "write the compact record (Record.Compact: mounts, allowed syscalls and Landlock rules as hashes)")
	fs.BoolVar(&r.AllowNoIDMap, "allow-no-idmap", false, "where the kernel cannot idmap a writable grant's file system (overlayfs, say), bind it plain: the tool writes as the run's host uid, not as the owner (Runner.AllowNoIDMap; enforcement.degraded says so)")
	if err := parseFlags(fs, args); err != nil {
		return parseExit(err)
	}
	argv := fs.Args()
	if len(argv) == 0 {
		fmt.Fprintln(stderr, "toolcell run: no command (use: toolcell run [flags] -- CMD [ARGS...])")
		return 2
	}
	set, err := o.build()
	if err != nil {
		fmt.Fprintf(stderr, "toolcell: %v\n", oneLine(err))
		return exitSetup
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := sandbox.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	res, err := r.Run(ctx, set, cmd)
	var rec *audit.Record
	var re *sandbox.RunError
	if errors.As(err, &re) {
		rec = re.Record
	} else if res != nil {
		rec = res.Audit
	}
	if o.audit != "" && rec != nil {
		if *compact {
			rec = rec.Compact()
		}
		if werr := writeRecord(o.audit, rec, stderr); werr != nil {
			fmt.Fprintf(stderr, "toolcell: audit: %v\n", werr)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "toolcell: %v\n", oneLine(err))
		if errors.Is(err, sandbox.ErrNotFound) {
			return exitNotFound
		}
		return exitSetup
	}
	switch {
	case res.Exit.Signal != "":
		return 128 + int(signalNumber(res.Exit.Signal))
	case res.Exit.Code >= 0:
		return res.Exit.Code
	}
	return exitSetup
}

func writeRecord(dst string, rec *audit.Record, stderr io.Writer) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if dst == "-" {
		_, err = stderr.Write(b)
		return err
	}
	return os.WriteFile(dst, b, 0o600)
}

func signalNumber(name string) syscall.Signal {
	if n := unix.SignalNum(name); n != 0 {
		return n
	}
	return syscall.SIGKILL
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/seccomp"
)

// cmdExplain prints the policy as the napkin table: each grant, the kernel
// mechanism that enforces it, and where the audit record shows it.
func cmdExplain(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("explain", "", stderr)
	o := policyFlags(fs)
	listSyscalls := fs.Bool("list-syscalls", false, "also list every syscall the filter allows, with the group that allows it")
	diff := fs.String("diff", "", "compare with the policy in this manifest: list the syscalls whose treatment changes, widening first")
	if err := parseFlags(fs, args); err != nil {
		return parseExit(err)
	}
	set, err := o.build()
	if err == nil {
		err = set.Validate()
	}
	if err != nil {
		fmt.Fprintf(stderr, "toolcell: %v\n", oneLine(err))
		return exitSetup
	}
	hash, _ := set.Hash()
	fmt.Fprintf(stdout, "policy %s", hash)
	if set.Name != "" {
		fmt.Fprintf(stdout, " (%s)", set.Name)
	}
	fmt.Fprintln(stdout)
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GRANT\tWHAT SAYS NO (KERNEL)\tEVIDENCE IN THE RECORD")
	row := func(g, m, e string) { fmt.Fprintf(tw, "%s\t%s\t%s\n", g, m, e) }
	row("(always)", "user ns (uid 1000 -> unprivileged host uid), all capability sets empty, no_new_privs, setsid", "enforcement.namespaces, uid_map, capabilities, cap_sets, no_new_privs")
	row("(always) nothing else on disk", "fresh tmpfs root, read-only; pivot_root, old root detached; own /proc with host knobs masked", "enforcement.mounts (the whole view)")
	row("(always) the grants again", "Landlock, entered by the tool: the same grants by path inside the view, nothing else (EACCES); with egress grants TCP connect to the relay's ports only", "enforcement.landlock (abi, handled rights, rules)")
	if set.Base {
		row("base", "/usr and merged-/usr links, loader cache, /etc/alternatives, CA certificates: bind ro (exec on /usr); generated passwd/group/hosts", "enforcement.mounts")
	}
	for _, p := range append(append([]string{}, set.ReadFiles...), set.ReadDirs...) {
		row("read "+p, "bind mount ro,nosuid,nodev,noexec", "enforcement.mounts")
	}
	// A path granted both writable and executable is one mount without
	// noexec: what the tool writes there can run.
	writable, executable := map[string]bool{set.Workdir: set.Workdir != ""}, map[string]bool{}
	for _, p := range append(append([]string{}, set.WriteFiles...), set.WriteDirs...) {
		writable[p] = true
	}
	for _, p := range append(append([]string{}, set.Exec...), set.ExecDirs...) {
		executable[p] = true
	}
	// As root every writable grant is idmapped to its owner; unprivileged
	// the sandbox user is the caller: either way the tool's files are the
	// owner's (the caller's).
	idmap := "; as root idmapped to its owner, whose the tool's files become"
	writeMode := func(p string) string {
		if executable[p] {
			return "bind mount rw,nosuid,nodev, exec (WARNING: code the tool writes here can run)"
		}
		return "bind mount rw,nosuid,nodev,noexec"
	}
	for _, p := range append(append([]string{}, set.WriteFiles...), set.WriteDirs...) {
		row("write "+p, writeMode(p)+idmap, "enforcement.mounts[].idmap")
	}
	for _, p := range set.Exec {
		if !writable[p] {
			row("exec "+p, "bind mount ro,nosuid,nodev (exec allowed for this file only)", "enforcement.mounts")
		}
	}
	for _, p := range set.ExecDirs {
		if !writable[p] {
			row("exec dir "+p, "bind mount ro,nosuid,nodev (every file below may be executed)", "enforcement.mounts")
		}
	}
	if set.WorkdirExec {
		executable[set.Workdir] = true
	}
	switch {
	case set.HasTempWorkdir():
		row("workdir temp", "a fresh empty directory per run (host TMPDIR, mode 0700, the caller's), "+writeMode(set.Workdir)+" at "+capability.TempWorkdirPath+"; cwd, HOME and PWD; removed after the run", "temp_workdir (host path), enforcement.mounts, command.cwd")
	case set.Workdir != "":
		row("workdir "+set.Workdir, writeMode(set.Workdir)+idmap+"; cwd", "enforcement.mounts[].idmap, command.cwd")
	}
	if len(set.ReadFiles)+len(set.ReadDirs)+len(set.WriteFiles)+len(set.WriteDirs)+len(set.Exec)+len(set.ExecDirs) > 0 || set.Workdir != "" {
		row("(always) grants pass no symlinks", "a grant meeting a symlink (but the root's /bin, /lib, ... -> /usr) is refused unless follow_symlinks lists it; sources opened with openat2(RESOLVE_NO_SYMLINKS), again by the stage-2", "setup error naming the grant, the link and its target")
	}
	for _, p := range set.FollowSymlinks {
		row("follow symlinks "+p, "the grant resolves through its links, each recreated in the view; the resolved path is bind-mounted and opened with openat2(RESOLVE_NO_SYMLINKS); a link inside a writable grant is still refused", "enforcement.mounts (src: the resolved path)")
	}
	row(fmt.Sprintf("tmp %s", set.TmpOrDefault()), "tmpfs /tmp size cap, nosuid,nodev,noexec", "enforcement.mounts")
	if len(set.Env) > 0 {
		names := make([]string, 0, len(set.Env))
		for k := range set.Env {
			names = append(names, k)
		}
		row("env "+strings.Join(names, ","), "exec message carries only these (and PATH); host environment never passed", "command.env_names (values never recorded)")
	}
	for _, a := range set.HTTPAPI {
		row("http api "+a.Host, "tool speaks plain HTTP to http://"+a.Host+"/ in the sandbox; the supervisor checks Host, adds "+a.Header+" from secret "+a.Secret+" (never in the sandbox) and forwards to https://"+a.Host+"/", "network[] kind http (method, path, status, bytes, secret reference); enforcement.egress.http_api")
	}
	if len(set.Egress) > 0 || len(set.HTTPAPI) > 0 {
		for _, ep := range set.Egress {
			row("egress "+ep, "toolcell's DNS gives the name a loopback address in the sandbox's empty network namespace; a listener there is served by the supervisor, which checks SNI/Host, resolves on the host, refuses private/loopback/metadata addresses and relays", "network[] (dns, connect: ip, sni, bytes, reason); enforcement.egress")
		}
		for _, r := range set.EgressAllow {
			row("egress allow "+r, "the relay dials a granted name resolving into this range (refused by default)", "network[] ip; enforcement.egress.allow")
		}
		row("(other names, IPs)", "DNS answers NXDOMAIN; every other address reaches only the relay's listeners (refused) or nothing (connection refused); seccomp allows only AF_INET/AF_INET6 stream+dgram sockets", "network[] (refused dns queries, direct connects to granted ports, UDP datagrams)")
	} else {
		row("(no network)", "empty network namespace, loopback only; AF_INET/AF_INET6 sockets denied by seccomp", "enforcement.namespaces (net); denials[] (socket)")
	}
	row(fmt.Sprintf("memory %s", set.MemoryOrDefault()), "cgroup memory limit, swap 0", "resources.memory_peak_bytes, oom_kills; exit.reason=oom")
	row(fmt.Sprintf("pids %d", set.PidsOrDefault()), "cgroup pids limit", "resources.pids_peak")
	row(fmt.Sprintf("inotify %d instances, %d watches", set.InotifyInstancesOrDefault(), set.InotifyWatchesOrDefault()),
		"max_inotify_instances/_watches of the sandbox's user namespace (owned by the run's uid)", "enforcement.user_limits")
	row(fmt.Sprintf("cpu %g", set.CPUOrDefault()), "cgroup cpu quota", "resources.cpu_user_us, cpu_system_us")
	row(fmt.Sprintf("timeout %s", set.TimeoutOrDefault()), "supervisor timer; whole cgroup killed", "exit.reason=timeout")
	row(fmt.Sprintf("max output %s", set.MaxOutputOrDefault()), "supervisor byte cap per stream; whole cgroup killed", "exit.reason=output_limit; output.*_truncated")
	row(fmt.Sprintf("max file size %s", set.MaxFileSizeOrDefault()), "RLIMIT_FSIZE: a larger write fails (EFBIG, SIGXFSZ)", "exit.signal=SIGXFSZ when the tool did not handle it")
	row("(always) no core dumps, 1024 descriptors", "RLIMIT_CORE 0, RLIMIT_NOFILE 1024", "-")
	pol := seccomp.PolicyFor(set)
	f, err := seccomp.CompileCached(pol)
	if err != nil {
		fmt.Fprintf(stderr, "toolcell: seccomp: %v\n", err)
		return exitSetup
	}
	var groups []string
	for _, g := range pol.Groups {
		groups = append(groups, string(g))
	}
	row(fmt.Sprintf("syscalls %s (%d allowed)", strings.Join(groups, ","), len(f.Allowed)), fmt.Sprintf("seccomp allowlist: denied -> %s (supervisor records, answers EPERM), unknown -> %s, foreign arch -> %s", f.DeniedAction, f.DefaultAction, f.ForeignArchAction), "enforcement.seccomp; denials[] (syscall, decoded args, count); exit.reason=seccomp_kill")
	tw.Flush()
	if *listSyscalls {
		fmt.Fprintln(stdout)
		tw = tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SYSCALL\tGROUP\tCONDITION")
		for _, r := range seccomp.Explain(pol) {
			if r.Action == seccomp.ActionAllow {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Syscall, r.Group, r.Condition)
			}
		}
		tw.Flush()
	}
	if *diff != "" {
		old, err := capability.LoadManifest(*diff)
		if err == nil {
			err = old.Validate()
		}
		if err != nil {
			fmt.Fprintf(stderr, "toolcell: --diff: %v\n", oneLine(err))
			return exitSetup
		}
		changes := seccomp.Diff(seccomp.PolicyFor(old), pol)
		fmt.Fprintf(stdout, "\nsyscalls compared with %s: %d changed\n", *diff, len(changes))
		tw = tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SYSCALL\tWAS\tNOW\tWIDENS")
		for _, c := range changes {
			w := ""
			if c.Widens {
				w = "WIDENS"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Syscall, ruleText(c.From), ruleText(c.To), w)
		}
		tw.Flush()
	}
	return 0
}

func ruleText(r seccomp.Rule) string {
	s := string(r.Action)
	if r.Group != "" {
		s += " (" + string(r.Group) + ")"
	}
	if r.Condition != "" && r.Action == seccomp.ActionAllow {
		s += "; " + r.Condition
	}
	return s
}

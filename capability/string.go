package capability

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// String returns a human-readable summary of the policy, one grant per
// line, ending with the effective limits. Environment variables are listed
// by name only: their values may be secrets. Paths with non-printable
// characters are quoted so that a path cannot forge a line.
func (s *Set) String() string {
	if s == nil {
		return "<nil capability set>"
	}
	var b strings.Builder
	line := func(format string, args ...any) {
		fmt.Fprintf(&b, format, args...)
		b.WriteByte('\n')
	}
	if s.Name != "" {
		line("policy %s", strconv.Quote(s.Name))
	}
	if s.Base {
		line("base system view")
	}
	list := func(label string, paths []string) {
		for _, p := range paths {
			line("%s %s", label, showPath(p))
		}
	}
	list("read ", s.ReadFiles)
	list("read  dir", s.ReadDirs)
	list("write", s.WriteFiles)
	list("write dir", s.WriteDirs)
	list("exec ", s.Exec)
	list("exec  dir", s.ExecDirs)
	switch {
	case s.HasTempWorkdir():
		line("workdir: a fresh one per run, at %s", TempWorkdirPath)
	case s.Workdir != "":
		line("workdir %s", showPath(s.Workdir))
	}
	if s.WorkdirExec {
		line("workdir executable: code written there can run")
	}
	for _, p := range sortedUnique(s.FollowSymlinks) {
		line("symlinks followed for %s", showPath(p))
	}
	if len(s.ReadFiles)+len(s.ReadDirs)+len(s.WriteFiles)+len(s.WriteDirs)+len(s.Exec)+len(s.ExecDirs) == 0 && s.Workdir == "" && !s.Base {
		line("no file access")
	}
	line("tmp %s", s.TmpOrDefault())
	if len(s.Env) > 0 {
		names := make([]string, 0, len(s.Env))
		for k := range s.Env {
			names = append(names, showPath(k))
		}
		sort.Strings(names)
		line("env %s (values hidden)", strings.Join(names, ", "))
	} else {
		line("env empty (PATH only)")
	}
	for _, ep := range sortedUnique(s.Egress) {
		line("egress %s", showPath(ep))
	}
	for _, r := range sortedUnique(s.EgressAllow) {
		line("egress may reach %s (refused by default)", showPath(r))
	}
	for _, a := range sortedAPIs(s.HTTPAPI) {
		line("http api %s: header %s from secret %s", showPath(a.Host), showPath(a.Header), showPath(a.Secret))
	}
	if len(s.Syscalls) > 0 {
		line("syscalls %s (and the base set, exec)", strings.Join(s.SyscallsOrDefault(), ", "))
	}
	fmt.Fprintf(&b, "memory %s, pids %d, cpu %s, timeout %s, max output %s, max file size %s",
		s.MemoryOrDefault(), s.PidsOrDefault(), strconv.FormatFloat(s.CPUOrDefault(), 'g', -1, 64), s.TimeoutOrDefault(), s.MaxOutputOrDefault(), s.MaxFileSizeOrDefault())
	if s.InotifyInstancesOrDefault() != DefaultInotifyInstances || s.InotifyWatchesOrDefault() != DefaultInotifyWatches {
		fmt.Fprintf(&b, ", inotify instances %d, inotify watches %d", s.InotifyInstancesOrDefault(), s.InotifyWatchesOrDefault())
	}
	return b.String()
}

func showPath(p string) string {
	for _, r := range p {
		if !unicode.IsPrint(r) || r == ' ' {
			return strconv.Quote(p)
		}
	}
	return p
}

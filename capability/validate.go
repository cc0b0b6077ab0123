package capability

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Limits on the shape of a policy that are not limits on the tool.
const (
	// MaxPathLen is the longest path, in bytes, a grant may name.
	MaxPathLen = 4096
	// MaxNameLen is the longest policy Name, in bytes.
	MaxNameLen = 128
	// MinMemory is the smallest non-zero memory limit: below it no process
	// can start, so a smaller value is a mistake rather than a policy.
	MinMemory Size = MiB
	// MinCPU is the smallest non-zero CPU fraction.
	MinCPU = 0.01
)

// forbiddenRoots are trees the sandbox builds itself; host grants at or
// under them are refused.
var forbiddenRoots = []struct{ dir, why string }{
	{"/proc", "the sandbox mounts its own /proc"},
	{"/sys", "the sandbox does not expose /sys"},
	{"/dev", "the sandbox builds its own minimal /dev"},
}

type grantClass int

const (
	classRead grantClass = iota
	classWrite
	classExec
)

type grant struct {
	field string // "read_files[1]", "workdir"
	list  string // "read_files", "workdir"
	path  string
	class grantClass
	dir   bool // the path must be a directory (else a regular file)
	// follow: listed in follow_symlinks, so it may resolve through links.
	follow bool
}

// grants lists every path grant of s in manifest order.
func (s *Set) grants() []grant {
	var gs []grant
	follow := map[string]bool{}
	for _, p := range s.FollowSymlinks {
		follow[p] = true
	}
	add := func(list string, paths []string, class grantClass, dir bool) {
		for i, p := range paths {
			gs = append(gs, grant{field: fmt.Sprintf("%s[%d]", list, i), list: list, path: p, class: class, dir: dir, follow: follow[p]})
		}
	}
	add("read_files", s.ReadFiles, classRead, false)
	add("read_dirs", s.ReadDirs, classRead, true)
	add("write_files", s.WriteFiles, classWrite, false)
	add("write_dirs", s.WriteDirs, classWrite, true)
	add("exec", s.Exec, classExec, false)
	add("exec_dirs", s.ExecDirs, classExec, true)
	if s.Workdir != "" && !s.HasTempWorkdir() {
		gs = append(gs, grant{field: "workdir", list: "workdir", path: s.Workdir, class: classWrite, dir: true, follow: follow[s.Workdir]})
	}
	return gs
}

// Validate reports whether s is a policy toolcell will enforce. It fails
// closed: anything it cannot confirm is an error. All problems are
// reported at once, joined with errors.Join; each is a *FieldError and
// matches ErrInvalid with errors.Is.
//
// Validate checks the policy's syntax and limits (the checks Canonical also
// makes) and then the host: every granted path must exist, with the right
// type (regular files for read_files, write_files and exec; directories for
// read_dirs, write_dirs, exec_dirs and workdir), must not meet a symbolic link on its
// way unless follow_symlinks lists it (the merged-/usr links of the root
// excepted, see MergedUsrLinks), and must not reach the root or /proc,
// /sys or /dev through one. The host checks describe the
// file system at the moment of the call; the sandbox checks again when it
// mounts.
func (s *Set) Validate() error {
	if s == nil {
		return &FieldError{Field: "set", Reason: "nil capability set"}
	}
	errs, ok := s.checkStatic()
	errs = append(errs, s.checkHost(ok)...)
	return joinErrors(errs)
}

// checkStatic makes every check that does not touch the file system. ok
// holds the grants whose paths are well formed.
func (s *Set) checkStatic() (errs []error, ok []grant) {
	errs = append(errs, checkName(s.Name)...)
	for _, g := range s.grants() {
		if reason := checkPath(g.path); reason != "" {
			errs = append(errs, &FieldError{Field: g.field, Value: shorten(g.path), Reason: reason})
			continue
		}
		ok = append(ok, g)
	}
	errs = append(errs, conflicts(ok, nil)...)
	errs = append(errs, checkFollow(s.FollowSymlinks, s.grants())...)
	errs = append(errs, s.checkLimits()...)
	switch s.OutputOverflow {
	case "", OverflowKill, OverflowTruncate:
	default:
		errs = append(errs, &FieldError{Field: "output_overflow", Value: s.OutputOverflow, Reason: `must be "kill" or "truncate"`})
	}
	if s.WorkdirExec && s.Workdir == "" {
		errs = append(errs, &FieldError{Field: "workdir_exec", Value: "true", Reason: "needs a workdir"})
	}
	errs = append(errs, checkEnv(s.Env)...)
	errs = append(errs, checkSyscalls(s.Syscalls)...)
	errs = append(errs, checkEgress(s.Egress)...)
	errs = append(errs, checkAPIs(s.HTTPAPI, s.Egress)...)
	errs = append(errs, checkRanges(s.EgressAllow)...)
	return errs, ok
}

// checkStaticErr is checkStatic as one error.
func (s *Set) checkStaticErr() error {
	if s == nil {
		return &FieldError{Field: "set", Reason: "nil capability set"}
	}
	errs, _ := s.checkStatic()
	return joinErrors(errs)
}

func shorten(p string) string {
	if len(p) > 80 {
		return p[:80] + "..."
	}
	return p
}

// checkPath returns why p cannot be granted, or "".
func checkPath(p string) string {
	switch {
	case p == "":
		return "path is empty"
	case len(p) > MaxPathLen:
		return fmt.Sprintf("path is longer than %d bytes", MaxPathLen)
	case strings.IndexByte(p, 0) >= 0:
		return "path contains a NUL byte"
	case !filepath.IsAbs(p):
		return "path is not absolute"
	case filepath.Clean(p) != p:
		return fmt.Sprintf("path is not clean (want %q)", filepath.Clean(p))
	case p == "/":
		return "granting the whole root file system is refused"
	}
	for _, f := range forbiddenRoots {
		if p == f.dir || strings.HasPrefix(p, f.dir+"/") {
			return fmt.Sprintf("path is at or under %s: %s", f.dir, f.why)
		}
	}
	return ""
}

// conflicts finds grants of the same path that contradict each other:
// duplicates within one list, and read-only versus read-write. Exec and
// write on the same file is an explicit request (build, then run) and is
// allowed. With resolved non-nil, paths are compared after resolving
// symbolic links, and only pairs whose literal paths differ are reported
// (the literal ones were reported without resolved).
func conflicts(gs []grant, resolved map[string]string) []error {
	key := func(g grant) string {
		if resolved != nil {
			return resolved[g.field]
		}
		return g.path
	}
	var errs []error
	seen := map[string][]grant{}
	for _, g := range gs {
		k := key(g)
		if k == "" {
			continue
		}
		for _, p := range seen[k] {
			if resolved != nil && p.path == g.path {
				continue
			}
			via := ""
			if resolved != nil {
				via = fmt.Sprintf(", both resolving to %q", k)
			}
			var reason string
			switch {
			case p.list == g.list:
				if resolved == nil {
					reason = "duplicate of " + p.field
				}
			case (p.class == classRead && g.class == classWrite) || (p.class == classWrite && g.class == classRead):
				reason = fmt.Sprintf("granted both read-only and read-write (%s %q and %s %q%s)", p.field, p.path, g.field, g.path, via)
			}
			if reason != "" {
				errs = append(errs, &FieldError{Field: g.field, Value: g.path, Reason: reason})
				break
			}
		}
		seen[k] = append(seen[k], g)
	}
	return errs
}

// checkHost checks that the well-formed grants gs exist on the host with
// the right type.
func (s *Set) checkHost(gs []grant) []error {
	var errs []error
	resolved := map[string]string{}
	var found []grant
	for _, g := range gs {
		if !g.follow {
			if link, text := linkOnPath(g.path); link != "" {
				errs = append(errs, &FieldError{Field: g.field, Value: g.path, Reason: SymlinkReason(g.path, link, text)})
				continue
			}
		}
		fi, err := os.Stat(g.path)
		if err != nil {
			reason := "does not exist on the host"
			if !errors.Is(err, fs.ErrNotExist) {
				var pe *fs.PathError
				if errors.As(err, &pe) {
					err = pe.Err
				}
				reason = "cannot be checked on the host: " + err.Error()
			}
			errs = append(errs, &FieldError{Field: g.field, Value: g.path, Reason: reason})
			continue
		}
		if reason := checkType(g, fi); reason != "" {
			errs = append(errs, &FieldError{Field: g.field, Value: g.path, Reason: reason})
			continue
		}
		r, err := filepath.EvalSymlinks(g.path)
		if err != nil {
			errs = append(errs, &FieldError{Field: g.field, Value: g.path, Reason: "cannot resolve symbolic links: " + err.Error()})
			continue
		}
		if r != g.path {
			if reason := checkPath(r); reason != "" {
				errs = append(errs, &FieldError{Field: g.field, Value: g.path, Reason: fmt.Sprintf("resolves to %q: %s", r, reason)})
				continue
			}
		}
		resolved[g.field] = r
		found = append(found, g)
	}
	return append(errs, conflicts(found, resolved)...)
}

// checkFollow checks the follow_symlinks list: well-formed paths, each
// naming a grant of gs, none twice.
func checkFollow(paths []string, gs []grant) []error {
	granted := map[string]bool{}
	for _, g := range gs {
		granted[g.path] = true
	}
	var errs []error
	seen := map[string]int{}
	for i, p := range paths {
		field := fmt.Sprintf("follow_symlinks[%d]", i)
		reason := checkPath(p)
		if j, dup := seen[p]; dup && reason == "" {
			reason = fmt.Sprintf("duplicate of follow_symlinks[%d]", j)
		} else if reason == "" && !granted[p] {
			reason = "names no grant: list a path exactly as read_files, read_dirs, write_files, write_dirs, exec or workdir spell it"
		}
		if _, dup := seen[p]; !dup {
			seen[p] = i
		}
		if reason != "" {
			errs = append(errs, &FieldError{Field: field, Value: shorten(p), Reason: reason})
		}
	}
	return errs
}

// MergedUsrLinks returns the links a merged-/usr system has in the root in
// place of directories (/bin -> usr/bin, ...). The Base view recreates
// them, and grants may resolve through them without FollowSymlinks (a
// grant of /bin/true, say): they lie in / itself, which only root can
// write and no grant can name, so no tool can plant or change them.
func MergedUsrLinks() []string {
	return []string{"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}
}

// IsMergedUsrLink reports whether a symbolic link at path whose text is
// target is one of MergedUsrLinks pointing into /usr.
func IsMergedUsrLink(path, target string) bool {
	if !slices.Contains(MergedUsrLinks(), path) {
		return false
	}
	return strings.HasPrefix(filepath.Join("/", target), "/usr/")
}

// SymlinkReason says why the grant of path may not resolve through the
// symbolic link at link (whose text is target), and what to grant instead.
func SymlinkReason(path, link, target string) string {
	why := fmt.Sprintf("passes through the symbolic link %s -> %s, which whoever may write its directory can aim anywhere", link, target)
	r, err := filepath.EvalSymlinks(path)
	switch {
	case err != nil:
		return why + " (it does not resolve: " + err.Error() + ")"
	case checkPath(r) != "":
		return fmt.Sprintf("%s (it resolves to %q: %s)", why, r, checkPath(r))
	}
	return fmt.Sprintf("%s; grant the resolved path %q, or list %q in follow_symlinks", why, r, path)
}

// linkOnPath returns the first symbolic link met when resolving p (any
// component, the last included), other than a merged-/usr link of the
// root, and its text; "" when there is none. A missing component ends the
// walk: the existence check names it.
func linkOnPath(p string) (link, text string) {
	for i := 1; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			continue
		}
		prefix := p[:i]
		fi, err := os.Lstat(prefix)
		if err != nil {
			return "", ""
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			continue
		}
		t, err := os.Readlink(prefix)
		if err != nil {
			return prefix, "(unreadable: " + err.Error() + ")"
		}
		if !IsMergedUsrLink(prefix, t) {
			return prefix, t
		}
	}
	return "", ""
}

func checkType(g grant, fi fs.FileInfo) string {
	if g.dir {
		if !fi.IsDir() {
			return "is not a directory (" + describe(fi.Mode()) + ")"
		}
		return ""
	}
	if !fi.Mode().IsRegular() {
		return "is not a regular file (" + describe(fi.Mode()) + ")"
	}
	return ""
}

func describe(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m.IsRegular():
		return "a regular file"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "type " + m.Type().String()
}

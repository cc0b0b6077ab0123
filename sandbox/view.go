package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/seccomp"
)

// The filesystem view is computed here, in Go, and executed by the C stage-2
// as a list of operations. Grants appear inside at the same path as on the
// host: every symlink met while resolving a grant is recreated in the view,
// and the mount target is the resolved path.

// Sandbox identity inside the user namespace.
const (
	sandboxUID  = seccomp.ToolID
	sandboxGID  = seccomp.ToolID
	sandboxHost = "toolcell"
	defaultPATH = "/usr/local/bin:/usr/bin:/bin"
)

type access uint8

const (
	accRead access = 1 << iota
	accWrite
	accExec
)

// entryKind is what a path of the view is.
type entryKind uint8

const (
	kindBind entryKind = iota + 1
	kindSymlink
	kindFile  // generated file on a tmpfs
	kindTmpfs // a tmpfs of the sandbox's own (/tmp, /dev, /dev/shm)
	kindProc
)

type entry struct {
	path    string // absolute path in the view
	kind    entryKind
	acc     access
	isDir   bool
	src     string // host source (bind)
	text    string // symlink text, file content, tmpfs options
	mode    uint32
	granted []string // grant paths that led here (for the record)
	fields  []string // the grants that led here, as the manifest names them
}

// view is the computed filesystem of one sandbox.
type view struct {
	entries map[string]*entry
	masks   []maskSpec
	// links met while resolving each grant, checked against the writable
	// grants once all are known (see checkLinks).
	links []*entry
}

type maskSpec struct {
	path string
	kind uint32
}

// Masked and read-only /proc paths, after runc's defaults: files that leak
// host state or offer host-wide knobs.
var (
	procMaskFiles = []string{"/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
		"/proc/timer_stats", "/proc/sched_debug", "/proc/interrupts", "/proc/kallsyms", "/proc/kmsg",
		"/proc/sysrq-trigger"}
	procMaskDirs = []string{"/proc/acpi", "/proc/asound", "/proc/scsi", "/proc/driver"}
	procReadonly = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"}
	devNodes     = []string{"null", "zero", "full", "random", "urandom"}
)

// resolve walks p component by component without trusting the final
// answer of the kernel's own resolution, so that each symlink met on the
// way can be recreated in the view. It returns the real path and the links.
// Unless follow is set, a link other than the root's merged-/usr links is
// refused (*linkError): the grant does not list follow_symlinks.
func resolve(p string, follow bool) (string, []*entry, error) {
	var links []*entry
	rest := strings.Split(strings.TrimPrefix(p, "/"), "/")
	cur := "/"
	for hops := 0; len(rest) > 0; {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, c)
		fi, err := os.Lstat(next)
		if err != nil {
			return "", nil, err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return "", nil, &os.PathError{Op: "resolve", Path: p, Err: unix.ELOOP}
		}
		text, err := os.Readlink(next)
		if err != nil {
			return "", nil, err
		}
		if !follow && !capability.IsMergedUsrLink(next, text) {
			return "", nil, &linkError{link: next, text: text}
		}
		links = append(links, &entry{path: next, kind: kindSymlink, text: text, granted: []string{p}})
		if filepath.IsAbs(text) {
			cur = "/"
		}
		rest = append(strings.Split(strings.TrimPrefix(text, "/"), "/"), rest...)
	}
	return cur, links, nil
}

// linkError is a symlink met by a grant that may not pass through one.
type linkError struct{ link, text string }

func (e *linkError) Error() string { return "symbolic link " + e.link + " -> " + e.text }

func newView() *view { return &view{entries: map[string]*entry{}} }

// checkLinks refuses a grant that resolves through a symlink lying inside a
// writable grant: a tool (this run's or an earlier one's) controls that
// link, and could point the grant at any host path. The resolved path must
// be granted instead.
func (v *view) checkLinks() error {
	for _, l := range v.links {
		for _, e := range v.entries {
			if e.kind != kindBind || e.acc&accWrite == 0 || !e.isDir {
				continue
			}
			if l.path == e.path || strings.HasPrefix(l.path, e.path+"/") {
				return fmt.Errorf("%w: grant %q resolves through symlink %s -> %s, which lies inside the writable grant %s: "+
					"a tool could have replaced it; grant the resolved path instead", ErrPolicy, l.granted[0], l.path, l.text, e.path)
			}
		}
	}
	return nil
}

func (v *view) add(e *entry) error {
	old, ok := v.entries[e.path]
	if !ok {
		v.entries[e.path] = e
		return nil
	}
	switch {
	case old.kind == kindBind && e.kind == kindBind:
		old.acc |= e.acc
		old.granted = append(old.granted, e.granted...)
		old.fields = append(old.fields, e.fields...)
		return nil
	case old.kind == kindSymlink && e.kind == kindSymlink && old.text == e.text:
		return nil
	case old.kind == kindFile && e.kind == kindBind:
		// An explicit grant wins over a file toolcell would generate.
		v.entries[e.path] = e
		return nil
	case old.kind == kindBind && e.kind == kindFile:
		return nil
	}
	return fmt.Errorf("%w: %s: %s conflicts with %s", ErrPolicy, e.path, e.describe(), old.describe())
}

func (e *entry) describe() string {
	switch e.kind {
	case kindBind:
		return "grant of " + strings.Join(e.granted, ", ")
	case kindSymlink:
		return "symlink to " + e.text
	case kindFile:
		return "generated file"
	case kindTmpfs:
		return "the sandbox's own tmpfs"
	case kindProc:
		return "the sandbox's /proc"
	}
	return "entry"
}

// grant resolves one granted path and adds it with its symlinks. field
// names the grant as the manifest does ("read_dirs[2]"); follow lets it
// pass through symlinks (Set.FollowSymlinks, or toolcell's own Base).
// Without follow, the resolved path is the granted one (but for the
// merged-/usr links), and openSource and the stage-2 open it refusing
// every symlink: a link swapped in after this check fails the open.
// holdsState reports whether the host path real is leaseDir, one of its
// ancestors, or inside it. A writable grant there is refused: its mount is
// idmapped to its owner, root, so the tool could create or replace root's
// files in leaseDir (the id leases, the compiled filter cache), which the
// next host process trusts for being root's. Compared by device and inode,
// so another path to the same directory (a bind mount) is caught too.
func holdsState(real string) bool {
	type key struct{ dev, ino uint64 }
	id := func(p string) (key, bool) {
		var st unix.Stat_t
		if unix.Stat(p, &st) != nil {
			return key{}, false
		}
		return key{st.Dev, st.Ino}, true
	}
	g, ok := id(real)
	if !ok {
		return false
	}
	// The grant is leaseDir or above it.
	for d := filepath.Clean(leaseDir); ; d = filepath.Dir(d) {
		if k, ok := id(d); ok && k == g {
			return true
		}
		if d == "/" {
			break
		}
	}
	// The grant is inside leaseDir.
	state, ok := id(leaseDir)
	if !ok {
		return false
	}
	for d := real; d != "/"; d = filepath.Dir(d) {
		if k, ok := id(d); ok && k == state {
			return true
		}
	}
	return false
}

func (v *view) grant(field, p string, acc access, wantDir, follow bool) error {
	real, links, err := resolve(p, follow)
	var le *linkError
	if errors.As(err, &le) {
		return fmt.Errorf("%w: %w", ErrPolicy, &capability.FieldError{Field: field, Value: p, Reason: capability.SymlinkReason(p, le.link, le.text)})
	}
	if err != nil {
		return fmt.Errorf("%w: %s %q: %v", ErrPolicy, field, p, err)
	}
	fi, err := os.Lstat(real)
	if err != nil {
		return fmt.Errorf("%w: grant %q: %v", ErrPolicy, p, err)
	}
	if wantDir && !fi.IsDir() || !wantDir && !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: grant %q: resolves to %q, which is not a %s", ErrPolicy, p, real, map[bool]string{true: "directory", false: "regular file"}[wantDir])
	}
	for _, root := range []string{"/proc", "/sys", "/dev"} {
		if real == root || strings.HasPrefix(real, root+"/") {
			return fmt.Errorf("%w: grant %q: resolves to %q, under %s, which the sandbox makes its own", ErrPolicy, p, real, root)
		}
	}
	if real == "/" {
		return fmt.Errorf("%w: grant %q: resolves to the host root", ErrPolicy, p)
	}
	if acc&accWrite != 0 && holdsState(real) {
		return fmt.Errorf("%w: %s %q: resolves to %q, which holds or lies in %s, toolcell's own host state (host id leases, compiled seccomp filters): a tool that may write there could forge them", ErrPolicy, field, p, real, leaseDir)
	}
	v.links = append(v.links, links...)
	for _, l := range links {
		if err := v.add(l); err != nil {
			return err
		}
	}
	return v.add(&entry{path: real, kind: kindBind, acc: acc, isDir: wantDir, src: real, granted: []string{p}, fields: []string{field}})
}

// tempWorkdir binds dir, made by the supervisor for this run, at
// capability.TempWorkdirPath. The links above it on the host (TMPDIR's) are
// the host's business: the tool sees only the mount point.
func (v *view) tempWorkdir(dir string, acc access) error {
	at := capability.TempWorkdirPath
	if dir == "" {
		return fmt.Errorf("%w: no temporary workdir was made", ErrSetup)
	}
	for p, e := range v.entries {
		if p == at || strings.HasPrefix(p, at+"/") {
			return fmt.Errorf("%w: workdir: the temporary workdir appears at %s, where the policy has the %s", ErrPolicy, at, e.describe())
		}
	}
	real, _, err := resolve(dir, true)
	if err != nil {
		return fmt.Errorf("%w: temporary workdir %s: %w", ErrSetup, dir, err)
	}
	return v.add(&entry{path: at, kind: kindBind, acc: acc, isDir: true, src: real, granted: []string{"workdir: temp"}, fields: []string{"workdir"}})
}

// baseView lists the Base preset: what a dynamically linked program of the
// distribution needs, read-only, and nothing secret.
func (v *view) base() error {
	// The Base view is toolcell's, not the caller's grant: its paths may
	// pass through the host's system links (/etc/localtime, say).
	if err := v.grant("base", "/usr", accRead|accExec, true, true); err != nil {
		return err
	}
	for _, d := range capability.MergedUsrLinks() {
		fi, err := os.Lstat(d)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("base view: %w", err)
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			text, err := os.Readlink(d)
			if err != nil {
				return fmt.Errorf("base view: %w", err)
			}
			if err := v.add(&entry{path: d, kind: kindSymlink, text: text, granted: []string{"base"}}); err != nil {
				return err
			}
			continue
		}
		if err := v.grant("base", d, accRead|accExec, true, true); err != nil {
			return err
		}
	}
	optional := []struct {
		path string
		dir  bool
	}{
		{"/etc/ld.so.cache", false},
		{"/etc/alternatives", true},
		{"/etc/ssl/certs", true},
		{"/etc/localtime", false},
	}
	for _, o := range optional {
		if _, err := os.Stat(o.path); err != nil {
			continue
		}
		if err := v.grant("base", o.path, accRead, o.dir, true); err != nil {
			return err
		}
	}
	files := map[string]string{
		"/etc/passwd": "root:x:0:0:root:/root:/usr/sbin/nologin\n" +
			fmt.Sprintf("tool:x:%d:%d:toolcell tool:/tmp:/bin/sh\n", sandboxUID, sandboxGID) +
			"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
		"/etc/group":         fmt.Sprintf("root:x:0:\ntool:x:%d:\nnogroup:x:65534:\n", sandboxGID),
		"/etc/hosts":         "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t" + sandboxHost + "\n",
		"/etc/hostname":      sandboxHost + "\n",
		"/etc/resolv.conf":   "# toolcell: no network granted, no resolver\n",
		"/etc/nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
	}
	for p, content := range files {
		if err := v.add(&entry{path: p, kind: kindFile, text: content, mode: 0o644, granted: []string{"base"}}); err != nil {
			return err
		}
	}
	return nil
}

// generated puts files toolcell writes into the view, replacing files it
// would otherwise generate (the Base view's). A grant of the same path
// conflicts: the file's content is part of what a grant (why) enforces.
func (v *view) generated(files map[string]string, why string) error {
	for _, p := range sortedKeys(files) {
		if old, ok := v.entries[p]; ok && old.kind != kindFile {
			return fmt.Errorf("%w: %s: the %s grants need toolcell's own %s, which conflicts with the %s", ErrPolicy, p, why, p, old.describe())
		}
		v.entries[p] = &entry{path: p, kind: kindFile, text: files[p], mode: 0o644, granted: []string{why}}
	}
	return nil
}

// buildView turns a validated capability set into the view.
// tempDir is the host directory made for a temporary workdir, "" if none.
func buildView(set *capability.Set, tempDir string) (*view, error) {
	v := newView()
	if set.Base {
		if err := v.base(); err != nil {
			return nil, err
		}
	}
	follow := map[string]bool{}
	for _, p := range set.FollowSymlinks {
		follow[p] = true
	}
	type g struct {
		list  string
		paths []string
		acc   access
		dir   bool
	}
	for _, gr := range []g{
		{"read_dirs", set.ReadDirs, accRead, true},
		{"read_files", set.ReadFiles, accRead, false},
		{"write_dirs", set.WriteDirs, accRead | accWrite, true},
		{"write_files", set.WriteFiles, accRead | accWrite, false},
		{"exec", set.Exec, accRead | accExec, false},
		{"exec_dirs", set.ExecDirs, accRead | accExec, true},
	} {
		for i, p := range gr.paths {
			if err := v.grant(fmt.Sprintf("%s[%d]", gr.list, i), p, gr.acc, gr.dir, follow[p]); err != nil {
				return nil, err
			}
		}
	}
	wacc := accRead | accWrite
	if set.WorkdirExec {
		wacc |= accExec
	}
	switch {
	case set.HasTempWorkdir():
		if err := v.tempWorkdir(tempDir, wacc); err != nil {
			return nil, err
		}
	case set.Workdir != "":
		if err := v.grant("workdir", set.Workdir, wacc, true, follow[set.Workdir]); err != nil {
			return nil, err
		}
	}
	if err := v.checkLinks(); err != nil {
		return nil, err
	}
	own := []*entry{
		{path: "/tmp", kind: kindTmpfs, text: fmt.Sprintf("size=%d,mode=1777", int64(set.TmpOrDefault())), mode: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC},
		{path: "/dev", kind: kindTmpfs, text: "size=64k,nr_inodes=64,mode=0755", mode: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NOEXEC},
		{path: "/dev/shm", kind: kindTmpfs, text: fmt.Sprintf("size=%d,mode=1777", int64(set.TmpOrDefault())), mode: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC},
		{path: "/proc", kind: kindProc},
		{path: "/dev/fd", kind: kindSymlink, text: "/proc/self/fd"},
		{path: "/dev/stdin", kind: kindSymlink, text: "/proc/self/fd/0"},
		{path: "/dev/stdout", kind: kindSymlink, text: "/proc/self/fd/1"},
		{path: "/dev/stderr", kind: kindSymlink, text: "/proc/self/fd/2"},
	}
	for _, n := range devNodes {
		own = append(own, &entry{path: "/dev/" + n, kind: kindBind, acc: accRead | accWrite, src: "/dev/" + n, granted: []string{"dev"}})
	}
	for _, e := range own {
		if e.granted == nil {
			e.granted = []string{"sandbox"}
		}
		if err := v.add(e); err != nil {
			return nil, err
		}
	}
	for _, p := range procMaskFiles {
		v.masks = append(v.masks, maskSpec{p, opMaskFile})
	}
	for _, p := range procMaskDirs {
		v.masks = append(v.masks, maskSpec{p, opMaskDir})
	}
	for _, p := range procReadonly {
		v.masks = append(v.masks, maskSpec{p, opReadonly})
	}
	return v, nil
}

// compile orders the view (parents before children) and emits operations.
// A path is created on a tmpfs only when no bind covers it: under a bind,
// everything already exists on the host and nothing is written there.
// shows reports whether the absolute path p is in the view as the tool
// sees it: a path of the view's own, or below a bound directory, following
// the view's symlinks (/bin -> usr/bin). A tmpfs of the sandbox's (/tmp)
// starts empty, so nothing below one is shown.
func (v *view) shows(p string) bool {
	p = filepath.Clean(p)
	for hops := 0; hops < 40; hops++ {
		if _, ok := v.entries[p]; ok {
			return true
		}
		next := ""
	up:
		for d := filepath.Dir(p); d != "/"; d = filepath.Dir(d) {
			e, ok := v.entries[d]
			if !ok {
				continue
			}
			switch {
			case e.kind == kindBind && e.isDir:
				return true
			case e.kind == kindSymlink:
				t := e.text
				if !filepath.IsAbs(t) {
					t = filepath.Join(filepath.Dir(d), t)
				}
				next = filepath.Join(t, strings.TrimPrefix(p, d))
			}
			break up
		}
		if next == "" {
			return false
		}
		p = next
	}
	return false
}

func rel(p string) string { return strings.TrimPrefix(p, "/") }

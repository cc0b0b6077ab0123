// The view compiled into the stage-2's mount operations, with the sources
// opened in Go.

package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/toolcell/toolcell/audit"
	"golang.org/x/sys/unix"
)

// planOp is one operation for the stage-2 (see stage2.h).
type planOp struct {
	kind, attr, mode uint32
	fd               int // index into the plan's files, or -1
	a, b             string
	idmap            int // opBind: 1 + index into compiled.owners, 0: not idmapped
}

// hostOwner is the owner of a writable grant on the host: its bind is
// idmapped so that the sandbox user writes as that owner.
type hostOwner struct{ uid, gid uint32 }

// compiled is a view turned into operations plus the host files they bind.
type compiled struct {
	ops    []planOp
	files  []*os.File // O_PATH descriptors, passed to the stage-2
	mounts []audit.MountInfo
	// owners of the writable grants, one per distinct owner; binds index
	// it (planOp.idmap). Dropped by the supervisor when not root.
	owners []hostOwner
	// idmapped[i] is the host owner planned for mounts[i], if any.
	idmapped map[int]hostOwner
}

func (c *compiled) close() {
	for _, f := range c.files {
		f.Close()
	}
}

func bindAttr(e *entry) uint32 {
	a := uint32(unix.MOUNT_ATTR_NOSUID)
	if e.acc&accWrite == 0 {
		a |= unix.MOUNT_ATTR_RDONLY
	}
	if e.acc&accExec == 0 {
		a |= unix.MOUNT_ATTR_NOEXEC
	}
	if !strings.HasPrefix(e.path, "/dev/") {
		a |= unix.MOUNT_ATTR_NODEV
	}
	return a
}

func attrString(a uint32) string {
	var s []string
	if a&unix.MOUNT_ATTR_RDONLY != 0 {
		s = append(s, "ro")
	} else {
		s = append(s, "rw")
	}
	for _, f := range []struct {
		bit  uint32
		name string
	}{{unix.MOUNT_ATTR_NOSUID, "nosuid"}, {unix.MOUNT_ATTR_NODEV, "nodev"}, {unix.MOUNT_ATTR_NOEXEC, "noexec"}} {
		if a&f.bit != 0 {
			s = append(s, f.name)
		}
	}
	return strings.Join(s, ",")
}

func (v *view) compile() (*compiled, error) {
	paths := make([]string, 0, len(v.entries))
	for p := range v.entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	c := &compiled{}
	created := map[string]bool{"/": true}
	// owner returns the deepest mount covering p (excluding p itself).
	owner := func(p string) *entry {
		for d := filepath.Dir(p); d != "/"; d = filepath.Dir(d) {
			if e, ok := v.entries[d]; ok && (e.kind == kindBind || e.kind == kindTmpfs || e.kind == kindProc) {
				return e
			}
		}
		return nil
	}
	underBind := func(p string) bool {
		o := owner(p)
		return o != nil && o.kind == kindBind
	}
	// below a symlink of the view nothing may be placed: it would be
	// resolved through the link.
	for _, p := range paths {
		for d := filepath.Dir(p); d != "/"; d = filepath.Dir(d) {
			if e, ok := v.entries[d]; ok && (e.kind == kindSymlink || e.kind == kindFile || (e.kind == kindBind && !e.isDir)) {
				if e.kind == kindSymlink && underBind(d) {
					continue
				}
				return nil, fmt.Errorf("%w: %s lies below %s (%s)", ErrPolicy, p, d, e.describe())
			}
		}
	}
	mkdirs := func(p string) {
		var todo []string
		for d := filepath.Dir(p); !created[d]; d = filepath.Dir(d) {
			todo = append(todo, d)
		}
		for i := len(todo) - 1; i >= 0; i-- {
			c.ops = append(c.ops, planOp{kind: opMkdir, mode: 0o755, fd: -1, a: rel(todo[i])})
			created[todo[i]] = true
		}
	}
	for _, p := range paths {
		e := v.entries[p]
		if underBind(p) {
			if e.kind != kindBind {
				// A symlink inside a bound directory is the host's own.
				if e.kind == kindSymlink {
					continue
				}
				return nil, fmt.Errorf("%w: %s (%s) lies inside a granted directory", ErrPolicy, p, e.describe())
			}
		} else {
			mkdirs(p)
		}
		switch e.kind {
		case kindSymlink:
			c.ops = append(c.ops, planOp{kind: opSymlink, fd: -1, a: rel(p), b: e.text})
		case kindFile:
			c.ops = append(c.ops, planOp{kind: opFile, mode: e.mode, fd: -1, a: rel(p), b: e.text})
			c.mounts = append(c.mounts, audit.MountInfo{Dst: p, Src: "generated", Mode: "ro"})
		case kindTmpfs, kindProc:
			c.ops = append(c.ops, planOp{kind: opMkdir, mode: 0o755, fd: -1, a: rel(p)})
			if e.kind == kindProc {
				c.ops = append(c.ops, planOp{kind: opProc, fd: -1, a: rel(p)})
				c.mounts = append(c.mounts, audit.MountInfo{Dst: p, Src: "proc", Mode: "rw,nosuid,nodev,noexec"})
			} else {
				c.ops = append(c.ops, planOp{kind: opTmpfs, attr: e.mode, fd: -1, a: rel(p), b: e.text})
				c.mounts = append(c.mounts, audit.MountInfo{Dst: p, Src: "tmpfs(" + e.text + ")", Mode: attrString(e.mode)})
			}
		case kindBind:
			if !underBind(p) {
				if e.isDir {
					c.ops = append(c.ops, planOp{kind: opMkdir, mode: 0o755, fd: -1, a: rel(p)})
				} else {
					c.ops = append(c.ops, planOp{kind: opFile, mode: 0o644, fd: -1, a: rel(p)})
				}
			}
			created[p] = true
			f, err := openSource(e)
			if err != nil {
				c.close()
				return nil, err
			}
			c.files = append(c.files, f)
			attr := bindAttr(e)
			op := planOp{kind: opBind, attr: attr, fd: len(c.files) - 1, a: rel(p), b: e.src}
			if e.acc&accWrite != 0 && len(e.fields) > 0 && !strings.HasPrefix(p, "/dev/") {
				var st unix.Stat_t
				if err := unix.Fstat(int(f.Fd()), &st); err != nil {
					c.close()
					return nil, fmt.Errorf("%w: stat %s: %w", ErrSetup, e.src, err)
				}
				if op.idmap, err = c.owner(hostOwner{st.Uid, st.Gid}); err != nil {
					c.close()
					return nil, err
				}
				if c.idmapped == nil {
					c.idmapped = map[int]hostOwner{}
				}
				c.idmapped[len(c.mounts)] = c.owners[op.idmap-1]
			}
			c.ops = append(c.ops, op)
			c.mounts = append(c.mounts, audit.MountInfo{Dst: p, Src: e.src, Mode: attrString(attr)})
		}
		created[p] = true
	}
	// /dev is complete: freeze its directory (the nodes stay writable).
	c.ops = append(c.ops, planOp{kind: opSetattr, attr: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NOEXEC, fd: -1, a: "dev"})
	for _, m := range v.masks {
		attr := uint32(0)
		if m.kind == opReadonly {
			attr = unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC
		}
		c.ops = append(c.ops, planOp{kind: m.kind, attr: attr, fd: -1, a: rel(m.path)})
		mode := "masked"
		if m.kind == opReadonly {
			mode = "ro"
		}
		c.mounts = append(c.mounts, audit.MountInfo{Dst: m.path, Src: "mask", Mode: mode})
	}
	return c, nil
}

// owner returns 1 + the index of o in c.owners, adding it if new.
func (c *compiled) owner(o hostOwner) (int, error) {
	for i, have := range c.owners {
		if have == o {
			return i + 1, nil
		}
	}
	if len(c.owners) == maxIDMaps {
		return 0, fmt.Errorf("%w: writable grants belong to more than %d different host owners (uid:gid)", ErrPolicy, maxIDMaps)
	}
	c.owners = append(c.owners, o)
	return len(c.owners), nil
}

// noIDMaps plans every bind plain: the sandbox user writes as the host
// id it is mapped to.
func (c *compiled) noIDMaps() {
	for i := range c.ops {
		c.ops[i].idmap = 0
	}
	c.owners, c.idmapped = nil, nil
}

// openSource opens the resolved source without following a final symlink;
// the stage-2 checks that the path still names this inode when it mounts.
func openSource(e *entry) (*os.File, error) {
	// e.src was resolved: no component may be a symlink now. The stage-2
	// opens it the same way and compares the inode.
	who := ""
	if len(e.fields) > 0 {
		who = strings.Join(e.fields, ", ") + ": "
	}
	fd, err := unix.Openat2(unix.AT_FDCWD, e.src, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC | unix.O_NOFOLLOW,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %sopen %s: %v (changed while the sandbox was prepared?)", ErrPolicy, who, e.src, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("open %s: %w", e.src, err)
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	isLink := st.Mode&unix.S_IFMT == unix.S_IFLNK
	if isLink || (e.kind == kindBind && e.isDir != isDir && !strings.HasPrefix(e.path, "/dev/")) {
		unix.Close(fd)
		return nil, fmt.Errorf("%w: %s%s changed type while the sandbox was prepared", ErrPolicy, who, e.src)
	}
	return os.NewFile(uintptr(fd), e.src), nil
}

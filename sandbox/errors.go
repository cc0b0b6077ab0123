package sandbox

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

var (
	// ErrUnsupported means this host lacks a mechanism the run needs; the
	// error names it. Nothing ran.
	ErrUnsupported = errors.New("sandbox: not supported on this host")
	// ErrPolicy means the capability set cannot be turned into a sandbox
	// (invalid, or a grant that does not resolve). Nothing ran.
	ErrPolicy = errors.New("sandbox: bad policy")
	// ErrSetup means building the sandbox failed; see *SetupError.
	ErrSetup = errors.New("sandbox: setup failed")
	// ErrNotFound means the command is not there: not found in PATH, or
	// found on the host at a path the sandbox's view does not show (the
	// error says which). Nothing ran; the CLI exits 127, as a shell does.
	ErrNotFound = errors.New("sandbox: command not found")
)

// SetupError is a failure of one step of building the sandbox, reported by
// the stage-2 or the supervisor. It matches ErrSetup with errors.Is, and
// ErrUnsupported too when the step failed for lack of a kernel feature.
type SetupError struct {
	Step   string        // e.g. "unshare_user", "bind_verify", "pivot_root"
	Errno  syscall.Errno // the kernel's answer, 0 if none
	Detail string        // the path or value involved
}

func (e *SetupError) Error() string {
	s := "sandbox: setup step " + e.Step
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	if e.Errno != 0 {
		s += fmt.Sprintf(": %v", e.Errno)
	}
	return s
}

// Is reports ErrSetup always, and ErrUnsupported when the kernel said the
// operation does not exist or is not permitted for an unprivileged user.
func (e *SetupError) Is(target error) bool {
	switch target {
	case ErrSetup:
		return true
	case ErrUnsupported:
		return e.Errno == syscall.ENOSYS || (e.Step == "unshare_user" && (e.Errno == syscall.EPERM || e.Errno == syscall.EINVAL || e.Errno == syscall.ENOSPC)) ||
			// A filter chain holds one listener: the host process runs
			// under a supervisor that already intercepts syscalls.
			(e.Step == "seccomp" && e.Errno == syscall.EBUSY) ||
			// The kernel or the file system cannot idmap the grant.
			(e.Step == "idmap" && (e.Errno == syscall.EINVAL || e.Errno == syscall.EPERM || e.Errno == syscall.EOPNOTSUPP))
	}
	return false
}

// Unwrap exposes the errno.
func (e *SetupError) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

// explainAccess adds, to a setup step the kernel refused for lack of
// permission on a path (the working directory, a grant's source), which
// host uid needed the access and what the path allows: as root the tool is
// a uid of the run's own, which a directory only its owner may enter keeps
// out.
func (p *Process) explainAccess(err error) error {
	var se *SetupError
	if errors.As(err, &se) && se.Step == "idmap" {
		fsType := "?"
		var sf unix.Statfs_t
		if unix.Statfs(se.Detail, &sf) == nil {
			fsType = fsName(sf.Type)
		}
		return fmt.Errorf("%w: the kernel cannot idmap the writable grant %s (file system %s), which would make the tool's files its owner's; Runner.AllowNoIDMap runs it without (the tool then writes as host uid %d)",
			err, se.Detail, fsType, p.ids.uid)
	}
	if !errors.As(err, &se) || se.Errno != syscall.EACCES || se.Detail == "" ||
		(se.Step != "chdir" && se.Step != "bind_open") {
		return err
	}
	uid := os.Geteuid()
	if p.ids != nil {
		uid = p.ids.uid
	}
	var st unix.Stat_t
	if unix.Stat(se.Detail, &st) != nil {
		return err
	}
	return fmt.Errorf("%w: host uid %d (the sandbox's uid %d) needed access; %s belongs to uid %d, mode %04o, and every directory above it must let that uid pass",
		err, uid, sandboxUID, se.Detail, st.Uid, st.Mode&0o7777)
}

// fsName names a file system magic number (statfs f_type) of those agents
// commonly write to, else prints it in hex.
func fsName(magic int64) string {
	switch magic {
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs"
	case unix.RAMFS_MAGIC:
		return "ramfs"
	case unix.V9FS_MAGIC:
		return "9p"
	case unix.NFS_SUPER_MAGIC:
		return "nfs"
	case unix.FUSE_SUPER_MAGIC:
		return "fuse"
	}
	return fmt.Sprintf("0x%x", magic)
}

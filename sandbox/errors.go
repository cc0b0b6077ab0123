package sandbox

import (
	"errors"
	"fmt"
	"syscall"
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

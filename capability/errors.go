package capability

import (
	"errors"
	"strconv"
)

// ErrInvalid is matched by errors.Is for every error that Validate,
// Canonical, Hash or ParseManifest return because the policy itself is
// wrong (as opposed to, say, a manifest file that cannot be read).
var ErrInvalid = errors.New("capability: invalid policy")

// FieldError is one problem with one field of a Set. Validate reports every
// problem it finds, joined with errors.Join; each can be extracted with
// errors.As.
type FieldError struct {
	// Field names the field as it is spelled in a manifest, with an index
	// or key where it applies: "read_files[1]", "memory", `env["FOO"]`.
	Field string
	// Value is the offending value, formatted as in a manifest. It is
	// empty when the value must not be shown (environment values may be
	// secrets).
	Value string
	// Reason says what is wrong, and where possible what was expected.
	Reason string
}

// Error formats e as
//
//	capability: read_files[1] "/etc/../etc/passwd": path is not clean (want "/etc/passwd")
func (e *FieldError) Error() string {
	s := "capability: " + e.Field
	if e.Value != "" {
		s += " " + strconv.Quote(e.Value)
	}
	return s + ": " + e.Reason
}

// Is reports whether target is ErrInvalid.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// manifestError is a problem with a manifest's syntax or structure.
type manifestError struct {
	msg string
	err error
}

func (e *manifestError) Error() string {
	if e.err != nil {
		return "capability: manifest: " + e.msg + ": " + e.err.Error()
	}
	return "capability: manifest: " + e.msg
}

func (e *manifestError) Unwrap() error { return e.err }

func (e *manifestError) Is(target error) bool { return target == ErrInvalid }

// joinErrors returns nil for no errors, the error itself for one, and
// errors.Join of them otherwise.
func joinErrors(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return errors.Join(errs...)
}

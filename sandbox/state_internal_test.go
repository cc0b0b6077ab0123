package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/internal/testenv"
)

// stateDirForTest points leaseDir at a fresh directory two levels below a
// temporary one, until the test ends, and returns both.
func stateDirForTest(t *testing.T) (top, state string) {
	top = t.TempDir()
	state = filepath.Join(top, "run", "toolcell")
	for _, d := range []string{state, filepath.Join(state, "seccomp"), filepath.Join(top, "other")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	old := leaseDir
	leaseDir = state
	t.Cleanup(func() { leaseDir = old })
	return top, state
}

// A writable grant of toolcell's state directory, of a directory above it
// or of one inside it is refused, naming the field; reading is allowed.
func TestWritableGrantOfStateRefused(t *testing.T) {
	top, state := stateDirForTest(t)
	refused := map[string]*capability.Set{
		"write_dirs above":  capability.New().WithWriteDirs(filepath.Join(top, "run")),
		"write_dirs itself": capability.New().WithWriteDirs(state),
		"write_dirs inside": capability.New().WithWriteDirs(filepath.Join(state, "seccomp")),
		"workdir above":     capability.New().WithWorkdir(top),
	}
	for name, set := range refused {
		_, err := buildView(set, "")
		if !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), "toolcell's own host state") {
			t.Errorf("%s: %v, want ErrPolicy naming toolcell's state", name, err)
		}
	}
	allowed := map[string]*capability.Set{
		"read_dirs above":  capability.New().WithReadDirs(filepath.Join(top, "run")),
		"write_dirs other": capability.New().WithWriteDirs(filepath.Join(top, "other")),
	}
	for name, set := range allowed {
		if _, err := buildView(set, ""); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Another path to the state directory (a bind mount) is refused too: the
// check compares devices and inodes, not paths.
func TestWritableGrantOfStateAliasRefused(t *testing.T) {
	testenv.NotApplicable(t, map[string]string{
		testenv.KindRootlessHybrid: "making the alias needs a bind mount, which uid 65534 may not make in the host's mount namespace",
	})
	testenv.RequireRoot(t)
	top, _ := stateDirForTest(t)
	alias := filepath.Join(top, "alias")
	if err := os.Mkdir(alias, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(filepath.Join(top, "run"), alias, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(alias, unix.MNT_DETACH) })
	if _, err := buildView(capability.New().WithWriteDirs(alias), ""); !errors.Is(err, ErrPolicy) {
		t.Fatalf("write_dirs %s (a bind mount of the state's parent): %v, want ErrPolicy", alias, err)
	}
}

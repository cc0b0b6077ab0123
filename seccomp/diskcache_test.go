package seccomp

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/toolcell/toolcell/internal/testenv"
)

// forgetInProcess empties the in-process cache, as a new process has it.
func forgetInProcess() {
	cache.Lock()
	cache.m = map[string]*Filter{}
	cache.Unlock()
}

// rootCacheDir is a directory whose every parent is owned by root and
// writable by it alone (under /run), removed when the test ends.
func rootCacheDir(t *testing.T) string {
	t.Helper()
	testenv.NotApplicable(t, map[string]string{
		testenv.KindRootlessHybrid: "the disk cache is used by root only (CompileCachedDir)",
	})
	testenv.RequireRoot(t)
	base, err := os.MkdirTemp("/run", "toolcell-seccomp-test-")
	if err != nil {
		t.Fatalf("a directory under /run: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o700); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(base, "cache")
}

func diskPolicy() Policy {
	return Policy{Groups: DefaultGroups(), DeniedAction: ActionErrnoEPERM, Inspect: false}
}

// entryPath is the file the policy's entry is kept in.
func entryPath(t *testing.T, dir string, p Policy) string {
	t.Helper()
	k, err := p.key()
	if err != nil {
		t.Fatal(err)
	}
	dk := diskKey(k)
	if dk == "" {
		t.Fatal("no disk key (build ID or uname unavailable)")
	}
	return filepath.Join(dir, dk)
}

// A filter compiled by one process is read back by the next, identical;
// the entry is root's, 0600, in a 0700 directory.
func TestDiskCacheRoundTrip(t *testing.T) {
	dir := rootCacheDir(t)
	p := diskPolicy()
	want, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	forgetInProcess()
	got, err := CompileCachedDir(p, dir)
	if err != nil || !bytes.Equal(got.BPF, want.BPF) {
		t.Fatalf("first: %v", err)
	}
	ent := entryPath(t, dir, p)
	var st unix.Stat_t
	if err := unix.Stat(ent, &st); err != nil {
		t.Fatalf("no entry stored: %v", err)
	}
	if st.Uid != 0 || st.Mode&0o777 != 0o600 {
		t.Fatalf("entry owner %d mode %o", st.Uid, st.Mode&0o777)
	}
	if err := unix.Stat(dir, &st); err != nil || st.Mode&0o777 != 0o700 {
		t.Fatalf("directory mode %o (%v)", st.Mode&0o777, err)
	}
	k, _ := p.key()
	loaded := loadEntry(dir, diskKey(k), p)
	if loaded == nil {
		t.Fatal("the stored entry is not read back")
	}
	if !bytes.Equal(loaded.BPF, want.BPF) || loaded.Hash != want.Hash ||
		len(loaded.Allowed) != len(want.Allowed) || len(loaded.Conditional) != len(want.Conditional) {
		t.Fatal("the entry read back differs from the compiled filter")
	}
	forgetInProcess()
	got, err = CompileCachedDir(p, dir)
	if err != nil || !bytes.Equal(got.BPF, want.BPF) {
		t.Fatalf("second: %v", err)
	}
	// Another policy has another entry.
	p2 := p
	p2.MemfdNoexec = true
	if entryPath(t, dir, p2) == ent {
		t.Fatal("two policies share an entry")
	}
}

// Whatever is wrong with an entry or its directory, it is not used: the
// filter is compiled (and the entry rewritten where the directory is safe).
func TestDiskCacheFailsSafe(t *testing.T) {
	dir := rootCacheDir(t)
	p := diskPolicy()
	want, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	forgetInProcess()
	if _, err := CompileCachedDir(p, dir); err != nil {
		t.Fatal(err)
	}
	ent := entryPath(t, dir, p)
	good, err := os.ReadFile(ent)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := p.key()
	dk := diskKey(k)
	// A filter that allows everything, as a forger would write it.
	allow := []byte{0x06, 0, 0, 0, 0, 0, 0xff, 0x7f}
	cases := []struct {
		name  string
		setup func(t *testing.T)
	}{
		{"a flipped byte", func(t *testing.T) {
			b := append([]byte(nil), good...)
			b[len(b)-20] ^= 1
			os.WriteFile(ent, b, 0o600)
		}},
		{"truncated", func(t *testing.T) { os.WriteFile(ent, good[:len(good)/2], 0o600) }},
		{"a forged program with a matching sum", func(t *testing.T) {
			f := *want
			f.BPF = allow
			writeEntry(t, ent, dk, &f)
		}},
		{"a forged program with its own hash and sum", func(t *testing.T) {
			f := *want
			f.BPF = allow
			f.Hash = sha256Hex(allow)
			f.DeniedAction = ActionAllow
			writeEntry(t, ent, dk, &f)
		}},
		{"readable by others", func(t *testing.T) { os.Chmod(ent, 0o644) }},
		{"owned by another uid", func(t *testing.T) { os.Chown(ent, 1000, 1000) }},
		{"a symbolic link", func(t *testing.T) {
			os.Rename(ent, ent+".real")
			os.Symlink(ent+".real", ent)
		}},
		{"a second hard link", func(t *testing.T) { os.Link(ent, ent+".link") }},
		{"a directory writable by others", func(t *testing.T) { os.Chmod(dir, 0o777) }},
		{"a parent writable by others", func(t *testing.T) { os.Chmod(filepath.Dir(dir), 0o777) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			os.Chmod(filepath.Dir(dir), 0o700)
			os.Chmod(dir, 0o700)
			os.Remove(ent)
			os.Remove(ent + ".real")
			os.Remove(ent + ".link")
			if err := os.WriteFile(ent, good, 0o600); err != nil {
				t.Fatal(err)
			}
			if loadEntry(dir, dk, p) == nil {
				t.Fatal("the good entry is not used")
			}
			c.setup(t)
			if loadEntry(dir, dk, p) != nil {
				t.Fatal("entry used")
			}
			forgetInProcess()
			got, err := CompileCachedDir(p, dir)
			if err != nil || !bytes.Equal(got.BPF, want.BPF) {
				t.Fatalf("not compiled afresh: %v", err)
			}
		})
	}
}

// A process that is not root neither reads nor writes a disk cache.
func TestDiskCacheNotRoot(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	forgetInProcess()
	if _, err := compileCachedDir(diskPolicy(), dir, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("a cache directory was made: %v", err)
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func writeEntry(t *testing.T, path, dk string, f *Filter) {
	t.Helper()
	os.Remove(path)
	storeEntry(filepath.Dir(path), dk, f)
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}

package capability

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCanonicalReorderAndDefaults(t *testing.T) {
	a := New().WithReadFiles("/b", "/a").WithReadDirs("/y", "/x").WithWriteDirs("/w2", "/w1").WithExec("/e2", "/e1").
		WithEnv("B", "2").WithEnv("A", "1")
	b := &Set{
		ReadFiles: []string{"/a", "/b"},
		ReadDirs:  []string{"/x", "/y"},
		WriteDirs: []string{"/w1", "/w2"},
		Exec:      []string{"/e1", "/e2"},
		Env:       map[string]string{"A": "1", "B": "2"},
		Memory:    DefaultMemory,
		Tmp:       DefaultTmp,
		Pids:      DefaultPids,
		CPU:       DefaultCPU,
		Timeout:   DefaultTimeout,
		MaxOutput: DefaultMaxOutput, MaxFileSize: DefaultMaxFileSize,
	}
	ca, err := a.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	cb, err := b.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	if string(ca) != string(cb) {
		t.Fatalf("canonical forms differ:\n%s\n%s", ca, cb)
	}
	want := `{"schema":"toolcell.policy/v1","name":"","base":false,"read_files":["/a","/b"],"read_dirs":["/x","/y"],"write_files":[],"write_dirs":["/w1","/w2"],"exec":["/e1","/e2"],"workdir":"","tmp":67108864,"env":{"A":"1","B":"2"},"memory":536870912,"pids":128,"cpu":1,"timeout":"1m0s","max_output":16777216,"max_file_size":1073741824,"syscalls":["file_read","file_write","ioctl","ipc_local","process"],"connect":[]}`
	if string(ca) != want {
		t.Errorf("canonical form:\n%s\nwant:\n%s", ca, want)
	}
	ha, _ := a.Hash()
	hb, _ := b.Hash()
	if ha != hb || !strings.HasPrefix(ha, "sha256:") || len(ha) != len("sha256:")+64 {
		t.Errorf("hashes %q and %q", ha, hb)
	}
	// Canonical must not reorder the caller's slices.
	if a.ReadFiles[0] != "/b" {
		t.Error("Canonical modified the Set")
	}
	// Nil and empty env encode the same.
	if h1, h2 := mustHash(t, New()), mustHash(t, &Set{Env: map[string]string{}}); h1 != h2 {
		t.Error("nil and empty env hash differently")
	}
	var doc map[string]any
	if err := json.Unmarshal(ca, &doc); err != nil {
		t.Fatal(err)
	}
}

func mustHash(t *testing.T, s *Set) string {
	t.Helper()
	h, err := s.Hash()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHashChangesWithEveryField(t *testing.T) {
	base := func() *Set { return builderPolicy() }
	mutations := map[string]func(s *Set){
		"name":              func(s *Set) { s.Name = "other" },
		"base":              func(s *Set) { s.Base = false },
		"read_files add":    func(s *Set) { s.ReadFiles = append(s.ReadFiles, "/data/more.json") },
		"read_files edit":   func(s *Set) { s.ReadFiles[0] = "/data/in2.json" },
		"read_dirs":         func(s *Set) { s.ReadDirs = nil },
		"write_files":       func(s *Set) { s.WriteFiles = append(s.WriteFiles, "/data/log2.txt") },
		"write_dirs":        func(s *Set) { s.WriteDirs[0] = "/data/out2" },
		"exec":              func(s *Set) { s.Exec = append(s.Exec, "/usr/bin/perl") },
		"exec_dirs":         func(s *Set) { s.ExecDirs = []string{"/opt/tool/bin"} },
		"workdir":           func(s *Set) { s.Workdir = "/work2" },
		"workdir unset":     func(s *Set) { s.Workdir = "" },
		"read to write":     func(s *Set) { s.ReadFiles, s.WriteFiles = s.WriteFiles, s.ReadFiles },
		"tmp":               func(s *Set) { s.Tmp++ },
		"tmp default":       func(s *Set) { s.Tmp = 0 },
		"env value":         func(s *Set) { s.Env["LANG"] = "C" },
		"env name":          func(s *Set) { s.Env["LANG2"] = s.Env["LANG"]; delete(s.Env, "LANG") },
		"env add":           func(s *Set) { s.Env["X"] = "" },
		"memory":            func(s *Set) { s.Memory += MiB },
		"pids":              func(s *Set) { s.Pids++ },
		"inotify_instances": func(s *Set) { s.InotifyInstances = 64 },
		"inotify_watches":   func(s *Set) { s.InotifyWatches = 1000 },
		"cpu":               func(s *Set) { s.CPU = 0.51 },
		"timeout":           func(s *Set) { s.Timeout += Duration(time.Nanosecond) },
		"max_output":        func(s *Set) { s.MaxOutput = 2 * MiB },
		"max_file_size":     func(s *Set) { s.MaxFileSize = 3 * MiB },
		"syscalls":          func(s *Set) { s.Syscalls = []string{SyscallsFileRead} },
		"egress":            func(s *Set) { s.Egress = []string{"api.example.com:443"} },
		"follow_symlinks":   func(s *Set) { s.FollowSymlinks = []string{"/work"} },
	}
	seen := map[string]string{mustHash(t, base()): "original"}
	for name, m := range mutations {
		s := base()
		m(s)
		h := mustHash(t, s)
		if prev, dup := seen[h]; dup {
			t.Errorf("mutation %q hashes the same as %q", name, prev)
		}
		seen[h] = name
	}
}

func TestCanonicalDoesNotTouchFileSystem(t *testing.T) {
	// None of these paths exist; Canonical still succeeds.
	s := New().WithReadFiles("/nonexistent/toolcell/a").WithWriteDirs("/nonexistent/toolcell/b")
	if _, err := s.Canonical(); err != nil {
		t.Fatal(err)
	}
}

func TestCanonicalRejectsInvalid(t *testing.T) {
	for name, s := range map[string]*Set{
		"relative":  New().WithReadFiles("rel"),
		"duplicate": New().WithReadFiles("/a", "/a"),
		"memory":    New().WithMemory(-1),
		"nil":       nil,
	} {
		if _, err := s.Hash(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Hash() error = %v, want ErrInvalid", name, err)
		}
	}
}

func TestSyscallsOrDefaultCanonical(t *testing.T) {
	all := New().WithSyscalls(AllSyscalls()...)
	if mustHash(t, all) != mustHash(t, New()) {
		t.Error("listing every syscall kind differs from the default")
	}
	a := New().WithSyscalls(SyscallsProcess, SyscallsFileRead, SyscallsProcess)
	b := New().WithSyscalls(SyscallsFileRead, SyscallsProcess)
	if mustHash(t, a) != mustHash(t, b) {
		t.Error("order or duplicates of syscall kinds change the hash")
	}
	if got := a.SyscallsOrDefault(); len(got) != 2 || got[0] != SyscallsFileRead || got[1] != SyscallsProcess {
		t.Errorf("SyscallsOrDefault = %v", got)
	}
	err := New().WithSyscalls(SyscallsFileRead, "network").Validate()
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "syscalls[1]" || fe.Value != "network" {
		t.Fatalf("unknown syscall kind: %v", err)
	}
}

// follow_symlinks is in the canonical form only when set, so the hashes of
// policies written before it existed do not change; when set, its order
// does not matter.
func TestCanonicalFollowSymlinks(t *testing.T) {
	plain := New().WithReadDirs("/a", "/b")
	c, err := plain.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(c), "follow_symlinks") {
		t.Errorf("canonical form of a policy without follow_symlinks mentions it: %s", c)
	}
	if h := mustHash(t, plain.Clone().WithFollowSymlinks()); h != mustHash(t, plain) {
		t.Error("an empty follow_symlinks changes the hash")
	}
	a := plain.Clone().WithFollowSymlinks("/b", "/a")
	b := plain.Clone().WithFollowSymlinks("/a", "/b")
	ca, err := a.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ca), `"workdir":"","follow_symlinks":["/a","/b"],"tmp"`) {
		t.Errorf("canonical form: %s", ca)
	}
	if mustHash(t, a) != mustHash(t, b) {
		t.Error("the order of follow_symlinks changes the hash")
	}
	if mustHash(t, a) == mustHash(t, plain.Clone().WithFollowSymlinks("/a")) {
		t.Error("a path more in follow_symlinks keeps the hash")
	}
	if _, err := New().WithReadDirs("/a").WithFollowSymlinks("/b").Hash(); !errors.Is(err, ErrInvalid) {
		t.Errorf("follow_symlinks naming no grant: Hash() error %v, want ErrInvalid", err)
	}
}

// The inotify limits are hashed only when they differ from their defaults:
// hashes of policies written before they existed stay valid, and a zero
// limit and the explicit default hash alike.
func TestInotifyHashedWhenPresent(t *testing.T) {
	s := builderPolicy()
	before := mustHash(t, s)
	s.InotifyInstances, s.InotifyWatches = DefaultInotifyInstances, DefaultInotifyWatches
	if mustHash(t, s) != before {
		t.Fatal("the explicit defaults changed the hash")
	}
	c, err := s.WithInotifyInstances(7).Canonical()
	if err != nil || !strings.Contains(string(c), `"inotify_instances":7`) || strings.Contains(string(c), "inotify_watches") {
		t.Fatalf("canonical form %s %v", c, err)
	}
}

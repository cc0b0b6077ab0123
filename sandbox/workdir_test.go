package sandbox_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/internal/testenv"
	"github.com/toolcell/toolcell/sandbox"
)

// Each run with a temporary workdir gets a fresh, empty one at
// /workspace (cwd, HOME and PWD), owned by the caller on the host; the
// policy hash does not depend on its host path, which the record names;
// Collect sees what the tool left there, and the directory is gone after.
func TestTempWorkdir(t *testing.T) {
	testenv.RequireUserNS(t)
	set := base().WithWorkdir(capability.TempWorkdir())
	var dirs, hashes []string
	for i := 0; i < 2; i++ {
		cmd := sandbox.Command("/bin/sh", "-c", `ls -A; pwd; echo "$HOME $PWD"; echo run > out; mkdir -p ro/sub; chmod 0500 ro/sub ro`)
		var seen string
		var own [2]uint32
		cmd.Collect = func(dir string) error {
			b, err := os.ReadFile(filepath.Join(dir, "out"))
			seen = string(b)
			own[0], own[1] = owner(t, filepath.Join(dir, "out"))
			return err
		}
		res := runCmd(t, set, cmd)
		if res.Exit.Code != 0 || string(res.Stdout) != "/workspace\n/workspace /workspace\n" {
			t.Fatalf("run %d: exit %d stdout %q stderr %q (want an empty /workspace)", i, res.Exit.Code, res.Stdout, res.Stderr)
		}
		if seen != "run\n" {
			t.Errorf("Collect read %q", seen)
		}
		if own != [2]uint32{uint32(os.Geteuid()), uint32(os.Getegid())} {
			t.Errorf("the tool's file belongs to %v on the host, want the caller", own)
		}
		rec := res.Audit
		if rec.TempWorkdir == "" || !filepath.IsAbs(rec.TempWorkdir) || rec.Command.Cwd != "/workspace" {
			t.Fatalf("record temp_workdir %q cwd %q", rec.TempWorkdir, rec.Command.Cwd)
		}
		if _, err := os.Lstat(rec.TempWorkdir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("temporary workdir %s still there: %v", rec.TempWorkdir, err)
		}
		m := mountOf(t, rec, "/workspace")
		if m.Src != rec.TempWorkdir && !strings.HasSuffix(m.Src, filepath.Base(rec.TempWorkdir)) {
			t.Errorf("mount %+v, want the temporary workdir", m)
		}
		dirs = append(dirs, rec.TempWorkdir)
		hashes = append(hashes, rec.Policy.Hash)
	}
	if dirs[0] == dirs[1] || hashes[0] != hashes[1] {
		t.Errorf("dirs %q hashes %q: want two directories under one policy hash", dirs, hashes)
	}
}

// Collect's error is Wait's, with the result; a run whose setup failed
// removes its temporary workdir without calling Collect.
func TestTempWorkdirCollectError(t *testing.T) {
	testenv.RequireUserNS(t)
	set := base().WithWorkdir(capability.TempWorkdir())
	cmd := sandbox.Command("/bin/true")
	boom := errors.New("boom")
	cmd.Collect = func(string) error { return boom }
	res, err := sandbox.Run(context.Background(), set, cmd)
	if !errors.Is(err, boom) || res == nil || res.Exit.Code != 0 {
		t.Fatalf("res %v err %v: want the result and Collect's error", res, err)
	}
	if _, err := os.Lstat(res.Audit.TempWorkdir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary workdir kept: %v", err)
	}

	called := false
	bad := sandbox.Command("/no/such/tool")
	bad.Collect = func(string) error { called = true; return nil }
	_, err = sandbox.Run(context.Background(), set, bad)
	var re *sandbox.RunError
	if !errors.As(err, &re) || re.Record.TempWorkdir == "" {
		t.Fatalf("err %v: want a RunError naming the temporary workdir", err)
	}
	if called {
		t.Error("Collect called for a run that never started")
	}
	if _, err := os.Lstat(re.Record.TempWorkdir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary workdir kept after a failed setup: %v", err)
	}
}

// A policy may not put anything else where the temporary workdir goes.
func TestTempWorkdirConflict(t *testing.T) {
	testenv.RequireUserNS(t)
	if _, err := os.Stat(capability.TempWorkdirPath); err != nil {
		testenv.NotApplicable(t, map[string]string{
			testenv.KindRootlessHybrid: "the grant needs a " + capability.TempWorkdirPath + " directory on the host, which only root may make",
		})
		// Make the host path exist only for this test's grant.
		if err := os.Mkdir(capability.TempWorkdirPath, 0o755); err != nil {
			testenv.Require(t, false, "a "+capability.TempWorkdirPath+" directory on the host: "+err.Error())
		}
		t.Cleanup(func() { os.Remove(capability.TempWorkdirPath) })
	}
	_, err := sandbox.Run(context.Background(), base().WithWorkdir(capability.TempWorkdir()).WithReadDirs(capability.TempWorkdirPath), sandbox.Command("/bin/true"))
	if !errors.Is(err, sandbox.ErrPolicy) || !strings.Contains(err.Error(), "/workspace") {
		t.Fatalf("err %v: want ErrPolicy naming /workspace", err)
	}
}

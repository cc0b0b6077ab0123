package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/toolcell/toolcell/capability"
)

// A temporary workdir (capability.TempWorkdir) is made here, per run, in
// the host's TMPDIR, mode 0700: only its owner (the caller) and, through
// the idmapped mount (as root) or the user namespace (rootless), the
// tool reach it. The tool sees it at capability.TempWorkdirPath, so
// nothing of the host path reaches the tool or the policy hash.

func (p *Process) makeTempWorkdir() error {
	dir, err := os.MkdirTemp("", "toolcell-workdir-")
	if err != nil {
		return fmt.Errorf("%w: temporary workdir: %w", ErrSetup, err)
	}
	p.tempDir = dir
	p.rec.TempWorkdir = dir
	return nil
}

// tempWorkdirEnv is what a temporary workdir adds to the tool's
// environment: HOME and PWD at the sandbox's path, unless the policy sets
// them. cwd "" means the workdir itself.
func tempWorkdirEnv(set *capability.Set, cwd string) []string {
	if !set.HasTempWorkdir() {
		return nil
	}
	if cwd == "" {
		cwd = capability.TempWorkdirPath
	}
	var env []string
	if _, ok := set.Env["HOME"]; !ok {
		env = append(env, "HOME="+capability.TempWorkdirPath)
	}
	if _, ok := set.Env["PWD"]; !ok {
		env = append(env, "PWD="+cwd)
	}
	return env
}

// endTempWorkdir hands the temporary workdir to Cmd.Collect (when the
// sandbox ran) and removes it. Called once no process of the run is left.
func (p *Process) endTempWorkdir(ran bool) {
	if p.tempDir == "" {
		return
	}
	if ran && p.cmd.Collect != nil {
		if err := p.cmd.Collect(p.tempDir); err != nil {
			p.collectErr = fmt.Errorf("sandbox: collect %s: %w", p.tempDir, err)
		}
	}
	if err := removeTree(p.tempDir); err != nil {
		p.rec.Enforce.Notes = append(p.rec.Enforce.Notes, "temporary workdir not fully removed: "+err.Error())
		p.log("temporary workdir", "err", err)
	}
	p.tempDir = ""
}

// removeTree removes dir and everything in it, including directories the
// tool made read-only (a Go module cache, say), which os.RemoveAll cannot
// empty when we are not root.
func removeTree(dir string) error {
	err := os.RemoveAll(dir)
	if err == nil || !errors.Is(err, fs.ErrPermission) {
		return err
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		} else if err != nil && d != nil && d.IsDir() {
			// not readable yet: make it so and walk it again
			if os.Chmod(p, 0o700) == nil {
				_ = removeTree(p)
			}
			return filepath.SkipDir
		}
		return nil
	})
	return os.RemoveAll(dir)
}

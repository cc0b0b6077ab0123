package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/capability"
)

// A temporary workdir (capability.TempWorkdir) is made here, per run, in
// the host's TMPDIR, mode 0700: only its owner (the caller) and, through
// the idmapped mount (as root) or the user namespace (rootless), the
// tool reach it. The tool sees it at capability.TempWorkdirPath, so
// nothing of the host path reaches the tool or the policy hash.

func (p *Process) makeTempWorkdir() error {
	if !p.set.HasTempWorkdir() {
		return nil
	}
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
	if p.lingering {
		// Collect's promise (every process ended) does not hold, and a
		// process left could write on: keep the directory, say so.
		p.collectErr = fmt.Errorf("sandbox: the run's cgroup could not be removed, a process may be left: Collect not called, %s kept", p.tempDir)
		p.rec.Enforcement.Notes = append(p.rec.Enforcement.Notes, "temporary workdir kept: a process of the run may be left")
		p.tempDir = ""
		return
	}
	if ran && p.cmd.Collect != nil {
		if err := p.cmd.Collect(p.tempDir); err != nil {
			p.collectErr = fmt.Errorf("sandbox: collect %s: %w", p.tempDir, err)
		}
	}
	if err := removeTree(p.tempDir); err != nil {
		p.rec.Enforcement.Notes = append(p.rec.Enforcement.Notes, "temporary workdir not fully removed: "+err.Error())
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
	// WalkDir visits a directory before it reads it: opened up there, it
	// can be read and emptied.
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

// noSetIDFiles refuses a writable grant the tool writes as root (uid or
// gid 0: a root-owned grant, idmapped) that holds a set-ID file of those
// ids. The tool cannot make a file set-ID (seccomp refuses the modes), but
// it could change the content of one that is, and a write through a shared
// mapping (mmap) keeps the bits where write(2) would clear them: the
// host would then run the tool's code as root. The check walks the grant
// when each sandbox is built (submounts included, no symlink followed),
// which costs a stat per file (BENCHMARKS.md); a set-ID file the host puts
// there later (during the run, or while a Pool's sandbox waits) is the
// host's doing. Grants of other owners are not
// walked: the tool acts as that owner there already (THREAT_MODEL.md).
func noSetIDFiles(mounts []audit.MountInfo, idmapped map[int]hostOwner) error {
	idx := make([]int, 0, len(idmapped))
	for i := range idmapped {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	for _, i := range idx {
		o, root := idmapped[i], mounts[i].Src
		if o.uid != 0 && o.gid != 0 {
			continue
		}
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.Type().IsRegular() {
				return nil
			}
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return err
			}
			setID := st.Mode & (unix.S_ISUID | unix.S_ISGID)
			if setID != 0 && (st.Uid == o.uid || st.Gid == o.gid) {
				return fmt.Errorf("%w: %s is set-ID (mode %04o, owner %d:%d) in the writable grant %s, which the tool writes to as its owner %d:%d: it could change the program; remove the set-ID bit or grant a directory without it",
					ErrPolicy, p, st.Mode&0o7777, st.Uid, st.Gid, mounts[i].Dst, o.uid, o.gid)
			}
			return nil
		})
		if err != nil {
			if errors.Is(err, ErrPolicy) {
				return err
			}
			return fmt.Errorf("%w: checking %s for set-ID files: %w", ErrSetup, root, err)
		}
	}
	return nil
}

package cgroup

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"golang.org/x/sys/unix"
)

// Version is a cgroup interface version.
type Version int

const (
	// V1 is the legacy per-controller hierarchies.
	V1 Version = 1
	// V2 is the unified hierarchy.
	V2 Version = 2
)

func (v Version) String() string {
	switch v {
	case V1:
		return "v1"
	case V2:
		return "v2"
	}
	return fmt.Sprintf("Version(%d)", int(v))
}

// cpuPeriodUsec is the CFS bandwidth period used for every run (100ms, the
// kernel default).
const cpuPeriodUsec = 100000

// minCPUQuotaUsec is the smallest quota the kernel accepts (1ms).
const minCPUQuotaUsec = 1000

// Limits are the resource limits of one run. Every field must be > 0.
type Limits struct {
	// MemoryBytes caps memory (anonymous + page cache + kernel). Swap is
	// disabled for the run where the kernel allows it.
	MemoryBytes int64
	// Pids caps the number of tasks (processes and threads).
	Pids int64
	// CPU is the CPU bandwidth as a fraction of one CPU (1.5 = one and a
	// half CPUs). The smallest accepted value is 0.01.
	CPU float64
}

// validate returns an error naming the first invalid field.
func (l Limits) validate() error {
	if l.MemoryBytes <= 0 {
		return fmt.Errorf("cgroup: Limits.MemoryBytes must be > 0, got %d", l.MemoryBytes)
	}
	if l.Pids <= 0 {
		return fmt.Errorf("cgroup: Limits.Pids must be > 0, got %d", l.Pids)
	}
	if !(l.CPU > 0) || math.IsInf(l.CPU, 0) {
		return fmt.Errorf("cgroup: Limits.CPU must be > 0, got %v", l.CPU)
	}
	if q := l.cpuQuota(); q < minCPUQuotaUsec {
		return fmt.Errorf("cgroup: Limits.CPU %v is below the kernel minimum (quota %dus < %dus per %dus)", l.CPU, q, minCPUQuotaUsec, cpuPeriodUsec)
	}
	if l.CPU*cpuPeriodUsec > math.MaxInt64/2 {
		return fmt.Errorf("cgroup: Limits.CPU %v is too large", l.CPU)
	}
	return nil
}

func (l Limits) cpuQuota() int64 { return int64(math.Round(l.CPU * cpuPeriodUsec)) }

// Config selects where run cgroups are created. The zero value is the
// usual choice.
type Config struct {
	// Parent is the parent cgroup of run cgroups.
	// v2: a path relative to the cgroup2 mount, e.g. "/toolcell"; default
	// "<own>/toolcell" where <own> is the caller's cgroup (see the package
	// documentation for the no-internal-process rule).
	// v1: a path used under every hierarchy; default: the caller's own
	// cgroup in each hierarchy.
	Parent string
	// Mountpoint overrides the cgroup2 mount; setting it forces v2.
	// Default: detected from /proc/self/mountinfo.
	Mountpoint string
	// EvacuateSelf (v2, default parent only) allows New to move every
	// process of the caller's own cgroup into "<own>/supervisor" when that
	// is the only way to delegate controllers to the run cgroups.
	EvacuateSelf bool
}

// Cgroup is one run cgroup. Its methods are safe for concurrent use.
type Cgroup struct {
	version     Version
	path        string // v2: relative to mount; v1: relative path in the memory hierarchy
	lim         Limits
	swapLimited bool

	// v2
	mount string
	mgr   *cgroup2.Manager

	// v1
	v1cg   cgroup1.Cgroup
	v1dirs map[string]string // controller -> absolute directory
	v1uniq []string          // distinct directories of v1dirs, resolved once

	mu      sync.Mutex
	deleted bool
}

func validName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00\n") {
		return fmt.Errorf("cgroup: invalid run cgroup name %q (must be one non-empty path element)", name)
	}
	if strings.HasPrefix(name, "cgroup.") {
		return fmt.Errorf("cgroup: invalid run cgroup name %q (the cgroup. prefix is reserved)", name)
	}
	return nil
}

// New creates the run cgroup name below the parent selected by cfg and
// applies lim. On error nothing created by New is left behind.
func New(cfg Config, name string, lim Limits) (*Cgroup, error) {
	if err := lim.validate(); err != nil {
		return nil, err
	}
	if err := validName(name); err != nil {
		return nil, err
	}
	if cfg.Parent != "" && !strings.HasPrefix(cfg.Parent, "/") {
		return nil, fmt.Errorf("cgroup: Config.Parent %q must start with /", cfg.Parent)
	}
	d, err := detect(cfg)
	if err != nil {
		return nil, err
	}
	if d.version == V2 {
		return newV2(d, cfg, name, lim, true)
	}
	return newV1(d, cfg, name, lim)
}

// Version reports whether the cgroup lives in the v1 or v2 interface.
func (c *Cgroup) Version() Version { return c.version }

// Path is the cgroup path: for v2 relative to the cgroup2 mount (e.g.
// "/toolcell/run-123"); for v1 the path relative to the memory hierarchy
// (see Dirs for every hierarchy).
func (c *Cgroup) Path() string { return c.path }

// Dirs returns the absolute directories of the cgroup: one for v2, one per
// hierarchy (memory, pids, cpu, cpuacct) for v1.
func (c *Cgroup) Dirs() map[string]string {
	out := map[string]string{}
	if c.version == V2 {
		out["unified"] = c.mount + c.path
		return out
	}
	for k, v := range c.v1dirs {
		out[k] = v
	}
	return out
}

// addProc moves the process pid (all its threads) into the cgroup, in every
// hierarchy used.
func (c *Cgroup) addProc(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("cgroup: addProc: invalid pid %d", pid)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.deleted {
		return errors.New("cgroup: addProc: cgroup " + c.path + " was deleted")
	}
	var err error
	if c.version == V2 {
		err = c.mgr.AddProc(uint64(pid))
	} else {
		err = c.v1cg.AddProc(uint64(pid))
	}
	if err != nil {
		return fmt.Errorf("cgroup: add pid %d to %s (cgroup.procs): %w", pid, c.path, err)
	}
	return nil
}

// OpenProcs opens cgroup.procs for writing in every hierarchy of the
// cgroup (one file on v2), so that a process given the files can join by
// writing "0" (the writer itself). On v1 the kernel checks the permission of
// the opener, so a helper that could not open the files can still use them;
// on v2 the writer must also be allowed to move itself (the delegation
// rules of cgroup-v2.rst). The caller closes the files.
func (c *Cgroup) OpenProcs() ([]*os.File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.deleted {
		return nil, errors.New("cgroup: OpenProcs: cgroup " + c.path + " was deleted")
	}
	var files []*os.File
	for _, dir := range c.uniqueDirs() {
		f, err := os.OpenFile(filepath.Join(dir, "cgroup.procs"), os.O_WRONLY, 0)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, fmt.Errorf("cgroup: %w", err)
		}
		files = append(files, f)
	}
	return files, nil
}

// OpenDir opens the cgroup directory with O_PATH|O_DIRECTORY|O_CLOEXEC for
// use as syscall.SysProcAttr.CgroupFD (with UseCgroupFD). v2 only. The
// caller closes the file once the child has started.
func (c *Cgroup) OpenDir() (*os.File, error) {
	if c.version != V2 {
		return nil, fmt.Errorf("cgroup: OpenDir: CLONE_INTO_CGROUP needs cgroup v2, this cgroup is %s", c.version)
	}
	dir := c.mount + c.path
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("cgroup: open %s: %w", dir, err)
	}
	return os.NewFile(uintptr(fd), dir), nil
}

// Stats are the run's resource usage as counted by the kernel.
type Stats struct {
	CPUUserUsec     uint64
	CPUSystemUsec   uint64
	MemoryPeakBytes uint64
	PidsPeak        uint64
	OOMKills        uint64
	// PidsMaxEvents counts forks refused by the pids limit (pids.events
	// "max", v1 and v2).
	PidsMaxEvents uint64
	// CPUThrottled counts periods the cpu limit throttled the group
	// (cpu.stat nr_throttled, v1 and v2).
	CPUThrottled uint64
	// Notes explain values reported as 0 because the kernel lacks the
	// counter, e.g. "pids.peak not available on this kernel".
	Notes []string
}

// Stats reads the usage counters.
func (c *Cgroup) Stats() (Stats, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.deleted {
		return Stats{}, errors.New("cgroup: Stats: cgroup " + c.path + " was deleted")
	}
	if c.version == V2 {
		return statsV2(c.mount + c.path)
	}
	return statsV1(c.v1dirs)
}

// killDeadline bounds how long Kill waits for the cgroup to become empty.
var killDeadline = 2 * time.Second

// Kill SIGKILLs every task in the cgroup and waits (up to ~2s) until the
// cgroup is empty. v2 uses cgroup.kill; v1 signals each member pid.
func (c *Cgroup) Kill() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.deleted {
		return nil
	}
	if c.version == V2 {
		return killV2(c.mount + c.path)
	}
	return killV1(c.v1uniq)
}

// Delete removes the cgroup in every hierarchy. It retries briefly while
// exiting tasks still pin it, and fails if tasks remain (call Kill first).
// Deleting twice is not an error.
func (c *Cgroup) Delete() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.deleted {
		return nil
	}
	var errs []error
	deadline := time.Now().Add(2 * time.Second)
	for _, dir := range c.uniqueDirs() {
		if err := rmdirRetry(dir, time.Until(deadline)); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	c.deleted = true
	return nil
}

// DeleteIfEmpty removes the cgroup if no task is in it, trying each
// directory once. The kernel refuses to remove a cgroup with a task in it
// (EBUSY), so a removal is itself the proof that it was empty, and the
// usual Kill before Delete can be skipped. On EBUSY it returns false with
// the cgroup still usable (Kill, then Delete); directories already removed
// are forgotten. A cgroup already deleted reports true.
func (c *Cgroup) DeleteIfEmpty() (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.deleted {
		return true, nil
	}
	dirs := c.uniqueDirs()
	for i, dir := range dirs {
		err := unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			continue
		}
		if c.version == V1 {
			c.v1uniq = dirs[i:]
		}
		if errors.Is(err, unix.EBUSY) {
			return false, nil
		}
		return false, fmt.Errorf("cgroup: rmdir %s: %w", dir, err)
	}
	c.deleted = true
	return true, nil
}

func (c *Cgroup) uniqueDirs() []string {
	if c.version == V2 {
		return []string{c.mount + c.path}
	}
	return c.v1uniq
}

// rmdirRetry removes a cgroup directory, retrying on EBUSY/EAGAIN until
// timeout. A missing directory counts as removed.
func rmdirRetry(dir string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	delay := 5 * time.Millisecond
	for {
		err := unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !(errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EAGAIN)) || time.Now().After(deadline) {
			return fmt.Errorf("cgroup: rmdir %s: %w", dir, err)
		}
		time.Sleep(delay)
		if delay < 100*time.Millisecond {
			delay *= 2
		}
	}
}

// removeCreated removes directories created during a failed New, deepest
// first.
func removeCreated(created []string) {
	for i := len(created) - 1; i >= 0; i-- {
		_ = rmdirRetry(created[i], 500*time.Millisecond)
	}
}

package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"time"

	"github.com/containerd/cgroups/v3/cgroup1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// v1Hier is one v1 hierarchy used by a run cgroup.
type v1Hier struct {
	root string // directory that holds the hierarchy as root/<controller>
	rel  string // run cgroup path relative to the hierarchy mount
}

// v1Root returns the directory r such that r/<controller> is the mount of
// controller (directly, or through the usual cpu -> cpu,cpuacct symlinks).
func v1Root(controller string, m mountEntry) (string, error) {
	parent := filepath.Dir(m.MountPoint)
	if filepath.Base(m.MountPoint) == controller {
		return parent, nil
	}
	if fi, err := os.Stat(filepath.Join(parent, controller)); err == nil && fi.IsDir() {
		return parent, nil
	}
	return "", fmt.Errorf("cgroup: v1 %s hierarchy is mounted at %s and %s does not exist",
		controller, m.MountPoint, filepath.Join(parent, controller))
}

func newV1(d *detected, cfg Config, name string, lim Limits) (_ *Cgroup, retErr error) {
	l := d.layout
	hiers := map[string]v1Hier{}
	var created []string
	defer func() {
		if retErr != nil {
			removeCreated(created)
		}
	}()
	for _, ctrl := range requiredV1 {
		m := l.V1[ctrl]
		root, err := v1Root(ctrl, m)
		if err != nil {
			return nil, err
		}
		parent := cfg.Parent
		if parent == "" {
			if parent, err = l.ownV1(ctrl); err != nil {
				return nil, err
			}
		}
		rel := path.Join(path.Clean(parent), name)
		base := filepath.Join(root, ctrl)
		// Record directories the library's MkdirAll will create, so that
		// a failure can remove them again.
		dir := base
		for _, elem := range splitPath(rel) {
			dir = filepath.Join(dir, elem)
			if _, err := os.Lstat(dir); err == nil {
				if dir == filepath.Join(base, rel) {
					return nil, fmt.Errorf("cgroup: run cgroup %s already exists", dir)
				}
				continue
			} else if !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("cgroup: stat %s: %w", dir, err)
			}
			created = append(created, dir)
		}
		hiers[ctrl] = v1Hier{root: root, rel: rel}
	}

	mem := lim.MemoryBytes
	quota := lim.cpuQuota()
	period := uint64(cpuPeriodUsec)
	pids := lim.Pids
	res := &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: &mem},
		Pids:   &specs.LinuxPids{Limit: &pids},
		CPU:    &specs.LinuxCPU{Quota: &quota, Period: &period},
	}
	memRoot := filepath.Join(hiers["memory"].root, "memory")
	swapLimited := false
	if _, err := os.Stat(filepath.Join(memRoot, "memory.memsw.limit_in_bytes")); err == nil {
		// memsw limits memory+swap; equal to the memory limit means no swap.
		swap := mem
		res.Memory.Swap = &swap
		swapLimited = true
	}

	subsystems := []cgroup1.Subsystem{
		cgroup1.NewMemory(hiers["memory"].root),
		cgroup1.NewPids(hiers["pids"].root),
		cgroup1.NewCpu(hiers["cpu"].root),
		cgroup1.NewCpuacct(hiers["cpuacct"].root),
	}
	pathFn := func(n cgroup1.Name) (string, error) {
		h, ok := hiers[string(n)]
		if !ok {
			return "", cgroup1.ErrControllerNotActive
		}
		return h.rel, nil
	}
	cg, err := cgroup1.New(pathFn, res, cgroup1.WithHierarchy(func() ([]cgroup1.Subsystem, error) {
		return subsystems, nil
	}))
	if err != nil {
		return nil, fmt.Errorf("cgroup: create v1 cgroup %s with limits (memory.limit_in_bytes, memory.memsw.limit_in_bytes, pids.max, cpu.cfs_quota_us): %w", hiers["memory"].rel, err)
	}
	dirs := map[string]string{}
	for ctrl, h := range hiers {
		dirs[ctrl] = filepath.Join(h.root, ctrl, h.rel)
	}
	return &Cgroup{
		version:     V1,
		path:        hiers["memory"].rel,
		lim:         lim,
		swapLimited: swapLimited,
		v1cg:        cg,
		v1dirs:      dirs,
		v1uniq:      uniqueRealDirs(dirs),
	}, nil
}

func splitPath(p string) []string {
	var out []string
	cur := path.Clean("/" + p)
	for cur != "/" {
		out = append([]string{path.Base(cur)}, out...)
		cur = path.Dir(cur)
	}
	return out
}

// uniqueRealDirs returns the distinct directories of dirs (co-mounted
// hierarchies reached through symlinks count once), in a stable order.
func uniqueRealDirs(dirs map[string]string) []string {
	seen := map[string]bool{}
	var out []string
	keys := make([]string, 0, len(dirs))
	for k := range dirs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		d := dirs[k]
		real, err := filepath.EvalSymlinks(d)
		if err != nil {
			real = d
		}
		if seen[real] {
			continue
		}
		seen[real] = true
		out = append(out, d)
	}
	return out
}

// killV1 SIGKILLs every member of the cgroup until all hierarchies report
// an empty cgroup.procs, or the deadline passes.
func killV1(dirs []string) error {
	deadline := time.Now().Add(killDeadline)
	for {
		found := 0
		for _, dir := range dirs {
			pids, err := readPids(filepath.Join(dir, "cgroup.procs"))
			if err != nil {
				return fmt.Errorf("cgroup: kill: %w", err)
			}
			for _, pid := range pids {
				found++
				if err := killIfMember(pid, dir); err != nil {
					return err
				}
			}
		}
		if found == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup: kill: %d task(s) still in %v after %v", found, dirs, killDeadline)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// killIfMember SIGKILLs pid if it is still listed in dir/cgroup.procs. A
// pidfd is opened first and membership is checked afterwards, so the signal
// goes to the very process that was verified even if the pid is recycled.
func killIfMember(pid int, dir string) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		if !errors.Is(err, unix.ENOSYS) {
			return fmt.Errorf("cgroup: kill: pidfd_open(%d): %w", pid, err)
		}
		fd = -1
	}
	if fd >= 0 {
		defer unix.Close(fd)
	}
	pids, err := readPids(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return fmt.Errorf("cgroup: kill: %w", err)
	}
	member := false
	for _, p := range pids {
		if p == pid {
			member = true
			break
		}
	}
	if !member {
		return nil
	}
	if fd >= 0 {
		err = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
	} else {
		err = unix.Kill(pid, unix.SIGKILL)
	}
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("cgroup: kill: signal pid %d: %w", pid, err)
	}
	return nil
}

// statsV1 reads the v1 counters.
func statsV1(dirs map[string]string) (Stats, error) {
	var st Stats
	acct := dirs["cpuacct"]
	user, uerr := readUint(filepath.Join(acct, "cpuacct.usage_user"))
	sys, serr := readUint(filepath.Join(acct, "cpuacct.usage_sys"))
	if uerr == nil && serr == nil {
		st.CPUUserUsec, st.CPUSystemUsec = user/1000, sys/1000
	} else {
		// cpuacct.stat is in USER_HZ (100 on Linux) ticks.
		m, err := readFlatKeyed(filepath.Join(acct, "cpuacct.stat"))
		if err != nil {
			return st, fmt.Errorf("cgroup: stats: %w", err)
		}
		st.CPUUserUsec, st.CPUSystemUsec = m["user"]*10000, m["system"]*10000
		st.Notes = append(st.Notes, "cpu time from cpuacct.stat (10ms resolution)")
	}

	memDir := dirs["memory"]
	peak, err := readUint(filepath.Join(memDir, "memory.max_usage_in_bytes"))
	if err != nil {
		return st, fmt.Errorf("cgroup: stats: %w", err)
	}
	st.MemoryPeakBytes = peak

	if v, err := readUint(filepath.Join(dirs["pids"], "pids.peak")); err == nil {
		st.PidsPeak = v
	} else if errors.Is(err, os.ErrNotExist) {
		st.Notes = append(st.Notes, "pids.peak not available on this kernel")
	} else {
		return st, fmt.Errorf("cgroup: stats: %w", err)
	}

	if ev, err := readFlatKeyed(filepath.Join(dirs["pids"], "pids.events")); err == nil {
		st.PidsMaxEvents = ev["max"]
	} else {
		st.Notes = append(st.Notes, "pids.events not available on this kernel")
	}
	if cs, err := readFlatKeyed(filepath.Join(dirs["cpu"], "cpu.stat")); err == nil {
		st.CPUThrottled = cs["nr_throttled"]
	} else {
		st.Notes = append(st.Notes, "cpu.stat not available: throttling not counted")
	}
	oc, err := readFlatKeyed(filepath.Join(memDir, "memory.oom_control"))
	if err != nil {
		return st, fmt.Errorf("cgroup: stats: %w", err)
	}
	if v, ok := oc["oom_kill"]; ok {
		st.OOMKills = v
	} else {
		fc, _ := readUint(filepath.Join(memDir, "memory.failcnt"))
		st.Notes = append(st.Notes, fmt.Sprintf("memory.oom_control has no oom_kill counter (Linux 4.13+); memory.failcnt=%d", fc))
	}
	return st, nil
}

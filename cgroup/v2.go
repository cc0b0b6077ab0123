package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/cgroups/v3/cgroup2"
	"golang.org/x/sys/unix"
)

// v2 parent used below the caller's own cgroup by default, and the leaf the
// caller's processes are moved to by Config.EvacuateSelf.
const (
	defaultParentName = "toolcell"
	supervisorName    = "supervisor"
)

// newV2 creates a v2 run cgroup. applyLimits=false skips controller
// delegation and limits; it exists so the mechanics (mkdir, cgroup.kill,
// CLONE_INTO_CGROUP, rmdir) can be tested on a hybrid host whose cgroup2
// tree has no controllers.
func newV2(d *detected, cfg Config, name string, lim Limits, applyLimits bool) (_ *Cgroup, retErr error) {
	mount := d.mount
	parent := cfg.Parent
	own := ""
	if o, err := d.layout.ownV2(); err == nil {
		own = o
	}
	if parent == "" {
		if own == "" {
			return nil, fmt.Errorf("cgroup: cannot determine own v2 cgroup from %s; set Config.Parent", procSelfCgroup)
		}
		parent = path.Join(own, defaultParentName)
	}
	parent = path.Clean(parent)

	var created []string
	defer func() {
		if retErr != nil {
			removeCreated(created)
		}
	}()

	// 1. The parent chain.
	if err := mkdirChain(mount, parent, &created); err != nil {
		return nil, err
	}
	// 2. Delegate memory, pids, cpu down to the parent's children.
	if applyLimits {
		evacuate := ""
		if cfg.Parent == "" && cfg.EvacuateSelf {
			evacuate = own
		}
		if err := enableControllers(mount, parent, evacuate); err != nil {
			return nil, err
		}
	}
	// 3. The run cgroup itself; it must not exist yet.
	rel := path.Join(parent, name)
	dir := filepath.Join(mount, rel)
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("cgroup: run cgroup %s already exists: %w", dir, err)
		}
		return nil, fmt.Errorf("cgroup: create %s: %w", dir, err)
	}
	created = append(created, dir)

	c := &Cgroup{version: V2, path: rel, lim: lim, mount: mount}
	if !applyLimits {
		m, err := cgroup2.Load(rel, cgroup2.WithMountpoint(mount))
		if err != nil {
			return nil, fmt.Errorf("cgroup: load %s: %w", dir, err)
		}
		c.mgr = m
		return c, nil
	}
	// 4. Limits. The library writes memory.max, pids.max and cpu.max.
	quota := lim.cpuQuota()
	period := uint64(cpuPeriodUsec)
	mem := lim.MemoryBytes
	res := &cgroup2.Resources{
		Memory: &cgroup2.Memory{Max: &mem},
		Pids:   &cgroup2.Pids{Max: lim.Pids},
		CPU:    &cgroup2.CPU{Max: cgroup2.NewCPUMax(&quota, &period)},
	}
	m, err := cgroup2.NewManager(mount, rel, res)
	if err != nil {
		return nil, fmt.Errorf("cgroup: set limits (memory.max, pids.max, cpu.max) on %s: %w", dir, err)
	}
	c.mgr = m
	// memory.swap.max is absent without swap accounting; that is not an
	// error, the run just cannot be stopped from swapping (there may be
	// no swap at all).
	swapFile := filepath.Join(dir, "memory.swap.max")
	if _, err := os.Stat(swapFile); err == nil {
		if err := os.WriteFile(swapFile, []byte("0"), 0); err != nil {
			return nil, fmt.Errorf("cgroup: write %s: %w", swapFile, err)
		}
		c.swapLimited = true
	}
	return c, nil
}

// mkdirChain creates mount+rel and any missing ancestors, recording what it
// created.
func mkdirChain(mount, rel string, created *[]string) error {
	dir := mount
	for _, elem := range strings.Split(strings.Trim(rel, "/"), "/") {
		if elem == "" {
			continue
		}
		dir = filepath.Join(dir, elem)
		err := os.Mkdir(dir, 0o755)
		switch {
		case err == nil:
			*created = append(*created, dir)
		case errors.Is(err, os.ErrExist):
		default:
			return fmt.Errorf("cgroup: create parent %s: %w", dir, err)
		}
	}
	return nil
}

// enableControllers makes sure every cgroup from the mount root down to
// parent (inclusive) lists memory, pids and cpu in cgroup.subtree_control.
// If evacuate names one of those cgroups and it is blocked by the
// no-internal-process rule, its processes are moved to a "supervisor"
// leaf first.
func enableControllers(mount, parent, evacuate string) error {
	levels := []string{"/"}
	cur := "/"
	for _, elem := range strings.Split(strings.Trim(parent, "/"), "/") {
		if elem == "" {
			continue
		}
		cur = path.Join(cur, elem)
		levels = append(levels, cur)
	}
	for _, lvl := range levels {
		dir := filepath.Join(mount, lvl)
		stFile := filepath.Join(dir, "cgroup.subtree_control")
		enabled, err := readFields(stFile)
		if err != nil {
			return fmt.Errorf("cgroup: read %s: %w", stFile, err)
		}
		need := missingFrom(enabled, requiredV2)
		if len(need) == 0 {
			continue
		}
		ctrlFile := filepath.Join(dir, "cgroup.controllers")
		avail, err := readFields(ctrlFile)
		if err != nil {
			return fmt.Errorf("cgroup: read %s: %w", ctrlFile, err)
		}
		if miss := missingFrom(avail, need); len(miss) > 0 {
			return fmt.Errorf("cgroup: %s does not offer %s: %w", ctrlFile, strings.Join(miss, ","),
				&unsupportedError{Missing: prefixAll("v2:", miss), Detail: "controller not delegated to " + dir})
		}
		err = writeSubtreeControl(stFile, need)
		if err != nil && errors.Is(err, unix.EBUSY) && lvl != "/" {
			if lvl == evacuate {
				if eerr := evacuateProcs(dir); eerr != nil {
					return eerr
				}
				err = writeSubtreeControl(stFile, need)
			} else if procs, _ := readPids(filepath.Join(dir, "cgroup.procs")); len(procs) > 0 {
				return fmt.Errorf("cgroup: cannot enable %s in %s: %s has %d process(es) of its own and cgroup v2 only delegates controllers from cgroups without processes (no-internal-process rule); set Config.Parent to an empty cgroup or Config.EvacuateSelf: %w",
					strings.Join(need, ","), stFile, dir, len(procs), err)
			}
		}
		if err != nil {
			return fmt.Errorf("cgroup: enable %s in %s: %w", strings.Join(need, ","), stFile, err)
		}
	}
	return nil
}

func prefixAll(p string, in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = p + s
	}
	return out
}

func writeSubtreeControl(file string, ctrls []string) error {
	return os.WriteFile(file, []byte("+"+strings.Join(ctrls, " +")), 0)
}

// evacuateProcs moves every process of dir into dir/supervisor so that dir
// may delegate controllers.
func evacuateProcs(dir string) error {
	leaf := filepath.Join(dir, supervisorName)
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("cgroup: create %s: %w", leaf, err)
	}
	procsFile := filepath.Join(dir, "cgroup.procs")
	for i := 0; i < 10; i++ {
		pids, err := readPids(procsFile)
		if err != nil {
			return fmt.Errorf("cgroup: read %s: %w", procsFile, err)
		}
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
			if err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("cgroup: move pid %d to %s: %w", pid, leaf, err)
			}
		}
	}
	return fmt.Errorf("cgroup: %s keeps gaining processes; cannot evacuate it", dir)
}

// killV2 writes cgroup.kill and waits for the cgroup to become empty.
func killV2(dir string) error {
	kf := filepath.Join(dir, "cgroup.kill")
	if err := os.WriteFile(kf, []byte("1"), 0); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("cgroup: kill: %s does not exist (cgroup.kill needs Linux 5.14+): %w", kf, err)
		}
		return fmt.Errorf("cgroup: kill: write %s: %w", kf, err)
	}
	return waitEmptyV2(dir, killDeadline)
}

func waitEmptyV2(dir string, timeout time.Duration) error {
	ev := filepath.Join(dir, "cgroup.events")
	deadline := time.Now().Add(timeout)
	for {
		m, err := readFlatKeyed(ev)
		if err != nil {
			return fmt.Errorf("cgroup: kill: read %s: %w", ev, err)
		}
		if m["populated"] == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			pids, _ := readPids(filepath.Join(dir, "cgroup.procs"))
			return fmt.Errorf("cgroup: kill: %s still populated after %v (pids %v)", dir, timeout, pids)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// statsV2 reads the v2 counters of dir.
func statsV2(dir string) (Stats, error) {
	var st Stats
	cpuFile := filepath.Join(dir, "cpu.stat")
	cpu, err := readFlatKeyed(cpuFile)
	if err != nil {
		return st, fmt.Errorf("cgroup: stats: %w", err)
	}
	st.CPUUserUsec, st.CPUSystemUsec = cpu["user_usec"], cpu["system_usec"]
	st.CPUThrottled = cpu["nr_throttled"] // absent without the cpu controller: 0
	if ev, err := readFlatKeyed(filepath.Join(dir, "pids.events")); err == nil {
		st.PidsMaxEvents = ev["max"]
	} else {
		st.Notes = append(st.Notes, "pids.events not available (pids controller not enabled)")
	}

	if v, err := readUint(filepath.Join(dir, "memory.peak")); err == nil {
		st.MemoryPeakBytes = v
	} else if errors.Is(err, os.ErrNotExist) {
		st.Notes = append(st.Notes, "memory.peak not available on this kernel (needs Linux 5.19+)")
	} else {
		return st, fmt.Errorf("cgroup: stats: %w", err)
	}

	if v, err := readUint(filepath.Join(dir, "pids.peak")); err == nil {
		st.PidsPeak = v
	} else if errors.Is(err, os.ErrNotExist) {
		st.Notes = append(st.Notes, "pids.peak not available on this kernel")
	} else {
		return st, fmt.Errorf("cgroup: stats: %w", err)
	}

	evFile := filepath.Join(dir, "memory.events")
	ev, err := readFlatKeyed(evFile)
	switch {
	case err == nil:
		if v, ok := ev["oom_kill"]; ok {
			st.OOMKills = v
		} else {
			st.Notes = append(st.Notes, "memory.events has no oom_kill counter on this kernel")
		}
	case errors.Is(err, os.ErrNotExist):
		st.Notes = append(st.Notes, "memory.events not available (memory controller not enabled)")
	default:
		return st, fmt.Errorf("cgroup: stats: %w", err)
	}
	return st, nil
}

package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// Info describes the host's cgroup support, for `toolcell check`.
type Info struct {
	Version Version
	// Mountpoint is the cgroup2 mount (v2) or the directory holding the v1
	// hierarchies (v1).
	Mountpoint string
	// Controllers are the needed controllers that are available (v2: in
	// cgroup.controllers of the caller's cgroup; v1: mounted hierarchies).
	Controllers []string
	// Writable reports whether a cgroup could be created (and removed)
	// under the default parent.
	Writable bool
	// KillSupported reports whether Kill works (v2: cgroup.kill exists;
	// v1: always, by signalling members).
	KillSupported bool
	// memoryPeakSupported reports whether peak memory is available.
	memoryPeakSupported bool
	// Problems lists human readable issues.
	Problems []string
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Probe inspects the host without leaving anything behind: it creates and
// immediately removes one empty probe cgroup to test writability. The error
// wraps ErrUnsupported when no usable cgroup setup exists; Info is filled
// as far as possible in any case.
func Probe() (Info, error) {
	var info Info
	d, err := detect(Config{})
	if err != nil {
		info.Problems = append(info.Problems, err.Error())
		if l, lerr := readLayout(); lerr == nil {
			info.Mountpoint = l.V2Mount
		}
		return info, err
	}
	info.Version = d.version
	probeName := "toolcell-probe-" + strconv.Itoa(os.Getpid())
	rel := kernelRelease()

	if d.version == V2 {
		info.Mountpoint = d.mount
		own, err := d.layout.ownV2()
		if err != nil {
			info.Problems = append(info.Problems, err.Error())
			return info, nil
		}
		ownDir := filepath.Join(d.mount, own)
		avail, _ := readFields(filepath.Join(ownDir, "cgroup.controllers"))
		for _, c := range requiredV2 {
			if len(missingFrom(avail, []string{c})) == 0 {
				info.Controllers = append(info.Controllers, c)
			}
		}
		enabled, _ := readFields(filepath.Join(ownDir, "cgroup.subtree_control"))
		if own != "/" && len(missingFrom(enabled, requiredV2)) > 0 {
			if procs, _ := readPids(filepath.Join(ownDir, "cgroup.procs")); len(procs) > 0 {
				info.Problems = append(info.Problems, fmt.Sprintf(
					"own cgroup %s has processes and does not delegate memory,pids,cpu yet (no-internal-process rule): use Config.Parent or Config.EvacuateSelf", own))
			}
		}
		base := filepath.Join(d.mount, path.Join(own, defaultParentName))
		if !exists(base) {
			base = ownDir
		}
		probe := filepath.Join(base, probeName)
		if err := os.Mkdir(probe, 0o755); err != nil {
			info.Problems = append(info.Problems, fmt.Sprintf("cannot create cgroups under %s: %v", base, err))
			info.KillSupported = kernelAtLeast(rel, 5, 14)
			info.memoryPeakSupported = kernelAtLeast(rel, 5, 19)
		} else {
			info.Writable = true
			info.KillSupported = exists(filepath.Join(probe, "cgroup.kill"))
			if exists(filepath.Join(probe, "memory.current")) {
				info.memoryPeakSupported = exists(filepath.Join(probe, "memory.peak"))
			} else {
				info.memoryPeakSupported = kernelAtLeast(rel, 5, 19)
			}
			if err := rmdirRetry(probe, 0); err != nil {
				info.Problems = append(info.Problems, err.Error())
			}
		}
		if !info.KillSupported {
			info.Problems = append(info.Problems, "cgroup.kill not supported (needs Linux 5.14+); Kill will fail")
		}
		if !info.memoryPeakSupported {
			info.Problems = append(info.Problems, "memory.peak not supported (needs Linux 5.19+); peak memory reported as 0")
		}
		return info, nil
	}

	// v1
	info.KillSupported = true
	writable := true
	for _, c := range requiredV1 {
		m := d.layout.V1[c]
		info.Controllers = append(info.Controllers, c)
		root, err := v1Root(c, m)
		if err != nil {
			info.Problems = append(info.Problems, err.Error())
			writable = false
			continue
		}
		info.Mountpoint = root
		own, err := d.layout.ownV1(c)
		if err != nil {
			info.Problems = append(info.Problems, err.Error())
			writable = false
			continue
		}
		probe := filepath.Join(root, c, own, probeName)
		if err := os.Mkdir(probe, 0o755); err != nil {
			info.Problems = append(info.Problems, fmt.Sprintf("cannot create cgroups in the v1 %s hierarchy: %v", c, err))
			writable = false
			continue
		}
		if c == "memory" {
			info.memoryPeakSupported = exists(filepath.Join(probe, "memory.max_usage_in_bytes"))
			if !exists(filepath.Join(probe, "memory.memsw.limit_in_bytes")) {
				info.Problems = append(info.Problems, "memory.memsw.limit_in_bytes missing (swap accounting off): runs are not prevented from swapping")
			}
		}
		if err := rmdirRetry(probe, 0); err != nil && !errors.Is(err, os.ErrNotExist) {
			info.Problems = append(info.Problems, err.Error())
		}
	}
	info.Writable = writable
	return info, nil
}

package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrUnsupported is returned (wrapped) when neither a usable cgroup v2 tree
// nor the required cgroup v1 hierarchies are available.
var ErrUnsupported = errors.New("cgroup: not supported")

// unsupportedError explains which controllers are missing. It matches
// ErrUnsupported with errors.Is.
type unsupportedError struct {
	// Missing lists the missing controllers, e.g. "v2:memory" or "v1:pids".
	Missing []string
	// Detail is a human readable explanation.
	Detail string
}

func (e *unsupportedError) Error() string {
	return fmt.Sprintf("%v: missing %s: %s", ErrUnsupported, strings.Join(e.Missing, ", "), e.Detail)
}

// Unwrap makes errors.Is(err, ErrUnsupported) true.
func (e *unsupportedError) Unwrap() error { return ErrUnsupported }

// Paths of the kernel interfaces; variables so unit tests can point them
// at fixtures.
var (
	procSelfMountinfo = "/proc/self/mountinfo"
	procSelfCgroup    = "/proc/self/cgroup"
)

// requiredV2 are the v2 controllers a run cgroup needs.
var requiredV2 = []string{"memory", "pids", "cpu"}

// requiredV1 are the v1 hierarchies a run cgroup needs.
var requiredV1 = []string{"memory", "pids", "cpu", "cpuacct"}

// mountEntry is the part of a /proc/self/mountinfo line we use.
type mountEntry struct {
	Root       string // root of the mount inside the filesystem (field 4)
	MountPoint string // field 5
	FSType     string
	SuperOpts  []string
}

// unescapeMount undoes the octal escaping (\040 etc.) of mountinfo paths.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// parseMountinfo parses the cgroup and cgroup2 entries of a mountinfo file.
func parseMountinfo(r io.Reader) ([]mountEntry, error) {
	var out []mountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		sep := strings.Index(line, " - ")
		if sep < 0 {
			continue
		}
		pre := strings.Fields(line[:sep])
		post := strings.Fields(line[sep+3:])
		if len(pre) < 5 || len(post) < 1 {
			continue
		}
		fstype := post[0]
		if fstype != "cgroup" && fstype != "cgroup2" {
			continue
		}
		e := mountEntry{
			Root:       unescapeMount(pre[3]),
			MountPoint: unescapeMount(pre[4]),
			FSType:     fstype,
		}
		if len(post) >= 3 {
			e.SuperOpts = strings.Split(post[2], ",")
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// procCgroups is the parsed /proc/self/cgroup: the v2 path ("0::") and the
// v1 path of every controller (and named hierarchy, as "name=systemd").
type procCgroups struct {
	Unified string // "" when there is no 0:: line
	V1      map[string]string
}

func parseProcCgroup(r io.Reader) (procCgroups, error) {
	pc := procCgroups{V1: map[string]string{}}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			pc.Unified = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c != "" {
				pc.V1[c] = parts[2]
			}
		}
	}
	return pc, sc.Err()
}

// relativeToMount converts a path from /proc/self/cgroup into a path
// relative to a mount whose root (mountinfo field 4) is mountRoot.
func relativeToMount(cgPath, mountRoot string) (string, error) {
	cgPath = path.Clean("/" + cgPath)
	mountRoot = path.Clean("/" + mountRoot)
	if mountRoot == "/" {
		return cgPath, nil
	}
	if cgPath == mountRoot {
		return "/", nil
	}
	if strings.HasPrefix(cgPath, mountRoot+"/") {
		return cgPath[len(mountRoot):], nil
	}
	return "", fmt.Errorf("cgroup: own cgroup %q is outside the mounted subtree %q", cgPath, mountRoot)
}

// hostLayout is what we learned about the host's cgroup mounts.
type hostLayout struct {
	V2Mount string // "" when there is no cgroup2 mount
	V2Root  string
	// V1 maps a controller name to its mount.
	V1    map[string]mountEntry
	Procs procCgroups
}

func readLayout() (*hostLayout, error) {
	f, err := os.Open(procSelfMountinfo)
	if err != nil {
		return nil, fmt.Errorf("cgroup: read %s: %w", procSelfMountinfo, err)
	}
	mounts, err := parseMountinfo(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("cgroup: parse %s: %w", procSelfMountinfo, err)
	}
	cf, err := os.Open(procSelfCgroup)
	if err != nil {
		return nil, fmt.Errorf("cgroup: read %s: %w", procSelfCgroup, err)
	}
	pc, err := parseProcCgroup(cf)
	cf.Close()
	if err != nil {
		return nil, fmt.Errorf("cgroup: parse %s: %w", procSelfCgroup, err)
	}
	return layoutFrom(mounts, pc), nil
}

func layoutFrom(mounts []mountEntry, pc procCgroups) *hostLayout {
	l := &hostLayout{V1: map[string]mountEntry{}, Procs: pc}
	for _, m := range mounts {
		switch m.FSType {
		case "cgroup2":
			// Prefer /sys/fs/cgroup; otherwise keep the first one.
			if l.V2Mount == "" || m.MountPoint == "/sys/fs/cgroup" {
				l.V2Mount, l.V2Root = m.MountPoint, m.Root
			}
		case "cgroup":
			for _, o := range m.SuperOpts {
				switch o {
				case "rw", "ro", "relatime", "noexec", "nosuid", "nodev", "clone_children", "xattr":
					continue
				}
				if strings.HasPrefix(o, "release_agent=") {
					continue
				}
				if _, dup := l.V1[o]; !dup {
					l.V1[o] = m
				}
			}
		}
	}
	return l
}

// ownV2 returns the caller's cgroup relative to the v2 mount.
func (l *hostLayout) ownV2() (string, error) {
	if l.Procs.Unified == "" {
		return "", errors.New("cgroup: no 0:: line in " + procSelfCgroup)
	}
	return relativeToMount(l.Procs.Unified, l.V2Root)
}

// ownV1 returns the caller's cgroup in the hierarchy of controller,
// relative to that hierarchy's mount.
func (l *hostLayout) ownV1(controller string) (string, error) {
	m, ok := l.V1[controller]
	if !ok {
		return "", fmt.Errorf("cgroup: v1 %s hierarchy not mounted", controller)
	}
	p, ok := l.Procs.V1[controller]
	if !ok {
		return "", fmt.Errorf("cgroup: no %s line in %s", controller, procSelfCgroup)
	}
	return relativeToMount(p, m.Root)
}

func readFields(file string) ([]string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(b)), nil
}

func missingFrom(have, want []string) []string {
	set := map[string]bool{}
	for _, h := range have {
		set[h] = true
	}
	var miss []string
	for _, w := range want {
		if !set[w] {
			miss = append(miss, w)
		}
	}
	return miss
}

// v2Candidate checks whether the v2 tree at mount can give memory, pids and
// cpu to cgroups created below parent (which may not exist yet: the nearest
// existing ancestor is inspected). It returns the missing controllers.
func v2Candidate(mount, parent string) ([]string, error) {
	dir := filepath.Join(mount, parent)
	for {
		if _, err := os.Stat(filepath.Join(dir, "cgroup.controllers")); err == nil {
			break
		}
		if dir == mount || len(dir) <= len(mount) {
			break
		}
		dir = filepath.Dir(dir)
	}
	ctrls, err := readFields(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return requiredV2, err
	}
	return missingFrom(ctrls, requiredV2), nil
}

type detected struct {
	version Version
	layout  *hostLayout
	mount   string // v2 mount in use
}

// detect decides the version for cfg.
func detect(cfg Config) (*detected, error) {
	l, err := readLayout()
	if err != nil {
		return nil, err
	}
	var missing []string
	var details []string
	mount := cfg.Mountpoint
	if mount == "" {
		mount = l.V2Mount
	}
	if mount != "" {
		parent := cfg.Parent
		if parent == "" {
			if own, err := l.ownV2(); err == nil || cfg.Mountpoint != "" {
				parent = own
			}
		}
		if parent == "" {
			parent = "/"
		}
		miss, err := v2Candidate(mount, parent)
		if err == nil && len(miss) == 0 {
			return &detected{version: V2, layout: l, mount: mount}, nil
		}
		for _, m := range miss {
			missing = append(missing, "v2:"+m)
		}
		if err != nil {
			details = append(details, err.Error())
		} else {
			details = append(details, fmt.Sprintf("cgroup2 at %s does not offer %s below %s", mount, strings.Join(miss, ","), parent))
		}
	} else {
		missing = append(missing, "v2:cgroup2-mount")
		details = append(details, "no cgroup2 filesystem mounted")
	}
	var miss1 []string
	for _, c := range requiredV1 {
		if _, ok := l.V1[c]; !ok {
			miss1 = append(miss1, c)
		}
	}
	if len(miss1) == 0 && cfg.Mountpoint == "" {
		return &detected{version: V1, layout: l}, nil
	}
	for _, m := range miss1 {
		missing = append(missing, "v1:"+m)
	}
	if len(miss1) > 0 {
		details = append(details, "v1 hierarchies not mounted: "+strings.Join(miss1, ","))
	} else {
		details = append(details, "v1 not considered because Config.Mountpoint names a cgroup2 mount")
	}
	return nil, &unsupportedError{Missing: missing, Detail: strings.Join(details, "; ")}
}

// Evidence: what the kernel reports of a started sandbox, read from its pid
// 1, checked against what was planned and put in the record.

package sandbox

import (
	"encoding/binary"
	"fmt"
	"maps"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/toolcell/toolcell/audit"
)

// memfdEvidence records vm.memfd_noexec as pid 1 read it (STARTED's second
// word, or READY's). When pid 1 was to set it, anything but 2 fails the run.
func (p *Process) memfdEvidence(body []byte, planned bool) error {
	if len(body) != 4 {
		return fmt.Errorf("%w: protocol: vm.memfd_noexec has %d bytes, want 4", ErrSetup, len(body))
	}
	v := int(int32(binary.NativeEndian.Uint32(body)))
	if v >= 0 {
		p.rec.Enforcement.MemfdNoexec = &v
	}
	if planned && v != 2 {
		return fmt.Errorf("%w: vm.memfd_noexec in the sandbox is %d after pid 1 set it to 2", ErrSetup, v)
	}
	return nil
}

// nsGetNSType is NS_GET_NSTYPE from linux/nsfs.h: _IO(0xb7, 0x3).
const nsGetNSType = 0xb703

// sandboxNamespaces are the namespaces every run gets, in the order pid 1
// passes their descriptors (TC_NS_NAMES in stage2.h), with their types.
var sandboxNamespaces = []struct {
	name string
	typ  int
}{
	{"user", unix.CLONE_NEWUSER}, {"mnt", unix.CLONE_NEWNS}, {"net", unix.CLONE_NEWNET},
	{"pid", unix.CLONE_NEWPID}, {"ipc", unix.CLONE_NEWIPC}, {"uts", unix.CLONE_NEWUTS},
	{"cgroup", unix.CLONE_NEWCGROUP},
}

// namespaceEvidence records each namespace of pid 1 that differs from the
// supervisor's own. pid 1 passes descriptors of its namespaces (it is not
// dumpable, so an unprivileged supervisor could not open them from /proc);
// the kernel confirms each one's type (NS_GET_NSTYPE) and identity (its
// nsfs inode), so a wrong or missing descriptor is a note, never a claim.
func (p *Process) namespaceEvidence(fds []int) {
	if len(fds) != len(sandboxNamespaces) {
		p.rec.Enforcement.Notes = append(p.rec.Enforcement.Notes, fmt.Sprintf("evidence: pid 1 passed %d namespace descriptors, want %d", len(fds), len(sandboxNamespaces)))
		return
	}
	for i, ns := range sandboxNamespaces {
		typ, err := unix.IoctlRetInt(fds[i], nsGetNSType)
		if err != nil || typ != ns.typ {
			p.rec.Enforcement.Notes = append(p.rec.Enforcement.Notes, fmt.Sprintf("evidence: descriptor for namespace %s has type %#x (%v)", ns.name, typ, err))
			continue
		}
		var theirs, mine unix.Stat_t
		if err := unix.Fstat(fds[i], &theirs); err != nil {
			p.rec.Enforcement.Notes = append(p.rec.Enforcement.Notes, "evidence: namespace "+ns.name+": "+err.Error())
			continue
		}
		if err := unix.Stat("/proc/self/ns/"+ns.name, &mine); err != nil {
			p.rec.Enforcement.Notes = append(p.rec.Enforcement.Notes, "evidence: own namespace "+ns.name+": "+err.Error())
			continue
		}
		if theirs.Dev != mine.Dev || theirs.Ino != mine.Ino {
			p.rec.Enforcement.Namespaces = append(p.rec.Enforcement.Namespaces, ns.name)
		}
	}
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// readEvidence reads, from the kernel, what pid 1 of the sandbox holds
// after it dropped privileges: the tool starts from exactly this state.
func (p *Process) readEvidence(nsFDs []int) {
	if testHookEvidence != nil {
		testHookEvidence()
	}
	p.namespaceEvidence(nsFDs)
	// pid 1 stays alive until DONE, but check it is still the stage-2's
	// child before trusting its number.
	// A pidfd pins the process checked here: if it still exists after the
	// reads, its number was not reused in between.
	pidfd, err := unix.PidfdOpen(p.pid1, 0)
	if err != nil {
		p.rec.Enforcement.Notes = append(p.rec.Enforcement.Notes, "evidence: pid 1 is gone: "+err.Error())
		return
	}
	defer unix.Close(pidfd)
	if !underStage2(p.pid1, p.stage2.pid, p.cgClone) {
		p.rec.Enforcement.Notes = append(p.rec.Enforcement.Notes, "evidence: pid 1 is gone or not the stage-2's child")
		return
	}
	defer func() {
		if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); err != nil {
			p.rec.Enforcement.Notes = append(p.rec.Enforcement.Notes, "evidence: pid 1 ended while it was read: "+err.Error())
			p.rec.Enforcement.CapSets, p.rec.Enforcement.Capabilities, p.rec.Enforcement.NoNewPrivs = nil, nil, false
		}
	}()
	if b, err := readProc(p.pid1, "uid_map"); err == nil {
		p.rec.Enforcement.UIDMap = strings.Join(strings.Fields(string(b)), " ")
	}
	if b, err := readProc(p.pid1, "gid_map"); err == nil {
		p.rec.Enforcement.GIDMap = strings.Join(strings.Fields(string(b)), " ")
	}
	if b, err := readProc(p.pid1, "limits"); err == nil {
		p.rec.Enforcement.Rlimits = parseLimits(string(b))
	}
	if b, err := readProc(p.pid1, "mountinfo"); err == nil {
		notes, idmapped := mountsFromKernel(p.rec.Enforcement.Mounts, string(b))
		p.rec.Enforcement.Notes = append(p.rec.Enforcement.Notes, notes...)
		p.idmapEvidence(idmapped)
	} else {
		p.rec.Enforcement.Notes = append(p.rec.Enforcement.Notes, "evidence: cannot read pid 1's mount table: "+err.Error())
		for i := range p.rec.Enforcement.Mounts {
			p.rec.Enforcement.Mounts[i].Mode = "unverified"
		}
	}
	status, err := readProc(p.pid1, "status")
	if err != nil {
		p.rec.Enforcement.Notes = append(p.rec.Enforcement.Notes, "evidence: cannot read pid 1 status: "+err.Error())
		return
	}
	sets := map[string]string{}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb":
			sets[k] = v
		case "NoNewPrivs":
			p.rec.Enforcement.NoNewPrivs = v == "1"
		}
	}
	p.rec.Enforcement.CapSets = sets
	eff, _ := strconv.ParseUint(sets["CapEff"], 16, 64)
	for i := 0; i < 64; i++ {
		if eff&(1<<i) != 0 {
			p.rec.Enforcement.Capabilities = append(p.rec.Enforcement.Capabilities, "cap_"+strconv.Itoa(i))
		}
	}
}

func readProc(pid int, file string) ([]byte, error) {
	return os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
}

// mountsFromKernel replaces each planned mount's mode with what pid 1's
// mount table (/proc/<pid 1>/mountinfo, paths relative to its root) says
// of the topmost mount at that path: the record shows the kernel's view,
// not the plan's. A generated file is no mount of its own: it gets the mode
// of the mount holding it. A mask over a /proc file this kernel does not
// have is "absent"; any other planned mount missing from the table is
// marked "missing" and noted.
// idmapEvidence records the idmap of each writable grant the kernel reports
// idmapped; one planned but not idmapped is degraded (the stage-2 left it
// plain only because the Runner allowed it) or, otherwise, a note.
func (p *Process) idmapEvidence(idmapped map[string]bool) {
	for _, i := range slices.Sorted(maps.Keys(p.idmapped)) {
		m := &p.rec.Enforcement.Mounts[i]
		o := p.idmapped[i]
		switch {
		case idmapped[m.Dst]:
			m.IDMap = &audit.IDMap{UID: o.uid, GID: o.gid}
		case p.r.AllowNoIDMap:
			p.rec.Enforcement.Degraded = append(p.rec.Enforcement.Degraded, fmt.Sprintf(
				"idmap: %s is not idmapped (the kernel or its file system refused): the tool writes there as host uid %d, not as its owner %d",
				m.Dst, p.ids.uid, o.uid))
		default:
			p.rec.Enforcement.Notes = append(p.rec.Enforcement.Notes, "evidence: planned idmapped mount "+m.Dst+" is not idmapped in pid 1's mount table")
		}
	}
}

// mountsFromKernel sets each mount's mode from pid 1's mountinfo and
// returns notes on mounts missing there and the mount points the kernel
// reports idmapped.
func mountsFromKernel(mounts []audit.MountInfo, mountinfo string) ([]string, map[string]bool) {
	modes := map[string]string{}
	idmapped := map[string]bool{}
	for _, l := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(l)
		if len(f) < 6 {
			continue
		}
		opts := map[string]bool{}
		for _, o := range strings.Split(f[5], ",") {
			opts[o] = true
		}
		mode := "rw"
		if opts["ro"] {
			mode = "ro"
		}
		for _, o := range []string{"nosuid", "nodev", "noexec"} {
			if opts[o] {
				mode += "," + o
			}
		}
		dst := unescapeMountinfo(f[4])
		modes[dst] = mode // later lines are mounted on top
		idmapped[dst] = opts["idmapped"]
	}
	var notes []string
	for i := range mounts {
		m := &mounts[i]
		mode, ok := modes[m.Dst]
		switch {
		case ok:
			m.Mode = mode
		case m.Src == "generated":
			m.Mode = "missing"
			for d := path.Dir(m.Dst); ; d = path.Dir(d) {
				if mode, ok := modes[d]; ok {
					m.Mode = mode
					break
				}
				if d == "/" {
					break
				}
			}
		case m.Src == "mask" && !hostHas(m.Dst):
			m.Mode = "absent"
		default:
			m.Mode = "missing"
			notes = append(notes, "evidence: planned mount "+m.Dst+" is not in pid 1's mount table")
		}
	}
	return notes, idmapped
}

// hostHas reports whether this kernel has a /proc entry (the sandbox's own
// /proc shows the same kernel's entries). The kernel does not change under
// a running process, so each answer is kept.
func hostHas(p string) bool {
	if v, ok := procEntries.Load(p); ok {
		return v.(bool)
	}
	_, err := os.Lstat(p)
	procEntries.Store(p, err == nil)
	return err == nil
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// parseLimits picks the limits toolcell sets from /proc/<pid>/limits.
func parseLimits(s string) map[string]string {
	names := map[string]string{"Max core file size": "core", "Max open files": "nofile", "Max file size": "fsize"}
	out := map[string]string{}
	for _, l := range strings.Split(s, "\n") {
		for prefix, key := range names {
			if rest, ok := strings.CutPrefix(l, prefix); ok {
				if f := strings.Fields(rest); len(f) >= 2 {
					out[key] = f[0] + "/" + f[1]
				}
			}
		}
	}
	return out
}

// underStage2 reports whether pid is the stage-2's child or, when the
// stage-2 forked itself into a v2 cgroup (forked), the child of that fork.
// pid 1 reaps the tool and the stage-2 (or its fork) only pid 1, so while
// pid 1 lives its parent does too.
func underStage2(pid, stage2 int, forked bool) bool {
	stat, err := readProc(pid, "stat")
	if err != nil {
		return false
	}
	if !forked {
		return parentIs(stat, stage2)
	}
	fork := parentOf(stat)
	pstat, err := readProc(fork, "stat")
	return err == nil && fork > 0 && parentIs(pstat, stage2)
}

// parentOf is the parent pid a /proc/<pid>/stat line names, or -1.
func parentOf(stat []byte) int {
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return -1
	}
	n, err := strconv.Atoi(f[1])
	if err != nil {
		return -1
	}
	return n
}

// parentIs reports whether a /proc/<pid>/stat line names ppid as parent.
func parentIs(stat []byte, ppid int) bool {
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(s[i+1:])
	return len(f) > 1 && f[1] == strconv.Itoa(ppid)
}

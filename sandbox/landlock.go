package sandbox

import (
	"encoding/binary"
	"fmt"
	"sort"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/toolcell/toolcell/audit"
)

// Landlock is the second file-system barrier, independent of the view: the
// tool child restricts itself (landlock_restrict_self, after pid 1 forked
// it and before its seccomp filter) to the grants, opened at their paths
// inside the view. A path the view shows by mistake (a wrong extra mount)
// gets no right from Landlock. Every decision is made here: the ABI probe,
// the rights each ABI can handle, which path gets which rights, the TCP
// ports; the C side opens the paths and adds the rules as given.
//
// The constants come from golang.org/x/sys/unix; go-landlock is not used
// because its Go side would only replace this table, and its restriction
// runs in a Go process, which the tool child is not.

// Landlock access rights, per ABI version that introduced them.
const (
	llFSv1 = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE |
		unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_READ_DIR |
		unix.LANDLOCK_ACCESS_FS_REMOVE_DIR | unix.LANDLOCK_ACCESS_FS_REMOVE_FILE |
		unix.LANDLOCK_ACCESS_FS_MAKE_CHAR | unix.LANDLOCK_ACCESS_FS_MAKE_DIR |
		unix.LANDLOCK_ACCESS_FS_MAKE_REG | unix.LANDLOCK_ACCESS_FS_MAKE_SOCK |
		unix.LANDLOCK_ACCESS_FS_MAKE_FIFO | unix.LANDLOCK_ACCESS_FS_MAKE_BLOCK |
		unix.LANDLOCK_ACCESS_FS_MAKE_SYM
	llFSv2  = llFSv1 | unix.LANDLOCK_ACCESS_FS_REFER
	llFSv3  = llFSv2 | unix.LANDLOCK_ACCESS_FS_TRUNCATE
	llFSv5  = llFSv3 | unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	llNetv4 = unix.LANDLOCK_ACCESS_NET_BIND_TCP | unix.LANDLOCK_ACCESS_NET_CONNECT_TCP
	llScv6  = unix.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | unix.LANDLOCK_SCOPE_SIGNAL

	// llMaxABI is the newest ABI whose rights toolcell knows; a newer
	// kernel is used at this level (its further rights are not handled).
	llMaxABI = 7

	// The rights a grant gives. Files take only the file rights (the
	// kernel refuses directory rights on a file rule).
	llRead     = unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_READ_DIR
	llExec     = unix.LANDLOCK_ACCESS_FS_EXECUTE
	llWrite    = unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_TRUNCATE
	llWriteDir = llWrite | unix.LANDLOCK_ACCESS_FS_REMOVE_DIR | unix.LANDLOCK_ACCESS_FS_REMOVE_FILE |
		unix.LANDLOCK_ACCESS_FS_MAKE_DIR | unix.LANDLOCK_ACCESS_FS_MAKE_REG |
		unix.LANDLOCK_ACCESS_FS_MAKE_SOCK | unix.LANDLOCK_ACCESS_FS_MAKE_FIFO |
		unix.LANDLOCK_ACCESS_FS_MAKE_SYM | unix.LANDLOCK_ACCESS_FS_REFER
	llFileRights = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE |
		unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_TRUNCATE |
		unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
)

// The minimum ABI a run needs: 3 covers read, write (truncate included)
// and exec of every grant; 4 restricts TCP to the relay's ports, which a
// policy with egress needs (it is the one that can open TCP sockets).
const (
	llNeedFS  = 3
	llNeedNet = 4
)

// llHandled returns the rights an ABI version can handle.
func llHandled(abi int) (fs, net, scope uint64) {
	switch {
	case abi >= 6:
		return llFSv5, llNetv4, llScv6
	case abi == 5:
		return llFSv5, llNetv4, 0
	case abi == 4:
		return llFSv3, llNetv4, 0
	case abi == 3:
		return llFSv3, 0, 0
	case abi == 2:
		return llFSv2, 0, 0
	case abi == 1:
		return llFSv1, 0, 0
	}
	return 0, 0, 0
}

var llFSNames = []struct {
	bit  uint64
	name string
}{
	{unix.LANDLOCK_ACCESS_FS_EXECUTE, "execute"}, {unix.LANDLOCK_ACCESS_FS_WRITE_FILE, "write_file"},
	{unix.LANDLOCK_ACCESS_FS_READ_FILE, "read_file"}, {unix.LANDLOCK_ACCESS_FS_READ_DIR, "read_dir"},
	{unix.LANDLOCK_ACCESS_FS_REMOVE_DIR, "remove_dir"}, {unix.LANDLOCK_ACCESS_FS_REMOVE_FILE, "remove_file"},
	{unix.LANDLOCK_ACCESS_FS_MAKE_CHAR, "make_char"}, {unix.LANDLOCK_ACCESS_FS_MAKE_DIR, "make_dir"},
	{unix.LANDLOCK_ACCESS_FS_MAKE_REG, "make_reg"}, {unix.LANDLOCK_ACCESS_FS_MAKE_SOCK, "make_sock"},
	{unix.LANDLOCK_ACCESS_FS_MAKE_FIFO, "make_fifo"}, {unix.LANDLOCK_ACCESS_FS_MAKE_BLOCK, "make_block"},
	{unix.LANDLOCK_ACCESS_FS_MAKE_SYM, "make_sym"}, {unix.LANDLOCK_ACCESS_FS_REFER, "refer"},
	{unix.LANDLOCK_ACCESS_FS_TRUNCATE, "truncate"}, {unix.LANDLOCK_ACCESS_FS_IOCTL_DEV, "ioctl_dev"},
}

var llNetNames = []struct {
	bit  uint64
	name string
}{{unix.LANDLOCK_ACCESS_NET_BIND_TCP, "bind_tcp"}, {unix.LANDLOCK_ACCESS_NET_CONNECT_TCP, "connect_tcp"}}

var llScopeNames = []struct {
	bit  uint64
	name string
}{{unix.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET, "abstract_unix_socket"}, {unix.LANDLOCK_SCOPE_SIGNAL, "signal"}}

func llNames(v uint64, names []struct {
	bit  uint64
	name string
}) []string {
	out := []string{}
	for _, n := range names {
		if v&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

// llPlan is the Landlock part of the plan.
type llPlan struct {
	abi             int // applied ABI; 0: no Landlock
	fs, net, scoped uint64
	rules           []llRule
	ports           []llPort
}

type llRule struct {
	path   string
	access uint64
}

type llPort struct {
	port   uint16
	access uint64
}

// landlockABI is the kernel probe (LANDLOCK_CREATE_RULESET_VERSION), run
// once; tests replace it to take the degraded path.
var landlockABI = sync.OnceValues(func() (int, error) {
	r, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if e != 0 {
		switch e {
		case unix.ENOSYS:
			return 0, fmt.Errorf("landlock: not built into this kernel (ENOSYS)")
		case unix.EOPNOTSUPP:
			return 0, fmt.Errorf("landlock: built but not enabled at boot (EOPNOTSUPP: add it to the lsm= kernel parameter)")
		}
		return 0, fmt.Errorf("landlock: probe: %w", e)
	}
	return int(r), nil
})

// llRights turns a view entry into the Landlock rights it grants, or 0
// when it gets no rule (symlinks, mount points made on the view's root).
func llRights(e *entry) uint64 {
	var r uint64
	switch e.kind {
	case kindBind:
		r = llRead
		if e.acc&accWrite != 0 {
			r |= llWriteDir
		}
		if e.acc&accExec != 0 {
			r |= llExec
		}
	case kindFile:
		r = llRead // generated files (/etc/passwd, hosts ...) are read-only
	case kindTmpfs:
		if e.path == "/dev" {
			return 0 // only its nodes (bound one by one) get rules
		}
		r = llRead | llWriteDir // /tmp and /dev/shm; noexec, as mounted
	case kindProc:
		// The tool reads its own /proc (/proc/self/...); writes there
		// are refused, as nothing a tool needs writes to /proc.
		r = llRead
	default:
		return 0
	}
	if e.kind != kindTmpfs && e.kind != kindProc && !e.isDir {
		r &= llFileRights
	}
	return r
}

// planLandlock computes the rules for the view v (before any test hook
// breaks it) and the TCP ports the relay listens on. It fails closed: no
// Landlock, or an ABI below what the policy needs, is an ErrUnsupported
// error unless the Runner allows it (then recorded in degraded).
func (p *Process) planLandlock(v *view) (llPlan, error) {
	need := llNeedFS
	if len(p.socks) > 0 {
		need = llNeedNet
	}
	abi, err := landlockABI()
	if err == nil && abi < need {
		err = fmt.Errorf("landlock: ABI %d, this policy needs %d (%s)", abi, need, map[int]string{
			llNeedFS: "truncate, so that read-only grants cannot be emptied", llNeedNet: "TCP connect restricted to the relay's ports"}[need])
	}
	if err != nil {
		if !p.r.AllowNoLandlock {
			return llPlan{}, fmt.Errorf("%w: %w", ErrUnsupported, err)
		}
		p.rec.Enforcement.Degraded = append(p.rec.Enforcement.Degraded, err.Error()+"; applied what the kernel has")
		if abi <= 0 {
			return llPlan{}, nil
		}
	}
	applied := min(abi, llMaxABI)
	pl := llPlan{abi: applied}
	pl.fs, pl.net, pl.scoped = llHandled(applied)
	paths := make([]string, 0, len(v.entries))
	for path := range v.entries {
		paths = append(paths, path)
	}
	sort.Strings(paths)
	for _, path := range paths {
		if r := llRights(v.entries[path]) & pl.fs; r != 0 {
			pl.rules = append(pl.rules, llRule{path: path, access: r})
		}
	}
	if pl.net != 0 {
		seen := map[uint32]bool{}
		for _, s := range p.socks {
			if s.udp() || seen[s.port] {
				continue // Landlock restricts TCP only
			}
			seen[s.port] = true
			pl.ports = append(pl.ports, llPort{port: uint16(s.port), access: unix.LANDLOCK_ACCESS_NET_CONNECT_TCP})
		}
		sort.Slice(pl.ports, func(i, j int) bool { return pl.ports[i].port < pl.ports[j].port })
	}
	if len(pl.rules) > maxLLRules || len(pl.ports) > maxLLPorts {
		return llPlan{}, fmt.Errorf("%w: landlock: %d rules and %d ports, at most %d and %d", ErrPolicy, len(pl.rules), len(pl.ports), maxLLRules, maxLLPorts)
	}
	p.rec.Enforcement.Landlock = pl.info(abi)
	return pl, nil
}

// info describes the plan for the record.
func (pl llPlan) info(kernelABI int) *audit.LandlockInfo {
	info := &audit.LandlockInfo{ABI: kernelABI, Applied: pl.abi, Rules: []audit.LandlockRule{}, Ports: []audit.LandlockPort{},
		Handled: audit.LandlockRights{FS: llNames(pl.fs, llFSNames), Net: llNames(pl.net, llNetNames), Scope: llNames(pl.scoped, llScopeNames)}}
	wantFS, wantNet, wantScope := llHandled(llMaxABI)
	info.Missing = llNames(wantFS&^pl.fs, llFSNames)
	for _, n := range llNames(wantNet&^pl.net, llNetNames) {
		info.Missing = append(info.Missing, "net."+n)
	}
	for _, n := range llNames(wantScope&^pl.scoped, llScopeNames) {
		info.Missing = append(info.Missing, "scope."+n)
	}
	for _, r := range pl.rules {
		info.Rules = append(info.Rules, audit.LandlockRule{Path: r.path, Access: llNames(r.access, llFSNames)})
	}
	for _, r := range pl.ports {
		info.Ports = append(info.Ports, audit.LandlockPort{Port: r.port, Access: llNames(r.access, llNetNames)})
	}
	return info
}

// encode appends the plan's Landlock part (layout in stage2.h).
func (pl llPlan) encode(m []byte) []byte {
	if pl.abi == 0 {
		return appendLandlockHead(m, 0, 0, 0, 0, 0, 0)
	}
	m = appendLandlockHead(m, pl.abi, len(pl.rules), len(pl.ports), pl.fs, pl.net, pl.scoped)
	for _, r := range pl.rules {
		m = binary.NativeEndian.AppendUint64(m, r.access)
		m = putStr(m, r.path)
	}
	for _, r := range pl.ports {
		m = appendLandlockPort(m, r.access, uint64(r.port))
	}
	return m
}

package sandbox

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/toolcell/toolcell/capability"
)

// IDRange is a range of host ids delegated to toolcell: a run as root maps
// its sandbox user to UID+k and GID+k for one k in [0, Count) that no other
// run holds meanwhile.
type IDRange struct {
	UID, GID, Count int
}

// DefaultHostIDsUser is the /etc/subuid and /etc/subgid entry a root host
// process takes its range from when Runner.HostIDs is zero.
const DefaultHostIDsUser = "toolcell"

// DefaultHostIDs is the range used as root when neither Runner.HostIDs nor
// a subordinate-id entry of HostIDsUser names one: 65536 ids from
// 1879048192 (0x70000000), above systemd's container range
// (524288-1879048191) and below its foreign range (2147352576-), where
// neither accounts, useradd's subordinate ranges (100000 up) nor
// systemd-nspawn put ids. Before using it, a run checks that no account in
// /etc/passwd or /etc/group and no range in /etc/subuid or /etc/subgid
// overlaps it, and fails (ErrUnsupported) naming the one that does.
var DefaultHostIDs = IDRange{UID: 1879048192, GID: 1879048192, Count: 65536}

// leaseDir holds the lease file, ids.leases, in which a run holds a write
// lock (an open file description lock, F_OFD_SETLK) on the byte at offset
// 2*uid for its uid and on the one at 2*gid+1 for its gid. Such a lock belongs to the
// run's own open of the file and goes with its last close, so it dies with
// its host process, and runs of one host process exclude each other as
// runs of different ones do. Nothing is created or removed per run.
var leaseDir = "/run/toolcell"

// The host's id databases (tests point them elsewhere).
var (
	subIDFiles = [2]string{"/etc/subuid", "/etc/subgid"}
	accountDBs = [2]string{"/etc/passwd", "/etc/group"}
)

// hostIDRange is the range runs of r take their ids from (as root), and
// where it came from.
func (r *Runner) hostIDRange() (IDRange, string, error) {
	if r.HostIDs != (IDRange{}) {
		if err := r.HostIDs.check(); err != nil {
			return IDRange{}, "", fmt.Errorf("%w: Runner.HostIDs %+v: %w", ErrPolicy, r.HostIDs, err)
		}
		return r.HostIDs, "Runner.HostIDs", nil
	}
	user := r.HostIDsUser
	if user == "" {
		user = DefaultHostIDsUser
	}
	// The databases are read again only when one of them changed.
	key := user + "\x00" + idDBStamp()
	rangeCache.Lock()
	defer rangeCache.Unlock()
	if rangeCache.key == key {
		return rangeCache.rg, rangeCache.from, nil
	}
	rg, from, err := resolveHostIDRange(user)
	if err == nil {
		rangeCache.key, rangeCache.rg, rangeCache.from = key, rg, from
	}
	return rg, from, err
}

// rangeCache is the last range resolved from the id databases.
var rangeCache struct {
	sync.Mutex
	key  string
	rg   IDRange
	from string
}

// idDBStamp names the current version of each id database: device, inode,
// size, modification and change times ("-" when absent).
func idDBStamp() string {
	var b strings.Builder
	for _, f := range append(subIDFiles[:], accountDBs[:]...) {
		var st unix.Stat_t
		if err := unix.Stat(f, &st); err != nil {
			b.WriteString("-;")
			continue
		}
		fmt.Fprintf(&b, "%d:%d:%d:%d.%d:%d.%d;", st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
	}
	return b.String()
}

// resolveHostIDRange reads the range of user from the id databases.
func resolveHostIDRange(user string) (IDRange, string, error) {
	var ranges [2][]subRange
	for i, file := range subIDFiles {
		rs, err := readSubIDs(file)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return IDRange{}, "", fmt.Errorf("%w: host id range: %w", ErrUnsupported, err)
		}
		ranges[i] = rs
	}
	u, uok := findSub(ranges[0], user)
	g, gok := findSub(ranges[1], user)
	switch {
	case uok && gok:
		rg := IDRange{UID: u.start, GID: g.start, Count: min(u.count, g.count)}
		if err := rg.check(); err != nil {
			return IDRange{}, "", fmt.Errorf("%w: host id range of user %q in %s and %s: %w", ErrUnsupported, user, subIDFiles[0], subIDFiles[1], err)
		}
		return rg, subIDFiles[0] + ":" + user, nil
	case uok || gok:
		return IDRange{}, "", fmt.Errorf("%w: host id range: user %q has an entry in only one of %s and %s (add both, or set Runner.HostIDs)", ErrUnsupported, user, subIDFiles[0], subIDFiles[1])
	}
	rg := DefaultHostIDs
	for i, file := range subIDFiles {
		start := []int{rg.UID, rg.GID}[i]
		for _, sr := range ranges[i] {
			if overlaps(start, rg.Count, sr.start, sr.count) {
				return IDRange{}, "", fmt.Errorf("%w: the default host id range %d-%d overlaps %s's range %d-%d in %s (add %s:START:COUNT to %s and %s, or set Runner.HostIDs)",
					ErrUnsupported, start, start+rg.Count-1, sr.name, sr.start, sr.start+sr.count-1, file, user, subIDFiles[0], subIDFiles[1])
			}
		}
	}
	for i, file := range accountDBs {
		start := []int{rg.UID, rg.GID}[i]
		name, id, err := accountIn(file, start, rg.Count)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return IDRange{}, "", fmt.Errorf("%w: host id range: %w", ErrUnsupported, err)
		}
		if name != "" {
			return IDRange{}, "", fmt.Errorf("%w: the default host id range %d-%d holds %q (id %d) of %s (add %s:START:COUNT to %s and %s, or set Runner.HostIDs)",
				ErrUnsupported, start, start+rg.Count-1, name, id, file, user, subIDFiles[0], subIDFiles[1])
		}
	}
	return rg, "default", nil
}

// check refuses ranges holding root, nobody (65534, shared with host
// daemons) or the invalid id -1.
func (g IDRange) check() error {
	if g.Count < 1 {
		return fmt.Errorf("count %d: want at least 1", g.Count)
	}
	for _, s := range []int{g.UID, g.GID} {
		end := int64(s) + int64(g.Count) - 1
		if s < 1 || end > 0xfffffffe {
			return fmt.Errorf("ids %d-%d: want 1-4294967294", s, end)
		}
		if int64(s) <= 65534 && end >= 65534 {
			return fmt.Errorf("ids %d-%d hold 65534 (nobody)", s, end)
		}
	}
	return nil
}

func overlaps(a, n, b, m int) bool {
	return int64(a) < int64(b)+int64(m) && int64(b) < int64(a)+int64(n)
}

// subRange is one name:start:count line of a subordinate-id file.
type subRange struct {
	name         string
	start, count int
}

func findSub(rs []subRange, name string) (subRange, bool) {
	for _, r := range rs {
		if r.name == name {
			return r, true
		}
	}
	return subRange{}, false
}

// readSubIDs parses a subordinate-id file; a malformed line is an error
// naming the file and line.
func readSubIDs(file string) ([]subRange, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var out []subRange
	for i, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		parts := strings.Split(l, ":")
		if len(parts) != 3 {
			return nil, fmt.Errorf("%s line %d: %q: not name:start:count", file, i+1, l)
		}
		s, err1 := strconv.ParseUint(parts[1], 10, 32)
		n, err2 := strconv.ParseUint(parts[2], 10, 32)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%s line %d: %q: not name:start:count", file, i+1, l)
		}
		out = append(out, subRange{parts[0], int(s), int(n)})
	}
	return out, nil
}

// accountIn returns an account of /etc/passwd or /etc/group (name:x:id:...)
// whose id lies in [start, start+count).
func accountIn(file string, start, count int) (string, int, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Split(l, ":")
		if len(f) < 3 {
			continue
		}
		if id, err := strconv.ParseUint(f[2], 10, 32); err == nil && overlaps(int(id), 1, start, count) {
			return f[0], int(id), nil
		}
	}
	return "", 0, nil
}

// idLease is a host uid and gid held for one run.
type idLease struct {
	uid, gid int
	file     *os.File // the run's own open of the lease file, holding its locks
}

// Byte offsets in the lease file.
func uidByte(uid int) int64 { return 2 * int64(uid) }
func gidByte(gid int) int64 { return 2*int64(gid) + 1 }

// leaseDirOK remembers lease directories found safe (a check per run costs
// as much as the lease).
var leaseDirOK sync.Map

// leaseCursor spreads successive leases over the range, so that an id is
// not taken again right after a run gave it up.
var leaseCursor struct {
	sync.Mutex
	next map[IDRange]int
}

// leaseIDs takes the first id pair of rg, from the cursor on, that no run
// of any host process holds.
func leaseIDs(rg IDRange) (*idLease, error) {
	if _, ok := leaseDirOK.Load(leaseDir); !ok {
		if err := os.MkdirAll(leaseDir, 0o700); err != nil {
			return nil, fmt.Errorf("%w: id lease directory: %w", ErrSetup, err)
		}
		var st unix.Stat_t
		if err := unix.Lstat(leaseDir, &st); err != nil {
			return nil, fmt.Errorf("%w: id lease directory: %w", ErrSetup, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR || int(st.Uid) != os.Geteuid() || st.Mode&0o022 != 0 {
			return nil, fmt.Errorf("%w: id lease directory %s: not a directory owned by uid %d and writable by it alone", ErrSetup, leaseDir, os.Geteuid())
		}
		leaseDirOK.Store(leaseDir, true)
	}
	leaseCursor.Lock()
	if leaseCursor.next == nil {
		leaseCursor.next = map[IDRange]int{}
	}
	k, ok := leaseCursor.next[rg]
	if !ok {
		var b [8]byte
		rand.Read(b[:])
		k = int(binary.NativeEndian.Uint64(b[:]) % uint64(rg.Count))
	}
	leaseCursor.Unlock()
	f, err := openLeases()
	if err != nil {
		return nil, err
	}
	for i := 0; i < rg.Count; i++ {
		j := (k + i) % rg.Count
		ok, err := lockByte(f, uidByte(rg.UID+j))
		if err == nil && ok {
			if ok, err = lockByte(f, gidByte(rg.GID+j)); !ok || err != nil {
				unlockByte(f, uidByte(rg.UID+j))
			}
		}
		if err != nil {
			f.Close()
			return nil, err
		}
		if !ok {
			continue
		}
		leaseCursor.Lock()
		leaseCursor.next[rg] = (j + 1) % rg.Count
		leaseCursor.Unlock()
		return &idLease{uid: rg.UID + j, gid: rg.GID + j, file: f}, nil
	}
	f.Close()
	return nil, fmt.Errorf("%w: all %d host ids of range %d-%d are held by running sandboxes", ErrSetup, rg.Count, rg.UID, rg.UID+rg.Count-1)
}

// openLeases opens the lease file: a new open file description, which the
// locks taken through it belong to.
func openLeases() (*os.File, error) {
	p := filepath.Join(leaseDir, "ids.leases")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%w: id lease %s: %w", ErrSetup, p, err)
	}
	return f, nil
}

// lockByte takes the lock on byte off of f; false when another holds it.
func lockByte(f *os.File, off int64) (bool, error) {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: off, Len: 1}
	err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
	if err == unix.EAGAIN || err == unix.EACCES {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%w: id lease %s byte %d: %w", ErrSetup, f.Name(), off, err)
	}
	return true, nil
}

func unlockByte(f *os.File, off int64) {
	lk := unix.Flock_t{Type: unix.F_UNLCK, Whence: 0, Start: off, Len: 1}
	unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
}

// leased reports whether a run holds the byte off of the lease file.
func leased(off int64) (bool, error) {
	f, err := openLeases()
	if err != nil {
		return false, err
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: off, Len: 1}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
		return false, err
	}
	return lk.Type != unix.F_UNLCK, nil
}

// release gives the ids back (closing the file drops the locks); only call
// it once nothing of the run that held them is left.
func (l *idLease) release() {
	if l == nil || l.file == nil {
		return
	}
	l.file.Close()
	l.file = nil
}

// userLimit is one per-user-namespace limit (/proc/sys/user/<name>) pid 1
// sets in the sandbox's user namespace. The kernel checks a count against
// the limit of every namespace from the caller's up to the host's, each
// level charged to the namespace's owner: these bound the run inside, the
// host's bound the run's uid outside.
type userLimit struct {
	name  string
	value int64
}

// sandboxUserLimits is the limits pid 1 sets: inotify, which the seccomp
// filter allows, as the policy says (capability.Set.InotifyInstances and
// InotifyWatches); and no user namespace, which alone would give the tool
// the capabilities every other namespace needs (the filter refuses those
// calls too). Limits for what the filter refuses anyway (fanotify, the
// other namespace kinds) are not set: each costs pid 1 about 25 µs here. A
// kernel without one of them fails the run naming it (step "user_limit").
func sandboxUserLimits(set *capability.Set) []userLimit {
	return []userLimit{
		{"max_inotify_instances", set.InotifyInstancesOrDefault()},
		{"max_inotify_watches", set.InotifyWatchesOrDefault()},
		{"max_user_namespaces", 0},
	}
}

func (p *Process) planFlags() uint32 {
	if p.ids != nil {
		return planDropGroups | planRunIDs
	}
	return 0
}

// planIDs maps the sandbox user to an unprivileged host id: the run's own
// leased ids when we are root, the caller's own ids otherwise. As root the
// stage-2 becomes that uid/gid before it creates the user namespace, so the
// namespace is owned, and its counts charged, by the run's uid, not root's.
// Either way the stage-2 then writes pid 1's maps as an unprivileged owner
// may: its own ids only, setgroups denied first.
func (p *Process) planIDs() planIDs {
	hu, hg := os.Geteuid(), os.Getegid()
	if p.ids != nil {
		hu, hg = p.ids.uid, p.ids.gid
	}
	ids := planIDs{uid: uint32(hu), gid: uint32(hg),
		uidMap: fmt.Sprintf("%d %d 1\n", sandboxUID, hu),
		gidMap: fmt.Sprintf("%d %d 1\n", sandboxGID, hg),
		limits: sandboxUserLimits(p.set)}
	p.rec.Enforcement.UIDMap = strings.TrimSpace(ids.uidMap)
	p.rec.Enforcement.GIDMap = strings.TrimSpace(ids.gidMap)
	p.rec.Enforcement.UserLimits = map[string]int64{}
	for _, l := range ids.limits {
		p.rec.Enforcement.UserLimits[l.name] = l.value
	}
	return ids
}

// planIDs is the identity part of the plan.
type planIDs struct {
	uid, gid       uint32 // host ids the stage-2 becomes (planRunIDs)
	uidMap, gidMap string
	limits         []userLimit
}

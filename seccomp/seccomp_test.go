package seccomp

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand"
	"slices"
	"sort"
	"strings"
	"testing"

	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

func sysnr(t testing.TB, name string) int32 {
	t.Helper()
	nr, err := libseccomp.GetSyscallFromNameByArch(name, libseccomp.ArchAMD64)
	if err != nil || nr < 0 {
		t.Fatalf("libseccomp does not know %q on x86_64: %v", name, err)
	}
	return int32(nr)
}

func compileDefault(t testing.TB) (*Filter, []insn) {
	t.Helper()
	f, err := Compile(Policy{Groups: DefaultGroups()})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return f, decode(t, f.BPF)
}

func expect(t *testing.T, prog []insn, want uint32, what string, arch uint32, nr int32, args ...uint64) {
	t.Helper()
	if got := eval(t, prog, arch, nr, args...); got != want {
		t.Errorf("%s: got %s, want %s", what, retName(got), retName(want))
	}
}

func TestFilterMetadata(t *testing.T) {
	f, prog := compileDefault(t)
	t.Logf("%d instructions, %d allowed, conditional %v, unresolved %v",
		len(prog), len(f.Allowed), f.Conditional, f.Unresolved)
	sum := sha256.Sum256(f.BPF)
	if f.Hash != hex.EncodeToString(sum[:]) {
		t.Errorf("Hash is not sha256 of BPF")
	}
	if !sort.StringsAreSorted(f.Allowed) || !sort.StringsAreSorted(f.Conditional) {
		t.Errorf("Allowed/Conditional not sorted")
	}
	for _, c := range []string{"clone", "socket", "ioctl", "personality", "prctl"} {
		if i := sort.SearchStrings(f.Conditional, c); i == len(f.Conditional) || f.Conditional[i] != c {
			t.Errorf("%s missing from Conditional %v", c, f.Conditional)
		}
	}
	if f.DefaultAction != ActionErrnoENOSYS || f.DeniedAction != ActionErrnoEPERM ||
		f.ForeignArchAction != ActionKillProcess || len(f.Arches) != 1 || f.Arches[0] != "x86_64" {
		t.Errorf("unexpected actions/arches: %+v", f)
	}
	if len(f.Unresolved) != 0 {
		t.Errorf("group syscalls unknown to libseccomp: %v", f.Unresolved)
	}
	g, err := Compile(Policy{Groups: []Group{GroupIoctl, GroupBase, GroupBase, GroupExec, GroupFileRead,
		GroupFileWrite, GroupProcess, GroupIPCLocal}, DeniedAction: ActionErrnoEPERM})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.BPF, g.BPF) {
		t.Errorf("compilation is not deterministic / order independent")
	}
}

func TestGoldenDefaultGroups(t *testing.T) {
	for _, c := range []struct {
		act  Action
		deny uint32
	}{{"", retErrnoEPERM}, {ActionErrnoEPERM, retErrnoEPERM}, {ActionNotify, retUserNotif}} {
		t.Run(string(c.act), func(t *testing.T) {
			f, err := Compile(Policy{Groups: DefaultGroups(), DeniedAction: c.act})
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			golden(t, f, decode(t, f.BPF), c.deny)
		})
	}
}

// golden checks every syscall of the default groups' filter: deny is what a
// known syscall outside the grants gets.
func golden(t *testing.T, f *Filter, prog []insn, deny uint32) {
	cond := map[string]bool{}
	for _, c := range f.Conditional {
		cond[c] = true
	}
	for _, name := range f.Allowed {
		if cond[name] {
			continue
		}
		expect(t, prog, retAllow, name, auditArchX8664, sysnr(t, name), 0, 0, 0)
	}
	for _, name := range AlwaysDenied() {
		expect(t, prog, deny, name, auditArchX8664, sysnr(t, name))
	}
	// Known but not granted.
	for _, name := range []string{"mknod", "mknodat", "sethostname", "setgroups", "mlock", "sync", "socketcall"} {
		nr, err := libseccomp.GetSyscallFromNameByArch(name, libseccomp.ArchAMD64)
		if err != nil || nr < 0 {
			continue // not an x86_64 syscall
		}
		expect(t, prog, deny, name, auditArchX8664, int32(nr))
	}
	for _, nr := range []int32{1000, 2000, 0x3fffffff} {
		expect(t, prog, retErrnoENOSYS, "unknown number", auditArchX8664, nr)
	}
	for _, nr := range []int32{0, 1, 11, 59, 0x3fffffff} {
		expect(t, prog, retKillProcess, "i386", auditArchI386, nr)
		expect(t, prog, retKillProcess, "x32", auditArchX8664, nr|x32SyscallBit)
		expect(t, prog, retKillProcess, "aarch64", 0xc00000b7, nr)
	}
	// libseccomp's x86_64 prologue sends every nr >= X32_SYSCALL_BIT to the
	// bad-arch action, except nr == -1 (a tracer's "skip this syscall"),
	// which falls through to the default.
	expect(t, prog, retErrnoENOSYS, "nr -1", auditArchX8664, -1)
	expect(t, prog, retKillProcess, "nr 0x7fffffff", auditArchX8664, 0x7fffffff)
	expect(t, prog, retKillProcess, "nr 0xfffffffe", auditArchX8664, -2)
	// x32 numbers whose x86_64 part is an allowed syscall, and x32-only numbers.
	for _, nr := range []int32{int32(unix.SYS_WRITE), int32(unix.SYS_GETPID), 512, 520, 545} {
		expect(t, prog, retKillProcess, "x32", auditArchX8664, nr|x32SyscallBit)
	}

	clone := sysnr(t, "clone")
	const threadFlags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
		unix.CLONE_THREAD | unix.CLONE_SYSVSEM | unix.CLONE_SETTLS |
		unix.CLONE_PARENT_SETTID | unix.CLONE_CHILD_CLEARTID
	expect(t, prog, retAllow, "clone(thread)", auditArchX8664, clone, threadFlags)
	expect(t, prog, retAllow, "clone(fork)", auditArchX8664, clone, uint64(unix.SIGCHLD))
	expect(t, prog, retAllow, "clone(vfork|pidfd)", auditArchX8664, clone,
		unix.CLONE_VM|unix.CLONE_VFORK|unix.CLONE_PIDFD|uint64(unix.SIGCHLD))
	// High half of a 64-bit flags word is ignored by the kernel (lower_32_bits).
	expect(t, prog, retAllow, "clone(hi bits)", auditArchX8664, clone, 0xffffffff00000000|uint64(unix.SIGCHLD))
	for _, fl := range []uint64{unix.CLONE_NEWUSER, unix.CLONE_NEWNS, unix.CLONE_NEWPID, unix.CLONE_NEWNET,
		unix.CLONE_NEWIPC, unix.CLONE_NEWUTS, unix.CLONE_NEWCGROUP} {
		expect(t, prog, deny, "clone(ns)", auditArchX8664, clone, fl)
		expect(t, prog, deny, "clone(thread|ns)", auditArchX8664, clone, threadFlags|fl)
		expect(t, prog, deny, "clone(hi|ns)", auditArchX8664, clone, 0xffffffff00000000|fl)
	}
	expect(t, prog, retErrnoENOSYS, "clone3", auditArchX8664, sysnr(t, "clone3"), 0, 88)

	socket := sysnr(t, "socket")
	expect(t, prog, retAllow, "socket(AF_UNIX)", auditArchX8664, socket, unix.AF_UNIX, unix.SOCK_STREAM)
	for _, dom := range []uint64{unix.AF_INET, unix.AF_INET6, unix.AF_NETLINK, unix.AF_PACKET, 0, 0x100} {
		expect(t, prog, deny, "socket(other)", auditArchX8664, socket, dom, unix.SOCK_STREAM)
	}
	// Both halves: AF_INET hidden behind high bits is still AF_INET to the kernel.
	expect(t, prog, deny, "socket(hi|AF_INET)", auditArchX8664, socket, 0x100000002)
	expect(t, prog, deny, "socket(AF_UNIX<<32)", auditArchX8664, socket, 0x100000000)

	ioctl := sysnr(t, "ioctl")
	expect(t, prog, deny, "ioctl(TIOCSTI)", auditArchX8664, ioctl, 0, 0x5412)
	expect(t, prog, deny, "ioctl(hi|TIOCSTI)", auditArchX8664, ioctl, 0, 0x100005412)
	expect(t, prog, deny, "ioctl(sext TIOCSTI)", auditArchX8664, ioctl, 0, 0xffffffff00005412)
	expect(t, prog, deny, "ioctl(TIOCLINUX)", auditArchX8664, ioctl, 0, 0x541C)
	expect(t, prog, deny, "ioctl(hi|TIOCLINUX)", auditArchX8664, ioctl, 3, 0x7fffffff0000541C)
	expect(t, prog, retAllow, "ioctl(FIONREAD)", auditArchX8664, ioctl, 0, 0x541B)
	expect(t, prog, retAllow, "ioctl(TCGETS)", auditArchX8664, ioctl, 1, 0x5401)
	expect(t, prog, retAllow, "ioctl(TIOCSTI<<32)", auditArchX8664, ioctl, 0, 0x541200000000)
	expect(t, prog, retAllow, "ioctl(sext TIOCGPTN)", auditArchX8664, ioctl, 0, 0xffffffff80045430)
	expect(t, prog, retAllow, "ioctl(fd=TIOCSTI)", auditArchX8664, ioctl, 0x5412, 0x541B)

	pers := sysnr(t, "personality")
	expect(t, prog, retAllow, "personality(0)", auditArchX8664, pers, 0)
	expect(t, prog, retAllow, "personality(query)", auditArchX8664, pers, 0xffffffff)
	expect(t, prog, deny, "personality(READ_IMPLIES_EXEC)", auditArchX8664, pers, 0x0400000)
	expect(t, prog, deny, "personality(ADDR_NO_RANDOMIZE)", auditArchX8664, pers, 0x0040000)
	expect(t, prog, deny, "personality(0xfffffffe)", auditArchX8664, pers, 0xfffffffe)
	expect(t, prog, deny, "personality(hi|RIE)", auditArchX8664, pers, 0x100400000)

	prctl := sysnr(t, "prctl")
	expect(t, prog, retAllow, "prctl(PR_SET_NAME)", auditArchX8664, prctl, unix.PR_SET_NAME)
	expect(t, prog, retAllow, "prctl(PR_SET_NO_NEW_PRIVS)", auditArchX8664, prctl, unix.PR_SET_NO_NEW_PRIVS, 1)
	expect(t, prog, retAllow, "prctl(PR_SET_VMA)", auditArchX8664, prctl, unix.PR_SET_VMA)
	expect(t, prog, deny, "prctl(PR_SET_MM)", auditArchX8664, prctl, unix.PR_SET_MM)
	expect(t, prog, deny, "prctl(PR_CAP_AMBIENT)", auditArchX8664, prctl, unix.PR_CAP_AMBIENT)
	expect(t, prog, deny, "prctl(PR_SET_PTRACER)", auditArchX8664, prctl, unix.PR_SET_PTRACER)
}

func TestLow32NotIn(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	for iter := 0; iter < 50; iter++ {
		vals := []uint32{r.Uint32(), uint32(r.Intn(64)), uint32(r.Intn(64)), 0x5412}
		in := low32In(2, vals...)
		out := low32NotIn(2, vals...)
		probe := append([]uint32{0, 0xffffffff, 1}, vals...)
		for i := 0; i < 200; i++ {
			probe = append(probe, r.Uint32(), vals[r.Intn(len(vals))]^(1<<uint(r.Intn(32))))
		}
		for _, p := range probe {
			x := uint64(r.Uint32())<<32 | uint64(p)
			nIn, nOut := 0, 0
			for _, c := range in {
				if x&c.mask == c.value {
					nIn++
				}
			}
			for _, c := range out {
				if x&c.mask == c.value {
					nOut++
				}
			}
			if nIn+nOut != 1 || (nOut > 1) {
				t.Fatalf("value %#x vals %#x: in %d out %d", x, vals, nIn, nOut)
			}
		}
	}
}

func TestCompileRejectsAlwaysDenied(t *testing.T) {
	for _, bad := range []string{"ptrace", "mount", "bpf", "clone3"} {
		table := groupTable{}
		for g, d := range defaultTable {
			table[g] = d
		}
		def := table[GroupFileRead]
		def.syscalls = append(append([]string(nil), def.syscalls...), bad)
		table[GroupFileRead] = def
		if _, err := compile(Policy{Groups: DefaultGroups()}, table); err == nil {
			t.Errorf("compile accepted a group containing %q", bad)
		}
		table[GroupFileRead] = defaultTable[GroupFileRead]
		table["evil"] = groupDef{conditional: []argFilter{{syscall: bad, allow: singles(low32In(0, 0))}}}
		if _, err := compile(Policy{Groups: []Group{GroupBase, "evil"}}, table); err == nil {
			t.Errorf("compile accepted a conditional rule for %q", bad)
		}
	}
	// The shipped table itself must pass.
	if err := defaultTable.validate(append(DefaultGroups(), GroupNetwork)); err != nil {
		t.Fatal(err)
	}
}

func TestPolicyValidation(t *testing.T) {
	if _, err := Compile(Policy{Groups: []Group{"raw_network"}}); err == nil {
		t.Error("unknown group accepted")
	}
	if _, err := Compile(Policy{Groups: DefaultGroups(), DeniedAction: ActionAllow}); err == nil {
		t.Error("allow as denied action accepted")
	}
	f, err := Compile(Policy{Groups: []Group{GroupBase}, DeniedAction: ActionKillProcess})
	if err != nil {
		t.Fatal(err)
	}
	prog := decode(t, f.BPF)
	expect(t, prog, retKillProcess, "ptrace", auditArchX8664, sysnr(t, "ptrace"))
	expect(t, prog, retKillProcess, "execve", auditArchX8664, sysnr(t, "execve"))
	expect(t, prog, retKillProcess, "personality(RIE)", auditArchX8664, sysnr(t, "personality"), 0x0400000)
	expect(t, prog, retAllow, "getpid", auditArchX8664, sysnr(t, "getpid"))
	expect(t, prog, retErrnoENOSYS, "clone3", auditArchX8664, sysnr(t, "clone3"))
	expect(t, prog, retErrnoENOSYS, "unknown", auditArchX8664, 1000)
}

func TestPropertyRandomGroups(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	all := append(DefaultGroups(), GroupNetwork)
	denied := AlwaysDenied()
	socket := sysnr(t, "socket")
	for iter := 0; iter < 200; iter++ {
		var gs []Group
		for _, g := range all {
			if r.Intn(2) == 0 {
				gs = append(gs, g)
			}
		}
		act := []Action{"", ActionErrnoEPERM, ActionErrnoENOSYS, ActionKillProcess, ActionNotify}[r.Intn(5)]
		f, err := CompileCached(Policy{Groups: gs, DeniedAction: act})
		if err != nil {
			t.Fatalf("groups %v: %v", gs, err)
		}
		prog := decode(t, f.BPF)
		for _, name := range denied {
			args := []uint64{r.Uint64(), r.Uint64(), r.Uint64()}
			if got := eval(t, prog, auditArchX8664, sysnr(t, name), args...); got == retAllow {
				t.Fatalf("groups %v: %s allowed", gs, name)
			}
		}
		// Never a raw, packet, netlink, vsock or alg socket.
		for _, a := range [][2]uint64{{2, 3}, {10, 3}, {17, 3}, {16, 0}, {38, 5}, {40, 1}, {2, 10}} {
			hi := r.Uint64() &^ 0xffffffff
			if got := eval(t, prog, auditArchX8664, socket, hi|a[0], hi|a[1]|uint64(r.Intn(2))*unix.SOCK_CLOEXEC); got == retAllow {
				t.Fatalf("groups %v: socket(%d, %d) allowed", gs, a[0], a[1])
			}
		}
		for i := 0; i < 5; i++ {
			nr := int32(r.Intn(1 << 30))
			if got := eval(t, prog, auditArchI386, nr); got != retKillProcess {
				t.Fatalf("groups %v: i386 nr %d -> %s", gs, nr, retName(got))
			}
			if got := eval(t, prog, auditArchX8664, nr|x32SyscallBit); got != retKillProcess {
				t.Fatalf("groups %v: x32 nr %#x -> %s", gs, nr|x32SyscallBit, retName(got))
			}
			unk := int32(1000 + r.Intn(0x3fffffff-1000))
			if got := eval(t, prog, auditArchX8664, unk); got != retErrnoENOSYS {
				t.Fatalf("groups %v: unknown nr %d -> %s", gs, unk, retName(got))
			}
		}
	}
}

func TestCompileCached(t *testing.T) {
	p := Policy{Groups: []Group{GroupExec, GroupBase}}
	a, err := CompileCached(p)
	if err != nil {
		t.Fatal(err)
	}
	a.BPF[0] ^= 0xff // callers own their copy
	b, err := CompileCached(Policy{Groups: []Group{GroupBase, GroupExec, GroupBase}, DeniedAction: ActionErrnoEPERM})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	if b.Hash != c.Hash || !bytes.Equal(b.BPF, c.BPF) {
		t.Error("cached filter differs from a fresh compile")
	}
}

func TestExplain(t *testing.T) {
	rules := Explain(Policy{Groups: DefaultGroups()})
	by := map[string]Rule{}
	for _, r := range rules {
		by[r.Syscall] = r
	}
	check := func(name string, act Action, g Group, condSub string) {
		t.Helper()
		r, ok := by[name]
		if !ok {
			t.Errorf("%s missing", name)
			return
		}
		if r.Action != act || r.Group != g || !strings.Contains(r.Condition, condSub) {
			t.Errorf("%s: %+v", name, r)
		}
	}
	check("read", ActionAllow, GroupBase, "")
	check("openat", ActionAllow, GroupFileRead, "")
	check("execve", ActionAllow, GroupExec, "")
	check("clone", ActionAllow, GroupProcess, "CLONE_NEW")
	check("ioctl", ActionAllow, GroupIoctl, "TIOCSTI")
	check("ptrace", ActionErrnoEPERM, "", "always denied")
	check("clone3", ActionErrnoENOSYS, "", "glibc")
	check("mknod", ActionErrnoEPERM, "", "not granted")
	if Explain(Policy{Groups: []Group{"nope"}}) != nil {
		t.Error("Explain of invalid policy should be nil")
	}
}

func BenchmarkCompileCold(b *testing.B) {
	p := Policy{Groups: DefaultGroups()}
	for i := 0; i < b.N; i++ {
		if _, err := Compile(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCompileCached(b *testing.B) {
	p := Policy{Groups: DefaultGroups()}
	if _, err := CompileCached(p); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := CompileCached(p); err != nil {
			b.Fatal(err)
		}
	}
}

// Every syscall number, under several policies: allowed exactly when a
// selected group lists it, ENOSYS for the fixed ones and numbers libseccomp
// does not know, the denied action for everything else, whatever the two
// 32-bit halves of the arguments hold.
func TestGoldenEverySyscall(t *testing.T) {
	deny := map[Action]uint32{"": retErrnoEPERM, ActionErrnoEPERM: retErrnoEPERM, ActionNotify: retUserNotif,
		ActionKillProcess: retKillProcess}
	policies := []Policy{
		{Groups: []Group{GroupBase}},
		{Groups: []Group{GroupBase, GroupExec, GroupFileRead}, DeniedAction: ActionNotify},
		{Groups: []Group{GroupBase, GroupProcess, GroupIPCLocal}, DeniedAction: ActionKillProcess},
		{Groups: DefaultGroups(), DeniedAction: ActionNotify},
		{Groups: []Group{GroupBase, GroupExec, GroupNetwork}, DeniedAction: ActionNotify},
	}
	argSets := [][]uint64{{0, 0, 0, 0, 0, 0}, {0xffffffff, 0xffffffff, 0xffffffff}, {1 << 32, 1 << 33, 1 << 63},
		{0xffffffffffffffff, 0xffffffffffffffff, 0xffffffffffffffff}}
	for _, p := range policies {
		f, err := Compile(p)
		if err != nil {
			t.Fatal(err)
		}
		prog := decode(t, f.BPF)
		plain, cond := map[string]bool{}, map[string]bool{}
		for _, g := range p.Groups {
			for _, n := range defaultTable[g].syscalls {
				plain[n] = true
			}
			for _, c := range defaultTable[g].conditional {
				cond[c.syscall] = true
			}
			if len(defaultTable[g].families) > 0 {
				cond["socket"] = true
			}
		}
		// Mode-setting and creating calls carry the set-ID filter: see
		// TestNoSetIDModes.
		for n := range noSetIDFilters {
			delete(plain, n)
			cond[n] = true
		}
		for _, n := range []string{"open", "openat"} {
			delete(plain, n)
			cond[n] = true
		}
		checked := 0
		for nr := 0; nr < maxSyscallNr; nr++ {
			name, err := libseccomp.ScmpSyscall(nr).GetNameByArch(libseccomp.ArchAMD64)
			var want uint32
			switch {
			case err != nil:
				want = retErrnoENOSYS
			case plain[name]:
				want = retAllow
			case cond[name] && !plain[name]:
				continue // argument filters: see TestGoldenDefaultGroups
			case fixedENOSYS[name] != "":
				want = retErrnoENOSYS
			default:
				want = deny[p.DeniedAction]
			}
			for _, a := range argSets {
				if got := eval(t, prog, auditArchX8664, int32(nr), a...); got != want {
					t.Errorf("groups %v: %s (%d) args %#x: %s, want %s", p.Groups, name, nr, a, retName(got), retName(want))
				}
			}
			checked++
		}
		if checked < 400 {
			t.Errorf("groups %v: only %d syscalls checked", p.Groups, checked)
		}
	}
}

// socket(2) under every combination of the local and network groups: only
// the families the selected groups grant, and for the internet families
// only stream and datagram sockets, whatever the flags and high bits.
func TestSocketFamilies(t *testing.T) {
	const (
		afUnix, afInet, afInet6, afNetlink, afPacket, afAlg, afVsock = 1, 2, 10, 16, 17, 38, 40
		stream, dgram, raw, seqpacket, packet                        = 1, 2, 3, 5, 10
		flags                                                        = unix.SOCK_CLOEXEC | unix.SOCK_NONBLOCK
	)
	for _, c := range []struct {
		groups      []Group
		unix, inet  bool
		description string
	}{
		{[]Group{GroupBase}, false, false, "no socket group"},
		{[]Group{GroupBase, GroupIPCLocal}, true, false, "local only"},
		{[]Group{GroupBase, GroupNetwork}, false, true, "network only"},
		{[]Group{GroupBase, GroupNetwork, GroupIPCLocal}, true, true, "both"},
	} {
		f, err := Compile(Policy{Groups: c.groups, DeniedAction: ActionNotify})
		if err != nil {
			t.Fatal(err)
		}
		prog := decode(t, f.BPF)
		socket := sysnr(t, "socket")
		want := func(ok bool) uint32 {
			if ok {
				return retAllow
			}
			return retUserNotif
		}
		for _, hi := range []uint64{0, 0xffffffff00000000} {
			for _, fl := range []uint64{0, flags} {
				expect(t, prog, want(c.unix), c.description+" AF_UNIX stream", auditArchX8664, socket, hi|afUnix, hi|fl|stream)
				expect(t, prog, want(c.unix), c.description+" AF_UNIX seqpacket", auditArchX8664, socket, hi|afUnix, hi|fl|seqpacket)
				for _, fam := range []uint64{afInet, afInet6} {
					expect(t, prog, want(c.inet), c.description+" inet stream", auditArchX8664, socket, hi|fam, hi|fl|stream)
					expect(t, prog, want(c.inet), c.description+" inet dgram", auditArchX8664, socket, hi|fam, hi|fl|dgram)
					for _, ty := range []uint64{raw, seqpacket, packet, 0, 4, 6, 15} {
						expect(t, prog, retUserNotif, c.description+" inet other type", auditArchX8664, socket, hi|fam, hi|fl|ty)
					}
				}
				for _, fam := range []uint64{afNetlink, afPacket, afAlg, afVsock, 0, 3, 0x7fffffff} {
					expect(t, prog, retUserNotif, c.description+" other family", auditArchX8664, socket, hi|fam, hi|fl|stream)
				}
			}
		}
	}
	// The network group brings the calls that use a socket, and Explain
	// says which families and types socket(2) takes.
	for _, r := range Explain(Policy{Groups: []Group{GroupBase, GroupNetwork}}) {
		switch r.Syscall {
		case "connect":
			if r.Action != ActionAllow || r.Group != GroupNetwork {
				t.Errorf("connect: %+v", r)
			}
		case "socket":
			if r.Action != ActionAllow || !strings.Contains(r.Condition, "AF_INET6 (10) with type") || strings.Contains(r.Condition, "AF_UNIX") {
				t.Errorf("socket: %+v", r)
			}
		}
	}
}

// memfd_create with Policy.MemfdNoexec: allowed only with MFD_NOEXEC_SEAL
// and without MFD_EXEC, whatever the other flags and the high half;
// unconditional without it; denied without a group that grants it.
func TestMemfdNoexec(t *testing.T) {
	const (
		cloexec, sealing, hugetlb, seal, exec = 0x1, 0x2, 0x4, 0x8, 0x10
	)
	memfd := sysnr(t, "memfd_create")
	for _, c := range []struct {
		groups      []Group
		noexec      bool
		allowPlain  bool
		allowSealed bool
	}{
		{DefaultGroups(), false, true, true},
		{DefaultGroups(), true, false, true},
		{[]Group{GroupBase}, true, false, false},
	} {
		f, err := Compile(Policy{Groups: c.groups, DeniedAction: ActionNotify, MemfdNoexec: c.noexec})
		if err != nil {
			t.Fatal(err)
		}
		prog := decode(t, f.BPF)
		want := func(ok bool) uint32 {
			if ok {
				return retAllow
			}
			return retUserNotif
		}
		what := fmt.Sprintf("groups %v noexec %v", c.groups, c.noexec)
		for _, hi := range []uint64{0, 0xffffffff00000000} {
			for _, other := range []uint64{0, cloexec, cloexec | sealing, hugetlb | 21<<26} {
				expect(t, prog, want(c.allowPlain), what+" no flag", auditArchX8664, memfd, 0x1000, hi|other)
				expect(t, prog, want(c.allowPlain), what+" MFD_EXEC", auditArchX8664, memfd, 0x1000, hi|other|exec)
				expect(t, prog, want(c.allowPlain), what+" MFD_EXEC|MFD_NOEXEC_SEAL", auditArchX8664, memfd, 0x1000, hi|other|exec|seal)
				expect(t, prog, want(c.allowSealed), what+" MFD_NOEXEC_SEAL", auditArchX8664, memfd, 0x1000, hi|other|seal)
			}
		}
		hasCond := false
		for _, n := range f.Conditional {
			hasCond = hasCond || n == "memfd_create"
		}
		if hasCond != (c.noexec && c.allowSealed) {
			t.Errorf("%s: Conditional %v", what, f.Conditional)
		}
	}
	a, _ := Policy{Groups: DefaultGroups()}.key()
	b, _ := Policy{Groups: DefaultGroups(), MemfdNoexec: true}.key()
	if a == b {
		t.Error("MemfdNoexec is not part of the cache key")
	}
	for _, r := range Explain(Policy{Groups: DefaultGroups(), MemfdNoexec: true}) {
		if r.Syscall == "memfd_create" && (r.Action != ActionAllow || r.Group != GroupIPCLocal || !strings.Contains(r.Condition, "MFD_NOEXEC_SEAL")) {
			t.Errorf("memfd_create: %+v", r)
		}
	}
}

// No call that sets or creates a mode can ask for S_ISUID or S_ISGID: the
// tool's files belong to a host user. Other modes, and open without
// O_CREAT/O_TMPFILE whatever its mode register holds, are allowed; openat2
// (mode in memory) is ENOSYS.
func TestNoSetIDModes(t *testing.T) {
	f, err := Compile(Policy{Groups: DefaultGroups(), DeniedAction: ActionNotify})
	if err != nil {
		t.Fatal(err)
	}
	prog := decode(t, f.BPF)
	nr := func(n string) int32 {
		v, err := libseccomp.GetSyscallFromNameByArch(n, libseccomp.ArchAMD64)
		if err != nil {
			t.Fatal(err)
		}
		return int32(v)
	}
	const creat, tmpfile = 0o100, 0o20200000
	for _, c := range []struct {
		call string
		args []uint64
		want uint32
	}{
		{"chmod", []uint64{0, 0o755}, retAllow},
		{"chmod", []uint64{0, 0o4755}, retUserNotif},
		{"chmod", []uint64{0, 0o2755}, retUserNotif},
		{"chmod", []uint64{0, 1<<40 | 0o755}, retAllow},
		{"chmod", []uint64{0, 1<<40 | 0o6755}, retUserNotif},
		{"fchmod", []uint64{3, 0o4700}, retUserNotif},
		{"fchmod", []uint64{3, 0o1777}, retAllow},
		{"fchmodat", []uint64{0, 0, 0o2755, 0}, retUserNotif},
		{"fchmodat", []uint64{0, 0, 0o644, 0}, retAllow},
		{"fchmodat2", []uint64{0, 0, 0o4755, 0}, retUserNotif},
		{"creat", []uint64{0, 0o4755}, retUserNotif},
		{"creat", []uint64{0, 0o755}, retAllow},
		{"mkdir", []uint64{0, 0o2775}, retUserNotif},
		{"mkdirat", []uint64{0, 0, 0o2775}, retUserNotif},
		{"mkdirat", []uint64{0, 0, 0o775}, retAllow},
		{"open", []uint64{0, creat, 0o4755}, retUserNotif},
		{"open", []uint64{0, creat | 1, 0o2755}, retUserNotif},
		{"open", []uint64{0, 0, 0o4755}, retAllow}, // no O_CREAT: the mode is unused
		{"open", []uint64{0, creat, 0o755}, retAllow},
		{"openat", []uint64{0, 0, creat, 0o4755}, retUserNotif},
		{"openat", []uint64{0, 0, tmpfile | 2, 0o2755}, retUserNotif},
		{"openat", []uint64{0, 0, 2, 0o6755}, retAllow},
		{"openat", []uint64{0, 0, creat, 0o644}, retAllow},
		{"openat2", []uint64{0, 0, 0, 24}, retErrnoENOSYS},
	} {
		if got := eval(t, prog, auditArchX8664, nr(c.call), c.args...); got != c.want {
			t.Errorf("%s%o: %s, want %s", c.call, c.args, retName(got), retName(c.want))
		}
	}
}

// Inspect sends every call of the inspected syscalls to the listener where
// a group allows them, leaves them plainly allowed without it, and needs
// the notify action; Decide answers them from their arguments.
func TestInspect(t *testing.T) {
	for _, inspect := range []bool{false, true} {
		f, err := Compile(Policy{Groups: DefaultGroups(), DeniedAction: ActionNotify, Inspect: inspect})
		if err != nil {
			t.Fatal(err)
		}
		prog := decode(t, f.BPF)
		want := uint32(retAllow)
		if inspect {
			want = retUserNotif
		}
		for _, n := range InspectedCalls() {
			expect(t, prog, want, fmt.Sprintf("%s (inspect %v)", n, inspect), auditArchX8664, sysnr(t, n), 0xffffffff, ToolID, 0xffffffff, 20, 0)
			if !slices.Contains(f.Allowed, n) {
				t.Errorf("%s not listed as allowed: %v", n, f.Allowed)
			}
		}
		expect(t, prog, retAllow, "getxattr", auditArchX8664, sysnr(t, "getxattr"), 3, 0x1000, 0x2000, 20)
		expect(t, prog, retAllow, "getresuid", auditArchX8664, sysnr(t, "getresuid"), 0x1000, 0x2000, 0x3000)
	}
	if !sort.StringsAreSorted(InspectedCalls()) {
		t.Error("InspectedCalls not sorted")
	}
	f, err := Compile(Policy{Groups: []Group{GroupBase}, DeniedAction: ActionNotify, Inspect: true})
	if err != nil {
		t.Fatal(err)
	}
	expect(t, decode(t, f.BPF), retUserNotif, "setxattr without file_write", auditArchX8664, sysnr(t, "setxattr"))
	if _, err := Compile(Policy{Groups: DefaultGroups(), Inspect: true}); err == nil {
		t.Error("Inspect with the EPERM action compiled")
	}

	const m1 = 0xffffffff
	for _, c := range []struct {
		name string
		args [6]uint64
		want Decision
	}{
		{"setresuid", [6]uint64{m1, ToolID, m1}, Continue},
		{"setresuid", [6]uint64{ToolID, ToolID, ToolID}, Continue},
		{"setresuid", [6]uint64{m1, m1, 0}, Deny},
		{"setresuid", [6]uint64{0, 0, 0}, Deny},
		{"setresgid", [6]uint64{m1, 1001, m1}, Deny},
		{"setuid", [6]uint64{ToolID}, Continue},
		{"setuid", [6]uint64{0}, Deny},
		{"setuid", [6]uint64{1<<32 | ToolID}, Continue}, // uid_t is 32 bits
		{"setregid", [6]uint64{0, m1}, Deny},
		{"setfsgid", [6]uint64{m1}, Continue},
		{"getuid", [6]uint64{}, Deny},
	} {
		if got := Decide(c.name, c.args, nil); got != c.want {
			t.Errorf("Decide(%s, %x) = %v, want %v", c.name, c.args[:3], got, c.want)
		}
	}
	mem := func(s string, addr uint64) MemReader {
		return func(a uint64, b []byte) (int, error) {
			if a < addr || a >= addr+uint64(len(s)) {
				return 0, fmt.Errorf("unmapped")
			}
			return copy(b, s[a-addr:]), nil
		}
	}
	for _, c := range []struct {
		mem  string
		want Decision
	}{
		{"user.note\x00", Continue},
		{"system.posix_acl_access\x00", Continue},
		{"security.capability\x00", Deny},
		{"security.selinux\x00", Deny},
		{"trusted.overlay.opaque\x00", Deny},
		{"user.unterminated", Deny},
		{strings.Repeat("u", 300) + "\x00", Deny},
	} {
		// The name ends right before an unmapped page.
		addr := uint64(0x10000 - len(c.mem))
		if got := Decide("lsetxattr", [6]uint64{0x100, addr}, mem(c.mem, addr)); got != c.want {
			t.Errorf("Decide(lsetxattr, %.30q) = %v, want %v", c.mem, got, c.want)
		}
	}
	if Decide("setxattr", [6]uint64{0x100, 0}, nil) != Deny {
		t.Error("an unreadable name was let through")
	}
}

// The ioctl filter refuses exactly TIOCSTI, TIOCLINUX and the btrfs and
// bcachefs types, but for the generic clone and dedupe requests: checked
// on the compiled BPF for named requests and random ones.
func TestIoctlFilter(t *testing.T) {
	f, err := Compile(Policy{Groups: DefaultGroups(), DeniedAction: ActionNotify})
	if err != nil {
		t.Fatal(err)
	}
	prog := decode(t, f.BPF)
	ioctl := sysnr(t, "ioctl")
	for _, c := range []struct {
		what string
		req  uint64
		ok   bool
	}{
		{"BTRFS_IOC_SNAP_CREATE_V2", 0x50009417, false},
		{"BTRFS_IOC_SNAP_CREATE", 0x50009401, false},
		{"BTRFS_IOC_SUBVOL_CREATE", 0x5000940e, false},
		{"BTRFS_IOC_SUBVOL_SETFLAGS", 0x4008941a, false},
		{"BTRFS_IOC_SNAP_DESTROY", 0x5000940f, false},
		{"hi|BTRFS_IOC_SNAP_CREATE_V2", 0x150009417, false},
		{"bcachefs subvolume create", 0x4020bc10, false},
		{"FICLONE", 0x40049409, true},
		{"FICLONERANGE", 0x4020940d, true},
		{"FIDEDUPERANGE", 0xc0189436, true},
		{"TIOCSTI", 0x5412, false},
		{"TIOCLINUX", 0x541c, false},
		{"TCGETS", 0x5401, true},
		{"FIONREAD", 0x541b, true},
		{"FS_IOC_GETFLAGS", 0x80086601, true},
		{"TIOCSTI<<32", 0x541200000000, true},
	} {
		want := uint32(retUserNotif)
		if c.ok {
			want = retAllow
		}
		expect(t, prog, want, c.what, auditArchX8664, ioctl, 3, c.req)
	}
	denied := func(req uint32) bool {
		if req == 0x5412 || req == 0x541c {
			return true
		}
		switch req & 0xffff {
		case 0x9409, 0x940d, 0x9436:
			return false
		}
		return req&0xff00 == 0x9400 || req&0xff00 == 0xbc00
	}
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 20000; i++ {
		req := r.Uint32()
		switch i % 4 { // aim at the interesting types too
		case 1:
			req = req&^0xff00 | 0x9400
		case 2:
			req = req&^0xff00 | 0xbc00
		case 3:
			req = req&^0xffff | 0x5400 | req&0x3f
		}
		want := uint32(retAllow)
		if denied(req) {
			want = retUserNotif
		}
		if got := eval(t, prog, auditArchX8664, ioctl, 3, uint64(req)); got != want {
			t.Fatalf("ioctl(%#x): got %s, want %s", req, retName(got), retName(want))
		}
	}
}

package seccomp

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeMem serves strings at fixed addresses; everything else is unmapped.
// A page boundary at 0x2000 ends the mapping that starts at 0x1ff0.
func fakeMem(strs map[uint64]string) MemReader {
	return func(addr uint64, b []byte) (int, error) {
		for base, s := range strs {
			end := base + uint64(len(s))
			if addr >= base && addr < end {
				return copy(b, s[addr-base:]), nil
			}
		}
		return 0, errors.New("EFAULT")
	}
}

func TestDescribe(t *testing.T) {
	long := strings.Repeat("a", 300) + "\x00"
	mem := fakeMem(map[uint64]string{
		0x1000: "none\x00", 0x1100: "/mnt\x00", 0x1200: "tmpfs\x00",
		0x1ff0: "/no-terminator!!", // 16 bytes up to the unmapped page at 0x2000
		0x3000: long,
		0x4000: "host-name-longer",
	})
	var a [6]uint64
	set := func(v ...uint64) [6]uint64 { a = [6]uint64{}; copy(a[:], v); return a }
	cases := []struct {
		name string
		args [6]uint64
		want string
	}{
		{"mount", set(0x1000, 0x1100, 0x1200, unix.MS_BIND|unix.MS_REC), `source="none" target="/mnt" fstype="tmpfs" flags=MS_BIND|MS_REC`},
		{"mount", set(0, 0x1100, 0x9999, 0x40000000), `source=NULL target="/mnt" fstype=<unreadable> flags=0x40000000`},
		{"umount2", set(0x1ff0), `target="/no-terminator!!"...`},
		{"chroot", set(0x3000), `path="` + strings.Repeat("a", 256) + `"...`},
		{"sethostname", set(0x4000, 9), `name="host-name"`},
		{"unshare", set(unix.CLONE_NEWUSER | unix.CLONE_NEWNS), "flags=CLONE_NEWUSER|CLONE_NEWNS"},
		{"clone", set(unix.CLONE_NEWNET | uint64(unix.SIGCHLD)), "flags=CLONE_NEWNET"},
		{"clone", set(1 << 40), "flags=0x10000000000"},
		{"socket", set(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 17), "family=AF_INET6 type=SOCK_DGRAM|SOCK_CLOEXEC protocol=17"},
		{"socket", set(0x100000010, 3), "family=AF_NETLINK type=SOCK_RAW protocol=0"},
		{"socket", set(77, 0), "family=0x4d type=0x0 protocol=0"},
		{"ioctl", set(1, 0xffffffff00005412), "request=TIOCSTI"},
		{"ioctl", set(1, 0x5401), "request=0x5401"},
		{"ptrace", set(unix.PTRACE_SEIZE, 42), "request=PTRACE_SEIZE pid=42"},
		{"prctl", set(unix.PR_SET_MM), "option=PR_SET_MM"},
		{"personality", set(0x0400000), "persona=0x400000"},
		{"setuid", set(0), "id=0"},
		{"memfd_create", set(0x1000, 0xffffffff00000000|unix.MFD_CLOEXEC|unix.MFD_EXEC), `name="none" flags=MFD_CLOEXEC|MFD_EXEC`},
		{"memfd_create", set(0x1000, 0), `name="none" flags=0x0`},
		{"getpid", set(1, 2, 3), ""},
	}
	for _, c := range cases {
		if got := Describe(c.name, c.args, mem); got != c.want {
			t.Errorf("Describe(%s, %#x) = %q, want %q", c.name, c.args[:3], got, c.want)
		}
	}
	if got := Describe("chroot", set(0x1100), nil); got != "path=?" {
		t.Errorf("without memory: %q", got)
	}
	denied := func(uint64, []byte) (int, error) { return 0, unix.EPERM }
	if got := Describe("chroot", set(0x1100), denied); got != "path=<no access to the caller's memory>" {
		t.Errorf("no ptrace access: %q", got)
	}
	// process_vm_readv(2) returns -1 on a bad address: no count of bytes.
	fault := func(uint64, []byte) (int, error) { return -1, unix.EFAULT }
	if got := Describe("mount", set(1, 2, 3), fault); got != "source=<unreadable> target=<unreadable> fstype=<unreadable> flags=0x0" {
		t.Errorf("bad addresses: %q", got)
	}
	if got := Describe("sethostname", set(1, 8), fault); got != "name=<unreadable>" {
		t.Errorf("bad address: %q", got)
	}
}

func TestNames(t *testing.T) {
	if n := SyscallName(auditArchX8664, 165); n != "mount" {
		t.Errorf("nr 165 = %q", n)
	}
	if n := SyscallName(auditArchX8664, 999); n != "nr_999" {
		t.Errorf("nr 999 = %q", n)
	}
	if n := SyscallName(auditArchI386, 1); n != "nr_1" {
		t.Errorf("i386 nr 1 = %q", n)
	}
	if ArchName(auditArchX8664) != "x86_64" || ArchName(auditArchI386) != "i386" || ArchName(7) != "arch_0x7" {
		t.Error("ArchName")
	}
}

func TestHaveUserNotif(t *testing.T) {
	// The machines this project is tested on all have it (Linux >= 5.8).
	if err := HaveUserNotif(); err != nil {
		t.Fatal(err)
	}
}

package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/internal/testenv"
	"github.com/toolcell/toolcell/sandbox"
)

// mountOf returns the record's mount at dst.
func mountOf(t *testing.T, rec *audit.Record, dst string) audit.MountInfo {
	t.Helper()
	for _, m := range rec.Enforcement.Mounts {
		if m.Dst == dst {
			return m
		}
	}
	t.Fatalf("no mount %s in the record", dst)
	return audit.MountInfo{}
}

// owner returns the host uid and gid of p.
func owner(t *testing.T, p string) (uint32, uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid, st.Gid
}

// rootOnlyIDMap: the host kinds where no mount is idmapped.
var rootOnlyIDMap = map[string]string{
	testenv.KindRootlessHybrid: "only the host's root may idmap a mount of a host file system; unprivileged, the sandbox user is the caller already (TestWorkdirOwnedByCaller)",
}

// A workdir of the caller's, mode 0755 as mkdir makes it, is writable by
// the tool without a chmod, and what the tool creates there belongs to the
// caller on the host: as root through an idmapped mount (recorded), as an
// unprivileged caller because the sandbox user is the caller.
func TestWorkdirOwnedByCaller(t *testing.T) {
	wd := testenv.Tempdir(t)
	if err := os.Chmod(wd, 0o755); err != nil {
		t.Fatal(err)
	}
	res := run(t, base().WithWorkdir(wd), `echo ok > out && mkdir sub && echo x > sub/f && ln -s out link && stat -c '%u:%g' out`)
	if res.Exit.Code != 0 || string(res.Stdout) != "1000:1000\n" {
		t.Fatalf("exit %d stdout %q stderr %q", res.Exit.Code, res.Stdout, res.Stderr)
	}
	uid, gid := uint32(os.Geteuid()), uint32(os.Getegid())
	for _, f := range []string{"out", "sub", "sub/f", "link"} {
		if u, g := owner(t, filepath.Join(wd, f)); u != uid || g != gid {
			t.Errorf("%s belongs to %d:%d on the host, want the caller %d:%d", f, u, g, uid, gid)
		}
	}
	m := mountOf(t, res.Audit, wd)
	if os.Geteuid() == 0 {
		if m.IDMap == nil || m.IDMap.UID != 0 || m.IDMap.GID != 0 {
			t.Errorf("workdir mount %+v: want idmap 0:0", m)
		}
	} else if m.IDMap != nil {
		t.Errorf("workdir mount %+v: unprivileged, no idmap is made", m)
	}
	if len(res.Audit.Enforcement.Degraded) != 0 {
		t.Errorf("degraded %q", res.Audit.Enforcement.Degraded)
	}
}

// As root the idmap follows each writable grant's own owner: the tool
// writes in a user's directory as that user, files of other host users
// there show as the overflow id and stay theirs, and read-only grants are
// not idmapped.
func TestIDMapFollowsOwner(t *testing.T) {
	testenv.NotApplicable(t, rootOnlyIDMap)
	testenv.RequireRoot(t)
	wd, other, ro := testenv.Tempdir(t), testenv.Tempdir(t), testenv.Tempdir(t)
	if err := os.WriteFile(filepath.Join(wd, "theirs"), []byte("keep\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		p        string
		uid, gid int
	}{{wd, 4242, 4343}, {other, 5151, 5252}} {
		if err := os.Chown(c.p, c.uid, c.gid); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(filepath.Join(wd, "theirs"), 6000, 6000); err != nil {
		t.Fatal(err)
	}
	set := base().WithWorkdir(wd).WithWriteDirs(other).WithReadDirs(ro)
	res := run(t, set, `echo a > a && echo b > `+other+`/b && stat -c '%u:%g' theirs && { echo x >> theirs || echo denied; }`)
	if res.Exit.Code != 0 || string(res.Stdout) != "65534:65534\ndenied\n" {
		t.Fatalf("exit %d stdout %q stderr %q", res.Exit.Code, res.Stdout, res.Stderr)
	}
	if u, g := owner(t, filepath.Join(wd, "a")); u != 4242 || g != 4343 {
		t.Errorf("workdir file is %d:%d on the host, want 4242:4343", u, g)
	}
	if u, g := owner(t, filepath.Join(other, "b")); u != 5151 || g != 5252 {
		t.Errorf("write_dirs file is %d:%d on the host, want 5151:5252", u, g)
	}
	if b, _ := os.ReadFile(filepath.Join(wd, "theirs")); string(b) != "keep\n" {
		t.Errorf("another user's file changed: %q", b)
	}
	for dir, want := range map[string]*audit.IDMap{wd: {UID: 4242, GID: 4343}, other: {UID: 5151, GID: 5252}, ro: nil} {
		m := mountOf(t, res.Audit, dir)
		if (m.IDMap == nil) != (want == nil) || (want != nil && *m.IDMap != *want) {
			t.Errorf("mount %+v: want idmap %+v", m, want)
		}
	}
}

// A file system the kernel cannot idmap (ramfs) fails the run with an
// error naming the grant and the file system, unless the Runner allows
// running without: then the grant is bound plain, the tool writes as the
// run's host uid, and enforcement.degraded says so.
func TestIDMapUnsupportedFileSystem(t *testing.T) {
	testenv.NotApplicable(t, rootOnlyIDMap)
	testenv.RequireRoot(t)
	testenv.RequireUserNS(t)
	dir := testenv.Tempdir(t)
	if err := unix.Mount("ramfs", dir, "ramfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0777"); err != nil {
		t.Fatalf("mount ramfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount ramfs: %v", err)
		}
	})
	set := base().WithWorkdir(dir)
	cmd := func() *sandbox.Cmd { return sandbox.Command("/bin/sh", "-c", "echo ok > out") }
	_, err := sandbox.Run(context.Background(), set, cmd())
	var se *sandbox.SetupError
	if !errors.Is(err, sandbox.ErrUnsupported) || !errors.As(err, &se) || se.Step != "idmap" ||
		!strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "ramfs") || !strings.Contains(err.Error(), "AllowNoIDMap") {
		t.Fatalf("err %v: want ErrUnsupported from step idmap naming %s, ramfs and AllowNoIDMap", err, dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the tool ran: %v", err)
	}

	res := runCmdWith(t, &sandbox.Runner{AllowNoIDMap: true}, set, cmd())
	if res.Exit.Code != 0 {
		t.Fatalf("exit %d stderr %q", res.Exit.Code, res.Stderr)
	}
	deg := strings.Join(res.Audit.Enforcement.Degraded, "\n")
	if len(res.Audit.Enforcement.Degraded) != 1 || !strings.Contains(deg, "idmap: "+dir+" is not idmapped") {
		t.Errorf("degraded %q: want one idmap entry naming %s", res.Audit.Enforcement.Degraded, dir)
	}
	if m := mountOf(t, res.Audit, dir); m.IDMap != nil {
		t.Errorf("mount %+v claims an idmap", m)
	}
	runUID := strings.Fields(res.Audit.Enforcement.UIDMap)[1]
	if u, _ := owner(t, filepath.Join(dir, "out")); runUID != fmt.Sprint(u) {
		t.Errorf("file belongs to %d, want the run's host uid %s", u, runUID)
	}
}

// The file systems agents write to: each is mounted fresh (a loop image
// for the block ones), its root given to a host user, and used as a
// workdir. Where the kernel idmaps it the tool's file is that user's and
// the record says so; where it cannot (overlayfs: the overlay mount
// itself is not idmappable), the run fails naming the file system.
func TestIDMapFileSystems(t *testing.T) {
	testenv.NotApplicable(t, rootOnlyIDMap)
	testenv.RequireRoot(t)
	testenv.RequireUserNS(t)
	for _, fs := range []struct {
		name, mkfs string
		size       int64
		idmap      bool
	}{
		{"tmpfs", "", 0, true},
		{"ext4", "mkfs.ext4", 32 << 20, true},
		{"xfs", "mkfs.xfs", 320 << 20, true},
		{"btrfs", "mkfs.btrfs", 128 << 20, true},
		{"overlay", "", 0, false},
	} {
		t.Run(fs.name, func(t *testing.T) {
			dir := testenv.Tempdir(t)
			mnt := filepath.Join(dir, "mnt")
			if err := os.Mkdir(mnt, 0o755); err != nil {
				t.Fatal(err)
			}
			switch {
			case fs.name == "tmpfs":
				mustMount(t, "tmpfs", mnt, "tmpfs", "mode=0755")
			case fs.name == "overlay":
				for _, d := range []string{"lower", "upper", "work"} {
					os.Mkdir(filepath.Join(dir, d), 0o755)
				}
				mustMount(t, "overlay", mnt, "overlay", "lowerdir="+filepath.Join(dir, "lower")+",upperdir="+filepath.Join(dir, "upper")+",workdir="+filepath.Join(dir, "work"))
			default:
				img := filepath.Join(dir, "img")
				f, err := os.Create(img)
				if err == nil {
					err = f.Truncate(fs.size)
					f.Close()
				}
				if err != nil {
					t.Fatal(err)
				}
				if out, err := exec.Command(fs.mkfs, "-q", img).CombinedOutput(); err != nil {
					t.Fatalf("%s: %v %s (scripts/deps.sh installs it)", fs.mkfs, err, out)
				}
				out, err := exec.Command("losetup", "--find", "--show", img).Output()
				if err != nil {
					t.Fatalf("losetup: %v", err)
				}
				loop := strings.TrimSpace(string(out))
				t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
				mustMount(t, loop, mnt, fs.name, "")
			}
			if err := os.Chown(mnt, 4242, 4343); err != nil {
				t.Fatal(err)
			}
			if fs.name == "btrfs" {
				snapshotRefused(t, mnt)
			}
			res, err := sandbox.Run(context.Background(), base().WithWorkdir(mnt), sandbox.Command("/bin/sh", "-c", "echo ok > out"))
			if !fs.idmap {
				if !errors.Is(err, sandbox.ErrUnsupported) || !strings.Contains(err.Error(), "overlayfs") || !strings.Contains(err.Error(), mnt) {
					t.Fatalf("err %v: want ErrUnsupported naming overlayfs and %s", err, mnt)
				}
				return
			}
			if err != nil || res.Exit.Code != 0 {
				t.Fatalf("err %v res %+v", err, res)
			}
			if u, g := owner(t, filepath.Join(mnt, "out")); u != 4242 || g != 4343 {
				t.Errorf("the tool's file is %d:%d on %s, want 4242:4343", u, g, fs.name)
			}
			if m := mountOf(t, res.Audit, mnt); m.IDMap == nil || *m.IDMap != (audit.IDMap{UID: 4242, GID: 4343}) {
				t.Errorf("mount %+v: want idmap 4242:4343", m)
			}
		})
	}
}

// snapshotRefused: on btrfs a root-owned subvolume is "the tool's own"
// through a root-owned workdir's idmapped mount, so a snapshot of it
// would copy root's files (a 0600 secret here) into the workdir. The
// filter refuses btrfs ioctls: the attempt is a recorded denial and no
// snapshot exists on the host.
func snapshotRefused(t *testing.T, mnt string) {
	t.Helper()
	src, wd := filepath.Join(mnt, "src"), filepath.Join(mnt, "wd")
	if out, err := exec.Command("btrfs", "subvolume", "create", src).CombinedOutput(); err != nil {
		t.Fatalf("btrfs subvolume create: %v %s", err, out)
	}
	if err := os.WriteFile(filepath.Join(src, "secret"), []byte("root only\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(wd, 0o755); err != nil {
		t.Fatal(err)
	}
	script := `
import errno, fcntl, os, struct
src = os.open("` + src + `", os.O_RDONLY | os.O_DIRECTORY)
args = bytearray(struct.pack("qQQ32x", src, 0, 0) + b"snap".ljust(4040, b"\0"))
try:
    fcntl.ioctl(os.open(".", os.O_RDONLY | os.O_DIRECTORY), 0x50009417, args)
    print("snapshot made")
except OSError as e:
    print("snapshot", errno.errorcode[e.errno])
`
	res := runCmd(t, base().WithWorkdir(wd).WithReadDirs(src), sandbox.Command("python3", "-c", script))
	if string(res.Stdout) != "snapshot EPERM\n" {
		t.Errorf("snapshot of a root-owned subvolume: %q %q", res.Stdout, res.Stderr)
	}
	if _, err := os.Lstat(filepath.Join(wd, "snap")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a snapshot exists on the host: %v", err)
	}
	found := false
	for _, d := range res.Audit.Denials {
		found = found || d.Syscall == "ioctl"
	}
	if !found {
		t.Errorf("no ioctl denial recorded: %+v", res.Audit.Denials)
	}
}

// mustMount mounts and unmounts at cleanup.
func mustMount(t *testing.T, src, dst, fstype, data string) {
	t.Helper()
	if err := unix.Mount(src, dst, fstype, unix.MS_NOSUID|unix.MS_NODEV, data); err != nil {
		t.Fatalf("mount %s on %s: %v", fstype, dst, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dst, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dst, err)
		}
	})
}

// A writable grant the tool writes as root (a root-owned one, idmapped)
// holding a set-ID program of root's is refused before anything runs: the
// tool could rewrite the program (through a shared mapping the kernel
// keeps the set-ID bit), and the host would run the tool's code as root.
// A set-ID file of another user is not the tool's to write.
func TestSetIDFileInGrantRefused(t *testing.T) {
	testenv.NotApplicable(t, map[string]string{
		testenv.KindRootlessHybrid: "only grants the tool writes as root are checked; unprivileged the tool writes as the caller",
	})
	testenv.RequireRoot(t)
	testenv.RequireUserNS(t)
	wd := workdir(t)
	prog := filepath.Join(wd, "helper")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o755 | os.ModeSetuid, 0o755 | os.ModeSetgid} {
		if err := os.Chmod(prog, mode); err != nil {
			t.Fatal(err)
		}
		_, err := sandbox.Run(context.Background(), base().WithWorkdir(wd), sandbox.Command("/bin/true"))
		if !errors.Is(err, sandbox.ErrPolicy) || !strings.Contains(err.Error(), prog) || !strings.Contains(err.Error(), "set-ID") {
			t.Fatalf("mode %v: err %v, want ErrPolicy naming %s", mode, err, prog)
		}
	}
	// Another user's set-ID file: the tool sees it as nobody's.
	if err := os.Chown(prog, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(prog, 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	res := run(t, base().WithWorkdir(wd), `stat -c '%u %A' helper; echo x >> helper || echo denied`)
	if string(res.Stdout) != "65534 -rwsr-xr-x\ndenied\n" {
		t.Errorf("another user's set-ID file: %q %q", res.Stdout, res.Stderr)
	}
}

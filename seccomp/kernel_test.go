package seccomp

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/toolcell/toolcell/internal/testenv"
)

const childEnv = "TOOLCELL_SECCOMP_TEST_CHILD"

// TestMain lets the test binary act as the sandboxed child of
// TestKernelEnforcement.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(kernelChild())
	}
	if mode := os.Getenv(benchChildEnv); mode != "" {
		os.Exit(overheadChild(mode))
	}
	os.Exit(m.Run())
}

// install loads raw BPF bytes the way the C stage-2 does.
func install(bpf []byte) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("PR_SET_NO_NEW_PRIVS: %w", err)
	}
	prog := unix.SockFprog{
		Len:    uint16(len(bpf) / 8),
		Filter: (*unix.SockFilter)(unsafe.Pointer(&bpf[0])),
	}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(bpf)
	if errno != 0 {
		return fmt.Errorf("seccomp(SET_MODE_FILTER): %w", errno)
	}
	return nil
}

// installThread stacks a filter on the calling thread only, with prctl:
// the first filter denies seccomp(2) itself but allows PR_SET_SECCOMP.
func installThread(bpf []byte) error {
	prog := unix.SockFprog{
		Len:    uint16(len(bpf) / 8),
		Filter: (*unix.SockFilter)(unsafe.Pointer(&bpf[0])),
	}
	_, _, errno := unix.Syscall(unix.SYS_PRCTL, unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(bpf)
	if errno != 0 {
		return fmt.Errorf("prctl(PR_SET_SECCOMP): %w", errno)
	}
	return nil
}

func kernelChild() int {
	runtime.LockOSThread()
	f, err := Compile(Policy{Groups: DefaultGroups()})
	if err != nil {
		fmt.Println("FAIL compile:", err)
		return 2
	}
	if err := install(f.BPF); err != nil {
		fmt.Println("FAIL install:", err)
		return 2
	}
	failed := false
	check := func(what string, got, want unix.Errno) {
		if got != want {
			fmt.Printf("FAIL %s: errno %d (%v), want %d (%v)\n", what, got, got, want, want)
			failed = true
		} else {
			fmt.Printf("ok %s\n", what)
		}
	}
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0, 0, 0, 0)
	check("ptrace", e, unix.EPERM)
	_, _, e = unix.Syscall(unix.SYS_UNSHARE, unix.CLONE_NEWUSER, 0, 0)
	check("unshare(CLONE_NEWUSER)", e, unix.EPERM)
	_, _, e = unix.RawSyscall6(unix.SYS_CLONE, unix.CLONE_NEWUSER|uintptr(unix.SIGCHLD), 0, 0, 0, 0, 0)
	check("clone(CLONE_NEWUSER)", e, unix.EPERM)
	_, _, e = unix.Syscall(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_STREAM, 0)
	check("socket(AF_INET)", e, unix.EPERM)
	_, _, e = unix.Syscall(unix.SYS_PERSONALITY, 0x0400000, 0, 0)
	check("personality(READ_IMPLIES_EXEC)", e, unix.EPERM)
	_, _, e = unix.Syscall(1000, 0, 0, 0)
	check("syscall 1000", e, unix.ENOSYS)
	_, _, e = unix.Syscall(unix.SYS_CLONE3, 0, 0, 0)
	check("clone3", e, unix.ENOSYS)
	pid, _, e := unix.Syscall(unix.SYS_GETPID, 0, 0, 0)
	check("getpid", e, 0)
	if int(pid) != os.Getpid() {
		fmt.Println("FAIL getpid value")
		failed = true
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	check("socket(AF_UNIX)", errnoOf(err), 0)
	if err == nil {
		unix.Close(fd)
	}

	// The Go runtime must keep working: threads, GC, timers, file I/O.
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // forces new OS threads (clone)
			b := make([][]byte, 0)
			for j := 0; j < 200; j++ {
				b = append(b, make([]byte, 64<<10))
			}
			time.Sleep(10 * time.Millisecond)
			_ = b
		}()
	}
	wg.Wait()
	runtime.GC()
	dir, err := os.MkdirTemp("", "seccomp-child")
	if err == nil {
		err = os.WriteFile(dir+"/x", []byte("hi"), 0o600)
		if err == nil {
			_, err = os.ReadFile(dir + "/x")
		}
		os.RemoveAll(dir)
	}
	check("file I/O", errnoOf(err), 0)
	if sh, err := exec.LookPath("sh"); err == nil {
		out, err := exec.Command(sh, "-c", "ls / >/dev/null && echo exec-ok").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "exec-ok") {
			fmt.Printf("FAIL exec sh: %v %q\n", err, out)
			failed = true
		} else {
			fmt.Println("ok exec sh")
		}
	}
	// memfd_create: any flags under the default policy; stacked with a
	// MemfdNoexec filter, only memfds sealed non-executable.
	memfd := func(flags int) unix.Errno {
		fd, err := unix.MemfdCreate("toolcell-test", flags)
		if err == nil {
			unix.Close(fd)
		}
		return errnoOf(err)
	}
	check("memfd_create(0)", memfd(0), 0)
	if g, err := Compile(Policy{Groups: DefaultGroups(), MemfdNoexec: true}); err != nil {
		fmt.Println("FAIL compile MemfdNoexec:", err)
		failed = true
	} else if err := installThread(g.BPF); err != nil {
		fmt.Println("FAIL install MemfdNoexec:", err)
		failed = true
	} else {
		check("MemfdNoexec memfd_create(0)", memfd(0), unix.EPERM)
		check("MemfdNoexec memfd_create(MFD_EXEC)", memfd(unix.MFD_EXEC), unix.EPERM)
		check("MemfdNoexec memfd_create(MFD_EXEC|MFD_NOEXEC_SEAL)", memfd(unix.MFD_EXEC|unix.MFD_NOEXEC_SEAL), unix.EPERM)
		// Kernels before 6.3 do not know the flag: EINVAL, the filter let it through.
		if e := memfd(unix.MFD_NOEXEC_SEAL | unix.MFD_CLOEXEC); e != 0 && e != unix.EINVAL {
			check("MemfdNoexec memfd_create(MFD_NOEXEC_SEAL)", e, 0)
		} else {
			fmt.Printf("ok MemfdNoexec memfd_create(MFD_NOEXEC_SEAL): errno %d\n", e)
		}
	}
	if failed {
		return 1
	}
	fmt.Println("CHILD-DONE")
	return 0
}

func errnoOf(err error) unix.Errno {
	if err == nil {
		return 0
	}
	var e unix.Errno
	if errors.As(err, &e) {
		return e
	}
	return unix.EIO
}

func TestKernelEnforcement(t *testing.T) {
	testenv.Require(t, !testing.Short(), "not -short (the test re-execs the test binary)")
	err := unix.Prctl(unix.PR_GET_SECCOMP, 0, 0, 0, 0)
	testenv.Require(t, err == nil, fmt.Sprintf("seccomp in this kernel (PR_GET_SECCOMP: %v)", err))
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("child output:\n%s", out)
	if err != nil {
		t.Fatalf("child failed: %v", err)
	}
	if !strings.Contains(string(out), "CHILD-DONE") {
		t.Fatal("child did not finish")
	}
}

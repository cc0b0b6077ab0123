package sandbox

import (
	"context"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/internal/testenv"
)

// If the stage-2 dies (the supervisor crashed, say), pid 1 must die too and
// take the sandbox with it, even though pid 1 changed its credentials (which
// clears the parent-death signal unless it is re-armed).
func TestSandboxDiesWithItsStage2(t *testing.T) {
	testenv.RequireUserNS(t)
	p, err := Start(context.Background(), capability.New().WithBase(), Command("/bin/sleep", "60"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Kill(); p.Wait() }) // even when the test fails
	pidfd, err := unix.PidfdOpen(p.pid1, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	if !parentIs(mustRead(t, p.pid1), p.stage2.Process.Pid) {
		t.Fatal("pid 1 is not the stage-2's child")
	}
	// Kill only the stage-2: no cgroup kill, no control-socket EOF (pid 1
	// holds the socket too).
	unix.Kill(p.stage2.Process.Pid, unix.SIGKILL)
	// The pidfd becomes readable when pid 1 exits.
	deadline := time.Now().Add(10 * time.Second)
	for {
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(time.Until(deadline).Milliseconds()))
		if err == unix.EINTR && time.Now().Before(deadline) {
			continue
		}
		if err != nil || n != 1 {
			t.Fatalf("pid 1 survived its parent for 10s (poll %d, %v)", n, err)
		}
		break
	}
	res, _ := p.Wait()
	if res == nil || res.Reason == ReasonExited {
		t.Fatalf("result %+v", res)
	}
}

func mustRead(t *testing.T, pid int) []byte {
	b, err := readProc(pid, "stat")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

package testenv

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// Snapshot counts what a host process running sandboxes holds or has left
// on the host, to compare before and after a batch of runs.
type Snapshot struct {
	FDs        int // open descriptors of this process
	Goroutines int
	Children   int // live child processes of this process
	Mounts     int // mounts in this process's mount namespace
}

// Leaks takes a Snapshot.
func Leaks(t testing.TB) Snapshot {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return Snapshot{FDs: len(fds), Goroutines: runtime.NumGoroutine(), Children: children(t), Mounts: bytes.Count(mi, []byte("\n"))}
}

// children counts the processes whose parent is this process.
func children(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	self := os.Getpid()
	n := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // gone meanwhile
		}
		// The fields after the command name, which may hold anything, are
		// read from its closing parenthesis: state, then ppid.
		i := bytes.LastIndexByte(b, ')')
		var state string
		var ppid int
		if i < 0 {
			continue
		}
		if _, err := fmt.Sscan(string(b[i+1:]), &state, &ppid); err == nil && ppid == self && state != "Z" {
			n++
		}
	}
	return n
}

// NoLeaks fails the test unless, within a few seconds (the kernel and the
// runtime end what a run left asynchronously), nothing counted in the
// Snapshot grew past before.
func NoLeaks(t testing.TB, before Snapshot) {
	t.Helper()
	var now Snapshot
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		now = Leaks(t)
		if now.FDs <= before.FDs && now.Goroutines <= before.Goroutines && now.Children <= before.Children && now.Mounts <= before.Mounts {
			return
		}
		if time.Now().After(deadline) {
			break
		}
	}
	t.Fatalf("left behind: before %+v, after %+v", before, now)
}

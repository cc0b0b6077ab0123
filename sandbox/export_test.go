package sandbox

import (
	"testing"
	"time"
)

// BreakViewForTest adds to the view of every run, until the test ends, a
// read-write, executable, non-granted bind mount of each host directory
// (value) at a path of the view (key). It is added after the Landlock rules
// were computed, so it gets none: a view broken on purpose, which only
// Landlock then guards.
func BreakViewForTest(t testing.TB, mounts map[string]string) {
	t.Helper()
	testHookView = func(v *view) {
		for dst, src := range mounts {
			e := &entry{path: dst, kind: kindBind, acc: accRead | accWrite | accExec, isDir: true, src: src, granted: []string{"test: broken view"}}
			if err := v.add(e); err != nil {
				panic(err)
			}
		}
	}
	t.Cleanup(func() { testHookView = nil })
}

// LandlockProbeForTest makes the kernel probe answer abi and err until the
// test ends.
func LandlockProbeForTest(t testing.TB, abi int, err error) {
	t.Helper()
	old := landlockABI
	landlockABI = func() (int, error) { return abi, err }
	t.Cleanup(func() { landlockABI = old })
}

// LandlockABIForTest is the kernel's answer to the probe.
func LandlockABIForTest() (int, error) { return landlockABI() }

// WaitReadyForTest waits until the pool holds n ready sandboxes.
func (po *Pool) WaitReadyForTest(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		po.mu.Lock()
		got := len(po.ready)
		po.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pool: %d ready sandboxes after 30s, want %d", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// KillReadyForTest kills the stage-2 of every ready sandbox of the pool and
// waits until each is gone, leaving them in the pool.
func (po *Pool) KillReadyForTest() {
	po.mu.Lock()
	ready := append([]*Process(nil), po.ready...)
	po.mu.Unlock()
	for _, p := range ready {
		p.stage2.kill()
		for !p.stage2.gone() {
			time.Sleep(time.Millisecond)
		}
	}
}

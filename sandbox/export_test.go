package sandbox

import (
	"os"
	"sync"
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

// TrackForTest records every Process made until the test ends; the
// function returned lists what of theirs is still on the host: cgroup
// directories and temporary workdirs.
func TrackForTest(t testing.TB) func() []string {
	var mu sync.Mutex
	var ps []*Process
	testHookProcess = func(p *Process) {
		mu.Lock()
		ps = append(ps, p)
		mu.Unlock()
	}
	t.Cleanup(func() { testHookProcess = nil })
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		var left []string
		for _, p := range ps {
			if p.cg != nil {
				for _, d := range p.cg.Dirs() {
					if _, err := os.Stat(d); err == nil {
						left = append(left, d)
					}
				}
			}
			if _, err := os.Stat(p.tempDir); p.tempDir != "" && err == nil {
				left = append(left, p.tempDir)
			}
		}
		return left
	}
}

package sandbox

import "testing"

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

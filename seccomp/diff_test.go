package seccomp

import "testing"

func TestDiffWidening(t *testing.T) {
	narrow := Policy{Groups: []Group{GroupBase, GroupFileRead}}
	wide := Policy{Groups: []Group{GroupBase, GroupFileRead, GroupFileWrite, GroupExec}}
	ch := Diff(narrow, wide)
	if len(ch) == 0 {
		t.Fatal("no changes between narrow and wide")
	}
	got := map[string]Change{}
	for _, c := range ch {
		got[c.Syscall] = c
	}
	for _, name := range []string{"unlinkat", "mkdirat", "execve"} {
		c, ok := got[name]
		if !ok || !c.Widens || c.To.Action != ActionAllow || c.From.Action == ActionAllow {
			t.Errorf("%s: %+v, want a widening change to allow", name, c)
		}
	}
	if c := got["execve"]; c.To.Group != GroupExec {
		t.Errorf("execve allowed by %q, want %q", c.To.Group, GroupExec)
	}
	// Widening changes come first.
	seenNarrowing := false
	for _, c := range ch {
		if !c.Widens {
			seenNarrowing = true
		} else if seenNarrowing {
			t.Fatalf("widening change %s listed after a non-widening one", c.Syscall)
		}
	}
	// The reverse direction widens nothing.
	for _, c := range Diff(wide, narrow) {
		if c.Widens {
			t.Errorf("narrowing the policy widened %s: %+v", c.Syscall, c)
		}
	}
	if len(Diff(wide, wide)) != 0 {
		t.Error("a policy differs from itself")
	}
	// Always-denied syscalls never appear as widened.
	for _, name := range AlwaysDenied() {
		if c, ok := got[name]; ok && c.Widens {
			t.Errorf("always-denied %s widened", name)
		}
	}
}

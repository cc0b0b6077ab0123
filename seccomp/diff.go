package seccomp

import "sort"

// Change is one syscall whose treatment differs between two policies.
type Change struct {
	Syscall string
	From    Rule // its treatment under the old policy
	To      Rule // and under the new one
	// Widens is true when the new policy lets through more than the old
	// one did: from denied to allowed, or from an argument-filtered allow
	// to an unconditional one.
	Widens bool
}

// Diff compares two policies syscall by syscall and returns what changed,
// widening changes first, then by name. A reviewer of a policy change reads
// the widening part: it is what the new policy newly lets a tool do. It
// returns nil if either policy is invalid.
func Diff(oldP, newP Policy) []Change {
	a, b := Explain(oldP), Explain(newP)
	if a == nil || b == nil {
		return nil
	}
	byName := make(map[string]Rule, len(a))
	for _, r := range a {
		byName[r.Syscall] = r
	}
	var out []Change
	for _, to := range b {
		from, ok := byName[to.Syscall]
		if !ok {
			from = Rule{Syscall: to.Syscall, Action: ActionErrnoENOSYS}
		}
		if from.Action == to.Action && from.Condition == to.Condition {
			continue
		}
		out = append(out, Change{Syscall: to.Syscall, From: from, To: to, Widens: widens(from, to)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Widens != out[j].Widens {
			return out[i].Widens
		}
		return out[i].Syscall < out[j].Syscall
	})
	return out
}

func widens(from, to Rule) bool {
	if to.Action != ActionAllow {
		return false
	}
	if from.Action != ActionAllow {
		return true
	}
	return from.Condition != "" && to.Condition == ""
}

package capability_test

import (
	"fmt"
	"time"

	"github.com/toolcell/toolcell/capability"
)

func Example() {
	// A relative path is refused, naming the field and the value.
	bad := capability.New().ReadFile("data/in.json")
	fmt.Println(bad.Validate())

	// A policy of limits only: no host paths, so it validates anywhere.
	set := capability.New().Named("limits-only").
		WithMemory(256 * capability.MiB).
		WithPids(32).
		WithTimeout(30 * time.Second)
	if err := set.Validate(); err != nil {
		fmt.Println(err)
		return
	}
	// The hash names the policy in audit records. Making a default
	// explicit does not change it.
	same := set.Clone().WithCPU(capability.DefaultCPU)
	h1, _ := set.Hash()
	h2, _ := same.Hash()
	fmt.Println(h1, h1 == h2)
	fmt.Println(set)
	// Output:
	// capability: read_files[0] "data/in.json": path is not absolute
	// sha256:6db3e05fd87811498bb99eed7d039e9540794dd387f2399ce2dd251d58b805c9 true
	// policy "limits-only"
	// no file access
	// tmp 64MiB
	// env empty (PATH only)
	// memory 256MiB, pids 32, cpu 1, timeout 30s, max output 16MiB, max file size 1GiB
}

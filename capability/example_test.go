package capability_test

import (
	"fmt"
	"time"

	"github.com/toolcell/toolcell/capability"
)

func Example() {
	// A relative path is refused, naming the field and the value.
	bad := capability.New().WithReadFiles("data/in.json")
	fmt.Println(bad.Validate())

	// A policy of limits only: no host paths, so it validates anywhere.
	set := capability.New().WithName("limits-only").
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

// A tool that may fetch from one host and its CDN, and call an API whose
// key it never holds: the supervisor adds the header on the host side.
func ExampleSet_WithEgress() {
	set := capability.New().WithName("fetcher").
		WithEgress("docs.example.com:443", "*.cdn.example.com:443").
		WithHTTPAPI("api.example.com", "Authorization", "Bearer ", "env:EXAMPLE_API_KEY")
	if err := set.Validate(); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(set)
	// A wildcard covers subdomains only, and a grant needs its port.
	fmt.Println(capability.New().WithEgress("example.com").Validate())
	// Output:
	// policy "fetcher"
	// no file access
	// tmp 64MiB
	// env empty (PATH only)
	// egress *.cdn.example.com:443
	// egress docs.example.com:443
	// http api api.example.com: header Authorization from secret env:EXAMPLE_API_KEY
	// memory 512MiB, pids 128, cpu 1, timeout 1m0s, max output 16MiB, max file size 1GiB
	// capability: egress[0] "example.com": the port is required (name:port)
}

package sandbox

import (
	"os"
	"path/filepath"

	"github.com/toolcell/toolcell/seccomp"
)

// filterCacheDir holds compiled seccomp filters for the next host process
// (seccomp.CompileCachedDir), beside the id leases: used only by a host
// process running as root, whose tools run as host uids that are never 0
// and hold no capability on the host, so none can write there. A rootless
// host process's tool runs as the caller's uid, which owns any cache that
// process could write: it compiles in each process (cached in-process).
func filterCacheDir() string { return filepath.Join(leaseDir, "seccomp") }

// compileFilter compiles pol, cached in this process and, as root, on disk.
func compileFilter(pol seccomp.Policy) (*seccomp.Filter, error) {
	if os.Geteuid() != 0 {
		return seccomp.CompileCached(pol)
	}
	return seccomp.CompileCachedDir(pol, filterCacheDir())
}

package sandbox

import (
	"fmt"
	"os"
	"sync"

	"github.com/opencontainers/runc/libcontainer/exeseal"
)

// The stage-2 is started from a sealed, read-only copy of the host binary
// (a sealed memfd, via runc's exeseal), made once per host process. A tool
// that reached /proc/<pid>/exe of a stage-2 process could otherwise try to
// rewrite the host binary (the CVE-2019-5736 class).
var (
	sealOnce sync.Once
	sealed   *os.File
	sealErr  error
)

func sealedSelf() (*os.File, error) {
	sealOnce.Do(func() {
		sealed, sealErr = exeseal.CloneSelfExe(os.TempDir())
		if sealErr != nil {
			sealErr = fmt.Errorf("%w: seal self binary: %w", ErrSetup, sealErr)
		}
	})
	return sealed, sealErr
}

package sandbox

import (
	"fmt"
	"os"
	"sync"

	"github.com/opencontainers/runc/libcontainer/exeseal"
)

// The stage-2 is started from a sealed, read-only copy of the host binary,
// made once per host process by runc's exeseal, whether it is exec'd as the
// fork server or, for a Runner with OneShot, as a run's stage-2 directly: a
// tool that reached /proc/<pid>/exe of a stage-2 process or of pid 1 (a
// clone of it, which never execs) could otherwise try to rewrite the host
// binary (the CVE-2019-5736 class). Two ways, both measured on a 2-core VM
// with a 24 MB binary:
//   - As root: an overlayfs mount made with fsopen, the binary's directory
//     and TMPDIR as its two lower layers and no upper one, so it cannot be
//     written at all; mounted read-only, never attached anywhere, the
//     binary opened O_PATH through it. No copy: about 0.9 ms. (It fails,
//     ELOOP, when the binary lies under TMPDIR: the layers overlap.)
//   - Otherwise (unprivileged, or that failure): a copy into a memfd sealed
//     against writes, shrinking and growth; sendfile of the whole binary,
//     about 10-15 ms of CPU.
//
// Either way the exec'd file is another inode than the host binary, and
// open(2) for writing through the link fails (EROFS or a seal; ETXTBSY while
// it runs). Fail closed: without a sealed copy no stage-2 is started.
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

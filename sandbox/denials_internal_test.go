package sandbox

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/toolcell/toolcell/seccomp"
)

// process_vm_readv(2) fails with -1 on a bad address; readMem reports no
// bytes read (a negative count crashed the decoder, and the supervisor).
func TestReadMemBadAddress(t *testing.T) {
	b := make([]byte, 16)
	if n, err := readMem(os.Getpid(), 1, b); n != 0 || err == nil {
		t.Fatalf("readMem at address 1: %d, %v", n, err)
	}
}

// denials[] is bounded whatever the tool does: 128 entries itemised by
// arguments (here with the longest details a tool can make), then one per
// syscall number the filter sends to the supervisor.
func TestDenialsWorstCase(t *testing.T) {
	var d denialLog
	junk := strings.Repeat("\x01", 300)
	mem := func(addr uint64, b []byte) (int, error) { return copy(b, junk), nil }
	at := time.Now()
	const arch = unix.AUDIT_ARCH_X86_64
	for i := 0; i < 1000; i++ {
		n := seccomp.Notif{Nr: unix.SYS_MOUNT, Arch: arch, Args: [6]uint64{^uint64(0), 2, 3, uint64(i), 5, ^uint64(0)}}
		detail := seccomp.Describe("mount", n.Args, mem) + fmt.Sprint(i)
		k, _ := d.key(n, detail)
		d.add(k, n, "mount", detail, "processname0123", "EPERM", at)
	}
	for nr := int32(0); nr < 1024; nr++ {
		name := seccomp.SyscallName(arch, nr)
		if strings.HasPrefix(name, "nr_") {
			continue // unknown numbers get ENOSYS from the filter, never a notification
		}
		n := seccomp.Notif{Nr: nr, Arch: arch, Args: [6]uint64{^uint64(0), 2, 3, 4, 5, ^uint64(0)}}
		k, _ := d.key(n, "x")
		d.add(k, n, name, "x", "processname0123", "EPERM", at)
	}
	ds, dropped, _ := d.result()
	b, err := json.Marshal(ds)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d entries, %d dropped, %d bytes of JSON", len(ds), dropped, len(b))
	if len(ds) > 500 || len(b) > 1<<20 {
		t.Fatalf("%d entries, %d bytes", len(ds), len(b))
	}
}

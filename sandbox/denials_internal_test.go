package sandbox

import (
	"os"
	"testing"
)

// process_vm_readv(2) fails with -1 on a bad address; readMem reports no
// bytes read (a negative count crashed the decoder, and the supervisor).
func TestReadMemBadAddress(t *testing.T) {
	b := make([]byte, 16)
	if n, err := readMem(os.Getpid(), 1, b); n != 0 || err == nil {
		t.Fatalf("readMem at address 1: %d, %v", n, err)
	}
}

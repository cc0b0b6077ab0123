package mcptool_test

import (
	"os"
	"testing"

	"github.com/toolcell/toolcell/internal/auditschema"
)

// TestMain checks, after the tests, every audit record the tests' runs
// finished against audit's JSON Schema: an invalid record fails the test
// binary.
func TestMain(m *testing.M) {
	os.Exit(auditschema.Main("mcptool", m.Run))
}

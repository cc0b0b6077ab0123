package audit_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/toolcell/toolcell/audit"
)

// Read a JSON-lines audit log (sandbox.JSONLAudit, toolcell mcp --audit)
// without building the sandbox: this package needs neither cgo nor
// libseccomp.
func Example() {
	log := `{"schema":"toolcell.audit/v1","id":"0123456789abcdef","tool":"python","exit":{"reason":"oom","code":-1,"signal":"SIGKILL","limits_hit":["memory"]},"denials":[],"network":[]}
{"schema":"toolcell.audit/v1","id":"fedcba9876543210","tool":"shell","exit":{"reason":"exited","code":0,"limits_hit":[]},"denials":[],"network":[]}`
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		var rec audit.Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || rec.Schema != audit.Schema {
			continue
		}
		fmt.Println(rec.Tool, rec.Exit.Reason, rec.Exit.LimitsHit, rec.Notable())
	}
	// Output:
	// python oom [memory] true
	// shell exited [] false
}

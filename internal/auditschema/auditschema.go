// Package auditschema validates audit records against the JSON Schema of
// package audit (audit.JSONSchema), for tests. Validate and ValidateJSON
// check one record. Main, called from a test binary's TestMain, checks
// every record the binary's sandbox runs finished (testhook.AuditRecord)
// and every record its tests hand to AddJSON, after the tests: one
// invalid record fails the binary.
package auditschema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/internal/testhook"
)

var (
	once     sync.Once
	resolved *jsonschema.Resolved
	errLoad  error
)

// schema is audit.JSONSchema, resolved once.
func schema() (*jsonschema.Resolved, error) {
	once.Do(func() {
		var s jsonschema.Schema
		if errLoad = json.Unmarshal(audit.JSONSchema(), &s); errLoad != nil {
			errLoad = fmt.Errorf("audit schema: %w", errLoad)
			return
		}
		resolved, errLoad = s.Resolve(nil)
		if errLoad != nil {
			errLoad = fmt.Errorf("audit schema: resolve: %w", errLoad)
		}
	})
	return resolved, errLoad
}

// ValidateJSON checks one record in its JSON form against the schema.
func ValidateJSON(b []byte) error {
	rs, err := schema()
	if err != nil {
		return err
	}
	var v any
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&v); err != nil {
		return fmt.Errorf("audit record: %w", err)
	}
	if _, err := d.Token(); err != io.EOF {
		return fmt.Errorf("audit record: more than one JSON value")
	}
	return rs.Validate(v)
}

// Validate checks rec, as JSON, against the schema.
func Validate(rec *audit.Record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("audit record: %w", err)
	}
	return ValidateJSON(b)
}

// Split returns each JSON value of b (one record as a file holds it, or
// JSON lines), or an error if b is not a sequence of JSON values.
func Split(b []byte) ([][]byte, error) {
	var out [][]byte
	d := json.NewDecoder(bytes.NewReader(b))
	for {
		var raw json.RawMessage
		err := d.Decode(&raw)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, raw)
	}
}

// collected are the records of this test binary, as JSON.
var collected struct {
	mu   sync.Mutex
	recs [][]byte
	bad  []string
}

// add keeps rec, marshaled now: it is checked as it was written.
func add(rec *audit.Record) {
	b, err := json.Marshal(rec)
	collected.mu.Lock()
	defer collected.mu.Unlock()
	if err != nil {
		collected.bad = append(collected.bad, "marshal: "+err.Error())
		return
	}
	collected.recs = append(collected.recs, b)
}

// AddJSON keeps for Main's check the records in b (a JSON value, or JSON
// lines) as a program wrote them; from says where they came from. b that
// is not JSON is itself a failure.
func AddJSON(from string, b []byte) {
	vals, err := Split(b)
	collected.mu.Lock()
	defer collected.mu.Unlock()
	if err != nil {
		collected.bad = append(collected.bad, from+": not JSON: "+err.Error())
	}
	collected.recs = append(collected.recs, vals...)
}

// check validates every record kept and returns how many there were and
// one line per invalid record (its id, the error, the record).
func check() (n int, invalid []string) {
	collected.mu.Lock()
	defer collected.mu.Unlock()
	invalid = append(invalid, collected.bad...)
	for _, b := range collected.recs {
		if err := ValidateJSON(b); err != nil {
			var id struct {
				ID string `json:"id"`
			}
			json.Unmarshal(b, &id)
			if len(b) > 2000 {
				b = append(b[:2000:2000], "..."...)
			}
			invalid = append(invalid, fmt.Sprintf("record %s: %v\n\t%s", id.ID, err, b))
		}
	}
	return len(collected.recs) + len(collected.bad), invalid
}

// Main is a test binary's TestMain body: it collects every record the
// binary's sandbox runs finish (testhook.AuditRecord), runs the tests
// (run is m.Run), and then checks those and the ones given to AddJSON.
// An invalid record fails the binary (exit status 1) even when every test
// passed; name says whose records they are. The count is printed (go test
// shows it with -v or on failure).
func Main(name string, run func() int) int {
	testhook.AuditRecord = add
	code := run()
	n, invalid := check()
	for _, s := range invalid {
		fmt.Fprintf(os.Stderr, "auditschema: %s: invalid audit record: %s\n", name, s)
	}
	if len(invalid) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: auditschema: %s: %d of %d audit records do not validate against audit/record.schema.json\n", name, len(invalid), n)
		if code == 0 {
			code = 1
		}
	} else if n > 0 {
		fmt.Fprintf(os.Stderr, "auditschema: %s: %d audit records valid\n", name, n)
	}
	return code
}

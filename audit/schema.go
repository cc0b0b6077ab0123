package audit

import (
	"bytes"
	_ "embed"
)

//go:embed record.schema.json
var jsonSchema []byte

// JSONSchema returns the JSON Schema (draft 2020-12) of a Record as JSON,
// the file record.schema.json of this package: the fields a record has
// and their types, the values of Exit.Reason and Exit.LimitsHit, and no
// field beyond those. Every record toolcell writes validates against it.
// The result is a copy; the caller may change it.
func JSONSchema() []byte { return bytes.Clone(jsonSchema) }

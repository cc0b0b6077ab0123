// Package testhook holds the hooks toolcell's packages call for tests in
// other packages; each is nil outside tests. A test binary sets them in
// its TestMain, before any test runs.
package testhook

import "github.com/toolcell/toolcell/audit"

// AuditRecord, if set, sees every audit record a sandbox run finished
// (package sandbox calls it where the record goes to the Runner's sink,
// whether or not there is one), setup failures included. It must not
// change the record or keep it past the call.
var AuditRecord func(*audit.Record)

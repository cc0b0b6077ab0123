package sandbox_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/internal/testenv"
	"github.com/toolcell/toolcell/sandbox"
)

// SlogAudit writes one line per run, parsed back here: Info for a quiet
// run, Warn for one with a denied syscall, and the setup failure too.
func TestSlogAudit(t *testing.T) {
	testenv.RequireUserNS(t)
	var buf bytes.Buffer
	r := &sandbox.Runner{Audit: sandbox.SlogAudit{Logger: slog.New(slog.NewJSONHandler(&buf, nil))}}
	runCmdWith(t, r, base(), sandbox.Command("/bin/true"))
	runCmdWith(t, r, base(), sandbox.Command("/bin/sh", "-c", "sync; exit 3"))
	if _, err := r.Run(context.Background(), base(), sandbox.Command("/no/such/tool")); err == nil {
		t.Fatal("a missing tool ran")
	}
	type line struct {
		Level string
		Msg   string
		Run   struct {
			ID, Tool, Policy string
			Reason           audit.Reason
			Code             int
			Denials          int
			FirstDenials     []string `json:"first_denials"`
			LimitsHit        []string `json:"limits_hit"`
			Error            string
		}
	}
	var lines []line
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("%v: %s", err, sc.Bytes())
		}
		lines = append(lines, l)
	}
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3", len(lines))
	}
	q, d, f := lines[0], lines[1], lines[2]
	if q.Level != "INFO" || q.Msg != "toolcell run" || q.Run.ID == "" || !strings.HasPrefix(q.Run.Policy, "sha256:") || q.Run.Reason != audit.ReasonExited || q.Run.Tool != "true" {
		t.Errorf("quiet run: %+v", q)
	}
	if d.Level != "WARN" || d.Run.Code != 3 || d.Run.Denials == 0 || len(d.Run.FirstDenials) == 0 || !strings.HasPrefix(d.Run.FirstDenials[0], "sync") {
		t.Errorf("run with a denial: %+v", d)
	}
	if f.Level != "WARN" || f.Run.Reason != audit.ReasonSetupFailed || !strings.Contains(f.Run.Error, "/no/such/tool") {
		t.Errorf("setup failure: %+v", f)
	}
}

// JSONLAudit: 16 concurrent runs, 16 whole lines, each a record.
func TestJSONLAuditConcurrent(t *testing.T) {
	testenv.RequireUserNS(t)
	path := filepath.Join(testenv.Tempdir(t), "audit.jsonl")
	sink, err := sandbox.OpenJSONLAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	r := &sandbox.Runner{Audit: sink}
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			res, err := r.Run(context.Background(), base(), sandbox.Command("/bin/sh", "-c", fmt.Sprintf("head -c %d /dev/zero | tr '\\0' x", 20000+i)))
			if err != nil || res.Exit.Code != 0 {
				t.Errorf("run %d: %v", i, err)
			}
		}(i)
	}
	wg.Wait()
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int64
	ids := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		var rec audit.Record
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("line is not a record: %v (%.80s)", err, l)
		}
		ids[rec.ID] = true
		sizes = append(sizes, rec.Output.StdoutBytes)
	}
	sort.Slice(sizes, func(i, j int) bool { return sizes[i] < sizes[j] })
	if len(ids) != 16 || len(sizes) != 16 || sizes[0] != 20000 || sizes[15] != 20015 {
		t.Errorf("%d records (%d ids), stdout sizes %v", len(sizes), len(ids), sizes)
	}
}

// MaxConcurrent: 6 runs of 300 ms with a bound of 2 never overlap more than
// two at a time (their records' start and end), and a caller whose context
// ends while waiting gets the context's error, nothing run.
func TestMaxConcurrent(t *testing.T) {
	testenv.RequireUserNS(t)
	r := &sandbox.Runner{MaxConcurrent: 2}
	var mu sync.Mutex
	var spans [][2]time.Time
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := r.Run(context.Background(), base(), sandbox.Command("/bin/sh", "-c", "sleep 0.3"))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			spans = append(spans, [2]time.Time{res.Audit.StartedAt, res.Audit.EndedAt})
			mu.Unlock()
		}()
	}
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := r.Run(ctx, base(), sandbox.Command("/bin/true")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting past the context: err %v, want DeadlineExceeded", err)
	}
	wg.Wait()
	for _, s := range spans {
		n := 0
		for _, o := range spans {
			if !o[0].After(s[0]) && o[1].After(s[0]) {
				n++ // o was running when s started
			}
		}
		if n > 2 {
			t.Errorf("%d runs at once at %v, bound 2", n, s[0])
		}
	}
	if len(spans) != 6 {
		t.Errorf("%d runs", len(spans))
	}
}

// audit.Record.Compact: about 1 KB for a Base run, the run's own facts whole,
// and each left-out field's hash that of its JSON in the full record.
func TestRecordCompact(t *testing.T) {
	testenv.RequireUserNS(t)
	res := runCmd(t, base().WithWorkdir(workdir(t)), sandbox.Command("/bin/sh", "-c", "sync; echo hi"))
	full := res.Audit
	c := full.Compact()
	bf, _ := json.Marshal(full)
	bc, _ := json.Marshal(c)
	if len(bc) > 1700 || len(bc)*5 > len(bf) {
		t.Errorf("compact %d bytes, full %d", len(bc), len(bf))
	}
	if len(full.Enforcement.Mounts) == 0 || len(full.Enforcement.Seccomp.AllowedSyscalls) == 0 {
		t.Fatal("Compact changed the full record")
	}
	if c.Enforcement.Compacted == nil || c.Enforcement.Compacted.SHA256 != full.CompactedHash() || !strings.HasPrefix(c.Enforcement.Compacted.SHA256, "sha256:") ||
		len(c.Enforcement.Compacted.Fields) != 8 {
		t.Errorf("compacted %+v, full record's hash %s", c.Enforcement.Compacted, full.CompactedHash())
	}
	again := runCmd(t, base().WithWorkdir(full.Command.Cwd), sandbox.Command("/bin/true")).Audit
	if again.CompactedHash() != full.CompactedHash() {
		t.Errorf("two runs of one policy: %s and %s", again.CompactedHash(), full.CompactedHash())
	}
	if c.Enforcement.Mounts != nil || c.Enforcement.Seccomp.AllowedSyscalls != nil || len(c.Denials) != len(full.Denials) ||
		c.Exit.Reason != full.Exit.Reason || c.Policy.Hash != full.Policy.Hash || c.Enforcement.Seccomp.FilterHash == "" {
		t.Errorf("compact record %s", bc)
	}
}

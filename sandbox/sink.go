package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/internal/testhook"
)

// AuditSink receives the audit record of every run of a Runner
// (Runner.Audit): once per run, when it has ended, setup failures
// included. The context carries the caller's values but not its
// cancellation, with a deadline of AuditTimeout: a sink must not hold the
// run up for long (Wait returns after it). An error is logged to
// Runner.Logger; the run's result is unaffected.
type AuditSink interface {
	Record(ctx context.Context, rec *audit.Record) error
}

// AuditTimeout bounds each AuditSink call.
const AuditTimeout = 5 * time.Second

// audit hands the finished record to the Runner's sink.
func (p *Process) audit() {
	if h := testhook.AuditRecord; h != nil {
		h(p.rec)
	}
	if p.r.Audit == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.ctx), AuditTimeout)
	defer cancel()
	if err := p.r.Audit.Record(ctx, p.rec); err != nil && p.r.Logger != nil {
		p.r.Logger.Warn("audit sink", "run", p.rec.ID, "err", err)
	}
}

// SlogAudit logs one line per run to a *slog.Logger: at Info, or at Warn
// when the run is Notable. The attributes are the
// record's summary (audit.Record.LogValue).
type SlogAudit struct{ Logger *slog.Logger }

// Record logs rec.
func (s SlogAudit) Record(ctx context.Context, rec *audit.Record) error {
	level := slog.LevelInfo
	if rec.Notable() {
		level = slog.LevelWarn
	}
	s.Logger.LogAttrs(ctx, level, "toolcell run", slog.Any("run", rec))
	return nil
}

// JSONLAudit writes each record as one line of JSON to W, whole: records
// of concurrent runs never interleave. Rotation is the platform's.
type JSONLAudit struct {
	mu sync.Mutex
	w  io.Writer
	f  *os.File // set by OpenJSONLAudit
}

// NewJSONLAudit writes records to w.
func NewJSONLAudit(w io.Writer) *JSONLAudit { return &JSONLAudit{w: w} }

// OpenJSONLAudit appends records to the file at path (created 0600).
func OpenJSONLAudit(path string) (*JSONLAudit, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sandbox: audit file: %w", err)
	}
	return &JSONLAudit{w: f, f: f}, nil
}

// Record writes rec and a newline in one Write.
func (j *JSONLAudit) Record(_ context.Context, rec *audit.Record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("sandbox: audit record: %w", err)
	}
	b = append(b, '\n')
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, err := j.w.Write(b); err != nil {
		return fmt.Errorf("sandbox: audit write: %w", err)
	}
	return nil
}

// Close closes the file OpenJSONLAudit opened; for NewJSONLAudit it does
// nothing.
func (j *JSONLAudit) Close() error {
	if j.f == nil {
		return nil
	}
	return j.f.Close()
}

// concurrency holds each Runner's MaxConcurrent semaphore.
var concurrency sync.Map // *Runner -> chan struct{}

// acquire waits for a run slot of r (Runner.MaxConcurrent), or for ctx.
// The returned function gives the slot back.
func (r *Runner) acquire(ctx context.Context) (func(), error) {
	if r.MaxConcurrent <= 0 {
		return func() {}, nil
	}
	v, _ := concurrency.LoadOrStore(r, make(chan struct{}, r.MaxConcurrent))
	sem := v.(chan struct{})
	select {
	case sem <- struct{}{}:
		var once sync.Once
		return func() { once.Do(func() { <-sem }) }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

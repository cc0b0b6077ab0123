// Package otelaudit records each toolcell run as an OpenTelemetry span:
// set Sink as sandbox.Runner.Audit.
//
//	r := &sandbox.Runner{Audit: otelaudit.New(otel.Tracer("toolcell"))}
//
// The span ("toolcell.run <tool>") starts and ends when the run did, is a
// child of the span in the context the run was started with, and carries
// the policy hash, the exit (reason, code, signal, limits hit), the
// resources and the counts of denials and network attempts as attributes.
// Each denied syscall kind is an event ("toolcell.denial"), as is each
// refused network attempt ("toolcell.network.refused"). A run that did
// not exit 0 by itself, or that could not be set up, sets the span's
// status to Error. The record's full form stays with the other sinks.
package otelaudit

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/toolcell/toolcell/audit"
)

// Sink is a sandbox.AuditSink writing spans with Tracer.
type Sink struct {
	Tracer trace.Tracer
}

// New returns a Sink for tracer.
func New(tracer trace.Tracer) *Sink { return &Sink{Tracer: tracer} }

// Record makes rec's span.
func (s *Sink) Record(ctx context.Context, rec *audit.Record) error {
	_, span := s.Tracer.Start(ctx, "toolcell.run "+rec.Tool,
		trace.WithTimestamp(rec.StartedAt), trace.WithSpanKind(trace.SpanKindInternal))
	refused := 0
	for _, c := range rec.Network {
		if !c.Allowed {
			refused++
		}
	}
	span.SetAttributes(
		attribute.String("toolcell.run.id", rec.ID),
		attribute.String("toolcell.tool", rec.Tool),
		attribute.String("toolcell.policy.hash", rec.Policy.Hash),
		attribute.String("toolcell.exit.reason", string(rec.Exit.Reason)),
		attribute.Int("toolcell.exit.code", rec.Exit.Code),
		attribute.StringSlice("toolcell.exit.limits_hit", limits(rec.Exit.LimitsHit)),
		attribute.Float64("toolcell.duration_ms", rec.DurationMS),
		attribute.Float64("toolcell.setup_ms", rec.SetupMS),
		attribute.Int64("toolcell.cpu_us", int64(rec.Resources.CPUUserUS+rec.Resources.CPUSystemUS)),
		attribute.Int64("toolcell.memory_peak_bytes", int64(rec.Resources.MemoryPeakBytes)),
		attribute.Int64("toolcell.pids_peak", int64(rec.Resources.PidsPeak)),
		attribute.Int64("toolcell.oom_kills", int64(rec.Resources.OOMKills)),
		attribute.Int("toolcell.denials", len(rec.Denials)),
		attribute.Int("toolcell.network.attempts", len(rec.Network)),
		attribute.Int("toolcell.network.refused", refused),
	)
	if rec.Exit.Signal != "" {
		span.SetAttributes(attribute.String("toolcell.exit.signal", rec.Exit.Signal))
	}
	if len(rec.Enforcement.Degraded) > 0 {
		span.SetAttributes(attribute.StringSlice("toolcell.degraded", rec.Enforcement.Degraded))
	}
	for _, d := range rec.Denials {
		span.AddEvent("toolcell.denial", trace.WithTimestamp(d.FirstAt), trace.WithAttributes(
			attribute.String("toolcell.syscall", d.Syscall),
			attribute.String("toolcell.detail", d.Detail),
			attribute.String("toolcell.process", d.Process),
			attribute.Int("toolcell.count", d.Count),
		))
	}
	for _, c := range rec.Network {
		if c.Allowed {
			continue
		}
		span.AddEvent("toolcell.network.refused", trace.WithTimestamp(c.At), trace.WithAttributes(
			attribute.String("toolcell.kind", c.Kind),
			attribute.String("toolcell.name", c.Name),
			attribute.Int("toolcell.port", c.Port),
			attribute.String("toolcell.reason", c.Reason),
		))
	}
	switch {
	case rec.Exit.Reason == audit.ReasonSetupFailed:
		span.SetStatus(codes.Error, "setup failed: "+rec.Error)
	case rec.Exit.Reason != audit.ReasonExited || rec.Exit.Code != 0:
		span.SetStatus(codes.Error, fmt.Sprintf("%s (code %d)", rec.Exit.Reason, rec.Exit.Code))
	}
	span.End(trace.WithTimestamp(rec.EndedAt))
	return nil
}

// limits is l as plain strings, for an attribute.
func limits(l []audit.Limit) []string {
	s := make([]string, len(l))
	for i, x := range l {
		s[i] = string(x)
	}
	return s
}

package otelaudit_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/internal/testenv"
	"github.com/toolcell/toolcell/otelaudit"
	"github.com/toolcell/toolcell/sandbox"
)

// One span per run, a child of the caller's, with the record's facts as
// attributes, an event per denial and per refused network attempt, and an
// error status for a run that failed; read back from the SDK's in-memory
// exporter.
func TestSpans(t *testing.T) {
	testenv.RequireUserNS(t)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	r := &sandbox.Runner{Audit: otelaudit.New(tp.Tracer("toolcell-test"))}

	ctx, parent := tp.Tracer("agent").Start(context.Background(), "agent step")
	set := capability.New().WithBase().WithEgress("granted.toolcell.test:443")
	cmd := sandbox.Command("/bin/sh", "-c", "sync; getent hosts other.toolcell.test; exit 4")
	res, err := r.Run(ctx, set, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(ctx, set, sandbox.Command("/no/such/tool")); err == nil {
		t.Fatal("a missing tool ran")
	}
	parent.End()

	var runs []tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.Name == "toolcell.run sh" || s.Name == "toolcell.run tool" {
			runs = append(runs, s)
		}
	}
	if len(runs) != 2 {
		t.Fatalf("%d run spans: %+v", len(runs), exp.GetSpans())
	}
	s := runs[0]
	if s.Parent.SpanID() != parent.SpanContext().SpanID() || s.SpanContext.TraceID() != parent.SpanContext().TraceID() {
		t.Errorf("span's parent %v, want the caller's %v", s.Parent.SpanID(), parent.SpanContext().SpanID())
	}
	attrs := map[attribute.Key]attribute.Value{}
	for _, a := range s.Attributes {
		attrs[a.Key] = a.Value
	}
	if attrs["toolcell.run.id"].AsString() != res.Audit.ID || attrs["toolcell.policy.hash"].AsString() != res.Audit.Policy.Hash ||
		attrs["toolcell.exit.reason"].AsString() != "exited" || attrs["toolcell.exit.code"].AsInt64() != 4 ||
		attrs["toolcell.denials"].AsInt64() == 0 || attrs["toolcell.network.refused"].AsInt64() == 0 {
		t.Errorf("attributes %v", attrs)
	}
	events := map[string]int{}
	for _, e := range s.Events {
		events[e.Name]++
	}
	if events["toolcell.denial"] == 0 || events["toolcell.network.refused"] == 0 {
		t.Errorf("events %v", events)
	}
	if s.Status.Code != codes.Error || !s.StartTime.Equal(res.Audit.StartedAt) || !s.EndTime.Equal(res.Audit.EndedAt) {
		t.Errorf("status %+v, times %v-%v", s.Status, s.StartTime, s.EndTime)
	}
	if runs[1].Status.Code != codes.Error {
		t.Errorf("setup failure's status %+v", runs[1].Status)
	}
}

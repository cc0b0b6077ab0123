package otelaudit_test

import (
	"context"

	"go.opentelemetry.io/otel"

	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/otelaudit"
	"github.com/toolcell/toolcell/sandbox"
)

// Each run becomes a span under the agent's current span.
func Example() {
	r := &sandbox.Runner{Audit: otelaudit.New(otel.Tracer("toolcell"))}
	ctx := context.Background() // the agent step's context, carrying its span
	r.Run(ctx, capability.New().WithBase(), sandbox.Command("uname", "-a"))
}

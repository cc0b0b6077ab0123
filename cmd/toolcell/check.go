package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/toolcell/toolcell/sandbox"
)

// cmdCheck reports which mechanisms this host has; it exits 1 when a
// mechanism a default run needs is missing.
func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("check", "", stderr)
	deep := fs.Bool("deep", false, "also run a sandbox and verify the protections from inside")
	if err := fs.Parse(args); err != nil {
		return parseExit(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep := sandbox.CheckHost(ctx, *deep)
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MECHANISM\tSTATUS\tDETAIL")
	for _, m := range rep.Mechanisms {
		st := "ok"
		switch {
		case !m.OK && m.Required:
			st = "MISSING"
		case !m.OK:
			st = "absent (optional)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", m.Name, st, m.Detail)
	}
	tw.Flush()
	if !rep.OK() {
		fmt.Fprintln(stderr, "toolcell: this host lacks a mechanism a default run needs")
		return 1
	}
	return 0
}

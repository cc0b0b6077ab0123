package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/toolcell/toolcell/sandbox"
)

// cmdCheck reports which mechanisms this host has, and with --deep what
// the self-test found; it exits 1 when a mechanism a default run needs is
// missing or a protection failed.
func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("check", "", stderr)
	deep := fs.Bool("deep", false, "also run a sandbox and verify the protections from inside (sandbox.SelfTest)")
	if err := parseFlags(fs, args); err != nil {
		return parseExit(err)
	}
	rep := sandbox.CheckHost()
	if *deep {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rep.Mechanisms = append(rep.Mechanisms, selfTestRows(sandbox.SelfTest(ctx))...)
	}
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

// selfTestRows are the self-test's findings as rows of the report: one per
// protection (a skipped one is not required), and one for a self-test that
// could not run at all.
func selfTestRows(ps []sandbox.Protection, err error) []sandbox.Mechanism {
	var rows []sandbox.Mechanism
	if err != nil && !errors.Is(err, sandbox.ErrSelfTest) {
		rows = append(rows, sandbox.Mechanism{Name: "sandbox self-test", Required: true, Detail: err.Error()})
	}
	for _, p := range ps {
		d := p.Detail
		if p.Skipped {
			d = "not checked: " + d
		}
		rows = append(rows, sandbox.Mechanism{Name: "self-test: " + p.Name, OK: p.OK, Required: !p.Skipped, Detail: d})
	}
	return rows
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/mcptool"
	"github.com/toolcell/toolcell/sandbox"
)

// cmdMCP serves sandboxed tools to MCP clients: over stdio (the client
// starts toolcell mcp), or over streamable HTTP on --http ADDR.
func cmdMCP(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("mcp", "", stderr)
	o := policyFlags(fs)
	tools := fs.String("tool", "shell,python", "comma-separated tools to serve: shell ({command}, /bin/sh -c), python ({code}, python3 -c)")
	httpAddr := fs.String("http", "", "serve streamable HTTP on ADDR (host:port) instead of stdio")
	fs.StringVar(&o.audit, "audit", "", "append each run's record as a JSON line to FILE; - means stderr")
	auditDir := fs.String("audit-dir", "", "write each run's record to DIR/<id>.json")
	compact := fs.Bool("audit-compact", false, "write compact records (Record.Compact)")
	maxConc := fs.Int("max-concurrent", 0, "sandboxes at once; further calls wait (0: no bound)")
	if err := parseFlags(fs, args); err != nil {
		return parseExit(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "toolcell mcp: unexpected arguments %q\n", fs.Args())
		return 2
	}
	set, err := o.build()
	if err != nil {
		fmt.Fprintf(stderr, "toolcell: %v\n", oneLine(err))
		return exitSetup
	}
	r := &sandbox.Runner{MaxConcurrent: *maxConc}
	sinks := multiSink{}
	switch o.audit {
	case "":
	case "-":
		sinks = append(sinks, sandbox.NewJSONLAudit(stderr))
	default:
		j, err := sandbox.OpenJSONLAudit(o.audit)
		if err != nil {
			fmt.Fprintf(stderr, "toolcell: %v\n", err)
			return exitSetup
		}
		defer j.Close()
		sinks = append(sinks, j)
	}
	if *auditDir != "" {
		if err := os.MkdirAll(*auditDir, 0o700); err != nil {
			fmt.Fprintf(stderr, "toolcell: audit dir: %v\n", err)
			return exitSetup
		}
		sinks = append(sinks, dirSink(*auditDir))
	}
	if len(sinks) > 0 {
		r.Audit = sinks
		if *compact {
			r.Audit = compactSink{sinks}
		}
	}
	server := mcp.NewServer(&mcp.Implementation{Name: "toolcell", Version: "v1"}, nil)
	for _, name := range strings.Split(*tools, ",") {
		switch strings.TrimSpace(name) {
		case "shell":
			t := mcptool.Shell(set)
			t.Runner = r
			mcptool.Add(server, t)
		case "python":
			t := mcptool.Python(set)
			t.Runner = r
			mcptool.Add(server, t)
		default:
			fmt.Fprintf(stderr, "toolcell mcp: --tool %q: want shell or python\n", name)
			return 2
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *httpAddr != "" {
		ln, err := net.Listen("tcp", *httpAddr)
		if err != nil {
			fmt.Fprintf(stderr, "toolcell mcp: %v\n", err)
			return exitSetup
		}
		fmt.Fprintf(stderr, "toolcell mcp: serving streamable HTTP on http://%s/\n", ln.Addr())
		srv := &http.Server{Handler: mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)}
		go func() { <-ctx.Done(); srv.Close() }()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(stderr, "toolcell mcp: %v\n", err)
			return 1
		}
		return 0
	}
	t := &mcp.IOTransport{Reader: io.NopCloser(stdin), Writer: nopWriteCloser{stdout}}
	if err := server.Run(ctx, t); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, io.EOF) {
		fmt.Fprintf(stderr, "toolcell mcp: %v\n", err)
		return 1
	}
	return 0
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// multiSink hands a record to each of its sinks.
type multiSink []sandbox.AuditSink

func (m multiSink) Record(ctx context.Context, rec *audit.Record) error {
	var errs []error
	for _, s := range m {
		errs = append(errs, s.Record(ctx, rec))
	}
	return errors.Join(errs...)
}

// compactSink hands on the compact form of each record.
type compactSink struct{ sandbox.AuditSink }

func (c compactSink) Record(ctx context.Context, rec *audit.Record) error {
	return c.AuditSink.Record(ctx, rec.Compact())
}

// dirSink writes each record to DIR/<id>.json.
type dirSink string

func (d dirSink) Record(_ context.Context, rec *audit.Record) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(string(d), rec.ID+".json"), append(b, '\n'), 0o600)
}

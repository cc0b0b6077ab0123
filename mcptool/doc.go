// Package mcptool serves sandboxed tools over the Model Context Protocol:
// it registers tools on an *mcp.Server of the official Go SDK
// (github.com/modelcontextprotocol/go-sdk), each call of which runs in its
// own toolcell sandbox.
//
//	server := mcp.NewServer(&mcp.Implementation{Name: "tools", Version: "v1"}, nil)
//	policy := capability.New().WithBase().WithTimeout(30 * time.Second)
//	mcptool.Add(server, mcptool.Shell(policy))
//	mcptool.Add(server, mcptool.Python(policy))
//	server.Run(ctx, &mcp.StdioTransport{})
//
// What each call gets, whatever the policy says otherwise:
//
//   - its own sandbox, with a fresh temporary workdir at /workspace when the
//     policy names no workdir (capability.TempWorkdir);
//   - output capped at a client-safe size (Tool.MaxResult, default 1 MiB
//     per stream) with output_overflow truncate: the tool runs on, the
//     result says what was cut (a client whose buffer a 20 MiB answer
//     overflows loses its connection);
//   - the client's cancellation ends the run (exit reason canceled);
//   - progress notifications, when the client asked for them, every second
//     after the first: the time elapsed and the bytes of output so far;
//   - the result as text (stdout, stderr and a one-line verdict, with
//     terminal escapes and invisible Unicode removed: tool output is a
//     prompt-injection path into the model) and as structured content
//     (Output, with its schema): exit code, reason, stdout, stderr, what
//     was truncated, and a summary of the audit record. The whole record
//     goes to Runner.Audit.
//
// A run that cannot be set up (a bad policy, a missing program) is a tool
// error (IsError) with the reason, not a protocol error.
package mcptool

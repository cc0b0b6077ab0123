package mcptool_test

import (
	"context"
	"log"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/mcptool"
)

// An MCP server with two sandboxed tools, over stdio.
func Example() {
	policy := capability.New().WithBase().WithMemory(256 << 20).WithTimeout(30 * time.Second)
	server := mcp.NewServer(&mcp.Implementation{Name: "sandboxed-tools", Version: "v1"}, nil)
	mcptool.Add(server, mcptool.Shell(policy))
	mcptool.Add(server, mcptool.Python(policy))
	if err := server.Run(context.Background(), &mcp.StdioTransport{}); err != nil {
		log.Fatal(err)
	}
}

// A tool of your own: typed input, its own command line.
func ExampleAdd() {
	type grepInput struct {
		Pattern string `json:"pattern" jsonschema:"a regular expression"`
	}
	server := mcp.NewServer(&mcp.Implementation{Name: "docs", Version: "v1"}, nil)
	mcptool.Add(server, mcptool.Tool[grepInput]{
		Name:        "grep_docs",
		Description: "Search the documentation for a pattern.",
		Policy:      capability.New().WithBase().WithReadDirs("/srv/docs"),
		Args: func(in grepInput) ([]string, error) {
			return []string{"grep", "-rn", "--", in.Pattern, "/srv/docs"}, nil
		},
	})
}

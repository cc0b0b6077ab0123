package anthropicloop_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/toolcell/toolcell/agenttool"
	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/examples/agentloop/anthropicloop"
)

// A fake Messages API: the first request gets a tool_use of the shell tool,
// the second must carry its tool_result (the sandbox's output and verdict),
// and gets the answer.
func TestLoop(t *testing.T) {
	var seen string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Messages []struct {
				Role    string            `json:"role"`
				Content []json.RawMessage `json:"content"`
			} `json:"messages"`
			Tools []struct {
				Name        string          `json:"name"`
				InputSchema json.RawMessage `json:"input_schema"`
			} `json:"tools"`
		}
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &req); err != nil || r.URL.Path != "/v1/messages" || len(req.Tools) != 1 || req.Tools[0].Name != "shell" {
			t.Errorf("request %s %s: %v", r.URL.Path, b, err)
		}
		w.Header().Set("Content-Type", "application/json")
		if len(req.Messages) == 1 {
			io.WriteString(w, `{"id":"msg_1","type":"message","role":"assistant","model":"claude-test","stop_reason":"tool_use",
				"content":[{"type":"tool_use","id":"toolu_1","name":"shell","input":{"input":"echo sandboxed; id -u"}}],
				"usage":{"input_tokens":1,"output_tokens":1}}`)
			return
		}
		last := req.Messages[len(req.Messages)-1]
		var result struct {
			Type      string `json:"type"`
			ToolUseID string `json:"tool_use_id"`
			Content   any    `json:"content"`
		}
		json.Unmarshal(last.Content[0], &result)
		c, _ := json.Marshal(result.Content)
		seen = string(c)
		if last.Role != "user" || result.Type != "tool_result" || result.ToolUseID != "toolu_1" {
			t.Errorf("second request's last message: %s", b)
		}
		io.WriteString(w, `{"id":"msg_2","type":"message","role":"assistant","model":"claude-test","stop_reason":"end_turn",
			"content":[{"type":"text","text":"the tool ran as uid 1000"}],"usage":{"input_tokens":1,"output_tokens":1}}`)
	}))
	defer srv.Close()
	client := anthropic.NewClient(option.WithBaseURL(srv.URL), option.WithAPIKey("test"), option.WithMaxRetries(0))
	tool := agenttool.New("shell", "Run a shell command in a sandbox.", capability.New().WithBase(),
		func(in string) ([]string, error) { return []string{"/bin/sh", "-c", in}, nil })
	answer, err := anthropicloop.Run(context.Background(), client, "claude-test", tool, "Who are you in the sandbox?")
	if err != nil || answer != "the tool ran as uid 1000" {
		t.Fatalf("answer %q, err %v", answer, err)
	}
	if !strings.Contains(seen, `sandboxed\n1000\n[exit 0]`) {
		t.Errorf("tool result the model got: %s", seen)
	}
}

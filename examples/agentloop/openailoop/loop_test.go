package openailoop_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/toolcell/toolcell/agenttool"
	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/examples/agentloop/openailoop"
)

// A fake Chat Completions API: the first request gets a call of the shell
// function, the second must carry the tool message (the sandbox's output
// and verdict), and gets the answer.
func TestLoop(t *testing.T) {
	var seen string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Messages []struct {
				Role       string `json:"role"`
				Content    any    `json:"content"`
				ToolCallID string `json:"tool_call_id"`
			} `json:"messages"`
			Tools []struct {
				Function struct {
					Name string `json:"name"`
				} `json:"function"`
			} `json:"tools"`
		}
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &req); err != nil || r.URL.Path != "/chat/completions" || len(req.Tools) != 1 || req.Tools[0].Function.Name != "shell" {
			t.Errorf("request %s %s: %v", r.URL.Path, b, err)
		}
		w.Header().Set("Content-Type", "application/json")
		if len(req.Messages) == 1 {
			io.WriteString(w, `{"id":"c1","object":"chat.completion","created":1,"model":"gpt-test","choices":[{"index":0,"finish_reason":"tool_calls",
				"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",
				"function":{"name":"shell","arguments":"{\"input\":\"echo sandboxed; cat /etc/shadow\"}"}}]}}]}`)
			return
		}
		last := req.Messages[len(req.Messages)-1]
		c, _ := json.Marshal(last.Content)
		seen = string(c)
		if last.Role != "tool" || last.ToolCallID != "call_1" {
			t.Errorf("second request's last message: %s", b)
		}
		io.WriteString(w, `{"id":"c2","object":"chat.completion","created":2,"model":"gpt-test","choices":[{"index":0,"finish_reason":"stop",
			"message":{"role":"assistant","content":"no shadow file in there"}}]}`)
	}))
	defer srv.Close()
	client := openai.NewClient(option.WithBaseURL(srv.URL), option.WithAPIKey("test"), option.WithMaxRetries(0))
	tool := agenttool.New("shell", "Run a shell command in a sandbox.", capability.New().WithBase(),
		func(in string) ([]string, error) { return []string{"/bin/sh", "-c", in}, nil })
	answer, err := openailoop.Run(context.Background(), client, "gpt-test", tool, "Read the shadow file.")
	if err != nil || answer != "no shadow file in there" {
		t.Fatalf("answer %q, err %v", answer, err)
	}
	if !strings.Contains(seen, `sandboxed\n[stderr]\ncat: /etc/shadow: No such file or directory\n[exit 1]`) {
		t.Errorf("tool result the model got: %s", seen)
	}
}

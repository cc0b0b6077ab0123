// Package anthropicloop is an agent loop with Anthropic tool use: the
// model may call a sandboxed shell tool until it answers in text.
package anthropicloop

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/anthropics/anthropic-sdk-go/v2"

	"github.com/toolcell/toolcell/agenttool"
)

// Run asks the model prompt with tool available and runs the tool calls
// it makes (each in its own sandbox) until it answers; it returns the
// answer.
func Run(ctx context.Context, client anthropic.Client, model anthropic.Model, tool *agenttool.Tool, prompt string) (string, error) {
	var schema struct {
		Properties any      `json:"properties"`
		Required   []string `json:"required"`
	}
	if err := json.Unmarshal(tool.InputSchema(), &schema); err != nil {
		return "", err
	}
	tools := []anthropic.ToolUnionParam{{OfTool: &anthropic.ToolParam{
		Name:        tool.Name(),
		Description: anthropic.String(tool.Description()),
		InputSchema: anthropic.ToolInputSchemaParam{Properties: schema.Properties, Required: schema.Required},
	}}}
	messages := []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(prompt))}
	for turn := 0; turn < 10; turn++ {
		msg, err := client.Messages.New(ctx, anthropic.MessageNewParams{
			Model: model, MaxTokens: 1024, Messages: messages, Tools: tools,
		})
		if err != nil {
			return "", err
		}
		messages = append(messages, msg.ToParam())
		var results []anthropic.ContentBlockParamUnion
		answer := ""
		for _, block := range msg.Content {
			switch block.Type {
			case "text":
				answer += block.AsText().Text
			case "tool_use":
				use := block.AsToolUse()
				out, err := tool.CallJSON(ctx, use.Input)
				if err != nil { // nothing ran: tell the model why
					results = append(results, anthropic.NewToolResultBlock(use.ID, err.Error(), true))
					continue
				}
				results = append(results, anthropic.NewToolResultBlock(use.ID, out, false))
			}
		}
		if len(results) == 0 {
			return answer, nil
		}
		messages = append(messages, anthropic.NewUserMessage(results...))
	}
	return "", fmt.Errorf("anthropicloop: no answer after 10 turns")
}

// Package openailoop is an agent loop with OpenAI function calling (Chat
// Completions): the model may call a sandboxed shell tool until it
// answers in text.
package openailoop

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/openai/openai-go/v3"

	"github.com/toolcell/toolcell/agenttool"
)

// Run asks the model prompt with tool available and runs the tool calls
// it makes (each in its own sandbox) until it answers; it returns the
// answer.
func Run(ctx context.Context, client openai.Client, model string, tool *agenttool.Tool, prompt string) (string, error) {
	var params openai.FunctionParameters
	if err := json.Unmarshal(tool.InputSchema(), &params); err != nil {
		return "", err
	}
	tools := []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
		Name: tool.Name(), Description: openai.String(tool.Description()), Parameters: params,
	})}
	messages := []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)}
	for turn := 0; turn < 10; turn++ {
		resp, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: model, Messages: messages, Tools: tools})
		if err != nil {
			return "", err
		}
		if len(resp.Choices) == 0 {
			return "", fmt.Errorf("openailoop: no choice in the response")
		}
		msg := resp.Choices[0].Message
		if len(msg.ToolCalls) == 0 {
			return msg.Content, nil
		}
		messages = append(messages, msg.ToParam())
		for _, call := range msg.ToolCalls {
			fn := call.AsFunction()
			out, err := tool.CallJSON(ctx, json.RawMessage(fn.Function.Arguments))
			if err != nil { // nothing ran: tell the model why
				out = "error: " + err.Error()
			}
			messages = append(messages, openai.ToolMessage(out, fn.ID))
		}
	}
	return "", fmt.Errorf("openailoop: no answer after 10 turns")
}

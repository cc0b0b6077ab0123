// Module agentloop holds runnable agent loops that hand a model a
// sandboxed tool (package agenttool) through the vendors' official Go
// SDKs. It is a module of its own so that the core module's users never
// download an SDK they do not use. Each loop is tested end to end against
// a fake model server (httptest) that asks for a tool call and checks the
// tool result it gets back.
package agentloop

// The official TypeScript MCP client against `toolcell mcp`.
// Usage: node client.mjs COMMAND [ARGS...]   (stdio: the server to start)
//        node client.mjs --http URL          (streamable HTTP)
// Prints one line per check, "ok NAME" or "FAIL NAME: why", and exits 1
// if any failed. cmd/toolcell TestMCPTypeScriptClient runs it.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [command, ...args] = process.argv.slice(2);
const transport = command === "--http"
  ? new StreamableHTTPClientTransport(new URL(args[0]))
  : new StdioClientTransport({ command, args, env: process.env, stderr: "inherit" });
const client = new Client({ name: "toolcell-ts-test", version: "0.0.0" });
let failed = false;
function check(name, ok, why) {
  console.log(ok ? `ok ${name}` : `FAIL ${name}: ${why}`);
  if (!ok) failed = true;
}
const text = (res) => res.content.filter((c) => c.type === "text").map((c) => c.text).join("");
const call = (name, args, opts) => client.callTool({ name, arguments: args }, undefined, opts);

await client.connect(transport);

const { tools } = await client.listTools();
const names = tools.map((t) => t.name).sort().join(",");
check("list", names === "python,shell" && tools.every((t) => t.inputSchema && t.outputSchema), names);

let res = await call("shell", { command: "echo hello; pwd" });
check("shell", text(res) === "hello\n/workspace\n[exit 0]" && res.structuredContent.exit_code === 0, JSON.stringify(res));

res = await call("python", { code: "print(6 * 7)" });
check("python", text(res) === "42\n[exit 0]" && res.structuredContent.audit.policy_hash.startsWith("sha256:"), JSON.stringify(res));

res = await call("python", { code: "import socket\ntry:\n  socket.socket()\nexcept OSError as e:\n  print(e.errno)" });
check("denied", text(res).includes("denied: socket") && res.structuredContent.audit.denials > 0, text(res));

res = await call("python", { code: "x = bytearray(1 << 30)" });
check("oom", res.structuredContent.reason === "oom" && res.isError === true, text(res));

res = await call("shell", { command: "head -c 20971520 /dev/zero | tr '\\0' x; echo done >&2" });
check("20 MiB", res.structuredContent.stdout.length === 1 << 20 && res.structuredContent.stdout_truncated &&
  res.structuredContent.stderr === "done\n", `${res.structuredContent.stdout.length} bytes`);

const many = await Promise.all([...Array(10).keys()].map((i) =>
  call("shell", { command: `echo ${i} > f; sleep 0.3; cat f` })));
check("10 concurrent", many.every((r, i) => text(r) === `${i}\n[exit 0]`), many.map(text).join("|"));

const ac = new AbortController();
setTimeout(() => ac.abort(), 500);
const t0 = Date.now();
try {
  await call("shell", { command: "sleep 30" }, { signal: ac.signal });
  check("cancel", false, "the call returned");
} catch (e) {
  check("cancel", Date.now() - t0 < 10000, `after ${Date.now() - t0} ms: ${e}`);
}
res = await call("shell", { command: "echo after" });
check("after cancel", text(res) === "after\n[exit 0]", text(res));

res = await call("shell", { command: "sleep 30" }, { timeout: 60000 }).catch((e) => e);
check("timeout", res.structuredContent && res.structuredContent.reason === "timeout", JSON.stringify(res).slice(0, 300));

await client.close();
process.exit(failed ? 1 : 0);

// The official TypeScript SDK client against a streamable HTTP MCP server:
// lists the tools, calls echo, prints what it saw as JSON.
// Usage: node client.mjs URL [header=value ...]
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, ...hdrs] = process.argv.slice(2);
const headers = Object.fromEntries(hdrs.map((h) => h.split(/=(.*)/s).slice(0, 2)));
const client = new Client({ name: "portcullis-test-client", version: "1.0.0" });
await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } }));
const tools = await client.listTools();
const echo = await client.callTool({ name: "echo", arguments: { text: "hello from typescript" } });
console.log(JSON.stringify({
  server: client.getServerVersion(),
  tools: tools.tools.map((t) => t.name).sort(),
  echo,
}));
await client.close();

// A tiny MCP server over stdio (newline-delimited JSON-RPC, no SDK), for the gateway's tests
// of stdio upstreams: its tools report its pid, die in the middle of a call, hang, count the
// cancellations they get, and start a grandchild that outlives the server.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";

let cancelled = 0;
const send = (message) => process.stdout.write(JSON.stringify({ jsonrpc: "2.0", ...message }) + "\n");
const text = (value) => ({ content: [{ type: "text", text: String(value) }] });
const tool = (name, description, properties = {}) => ({
  name,
  description,
  inputSchema: { type: "object", properties },
});
const tools = [
  tool("echo", "Answers with its text.", { text: { type: "string" } }),
  tool("pid", "Answers with the server's process id."),
  tool("die", "Exits without answering."),
  tool("hang", "Never answers."),
  tool("cancelled", "How many notifications/cancelled the server got."),
  tool("spawn_grandchild", "Starts `sleep 300` (same process group) and answers with its pid."),
  tool("argv", "Answers with the server's arguments, space-separated."),
];

function call(id, name, args) {
  switch (name) {
    case "echo":
      return send({ id, result: text(args.text ?? "") });
    case "pid":
      return send({ id, result: text(process.pid) });
    case "die":
      console.error("tiny server: dying in the middle of a call, as asked");
      return process.exit(3);
    case "hang":
      return;
    case "cancelled":
      return send({ id, result: text(cancelled) });
    case "spawn_grandchild": {
      const child = spawn("sleep", ["300"], { stdio: "ignore" });
      return send({ id, result: text(child.pid) });
    }
    case "argv":
      return send({ id, result: text(process.argv.slice(2).join(" ")) });
    default:
      return send({ id, error: { code: -32602, message: `unknown tool ${name}` } });
  }
}

createInterface({ input: process.stdin })
  .on("line", (line) => {
    let message;
    try {
      message = JSON.parse(line);
    } catch {
      return;
    }
    const { id, method, params = {} } = message;
    if (method === "initialize") {
      send({
        id,
        result: {
          protocolVersion: "2025-06-18",
          capabilities: { tools: {} },
          serverInfo: { name: "tiny", version: "1.0.0" },
        },
      });
    } else if (method === "notifications/cancelled") {
      cancelled += 1;
    } else if (method === "tools/list") {
      send({ id, result: { tools } });
    } else if (method === "tools/call") {
      call(id, params.name, params.arguments ?? {});
    } else if (method === "ping") {
      send({ id, result: {} });
    } else if (id !== undefined) {
      send({ id, error: { code: -32601, message: `method not found: ${method}` } });
    }
  })
  // stdin closed: the gateway is done with this server.
  .on("close", () => process.exit(0));

console.error(`tiny server ${process.pid} started`);

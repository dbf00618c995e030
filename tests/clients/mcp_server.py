#!/usr/bin/env python3
"""A real MCP server (official Python SDK, mcp 2.x) over Streamable HTTP.

Usage: mcp_server.py HOST PORT LOGFILE

Serves plaintext HTTP at path /mcp, stateful sessions (Mcp-Session-Id), the older
HTTP+SSE transport at /sse (messages POSTed to /messages/?session_id=…), and
appends one JSON line per HTTP request it receives to LOGFILE:
  {"method", "path", "authorization", "session", "rpc", "tool", "host"}
and, once the response has started, one more line
  {"response": true, "method", "rpc", "status", "content_type"}
Prints "ready" once it accepts connections. Runs until killed.
"""

import asyncio
import json
import socket
import sys

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings

mcp = MCPServer("tollgate-test-mcp")


@mcp.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@mcp.tool()
def echo(text: str) -> str:
    """Echo the text back."""
    return text


@mcp.tool()
def delete_everything() -> str:
    """A dangerous tool that a policy is expected to deny."""
    return "everything deleted"


@mcp.tool()
def fail() -> str:
    """Always fails: the SDK turns the exception into an isError result."""
    raise RuntimeError("this tool always fails")


@mcp.tool()
async def slow_count(n: int, ctx: Context) -> str:
    """Send n progress notifications ~50 ms apart, then answer."""
    for i in range(1, n + 1):
        await ctx.report_progress(i, n, f"step {i}")
        await asyncio.sleep(0.05)
    return f"counted to {n}"


@mcp.resource("notes://today")
def notes_today() -> str:
    """Today's notes."""
    return "Today: test the Tollgate MCP proxy."


@mcp.prompt()
def greet(name: str) -> str:
    """Greet someone."""
    return f"Hello, {name}! Welcome to Tollgate."


class LogMiddleware:
    """ASGI middleware: logs every HTTP request (and its response start)."""

    def __init__(self, app, logfile):
        self.app = app
        self.log = open(logfile, "a", buffering=1)

    def _write(self, obj):
        self.log.write(json.dumps(obj) + "\n")
        self.log.flush()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        # Read the whole body so we can see the JSON-RPC method, then replay it.
        chunks = []
        more = True
        while more:
            msg = await receive()
            if msg["type"] != "http.request":
                break
            chunks.append(msg.get("body", b""))
            more = msg.get("more_body", False)
        body = b"".join(chunks)
        rpc = tool = None
        if body:
            try:
                doc = json.loads(body)
                first = doc[0] if isinstance(doc, list) and doc else doc
                if isinstance(first, dict):
                    rpc = first.get("method")
                    if rpc == "tools/call":
                        tool = (first.get("params") or {}).get("name")
            except ValueError:
                pass
        self._write(
            {
                "method": scope["method"],
                "path": scope["path"],
                "authorization": headers.get("authorization"),
                "session": headers.get("mcp-session-id"),
                "rpc": rpc,
                "tool": tool,
                "host": headers.get("host"),
            }
        )

        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def send_logged(message):
            if message["type"] == "http.response.start":
                rh = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in message.get("headers", [])}
                self._write(
                    {
                        "response": True,
                        "method": scope["method"],
                        "rpc": rpc,
                        "tool": tool,
                        "status": message["status"],
                        "content_type": rh.get("content-type"),
                        "session": rh.get("mcp-session-id"),
                    }
                )
            await send(message)

        await self.app(scope, replay, send_logged)


async def main():
    host, port, logfile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    # The gateway forwards requests with the upstream's own Host header
    # (e.g. mcp.example.test), so the SDK's localhost DNS-rebinding check
    # (auto-enabled for host 127.0.0.1) must be off.
    app = mcp.streamable_http_app(
        streamable_http_path="/mcp",
        host=host,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    # The older HTTP+SSE transport (2024-11-05) beside it: GET /sse, POST /messages/?session_id=.
    sse = mcp.sse_app(
        host=host,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )

    async def both(scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == "/sse" or path.startswith("/messages/")):
            return await sse(scope, receive, send)
        return await app(scope, receive, send)

    config = uvicorn.Config(LogMiddleware(both, logfile), host=host, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task
            return
        await asyncio.sleep(0.02)
    # Double-check that the socket accepts.
    with socket.create_connection((host, port), timeout=5):
        pass
    print("ready", flush=True)
    await task


if __name__ == "__main__":
    asyncio.run(main())

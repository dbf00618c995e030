#!/usr/bin/env python3
"""An MCP client built only on the official Python SDK (mcp 2.x), as an agent would use it.

Usage: mcp_client.py URL MODE [ARGS...]
  (a URL whose path ends in /sse: the older HTTP+SSE transport; else Streamable HTTP)
  list                 -> {"tools": [...], "session": id}
  call TOOL JSON_ARGS  -> {"is_error", "content", "structured"} or {"error": {"code", "message"}}
  stream N             -> {"progress": [...], "content": [...]}
  resource             -> {"text": ...}
  prompt NAME          -> {"messages": [...]}
  resume               -> {"session": id, "first": [...], "second": [...]}
  all                  -> {"tools", "add", "resource", "prompt"}

Sends "Authorization: Bearer client-own-token" (the client's own credential).
TLS: the SDK's default httpx2 client trusts SSL_CERT_FILE / SSL_CERT_DIR from the
environment (trust_env=True); nothing here configures certificates.
Prints one JSON line. On an unexpected exception prints {"exception": repr}, exits 1.
"""

import asyncio
import json
import sys
from urllib.parse import urlparse

from mcp.client.session import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

CLIENT_HEADERS = {"Authorization": "Bearer client-own-token"}


def texts(blocks):
    return [b.text for b in blocks if getattr(b, "type", None) == "text"]


def tool_result(res):
    return {"is_error": bool(res.is_error), "content": texts(res.content), "structured": res.structured_content}


async def with_sid(url, fn, terminate_on_close=True):
    """Run fn(session) and return (result, session id seen in the server's responses)."""
    seen = {}

    async def on_response(response):
        sid = response.headers.get("mcp-session-id")
        if sid:
            seen["sid"] = sid

    if urlparse(url).path.endswith("/sse"):
        # The older HTTP+SSE transport: a GET stream, messages POSTed to the endpoint it names.
        def on_session(sid):
            seen["sid"] = sid

        async with sse_client(url, headers=dict(CLIENT_HEADERS), on_session_created=on_session) as (r, w):
            async with ClientSession(r, w) as session:
                await session.initialize()
                out = await fn(session)
        return out, seen.get("sid")

    headers = dict(CLIENT_HEADERS)
    async with create_mcp_http_client(headers=headers) as http:
        http.event_hooks["response"].append(on_response)
        async with streamable_http_client(url, http_client=http, terminate_on_close=terminate_on_close) as (r, w):
            async with ClientSession(r, w) as session:
                await session.initialize()
                out = await fn(session)
    return out, seen.get("sid")


async def run(url, mode, args):
    if mode == "list":

        async def f(s):
            return [t.name for t in (await s.list_tools()).tools]

        tools, sid = await with_sid(url, f)
        return {"tools": tools, "session": sid}

    if mode == "call":
        name = args[0]
        arguments = json.loads(args[1]) if len(args) > 1 else {}

        async def f(s):
            try:
                return tool_result(await s.call_tool(name, arguments))
            except MCPError as e:
                return {"error": {"code": e.code, "message": e.message}}

        out, _ = await with_sid(url, f)
        return out

    if mode == "stream":
        n = int(args[0])
        progress = []

        async def on_progress(p, total, message):
            progress.append(p)

        async def f(s):
            res = await s.call_tool("slow_count", {"n": n}, progress_callback=on_progress)
            return {"progress": progress, "content": texts(res.content), "is_error": bool(res.is_error)}

        out, _ = await with_sid(url, f)
        return out

    if mode == "resource":

        async def f(s):
            res = await s.read_resource("notes://today")
            return {"text": res.contents[0].text}

        out, _ = await with_sid(url, f)
        return out

    if mode == "prompt":
        pname = args[0] if args else "greet"

        async def f(s):
            res = await s.get_prompt(pname, {"name": "Ada"})
            return {"messages": [m.content.text for m in res.messages if getattr(m.content, "type", None) == "text"]}

        out, _ = await with_sid(url, f)
        return out

    if mode == "resume":

        async def first(s):
            return texts((await s.call_tool("add", {"a": 1, "b": 2})).content)

        # terminate_on_close=False: no DELETE, the server keeps the session.
        first_out, sid = await with_sid(url, first, terminate_on_close=False)
        if not sid:
            raise RuntimeError("server handed out no Mcp-Session-Id")
        second_out = await resume_call(url, sid)
        return {"session": sid, "first": first_out, "second": second_out}

    if mode == "all":

        async def f(s):
            tools = [t.name for t in (await s.list_tools()).tools]
            add = texts((await s.call_tool("add", {"a": 1, "b": 2})).content)
            res = await s.read_resource("notes://today")
            pr = await s.get_prompt("greet", {"name": "Ada"})
            return {
                "tools": tools,
                "add": add,
                "resource": res.contents[0].text,
                "prompt": [m.content.text for m in pr.messages if getattr(m.content, "type", None) == "text"],
            }

        out, _ = await with_sid(url, f)
        return out

    raise SystemExit(f"unknown mode {mode}")


async def resume_call(url, sid):
    """Second client, same session id, no initialize.

    ClientSession cannot adopt an existing session id (the transport only learns
    it from a response), so this request is a plain POST with the SDK's httpx2
    client, carrying the headers the Streamable HTTP transport would send.
    """
    from mcp_types.version import LATEST_HANDSHAKE_VERSION

    headers = dict(CLIENT_HEADERS)
    headers.update(
        {
            "Mcp-Session-Id": sid,
            "MCP-Protocol-Version": LATEST_HANDSHAKE_VERSION,
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
        }
    )
    msg = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 2, "b": 3}}}
    async with create_mcp_http_client() as http:
        resp = await http.post(url, headers=headers, json=msg)
        ctype = resp.headers.get("content-type", "")
        if resp.status_code != 200:
            raise RuntimeError(f"resume POST -> {resp.status_code}: {resp.text[:300]}")
        if ctype.startswith("application/json"):
            doc = resp.json()
        else:  # SSE: take the last data: event carrying our id
            doc = None
            for line in resp.text.splitlines():
                if line.startswith("data:"):
                    cand = json.loads(line[5:].strip())
                    if cand.get("id") == 2:
                        doc = cand
        if doc is None or "result" not in doc:
            raise RuntimeError(f"resume: no result in {resp.text[:300]}")
        return [c["text"] for c in doc["result"].get("content", []) if c.get("type") == "text"]


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    url, mode, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    try:
        out = asyncio.run(run(url, mode, args))
    except BaseException as e:  # noqa: BLE001 - report everything as one JSON line
        if isinstance(e, SystemExit):
            raise
        # unwrap anyio/TaskGroup exception groups for a readable message
        while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
            e = e.exceptions[0]
        print(json.dumps({"exception": repr(e)}), flush=True)
        sys.exit(1)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()

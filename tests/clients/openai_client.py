#!/usr/bin/env python3
"""The official OpenAI Python SDK, used exactly as an application would: default base URL
(https://api.openai.com/v1), a dummy key, and the node CA trusted through SSL_CERT_FILE (the
only change Tollgate asks of a workload). Prints one JSON line.

    openai_client.py chat MODEL              one chat completion
    openai_client.py stream MODEL GATE_FILE  a streamed one; creates GATE_FILE on the first chunk
    openai_client.py stream_usage MODEL      a stream with stream_options.include_usage; prints usage
    openai_client.py error MODEL             expects an API error; prints its status and body
    openai_client.py tools MODEL             a tool loop: the model calls get_weather, the client
                                             answers with the result, the model replies
    openai_client.py tools_stream MODEL      the same loop, both turns streamed; tool-call deltas
                                             are put together by index, as applications do
"""
import json
import pathlib
import sys

import openai

mode, model = sys.argv[1], sys.argv[2]
client = openai.OpenAI(api_key="sk-client-dummy-key", max_retries=0, timeout=30)
messages = [{"role": "user", "content": "say hello"}]

if mode == "chat":
    r = client.chat.completions.create(model=model, messages=messages)
    print(json.dumps({"content": r.choices[0].message.content, "model": r.model,
                      "usage": r.usage.model_dump() if r.usage else None}))
elif mode == "stream":
    gate = pathlib.Path(sys.argv[3])
    pieces = []
    for chunk in client.chat.completions.create(model=model, messages=messages, stream=True):
        if not gate.exists():
            gate.touch()  # the fake holds the rest of the stream back until this exists
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content)
    print(json.dumps({"pieces": pieces, "content": "".join(p for p in pieces if p)}))
elif mode == "stream_usage":
    # The client asks for usage itself: it must get the provider's usage chunk.
    usage, pieces = None, []
    stream = client.chat.completions.create(model=model, messages=messages, stream=True,
                                            stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage.model_dump()
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content)
    print(json.dumps({"usage": usage, "content": "".join(p for p in pieces if p)}))
elif mode == "embed":
    r = client.embeddings.create(model=model, input=["first text", "second text"], dimensions=3)
    print(json.dumps({"vectors": [d.embedding for d in r.data], "model": r.model}))
elif mode == "embed_float":
    r = client.embeddings.create(model=model, input="one text", encoding_format="float")
    print(json.dumps({"vectors": [d.embedding for d in r.data], "model": r.model}))
elif mode in ("tools", "tools_stream"):
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]

    def turn():
        """One model turn: (finish_reason, text, [(id, name, arguments)])."""
        if mode == "tools":
            r = client.chat.completions.create(model=model, messages=messages, tools=tools)
            m = r.choices[0].message
            calls = [(c.id, c.function.name, c.function.arguments) for c in (m.tool_calls or [])]
            return r.choices[0].finish_reason, m.content, calls
        finish, text, calls = None, "", {}
        for chunk in client.chat.completions.create(model=model, messages=messages, tools=tools, stream=True):
            if not chunk.choices:
                continue
            c = chunk.choices[0]
            finish = c.finish_reason or finish
            text += c.delta.content or ""
            for d in c.delta.tool_calls or []:
                call = calls.setdefault(d.index, {"id": None, "name": "", "arguments": ""})
                call["id"] = d.id or call["id"]
                if d.function:
                    call["name"] += d.function.name or ""
                    call["arguments"] += d.function.arguments or ""
        return finish, text or None, [(c["id"], c["name"], c["arguments"]) for c in calls.values()]

    finish1, _, calls = turn()
    call_id, name, arguments = calls[0]
    messages.append({"role": "assistant", "content": None, "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]})
    messages.append({"role": "tool", "tool_call_id": call_id, "content": "sunny, 21 C"})
    finish2, answer, _ = turn()
    print(json.dumps({"finish1": finish1, "calls": len(calls), "id": call_id, "name": name,
                      "args": json.loads(arguments), "finish2": finish2, "answer": answer}))
elif mode == "error":
    try:
        client.chat.completions.create(model=model, messages=messages)
        print(json.dumps({"status": None}))
    except openai.APIStatusError as e:
        print(json.dumps({"status": e.status_code, "body": e.body, "type": type(e).__name__}))
else:
    sys.exit(f"unknown mode {mode}")

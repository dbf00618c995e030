#!/usr/bin/env python3
"""The official OpenAI Python SDK, used exactly as an application would: default base URL
(https://api.openai.com/v1), a dummy key, and the node CA trusted through SSL_CERT_FILE (the
only change Tollgate asks of a workload). Prints one JSON line.

    openai_client.py chat MODEL              one chat completion
    openai_client.py stream MODEL GATE_FILE  a streamed one; creates GATE_FILE on the first chunk
    openai_client.py stream_usage MODEL      a stream with stream_options.include_usage; prints usage
    openai_client.py error MODEL             expects an API error; prints its status and body
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
elif mode == "error":
    try:
        client.chat.completions.create(model=model, messages=messages)
        print(json.dumps({"status": None}))
    except openai.APIStatusError as e:
        print(json.dumps({"status": e.status_code, "body": e.body, "type": type(e).__name__}))
else:
    sys.exit(f"unknown mode {mode}")

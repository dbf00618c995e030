#!/usr/bin/env python3
"""The official Anthropic Python SDK, used as an application would: default base URL
(https://api.anthropic.com), a dummy key, the node CA through SSL_CERT_FILE. One JSON line.

    anthropic_client.py message MODEL   one message
    anthropic_client.py stream MODEL    a streamed one, through the SDK's stream helper
"""
import json
import sys

import anthropic

mode, model = sys.argv[1], sys.argv[2]
client = anthropic.Anthropic(api_key="sk-ant-client-dummy", max_retries=0, timeout=30)
messages = [{"role": "user", "content": "say hello"}]

if mode == "message":
    m = client.messages.create(model=model, max_tokens=64, system="Be brief.", messages=messages)
    print(json.dumps({"text": "".join(b.text for b in m.content if b.type == "text"), "stop_reason": m.stop_reason,
                      "usage": {"input_tokens": m.usage.input_tokens, "output_tokens": m.usage.output_tokens},
                      "model": m.model}))
elif mode == "stream":
    with client.messages.stream(model=model, max_tokens=64, messages=messages) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    print(json.dumps({"text": text, "stop_reason": final.stop_reason,
                      "usage": {"input_tokens": final.usage.input_tokens, "output_tokens": final.usage.output_tokens}}))
else:
    sys.exit(f"unknown mode {mode}")

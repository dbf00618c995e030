#!/usr/bin/env python3
"""The official Anthropic Python SDK, used as an application would: default base URL
(https://api.anthropic.com), a dummy key, the node CA through SSL_CERT_FILE. One JSON line.

    anthropic_client.py message MODEL   one message
    anthropic_client.py stream MODEL    a streamed one, through the SDK's stream helper
    anthropic_client.py tools MODEL     a tool loop (tool_use, then tool_result), the first turn
                                        streamed through the stream helper, the second not
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
elif mode == "tools":
    tools = [{"name": "get_weather", "description": "Current weather in a city.",
              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    with client.messages.stream(model=model, max_tokens=256, messages=messages, tools=tools) as stream:
        first = stream.get_final_message()
    use = next(b for b in first.content if b.type == "tool_use")
    messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]})
    messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 21 C"}]})
    second = client.messages.create(model=model, max_tokens=256, messages=messages, tools=tools)
    print(json.dumps({"stop1": first.stop_reason, "id": use.id, "name": use.name, "input": use.input,
                      "stop2": second.stop_reason,
                      "answer": "".join(b.text for b in second.content if b.type == "text")}))
else:
    sys.exit(f"unknown mode {mode}")

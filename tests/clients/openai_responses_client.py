#!/usr/bin/env python3
"""The official OpenAI Python SDK's Responses API, used exactly as an application would:
default base URL, a dummy key, the node CA trusted through SSL_CERT_FILE. Prints one JSON line.

    openai_responses_client.py create MODEL       client.responses.create: text, usage, status
    openai_responses_client.py stream MODEL       client.responses.stream (the helper that checks
                                                  event order and identities): text, usage, events
    openai_responses_client.py tools MODEL        a tool loop: the model calls get_weather, the
                                                  client sends the output items back with a
                                                  function_call_output, the model replies
    openai_responses_client.py tools_stream MODEL the same loop, both turns through responses.stream
    openai_responses_client.py previous MODEL     previous_response_id: expects an API error
"""
import json
import sys

import openai

mode, model = sys.argv[1], sys.argv[2]
client = openai.OpenAI(api_key="sk-client-dummy-key", max_retries=0, timeout=30)
TOOLS = [{"type": "function", "name": "get_weather", "description": "Current weather in a city.",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


def streamed(**kw):
    """One streamed turn through the SDK's helper: (final response, event types)."""
    types = []
    with client.responses.stream(**kw) as s:
        for event in s:
            types.append(event.type)
        return s.get_final_response(), types


def usage(r):
    return r.usage.model_dump() if r.usage else None


if mode == "create":
    r = client.responses.create(model=model, input="say hello", max_output_tokens=50)
    print(json.dumps({"text": r.output_text, "usage": usage(r), "status": r.status, "id": r.id,
                      "model": r.model, "store": r.store}))
elif mode == "stream":
    r, types = streamed(model=model, input="say hello", instructions="Be brief.")
    print(json.dumps({"text": r.output_text, "usage": usage(r), "status": r.status, "events": types}))
elif mode in ("tools", "tools_stream"):
    items = [{"role": "user", "content": "What is the weather in Paris?"}]

    def turn():
        if mode == "tools":
            return client.responses.create(model=model, input=items, tools=TOOLS), []
        return streamed(model=model, input=items, tools=TOOLS)

    first, types1 = turn()
    calls = [o for o in first.output if o.type == "function_call"]
    # As applications do: the model's output goes back as input, with the call's result.
    items += [o.model_dump(exclude_none=True) for o in first.output]
    items.append({"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21 C"})
    second, types2 = turn()
    print(json.dumps({"calls": len(calls), "name": calls[0].name, "call_id": calls[0].call_id,
                      "args": json.loads(calls[0].arguments), "answer": second.output_text,
                      "status": second.status, "usage1": usage(first), "usage2": usage(second),
                      "events1": types1, "events2": types2}))
elif mode == "previous":
    try:
        client.responses.create(model=model, input="and then?", previous_response_id="resp_earlier")
        print(json.dumps({"status": None}))
    except openai.APIStatusError as e:
        print(json.dumps({"status": e.status_code, "body": e.body, "type": type(e).__name__}))
else:
    sys.exit(f"unknown mode {mode}")

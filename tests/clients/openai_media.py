#!/usr/bin/env python3
"""The official OpenAI Python SDK's audio, images and models calls, as an application makes
them: default base URL (https://api.openai.com/v1) or an Azure endpoint, a dummy key, the node
CA trusted through SSL_CERT_FILE. Prints one JSON line.

    openai_media.py transcribe MODEL FILE [FORMAT]   audio.transcriptions.create
    openai_media.py transcribe_stream MODEL FILE     the same with stream=True
    openai_media.py translate MODEL FILE             audio.translations.create
    openai_media.py speech MODEL OUT TEXT [GATE]     audio.speech, streamed to OUT; GATE made on the first bytes
    openai_media.py images MODEL N QUALITY SIZE      images.generate
    openai_media.py edit MODEL FILE                  images.edit
    openai_media.py variation FILE N SIZE            images.create_variation (no model named)
    openai_media.py models                           models.list, then models.retrieve of each
    openai_media.py retrieve MODEL                   models.retrieve; expects an API error
    openai_media.py azure_chat DEPLOYMENT            AzureOpenAI chat on a deployment path
    openai_media.py azure_transcribe DEPLOYMENT FILE AzureOpenAI transcription
    openai_media.py error MODEL FILE                 a transcription expected to fail
"""
import hashlib
import json
import pathlib
import sys

import openai

mode = sys.argv[1]
args = sys.argv[2:]
if mode.startswith("azure_"):
    client = openai.AzureOpenAI(azure_endpoint="https://myres.openai.azure.com", api_key="client-dummy-key",
                                api_version="2024-10-21", max_retries=0, timeout=30)
else:
    client = openai.OpenAI(api_key="sk-client-dummy-key", max_retries=0, timeout=30)


def usage(r):
    u = getattr(r, "usage", None)
    return u.model_dump() if u is not None else None


if mode == "transcribe":
    fmt = args[2] if len(args) > 2 else "json"
    with open(args[1], "rb") as f:
        r = client.audio.transcriptions.create(model=args[0], file=f, response_format=fmt)
    if isinstance(r, str):
        print(json.dumps({"text": r, "usage": None}))
    else:
        print(json.dumps({"text": r.text, "usage": usage(r)}))
elif mode == "transcribe_stream":
    text, done_usage = [], None
    with open(args[1], "rb") as f:
        for ev in client.audio.transcriptions.create(model=args[0], file=f, stream=True):
            if ev.type == "transcript.text.delta":
                text.append(ev.delta)
            elif ev.type == "transcript.text.done":
                done_usage = usage(ev)
    print(json.dumps({"text": "".join(text), "usage": done_usage}))
elif mode == "translate":
    with open(args[1], "rb") as f:
        r = client.audio.translations.create(model=args[0], file=f)
    print(json.dumps({"text": r.text}))
elif mode == "speech":
    # As a player does: bytes are used as they arrive; GATE is created on the first ones.
    out, gate = pathlib.Path(args[1]), pathlib.Path(args[3]) if len(args) > 3 else None
    with client.audio.speech.with_streaming_response.create(model=args[0], voice="alloy", input=args[2]) as r:
        with open(out, "wb") as f:
            for chunk in r.iter_bytes():
                if gate is not None and not gate.exists():
                    gate.touch()
                f.write(chunk)
    data = out.read_bytes()
    print(json.dumps({"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}))
elif mode == "images":
    r = client.images.generate(model=args[0], prompt="a lighthouse at dawn", n=int(args[1]), quality=args[2],
                               size=args[3])
    print(json.dumps({"images": len(r.data), "usage": usage(r)}))
elif mode == "edit":
    with open(args[1], "rb") as f:
        r = client.images.edit(model=args[0], image=f, prompt="add a boat")
    print(json.dumps({"images": len(r.data), "usage": usage(r)}))
elif mode == "variation":
    with open(args[0], "rb") as f:
        r = client.images.create_variation(image=f, n=int(args[1]), size=args[2])
    print(json.dumps({"images": len(r.data), "usage": usage(r)}))
elif mode == "models":
    ids = [m.id for m in client.models.list()]
    one = [client.models.retrieve(i).id for i in ids]
    print(json.dumps({"ids": ids, "retrieved": one}))
elif mode == "retrieve":
    try:
        client.models.retrieve(args[0])
        print(json.dumps({"status": 200}))
    except openai.APIStatusError as e:
        print(json.dumps({"status": e.status_code, "body": e.body}))
elif mode == "azure_chat":
    r = client.chat.completions.create(model=args[0], messages=[{"role": "user", "content": "say hello"}])
    print(json.dumps({"content": r.choices[0].message.content, "usage": usage(r)}))
elif mode == "azure_transcribe":
    with open(args[1], "rb") as f:
        r = client.audio.transcriptions.create(model=args[0], file=f)
    print(json.dumps({"text": r.text, "usage": usage(r)}))
elif mode == "error":
    try:
        with open(args[1], "rb") as f:
            client.audio.transcriptions.create(model=args[0], file=f)
        print(json.dumps({"status": 200}))
    except openai.APIStatusError as e:
        print(json.dumps({"status": e.status_code, "body": e.body}))

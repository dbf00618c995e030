#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/) from the gateway's test
data, docs and example config, with each target's leading control bytes (see the target's doc
comment). Re-run after test data changes: `python3 fuzz/make_corpus.py`. Seeds are replaced,
never merged; libFuzzer's grown corpora live under fuzz/target/ and are not checked in."""

import json
import pathlib
import re
import shutil
import ssl
import struct
import zlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
TESTDATA = ROOT / "gateway/src/llm/testdata"
CORPUS = ROOT / "fuzz/corpus"


def data(path):
    return (TESTDATA / path).read_bytes()


def frame(headers, payload):
    """One AWS event-stream message with string headers (as gateway::llm::eventstream::encode)."""
    h = b""
    for k, v in headers:
        h += bytes([len(k)]) + k.encode() + b"\x07" + struct.pack(">H", len(v)) + v.encode()
    total = 12 + len(h) + len(payload) + 4
    prelude = struct.pack(">II", total, len(h))
    m = prelude + struct.pack(">I", zlib.crc32(prelude)) + h + payload
    return m + struct.pack(">I", zlib.crc32(m))


BEDROCK_KINDS = ["messageStart", "contentBlockStart", "contentBlockDelta", "contentBlockStop",
                 "messageStop", "metadata"]


def bedrock_events():
    return [(e, json.dumps(p, separators=(",", ":")).encode())
            for e, p in json.loads(data("translate/bedrock-tool-use.events.json"))]


def bedrock_frames():
    return b"".join(frame([(":message-type", "event"), (":event-type", e),
                           (":content-type", "application/json")], p) for e, p in bedrock_events())


def bedrock_records():
    """The input of tollgate_fuzz::bedrock_frames: 0xFF-separated (kind byte, payload)."""
    return b"\xff".join(bytes([BEDROCK_KINDS.index(e)]) + p for e, p in bedrock_events())


def client_hello(sni, alpn):
    """The first flight of Python's OpenSSL client: a real ClientHello."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    try:
        conn.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def two_records(hello):
    body = hello[5:]
    half = len(body) // 2
    return b"".join(b"\x16\x03\x01" + struct.pack(">H", len(p)) + p for p in (body[:half], body[half:]))


def write(target, seeds):
    d = CORPUS / target
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    for name, content in seeds.items():
        (d / name).write_bytes(content)


def main():
    hello = client_hello("api.openai.com", ["h2", "http/1.1"])
    write("client_hello", {
        "openssl-openai-h2": hello,
        "openssl-anthropic-http1": client_hello("api.anthropic.com", ["http/1.1"]),
        "openssl-no-alpn": client_hello("bedrock-runtime.us-east-1.amazonaws.com", []),
        "two-records": two_records(hello),
        "truncated": hello[: len(hello) // 2],
        "http1-post": b"POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\n\r\n",
        "h2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "ssh": b"SSH-2.0-OpenSSH_9.2\r\n",
    })

    chat = b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true,' \
           b'"stream_options":{"include_usage":false},"max_completion_tokens":64}'
    embeddings = b'{"model":"text-embedding-3-small","input":["a","b"],"encoding_format":"base64","dimensions":8}'
    responses = b'{"model":"gpt-4o","input":"hi","max_output_tokens":32,"stream":false}'
    write("request_body", {
        "chat-stream": chat,
        "openai-chat-tools": data("translate/openai-chat-tools.request.json"),
        "anthropic-tools": data("translate/anthropic-tools.request.json"),
        "embeddings": embeddings,
        "responses": responses,
        "array": b'[{"model":"x"}]',
    })

    sse = {
        "openai-chat-usage": data("openai/chat-stream-usage.sse"),
        "openai-responses": data("openai/responses-stream.sse"),
        "anthropic-messages": data("anthropic/messages-stream.sse"),
        "gemini": data("translate/gemini-function-call.sse"),
    }
    # (cut seed, limit selector): whole, single bytes, 1..16 and 1..128 byte chunks, small limits.
    controls = [b"\x00\x00", b"\x01\x00", b"\x05\x00", b"\x08\x01", b"\x03\x02"]
    seeds = {f"{name}-{i}": controls[i] + body for i, (name, body) in enumerate(sse.items())}
    seeds["crlf"] = b"\x02\x00" + data("openai/chat-stream-no-usage.sse").replace(b"\n", b"\r\n")
    write("sse", seeds)

    frames = bedrock_frames()
    write("eventstream", {
        "bedrock-whole": b"\x00\x00" + frames,
        "bedrock-bytes": b"\x01\x00" + frames,
        "bedrock-chunks-fix-crc": b"\x07\x01" + frames,
        "exception": b"\x04\x00" + frame([(":message-type", "exception"),
                                          (":exception-type", "throttlingException"),
                                          (":content-type", "application/json")],
                                         b'{"message":"Too many requests"}'),
    })

    # (cut, schema, operation, flags): schema 0 openai, 1 anthropic, 3 gemini, 4 bedrock;
    # operation 0 chat, 2 embeddings, 3 responses, 5 messages; flags 1 stream, 2 strip,
    # 4 ended, 8 Bedrock records, 16 raw frames with CRCs rewritten.
    write("usage_meter", {
        "openai-chat-sse-strip": bytes([3, 0, 0, 7]) + data("openai/chat-stream-usage.sse"),
        "openai-chat-sse-no-usage": bytes([1, 0, 0, 5]) + data("openai/chat-stream-no-usage.sse"),
        "openai-responses-sse": bytes([5, 0, 3, 5]) + data("openai/responses-stream.sse"),
        "openai-chat-json": bytes([0, 0, 0, 4]) + data("openai/chat-cached-reasoning.response.json"),
        "openai-embeddings-json": bytes([2, 0, 2, 4]) + data("openai/embeddings.response.json"),
        "anthropic-sse": bytes([4, 1, 5, 5]) + data("anthropic/messages-stream.sse"),
        "anthropic-json": bytes([0, 1, 5, 4]) + data("anthropic/messages.response.json"),
        "gemini-sse": bytes([6, 3, 0, 5]) + data("translate/gemini-function-call.sse"),
        "gemini-json": bytes([0, 3, 0, 4]) + data("translate/gemini-function-call.response.json"),
        "bedrock-json": bytes([0, 4, 0, 4]) + data("translate/bedrock-tool-use.response.json"),
        "bedrock-records": bytes([7, 4, 0, 13]) + bedrock_records(),
        "bedrock-frames": bytes([2, 4, 0, 21]) + frames,
    })

    form = (b"--B1\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
            b"--B1\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
            b"Content-Type: audio/wav\r\n\r\nRIFF\x00\x01\r\n--B1--\r\n")
    write("multipart", {
        "sdk-order": b"\x00B1\n" + form,
        "sdk-order-chunks": b"\x03B1\n" + form,
    })
    call = b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"add","arguments":{"a":1}}}'
    listed = b'{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"add"},{"name":"delete"}]}}'
    write("mcp", {
        "json-list-filtered": b"\x00\x05" + call + b"\xff" + listed,
        "sse-progress-then-result": b"\x02\x04" + call + b"\xff"
            + b'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}\n\n'
            + b"event: message\nid: 9\ndata: " + listed + b"\n\n",
        "batch": b"\x00\x00[" + call + b"]",
    })

    write("translate_request", {
        "openai-chat-tools": b"\x00\x00" + data("translate/openai-chat-tools.request.json"),
        "openai-chat-inline-images": b"\x01\x00" + data("translate/openai-chat-tools-inline-images.request.json"),
        "anthropic-tools": b"\x00\x01" + data("translate/anthropic-tools.request.json"),
        "chat-stream": b"\x05\x02" + chat,
        "embeddings-titan": b"\x02\x03" + embeddings,
        "embeddings-vertex": b"\x07\x04" + embeddings,
    })

    # (cut, flags, status): flags 1 stream, 2 include usage, 4 base64, 8 Bedrock records;
    # status 0 → 200, 6 → 413, 8 → 429, 9 → 500.
    vertex = [{"predictions": [{"embeddings": {"values": [0.1, 0.2], "statistics": {"token_count": 2}}}]}]
    titan = [{"embedding": [0.5, 0.25], "inputTextTokenCount": 3}, {"embedding": [1.0], "inputTextTokenCount": 1}]
    write("translate_answer", {
        "openai-chat-json": b"\x00\x00\x00" + data("translate/openai-chat-tool-calls.response.json"),
        "anthropic-json": b"\x00\x00\x00" + data("translate/anthropic-tool-use.response.json"),
        "gemini-json": b"\x00\x00\x00" + data("translate/gemini-function-call.response.json"),
        "bedrock-json": b"\x00\x00\x00" + data("translate/bedrock-tool-use.response.json"),
        "openai-error": b"\x00\x00\x08" + data("translate/openai-error.json"),
        "gemini-error": b"\x00\x00\x06" + data("translate/gemini-error.json"),
        "bedrock-error": b"\x00\x00\x09" + data("translate/bedrock-error.json"),
        "openai-sse": b"\x03\x03\x00" + data("translate/openai-chat-tool-calls.sse"),
        "anthropic-sse": b"\x02\x01\x00" + data("translate/anthropic-tool-use.sse"),
        "gemini-sse": b"\x05\x03\x00" + data("translate/gemini-function-call.sse"),
        "bedrock-records": b"\x04\x0b\x00" + bedrock_records(),
        "embeddings-vertex": b"\x00\x04\x00" + json.dumps(vertex).encode(),
        "embeddings-titan": b"\x00\x00\x00" + json.dumps(titan).encode(),
    })

    docs = re.findall(r"```yaml\n(.*?)```", (ROOT / "docs/config.md").read_text(), re.S)
    configs = {"example": (ROOT / "examples/tollgate.yaml").read_bytes(), "empty": b"{}"}
    configs.update({f"docs-{i}": d.encode() for i, d in enumerate(docs)})
    configs["backends"] = b"""providers:
  - name: openai
    hostnames: [api.openai.com]
    backend: bedrock
backends:
  - name: bedrock
    url: https://bedrock-runtime.us-east-1.amazonaws.com
    schema: bedrock
    region: us-east-1
    credential: aws
  - name: vertex
    url: https://europe-west4-aiplatform.googleapis.com
    schema: vertex
    project: acme-ml
    region: europe-west4
    credential: gcp
  - name: azure
    url: https://acme.openai.azure.com
    schema: azureOpenai
    deployment: gpt4o-prod
    credential: azure
credentials:
  - name: aws
    kind: awsSigV4
    file: /run/aws-keys
  - name: gcp
    kind: gcpServiceAccount
    file: /run/sa.json
  - name: azure
    kind: bearer
    env: AZURE_KEY
routes:
  - name: embeddings
    match: { models: ["*embedding*"] }
    backends: [{ backend: vertex }]
  - name: to-bedrock
    backends: [{ backend: bedrock, model: "us.anthropic.claude-3-5-haiku-20241022-v1:0" }]
"""
    write("config", configs)


if __name__ == "__main__":
    main()

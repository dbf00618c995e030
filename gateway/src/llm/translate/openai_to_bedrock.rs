//! OpenAI client, Amazon Bedrock backend: chat completions as Converse / ConverseStream
//! (<https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html>, AWS
//! event-stream frames decoded by `llm::eventstream`) and embeddings as Titan `InvokeModel`
//! calls, one per text.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::*;
use crate::llm::usage;

/// OpenAI chat request → Bedrock Converse request (the body of `POST /model/{id}/converse`).
/// Converse is close to Anthropic Messages (alternating turns, tool use and results as
/// content blocks), so the request goes through that translation and is then reshaped; what
/// Converse cannot say is refused by name. The same body serves ConverseStream (the caller
/// picks the path; [`BedrockStreamToOpenAi`] reads the answer).
pub fn openai_chat_to_bedrock(body: &[u8], model: &str) -> Result<Value, Unsupported> {
    let renamed = |e: Unsupported| {
        Unsupported(
            e.0.replace("an Anthropic backend", "a Bedrock backend")
                .replace("Anthropic backends", "Bedrock backends"),
        )
    };
    let asked = parse_request(body)?;
    if let Some(kind) = asked
        .get("response_format")
        .and_then(|f| f["type"].as_str())
        .filter(|k| *k != "text")
    {
        return Err(unsupported(format!(
            "`response_format` {kind:?} is not supported by Bedrock backends"
        )));
    }
    let a = openai_request_to_anthropic(&asked, model).map_err(renamed)?;
    let mut out = Map::new();
    // Converse has no reasoning field: Claude on Bedrock takes Anthropic's `thinking` as an
    // additional model request field (its constraints already checked, for Anthropic, above).
    if let Some(thinking) = a.get("thinking") {
        if !is_bedrock_claude(model) {
            return Err(unsupported(format!(
                "`reasoning_effort` is supported by Bedrock backends only for Anthropic Claude models, not {model:?}"
            )));
        }
        out.insert("additionalModelRequestFields".into(), json!({"thinking": thinking}));
    }
    let messages = converse_messages(&a)?;
    out.insert("messages".into(), Value::Array(messages));
    if let Some(system) = a.get("system") {
        out.insert("system".into(), json!([{"text": system}]));
    }
    let mut inference = Map::new();
    // Converse takes the model's own maximum when none is given (Anthropic needed one); with
    // thinking, Anthropic's (raised above the thinking budget, as Claude requires).
    let thinking_max = out
        .contains_key("additionalModelRequestFields")
        .then(|| &a["max_tokens"]);
    if let Some(m) = thinking_max.or(asked
        .get("max_completion_tokens")
        .or(asked.get("max_tokens"))
        .filter(|m| !m.is_null()))
    {
        inference.insert("maxTokens".into(), m.clone());
    }
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("stop_sequences", "stopSequences"),
    ] {
        if let Some(v) = a.get(from) {
            inference.insert(to.into(), v.clone());
        }
    }
    if !inference.is_empty() {
        out.insert("inferenceConfig".into(), Value::Object(inference));
    }
    if let Some(tools) = a.get("tools").and_then(Value::as_array) {
        let specs: Vec<Value> = tools
            .iter()
            .map(|t| {
                let mut spec = json!({"name": t["name"], "inputSchema": {"json": t["input_schema"]}});
                if let Some(d) = t.get("description") {
                    spec["description"] = d.clone();
                }
                json!({"toolSpec": spec})
            })
            .collect();
        let mut config = json!({"tools": specs});
        match &a.get("tool_choice") {
            None => {}
            Some(c) if c.get("disable_parallel_tool_use").is_some() => {
                return Err(unsupported(
                    "`parallel_tool_calls: false` is not supported by Bedrock backends",
                ))
            }
            Some(c) => match c["type"].as_str() {
                Some("auto") => config["toolChoice"] = json!({"auto": {}}),
                Some("any") => config["toolChoice"] = json!({"any": {}}),
                Some("tool") => config["toolChoice"] = json!({"tool": {"name": c["name"]}}),
                _ => {
                    return Err(unsupported(
                        "`tool_choice` \"none\" is not supported by Bedrock backends",
                    ))
                }
            },
        }
        out.insert("toolConfig".into(), config);
    }
    if let Some(user) = a["metadata"]["user_id"].as_str() {
        out.insert("requestMetadata".into(), json!({"user": user}));
    }
    Ok(Value::Object(out))
}

/// Anthropic's turns (from the chat request) as Converse messages: text, base64 images, tool
/// uses and results; what Converse cannot take is refused by name.
fn converse_messages(a: &Value) -> Result<Vec<Value>, Unsupported> {
    let mut messages = Vec::new();
    for (i, m) in a["messages"].as_array().into_iter().flatten().enumerate() {
        let mut content = Vec::new();
        for b in m["content"].as_array().into_iter().flatten() {
            content.push(match b["type"].as_str() {
                Some("text") => json!({"text": b["text"]}),
                Some("image") if b["source"]["type"] == "base64" => {
                    let media = b["source"]["media_type"].as_str().unwrap_or("");
                    let format = media.strip_prefix("image/").unwrap_or("");
                    if !["png", "jpeg", "gif", "webp"].contains(&format) {
                        return Err(unsupported(format!(
                            "messages[{i}]: image type {media:?} is not supported by Bedrock backends"
                        )));
                    }
                    json!({"image": {"format": format, "source": {"bytes": b["source"]["data"]}}})
                }
                Some("image") => {
                    return Err(unsupported(format!(
                        "messages[{i}]: image URLs are not supported by Bedrock backends (send data: URLs)"
                    )))
                }
                Some("tool_use") => {
                    json!({"toolUse": {"toolUseId": b["id"], "name": b["name"], "input": b["input"]}})
                }
                Some("tool_result") => json!({"toolResult": {"toolUseId": b["tool_use_id"],
                                                              "content": [{"text": b["content"]}]}}),
                _ => return Err(unsupported(format!("messages[{i}]: unsupported content for Bedrock"))),
            });
        }
        messages.push(json!({"role": m["role"], "content": content}));
    }
    if messages.first().is_some_and(|m| m["role"] == "assistant") {
        return Err(unsupported(
            "Bedrock backends need the conversation to start with a user message (after the system prompt)",
        ));
    }
    Ok(messages)
}

/// An Anthropic Claude model on Bedrock: its model id (`anthropic.claude-…`), a cross-region
/// inference profile (`us.anthropic.claude-…`, `global.…`) or an ARN holding either.
fn is_bedrock_claude(model: &str) -> bool {
    model.contains("anthropic.claude")
}

/// Bedrock Converse response → OpenAI chat.completion. Converse names no model and no id.
pub fn bedrock_to_openai(resp: &Value, model: &str) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in resp["output"]["message"]["content"].as_array().into_iter().flatten() {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(u) = block.get("toolUse") {
            calls.push(json!({
                "id": u["toolUseId"], "type": "function",
                "function": {"name": u["name"], "arguments": u["input"].to_string()}
            }));
        }
    }
    let id = format!("chatcmpl-bedrock-{:016x}", fastrand::u64(..));
    openai_completion(
        id,
        json!(model),
        assistant_message(text, calls),
        bedrock_finish(resp["stopReason"].as_str()),
        openai_usage(usage::bedrock_usage(&resp["usage"])),
    )
}

/// The text of a Converse answer's `reasoningContent` blocks (models that reason aloud on
/// Bedrock, e.g. DeepSeek-R1, or Claude with thinking on); [`bedrock_to_openai`] leaves them out.
/// Redacted reasoning has no text and adds nothing.
pub fn bedrock_reasoning(resp: &Value) -> String {
    resp["output"]["message"]["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["reasoningContent"]["reasoningText"]["text"].as_str())
        .collect()
}

fn bedrock_finish(stop: Option<&str>) -> Value {
    match stop {
        Some("end_turn") | Some("stop_sequence") => json!("stop"),
        Some("max_tokens") | Some("model_context_window_exceeded") => json!("length"),
        Some("tool_use") => json!("tool_calls"),
        Some("guardrail_intervened") | Some("content_filtered") => json!("content_filter"),
        _ => Value::Null,
    }
}

/// Bedrock error body (`{"message": …}`, the exception name in `x-amzn-ErrorType` or
/// `__type`) → OpenAI error body.
///
/// Bedrock's REST answers name the exception in the `x-amzn-ErrorType` header, not the body
/// (which holds `{"message"}`), so without a `__type` the type follows the HTTP `status`.
pub fn bedrock_error_to_openai(body: &[u8], status: u16) -> Value {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match v["__type"].as_str() {
        Some(name) => bedrock_error(name, &v),
        None => {
            let mut e = bedrock_error("", &v);
            e["error"]["type"] = json!(openai_error_type(status));
            e
        }
    }
}

/// An exception (by name) with its `{"message": …}` payload → OpenAI error body.
fn bedrock_error(name: &str, v: &Value) -> Value {
    let name = name.to_ascii_lowercase();
    let typ = if name.contains("validation") || name.contains("resourcenotfound") {
        "invalid_request_error"
    } else if name.contains("throttling") || name.contains("servicequota") {
        "rate_limit_error"
    } else if name.contains("accessdenied") {
        "permission_error"
    } else {
        "api_error"
    };
    let message = v["message"]
        .as_str()
        .or(v["Message"].as_str())
        .unwrap_or("upstream error");
    json!({"error": {"message": message, "type": typ, "param": null, "code": null}})
}

/// OpenAI embeddings request → one Titan `InvokeModel` body per input text (Titan embeds one
/// text per call: `{"inputText", "dimensions"}`). The caller sends them and combines the
/// answers with [`titan_combined`].
pub fn openai_embeddings_to_titan(body: &[u8], model: &str) -> Result<(Vec<Value>, bool), Unsupported> {
    if !model.contains("titan-embed") {
        return Err(unsupported(format!(
            "embeddings on Bedrock are translated for Amazon Titan Text Embeddings models only, not {model:?}"
        )));
    }
    let (texts, dimensions, base64) = embedding_inputs(body, "Bedrock Titan embeddings")?;
    let bodies = texts
        .into_iter()
        .map(|t| {
            let mut b = json!({"inputText": t});
            if let Some(d) = &dimensions {
                b["dimensions"] = d.clone();
            }
            b
        })
        .collect();
    Ok((bodies, base64))
}

/// Titan answers, in input order, as one body: `embeddings` plus a Converse-shaped `usage`
/// (the sum of `inputTextTokenCount`), which the usage meter reads like any Bedrock answer.
pub fn titan_combined(answers: &[Value]) -> Value {
    let tokens = answers
        .iter()
        .filter_map(|a| a["inputTextTokenCount"].as_u64())
        .fold(0u64, u64::saturating_add);
    // Only the vectors: `embeddingsByType` repeats them.
    let embeddings: Vec<Value> = answers.iter().map(|a| json!({"embedding": a["embedding"]})).collect();
    json!({"embeddings": embeddings, "usage": {"inputTokens": tokens, "outputTokens": 0, "totalTokens": tokens}})
}

/// [`titan_combined`] → OpenAI embeddings list with `prompt_tokens`.
pub fn titan_embeddings_to_openai(combined: &Value, model: &str, base64: bool) -> Value {
    let vectors = combined["embeddings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["embedding"]);
    let tokens = combined["usage"]["inputTokens"].as_u64().unwrap_or(0);
    openai_embedding_list(vectors, model, base64, tokens)
}

/// Bedrock `ConverseStream` (AWS event-stream messages) → OpenAI `chat.completion.chunk`s.
/// The finish reason arrives in `messageStop`, the usage in the `metadata` message after it.
pub struct BedrockStreamToOpenAi {
    decoder: crate::llm::eventstream::Decoder,
    id: String,
    model: Value,
    created: u64,
    include_usage: bool,
    /// Reasoning deltas become `reasoning_content` deltas (see [`Self::with_reasoning`]).
    reasoning: bool,
    /// Bedrock content block index → OpenAI tool call index.
    tool_index: std::collections::HashMap<u64, usize>,
}

impl BedrockStreamToOpenAi {
    pub fn new(model: &str, include_usage: bool) -> Self {
        BedrockStreamToOpenAi {
            decoder: Default::default(),
            id: format!("chatcmpl-bedrock-{:016x}", fastrand::u64(..)),
            model: json!(model),
            created: now(),
            include_usage,
            reasoning: false,
            tool_index: Default::default(),
        }
    }

    /// `reasoningContent` text deltas become `reasoning_content` deltas (the chat step of a
    /// Responses client, whose `reasoning` item they become); otherwise they are left out.
    pub fn with_reasoning(mut self) -> Self {
        self.reasoning = true;
        self
    }

    fn chunk(&self, delta: Value, finish: Value) -> String {
        openai_chunk(&self.id, self.created, &self.model, delta, finish)
    }

    /// Feeds upstream bytes; returns the client's bytes.
    pub fn feed(&mut self, bytes: &[u8]) -> Bytes {
        let mut out = String::new();
        let messages = match self.decoder.feed(bytes) {
            Ok(m) => m,
            Err(e) => {
                let v = json!({"message": format!("broken Bedrock stream: {e}")});
                return Bytes::from(format!("data: {}\n\n", bedrock_error("internal", &v)));
            }
        };
        for m in messages {
            let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
            if m.message_type == "exception" {
                out += &format!("data: {}\n\n", bedrock_error(&m.event_type, &v));
                continue;
            }
            match m.event_type.as_str() {
                "messageStart" => out += &self.chunk(json!({"role": "assistant", "content": ""}), Value::Null),
                "contentBlockStart" => {
                    let Some(tool) = v["start"].get("toolUse") else {
                        continue;
                    };
                    let n = self.tool_index.len();
                    self.tool_index.insert(v["contentBlockIndex"].as_u64().unwrap_or(0), n);
                    out += &self.chunk(
                        json!({"tool_calls": [{"index": n, "id": tool["toolUseId"], "type": "function",
                                               "function": {"name": tool["name"], "arguments": ""}}]}),
                        Value::Null,
                    );
                }
                "contentBlockDelta" => {
                    let d = &v["delta"];
                    if let Some(text) = d.get("text") {
                        out += &self.chunk(json!({"content": text}), Value::Null);
                    } else if let Some(text) = d["reasoningContent"].get("text").filter(|_| self.reasoning) {
                        out += &self.chunk(json!({"reasoning_content": text}), Value::Null);
                    } else if let Some(args) = d["toolUse"].get("input") {
                        let block = v["contentBlockIndex"].as_u64().unwrap_or(0);
                        let n = self.tool_index.get(&block).copied().unwrap_or(0);
                        out += &self.chunk(
                            json!({"tool_calls": [{"index": n, "function": {"arguments": args}}]}),
                            Value::Null,
                        );
                    }
                }
                "messageStop" => out += &self.chunk(json!({}), bedrock_finish(v["stopReason"].as_str())),
                "metadata" => {
                    if self.include_usage {
                        let u = openai_usage(usage::bedrock_usage(&v["usage"]));
                        out += &openai_usage_chunk(&self.id, self.created, &self.model, u);
                    }
                    out += "data: [DONE]\n\n";
                }
                _ => {}
            }
        }
        Bytes::from(out)
    }
}

/// `converse` or `converse-stream` of `model`.
pub(super) fn converse_path(model: &str, stream: bool) -> String {
    let op = if stream { "converse-stream" } else { "converse" };
    format!("/model/{}/{op}", path_segment(model))
}

/// OpenAI chat completions served by Bedrock Converse (and ConverseStream).
pub struct OpenAiChatToBedrock;

impl Direction for OpenAiChatToBedrock {
    fn name(&self) -> &'static str {
        "openai_chat->bedrock_converse"
    }

    fn applies(&self, client: ApiSchema, op: Operation, backend: ApiSchema) -> bool {
        (client, op, backend) == (ApiSchema::Openai, Operation::ChatCompletions, ApiSchema::Bedrock)
    }

    fn request(&self, req: &ClientRequest<'_>, _: &BackendSpec<'_>) -> Result<Upstream, Unsupported> {
        let (bytes, _) = req.json_body()?;
        let model = req.model().to_string();
        let translated = openai_chat_to_bedrock(bytes, &model)?;
        let name = if model.is_empty() { "bedrock" } else { &model };
        let stream = BedrockStreamToOpenAi::new(name, req.include_usage());
        Ok(Upstream::translated(
            converse_path(&model, req.stream()),
            json_body(&translated),
            (ApiSchema::Bedrock, Operation::ChatCompletions),
            Some(Box::new(stream)),
            json_translator(move |v| bedrock_to_openai(v, &model), bedrock_error_to_openai),
        ))
    }
}

impl StreamTranslator for BedrockStreamToOpenAi {
    fn feed(&mut self, bytes: &[u8]) -> Bytes {
        BedrockStreamToOpenAi::feed(self, bytes)
    }
}

/// OpenAI embeddings served by Amazon Titan on Bedrock: one `InvokeModel` call per text.
pub struct OpenAiEmbeddingsToTitan;

impl Direction for OpenAiEmbeddingsToTitan {
    fn name(&self) -> &'static str {
        "openai_embeddings->bedrock_titan"
    }

    fn applies(&self, client: ApiSchema, op: Operation, backend: ApiSchema) -> bool {
        (client, op, backend) == (ApiSchema::Openai, Operation::Embeddings, ApiSchema::Bedrock)
    }

    fn request(&self, req: &ClientRequest<'_>, _: &BackendSpec<'_>) -> Result<Upstream, Unsupported> {
        let (bytes, _) = req.json_body()?;
        let model = req.model().to_string();
        let (bodies, base64) = openai_embeddings_to_titan(bytes, &model)?;
        Ok(Upstream::translated(
            format!("/model/{}/invoke", path_segment(&model)),
            UpstreamBody::FanOut {
                bodies: bodies.iter().map(|b| Bytes::from(b.to_string())).collect(),
                combine: titan_combined,
            },
            (ApiSchema::Bedrock, Operation::Embeddings),
            None,
            json_translator(
                move |v| titan_embeddings_to_openai(v, &model, base64),
                bedrock_error_to_openai,
            ),
        ))
    }
}

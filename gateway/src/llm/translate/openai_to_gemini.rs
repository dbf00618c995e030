//! OpenAI client, Google Gemini backend (the Gemini API and Vertex AI take the same bodies):
//! chat completions as `generateContent` / `streamGenerateContent?alt=sse`
//! (<https://ai.google.dev/api/generate-content>) and embeddings as `batchEmbedContents`.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::*;
use crate::llm::{sse, usage};

/// OpenAI chat request → Gemini `generateContent` request
/// (<https://ai.google.dev/api/generate-content>).
pub fn openai_chat_to_gemini(body: &[u8]) -> Result<Value, Unsupported> {
    let req: Value = serde_json::from_slice(body).map_err(|e| unsupported(format!("request body: {e}")))?;
    let obj = req
        .as_object()
        .ok_or_else(|| unsupported("request body must be a JSON object"))?;
    refuse_unsupported_members(obj)?;
    let mut out = Map::new();
    let (system, contents) = gemini_contents(obj)?;
    let no_turns = contents.is_empty();
    out.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({"parts": system}));
    }
    let config = generation_config(obj)?;
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    if let Some(tools) = gemini_tools(obj)? {
        out.insert("tools".into(), tools);
    }
    if let Some(tool_config) = gemini_tool_config(obj)? {
        out.insert("toolConfig".into(), tool_config);
    }
    if no_turns {
        return Err(unsupported(
            "`messages` must hold at least one non-blank user or assistant message for Gemini backends",
        ));
    }
    Ok(Value::Object(out))
}

/// Refuses request members Gemini has no meaning for, and `n` other than 1, before anything
/// is translated.
fn refuse_unsupported_members(obj: &Map<String, Value>) -> Result<(), Unsupported> {
    for (k, v) in obj {
        // `user` has no Gemini field and does not change the answer: it is not forwarded
        // (docs/config.md says so). Gemini cannot be told not to call tools in parallel.
        let known = KNOWN.contains(&k.as_str()) && !(k == "parallel_tool_calls" && v == &Value::Bool(false));
        if !known && !v.is_null() {
            return Err(unsupported(format!(
                "`{k}` is not supported when this route is served by a Gemini backend"
            )));
        }
    }
    if obj.get("n").and_then(Value::as_u64).is_some_and(|n| n != 1) {
        return Err(unsupported("`n` other than 1 is not supported by Gemini backends"));
    }
    Ok(())
}

/// OpenAI `messages` → the Gemini system instruction parts and `contents` (Gemini keeps the
/// system prompt out of the turns and wants consecutive turns of one role merged).
fn gemini_contents(obj: &Map<String, Value>) -> Result<(Vec<Value>, Vec<Value>), Unsupported> {
    let mut system = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    // Gemini answers a function call by name; OpenAI by call id.
    let mut call_names: std::collections::HashMap<String, Value> = Default::default();
    for (i, m) in obj
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let (role, parts) = match m["role"].as_str().unwrap_or("") {
            "system" | "developer" => {
                let text = text_of(&m["content"]).unwrap_or_default();
                if !is_blank(&text) {
                    system.push(json!({"text": text}));
                }
                continue;
            }
            "user" => ("user", gemini_parts(&m["content"], i)?),
            "assistant" => ("model", gemini_model_parts(m, i, &mut call_names)?),
            "tool" => ("user", vec![gemini_function_response(m, &call_names)]),
            other => return Err(unsupported(format!("messages[{i}]: role {other:?} is not supported"))),
        };
        if parts.is_empty() {
            continue;
        }
        match contents.last_mut() {
            Some(last) if last["role"] == role => {
                if let Some(arr) = last["parts"].as_array_mut() {
                    arr.extend(parts);
                }
            }
            _ => contents.push(json!({"role": role, "parts": parts})),
        }
    }
    Ok((system, contents))
}

/// An assistant message's content and tool calls as Gemini `model` parts, noting each call's
/// function name under its id for the tool messages that answer it.
fn gemini_model_parts(
    m: &Value,
    i: usize,
    call_names: &mut std::collections::HashMap<String, Value>,
) -> Result<Vec<Value>, Unsupported> {
    let mut parts = match &m["content"] {
        Value::Null => Vec::new(),
        c => gemini_parts(c, i)?,
    };
    for call in m["tool_calls"].as_array().into_iter().flatten() {
        let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap_or("{}"))
            .map_err(|_| unsupported(format!("messages[{i}].tool_calls: arguments are not JSON")))?;
        call_names.insert(
            call["id"].as_str().unwrap_or("").to_string(),
            call["function"]["name"].clone(),
        );
        let mut part = json!({"functionCall": {"name": call["function"]["name"], "args": args}});
        if let Some((_, sig)) = call["id"].as_str().and_then(|id| id.split_once(SIGNATURE_IN_ID)) {
            part["thoughtSignature"] = json!(sig);
        }
        parts.push(part);
    }
    Ok(parts)
}

/// A tool message as a Gemini `functionResponse` part, named after the call it answers
/// (Gemini's responses are objects: other content is wrapped in `result`).
fn gemini_function_response(m: &Value, call_names: &std::collections::HashMap<String, Value>) -> Value {
    let id = m["tool_call_id"].as_str().unwrap_or("");
    let name = call_names.get(id).cloned().unwrap_or(json!(id));
    let content = text_of(&m["content"]).unwrap_or_default();
    let response = serde_json::from_str::<Value>(&content)
        .ok()
        .filter(Value::is_object)
        .unwrap_or(json!({"result": content}));
    json!({"functionResponse": {"name": name, "response": response}})
}

/// Sampling, length, stop, JSON mode and thinking options → Gemini `generationConfig`
/// members (empty when the request sets none).
fn generation_config(obj: &Map<String, Value>) -> Result<Map<String, Value>, Unsupported> {
    let mut config = Map::new();
    if let Some(t) = obj.get("temperature").filter(|v| !v.is_null()) {
        config.insert("temperature".into(), t.clone());
    }
    if let Some(t) = obj.get("top_p").filter(|v| !v.is_null()) {
        config.insert("topP".into(), t.clone());
    }
    if let Some(m) = obj
        .get("max_completion_tokens")
        .or(obj.get("max_tokens"))
        .filter(|v| !v.is_null())
    {
        config.insert("maxOutputTokens".into(), m.clone());
    }
    match obj.get("stop") {
        Some(Value::String(s)) => {
            config.insert("stopSequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            config.insert("stopSequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    match obj
        .get("response_format")
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
    {
        None | Some("text") => {}
        Some("json_object") => {
            config.insert("responseMimeType".into(), json!("application/json"));
        }
        Some("json_schema") => {
            config.insert("responseMimeType".into(), json!("application/json"));
            if let Some(schema) = obj["response_format"]["json_schema"].get("schema") {
                config.insert("responseJsonSchema".into(), schema.clone());
            }
        }
        Some(other) => {
            return Err(unsupported(format!(
                "`response_format` {other:?} is not supported by Gemini backends"
            )))
        }
    }
    if let Some(effort) = obj.get("reasoning_effort").and_then(Value::as_str) {
        config.insert(
            "thinkingConfig".into(),
            json!({"thinkingBudget": thinking_budget(effort)?}),
        );
    }
    Ok(config)
}

/// OpenAI function tools → one Gemini tool of function declarations (None when the request
/// has no `tools` list); other tool types are refused.
fn gemini_tools(obj: &Map<String, Value>) -> Result<Option<Value>, Unsupported> {
    let Some(tools) = obj.get("tools").and_then(Value::as_array) else {
        return Ok(None);
    };
    let mut decls = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        if t["type"] != "function" {
            return Err(unsupported(format!(
                "tools[{i}]: only function tools are supported by Gemini backends"
            )));
        }
        let f = &t["function"];
        let mut d = json!({"name": f["name"]});
        if let Some(desc) = f.get("description") {
            d["description"] = desc.clone();
        }
        if let Some(p) = f.get("parameters") {
            d["parametersJsonSchema"] = p.clone();
        }
        decls.push(d);
    }
    Ok(Some(json!([{"functionDeclarations": decls}])))
}

/// OpenAI `tool_choice` → Gemini `toolConfig` (None when the request has no choice).
fn gemini_tool_config(obj: &Map<String, Value>) -> Result<Option<Value>, Unsupported> {
    Ok(match obj.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let mode = match s.as_str() {
                "auto" => "AUTO",
                "none" => "NONE",
                "required" => "ANY",
                other => return Err(unsupported(format!("`tool_choice` {other:?} is not supported"))),
            };
            Some(json!({"functionCallingConfig": {"mode": mode}}))
        }
        Some(v) => {
            Some(json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [v["function"]["name"]]}}))
        }
    })
}

fn gemini_parts(content: &Value, i: usize) -> Result<Vec<Value>, Unsupported> {
    match content {
        Value::String(s) if is_blank(s) => Ok(Vec::new()),
        Value::String(s) => Ok(vec![json!({"text": s})]),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| !(p["type"] == "text" && is_blank(p["text"].as_str().unwrap_or(""))))
            .enumerate()
            .map(|(j, p)| match p["type"].as_str() {
                Some("text") => Ok(json!({"text": p["text"]})),
                Some("image_url") => {
                    let url = p["image_url"]["url"].as_str().unwrap_or("");
                    match url.strip_prefix("data:").and_then(|rest| rest.split_once(";base64,")) {
                        Some((mime, data)) => Ok(json!({"inlineData": {"mimeType": mime, "data": data}})),
                        None => Ok(json!({"fileData": {"fileUri": url}})),
                    }
                }
                other => Err(unsupported(format!(
                    "messages[{i}].content[{j}]: part type {other:?} is not supported by Gemini backends"
                ))),
            })
            .collect(),
        Value::Null => Ok(Vec::new()),
        _ => Err(unsupported(format!("messages[{i}].content must be a string or parts"))),
    }
}

fn gemini_finish(reason: Option<&str>, has_calls: bool) -> Value {
    match reason {
        _ if has_calls => json!("tool_calls"),
        Some("STOP") => json!("stop"),
        Some("MAX_TOKENS") => json!("length"),
        Some("SAFETY") | Some("RECITATION") | Some("BLOCKLIST") | Some("PROHIBITED_CONTENT") | Some("SPII") => {
            json!("content_filter")
        }
        Some(_) => json!("stop"),
        None => Value::Null,
    }
}

/// Gemini `usageMetadata` → OpenAI `usage` (thinking tokens count as output, as OpenAI's
/// reasoning tokens do).
/// Separates a call id from the thought signature carried in it (see [`gemini_message`]).
const SIGNATURE_IN_ID: &str = "__thought__";

fn gemini_message(candidate: &Value) -> (String, Vec<Value>) {
    let mut text = String::new();
    let mut calls = Vec::new();
    for part in candidate["content"]["parts"].as_array().into_iter().flatten() {
        if part.get("thought") == Some(&Value::Bool(true)) {
            continue;
        }
        if let Some(t) = part["text"].as_str() {
            text.push_str(t);
        }
        if let Some(call) = part.get("functionCall") {
            let mut id = call
                .get("id")
                .and_then(Value::as_str)
                .map(String::from)
                .unwrap_or_else(|| format!("call_{}", calls.len()));
            // Gemini wants a call's thought signature back when the call is replayed; an
            // OpenAI client sends back only the id, so the signature travels inside it.
            if let Some(sig) = part["thoughtSignature"].as_str() {
                id = format!("{id}{SIGNATURE_IN_ID}{sig}");
            }
            let args = match &call["args"] {
                Value::Null => "{}".to_string(),
                a => a.to_string(),
            };
            calls.push(json!({"id": id, "type": "function", "function": {"name": call["name"], "arguments": args}}));
        }
    }
    (text, calls)
}

/// The text of a candidate's thought parts (Gemini's thought summaries, present when the
/// request set `thinkingConfig.includeThoughts`); [`gemini_message`] leaves them out.
pub fn gemini_thoughts(candidate: &Value) -> String {
    candidate["content"]["parts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p.get("thought") == Some(&Value::Bool(true)))
        .filter_map(|p| p["text"].as_str())
        .collect()
}

/// Gemini `GenerateContentResponse` → OpenAI chat.completion.
pub fn gemini_to_openai(resp: &Value, model: &str) -> Value {
    let cand = &resp["candidates"][0];
    let (text, calls) = gemini_message(cand);
    let has_calls = !calls.is_empty();
    // A blocked prompt has no candidate, only `promptFeedback.blockReason`.
    let finish = if cand.is_null() && resp["promptFeedback"].get("blockReason").is_some() {
        json!("content_filter")
    } else {
        gemini_finish(cand["finishReason"].as_str(), has_calls)
    };
    openai_completion(
        format!("chatcmpl-{}", resp["responseId"].as_str().unwrap_or("gemini")),
        resp.get("modelVersion").cloned().unwrap_or(json!(model)),
        assistant_message(text, calls),
        finish,
        openai_usage(usage::gemini_usage(&resp["usageMetadata"])),
    )
}

/// Google error body (`{"error":{"code","message","status"}}`) → OpenAI error body.
pub fn gemini_error_to_openai(body: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let typ = match v["error"]["status"].as_str() {
        Some("INVALID_ARGUMENT") | Some("FAILED_PRECONDITION") | Some("NOT_FOUND") => "invalid_request_error",
        Some("UNAUTHENTICATED") => "authentication_error",
        Some("PERMISSION_DENIED") => "permission_error",
        Some("RESOURCE_EXHAUSTED") => "rate_limit_error",
        _ => "api_error",
    };
    openai_error(&v, typ, &v["error"]["status"])
}

/// Gemini `streamGenerateContent?alt=sse` → OpenAI chunks.
pub struct GeminiStreamToOpenAi {
    splitter: sse::Splitter,
    /// `chatcmpl-` + Gemini's `responseId` (as in JSON answers) once the first event names it.
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    /// Thought parts become `reasoning_content` deltas (see [`Self::with_thoughts`]).
    thoughts: bool,
    started: bool,
    calls: usize,
    usage: Value,
}

impl GeminiStreamToOpenAi {
    pub fn new(model: &str, include_usage: bool) -> Self {
        GeminiStreamToOpenAi {
            splitter: sse::Splitter::new(usage::MAX_SSE_EVENT),
            id: "chatcmpl-gemini".into(),
            model: model.to_string(),
            created: now(),
            include_usage,
            thoughts: false,
            started: false,
            calls: 0,
            usage: Value::Null,
        }
    }

    /// Thought parts become `reasoning_content` deltas, before the event's text (the chat step
    /// of a Responses client, whose `reasoning` item they become); otherwise they are left out.
    pub fn with_thoughts(mut self) -> Self {
        self.thoughts = true;
        self
    }

    fn chunk(&self, delta: Value, finish: Value) -> String {
        let c = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    }

    /// Feeds upstream bytes; returns the client's bytes. `end` closes the stream.
    pub fn feed(&mut self, bytes: &[u8]) -> Bytes {
        let mut out = String::new();
        for ev in self.splitter.feed(bytes) {
            let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
                continue;
            };
            if v.get("error").is_some() {
                out += &format!("data: {}\n\n", gemini_error_to_openai(ev.data.as_bytes()));
                continue;
            }
            if !self.started {
                self.started = true;
                if let Some(id) = v["responseId"].as_str() {
                    self.id = format!("chatcmpl-{id}");
                }
                out += &self.chunk(json!({"role": "assistant", "content": ""}), Value::Null);
            }
            let cand = &v["candidates"][0];
            if self.thoughts {
                let thoughts = gemini_thoughts(cand);
                if !thoughts.is_empty() {
                    out += &self.chunk(json!({"reasoning_content": thoughts}), Value::Null);
                }
            }
            let (text, calls) = gemini_message(cand);
            if !text.is_empty() {
                out += &self.chunk(json!({"content": text}), Value::Null);
            }
            let has_calls = !calls.is_empty() || self.calls > 0;
            for mut call in calls {
                // Numbered across the stream: calls arrive in separate events.
                let id = call["id"].as_str().unwrap_or("");
                let n = format!("call_{}", self.calls);
                call["id"] = json!(match id.split_once(SIGNATURE_IN_ID) {
                    Some((_, sig)) => format!("{n}{SIGNATURE_IN_ID}{sig}"),
                    None if id.starts_with("call_") => n,
                    None => id.to_string(),
                });
                call["index"] = json!(self.calls);
                self.calls += 1;
                out += &self.chunk(json!({"tool_calls": [call]}), Value::Null);
            }
            if let Some(u) = v.get("usageMetadata") {
                self.usage = u.clone();
            }
            let blocked = cand.is_null() && v["promptFeedback"].get("blockReason").is_some();
            let reason = if blocked {
                Some("BLOCKLIST")
            } else {
                cand["finishReason"].as_str()
            };
            if let Some(reason) = reason {
                out += &self.chunk(json!({}), gemini_finish(Some(reason), has_calls));
                if self.include_usage {
                    let u = openai_usage(usage::gemini_usage(&self.usage));
                    out += &openai_usage_chunk(&self.id, self.created, &json!(self.model), u);
                }
                out += "data: [DONE]\n\n";
            }
        }
        Bytes::from(out)
    }
}

/// OpenAI embeddings request → Gemini `batchEmbedContents` request. Returns it and whether the
/// client asked for base64 vectors (the OpenAI SDK does by default).
pub fn openai_embeddings_to_gemini(body: &[u8], model: &str) -> Result<(Value, bool), Unsupported> {
    let (texts, dimensions, base64) = embedding_inputs(body, "Gemini embeddings")?;
    let requests: Vec<Value> = texts
        .iter()
        .map(|t| {
            let mut r = json!({"model": format!("models/{model}"), "content": {"parts": [{"text": t}]}});
            if let Some(d) = &dimensions {
                r["outputDimensionality"] = d.clone();
            }
            r
        })
        .collect();
    Ok((json!({"requests": requests}), base64))
}

/// Gemini `batchEmbedContents` answer → OpenAI embeddings list. Gemini reports no token counts
/// for embeddings, so the usage is zero (and the record's usage stays unknown).
pub fn gemini_embeddings_to_openai(resp: &Value, model: &str, base64: bool) -> Value {
    let vectors = resp["embeddings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["values"]);
    openai_embedding_list(vectors, model, base64, 0)
}

// === OpenAI embeddings client, Vertex AI text embedding models (`:predict`) ===

/// Inputs per `:predict` call: `gemini-embedding-*` models on Vertex take one instance per
/// request, the `text-embedding-*` family up to 250
/// (<https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/text-embeddings-api>).
/// Tokens one `:predict` call may carry (all its instances together).
const VERTEX_TOKENS_PER_CALL: usize = 20_000;

pub fn vertex_instances_per_call(model: &str) -> usize {
    if model.starts_with("gemini-embedding") {
        1
    } else {
        250
    }
}

/// OpenAI embeddings request → Vertex `:predict` bodies (`{"instances": [{"content"}],
/// "parameters": {"outputDimensionality"}}`), as many inputs per body as the model takes.
/// The caller sends them and combines the answers with [`vertex_combined`].
pub fn openai_embeddings_to_vertex(body: &[u8], model: &str) -> Result<(Vec<Value>, bool), Unsupported> {
    let (texts, dimensions, base64) = embedding_inputs(body, "Vertex AI embeddings")?;
    // Batches also stay under the per-request token limit (20,000), estimated at a token per
    // three bytes of text.
    let per_call = vertex_instances_per_call(model);
    let mut batches: Vec<&[String]> = Vec::new();
    let (mut start, mut tokens) = (0, 0);
    for (i, t) in texts.iter().enumerate() {
        let estimate = t.len().div_ceil(3);
        if i > start && (i - start == per_call || tokens + estimate > VERTEX_TOKENS_PER_CALL) {
            batches.push(&texts[start..i]);
            (start, tokens) = (i, 0);
        }
        tokens += estimate;
    }
    batches.push(&texts[start..]);
    let bodies = batches
        .into_iter()
        .map(|chunk| {
            let instances: Vec<Value> = chunk.iter().map(|t| json!({"content": t})).collect();
            // OpenAI refuses an over-long input; Vertex would cut it silently unless told not to.
            let mut b = json!({"instances": instances, "parameters": {"autoTruncate": false}});
            if let Some(d) = &dimensions {
                b["parameters"]["outputDimensionality"] = d.clone();
            }
            b
        })
        .collect();
    Ok((bodies, base64))
}

/// `:predict` answers, in input order, as one body: every `predictions` entry, and the sum of
/// their `statistics.token_count` as a Gemini-shaped `usageMetadata` (what the meter reads).
pub fn vertex_combined(answers: &[Value]) -> Value {
    let predictions: Vec<&Value> = answers
        .iter()
        .flat_map(|a| a["predictions"].as_array().into_iter().flatten())
        .collect();
    let tokens = predictions
        .iter()
        .filter_map(|p| p["embeddings"]["statistics"]["token_count"].as_u64())
        .fold(0u64, u64::saturating_add);
    json!({"predictions": predictions, "usageMetadata": {"promptTokenCount": tokens, "totalTokenCount": tokens}})
}

/// [`vertex_combined`] → OpenAI embeddings list with `prompt_tokens`.
pub fn vertex_embeddings_to_openai(combined: &Value, model: &str, base64: bool) -> Value {
    let vectors = combined["predictions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| &p["embeddings"]["values"]);
    let tokens = combined["usageMetadata"]["promptTokenCount"].as_u64().unwrap_or(0);
    openai_embedding_list(vectors, model, base64, tokens)
}

/// `generateContent` (or the SSE stream) of `model`: on Vertex's project path when the backend
/// names a project and region, else the Gemini API's.
pub(super) fn gemini_path(backend: &BackendSpec<'_>, model: &str, stream: bool) -> String {
    let method = if stream {
        "streamGenerateContent?alt=sse"
    } else {
        "generateContent"
    };
    match (backend.project, backend.region) {
        (Some(project), Some(region)) => {
            let model = path_segment(vertex_model(model));
            format!("/v1/projects/{project}/locations/{region}/publishers/google/models/{model}:{method}")
        }
        _ => format!("/v1beta/models/{}:{method}", path_segment(model)),
    }
}

/// A Google model as Vertex's publisher path names it: clients of Vertex's OpenAI-compatible
/// endpoint say `google/gemini-2.5-flash`, and the path already names the publisher
/// (<https://cloud.google.com/vertex-ai/generative-ai/docs/migrate/openai/overview>).
fn vertex_model(model: &str) -> &str {
    model.strip_prefix("google/").unwrap_or(model)
}

/// The model named in translated answers when the backend does not say.
fn model_or(model: &str, default: &str) -> String {
    if model.is_empty() { default } else { model }.to_string()
}

/// OpenAI chat completions served by the Gemini API or Vertex AI.
pub struct OpenAiChatToGemini;

impl Direction for OpenAiChatToGemini {
    fn name(&self) -> &'static str {
        "openai_chat->gemini"
    }

    fn applies(&self, client: ApiSchema, op: Operation, backend: ApiSchema) -> bool {
        client == ApiSchema::Openai
            && op == Operation::ChatCompletions
            && matches!(backend, ApiSchema::Gemini | ApiSchema::Vertex)
    }

    fn request(&self, req: &ClientRequest<'_>, backend: &BackendSpec<'_>) -> Result<Upstream, Unsupported> {
        let (bytes, _) = req.json_body()?;
        let translated = openai_chat_to_gemini(bytes)?;
        let model = req.model().to_string();
        let hint = model.clone();
        Ok(Upstream::translated(
            gemini_path(backend, &model, req.stream()),
            json_body(&translated),
            (ApiSchema::Gemini, Operation::ChatCompletions),
            Some(Box::new(GeminiStreamToOpenAi::new(
                &model_or(&model, "gemini"),
                req.include_usage(),
            ))),
            json_translator(move |v| gemini_to_openai(v, &hint), |b, _| gemini_error_to_openai(b)),
        ))
    }
}

impl StreamTranslator for GeminiStreamToOpenAi {
    fn feed(&mut self, bytes: &[u8]) -> Bytes {
        GeminiStreamToOpenAi::feed(self, bytes)
    }
}

/// OpenAI embeddings served by the Gemini API's `batchEmbedContents`.
pub struct OpenAiEmbeddingsToGemini;

impl Direction for OpenAiEmbeddingsToGemini {
    fn name(&self) -> &'static str {
        "openai_embeddings->gemini"
    }

    fn applies(&self, client: ApiSchema, op: Operation, backend: ApiSchema) -> bool {
        (client, op, backend) == (ApiSchema::Openai, Operation::Embeddings, ApiSchema::Gemini)
    }

    fn request(&self, req: &ClientRequest<'_>, _: &BackendSpec<'_>) -> Result<Upstream, Unsupported> {
        let (bytes, _) = req.json_body()?;
        let model = req.model().to_string();
        let (translated, base64) = openai_embeddings_to_gemini(bytes, &model)?;
        Ok(Upstream::translated(
            format!("/v1beta/models/{}:batchEmbedContents", path_segment(&model)),
            json_body(&translated),
            (ApiSchema::Gemini, Operation::Embeddings),
            None,
            json_translator(
                move |v| gemini_embeddings_to_openai(v, &model, base64),
                |b, _| gemini_error_to_openai(b),
            ),
        ))
    }
}

/// OpenAI embeddings served by Vertex AI text embedding models (`:predict`), batched per call
/// as the model allows.
pub struct OpenAiEmbeddingsToVertex;

impl Direction for OpenAiEmbeddingsToVertex {
    fn name(&self) -> &'static str {
        "openai_embeddings->vertex_predict"
    }

    fn applies(&self, client: ApiSchema, op: Operation, backend: ApiSchema) -> bool {
        (client, op, backend) == (ApiSchema::Openai, Operation::Embeddings, ApiSchema::Vertex)
    }

    fn request(&self, req: &ClientRequest<'_>, backend: &BackendSpec<'_>) -> Result<Upstream, Unsupported> {
        let (bytes, _) = req.json_body()?;
        let model = req.model().to_string();
        let (bodies, base64) = openai_embeddings_to_vertex(bytes, &model)?;
        Ok(Upstream::translated(
            format!(
                "/v1/projects/{}/locations/{}/publishers/google/models/{}:predict",
                backend.project.unwrap_or_default(),
                backend.region.unwrap_or_default(),
                path_segment(vertex_model(&model))
            ),
            UpstreamBody::FanOut {
                bodies: bodies.iter().map(|b| Bytes::from(b.to_string())).collect(),
                combine: vertex_combined,
            },
            (ApiSchema::Gemini, Operation::Embeddings),
            None,
            json_translator(
                move |v| vertex_embeddings_to_openai(v, &model, base64),
                |b, _| gemini_error_to_openai(b),
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vertex_paths_take_the_openai_compatible_google_model_names() {
        let vertex = BackendSpec {
            name: "vertex",
            schema: ApiSchema::Vertex,
            project: Some("p-1"),
            region: Some("us-central1"),
            deployment: None,
            api_version: "",
        };
        let want = "/v1/projects/p-1/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent";
        assert_eq!(gemini_path(&vertex, "google/gemini-2.5-flash", false), want);
        assert_eq!(gemini_path(&vertex, "gemini-2.5-flash", false), want);
        let gemini = BackendSpec {
            schema: ApiSchema::Gemini,
            project: None,
            region: None,
            ..vertex
        };
        assert_eq!(
            gemini_path(&gemini, "google/x", true),
            "/v1beta/models/google%2Fx:streamGenerateContent?alt=sse"
        );
    }
}

//! `GET /v1/models` answered by Tollgate for a provider with `listModels: routes`: the models
//! the calling workload's routes allow, in the provider's own shape, so a workload only sees
//! what it may use. A model is listed when some route that matches this workload (its
//! provider, headers and workload conditions) would serve it for one of the provider's
//! inference operations. Candidates are the routes' exact model names and the priced models
//! (the price table) their globs match; a route without a model condition adds none, since
//! "any model" cannot be listed. `GET /v1/models/{id}` answers the one model, or 404.

use http::{HeaderMap, Response, StatusCode};
use serde_json::{json, Value};

use super::{ctx::RequestCtx, ProxyError, RespBody};
use crate::{
    config::{Config, ListModels},
    llm::{ApiSchema, Operation},
    matching::WorkloadFacts,
    route::{self, RouteInput},
};

/// The answer to a models request, when this provider's are Tollgate's to answer.
pub(super) fn answer(ctx: &mut RequestCtx, headers: &HeaderMap) -> Option<Result<Response<RespBody>, ProxyError>> {
    let config = &ctx.snapshot.config;
    let provider = &config.providers[ctx.provider?];
    if ctx.operation != Operation::Models || ctx.method != "GET" || provider.list_models != ListModels::Routes {
        return None;
    }
    let listed = allowed(
        config,
        &provider.name,
        provider.schema,
        headers,
        ctx.conn.workload.facts(),
    );
    let rest = ctx.path.rsplit_once("/models").map_or("", |(_, rest)| rest);
    let body = match rest.trim_matches('/') {
        "" => list(provider.schema, &provider.name, &listed),
        id => match listed.iter().find(|m| m.as_str() == id) {
            Some(m) => one(provider.schema, &provider.name, m),
            None => return Some(Err(ProxyError::ModelNotListed(id.to_string()))),
        },
    };
    ctx.rule = super::ctx::Rule::Gateway;
    let resp = Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(super::full(body.to_string().into()))
        .expect("a static response builds");
    Some(Ok(resp))
}

/// The models a workload may use on `provider`, sorted.
pub fn allowed(
    config: &Config,
    provider: &str,
    schema: ApiSchema,
    headers: &HeaderMap,
    workload: WorkloadFacts<'_>,
) -> Vec<String> {
    let mut candidates: Vec<String> = Vec::new();
    for r in config.routes.iter() {
        for glob in &r.matches.models {
            match glob.literal() {
                Some(name) => candidates.push(name.to_string()),
                None => candidates.extend(config.prices.names().filter(|n| glob.matches(n)).map(str::to_string)),
            }
        }
    }
    candidates.sort();
    candidates.dedup();
    // Anthropic clients: messages and count_tokens; every other: OpenAI's inference paths.
    let schema = match schema {
        ApiSchema::Anthropic => ApiSchema::Anthropic,
        _ => ApiSchema::Openai,
    };
    let operations: Vec<(Operation, &str)> = Operation::exact(schema).filter(|(op, _)| op.is_inference()).collect();
    candidates.retain(|model| {
        operations.iter().any(|&(operation, path)| {
            let input = RouteInput {
                provider: Some(provider),
                model: Some(model),
                headers,
                workload,
                operation,
                method: "POST",
                path,
            };
            route::select_route(&config.routes, &input).is_some()
        })
    });
    candidates
}

fn list(schema: ApiSchema, provider: &str, models: &[String]) -> Value {
    let data: Vec<Value> = models.iter().map(|m| one(schema, provider, m)).collect();
    match schema {
        ApiSchema::Anthropic => json!({
            "data": data,
            "has_more": false,
            "first_id": models.first(),
            "last_id": models.last(),
        }),
        _ => json!({"object": "list", "data": data}),
    }
}

/// One model in the provider's shape (OpenAI's `model` object, Anthropic's `ModelInfo`).
fn one(schema: ApiSchema, provider: &str, model: &str) -> Value {
    match schema {
        ApiSchema::Anthropic => json!({
            "type": "model",
            "id": model,
            "display_name": model,
            "created_at": "1970-01-01T00:00:00Z",
        }),
        _ => json!({"id": model, "object": "model", "created": 0, "owned_by": provider}),
    }
}

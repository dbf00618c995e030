//! Same API on both sides: the body goes as received, rewritten only when the route overrides
//! `model` or Tollgate needs stream usage the client did not ask for. Azure OpenAI takes the
//! same bodies on its deployment paths.

use super::direction::*;
use crate::llm::{self, ApiSchema, Operation};

/// The client's API is the backend's.
pub struct Passthrough;

impl Direction for Passthrough {
    fn name(&self) -> &'static str {
        "none"
    }

    fn applies(&self, client: ApiSchema, _: Operation, backend: ApiSchema) -> bool {
        client == backend
    }

    fn request(&self, req: &ClientRequest<'_>, _: &BackendSpec<'_>) -> Result<Upstream, super::Unsupported> {
        same_body(req, req.path_and_query.to_string())
    }
}

/// OpenAI chat, completions and embeddings on Azure OpenAI deployments
/// (<https://learn.microsoft.com/azure/ai-services/openai/reference>).
pub struct OpenAiToAzure;

impl Direction for OpenAiToAzure {
    fn name(&self) -> &'static str {
        "openai->azure_openai"
    }

    fn applies(&self, client: ApiSchema, op: Operation, backend: ApiSchema) -> bool {
        client == ApiSchema::Openai
            && backend == ApiSchema::AzureOpenai
            && matches!(
                op,
                Operation::ChatCompletions | Operation::Completions | Operation::Embeddings
            )
    }

    fn request(&self, req: &ClientRequest<'_>, backend: &BackendSpec<'_>) -> Result<Upstream, super::Unsupported> {
        let deployment = backend.deployment.unwrap_or(req.model());
        let op = match req.operation {
            Operation::Completions => "completions",
            Operation::Embeddings => "embeddings",
            _ => "chat/completions",
        };
        let path = format!(
            "/openai/deployments/{}/{op}?api-version={}",
            path_segment(deployment),
            backend.api_version
        );
        same_body(req, path)
    }
}

/// OpenAI Responses on Azure OpenAI: Azure serves it only on its v1 API, `/openai/v1/responses`,
/// which takes no `api-version` and names the deployment in the body's `model`
/// (<https://learn.microsoft.com/azure/ai-foundry/openai/how-to/responses>).
pub struct ResponsesToAzure;

impl Direction for ResponsesToAzure {
    fn name(&self) -> &'static str {
        "openai_responses->azure_openai"
    }

    fn applies(&self, client: ApiSchema, op: Operation, backend: ApiSchema) -> bool {
        (client, op, backend) == (ApiSchema::Openai, Operation::Responses, ApiSchema::AzureOpenai)
    }

    fn request(&self, req: &ClientRequest<'_>, backend: &BackendSpec<'_>) -> Result<Upstream, super::Unsupported> {
        let req = ClientRequest {
            model_override: backend.deployment.or(req.model_override),
            ..*req
        };
        same_body(&req, "/openai/v1/responses".into())
    }
}

/// The client's body, rewritten only where needed, metered in the client's own schema.
fn same_body(req: &ClientRequest<'_>, path: String) -> Result<Upstream, super::Unsupported> {
    let (body, add_usage) = match req.body {
        None => (UpstreamBody::Client, false),
        Some((bytes, parsed)) => {
            let model = req.model_override.filter(|m| parsed.model.as_deref() != Some(*m));
            // Stream usage is only reported when asked for: ask on the client's behalf, and
            // take the extra chunk out of what it sees.
            let add_usage = req.schema == ApiSchema::Openai
                && matches!(req.operation, Operation::ChatCompletions | Operation::Completions)
                && parsed.stream
                && parsed.include_usage != Some(true);
            let body = if model.is_some() || add_usage {
                llm::rewrite(bytes, model, add_usage).map_err(|e| super::Unsupported(e.to_string()))?
            } else {
                bytes.clone()
            };
            (UpstreamBody::Bytes(body), add_usage)
        }
    };
    Ok(Upstream {
        path,
        body,
        json_content_type: false,
        default_headers: &[],
        usage_requested_by_gateway: add_usage,
        answer: Answer {
            meter: (req.schema, req.operation),
            strip_usage: add_usage,
            translate: None,
        },
    })
}

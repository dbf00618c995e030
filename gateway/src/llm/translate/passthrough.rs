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

/// OpenAI chat, completions, embeddings, audio and images on Azure OpenAI deployments
/// (<https://learn.microsoft.com/azure/ai-services/openai/reference>). A client that already
/// calls a deployment path keeps its path and `api-version` unless the backend names its own
/// deployment or the route another model.
pub struct OpenAiToAzure;

impl Direction for OpenAiToAzure {
    fn name(&self) -> &'static str {
        "openai->azure_openai"
    }

    fn applies(&self, client: ApiSchema, op: Operation, backend: ApiSchema) -> bool {
        client == ApiSchema::Openai && backend == ApiSchema::AzureOpenai && azure_operation(op).is_some()
    }

    fn request(&self, req: &ClientRequest<'_>, backend: &BackendSpec<'_>) -> Result<Upstream, super::Unsupported> {
        let client_path = req.path_and_query.split('?').next().unwrap_or_default();
        if backend.deployment.is_none() && req.model_override.is_none() && llm::azure_deployment(client_path).is_some()
        {
            return same_body(req, req.path_and_query.to_string());
        }
        let deployment = backend.deployment.unwrap_or(req.model());
        let op = azure_operation(req.operation).unwrap_or("chat/completions");
        let path = format!(
            "/openai/deployments/{}/{op}?api-version={}",
            path_segment(deployment),
            backend.api_version
        );
        same_body(req, path)
    }
}

/// The path of an operation under an Azure deployment (its OpenAI path after `/v1/`).
fn azure_operation(op: Operation) -> Option<&'static str> {
    op.on_azure_deployment()
        .then(|| op.v1_path()?.strip_prefix("/v1/"))
        .flatten()
}

/// A form's head with the route's model for this backend in its `model` field (the head as
/// read when nothing changes).
fn form_body(req: &ClientRequest<'_>, form: FormHead<'_>) -> UpstreamBody {
    let changed = req.model_override.filter(|m| form.parsed.model.as_deref() != Some(*m));
    match (changed, form.model_field) {
        (Some(model), Some(field)) => UpstreamBody::ClientHead(llm::multipart::replace(form.head, field, model).into()),
        // Azure takes the model from the path: a form without one goes as it came.
        _ => UpstreamBody::Client,
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
        None => (req.form.map_or(UpstreamBody::Client, |f| form_body(req, f)), false),
        Some((bytes, parsed)) => {
            // A model taken from an Azure deployment path is not put into the body.
            let model = req
                .model_override
                .filter(|m| parsed.model.as_deref() != Some(*m) && !parsed.model_from_path);
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

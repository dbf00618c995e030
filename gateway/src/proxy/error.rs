//! Every way a request can fail before its response starts, each with its label, its side
//! (pingora's ErrorSource) and its status, rendered in the client's own error shape.

use std::time::Duration;

use http::{header, HeaderValue, Response, StatusCode};
use serde::Serialize;

use super::{full, RespBody};
use crate::llm::{self, ApiSchema, ErrorKind};

/// Where a failure came from.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Client,
    Upstream,
    Proxy,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
            Side::Proxy => "proxy",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("{0}")]
    BadBody(llm::ParseError),
    #[error("could not read the request body: {0}")]
    ClientBody(String),
    #[error("request path {0:?} is ambiguous (dot segments, empty segments or encoded separators)")]
    BadPath(String),
    #[error("{named:?} is not served at this destination (it belongs to provider {provider}; {destination} is claimed by {claimed_by})")]
    Misdirected {
        /// The SNI or Host the client sent.
        named: String,
        /// The provider that name belongs to.
        provider: String,
        destination: String,
        /// Providers that claim the destination, comma-separated (or `none`).
        claimed_by: String,
    },
    #[error("provider {provider} is in {mode} mode: its requests are not proxied")]
    NotIntercepted { provider: String, mode: &'static str },
    #[error("{method} {path} ({operation}) is not allowed: no route allows this operation (routes allow inference operations unless match.operations or match.paths say otherwise)")]
    OperationNotAllowed {
        method: String,
        path: String,
        operation: &'static str,
    },
    #[error("no route for this request ({0}) and the provider has no default backend")]
    NoRoute(String),
    #[error("model {0:?} is not available to this workload (listModels: routes)")]
    ModelNotListed(String),
    #[error("credential {0} for the backend is not available")]
    CredentialMissing(String),
    #[error("backend {backend} unreachable: {message}")]
    Upstream { backend: String, message: String },
    #[error("backend {backend} sent no response headers within {timeout:?}")]
    UpstreamTimeout { backend: String, timeout: Duration },
    #[error("the whole request exceeded its {timeout:?} budget")]
    TotalTimeout { timeout: Duration },
    #[error("{0}")]
    NoBackend(String),
    #[error("limit {limit} exceeded ({kind}); retry in {retry_after}s")]
    LimitExceeded {
        limit: String,
        kind: &'static str,
        retry_after: u64,
    },
    #[error("{0}: refusing requests (limitStore.failMode: closed)")]
    LimitStore(String),
    #[error("{0}")]
    Untranslatable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ProxyError {
    /// Metric and record label. Exhaustive on purpose: a new variant must be classified here.
    pub fn reason(&self) -> &'static str {
        match self {
            ProxyError::BodyTooLarge { .. } => "body_too_large",
            ProxyError::BadBody(_) => "bad_body",
            ProxyError::ClientBody(_) => "client_body",
            ProxyError::BadPath(_) => "bad_path",
            ProxyError::Misdirected { .. } => "misdirected",
            ProxyError::NotIntercepted { .. } => "provider_not_intercepted",
            ProxyError::OperationNotAllowed { .. } => "operation_not_allowed",
            ProxyError::NoRoute(_) => "no_route",
            ProxyError::ModelNotListed(_) => "model_not_listed",
            ProxyError::CredentialMissing(_) => "credential_missing",
            ProxyError::Upstream { .. } => "upstream_unreachable",
            ProxyError::UpstreamTimeout { .. } => "upstream_timeout",
            ProxyError::TotalTimeout { .. } => "total_timeout",
            ProxyError::NoBackend(_) => "no_backend_available",
            ProxyError::LimitExceeded { .. } => "limit_exceeded",
            ProxyError::LimitStore(_) => "limit_store_unavailable",
            ProxyError::Untranslatable(_) => "untranslatable",
            ProxyError::Internal(_) => "internal",
        }
    }

    pub fn side(&self) -> Side {
        match self {
            ProxyError::BodyTooLarge { .. }
            | ProxyError::BadBody(_)
            | ProxyError::ClientBody(_)
            | ProxyError::BadPath(_)
            | ProxyError::Misdirected { .. }
            | ProxyError::NotIntercepted { .. }
            | ProxyError::OperationNotAllowed { .. }
            | ProxyError::LimitExceeded { .. }
            | ProxyError::ModelNotListed(_)
            | ProxyError::Untranslatable(_) => Side::Client,
            ProxyError::Upstream { .. }
            | ProxyError::UpstreamTimeout { .. }
            | ProxyError::TotalTimeout { .. }
            | ProxyError::NoBackend(_) => Side::Upstream,
            ProxyError::NoRoute(_)
            | ProxyError::CredentialMissing(_)
            | ProxyError::LimitStore(_)
            | ProxyError::Internal(_) => Side::Proxy,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BadBody(_) | ProxyError::ClientBody(_) | ProxyError::BadPath(_) => StatusCode::BAD_REQUEST,
            ProxyError::Misdirected { .. } => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::NotIntercepted { .. } | ProxyError::OperationNotAllowed { .. } => StatusCode::FORBIDDEN,
            ProxyError::NoRoute(_) | ProxyError::ModelNotListed(_) => StatusCode::NOT_FOUND,
            ProxyError::CredentialMissing(_) | ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout { .. } | ProxyError::TotalTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::NoBackend(_) | ProxyError::LimitStore(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::LimitExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::Untranslatable(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn kind(&self) -> ErrorKind {
        match self {
            ProxyError::BodyTooLarge { .. } => ErrorKind::TooLarge,
            ProxyError::BadBody(_) | ProxyError::ClientBody(_) | ProxyError::BadPath(_) => ErrorKind::InvalidRequest,
            ProxyError::Misdirected { .. } => ErrorKind::Misdirected,
            ProxyError::NotIntercepted { .. } | ProxyError::OperationNotAllowed { .. } => ErrorKind::PermissionDenied,
            ProxyError::NoRoute(_) | ProxyError::ModelNotListed(_) => ErrorKind::NotFound,
            ProxyError::CredentialMissing(_) | ProxyError::Internal(_) => ErrorKind::Internal,
            ProxyError::Upstream { .. } => ErrorKind::Upstream,
            ProxyError::NoBackend(_) | ProxyError::LimitStore(_) => ErrorKind::Unavailable,
            ProxyError::UpstreamTimeout { .. } | ProxyError::TotalTimeout { .. } => ErrorKind::Timeout,
            ProxyError::LimitExceeded { .. } => ErrorKind::RateLimited,
            ProxyError::Untranslatable(_) => ErrorKind::InvalidRequest,
        }
    }

    /// The error as the client's API would have said it.
    pub(super) fn to_response(&self, schema: ApiSchema) -> Response<RespBody> {
        let body = llm::error_body(schema, self.kind(), &format!("tollgate: {self}"));
        let mut resp = Response::new(full(body));
        *resp.status_mut() = self.status();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let ProxyError::LimitExceeded { retry_after, .. } = self {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
        }
        resp
    }
}

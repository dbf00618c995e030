//! Phase 1, identify: which provider a request belongs to, and what operation it is.
//!
//! The kernel's record decides: the provider must be one that claims the original destination
//! (`ip:port`) the connect program saw. What the workload writes, the SNI or `Host`, only
//! chooses among those (providers behind one CDN share addresses). A name of a governed
//! provider that does not claim the destination is refused with 421, so a workload cannot
//! reach one provider's address and get another provider's credential.

use http::{header, Request};

use super::{ctx::RequestCtx, ProxyError};
use crate::{
    config::{Config, Mode},
    llm::Operation,
};

/// Sets `ctx.provider`, `ctx.schema` and `ctx.operation`, or refuses the request.
pub(super) fn identify<B>(ctx: &mut RequestCtx, req: &Request<B>) -> Result<(), ProxyError> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .map(normalize);
    ctx.host = host.clone();
    let provider = provider(ctx, host.as_deref())?;
    let config = &ctx.snapshot.config;
    ctx.provider = Some(provider);
    ctx.schema = config.providers[provider].schema;
    ctx.operation = operation(config, provider, req.uri().path())?;
    Ok(())
}

/// The operation of a request on `path` for `provider` (index into `config.providers`), or
/// why the provider's requests are not served here: its mode is not `intercept`, or the path
/// could read as another. Pure: `tollgate explain` asks it too.
pub fn operation(config: &Config, provider: usize, path: &str) -> Result<Operation, ProxyError> {
    let p = &config.providers[provider];
    if p.mode != Mode::Intercept {
        return Err(ProxyError::NotIntercepted {
            provider: p.name.clone(),
            mode: p.mode.as_str(),
        });
    }
    if ambiguous(path) {
        return Err(ProxyError::BadPath(path.to_string()));
    }
    if p.kind == crate::config::ProviderKind::Mcp {
        return Ok(Operation::Mcp);
    }
    Ok(Operation::detect_under(p.schema, p.base_path.as_deref(), path))
}

/// The provider among those claiming the destination, chosen by SNI (TLS) or `Host`.
fn provider(ctx: &mut RequestCtx, host: Option<&str>) -> Result<usize, ProxyError> {
    let config = &ctx.snapshot.config;
    let claimants: Vec<usize> = ctx
        .conn
        .claimants
        .iter()
        .filter_map(|name| config.providers.iter().position(|p| &p.name == name))
        .collect();
    // The kernel's own pick (first in file order) names the error shape until a name decides.
    if let Some(first) = claimants.first() {
        ctx.schema = config.providers[*first].schema;
    }
    let sni = ctx.conn.sni.as_deref().map(normalize);
    // Over TLS the SNI chose the certificate; a Host naming another governed provider is
    // domain fronting and refused the same way.
    let names = [sni.as_deref(), host].into_iter().flatten();
    let mut chosen = None;
    for name in names {
        let Some(named) = config.provider_by_hostname(name) else {
            continue;
        };
        if !claimants.contains(&named) || chosen.is_some_and(|c| c != named) {
            return Err(misdirected(ctx, name, named, &claimants));
        }
        chosen = Some(named);
    }
    match chosen.or_else(|| claimants.first().copied()) {
        Some(p) => Ok(p),
        None => Err(ProxyError::Misdirected {
            named: host.unwrap_or("").to_string(),
            provider: "none".into(),
            destination: ctx.conn.orig.0.to_string(),
            claimed_by: "none".into(),
        }),
    }
}

fn misdirected(ctx: &RequestCtx, name: &str, named: usize, claimants: &[usize]) -> ProxyError {
    let config = &ctx.snapshot.config;
    let claimed_by = claimants
        .iter()
        .map(|i| config.providers[*i].name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    ProxyError::Misdirected {
        named: name.to_string(),
        provider: config.providers[named].name.clone(),
        destination: ctx.conn.orig.0.to_string(),
        claimed_by: if claimed_by.is_empty() {
            "none".into()
        } else {
            claimed_by
        },
    }
}

/// A host name as compared with provider hostnames: no port, no trailing dot, lowercase.
pub fn normalize(host: &str) -> String {
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host.split(':').next().unwrap_or(host),
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Paths that a backend (or a hop before it) could read as another path: dot segments, empty
/// segments, backslashes and percent-encoded separators or dots. Real SDKs never send them.
pub(super) fn ambiguous(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return true;
    };
    let lower = path.to_ascii_lowercase();
    if path.contains('\\') || ["%2e", "%2f", "%5c", "%00"].iter().any(|e| lower.contains(e)) {
        return true;
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len() - 1;
    segments
        .iter()
        .enumerate()
        .any(|(i, seg)| *seg == "." || *seg == ".." || (seg.is_empty() && i != last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_could_mean_another_path_are_ambiguous() {
        for p in [
            "/v1/models/../files",
            "/v1/chat/completions/./",
            "//v1/files",
            "/v1//files",
            "/v1/models/%2e%2e/files",
            "/v1/models/..%2Ffiles",
            "/v1\\files",
            "v1/files",
        ] {
            assert!(ambiguous(p), "{p}");
        }
        for p in [
            "/v1/chat/completions",
            "/v1/chat/completions/",
            "/v1/models/gpt-4o",
            "/",
        ] {
            assert!(!ambiguous(p), "{p}");
        }
    }

    #[test]
    fn hosts_are_compared_without_port_dot_or_case() {
        assert_eq!(normalize("API.OpenAI.com:443"), "api.openai.com");
        assert_eq!(normalize("api.openai.com."), "api.openai.com");
        assert_eq!(normalize("[::1]:8080"), "::1");
    }
}

//! AIGatewayRoute rules → `routes`; `llmRequestCosts` with BackendTrafficPolicy rate limits →
//! `limits`.

use std::collections::HashMap;

use super::{duration, raw, unknown_fields, Objects, COST_NAMESPACE, MODEL_HEADER};
use crate::import::{BackendRef, Item, Limit, LimitMatch, Output, Report, Route, RouteMatch, Timeouts};

/// Envoy AI Gateway's request timeout when a rule sets none.
const EAG_DEFAULT_REQUEST_TIMEOUT: &str = "60s";

/// The Tollgate routes each AIGatewayRoute became, by (namespace, name).
pub(super) type RouteNames = HashMap<(String, String), Vec<String>>;

pub(super) fn routes(
    objs: &Objects,
    converted: &super::Converted,
    out: &mut Output,
    report: &mut Report,
) -> RouteNames {
    let mut names = RouteNames::new();
    for r in &objs.routes {
        let object = format!("AIGatewayRoute/{}", r.name);
        let s = &r.spec;
        unknown_fields(report, &object, "spec.", &s.extra);
        let parents: Vec<&str> = s
            .parent_refs
            .iter()
            .chain(&s.target_refs)
            .map(|p| p.name.as_str())
            .collect();
        if !parents.is_empty() {
            report.notes.push(format!(
                "{object}: attached to Gateway {}: Tollgate captures the workloads' own connections instead",
                parents.join(", ")
            ));
        }
        if let Some(schema) = s.schema.as_ref().filter(|v| v.name != "OpenAI") {
            report.gap(
                &object,
                "spec.schema.name",
                format!("{:?}: clients are taken to speak OpenAI", schema.name),
            );
        }
        if !s.hostnames.is_empty() {
            report.gap(
                &object,
                "spec.hostnames",
                "Tollgate routes do not match on the Host the gateway was called by: the rules apply to every captured provider",
            );
        }
        if s.filter_config.is_some() {
            report.notes.push(format!(
                "{object}: spec.filterConfig (the external processor's deployment) has no counterpart"
            ));
        }
        let mut made = Vec::new();
        for (i, rule) in s.rules.iter().enumerate() {
            let base = format!(
                "{}-{}",
                objs.tg_name(&r.namespace, &r.name),
                rule.name.clone().unwrap_or_else(|| i.to_string())
            );
            let field = format!("spec.rules[{i}]");
            for route in rule_routes(&object, &field, &base, &r.namespace, rule, converted, report) {
                report
                    .converted
                    .push(format!("{object} {field} → route {}", route.name));
                made.push(route.name.clone());
                out.routes.push(Item {
                    from: format!("{object} {field}"),
                    value: route,
                });
            }
        }
        names.insert((r.namespace.clone(), r.name.clone()), made);
    }
    names
}

/// One rule as one route, or one per match when its matches differ beyond the model.
fn rule_routes(
    object: &str,
    field: &str,
    base: &str,
    namespace: &str,
    rule: &raw::RouteRule,
    converted: &super::Converted,
    report: &mut Report,
) -> Vec<Route> {
    unknown_fields(report, object, &format!("{field}."), &rule.extra);
    if rule.models_owned_by.is_some() || rule.models_created_at.is_some() {
        report.notes.push(format!(
            "{object} {field}: modelsOwnedBy/modelsCreatedAt: /v1/models is forwarded to the backend, not answered from config"
        ));
    }
    let backends = backend_refs(object, field, namespace, rule, converted, report);
    if backends.is_empty() {
        report.gap(
            object,
            field,
            "no backend of this rule was converted: the rule is not converted",
        );
        return vec![];
    }
    let timeouts = timeouts(object, field, rule, report);
    let mut matches = Vec::new();
    for (j, m) in rule.matches.iter().enumerate() {
        let mf = format!("{field}.matches[{j}]");
        unknown_fields(report, object, &format!("{mf}."), &m.extra);
        match route_match(object, &mf, m, report) {
            Some(rm) => matches.push(rm),
            None => report.gap(
                object,
                mf,
                "this match is not converted (a rule matching more would be wider)",
            ),
        }
    }
    if !rule.matches.is_empty() && matches.is_empty() {
        return vec![];
    }
    let route = |name: String, matches: RouteMatch| Route {
        name,
        matches,
        backends: backends.to_vec(),
        timeouts: timeouts.clone(),
    };
    let same_headers = matches.windows(2).all(|w| w[0].headers == w[1].headers);
    if matches.len() <= 1 || same_headers {
        // Gateway API ORs the matches: with the same headers, the models are one list (a
        // match without a model matches any).
        let mut merged = RouteMatch::default();
        if let Some(first) = matches.first() {
            merged.headers = first.headers.clone();
        }
        if matches.iter().all(|m| !m.models.is_empty()) {
            merged.models = matches.into_iter().flat_map(|m| m.models).collect();
        }
        return vec![route(base.to_string(), merged)];
    }
    (matches.into_iter().enumerate())
        .map(|(k, m)| route(format!("{base}-m{k}"), m))
        .collect()
}

fn backend_refs(
    object: &str,
    field: &str,
    namespace: &str,
    rule: &raw::RouteRule,
    converted: &super::Converted,
    report: &mut Report,
) -> Vec<BackendRef> {
    let mut refs = Vec::new();
    for (j, b) in rule.backend_refs.iter().enumerate() {
        let bf = format!("{field}.backendRefs[{j}]");
        unknown_fields(report, object, &format!("{bf}."), &b.extra);
        if b.kind.as_deref().is_some_and(|k| k != "AIServiceBackend") {
            report.gap(
                object,
                &bf,
                format!(
                    "{}: only AIServiceBackends are converted",
                    b.kind.as_deref().unwrap_or("")
                ),
            );
            continue;
        }
        for (name, set) in [
            ("headerMutation", b.header_mutation.is_some()),
            ("bodyMutation", b.body_mutation.is_some()),
        ] {
            if set {
                report.gap(
                    object,
                    format!("{bf}.{name}"),
                    "Tollgate does not rewrite request headers or bodies besides the model",
                );
            }
        }
        let ns = b.namespace.clone().unwrap_or_else(|| namespace.to_string());
        let Some((_, c)) = converted.iter().find(|(k, _)| k.0 == ns && k.1 == b.name) else {
            report.gap(
                object,
                &bf,
                format!("AIServiceBackend/{} was not converted (or is not in the input)", b.name),
            );
            continue;
        };
        let weight = match b.weight {
            Some(w) if w <= 0 => {
                report
                    .notes
                    .push(format!("{object} {bf}: weight {w} sends it nothing: left out"));
                continue;
            }
            Some(w) => Some(u32::try_from(w).unwrap_or(u32::MAX)),
            None => None,
        };
        refs.push(BackendRef {
            backend: c.name.clone(),
            weight,
            priority: b.priority.filter(|p| *p > 0),
            model: b.model_name_override.clone().filter(|m| !m.is_empty()),
        });
    }
    refs
}

fn timeouts(object: &str, field: &str, rule: &raw::RouteRule, report: &mut Report) -> Timeouts {
    let mut t = Timeouts::default();
    let parse = |f: String, text: &str, report: &mut Report| match duration(text) {
        Some(d) => Some(d),
        None => {
            report.gap(object, f, format!("{text:?} is not a duration"));
            None
        }
    };
    let request = rule.timeouts.as_ref().and_then(|x| x.request.as_deref());
    t.total = match request {
        Some(text) => parse(format!("{field}.timeouts.request"), text, report),
        None => Some(EAG_DEFAULT_REQUEST_TIMEOUT.to_string()),
    };
    if rule.timeouts.as_ref().is_some_and(|x| x.backend_request.is_some()) {
        report.gap(
            object,
            format!("{field}.timeouts.backendRequest"),
            "Tollgate bounds each attempt to its first byte and the whole request in total, not each attempt's whole answer",
        );
    }
    if let Some(text) = &rule.stream_idle_timeout {
        // Before the first byte it ends the attempt (and may fall over), after it the stream.
        let d = parse(format!("{field}.streamIdleTimeout"), text, report);
        t.first_byte = d.clone();
        t.idle = d;
    }
    t
}

/// One Gateway API match: `x-ai-eg-model` → models, other headers → headers.
fn route_match(object: &str, field: &str, m: &raw::RuleMatch, report: &mut Report) -> Option<RouteMatch> {
    let mut rm = RouteMatch::default();
    for (k, h) in m.headers.iter().enumerate() {
        let hf = format!("{field}.headers[{k}]");
        let glob = header_glob(object, &hf, h, report)?;
        if h.name.eq_ignore_ascii_case(MODEL_HEADER) {
            rm.models.push(glob);
        } else {
            rm.headers.insert(h.name.to_ascii_lowercase(), glob);
        }
    }
    Some(rm)
}

/// A header match as a Tollgate glob, or a gap.
fn header_glob(object: &str, field: &str, h: &raw::HeaderMatch, report: &mut Report) -> Option<String> {
    let value = h.value.clone().unwrap_or_default();
    if h.invert == Some(true) {
        report.gap(object, format!("{field}.invert"), "Tollgate matches cannot be inverted");
        return None;
    }
    match h.kind.as_deref().unwrap_or("Exact") {
        "Exact" if value.contains(['*', '?']) => {
            report.gap(
                object,
                field,
                format!("{value:?}: Tollgate's globs cannot match * or ? literally"),
            );
            None
        }
        "Exact" => Some(value),
        "RegularExpression" => match regex_glob(&value) {
            Some(g) => Some(g),
            None => {
                report.gap(
                    object,
                    field,
                    format!("regular expression {value:?} has no glob equivalent"),
                );
                None
            }
        },
        other => {
            report.gap(object, field, format!("match type {other:?} is not converted"));
            None
        }
    }
}

/// A regular expression that is literals joined by `.*` (`gpt-4o.*`, `^claude-.*-sonnet$`) as
/// a glob; anything else has none. The regex is anchored as Gateway API's are (whole value).
pub(super) fn regex_glob(re: &str) -> Option<String> {
    let re = re.strip_prefix('^').unwrap_or(re);
    let re = re.strip_suffix('$').unwrap_or(re);
    let mut glob = String::new();
    for (i, part) in re.split(".*").enumerate() {
        if i > 0 {
            glob.push('*');
        }
        let mut chars = part.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(e @ ('.' | '-' | '/' | ':' | '_')) => glob.push(e),
                    _ => return None,
                },
                '.' | '[' | ']' | '(' | ')' | '|' | '+' | '?' | '*' | '{' | '}' | '^' | '$' => return None,
                c => glob.push(c),
            }
        }
    }
    Some(glob)
}

/// BackendTrafficPolicy global rate limits whose cost is requests or Envoy AI Gateway's total
/// tokens, per minute, selected by nothing or by the model → `limits`.
pub(super) fn limits(objs: &Objects, names: &RouteNames, out: &mut Output, report: &mut Report) {
    for t in &objs.traffic_policies {
        let object = format!("BackendTrafficPolicy/{}", t.name);
        for key in t.spec.extra.keys() {
            report.gap(&object, format!("spec.{key}"), "only rateLimit is converted");
        }
        let Some(rl) = &t.spec.rate_limit else {
            continue;
        };
        if rl.local.as_ref().is_some_and(|l| !l.rules.is_empty()) {
            report.gap(
                &object,
                "spec.rateLimit.local",
                "local (per Envoy instance) limits are not converted",
            );
        }
        let targets = targets(objs, t, &object, report);
        let Some(global) = &rl.global else {
            continue;
        };
        for (k, rule) in global.rules.iter().enumerate() {
            let field = format!("spec.rateLimit.global.rules[{k}]");
            let Some((models, key)) = selectors(&object, &field, rule, report) else {
                continue;
            };
            let groups: Vec<Vec<&(String, String)>> = match rule.shared == Some(true) {
                true => vec![targets.iter().collect()],
                false => targets.iter().map(|t| vec![t]).collect(),
            };
            for (g, group) in groups.iter().enumerate() {
                let Some(amount) = limit_amount(objs, &object, &field, rule, group, report) else {
                    break;
                };
                let routes: Vec<String> = group
                    .iter()
                    .flat_map(|t| names.get(*t).cloned().unwrap_or_default())
                    .collect();
                if routes.is_empty() {
                    report.gap(&object, &field, "none of the routes it applies to was converted");
                    continue;
                }
                let name = match groups.len() {
                    1 => format!("{}-{k}", objs.tg_name(&t.namespace, &t.name)),
                    _ => format!("{}-{k}-{g}", objs.tg_name(&t.namespace, &t.name)),
                };
                report.converted.push(format!("{object} {field} → limit {name}"));
                let (rpm, tpm) = match amount {
                    Amount::Requests(n) => (Some(n), None),
                    Amount::Tokens(n) => (None, Some(n)),
                };
                out.limits.push(Item {
                    from: format!("{object} {field}"),
                    value: Limit {
                        name,
                        matches: LimitMatch {
                            routes,
                            models: models.clone(),
                        },
                        key: key.clone(),
                        requests_per_minute: rpm,
                        tokens_per_minute: tpm,
                    },
                });
            }
        }
    }
}

/// The AIGatewayRoutes a policy applies to: an HTTPRoute of its name, or every route
/// attached to a targeted Gateway.
fn targets(
    objs: &Objects,
    t: &super::Obj<raw::TrafficPolicySpec>,
    object: &str,
    report: &mut Report,
) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for r in t.spec.target_refs.iter().chain(&t.spec.target_ref) {
        match r.kind.as_deref().unwrap_or("") {
            "HTTPRoute" => found.push((t.namespace.clone(), r.name.clone())),
            "Gateway" => found.extend(
                (objs.routes.iter())
                    .filter(|a| a.namespace == t.namespace)
                    .filter(|a| {
                        a.spec
                            .parent_refs
                            .iter()
                            .chain(&a.spec.target_refs)
                            .any(|p| p.name == r.name)
                    })
                    .map(|a| (a.namespace.clone(), a.name.clone())),
            ),
            other => report.gap(
                object,
                "spec.targetRefs",
                format!("{other} {}: not a route or gateway", r.name),
            ),
        }
    }
    found
}

/// `x-ai-eg-model` selectors: exact values → `models`, `Distinct` → key `model`; anything
/// else Tollgate cannot select or key on.
fn selectors(
    object: &str,
    field: &str,
    rule: &raw::RateLimitRule,
    report: &mut Report,
) -> Option<(Vec<String>, Vec<&'static str>)> {
    if rule.shadow_mode == Some(true) {
        report.gap(
            object,
            format!("{field}.shadowMode"),
            "Tollgate limits are enforced: a shadow limit is not converted",
        );
        return None;
    }
    let (mut models, mut key) = (Vec::new(), Vec::new());
    for (s, sel) in rule.client_selectors.iter().enumerate() {
        let sf = format!("{field}.clientSelectors[{s}]");
        for (what, set) in [
            ("methods", sel.methods.is_some()),
            ("path", sel.path.is_some()),
            ("sourceCIDR", sel.source_cidr.is_some()),
        ] {
            if set {
                report.gap(
                    object,
                    format!("{sf}.{what}"),
                    "Tollgate limits do not select on it: the rule is not converted",
                );
                return None;
            }
        }
        for (h, m) in sel.headers.iter().enumerate() {
            let hf = format!("{sf}.headers[{h}]");
            if !m.name.eq_ignore_ascii_case(MODEL_HEADER) {
                report.gap(
                    object,
                    hf,
                    format!(
                        "header {}: Tollgate limits select and key on workload, pod, namespace, route, provider, model and backend, not request headers: the rule is not converted",
                        m.name
                    ),
                );
                return None;
            }
            match m.kind.as_deref() {
                Some("Distinct") => key.push("model"),
                _ => models.push(header_glob(object, &hf, m, report)?),
            }
        }
    }
    Some((models, key))
}

enum Amount {
    Requests(u64),
    Tokens(u64),
}

/// What a rule counts, per minute: requests (the default cost) or total tokens (a response
/// cost read from Envoy AI Gateway's `TotalToken` metadata, the request costing 0).
fn limit_amount(
    objs: &Objects,
    object: &str,
    field: &str,
    rule: &raw::RateLimitRule,
    targets: &[&(String, String)],
    report: &mut Report,
) -> Option<Amount> {
    if rule.limit.unit != "Minute" {
        report.gap(
            object,
            format!("{field}.limit.unit"),
            format!(
                "{}: Tollgate counts requests and tokens per minute only (fixed UTC windows)",
                rule.limit.unit
            ),
        );
        return None;
    }
    let n = rule.limit.requests;
    let cost = rule.cost.as_ref();
    let request = cost
        .and_then(|c| c.request.as_ref())
        .map(|r| (r.from.as_str(), r.number));
    let Some(response) = cost.and_then(|c| c.response.as_ref()) else {
        return match request {
            None | Some(("Number", Some(1))) => Some(Amount::Requests(n)),
            _ => {
                report.gap(
                    object,
                    format!("{field}.cost.request"),
                    "a request cost other than 1 is not converted",
                );
                None
            }
        };
    };
    let metadata = response
        .metadata
        .as_ref()
        .filter(|m| response.from == "Metadata" && m.namespace == COST_NAMESPACE);
    let Some(m) = metadata else {
        report.gap(
            object,
            format!("{field}.cost.response"),
            "only Envoy AI Gateway's token costs are converted",
        );
        return None;
    };
    if !matches!(request, Some(("Number", Some(0)))) {
        report.gap(
            object,
            format!("{field}.cost.request"),
            "a token limit must cost 0 per request to be converted",
        );
        return None;
    }
    let types: Vec<&str> = (objs.routes.iter())
        .filter(|r| targets.iter().any(|t| t.0 == r.namespace && t.1 == r.name))
        .filter_map(|r| r.spec.llm_request_costs.iter().find(|c| c.metadata_key == m.key))
        .map(|c| c.kind.as_str())
        .collect();
    match types.as_slice() {
        [first, rest @ ..] if *first == "TotalToken" && rest.iter().all(|t| *t == "TotalToken") => {
            Some(Amount::Tokens(n))
        }
        [] => {
            report.gap(
                object,
                format!("{field}.cost.response"),
                format!(
                    "metadata key {:?}: no llmRequestCosts entry of the targeted routes defines it",
                    m.key
                ),
            );
            None
        }
        _ => {
            report.gap(
                object,
                format!("{field}.cost.response"),
                format!("metadata key {:?} costs {}: Tollgate's token limits count total tokens only (not input, output, cached or CEL costs)", m.key, types.join(", ")),
            );
            None
        }
    }
}

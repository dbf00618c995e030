//! Routing: which route a request matches (its conditions, the operation included) and the
//! order its backends are tried in; [`health`] keeps which backends are ejected or cooling
//! down; `index` ([`Routes`]) keeps a config's routes indexed by model.

pub mod config;
pub mod health;
mod index;

use http::HeaderMap;

use self::config::{BackendRef, Route, RouteMatch};
pub use self::index::Routes;
use crate::{llm::Operation, matching::WorkloadFacts};

/// What routing looks at.
pub struct RouteInput<'a> {
    pub provider: Option<&'a str>,
    pub model: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub workload: WorkloadFacts<'a>,
    pub operation: Operation,
    pub method: &'a str,
    pub path: &'a str,
}

/// The index of the first route whose every condition holds, the operation included.
pub fn select_route(routes: &Routes, input: &RouteInput<'_>) -> Option<usize> {
    routes
        .candidates(input.model)
        .iter()
        .copied()
        .find(|&i| matches(&routes[i], input) && allows(&routes[i].matches, input))
}

/// Whether a request is an inference operation with its usual method: what a route without
/// `operations` or `paths` allows, and what a provider's default backend serves.
pub fn is_default_allowed(input: &RouteInput<'_>) -> bool {
    // An MCP server's requests are all its protocol: any method (POST, GET, DELETE).
    input.operation == crate::llm::Operation::Mcp
        || (input.operation.is_inference() && input.method == input.operation.inference_method().as_str())
}

/// Whether a route's `operations` and `paths` allow the request. Without either, inference
/// operations only; with them, exactly what they list (an inference operation listed by name
/// still needs its usual method; `paths` globs allow any method).
fn allows(m: &RouteMatch, input: &RouteInput<'_>) -> bool {
    if m.operations.is_empty() && m.paths.is_empty() {
        return is_default_allowed(input);
    }
    let listed =
        m.operations.contains(&input.operation) && (!input.operation.is_inference() || is_default_allowed(input));
    listed || m.paths.iter().any(|p| p.matches(input.path))
}

fn matches(route: &Route, input: &RouteInput<'_>) -> bool {
    let m = &route.matches;
    (m.providers.is_empty() || input.provider.is_some_and(|p| m.providers.iter().any(|q| q == p)))
        && crate::matching::any(&m.models, input.model)
        && m.headers.iter().all(|(name, pattern)| {
            input
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| pattern.matches(v))
        })
        && m.workload.matches(&input.workload)
}

/// A route's backend refs by tier: ascending priority, each tier's refs in config order.
pub fn tiers(route: &Route) -> Vec<(u32, Vec<&BackendRef>)> {
    let mut priorities: Vec<u32> = route.backends.iter().map(|b| b.priority).collect();
    priorities.sort_unstable();
    priorities.dedup();
    priorities
        .into_iter()
        .map(|p| (p, route.backends.iter().filter(|b| b.priority == p).collect()))
        .collect()
}

/// Every backend ref in the order attempts use them: [`tiers`] by ascending priority; within a
/// tier, a weighted random order (weighted sampling without replacement).
pub fn plan(route: &Route) -> Vec<&BackendRef> {
    let mut out = Vec::with_capacity(route.backends.len());
    for (_, mut left) in tiers(route) {
        while !left.is_empty() {
            let total: u64 = left.iter().map(|b| u64::from(b.weight)).sum();
            let mut roll = fastrand::u64(0..total);
            let pick = left
                .iter()
                .position(|b| {
                    if roll < u64::from(b.weight) {
                        true
                    } else {
                        roll -= u64::from(b.weight);
                        false
                    }
                })
                .unwrap_or(left.len() - 1);
            out.push(left.remove(pick));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::Config, identity::Workload};

    fn workload() -> Workload {
        Workload {
            pid: 1,
            tgid: 1,
            uid: 1000,
            gid: 1000,
            comm: "python3".into(),
            exe: None,
            cgroup_id: 1,
            cgroup: Some("/team-a/job".into()),
            netns_cookie: 1,
            host_netns: true,
            container: Default::default(),
            pod: None,
            pod_error: None,
        }
    }

    fn config() -> Config {
        Config::parse(
            r#"
providers:
  - name: openai
    hostnames: [api.openai.com]
backends:
  - name: a
    url: https://127.0.0.1:1
  - name: b
    url: https://127.0.0.1:2
routes:
  - name: by-header
    match: { headers: { x-team: "ml*" } }
    backends: [{ backend: b }]
  - name: by-workload
    match: { models: ["gpt-4o*"], workload: { comm: [python*], uids: [1000], cgroup: "/team-a/*" } }
    backends:
      - { backend: a, weight: 3 }
      - { backend: b, weight: 1 }
      - { backend: a, priority: 1 }
  - name: fallback
    match: { providers: [openai] }
    backends: [{ backend: a, model: gpt-4o-mini }]
"#,
        )
        .unwrap()
    }

    #[test]
    fn the_model_index_picks_what_the_plain_scan_picks() {
        // Generated routes mixing exact names, prefixes, other globs and no models, two
        // patterns per route sometimes, and providers; every model tried against both.
        fastrand::seed(7);
        let pattern = |_: usize| match fastrand::u8(0..5) {
            0 => format!("m{}", fastrand::u8(0..6)),
            1 => format!("m{}*", fastrand::u8(0..6)),
            2 => "m*".to_string(),
            3 => format!("*{}", fastrand::u8(0..6)),
            _ => format!("m{}?", fastrand::u8(0..6)),
        };
        for round in 0..50 {
            let mut yaml = String::from(
                "providers:\n  - name: openai\n    hostnames: [api.openai.com]\n  - name: other\n    hostnames: [api.other.test]\nbackends:\n  - name: a\n    url: https://127.0.0.1:1\nroutes:\n",
            );
            for r in 0..fastrand::usize(1..30) {
                let models: Vec<String> = (0..fastrand::usize(0..3)).map(pattern).collect();
                let providers = if fastrand::bool() { "[openai]" } else { "[other]" };
                yaml += &format!(
                    "  - name: r{r}\n    match: {{ models: {models:?}, providers: {providers} }}\n    backends: [{{ backend: a }}]\n"
                );
            }
            let cfg = Config::parse(&yaml).unwrap_or_else(|e| panic!("round {round}: {e}\n{yaml}"));
            let w = workload();
            let headers = HeaderMap::new();
            let models = ["m0", "m1", "m12", "m5x", "m55", "x1", "m", ""];
            for model in models.iter().map(|m| Some(*m)).chain([None]) {
                let input = RouteInput {
                    provider: Some("openai"),
                    model,
                    headers: &headers,
                    workload: w.facts(),
                    operation: Operation::ChatCompletions,
                    method: "POST",
                    path: "/v1/chat/completions",
                };
                let scan = cfg
                    .routes
                    .iter()
                    .position(|r| matches(r, &input) && allows(&r.matches, &input));
                assert_eq!(
                    select_route(&cfg.routes, &input),
                    scan,
                    "round {round}, model {model:?}\n{yaml}"
                );
            }
        }
    }

    #[test]
    fn first_matching_route_wins_on_every_condition() {
        let cfg = config();
        let w = workload();
        let mut headers = HeaderMap::new();
        let input = |model, headers: &HeaderMap| -> Option<String> {
            let i = RouteInput {
                provider: Some("openai"),
                model,
                headers,
                workload: w.facts(),
                operation: Operation::ChatCompletions,
                method: "POST",
                path: "/v1/chat/completions",
            };
            select_route(&cfg.routes, &i).map(|r| cfg.routes[r].name.clone())
        };
        assert_eq!(input(Some("gpt-4o"), &headers).as_deref(), Some("by-workload"));
        assert_eq!(input(Some("o3"), &headers).as_deref(), Some("fallback"));
        headers.insert("x-team", "ml-research".parse().unwrap());
        assert_eq!(input(Some("gpt-4o"), &headers).as_deref(), Some("by-header"));
        let other = Workload { uid: 0, ..workload() };
        let i = RouteInput {
            provider: Some("openai"),
            model: Some("gpt-4o"),
            headers: &HeaderMap::new(),
            workload: other.facts(),
            operation: Operation::ChatCompletions,
            method: "POST",
            path: "/v1/chat/completions",
        };
        assert_eq!(
            select_route(&cfg.routes, &i).map(|r| cfg.routes[r].name.as_str()),
            Some("fallback")
        );
        let i = RouteInput {
            provider: None,
            model: Some("o3"),
            headers: &HeaderMap::new(),
            workload: other.facts(),
            operation: Operation::ChatCompletions,
            method: "POST",
            path: "/v1/chat/completions",
        };
        assert!(select_route(&cfg.routes, &i).is_none());
    }

    #[test]
    fn only_inference_is_allowed_unless_a_route_lists_the_operation_or_path() {
        let cfg = Config::parse(
            r#"
providers:
  - name: openai
    hostnames: [api.openai.com]
backends:
  - name: a
    url: https://127.0.0.1:1
routes:
  - name: files
    match: { operations: [files], paths: ["/v1/batches*"] }
    backends: [{ backend: a }]
  - name: chat
    match: { operations: [chat_completions] }
    backends: [{ backend: a }]
  - name: any
    backends: [{ backend: a }]
"#,
        )
        .unwrap();
        let w = workload();
        let h = HeaderMap::new();
        let pick = |operation, method, path| {
            let i = RouteInput {
                provider: Some("openai"),
                model: None,
                headers: &h,
                workload: w.facts(),
                operation,
                method,
                path,
            };
            select_route(&cfg.routes, &i).map(|r| cfg.routes[r].name.as_str())
        };
        assert_eq!(pick(Operation::Files, "POST", "/v1/files"), Some("files"));
        assert_eq!(
            pick(Operation::Batches, "POST", "/v1/batches"),
            Some("files"),
            "by path glob"
        );
        assert_eq!(
            pick(Operation::ChatCompletions, "POST", "/v1/chat/completions"),
            Some("chat")
        );
        assert_eq!(pick(Operation::Embeddings, "POST", "/v1/embeddings"), Some("any"));
        assert_eq!(pick(Operation::Admin, "POST", "/v1/organization/admin_api_keys"), None);
        assert_eq!(pick(Operation::FineTuning, "POST", "/v1/fine_tuning/jobs"), None);
        assert_eq!(
            pick(Operation::Models, "DELETE", "/v1/models/ft:x"),
            None,
            "inference ops keep their method"
        );
        assert_eq!(pick(Operation::Models, "GET", "/v1/models"), Some("any"));
    }

    #[test]
    fn plans_go_tier_by_tier_and_weigh_the_first_pick() {
        let cfg = config();
        let route = &cfg.routes[1];
        let mut first_a = 0;
        for _ in 0..2000 {
            let p = plan(route);
            assert_eq!(p.len(), 3);
            assert_eq!(p[2].priority, 1, "the priority-1 backend always comes last");
            if p[0].backend == 0 {
                first_a += 1;
            }
        }
        let share = f64::from(first_a) / 2000.0;
        assert!((0.68..0.82).contains(&share), "weight 3:1 first picks gave {share}");
    }
}

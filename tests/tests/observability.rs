//! What operators load next to Tollgate: the Prometheus alert rules (`promtool check rules`
//! and `promtool test rules`: every alert shown to fire and to stay quiet), the Grafana
//! dashboard (valid JSON whose every query names metrics a running Tollgate really exports),
//! and the Helm chart's copies of both.

use std::{collections::BTreeSet, path::PathBuf, process::Command, time::Duration};

use serde_json::Value;
use tests::{
    deploy::{helm, object, render},
    l7::openai_setup,
    note_skip, privileged, run, workspace,
};

fn rules_path() -> PathBuf {
    workspace().join("deploy/prometheus/tollgate-rules.yaml")
}

fn dashboard_path() -> PathBuf {
    workspace().join("deploy/grafana/tollgate.json")
}

/// `promtool` on the PATH (Debian's `prometheus` package, installed by `cargo xtask setup`).
fn promtool(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("promtool"))
            .find(|p| p.exists())
    });
    if found.is_none() {
        let why = "promtool not found: run `cargo xtask setup` (Debian package prometheus)";
        if std::env::var_os("CI").is_some() || std::env::var_os("TOLLGATE_REQUIRE_PRIVILEGED").is_some() {
            panic!("{test}: {why}");
        }
        eprintln!("SKIPPING {test}: {why}");
        note_skip(test, why);
    }
    found
}

fn yaml(path: &std::path::Path) -> Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `expr` of the rule file.
fn rule_exprs() -> Vec<String> {
    yaml(&rules_path())["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .map(|r| r["expr"].as_str().unwrap().to_string())
        .collect()
}

/// Every PromQL query of the dashboard: panel targets (rows included) and template variables.
fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    fn panels<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            panels(&p["panels"], out);
        }
    }
    let mut all = Vec::new();
    panels(&dashboard["panels"], &mut all);
    let mut exprs: Vec<String> = all
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .map(|t| t["expr"].as_str().expect("every target has an expr").to_string())
        .collect();
    for v in dashboard["templating"]["list"].as_array().unwrap() {
        if v["type"] == "query" {
            exprs.push(v["definition"].as_str().unwrap().to_string());
        }
    }
    exprs
}

/// The metric names a PromQL expression reads (ours: `tollgate_*` and `gen_ai_*`). Label
/// names look alike (`gen_ai_token_type`), so what is not a metric is cut first: matchers in
/// `{…}`, the label lists of `by (…)`/`without (…)`, and `label_values`' label argument.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut text = String::new();
    let mut depth = 0;
    for c in expr.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ if depth == 0 => text.push(c),
            _ => {}
        }
    }
    for keyword in ["by", "without"] {
        while let Some(at) = find_word(&text, keyword) {
            let rest = text[at + keyword.len()..].trim_start();
            let Some(list) = rest.strip_prefix('(') else { break };
            let end = list.find(')').expect("closed label list");
            let cut = text.len() - list.len() + end + 1;
            text.replace_range(at..cut, " ");
        }
    }
    if let Some(args) = text.strip_prefix("label_values(") {
        text = args.split(',').next().unwrap_or_default().to_string();
    }
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("tollgate_") || w.starts_with("gen_ai_"))
        .map(str::to_string)
        .collect()
}

/// Where `word` stands alone in `text`.
fn find_word(text: &str, word: &str) -> Option<usize> {
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    text.match_indices(word)
        .map(|(i, _)| i)
        .find(|&i| !is_word(text[..i].chars().next_back()) && !is_word(text[i + word.len()..].chars().next()))
}

#[test]
fn metric_names_are_read_from_promql() {
    let names = metric_names(
        "sum by (gen_ai_token_type) (rate(gen_ai_client_token_usage_sum{gen_ai_request_model=~\"$m\"}[5m])) / sum without(gen_ai_request_model) (tollgate_x)",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["gen_ai_client_token_usage_sum", "tollgate_x"]
    );
    assert_eq!(
        metric_names("label_values(tollgate_config_synchronized, gen_ai_x)")
            .into_iter()
            .collect::<Vec<_>>(),
        ["tollgate_config_synchronized"]
    );
}

#[test]
fn alert_rules_pass_promtool_and_every_alert_is_shown_to_fire_and_stay_quiet() {
    let Some(promtool) = promtool("alert_rules_pass_promtool_and_every_alert_is_shown_to_fire_and_stay_quiet") else {
        return;
    };
    let dir = workspace().join("deploy/prometheus");
    for args in [
        &["check", "rules", "tollgate-rules.yaml"][..],
        &["test", "rules", "tollgate-rules.test.yaml"][..],
    ] {
        let out = Command::new(&promtool).args(args).current_dir(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Every alert has a case where it fires and one where it stays quiet.
    let alerts: BTreeSet<String> = yaml(&rules_path())["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["alert"].as_str().unwrap().to_string())
        .collect();
    let expected = [
        "TollgateBackendEjected",
        "TollgateBudgetNearlySpent",
        "TollgateConfigRejected",
        "TollgateHighErrorRate",
        "TollgateLimitStoreDegraded",
        "TollgateProgramsDetached",
    ];
    assert_eq!(alerts.iter().map(String::as_str).collect::<Vec<_>>(), expected);
    let tests = yaml(&dir.join("tollgate-rules.test.yaml"));
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().unwrap().iter())
        .collect();
    for alert in &alerts {
        let of = |firing: bool| {
            cases.iter().any(|c| {
                c["alertname"] == alert.as_str() && c["exp_alerts"].as_array().is_some_and(|a| a.is_empty() != firing)
            })
        };
        assert!(of(true), "{alert}: no test where it fires");
        assert!(of(false), "{alert}: no test where it stays quiet");
    }
}

#[test]
fn the_dashboard_is_grafana_json_with_unique_panels_on_one_datasource_variable() {
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(dashboard_path()).unwrap()).unwrap();
    assert_eq!(dashboard["uid"], "tollgate");
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    let vars = dashboard["templating"]["list"].as_array().unwrap();
    assert!(vars
        .iter()
        .any(|v| v["name"] == "datasource" && v["type"] == "datasource"));
    let panels = dashboard["panels"].as_array().unwrap();
    let ids: BTreeSet<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    for p in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        let pos = &p["gridPos"];
        assert!(
            pos["x"].as_u64().unwrap() + pos["w"].as_u64().unwrap() <= 24,
            "{}",
            p["title"]
        );
        assert!(!p["targets"].as_array().unwrap().is_empty(), "{}", p["title"]);
    }
    let exprs = dashboard_exprs(&dashboard);
    assert!(exprs.len() > 20, "{exprs:?}");
    assert!(exprs.iter().all(|e| !metric_names(e).is_empty()), "{exprs:?}");
}

#[test]
fn the_charts_copies_are_the_deploy_files_and_render_when_enabled() {
    let chart = workspace().join("deploy/helm/tollgate/files");
    for (copy, original) in [
        ("tollgate-rules.yaml", rules_path()),
        ("tollgate.json", dashboard_path()),
    ] {
        assert_eq!(
            std::fs::read(chart.join(copy)).unwrap(),
            std::fs::read(&original).unwrap(),
            "deploy/helm/tollgate/files/{copy} differs from {}: copy it over",
            original.display()
        );
    }
    let Some(helm) = helm("the_charts_copies_are_the_deploy_files_and_render_when_enabled") else {
        return;
    };
    let off = render(&helm, "").unwrap();
    assert!(object(&off, "PrometheusRule", None).is_none());
    let on = render(
        &helm,
        "metrics:\n  prometheusRule: {enabled: true, labels: {release: prom}}\n  grafanaDashboard: {enabled: true, annotations: {grafana_folder: Tollgate}}\n",
    )
    .unwrap();
    let rule = object(&on, "PrometheusRule", None).expect("a PrometheusRule");
    assert_eq!(rule["metadata"]["labels"]["release"], "prom");
    let groups = serde_json::to_value(&yaml(&rules_path())["groups"]).unwrap();
    assert_eq!(rule["spec"]["groups"], groups, "the rules as the file has them");
    let cm = on
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["data"].get("tollgate.json").is_some())
        .expect("the dashboard ConfigMap");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(cm["metadata"]["annotations"]["grafana_folder"], "Tollgate");
    let json: Value = serde_json::from_str(cm["data"]["tollgate.json"].as_str().unwrap()).unwrap();
    let file: Value = serde_json::from_str(&std::fs::read_to_string(dashboard_path()).unwrap()).unwrap();
    assert_eq!(json, file);
}

#[test]
fn every_metric_the_dashboard_and_alerts_read_is_in_a_real_scrape() {
    if !privileged("every_metric_the_dashboard_and_alerts_read_is_in_a_real_scrape") {
        return;
    }
    // A budget and a rate limit (limit metrics), a route (attempts, backend health).
    let (s, builder) = openai_setup(
        41,
        "obs-scrape",
        "routes:\n  - name: chat\n    match: { models: [\"gpt-*\", \"made-up-*\"] }\n    backends: [{ backend: primary }]\n\
         limits:\n  - name: daily\n    budget: { usd: \"10\", period: day }\n    requestsPerMinute: 1000\n",
    );
    let gw = builder.start();
    // Priced requests, one for a model without a price, one refused (an operation no route
    // allows: a request error).
    let script = format!(
        "import http.client, json, ssl\nctx = ssl.create_default_context(cafile='{}')\nc = http.client.HTTPSConnection('api.openai.com', context=ctx)\n\
         for m in ['gpt-4o-mini'] * 3 + ['made-up-model']:\n\
         \x20   c.request('POST', '/v1/chat/completions', body=json.dumps({{'model': m, 'messages': []}}), headers={{'content-type': 'application/json'}})\n\
         \x20   assert c.getresponse().read()\n\
         c.request('GET', '/v1/files')\nr = c.getresponse(); r.read(); assert r.status == 403, r.status\nc.close()\nprint('done')\n",
        gw.ca_cert().display()
    );
    let mut cmd =
        s.cg.command_with_hosts(&s.dir, &[("api.openai.com", &s.captured_ip)], "python3");
    cmd.args(["-c", &script]);
    let out = run(cmd, Duration::from_secs(60));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "done",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    gw.wait_audit(5);

    let sampled = |metrics: &str| -> BTreeSet<String> {
        metrics
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.split(['{', ' ']).next())
            .map(str::to_string)
            .collect()
    };
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(dashboard_path()).unwrap()).unwrap();
    let wanted: BTreeSet<String> = dashboard_exprs(&dashboard)
        .iter()
        .chain(rule_exprs().iter())
        .flat_map(|e| metric_names(e))
        .collect();
    // The connection's own series come when it ends: allow the proxy a moment.
    let mut missing = Vec::new();
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = gw.admin_get("/metrics").1;
        let have = sampled(&metrics);
        missing = wanted.iter().filter(|n| !have.contains(*n)).cloned().collect();
        if missing.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(missing.is_empty(), "not in the scrape: {missing:?}\n{metrics}");
    // And the new gauges say what they should on a healthy node.
    assert_eq!(gw.metric("tollgate_programs_attached"), 11, "{metrics}");
    let budget = metrics
        .lines()
        .find(|l| l.starts_with("tollgate_limit_budget_used_ratio{limit=\"daily\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no budget gauge\n{metrics}"));
    assert!(budget > 0.0 && budget < 0.01, "{budget}: a few requests of $10");
    // Detached by hand: the gauge sees it at the next scrape (the alert's input).
    gw.detach_pins();
    assert_eq!(gw.metric("tollgate_programs_attached"), 0);
}

//! `tollgate status`: one plain-text screen, at most [`WIDTH`] columns, from `/api/status`.

use std::net::SocketAddr;

use super::{backend, dollars, fit, limit_store, plural, rate, thousands, uptime};
use crate::{accounting::recent::SpendRow, admin::api::Status};

/// The widest line written.
pub const WIDTH: usize = 80;
/// Width of the labels on the left.
const LABEL: usize = 13;

/// A token count, short: `9,999`, `12.3k`, `1.23M`, `4.56G`.
pub fn compact(n: u64) -> String {
    match n {
        0..=9_999 => thousands(n),
        10_000..=999_999 => format!("{:.1}k", n as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.2}M", n as f64 / 1e6),
        _ => format!("{:.2}G", n as f64 / 1e9),
    }
}

/// `label` then `items` joined by `sep`, wrapped under the label's column.
fn line(out: &mut String, label: &str, items: &[String], sep: &str) {
    let room = WIDTH - LABEL;
    let mut cur = format!("{label:<LABEL$}");
    let mut first = true;
    for item in items {
        let item = fit(item, room);
        let add = if first { item.clone() } else { format!("{sep}{item}") };
        if !first && cur.chars().count() + add.chars().count() > WIDTH {
            out.push_str(cur.trim_end());
            out.push('\n');
            cur = format!("{:LABEL$}{item}", "");
        } else {
            cur.push_str(&add);
        }
        first = false;
    }
    out.push_str(cur.trim_end());
    out.push('\n');
}

/// One row of the spend table (also its header, given strings).
fn row(out: &mut String, cells: [&str; 5]) {
    let [name, requests, errors, tokens, spend] = cells;
    out.push_str(&format!(
        "{:<28} {:>8} {:>6} {:>15} {:>15}\n",
        fit(name, 28),
        requests,
        errors,
        tokens,
        fit(spend, 15)
    ));
}

fn spend_row(out: &mut String, r: &SpendRow) {
    let s = &r.spend;
    row(
        out,
        [
            &r.key,
            &thousands(s.requests),
            &thousands(s.errors),
            &format!("{}/{}", compact(s.input_tokens), compact(s.output_tokens)),
            &dollars(&r.cost_usd),
        ],
    );
}

/// The screen (every line at most [`WIDTH`] columns).
pub fn render(s: &Status, admin: SocketAddr) -> String {
    let mut out = String::new();
    let head = format!(
        "tollgate {} at {admin}   pid {}   up {}   {}",
        s.version,
        s.pid,
        uptime(s.uptime_s),
        if s.ready { "ready" } else { "NOT READY" }
    );
    out.push_str(&fit(&head, WIDTH));
    out.push('\n');
    line(
        &mut out,
        "capture",
        &[
            if s.attached { "attached" } else { "NOT ATTACHED" }.to_string(),
            match s.fail_mode.as_deref() {
                Some(m) => format!("fail-{m}"),
                None => "fail mode unknown".into(),
            },
            plural(s.endpoints.max(0) as u64, "endpoint"),
        ],
        ", ",
    );
    let c = &s.connections;
    line(
        &mut out,
        "connections",
        &[
            format!("{} open", thousands(c.active.max(0) as u64)),
            format!("{} total", thousands(c.total)),
            rate(c.per_s),
        ],
        "   ",
    );
    line(
        &mut out,
        "requests",
        &[format!("{} total", thousands(s.requests.total)), rate(s.requests.per_s)],
        "   ",
    );
    let e = &s.errors;
    line(
        &mut out,
        "errors",
        &[
            format!("client {} ({})", thousands(e.client.total), rate(e.client.per_s)),
            format!("upstream {} ({})", thousands(e.upstream.total), rate(e.upstream.per_s)),
            format!("proxy {} ({})", thousands(e.proxy.total), rate(e.proxy.per_s)),
        ],
        "   ",
    );
    let backends: Vec<String> = s.backends.iter().map(backend).collect();
    let ejected = s.backends.iter().filter(|b| b.state != "healthy").count();
    let backends = if backends.is_empty() {
        vec!["none used yet".to_string()]
    } else {
        let mut v = vec![format!("{ejected} of {} out:", s.backends.len())];
        v.extend(backends);
        v
    };
    line(&mut out, "backends", &backends, "  ");
    line(&mut out, "limit store", &[limit_store(s.limit_store.as_ref())], "");
    let r = &s.records;
    line(
        &mut out,
        "records",
        &[format!(
            "{} held of {} ({} seen)",
            thousands(r.held as u64),
            thousands(r.capacity as u64),
            thousands(r.seen)
        )],
        "",
    );
    out.push('\n');
    let t = &s.spend_today;
    let total = &t.total.spend;
    if total.requests == 0 {
        out.push_str(&format!("spend today ({} UTC): no requests yet\n", t.day));
        return out;
    }
    out.push_str(&fit(
        &format!(
            "spend today ({} UTC): {} over {}, {}",
            t.day,
            dollars(&t.total.cost_usd),
            plural(total.requests, "request"),
            plural(t.workloads as u64, "workload")
        ),
        WIDTH,
    ));
    out.push('\n');
    row(&mut out, ["workload", "requests", "errors", "tokens in/out", "spend"]);
    for r in &t.by_workload {
        spend_row(&mut out, r);
    }
    if total.unpriced > 0 {
        out.push_str(&format!(
            "({} requests with usage but no price are not in the spend)\n",
            thousands(total.unpriced)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        accounting::recent::{Spend, Today},
        admin::api::{Backend, Connections, Errors, Held, LimitStore, Rate},
    };

    fn status() -> Status {
        let spend = |key: &str, requests, cost_nano_usd, cost: &str| SpendRow {
            key: key.into(),
            spend: Spend {
                requests,
                errors: 1,
                input_tokens: 1_234_567,
                output_tokens: 89_012,
                cost_nano_usd,
                unpriced: 0,
            },
            cost_usd: cost.into(),
        };
        Status {
            pid: 4242,
            version: "0.1.0".into(),
            uptime_s: 7384,
            ready: true,
            attached: true,
            fail_mode: Some("open".into()),
            endpoints: 12,
            connections: Connections {
                active: 3,
                total: 1234,
                per_s: 2.0,
            },
            requests: Rate {
                total: 10_230,
                per_s: 4.0,
            },
            errors: Errors {
                client: Rate { total: 3, per_s: 0.0 },
                upstream: Rate { total: 12, per_s: 0.1 },
                proxy: Rate::default(),
            },
            backends: (0..6)
                .map(|i| Backend {
                    backend: format!("backend-number-{i}"),
                    state: if i == 2 { "ejected" } else { "healthy" }.into(),
                    ejections: u32::from(i == 2) * 3,
                    available_in_ms: (i == 2).then_some(4200),
                    ..Default::default()
                })
                .collect(),
            limit_store: Some(LimitStore {
                kind: "redis".into(),
                healthy: true,
                dropped_counts: 0,
            }),
            spend_today: Today {
                day: "2026-11-28".into(),
                total: spend("total", 10_230, 1_234_567_891, "1.234567891"),
                by_workload: vec![
                    spend(
                        "python3 (container 3f1c2d4e5f6a) with a very long name indeed",
                        10_000,
                        1_234_000_000,
                        "1.234",
                    ),
                    spend("other", 230, 567_891, "0.000567891"),
                ],
                workloads: 2,
                ..Default::default()
            },
            records: Held {
                held: 1000,
                seen: 10_230,
                capacity: 1000,
            },
        }
    }

    #[test]
    fn the_screen_fits_80_columns_and_says_it_all() {
        let text = render(&status(), "127.0.0.1:15000".parse().unwrap());
        // The screen docs/operations.md shows.
        println!("{text}");
        for l in text.lines() {
            assert!(l.chars().count() <= WIDTH, "{} columns: {l:?}", l.chars().count());
        }
        for want in [
            "attached, fail-open, 12 endpoints",
            "3 open   1,234 total   2.0/s",
            "10,230 total   4.0/s",
            "client 3 (0.0/s)   upstream 12 (0.1/s)   proxy 0 (0.0/s)",
            "backend-number-2 ejected 4.2s (3 ejections)",
            "1 of 6 out:",
            "redis, healthy",
            "$1.234567891 over 10,230 requests",
            "1.23M/89.0k",
            "$0.000567891",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
    }

    #[test]
    fn token_counts_are_compact() {
        assert_eq!(compact(9_999), "9,999");
        assert_eq!(compact(12_345), "12.3k");
        assert_eq!(compact(1_234_567), "1.23M");
    }
}

//! `tollgate usage`: requests, tokens and cost per workload, model or route over a time window,
//! read from the audit log (and its rotated files), as a table or JSON.

use std::{collections::BTreeMap, io::BufRead as _, path::Path, time::SystemTime};

use serde::Serialize;

use super::{
    audit::{AuditRecord, AuditWorkload},
    usd,
};

/// What rows are grouped by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupBy {
    Workload,
    Model,
    Route,
    Provider,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Row {
    pub key: String,
    pub requests: u64,
    pub errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    /// Exact cost of the priced requests (USD).
    pub cost_usd: String,
    #[serde(skip)]
    pub cost_nano: u64,
    /// Requests with usage but no price (not in `cost_usd`).
    pub unpriced: u64,
}

/// Writes the name a workload goes by in reports and operator views into `out` (cleared
/// first): `comm (container <12 hex>)`, `comm (unit)`, `comm (cgroup path)` or `comm`.
pub fn workload_key(w: &AuditWorkload, out: &mut String) {
    out.clear();
    out.push_str(&w.comm);
    let detail = match (&w.container_id, &w.systemd_unit, &w.cgroup) {
        (Some(id), _, _) => {
            out.push_str(" (container ");
            // Container ids are hex: any cut is a char boundary, but do not panic if not.
            id.get(..12.min(id.len())).unwrap_or(id)
        }
        (None, Some(unit), _) => {
            out.push_str(" (");
            unit
        }
        (None, None, Some(cg)) => {
            out.push_str(" (");
            cg
        }
        (None, None, None) => return,
    };
    out.push_str(detail);
    out.push(')');
}

fn key(r: &AuditRecord, by: GroupBy) -> String {
    match by {
        GroupBy::Workload => {
            let mut out = String::new();
            workload_key(&r.workload, &mut out);
            out
        }
        GroupBy::Model => r
            .served_model
            .clone()
            .or_else(|| r.model.clone())
            .unwrap_or_else(|| "-".into()),
        GroupBy::Route => r.route.clone().unwrap_or_else(|| "-".into()),
        GroupBy::Provider => r.provider.clone().unwrap_or_else(|| "-".into()),
    }
}

/// Reads `path` and `path.1`, `path.2`, … (rotated files), keeping records newer than `since`.
pub fn read(path: &Path, since: SystemTime) -> std::io::Result<Vec<AuditRecord>> {
    let mut files = vec![path.to_path_buf()];
    for n in 1.. {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        let p = std::path::PathBuf::from(p);
        if !p.exists() {
            break;
        }
        files.push(p);
    }
    let mut out = Vec::new();
    for f in files.iter().rev() {
        let Ok(file) = std::fs::File::open(f) else { continue };
        for line in std::io::BufReader::new(file).lines() {
            let line = line?;
            // Request records only (not `config` or `checkpoint` lines).
            let Ok(r) = serde_json::from_str::<AuditRecord>(&line) else {
                continue;
            };
            if r.record != "request" {
                continue;
            }
            let Ok(t) = humantime::parse_rfc3339(&r.time) else {
                continue;
            };
            if t >= since {
                out.push(r);
            }
        }
    }
    Ok(out)
}

/// Groups records into rows, most expensive first (then most requests).
pub fn summarize(records: &[AuditRecord], by: GroupBy) -> Vec<Row> {
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for r in records {
        let k = key(r, by);
        let row = rows.entry(k.clone()).or_insert_with(|| Row {
            key: k,
            ..Default::default()
        });
        row.requests += 1;
        if r.status >= 400 || r.error.is_some() {
            row.errors += 1;
        }
        if let Some(t) = &r.tokens {
            row.input_tokens += t.input;
            row.output_tokens += t.output;
            row.cached_input_tokens += t.cached_input;
            match r.cost_nano_usd {
                Some(n) => row.cost_nano += n,
                None => row.unpriced += 1,
            }
        }
    }
    let mut rows: Vec<Row> = rows.into_values().collect();
    for r in &mut rows {
        r.cost_usd = usd(r.cost_nano);
    }
    rows.sort_by(|a, b| {
        b.cost_nano
            .cmp(&a.cost_nano)
            .then(b.requests.cmp(&a.requests))
            .then(a.key.cmp(&b.key))
    });
    rows
}

/// A table a person can read.
pub fn table(rows: &[Row], by: GroupBy) -> String {
    let header = [
        format!("{by:?}").to_lowercase(),
        "requests".into(),
        "errors".into(),
        "input".into(),
        "cached".into(),
        "output".into(),
        "cost (USD)".into(),
    ];
    let mut lines: Vec<[String; 7]> = vec![header];
    for r in rows {
        let cost = if r.unpriced > 0 {
            format!("{} (+{} unpriced)", r.cost_usd, r.unpriced)
        } else {
            r.cost_usd.clone()
        };
        lines.push([
            r.key.clone(),
            r.requests.to_string(),
            r.errors.to_string(),
            r.input_tokens.to_string(),
            r.cached_input_tokens.to_string(),
            r.output_tokens.to_string(),
            cost,
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| lines.iter().map(|l| l[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (n, l) in lines.iter().enumerate() {
        let cells: Vec<String> = l
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect();
        out += cells.join("  ").trim_end();
        out.push('\n');
        if n == 0 {
            out += &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  ");
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::audit::{AuditWorkload, Tokens};

    fn rec(comm: &str, model: &str, input: u64, output: u64, cost: Option<u64>) -> AuditRecord {
        AuditRecord {
            time: "2026-11-26T04:00:00Z".into(),
            workload: AuditWorkload {
                comm: comm.into(),
                ..Default::default()
            },
            model: Some(model.into()),
            status: 200,
            tokens: Some(Tokens {
                input,
                output,
                total: input + output,
                ..Default::default()
            }),
            cost_nano_usd: cost,
            ..Default::default()
        }
    }

    #[test]
    fn rows_add_up_exactly_and_sort_by_cost() {
        let records = vec![
            rec("python3", "gpt-4o-mini", 9, 4, Some(3750)),
            rec("python3", "gpt-4o-mini", 9, 4, Some(3750)),
            rec("curl", "my-model", 100, 1, None),
        ];
        let rows = summarize(&records, GroupBy::Workload);
        assert_eq!(rows[0].key, "python3");
        assert_eq!(
            (rows[0].requests, rows[0].input_tokens, rows[0].output_tokens),
            (2, 18, 8)
        );
        assert_eq!(rows[0].cost_usd, "0.0000075");
        assert_eq!((rows[1].key.as_str(), rows[1].unpriced), ("curl", 1));
        let t = table(&rows, GroupBy::Workload);
        assert!(t.starts_with("workload"), "{t}");
        assert!(t.contains("0 (+1 unpriced)"), "{t}");
        let by_model = summarize(&records, GroupBy::Model);
        assert_eq!(by_model.len(), 2);
    }
}

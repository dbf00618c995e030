//! `tollgate top`: the status screen, live (ratatui on crossterm, in the alternate screen),
//! refreshed each second; the spend table sorted by spend, requests or errors (`s`, `r`,
//! `e`); `q`, Esc or Ctrl-C quit and give the terminal back as it was.
//!
//! A thread fetches `/api/status` each second (and at once when the sort changes) and sends
//! it over a channel, so keys are answered while the admin port is slow or away: the last
//! status stays on screen with the error in the footer.

use std::{
    io::IsTerminal as _,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU8, Ordering},
        mpsc, Arc,
    },
    thread,
    time::Duration,
};

use ratatui::{
    crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers},
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style, Stylize as _},
    text::{Line, Span},
    widgets::{Block, Cell, Paragraph, Row, Table},
    Frame,
};

use super::{backend, dollars, fetch, limit_store, plural, rate, status::compact, thousands, uptime, Error};
use crate::{
    accounting::recent::{SortBy, SpendRow, OTHER},
    admin::api::Status,
};

/// How often the status is fetched.
pub const REFRESH: Duration = Duration::from_secs(1);
/// Spend rows asked for (more than a screen shows; the rest are `other`).
const TOP_ROWS: usize = 50;
/// How long a wait for a key lasts before looking for a new status.
const KEY_POLL: Duration = Duration::from_millis(50);

/// What the screen shows.
struct View {
    addr: SocketAddr,
    status: Option<Status>,
    /// The last fetch's error, while the admin port does not answer.
    error: Option<String>,
    sort: SortBy,
}

/// Runs until `q`, Esc or Ctrl-C. Fails at once when nothing answers at `addr` or stdout is
/// not a terminal.
pub fn run(addr: SocketAddr) -> std::io::Result<()> {
    // Ask once before taking the terminal over: an address where nothing answers is an error
    // to print, not a screen to show.
    let first = fetch(addr, SortBy::Spend, TOP_ROWS).map_err(std::io::Error::other)?;
    if !std::io::stdout().is_terminal() {
        return Err(std::io::Error::other(
            "tollgate top needs a terminal: use `tollgate status` for one screen as text",
        ));
    }
    let sort = Arc::new(AtomicU8::new(0));
    let (tx, rx) = mpsc::channel::<(SortBy, Result<Status, Error>)>();
    let (wake, woken) = mpsc::channel::<()>();
    {
        let sort = sort.clone();
        thread::Builder::new()
            .name("tollgate-top-fetch".into())
            .spawn(move || loop {
                // Wait first: the first status is already on screen.
                match woken.recv_timeout(REFRESH) {
                    Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
                let by = sort_of(sort.load(Ordering::Relaxed));
                if tx.send((by, fetch(addr, by, TOP_ROWS))).is_err() {
                    return;
                }
            })?;
    }
    let mut view = View {
        addr,
        status: Some(first),
        error: None,
        sort: SortBy::Spend,
    };
    let mut terminal = ratatui::try_init()?;
    let result = (|| -> std::io::Result<()> {
        let mut dirty = true;
        loop {
            while let Ok((by, got)) = rx.try_recv() {
                match got {
                    // A status fetched before the last key press is ordered the old way.
                    Ok(mut s) => {
                        if by != view.sort {
                            sort_rows(&mut s.spend_today.by_workload, view.sort);
                        }
                        view.status = Some(s);
                        view.error = None;
                    }
                    Err(e) => view.error = Some(e.to_string()),
                }
                dirty = true;
            }
            if dirty {
                terminal.draw(|f| draw(f, &view))?;
                dirty = false;
            }
            if !event::poll(KEY_POLL)? {
                continue;
            }
            match event::read()? {
                Event::Key(k) if k.kind == KeyEventKind::Press => {
                    let by = match k.code {
                        KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => return Ok(()),
                        KeyCode::Char('s') | KeyCode::Char('$') => SortBy::Spend,
                        KeyCode::Char('r') => SortBy::Requests,
                        KeyCode::Char('e') => SortBy::Errors,
                        _ => continue,
                    };
                    view.sort = by;
                    sort.store(code_of(by), Ordering::Relaxed);
                    // Reorder what is on screen now; the fetch brings the true top rows.
                    if let Some(s) = &mut view.status {
                        sort_rows(&mut s.spend_today.by_workload, by);
                    }
                    let _ = wake.send(());
                    dirty = true;
                }
                Event::Resize(..) => dirty = true,
                _ => {}
            }
        }
    })();
    // The terminal's own drop shows the cursor again; then raw mode off, main screen back.
    drop(terminal);
    ratatui::try_restore()?;
    result
}

fn code_of(by: SortBy) -> u8 {
    match by {
        SortBy::Spend => 0,
        SortBy::Requests => 1,
        SortBy::Errors => 2,
    }
}

fn sort_of(code: u8) -> SortBy {
    match code {
        1 => SortBy::Requests,
        2 => SortBy::Errors,
        _ => SortBy::Spend,
    }
}

/// Orders rows by `by`, largest first; `other` stays last.
fn sort_rows(rows: &mut [SpendRow], by: SortBy) {
    let key = |r: &SpendRow| {
        let s = &r.spend;
        let k = match by {
            SortBy::Spend => (s.cost_nano_usd, s.requests, s.errors),
            SortBy::Requests => (s.requests, s.cost_nano_usd, s.errors),
            SortBy::Errors => (s.errors, s.requests, s.cost_nano_usd),
        };
        (r.key != OTHER, k)
    };
    rows.sort_by(|a, b| key(b).cmp(&key(a)).then_with(|| a.key.cmp(&b.key)));
}

fn draw(f: &mut Frame<'_>, v: &View) {
    let [head, backends, spend, models, footer] = Layout::vertical([
        Constraint::Length(7),
        Constraint::Length(3),
        Constraint::Min(5),
        Constraint::Length(7),
        Constraint::Length(1),
    ])
    .areas(f.area());
    if let Some(s) = &v.status {
        draw_head(f, head, s, v.addr);
        draw_backends(f, backends, s);
        draw_spend(f, spend, s, v.sort);
        draw_models(f, models, s);
    }
    let key = |k: &'static str, what: &'static str, on: bool| {
        let style = if on {
            Style::new().add_modifier(Modifier::REVERSED)
        } else {
            Style::new()
        };
        [
            Span::styled(k, Style::new().bold()),
            Span::styled(format!(" {what}"), style),
            Span::raw("  "),
        ]
    };
    let mut spans: Vec<Span<'_>> = Vec::new();
    spans.extend(key("s", "sort by spend", v.sort == SortBy::Spend));
    spans.extend(key("r", "sort by requests", v.sort == SortBy::Requests));
    spans.extend(key("e", "sort by errors", v.sort == SortBy::Errors));
    spans.extend(key("q", "quit", false));
    if let Some(e) = &v.error {
        spans.push(Span::styled(e.clone(), Style::new().fg(Color::Red)));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), footer);
}

fn draw_head(f: &mut Frame<'_>, area: Rect, s: &Status, addr: SocketAddr) {
    let label = |t: &'static str| Span::styled(format!("{t:<13}"), Style::new().bold());
    let flag = |ok: bool, yes: &'static str, no: &'static str| {
        if ok {
            Span::styled(yes, Style::new().fg(Color::Green))
        } else {
            Span::styled(no, Style::new().fg(Color::Red).bold())
        }
    };
    let e = &s.errors;
    let lines = vec![
        Line::from(vec![
            label("capture"),
            flag(s.attached, "attached", "NOT ATTACHED"),
            Span::raw(format!(
                ", fail-{}, {}",
                s.fail_mode.as_deref().unwrap_or("?"),
                plural(s.endpoints.max(0) as u64, "endpoint")
            )),
        ]),
        Line::from(vec![
            label("connections"),
            Span::raw(format!(
                "{} open   {} total   {}",
                thousands(s.connections.active.max(0) as u64),
                thousands(s.connections.total),
                rate(s.connections.per_s)
            )),
        ]),
        Line::from(vec![
            label("requests"),
            Span::raw(format!(
                "{} total   {}",
                thousands(s.requests.total),
                rate(s.requests.per_s)
            )),
        ]),
        Line::from(vec![
            label("errors"),
            Span::raw(format!(
                "client {} ({})   upstream {} ({})   proxy {} ({})",
                thousands(e.client.total),
                rate(e.client.per_s),
                thousands(e.upstream.total),
                rate(e.upstream.per_s),
                thousands(e.proxy.total),
                rate(e.proxy.per_s)
            )),
        ]),
        Line::from(vec![
            label("limit store"),
            Span::styled(
                limit_store(s.limit_store.as_ref()),
                if s.limit_store.as_ref().is_none_or(|l| l.healthy) {
                    Style::new()
                } else {
                    Style::new().fg(Color::Red).bold()
                },
            ),
        ]),
    ];
    let title = format!(
        " tollgate {} at {addr}   pid {}   up {}   {} ",
        s.version,
        s.pid,
        uptime(s.uptime_s),
        if s.ready { "ready" } else { "NOT READY" }
    );
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(Line::from(title).bold())),
        area,
    );
}

fn draw_backends(f: &mut Frame<'_>, area: Rect, s: &Status) {
    let spans: Vec<Span<'_>> = if s.backends.is_empty() {
        vec![Span::raw("none used yet")]
    } else {
        s.backends
            .iter()
            .flat_map(|b| {
                let style = if b.state == "healthy" {
                    Style::new().fg(Color::Green)
                } else {
                    Style::new().fg(Color::Red).bold()
                };
                [Span::styled(backend(b), style), Span::raw("   ")]
            })
            .collect()
    };
    let out = s.backends.iter().filter(|b| b.state != "healthy").count();
    f.render_widget(
        Paragraph::new(Line::from(spans)).block(Block::bordered().title(format!(" backends: {out} out "))),
        area,
    );
}

fn spend_table<'a>(rows: &'a [SpendRow], first: &'static str, sort: Option<SortBy>) -> Table<'a> {
    let head = |t: &'static str, by: Option<SortBy>| {
        let style = if by.is_some() && by == sort {
            Style::new().bold().add_modifier(Modifier::REVERSED)
        } else {
            Style::new().bold()
        };
        Cell::from(Line::from(t).right_aligned()).style(style)
    };
    let header = Row::new(vec![
        Cell::from(first).style(Style::new().bold()),
        head("requests", Some(SortBy::Requests)),
        head("errors", Some(SortBy::Errors)),
        head("tokens in/out", None),
        head("spend", Some(SortBy::Spend)),
    ]);
    let right = |t: String| Cell::from(Line::from(t).right_aligned());
    let body = rows.iter().map(|r| {
        let s = &r.spend;
        Row::new(vec![
            Cell::from(r.key.as_str()),
            right(thousands(s.requests)),
            right(thousands(s.errors)),
            right(format!("{}/{}", compact(s.input_tokens), compact(s.output_tokens))),
            right(dollars(&r.cost_usd)),
        ])
    });
    Table::new(
        body,
        [
            Constraint::Fill(1),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Length(15),
            Constraint::Length(15),
        ],
    )
    .header(header)
}

fn draw_spend(f: &mut Frame<'_>, area: Rect, s: &Status, sort: SortBy) {
    let t = &s.spend_today;
    let title = format!(
        " spend today ({} UTC): {} over {}, {}, by {} ",
        t.day,
        dollars(&t.total.cost_usd),
        plural(t.total.spend.requests, "request"),
        plural(t.workloads as u64, "workload"),
        sort.as_str()
    );
    f.render_widget(
        spend_table(&t.by_workload, "workload", Some(sort)).block(Block::bordered().title(title)),
        area,
    );
}

fn draw_models(f: &mut Frame<'_>, area: Rect, s: &Status) {
    f.render_widget(
        spend_table(&s.spend_today.by_model, "model", None).block(Block::bordered().title(" by model ")),
        area,
    );
}

#[cfg(test)]
mod tests {
    use ratatui::{backend::TestBackend, Terminal};

    use super::*;
    use crate::accounting::recent::{Spend, Today};

    fn row(key: &str, requests: u64, errors: u64, cost_nano_usd: u64) -> SpendRow {
        SpendRow {
            key: key.into(),
            spend: Spend {
                requests,
                errors,
                cost_nano_usd,
                ..Default::default()
            },
            cost_usd: crate::accounting::usd(cost_nano_usd),
        }
    }

    fn screen(v: &View) -> String {
        let mut t = Terminal::new(TestBackend::new(100, 30)).unwrap();
        t.draw(|f| draw(f, v)).unwrap();
        let buf = t.backend().buffer().clone();
        (0..buf.area.height)
            .map(|y| {
                (0..buf.area.width)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
                    + "\n"
            })
            .collect()
    }

    #[test]
    fn rows_sort_by_the_key_with_other_last() {
        let mut rows = vec![row("a", 1, 5, 300), row(OTHER, 99, 99, 999), row("b", 7, 0, 10)];
        sort_rows(&mut rows, SortBy::Requests);
        assert_eq!(
            rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
            ["b", "a", OTHER]
        );
        sort_rows(&mut rows, SortBy::Errors);
        assert_eq!(rows[0].key, "a");
        sort_rows(&mut rows, SortBy::Spend);
        assert_eq!(rows[0].key, "a");
        assert_eq!(sort_of(code_of(SortBy::Errors)), SortBy::Errors);
    }

    #[test]
    fn the_screen_shows_the_status_and_the_keys() {
        let v = View {
            addr: "127.0.0.1:15000".parse().unwrap(),
            status: Some(Status {
                attached: true,
                fail_mode: Some("open".into()),
                requests: crate::admin::api::Rate { total: 12, per_s: 3.0 },
                spend_today: Today {
                    day: "2026-11-28".into(),
                    total: row("total", 12, 0, 45_000),
                    by_workload: vec![row("curl (/tollgate-test)", 12, 0, 45_000)],
                    workloads: 1,
                    ..Default::default()
                },
                ..Default::default()
            }),
            error: Some("nothing answers".into()),
            sort: SortBy::Spend,
        };
        let text = screen(&v);
        for want in [
            "attached, fail-open",
            "12 total   3.0/s",
            "curl (/tollgate-test)",
            "$0.000045",
            "s sort by spend",
            "q quit",
            "nothing answers",
        ] {
            assert!(text.contains(want), "{want:?} not on\n{text}");
        }
    }
}

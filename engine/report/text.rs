//! Text for `dbmaint history` and `dbmaint inspect`: the journal's runs
//! and steps, and one read-only report, each under a header naming the
//! database. Database-supplied text goes through `textsafe`.

use crate::ops::inspect::{InspectReport, InspectWhat};

/// The header line(s) naming the database, for history and inspect.
fn identity_header(identity: &serde_json::Value) -> String {
    match serde_json::from_value::<crate::db::identity::TargetIdentity>(identity.clone()) {
        Ok(i) if i.source.is_empty() => format!("target: {}\n", i.describe()),
        Ok(i) => format!("target: {}\ntarget from {}\n", i.describe(), i.source),
        Err(_) => String::new(),
    }
}

/// `dbmaint history` as text: a line per run, then its steps in the order
/// they ran as an aligned table (durations, human sizes), then any error.
pub fn render_history(v: &serde_json::Value) -> String {
    use crate::run::execplan::{human_bytes, human_count};
    let mut out = identity_header(&v["identity"]);
    let runs = v["runs"].as_array().cloned().unwrap_or_default();
    if runs.is_empty() {
        out.push_str("no runs in the journal match\n");
        return out;
    }
    let text = |x: &serde_json::Value| x.as_str().unwrap_or("").to_string();
    let took = |x: &serde_json::Value| x.as_i64().map_or("-".to_string(), |ms| human_ms(ms.max(0) as u64));
    for r in &runs {
        let hash = text(&r["plan_hash"]);
        crate::report::textsafe::line(
            &mut out,
            format!(
                "run {} `{}` {} (exit {}) {} → {} ({}), hash {}, engine {}{}",
                r["id"],
                text(&r["plan"]),
                text(&r["status"]),
                r["exit_code"],
                text(&r["started_at"]),
                r["finished_at"].as_str().unwrap_or("-"),
                // Run times are kept to the second on SQLite.
                match r["duration_ms"].as_i64() {
                    Some(ms) if ms < 1000 => "under 1 s".to_string(),
                    _ => took(&r["duration_ms"]),
                },
                &hash[..12.min(hash.len())],
                text(&r["engine_version"]),
                r["env"].as_str().map(|e| format!(", env {e}")).unwrap_or_default()
            ),
        );
        let steps = r["steps"].as_array().cloned().unwrap_or_default();
        let head = ["step", "op", "status", "took", "rows", "bytes", "batches"].map(String::from);
        let rows: Vec<[String; 7]> = steps
            .iter()
            .map(|s| {
                [
                    text(&s["step"]),
                    text(&s["op"]),
                    text(&s["status"]),
                    took(&s["duration_ms"]),
                    human_count(s["rows"].as_u64().unwrap_or(0)),
                    human_bytes(s["bytes"].as_u64().unwrap_or(0)),
                    s["batches"].as_u64().unwrap_or(0).to_string(),
                ]
            })
            .collect();
        let mut widths = [0usize; 7];
        for row in rows.iter().chain([&head]) {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        for row in [&head].into_iter().chain(rows.iter()) {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .enumerate()
                // Text columns left, figures right.
                .map(|(i, (c, w))| if i < 3 { format!("{c:<w$}") } else { format!("{c:>w$}") })
                .collect();
            crate::report::textsafe::line(&mut out, format!("    {}", cells.join("  ").trim_end()));
        }
        for s in &steps {
            if let Some(e) = s["error"].as_str() {
                crate::report::textsafe::line(&mut out, format!("    {}: error: {e}", text(&s["step"])));
            }
            if let Some(e) = s["rolled_back"].as_str() {
                crate::report::textsafe::line(&mut out, format!("    {}: rolled back: {e}", text(&s["step"])));
            }
        }
    }
    out
}

/// `850 ms`, `12.3 s`, `4 min 05 s`, `1 h 02 min`.
pub fn human_ms(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{} min {:02} s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{} h {:02} min", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// `dbmaint inspect` as text.
pub fn render_inspect(r: &InspectReport) -> String {
    let mut out = identity_header(&serde_json::to_value(&r.identity).unwrap_or_default());
    let lines = r
        .stats
        .iter()
        .flat_map(|s| s.lines())
        .chain(r.bloat.iter().flat_map(|b| b.lines()));
    for line in lines {
        crate::report::textsafe::line(&mut out, line);
    }
    for f in &r.findings {
        crate::report::textsafe::line(
            &mut out,
            format!("{} {} {}: {}", f.severity.as_str(), f.check, f.object, f.message),
        );
    }
    if r.report == InspectWhat::Checks && r.findings.is_empty() {
        crate::report::textsafe::line(&mut out, "no findings");
    }
    out
}

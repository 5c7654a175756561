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

/// `dbmaint history` as text.
pub fn render_history(v: &serde_json::Value) -> String {
    let mut out = identity_header(&v["identity"]);
    let runs = v["runs"].as_array().cloned().unwrap_or_default();
    if runs.is_empty() {
        out.push_str("no runs in the journal yet\n");
        return out;
    }
    for r in &runs {
        crate::report::textsafe::line(
            &mut out,
            format!(
                "run {} `{}` {} (exit {}) {} → {}, hash {}, engine {}{}",
                r["id"],
                r["plan"].as_str().unwrap_or(""),
                r["status"].as_str().unwrap_or(""),
                r["exit_code"],
                r["started_at"].as_str().unwrap_or(""),
                r["finished_at"].as_str().unwrap_or("-"),
                &r["plan_hash"].as_str().unwrap_or("")[..12.min(r["plan_hash"].as_str().unwrap_or("").len())],
                r["engine_version"].as_str().unwrap_or(""),
                r["env"].as_str().map(|e| format!(", env {e}")).unwrap_or_default()
            ),
        );
        for s in r["steps"].as_array().cloned().unwrap_or_default() {
            crate::report::textsafe::line(
                &mut out,
                format!(
                    "    {:<24} {:<10} {:<9} rows {:>10} bytes {:>12} batches {:>5}{}{}",
                    s["step"].as_str().unwrap_or(""),
                    s["op"].as_str().unwrap_or(""),
                    s["status"].as_str().unwrap_or(""),
                    s["rows"],
                    s["bytes"],
                    s["batches"],
                    s["error"].as_str().map(|e| format!("  error: {e}")).unwrap_or_default(),
                    s["rolled_back"]
                        .as_str()
                        .map(|e| format!("  rolled back: {e}"))
                        .unwrap_or_default(),
                ),
            );
        }
    }
    out
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

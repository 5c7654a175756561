//! Renders an `ExecutionPlan` as cli.md's dry-run diff: one block per step
//! in execution order (marker, id, op, summary, objects with figures, and
//! with `-v` the exact SQL), then a line of totals. Text for people, JSON
//! with the same facts for programs.

use crate::run::execplan::{ExecutionPlan, Fidelity, Marker, human_bytes, human_count};

/// Totals over the steps that would change something.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    pub rows_to_remove: u64,
    pub bytes_to_reclaim: u64,
    pub create: usize,
    pub remove: usize,
    pub change: usize,
    pub read: usize,
    pub sessions: usize,
    pub no_op: usize,
    pub errors: usize,
}

pub fn totals(plan: &ExecutionPlan) -> Totals {
    let mut t = Totals::default();
    for s in &plan.steps {
        if !s.errors.is_empty() {
            t.errors += 1;
            continue;
        }
        if s.no_op {
            t.no_op += 1;
            continue;
        }
        match s.marker {
            Marker::Create => t.create += 1,
            Marker::Remove => {
                t.remove += 1;
                t.rows_to_remove += s.estimate.rows;
            }
            Marker::Change => {
                t.change += 1;
                t.bytes_to_reclaim += s.estimate.bytes;
            }
            Marker::Read => t.read += 1,
            Marker::Sessions => t.sessions += 1,
        }
    }
    t
}

/// The text diff. `verbose` adds each step's statements.
pub fn render_text(plan: &ExecutionPlan, verbose: bool) -> String {
    let mut out = String::new();
    crate::report::textsafe::line(
        &mut out,
        format!(
            "dbmaint plan `{}` against {} ({}), hash {}{}",
            plan.plan,
            plan.target,
            plan.backend,
            &plan.hash[..12.min(plan.hash.len())],
            plan.env.as_ref().map(|e| format!(", env {e}")).unwrap_or_default()
        ),
    );
    if let Some(id) = &plan.identity {
        crate::report::textsafe::line(&mut out, format!("target: {}", id.describe()));
        if !id.source.is_empty() {
            crate::report::textsafe::line(&mut out, format!("target from {}", id.source));
        }
    }
    crate::report::textsafe::line(
        &mut out,
        format!("reference time {}; {} catalog queries", plan.now, plan.catalog_queries),
    );
    for n in plan.privileges.iter().filter(|n| !n.held) {
        crate::report::textsafe::line(
            &mut out,
            format!(
                "warning: the plan's role lacks {}: apply will fail on it; `{}` (see `dbmaint grants`)",
                n.what, n.grant
            ),
        );
    }
    out.push('\n');
    for s in &plan.steps {
        let marker = if !s.errors.is_empty() {
            '✗'
        } else if s.no_op {
            ' '
        } else {
            s.marker.symbol()
        };
        crate::report::textsafe::line(&mut out, format!("{marker} {} ({}): {}", s.id, s.op, s.summary));
        for e in &s.errors {
            crate::report::textsafe::line(&mut out, format!("    error: {e}"));
        }
        for o in &s.objects {
            if o.detail.is_empty() {
                crate::report::textsafe::line(&mut out, format!("    {} {} {}", o.marker.symbol(), o.kind, o.name));
            } else {
                crate::report::textsafe::line(
                    &mut out,
                    format!("    {} {} {}: {}", o.marker.symbol(), o.kind, o.name, o.detail),
                );
            }
        }
        for w in &s.warnings {
            crate::report::textsafe::line(&mut out, format!("    warning: {w}"));
        }
        if !s.no_op && s.errors.is_empty() {
            crate::report::textsafe::line(
                &mut out,
                format!(
                    "    lock: {}; {}",
                    s.lock,
                    if s.transactional {
                        "transactional"
                    } else {
                        "not transactional"
                    }
                ),
            );
            if !s.needs.is_empty() {
                crate::report::textsafe::line(&mut out, format!("    after: {}", s.needs.join(", ")));
            }
            for n in &s.notes {
                crate::report::textsafe::line(&mut out, format!("    {n}"));
            }
            if let Some(e) = &s.expected {
                crate::report::textsafe::line(
                    &mut out,
                    format!("    expected: {} ({})", crate::run::fit::clock_ms(e.ms), e.basis),
                );
            }
        }
        if verbose {
            for q in &s.statements {
                crate::report::textsafe::line(&mut out, format!("    sql: {q}"));
            }
            if !s.compensation.is_empty() {
                crate::report::textsafe::line(&mut out, format!("    undo: {}", s.compensation));
            }
            // The undo actions the executor runs when an action fails.
            for u in s.actions.iter().flat_map(|a| a.undo()) {
                crate::report::textsafe::line(&mut out, format!("    on failure: {}", u.shows));
            }
        }
        out.push('\n');
    }
    let t = totals(plan);
    let approx = if plan
        .steps
        .iter()
        .any(|s| s.marker == Marker::Remove && s.estimate.fidelity != Fidelity::Exact)
    {
        "~"
    } else {
        ""
    };
    crate::report::textsafe::line(
        &mut out,
        format!(
            "Plan: {approx}{} rows to remove, ~{} to reclaim; {} to create, {} to remove, {} to change, {} to read{}{}{}",
            human_count(t.rows_to_remove),
            human_bytes(t.bytes_to_reclaim),
            t.create,
            t.remove,
            t.change,
            t.read,
            if t.sessions > 0 {
                format!(", {} acting on sessions", t.sessions)
            } else {
                String::new()
            },
            if t.no_op > 0 {
                format!(", {} with nothing to do", t.no_op)
            } else {
                String::new()
            },
            if t.errors > 0 {
                format!(", {} that cannot run", t.errors)
            } else {
                String::new()
            },
        ),
    );
    if let Some(line) = expected_line(plan) {
        crate::report::textsafe::line(&mut out, line);
    }
    out
}

/// The run's expected duration from the steps' history (issue 14 §6),
/// against `max_runtime`; `None` when no step has history.
fn expected_line(plan: &ExecutionPlan) -> Option<String> {
    let runs: Vec<&crate::run::fit::Expected> = plan
        .steps
        .iter()
        .filter(|s| !s.no_op && s.errors.is_empty())
        .filter_map(|s| s.expected.as_ref())
        .collect();
    if runs.is_empty() {
        return None;
    }
    let doing = plan.steps.iter().filter(|s| !s.no_op && s.errors.is_empty()).count();
    let sum: u64 = runs.iter().map(|e| e.ms).sum();
    Some(format!(
        "Expected: {} for {} of {doing} steps, from their past runs (one after another; parallel steps take less){}{}",
        crate::run::fit::clock_ms(sum),
        runs.len(),
        plan.max_runtime_ms
            .map(|m| format!("; max_runtime {}", crate::run::fit::clock_ms(m)))
            .unwrap_or_default(),
        if plan.fit_defer {
            "; limits.fit: defer (a step that does not fit in what is left is deferred)"
        } else {
            ""
        }
    ))
}

/// The JSON diff: the execution plan's facts plus totals.
pub fn render_json(plan: &ExecutionPlan) -> serde_json::Value {
    let mut v = serde_json::to_value(plan).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("totals".into(), serde_json::to_value(totals(plan)).unwrap_or_default());
        o.insert("changes".into(), plan.has_changes().into());
    }
    v
}

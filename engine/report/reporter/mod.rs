//! Reporters for people: progress bars (`progress.rs`, the only user of
//! indicatif), start/finish log lines for a non-TTY stderr, a periodic
//! progress line when progress is asked for without a TTY
//! (`periodic.rs`), and the final
//! report as text. The run's own listeners (the collector that builds the
//! report, the JSON Lines log, the journal) live in `run/collect.rs`; the
//! command line hands these to `run::apply`.

pub mod periodic;
pub mod progress;

use std::io::Write as _;

use crate::run::collect::{Report, Reporter};
use crate::run::events::{Event, Status};
use crate::run::execplan::{Estimate, Fidelity, human_bytes, human_count};

fn secs(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

fn predicted(e: &Estimate, p: u64, what: &str, value: u64, fmt: fn(u64) -> String) -> String {
    let approx = if e.fidelity == Fidelity::Exact { "" } else { "~" };
    format!(
        "{what} {} (predicted {approx}{}{})",
        fmt(value),
        fmt(p),
        error_pct(p, value)
    )
}

/// `, +12.5%`: how far the figure fell from its prediction (nothing when
/// nothing was predicted).
pub fn error_pct(predicted: u64, actual: u64) -> String {
    if predicted == 0 {
        return String::new();
    }
    format!(
        ", {:+.1}%",
        (actual as f64 - predicted as f64) * 100.0 / predicted as f64
    )
}

/// The report for people.
pub fn render_text(r: &Report) -> String {
    let mut out = String::new();
    crate::report::textsafe::line(
        &mut out,
        format!(
            "Run {} of plan `{}` {} in {} (exit code {})",
            r.run_id,
            r.plan,
            r.status,
            secs(r.duration_ms),
            r.exit_code
        ),
    );
    for s in &r.steps {
        let mark = match s.status {
            Status::Succeeded => "✓",
            Status::Failed => "✗",
            Status::Skipped => "-",
            Status::Deferred => "…",
            Status::Partial => "◐",
        };
        let mut figures = vec![];
        // One measure per figure: vacuum's predicted rows are dead tuples,
        // set against the dead tuples the server says it removed.
        if s.op == "vacuum" {
            if let Some(removed) = s.measured.get("dead_tuples_removed").and_then(|v| v.as_u64()) {
                figures.push(predicted(
                    &s.predicted,
                    s.predicted.rows,
                    "dead tuples removed",
                    removed,
                    human_count,
                ));
            }
        } else if s.predicted.rows > 0 || s.rows > 0 {
            figures.push(predicted(&s.predicted, s.predicted.rows, "rows", s.rows, human_count));
        }
        if s.predicted.archived > 0 || s.archived > 0 {
            figures.push(predicted(
                &s.predicted,
                s.predicted.archived,
                "archived",
                s.archived,
                human_count,
            ));
        }
        if s.predicted_reusable {
            if s.bytes > 0 {
                figures.push(format!("given back {}", human_bytes(s.bytes)));
            }
            if s.predicted.bytes > 0 {
                figures.push(format!(
                    "~{} freed for reuse (predicted)",
                    human_bytes(s.predicted.bytes)
                ));
            }
        } else if s.predicted.bytes > 0 || s.bytes > 0 {
            figures.push(predicted(
                &s.predicted,
                s.predicted.bytes,
                if s.op == "backup" { "written" } else { "given back" },
                s.bytes,
                human_bytes,
            ));
        }
        if s.batches > 0 {
            figures.push(crate::run::execplan::counted(s.batches, "batch", "batches"));
        }
        if s.retries > 0 {
            figures.push(format!("{} lock retries", s.retries));
        }
        crate::report::textsafe::line(
            &mut out,
            format!(
                "  {mark} {} ({}) {}{}{}",
                s.step,
                if s.op == "sql" {
                    "sql: author SQL"
                } else {
                    s.op.as_str()
                },
                s.status.as_str(),
                if figures.is_empty() {
                    String::new()
                } else {
                    format!(": {}", figures.join(", "))
                },
                if s.status == Status::Skipped {
                    String::new()
                } else {
                    format!(" [{}]", secs(s.duration_ms))
                }
            ),
        );
        for (label, v) in [
            ("error", &s.error),
            ("rolled back", &s.rolled_back),
            ("LEFT FOR YOU", &s.cleanup_failed),
            ("deferred", &s.deferred),
            ("throttled", &s.throttled),
            ("re-evaluated at start", &s.reselected),
            ("PARTIAL", &s.partial),
            ("skipped", &s.skipped),
        ] {
            if let Some(v) = v {
                crate::report::textsafe::line(&mut out, format!("      {label}: {v}"));
            }
        }
        for c in &s.cascaded {
            crate::report::textsafe::line(
                &mut out,
                format!(
                    "      ON DELETE {}: {} rows of {}",
                    c.on_delete,
                    human_count(c.rows),
                    c.foreign_key
                ),
            );
        }
        for line in &s.lines {
            crate::report::textsafe::line(&mut out, format!("      {line}"));
        }
        for f in &s.findings {
            crate::report::textsafe::line(
                &mut out,
                format!("      {} {} {}: {}", f.severity.as_str(), f.check, f.object, f.message),
            );
        }
    }
    for d in &r.accepted_drift {
        crate::report::textsafe::line(&mut out, format!("  applied with --accept-drift: {d}"));
    }
    let t = &r.totals;
    crate::report::textsafe::line(
        &mut out,
        format!(
            "Totals: {} rows deleted (predicted {}{}), {}{} given back (predicted {}{}){}; {} succeeded, {} failed, {} skipped, {} deferred{}",
            human_count(t.rows),
            human_count(t.rows_predicted),
            error_pct(t.rows_predicted, t.rows),
            if t.dead_tuples_removed > 0 || t.dead_tuples_removed_predicted > 0 {
                format!(
                    "{} dead tuples removed by vacuum (predicted ~{}{}), ",
                    human_count(t.dead_tuples_removed),
                    human_count(t.dead_tuples_removed_predicted),
                    error_pct(t.dead_tuples_removed_predicted, t.dead_tuples_removed)
                )
            } else {
                String::new()
            },
            human_bytes(t.bytes),
            human_bytes(t.bytes_predicted),
            error_pct(t.bytes_predicted, t.bytes),
            {
                let mut more = String::new();
                if t.rows_archived > 0 || t.rows_archived_predicted > 0 {
                    more.push_str(&format!(
                        ", {} rows archived (predicted {}{})",
                        human_count(t.rows_archived),
                        human_count(t.rows_archived_predicted),
                        error_pct(t.rows_archived_predicted, t.rows_archived)
                    ));
                }
                if t.bytes_reusable_predicted > 0 {
                    more.push_str(&format!(
                        ", ~{} freed for reuse inside tables (predicted)",
                        human_bytes(t.bytes_reusable_predicted)
                    ));
                }
                if t.bytes_written > 0 || t.bytes_written_predicted > 0 {
                    more.push_str(&format!(
                        ", {} written by backups (predicted {}{})",
                        human_bytes(t.bytes_written),
                        human_bytes(t.bytes_written_predicted),
                        error_pct(t.bytes_written_predicted, t.bytes_written)
                    ));
                }
                more
            },
            t.succeeded,
            t.failed,
            t.skipped,
            t.deferred,
            if t.partial > 0 {
                format!(", {} PARTIAL", t.partial)
            } else {
                String::new()
            }
        ),
    );
    out
}

/// How much of a run the stderr log shows, `RUST_LOG`-style: each level
/// shows itself and the levels above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl Level {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "error" => Self::Error,
            "warn" | "warning" => Self::Warn,
            "info" => Self::Info,
            "debug" => Self::Debug,
            "trace" => Self::Trace,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }

    /// An event's level: failures are errors; warnings, retries, undos
    /// and deferrals warnings; run and step milestones info; each object
    /// done debug; each batch trace.
    pub fn of(e: &Event) -> Self {
        match e {
            Event::StepFailed { .. } => Self::Error,
            Event::Warning { .. }
            | Event::Retrying { .. }
            | Event::RolledBack { .. }
            | Event::StepDeferred { .. }
            | Event::Throttled { .. } => Self::Warn,
            Event::ObjectDone { .. } | Event::Phase { .. } => Self::Debug,
            Event::BatchDone { .. } => Self::Trace,
            _ => Self::Info,
        }
    }
}

/// The run's events on stderr, for logs and CI: a time-stamped line each
/// (text), or one JSON object each with `ts` and `level` added (json, for
/// log shippers), down to `level`.
#[derive(Debug)]
pub struct Lines {
    pub level: Level,
    pub json: bool,
}

impl Reporter for Lines {
    fn event(&mut self, e: &Event) {
        let level = Level::of(e);
        if level > self.level {
            return;
        }
        let now = chrono::Utc::now();
        if self.json {
            let mut v = serde_json::to_value(e).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert(
                    "ts".into(),
                    now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true).into(),
                );
                o.insert("level".into(), level.as_str().into());
            }
            let _ = writeln!(std::io::stderr(), "{v}");
        } else if let Some(line) = line_for(e) {
            let _ = writeln!(
                std::io::stderr(),
                "{} {}",
                now.format("%H:%M:%S"),
                crate::report::textsafe::visible(&line)
            );
        }
    }
}

/// The log line of an event (batches and objects only at the levels that
/// show them).
pub fn line_for(e: &Event) -> Option<String> {
    Some(match e {
        Event::RunStarted {
            run_id, plan, steps, ..
        } => format!("run {run_id} of `{plan}`: {steps} steps"),
        Event::StepStarted { step, op, units, rows } => {
            format!(
                "{step} ({op}) started: {} rows expected, {units} units",
                human_count(*rows)
            )
        }
        Event::Retrying {
            step,
            attempt,
            wait_ms,
            error,
        } => format!("{step}: lock not granted ({error}); retry {attempt} in {wait_ms} ms"),
        Event::RolledBack { step, what } => format!("{step}: rolled back: {what}"),
        Event::Warning { step, message } => format!("{step}: WARNING: {message}"),
        Event::Phase { step, object, phase } => format!("{step}: {object}: {phase}"),
        Event::Throttled { step, reason } => format!("{step}: throttled: {reason}; waiting before the next batch"),
        Event::ThrottleLifted { step, waited_ms } => format!(
            "{step}: throttle lifted after {}; batches go on",
            crate::report::text::human_ms(*waited_ms)
        ),
        Event::StepFinished { result } => format!(
            "{} {}: {} rows, {}, {} statements, {:.1}s{}",
            result.step,
            if result.status == Status::Partial {
                "PARTIAL"
            } else {
                "finished"
            },
            human_count(result.rows),
            human_bytes(result.bytes),
            result.statements,
            result.duration_ms as f64 / 1000.0,
            result.partial.as_deref().map(|p| format!(": {p}")).unwrap_or_default()
        ),
        Event::StepFailed { result } => format!(
            "{} FAILED: {}",
            result.step,
            result.error.as_deref().unwrap_or("unknown error")
        ),
        Event::StepDeferred { result } => format!(
            "{} deferred: {}",
            result.step,
            result.deferred.as_deref().unwrap_or("limits reached")
        ),
        Event::StepSkipped { step, reason, .. } => format!("{step} skipped: {reason}"),
        Event::RunFinished {
            run_id,
            status,
            exit_code,
            ..
        } => format!("run {run_id} {status} (exit code {exit_code})"),
        Event::ObjectDone {
            step,
            object,
            duration_ms,
            ..
        } => format!("{step}: {object} done in {:.1}s", *duration_ms as f64 / 1000.0),
        Event::BatchDone {
            step,
            batch,
            rows,
            rows_total,
            duration_ms,
        } => format!(
            "{step}: batch {batch}: {} rows ({} so far) in {duration_ms} ms",
            human_count(*rows),
            human_count(*rows_total)
        ),
    })
}

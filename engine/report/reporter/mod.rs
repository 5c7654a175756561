//! Reporters of executor events: progress bars (`progress.rs`, the only
//! user of indicatif), start/finish log lines for a non-TTY stderr, the
//! JSON Lines event log, and the collector that builds the final report.
//! The journal is written from the same event stream by `run.rs`.

pub mod progress;

use std::io::Write as _;

use serde::Serialize;

use crate::run::events::{Event, Status, StepResult};
use crate::run::execplan::{Estimate, ExecutionPlan, Fidelity, human_bytes, human_count};

/// Something that listens to a run.
pub trait Reporter: Send {
    fn event(&mut self, e: &Event);
}

/// One step in the final report: predicted against actual.
#[derive(Debug, Clone, Serialize)]
pub struct ReportStep {
    pub id: String,
    pub op: String,
    pub status: Status,
    pub predicted: Estimate,
    pub rows: u64,
    pub bytes: u64,
    pub batches: u64,
    pub statements: u64,
    pub retries: u64,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup_failed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deferred: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cascaded: Vec<crate::run::events::Cascaded>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<crate::ops::check::spec::Finding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<crate::ops::stats::report::StatsReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bloat: Option<crate::ops::bloat::figures::BloatReport>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ReportTotals {
    pub rows_predicted: u64,
    pub rows: u64,
    pub bytes_predicted: u64,
    pub bytes: u64,
    pub succeeded: usize,
    pub failed: usize,
    pub skipped: usize,
    pub deferred: usize,
    /// Steps that did less than they chose to (see `Status::Partial`).
    #[serde(default)]
    pub partial: usize,
}

/// The final report of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub run_id: i64,
    pub plan: String,
    pub hash: String,
    pub target: String,
    pub env: Option<String>,
    pub status: String,
    pub exit_code: i32,
    pub duration_ms: u64,
    pub steps: Vec<ReportStep>,
    pub totals: ReportTotals,
    /// What `--accept-drift` let through: retention steps of a saved plan
    /// that took other rows than were reviewed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted_drift: Vec<String>,
}

/// Collects step results into a [`Report`].
#[derive(Debug)]
pub struct Collector {
    report: Report,
}

impl Collector {
    pub fn new(plan: &ExecutionPlan) -> Self {
        Self {
            report: Report {
                run_id: 0,
                plan: plan.plan.clone(),
                hash: plan.hash.clone(),
                target: plan.target.clone(),
                env: plan.env.clone(),
                status: "running".into(),
                exit_code: 0,
                duration_ms: 0,
                accepted_drift: plan.accepted_drift.clone(),
                steps: plan
                    .steps
                    .iter()
                    .map(|s| ReportStep {
                        id: s.id.clone(),
                        op: s.op.clone(),
                        status: Status::Skipped,
                        predicted: s.estimate,
                        rows: 0,
                        bytes: 0,
                        batches: 0,
                        statements: 0,
                        retries: 0,
                        duration_ms: 0,
                        error: None,
                        rolled_back: None,
                        cleanup_failed: None,
                        deferred: None,
                        partial: None,
                        cascaded: vec![],
                        skipped: Some("not selected (--step)".into()),
                        findings: vec![],
                        stats: None,
                        bloat: None,
                    })
                    .collect(),
                totals: ReportTotals::default(),
            },
        }
    }

    fn record(&mut self, r: &StepResult) {
        if let Some(s) = self.report.steps.iter_mut().find(|s| s.id == r.step) {
            s.status = r.status;
            s.rows = r.rows;
            s.bytes = r.bytes;
            s.batches = r.batches;
            s.statements = r.statements;
            s.retries = r.retries;
            s.duration_ms = r.duration_ms;
            s.error = r.error.clone();
            s.rolled_back = r.rolled_back.clone();
            s.cleanup_failed = r.cleanup_failed.clone();
            s.deferred = r.deferred.clone();
            s.partial = r.partial.clone();
            s.cascaded = r.cascaded.clone();
            s.findings = r.findings.clone();
            s.stats = r.stats.clone();
            s.bloat = r.bloat.clone();
            s.skipped = None;
        }
    }

    pub fn finish(mut self) -> Report {
        let mut t = ReportTotals::default();
        for s in &self.report.steps {
            if s.skipped.as_deref() == Some("not selected (--step)") {
                continue;
            }
            t.rows_predicted += s.predicted.rows;
            t.rows += s.rows;
            t.bytes_predicted += s.predicted.bytes;
            t.bytes += s.bytes;
            match s.status {
                Status::Succeeded => t.succeeded += 1,
                Status::Failed => t.failed += 1,
                Status::Skipped => t.skipped += 1,
                Status::Deferred => t.deferred += 1,
                Status::Partial => t.partial += 1,
            }
        }
        self.report
            .steps
            .retain(|s| s.skipped.as_deref() != Some("not selected (--step)"));
        self.report.totals = t;
        self.report
    }
}

impl Reporter for Collector {
    fn event(&mut self, e: &Event) {
        match e {
            Event::RunStarted { run_id, .. } => self.report.run_id = *run_id,
            Event::StepFinished { result } | Event::StepFailed { result } | Event::StepDeferred { result } => {
                self.record(result)
            }
            Event::StepSkipped { step, reason, .. } => {
                if let Some(s) = self.report.steps.iter_mut().find(|s| &s.id == step) {
                    s.status = Status::Skipped;
                    s.skipped = Some(reason.clone());
                }
            }
            Event::RunFinished {
                status,
                exit_code,
                duration_ms,
                ..
            } => {
                self.report.status = status.clone();
                self.report.exit_code = *exit_code;
                self.report.duration_ms = *duration_ms;
            }
            _ => {}
        }
    }
}

fn secs(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

fn predicted(e: &Estimate, what: &str, value: u64, fmt: fn(u64) -> String) -> String {
    let approx = if e.fidelity == Fidelity::Exact { "" } else { "~" };
    format!(
        "{what} {} (predicted {approx}{})",
        fmt(value),
        fmt(if what == "rows" { e.rows } else { e.bytes })
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
        if s.predicted.rows > 0 || s.rows > 0 {
            figures.push(predicted(&s.predicted, "rows", s.rows, human_count));
        }
        if s.predicted.bytes > 0 || s.bytes > 0 {
            figures.push(predicted(&s.predicted, "bytes", s.bytes, human_bytes));
        }
        if s.batches > 0 {
            figures.push(format!("{} batches", s.batches));
        }
        if s.retries > 0 {
            figures.push(format!("{} lock retries", s.retries));
        }
        crate::report::textsafe::line(
            &mut out,
            format!(
                "  {mark} {} ({}) {}{}{}",
                s.id,
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
        let bloat = s.bloat.iter().flat_map(|b| b.lines());
        for line in s.stats.iter().flat_map(|st| st.lines()).chain(bloat) {
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
            "Totals: {} rows (predicted {}), {} (predicted {}); {} succeeded, {} failed, {} skipped, {} deferred{}",
            human_count(t.rows),
            human_count(t.rows_predicted),
            human_bytes(t.bytes),
            human_bytes(t.bytes_predicted),
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

/// Start and finish lines with figures on stderr, for logs and CI.
#[derive(Debug, Default)]
pub struct Lines;

impl Reporter for Lines {
    fn event(&mut self, e: &Event) {
        if let Some(line) = line_for(e) {
            let _ = writeln!(
                std::io::stderr(),
                "{} {}",
                chrono::Utc::now().format("%H:%M:%S"),
                crate::report::textsafe::visible(&line)
            );
        }
    }
}

/// The log line of an event; `None` for events too frequent to log.
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
        Event::BatchDone { .. } | Event::ObjectDone { .. } => return None,
    })
}

/// The JSON Lines event log under `--log-dir`.
#[derive(Debug)]
pub struct JsonLog {
    file: std::fs::File,
}

impl JsonLog {
    pub fn create(path: &std::path::Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        Ok(Self {
            file: std::fs::File::create(path)?,
        })
    }
}

impl Reporter for JsonLog {
    fn event(&mut self, e: &Event) {
        let mut v = serde_json::to_value(e).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "at".into(),
                chrono::Utc::now()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                    .into(),
            );
        }
        let _ = writeln!(self.file, "{v}");
    }
}

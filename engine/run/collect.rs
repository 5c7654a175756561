//! The run's own listeners of executor events: the [`Collector`] that
//! builds the final [`Report`] (data, rendered by `report/`), and the JSON
//! Lines event log under `--log-dir`. [`Reporter`] is the listener trait
//! every display implements too; the journal is written from the same
//! event stream by `run/mod.rs`.

use std::io::Write as _;

use serde::Serialize;

use crate::run::events::{Event, Status, StepResult};
use crate::run::execplan::{Estimate, ExecutionPlan};

/// Something that listens to a run.
pub trait Reporter: Send {
    fn event(&mut self, e: &Event);
}

/// One step in the final report: its result against what was predicted,
/// or why it did not run.
#[derive(Debug, Clone, Serialize)]
pub struct ReportStep {
    #[serde(flatten)]
    pub result: StepResult,
    pub predicted: Estimate,
    /// The predicted bytes are freed for reuse inside the tables (a
    /// retention's deleted rows, a plain VACUUM's dead tuples), not given
    /// back to the file system: they are not set against `bytes`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub predicted_reusable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl std::ops::Deref for ReportStep {
    type Target = StepResult;

    fn deref(&self) -> &StepResult {
        &self.result
    }
}

/// The run's figures, one measure each (issue 14 §3): rows are rows
/// deleted (retention, partitions), never vacuum's dead tuples; bytes are
/// bytes given back (vacuum, reindex, partitions), never a backup's size,
/// which is `bytes_written`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReportTotals {
    pub rows_predicted: u64,
    pub rows: u64,
    /// Of the rows deleted, those copied to an archive first.
    pub rows_archived_predicted: u64,
    pub rows_archived: u64,
    pub bytes_predicted: u64,
    pub bytes: u64,
    pub bytes_written_predicted: u64,
    pub bytes_written: u64,
    /// Bytes the diff predicted freed for reuse inside tables (retention,
    /// plain VACUUM): no figure measures them, so they stand alone.
    pub bytes_reusable_predicted: u64,
    /// Dead tuples vacuum removed, as the server counts them, and as the
    /// diff predicted them.
    pub dead_tuples_removed_predicted: u64,
    pub dead_tuples_removed: u64,
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
                        result: StepResult::new(&s.id, &s.op, Status::Skipped),
                        predicted: s.estimate,
                        predicted_reusable: s.op == "retention" || s.is_plain_postgres_vacuum(),
                        skipped: Some("not selected (--step)".into()),
                    })
                    .collect(),
                totals: ReportTotals::default(),
            },
        }
    }

    fn record(&mut self, r: &StepResult) {
        if let Some(s) = self.report.steps.iter_mut().find(|s| s.step == r.step) {
            s.result = r.clone();
            s.skipped = None;
        }
    }

    pub fn finish(mut self) -> Report {
        let mut t = ReportTotals::default();
        for s in &self.report.steps {
            if s.skipped.as_deref() == Some("not selected (--step)") {
                continue;
            }
            if matches!(s.op.as_str(), "retention" | "partitions") {
                t.rows_predicted += s.predicted.rows;
                t.rows += s.rows;
                t.rows_archived_predicted += s.predicted.archived;
                t.rows_archived += s.archived;
            }
            if s.op == "vacuum" {
                t.dead_tuples_removed_predicted += s.predicted.rows;
                t.dead_tuples_removed += s
                    .measured
                    .get("dead_tuples_removed")
                    .and_then(|v| v.as_u64())
                    .unwrap_or(0);
            }
            if s.op == "backup" {
                t.bytes_written_predicted += s.predicted.bytes;
                t.bytes_written += s.bytes;
            } else if s.predicted_reusable {
                t.bytes_reusable_predicted += s.predicted.bytes;
                t.bytes += s.bytes;
            } else {
                t.bytes_predicted += s.predicted.bytes;
                t.bytes += s.bytes;
            }
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
                if let Some(s) = self.report.steps.iter_mut().find(|s| &s.step == step) {
                    s.result.status = Status::Skipped;
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

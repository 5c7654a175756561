//! What the executor says while it runs. The executor emits these and
//! nothing else; progress bars, log lines, the JSON Lines log, the journal
//! and the final report are all reporters of these events.

use serde::Serialize;

use crate::run::execplan::is_zero;

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Succeeded,
    Failed,
    /// Not run: a step it needs did not succeed, or the run was aborted.
    Skipped,
    /// Not finished because `limits` ran out; a rerun continues it.
    Deferred,
    /// Finished, but did less than it chose to: some rows a retention
    /// batch selected were kept (a trigger's veto, a row-level security
    /// policy, a concurrent change). Steps that need it still run; the run
    /// exits 1 so that the difference is looked at.
    Partial,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Deferred => "deferred",
            Self::Partial => "partial",
        }
    }
}

/// Rows a retention step's deletes reached through one foreign key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cascaded {
    pub foreign_key: String,
    /// `CASCADE` (deleted), `SET NULL` / `SET DEFAULT` (changed).
    pub on_delete: String,
    pub rows: u64,
}

/// How bad a finding is; `fail_on` compares against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }
}

/// One thing a health check (or a threshold, such as bloat) found: what
/// `check` steps fail on and every report lists.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Finding {
    pub check: String,
    pub severity: Severity,
    /// The table, index, session, sequence … it is about.
    pub object: String,
    pub message: String,
    pub figures: serde_json::Value,
}

impl Finding {
    pub fn new(
        check: impl AsRef<str>,
        severity: Severity,
        object: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            check: check.as_ref().to_string(),
            severity,
            object: object.into(),
            message: message.into(),
            figures: serde_json::Value::Null,
        }
    }

    pub fn with(mut self, figures: serde_json::Value) -> Self {
        self.figures = figures;
        self
    }
}

/// A finished step's figures: what the executor returns, the event log
/// carries and the final report shows (`run::collect::ReportStep` adds the
/// prediction to it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepResult {
    /// The step's id.
    #[serde(rename = "id")]
    pub step: String,
    pub op: String,
    pub status: Status,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    pub rows: u64,
    /// Of `rows`, those copied to the step's archive (table or file) in
    /// the same transaction as their delete.
    #[serde(skip_serializing_if = "is_zero")]
    pub archived: u64,
    pub bytes: u64,
    pub statements: u64,
    pub batches: u64,
    /// Lock-timeout retries taken.
    pub retries: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What was undone: a rolled-back batch, a removed partial file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<String>,
    /// What is left for a person when a cleanup itself failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup_failed: Option<String>,
    /// Work not done because of `limits`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deferred: Option<String>,
    /// Time spent waiting on `throttle` between batches.
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_ms: u64,
    /// How long and why `throttle` held the step back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttled: Option<String>,
    /// What re-evaluating the selection at step start changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reselected: Option<String>,
    /// Failed on what it found (`check`'s `fail_on`), not on an error.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub failed_on_findings: bool,
    /// Why the step is `partial`: what it did and what it left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial: Option<String>,
    /// Objects that failed while the step's others went on
    /// (`on_object_failure: continue`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub objects_failed: Vec<ObjectOutcome>,
    /// Objects not attempted because one they need failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub objects_skipped: Vec<ObjectOutcome>,
    /// `on_cascade: allow`: the rows of other tables the deletes reached.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cascaded: Vec<Cascaded>,
    /// What the step found (`check`, `bloat`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
    /// What the step measured, under a key its operation names (`stats`,
    /// `bloat`): the report's JSON keeps each at the step's top level.
    #[serde(flatten)]
    pub measured: serde_json::Map<String, serde_json::Value>,
    /// The same, as lines for the text report.
    #[serde(skip)]
    pub lines: Vec<String>,
}

impl StepResult {
    /// A step with nothing done yet.
    pub fn new(step: &str, op: &str, status: Status) -> Self {
        Self {
            step: step.to_string(),
            op: op.to_string(),
            status,
            started_at: String::new(),
            finished_at: String::new(),
            duration_ms: 0,
            rows: 0,
            archived: 0,
            bytes: 0,
            statements: 0,
            batches: 0,
            retries: 0,
            error: None,
            rolled_back: None,
            cleanup_failed: None,
            deferred: None,
            throttled_ms: 0,
            throttled: None,
            reselected: None,
            failed_on_findings: false,
            partial: None,
            objects_failed: vec![],
            objects_skipped: vec![],
            cascaded: vec![],
            findings: vec![],
            measured: serde_json::Map::new(),
            lines: vec![],
        }
    }

    /// Adds the figures of one of the step's lanes (`jobs`) to these.
    pub fn absorb(&mut self, o: StepResult) {
        self.rows += o.rows;
        self.archived += o.archived;
        self.bytes += o.bytes;
        self.statements += o.statements;
        self.batches += o.batches;
        self.retries += o.retries;
        self.throttled_ms += o.throttled_ms;
        for (mine, theirs) in [
            (&mut self.rolled_back, o.rolled_back),
            (&mut self.cleanup_failed, o.cleanup_failed),
            (&mut self.partial, o.partial),
            (&mut self.throttled, o.throttled),
        ] {
            if let Some(t) = theirs {
                *mine = Some(match mine.take() {
                    Some(m) => format!("{m}; {t}"),
                    None => t,
                });
            }
        }
        self.objects_failed.extend(o.objects_failed);
        self.objects_skipped.extend(o.objects_skipped);
        self.cascaded.extend(o.cascaded);
        self.findings.extend(o.findings);
        self.measured.extend(o.measured);
        self.lines.extend(o.lines);
    }

    /// Keeps a report the step measured: its JSON under `key` (a top-level
    /// key of the step in the report) and its lines for the text report.
    pub fn keep_report(&mut self, key: &str, report: &impl Serialize, lines: Vec<String>) {
        self.measured
            .insert(key.into(), serde_json::to_value(report).unwrap_or_default());
        self.lines = lines;
    }
}

/// One object of a step that failed, or was skipped, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectOutcome {
    pub object: String,
    pub error: String,
    /// PostgreSQL's error code, when the server gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
}

impl ObjectOutcome {
    /// An object's failure, its SQLSTATE read from the message (the engine
    /// writes it as `(SQLSTATE 55000)` beside the server's text).
    pub fn failed(object: &str, error: &str) -> Self {
        let sqlstate = error.rfind("(SQLSTATE ").and_then(|i| {
            let code = error.get(i + 10..i + 15)?;
            code.chars()
                .all(|c| c.is_ascii_alphanumeric())
                .then(|| code.to_string())
        });
        Self {
            object: object.to_string(),
            error: error.to_string(),
            sqlstate,
        }
    }
}

/// The events, in the order a run emits them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run_id: i64,
        plan: String,
        hash: String,
        steps: usize,
    },
    StepStarted {
        step: String,
        op: String,
        /// Batches or objects the step expects to go through.
        units: u64,
        /// Rows it expects to touch.
        rows: u64,
    },
    /// One retention batch committed.
    BatchDone {
        step: String,
        batch: u64,
        rows: u64,
        rows_total: u64,
        duration_ms: u64,
    },
    /// One object (a table's VACUUM, a backup file) finished.
    ObjectDone {
        step: String,
        object: String,
        done: u64,
        duration_ms: u64,
    },
    /// A lock was not granted in time; the step waits and tries again.
    Retrying {
        step: String,
        attempt: u64,
        wait_ms: u64,
        error: String,
    },
    RolledBack {
        step: String,
        what: String,
    },
    /// What a long statement of the step is doing, from the server's
    /// progress views (`scanning heap 45%`).
    Phase {
        step: String,
        object: String,
        phase: String,
    },
    /// `throttle`: the server's load is over a limit; the step waits
    /// before its next batch.
    Throttled {
        step: String,
        reason: String,
    },
    /// The load fell back within the limits after `waited_ms`.
    ThrottleLifted {
        step: String,
        waited_ms: u64,
    },
    /// Something the operator should know that does not stop the step.
    Warning {
        step: String,
        message: String,
    },
    StepFinished {
        result: StepResult,
    },
    StepFailed {
        result: StepResult,
    },
    StepSkipped {
        step: String,
        op: String,
        reason: String,
    },
    StepDeferred {
        result: StepResult,
    },
    RunFinished {
        run_id: i64,
        status: String,
        exit_code: i32,
        duration_ms: u64,
    },
}

impl Event {
    /// The step a step-level event is about.
    pub fn step(&self) -> Option<&str> {
        match self {
            Event::StepStarted { step, .. }
            | Event::BatchDone { step, .. }
            | Event::ObjectDone { step, .. }
            | Event::Retrying { step, .. }
            | Event::RolledBack { step, .. }
            | Event::Warning { step, .. }
            | Event::Throttled { step, .. }
            | Event::Phase { step, .. }
            | Event::ThrottleLifted { step, .. }
            | Event::StepSkipped { step, .. } => Some(step),
            Event::StepFinished { result } | Event::StepFailed { result } | Event::StepDeferred { result } => {
                Some(&result.step)
            }
            Event::RunStarted { .. } | Event::RunFinished { .. } => None,
        }
    }
}

//! Health checks of the `check` operation: what a finding is, and the
//! thresholds a run applies. The SQL lives with each backend
//! (`db::pg::run_checks`, `db::sqlite::run_checks`); the same code answers
//! `plan diff` (read-only session) and `plan apply` (the step's session).

use serde::{Deserialize, Serialize};

use crate::ops::check::CheckName;

/// How bad a finding is; `fail_on` compares against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
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

/// One thing a check found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub check: String,
    pub severity: Severity,
    /// The table, index, session, sequence … it is about.
    pub object: String,
    pub message: String,
    pub figures: serde_json::Value,
}

impl Finding {
    pub fn new(check: CheckName, severity: Severity, object: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            check: check.as_str().to_string(),
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

/// What a `check` step runs, with its thresholds resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckSpec {
    pub checks: Vec<String>,
    /// `long_queries`: older than this.
    pub max_query_age_ms: u64,
    /// `connections`: warn above this share of `max_connections`.
    pub max_connections_ratio: f64,
    /// `sequences`: warn above this share of the type's maximum.
    pub max_sequence_ratio: f64,
    /// `xid_age`: warn above this share of the 2^31 wraparound horizon.
    pub max_xid_age_ratio: f64,
    /// Findings at or above this fail the step.
    pub fail_on: Option<Severity>,
}

impl CheckSpec {
    /// Every check the backend offers, at the default thresholds (what
    /// `dbmaint inspect checks` and `check: {}` run).
    pub fn defaults(backend: crate::values::Backend) -> Self {
        Self {
            checks: CheckName::for_backend(backend)
                .iter()
                .map(|c| c.as_str().to_string())
                .collect(),
            max_query_age_ms: DEFAULT_MAX_QUERY_AGE_MS,
            max_connections_ratio: DEFAULT_MAX_CONNECTIONS_RATIO,
            max_sequence_ratio: DEFAULT_MAX_SEQUENCE_RATIO,
            max_xid_age_ratio: DEFAULT_MAX_XID_AGE_RATIO,
            fail_on: None,
        }
    }

    pub fn runs(&self, c: CheckName) -> bool {
        self.checks.iter().any(|n| n == c.as_str())
    }
}

/// Transaction IDs before wraparound: 2^31.
pub const XID_HORIZON: f64 = 2_147_483_648.0;

/// Default thresholds (also in docs/operations.md).
pub const DEFAULT_MAX_QUERY_AGE_MS: u64 = 10 * 60 * 1000;
pub const DEFAULT_MAX_CONNECTIONS_RATIO: f64 = 0.8;
pub const DEFAULT_MAX_SEQUENCE_RATIO: f64 = 0.75;
pub const DEFAULT_MAX_XID_AGE_RATIO: f64 = 0.5;

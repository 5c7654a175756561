//! Health checks of the `check` operation: the thresholds a run applies
//! (a finding is the engine's generic `run::events::Finding`). The SQL
//! lives beside this file (`pg.rs`, `sqlite.rs`); the same code answers
//! `plan diff` (read-only session) and `plan apply` (the step's session).

use serde::{Deserialize, Serialize};

use crate::ops::check::CheckName;
pub use crate::run::events::{Finding, Severity};

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
    /// `backup_age`: older than this fails (default [`DEFAULT_MAX_BACKUP_AGE_MS`]).
    #[serde(default)]
    pub max_backup_age_ms: Option<u64>,
    /// Findings at or above this fail the step.
    pub fail_on: Option<Severity>,
    /// `cancel`/`terminate`: what to do to the long queries the diff listed.
    #[serde(default)]
    pub act: Option<SessionAct>,
    /// The long queries the diff listed (the only sessions ever signalled).
    #[serde(default)]
    pub targets: Vec<SessionTarget>,
}

/// `pg_cancel_backend`, then (with `terminate`) `pg_terminate_backend`
/// after `grace_ms` for those still running the same query: the gentlest
/// signal first, as a DBA would.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SessionAct {
    pub cancel: bool,
    pub terminate: bool,
    pub grace_ms: u64,
}

/// A session as the diff saw it. It is signalled only while the same
/// backend (pid and `backend_start`) still runs the same query
/// (`query_start`): a pid reused by a new session is never touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionTarget {
    pub pid: i32,
    pub backend_start: String,
    pub query_start: String,
    /// Idle in a transaction: a cancel does nothing to it; only a
    /// terminate ends it.
    #[serde(default)]
    pub idle_in_transaction: bool,
}

impl SessionTarget {
    /// The session a `long_queries` finding is about.
    pub fn of(f: &Finding) -> Option<Self> {
        (f.check == CheckName::LongQueries.as_str()).then_some(())?;
        // A session this role may not signal is never a target.
        if f.figures.get("allowed").and_then(|a| a.as_bool()) == Some(false) {
            return None;
        }
        Some(Self {
            pid: f.figures.get("pid")?.as_i64()? as i32,
            backend_start: f.figures.get("backend_start")?.as_str()?.to_string(),
            query_start: f.figures.get("query_start")?.as_str()?.to_string(),
            idle_in_transaction: f
                .figures
                .get("state")
                .and_then(|s| s.as_str())
                .is_some_and(|s| s != "active"),
        })
    }

    /// What `act` does to this session: `None` when it does nothing.
    pub fn effect(&self, act: SessionAct) -> Option<String> {
        match (self.idle_in_transaction, act.terminate) {
            (true, true) => Some("terminate (idle in transaction: a cancel would do nothing to it)".into()),
            (true, false) => None,
            (false, _) => Some(act.describe()),
        }
    }
}

impl SessionAct {
    /// `cancel`, `cancel, then terminate after 30 s if still running`, …
    pub fn describe(&self) -> String {
        let grace = format!("{} s", self.grace_ms / 1000);
        if self.terminate {
            format!("cancel, then terminate after {grace} if still running")
        } else {
            "cancel".into()
        }
    }
}

/// Default grace between cancel and terminate.
pub const DEFAULT_GRACE_MS: u64 = 30_000;

impl CheckSpec {
    /// Every check the backend offers, at the default thresholds (what
    /// `dbmaint inspect checks` and `check: {}` run).
    pub fn defaults(backend: crate::plan::values::Backend) -> Self {
        Self {
            checks: CheckName::for_backend(backend)
                .iter()
                .map(|c| c.as_str().to_string())
                .collect(),
            max_query_age_ms: DEFAULT_MAX_QUERY_AGE_MS,
            max_connections_ratio: DEFAULT_MAX_CONNECTIONS_RATIO,
            max_sequence_ratio: DEFAULT_MAX_SEQUENCE_RATIO,
            max_xid_age_ratio: DEFAULT_MAX_XID_AGE_RATIO,
            max_backup_age_ms: None,
            fail_on: None,
            act: None,
            targets: vec![],
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
/// `backup_age`: a nightly backup plus a couple of hours of slack.
pub const DEFAULT_MAX_BACKUP_AGE_MS: u64 = 26 * 3600 * 1000;

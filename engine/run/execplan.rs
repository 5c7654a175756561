//! The `ExecutionPlan`: what `plan diff` prints and `plan apply` executes —
//! the same value, computed before any write (terraform's `internal/plans`).
//! It is data only: each step carries its concrete actions with the exact
//! statements, the lock it takes, whether it is transactional, what undoes
//! it (the executor never invents a rollback), and its estimate with the
//! estimate's fidelity. It serializes to JSON for `--out` and loads back for
//! `apply SAVED`.

use serde::{Deserialize, Serialize};

use crate::db::identity::TargetIdentity;
use crate::plan::values::Backend;

/// Version tag of a saved plan file; a different tag is refused.
pub const SAVED_FORMAT: &str = "dbmaint-saved-plan/3";

/// How sure an estimate is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fidelity {
    /// Counted or measured just now.
    Exact,
    /// From statistics (planner estimate, pg_stat counters, earlier backups).
    Estimate,
    /// Nothing to go on.
    Unknown,
}

/// The diff marker of cli.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Marker {
    /// Creates a file or object.
    #[serde(rename = "+")]
    Create,
    /// Removes rows, files or objects.
    #[serde(rename = "-")]
    Remove,
    /// Changes in place.
    #[serde(rename = "~")]
    Change,
    /// Reads or reports only.
    #[serde(rename = "=")]
    Read,
    /// Acts on sessions.
    #[serde(rename = "!")]
    Sessions,
}

impl Marker {
    pub fn symbol(self) -> char {
        match self {
            Self::Create => '+',
            Self::Remove => '-',
            Self::Change => '~',
            Self::Read => '=',
            Self::Sessions => '!',
        }
    }
}

/// Rows and bytes a step is expected to affect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Estimate {
    pub rows: u64,
    pub bytes: u64,
    pub fidelity: Fidelity,
    /// Of `rows`, those copied to an archive before their delete
    /// (retention with `archive`): a measure of its own in the report.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub archived: u64,
}

impl Estimate {
    pub const NONE: Self = Self {
        rows: 0,
        bytes: 0,
        fidelity: Fidelity::Exact,
        archived: 0,
    };
}

/// For `skip_serializing_if` on counters.
pub(crate) fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One affected object with its figures, shown under the step in the diff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Object {
    pub marker: Marker,
    /// `table`, `index`, `file`, `database`.
    pub kind: String,
    pub name: String,
    /// Human figures: `dead 24.1% of 1.2 MiB`.
    pub detail: String,
    /// The same figures for programs.
    #[serde(default)]
    pub figures: serde_json::Map<String, serde_json::Value>,
}

/// One unit of work of a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// One statement on its own, outside a transaction (VACUUM, ANALYZE, …).
    Statement {
        /// What the statement acts on, for progress and the report.
        object: String,
        sql: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        undo: Vec<Undo>,
        /// Objects of the same step this one needs (a view reading another):
        /// when one of them failed, this one is skipped.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        after: Vec<String>,
    },
    /// Author SQL from a `sql` step, run as written: in one transaction
    /// (rolled back whole on failure), or (`transaction: false`) its
    /// `statements` one by one, each committed as it succeeds.
    Sql {
        sql: String,
        transaction: bool,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        statements: Vec<String>,
    },
    /// Work an operation runs itself (`run::operation::Executes`): `op`
    /// names it in the registry, `work` is that operation's own type.
    Op {
        op: String,
        work: serde_json::Value,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        undo: Vec<Undo>,
        /// The one object the work acts on (an index), for per-object outcomes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        object: Option<String>,
        /// What it locks beyond its object (an index's table): under
        /// `jobs`, two actions of one group never run at once.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
    },
}

/// What undoes an action that failed (atlas' `Change.Reverse`): the
/// executor runs these actions, in order and on a fresh session, once the
/// action's own retries gave up — the operation plans them, the executor
/// never invents one. An undo is idempotent: it finds what the failure
/// left (a partial file, an INVALID index copy) and removes only that.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Undo {
    /// What the diff shows for it (`-v`): the statement, or what it does.
    pub shows: String,
    pub action: Action,
}

impl Action {
    /// The action of operation `op` doing `work`.
    pub fn op(op: &str, work: &impl Serialize) -> Self {
        Self::Op {
            op: op.to_string(),
            work: serde_json::to_value(work).unwrap_or_default(),
            undo: vec![],
            object: None,
            group: None,
        }
    }

    /// This work, never run at once with another of `name`'s (`jobs`).
    pub fn in_group(mut self, name: impl Into<String>) -> Self {
        if let Self::Op { group, .. } = &mut self {
            *group = Some(name.into());
        }
        self
    }

    /// What two actions running at once must not share: the group, else
    /// the object, else nothing (`None`: it runs alone).
    pub fn lane_group(&self) -> Option<&str> {
        match self {
            Self::Op { group: Some(g), .. } => Some(g),
            _ => self.object(),
        }
    }

    /// This operation work, acting on one `object` of the step.
    pub fn on_object(mut self, name: impl Into<String>) -> Self {
        if let Self::Op { object, .. } = &mut self {
            *object = Some(name.into());
        }
        self
    }

    /// The one object the action acts on, when it acts on one.
    pub fn object(&self) -> Option<&str> {
        match self {
            Self::Statement { object, .. } => Some(object),
            Self::Op { object, .. } => object.as_deref(),
            Self::Sql { .. } => None,
        }
    }

    /// Objects of the same step this action needs.
    pub fn after(&self) -> &[String] {
        match self {
            Self::Statement { after, .. } => after,
            _ => &[],
        }
    }

    /// This action, undone on failure by `action` (shown as `shows`).
    pub fn undone_by(mut self, shows: impl Into<String>, action: Action) -> Self {
        let u = Undo {
            shows: shows.into(),
            action,
        };
        match &mut self {
            Self::Statement { undo, .. } | Self::Op { undo, .. } => undo.push(u),
            // Author SQL is undone by its own transaction, or not at all.
            Self::Sql { .. } => {}
        }
        self
    }

    /// What undoes this action when it fails.
    pub fn undo(&self) -> &[Undo] {
        match self {
            Self::Statement { undo, .. } | Self::Op { undo, .. } => undo,
            Self::Sql { .. } => &[],
        }
    }

    /// The work of an `Op` action of operation `op`, as its type.
    pub fn work<T: serde::de::DeserializeOwned>(&self, op: &str) -> Option<T> {
        match self {
            Self::Op { op: o, work, .. } if o == op => serde_json::from_value(work.clone()).ok(),
            _ => None,
        }
    }
}

/// A step as it will run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedStep {
    pub id: String,
    pub op: String,
    pub marker: Marker,
    pub summary: String,
    pub needs: Vec<String>,
    /// True when the step has nothing to do (the diff says so; apply skips it).
    pub no_op: bool,
    pub objects: Vec<Object>,
    pub actions: Vec<Action>,
    /// The statements as the diff shows them with `-v`.
    pub statements: Vec<String>,
    /// The strongest lock the step takes, PostgreSQL's names.
    pub lock: String,
    /// True when each unit of work commits or rolls back as a whole.
    pub transactional: bool,
    /// What undoes a half-done step.
    pub compensation: String,
    pub estimate: Estimate,
    /// Batches or objects the step expects to go through (progress).
    #[serde(default)]
    pub units: u64,
    /// Settings in effect, in milliseconds, for the executor.
    pub lock_timeout_ms: u64,
    pub statement_timeout_ms: u64,
    pub retries: u64,
    pub on_failure_continue: bool,
    /// One object's failure is recorded and the step's other objects still
    /// run (`on_object_failure: continue`, for operations acting on many
    /// independent objects); the step then ends `partial`.
    #[serde(default)]
    pub objects_continue: bool,
    /// Problems found while planning: the step cannot run as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// How the step runs, beyond its lock: `throttle: …`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// `jobs: N`: its actions run on up to N sessions at once (bounded by
    /// the run's `--parallelism`); actions of one group (a table's
    /// indexes) never at once.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub jobs: u64,
    /// `throttle:` of a step whose actions are objects: the executor
    /// waits on the server's load before each (see `run::throttle`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<crate::run::throttle::ThrottleLimits>,
    /// Re-planning at step start (issue 14 §1): an operation's action run
    /// before the others, that keeps only those of its objects still
    /// worth doing (`StepRun::keep_only`); it chooses among the objects
    /// listed here, never new ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reselect: Option<Action>,
    /// The privileges the step needs on the server, held or not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub privileges: Vec<Need>,
    /// How long it is expected to take, from the journal's history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<crate::run::fit::Expected>,
}

/// A privilege a step needs, whether the plan's role holds it, and the
/// statement that grants it (`dbmaint grants` prints them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Need {
    /// What, in words: `own table public.events (owner app)`.
    pub what: String,
    /// The statement an administrator runs to grant it.
    pub grant: String,
    pub held: bool,
}

/// The whole computed plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionPlan {
    pub plan: String,
    pub hash: String,
    pub env: Option<String>,
    pub backend: Backend,
    /// The target with its password masked.
    pub target: String,
    /// The run's reference time (cutoffs derive from it), RFC 3339 UTC.
    pub now: String,
    /// Steps in execution order (levels, then file order).
    pub steps: Vec<PlannedStep>,
    /// Catalog queries the inspection issued (fixed, whatever the table count).
    pub catalog_queries: u32,
    pub max_runtime_ms: Option<u64>,
    /// `limits.fit: defer`: a step whose expected duration does not fit in
    /// what is left is deferred before it starts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fit_defer: bool,
    /// Which server and database this plan was computed against: shown in
    /// every header, and checked before a saved plan is applied.
    #[serde(default)]
    pub identity: Option<TargetIdentity>,
    /// Differences from the reviewed rows that `--accept-drift` let through.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted_drift: Vec<String>,
    /// What the run itself needs besides its steps (the journal).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub privileges: Vec<Need>,
}

impl ExecutionPlan {
    pub fn has_errors(&self) -> bool {
        self.steps.iter().any(|s| !s.errors.is_empty())
    }

    /// Steps that would change something.
    pub fn has_changes(&self) -> bool {
        self.steps.iter().any(|s| !s.no_op && s.marker != Marker::Read)
    }

    pub fn step(&self, id: &str) -> Option<&PlannedStep> {
        self.steps.iter().find(|s| s.id == id)
    }
}

/// A saved plan (`plan diff --out FILE`): the computed plan plus what is
/// needed to load its source again and check it has not changed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedPlan {
    pub format: String,
    pub plan_file: String,
    pub env: Option<String>,
    pub vars: Vec<String>,
    pub execution: ExecutionPlan,
}

/// `1.2 MiB`-style sizes for people.
/// `1d 2h`, `26h 5m`, `40s`: the two largest units.
pub fn human_age(s: u64) -> String {
    let parts = [
        (s / 86_400, "d"),
        (s / 3600 % 24, "h"),
        (s / 60 % 60, "m"),
        (s % 60, "s"),
    ];
    let shown: Vec<String> = parts
        .iter()
        .skip_while(|(n, _)| *n == 0)
        .take(2)
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect();
    if shown.is_empty() { "0s".into() } else { shown.join(" ") }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `12,345`-style counts for people.
/// `1 batch`, `3 batches`, `1,204 findings`: a count with its noun.
pub fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", human_count(n), if n == 1 { one } else { many })
}

pub fn human_count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl PlannedStep {
    /// A PostgreSQL `VACUUM` without FULL: it frees dead tuples' space for
    /// reuse and gives the file system only an empty tail.
    pub fn is_plain_postgres_vacuum(&self) -> bool {
        self.op == "vacuum"
            && !self.statements.is_empty()
            && self
                .statements
                .iter()
                .all(|q| q.starts_with("VACUUM") && !q.contains("FULL") && q != "VACUUM")
    }
}

fn one() -> u64 {
    1
}

fn is_one(n: &u64) -> bool {
    *n == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_well() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(human_count(1234567), "1,234,567");
        assert_eq!(human_count(999), "999");
        assert_eq!(counted(1, "batch", "batches"), "1 batch");
        assert_eq!(counted(1204, "finding", "findings"), "1,204 findings");
        assert_eq!(counted(0, "finding", "findings"), "0 findings");
    }
}

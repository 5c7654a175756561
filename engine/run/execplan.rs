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
pub const SAVED_FORMAT: &str = "dbmaint-saved-plan/1";

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
}

impl Estimate {
    pub const NONE: Self = Self {
        rows: 0,
        bytes: 0,
        fidelity: Fidelity::Exact,
    };
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

/// Where archived rows go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveTo {
    /// An archive table (quoted name), filled in the batch's own statement.
    Table { name: String },
    /// A JSON Lines file, written and fsynced before the batch's delete commits.
    File { path: String },
}

/// A retention step's work, with every statement built at plan time. Every
/// statement binds the cutoff first, as text the column's type parses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetentionWork {
    /// The source table, quoted.
    pub table: String,
    /// The cutoff, in the form the column compares with.
    pub cutoff: String,
    pub batch_size: u64,
    pub max_rows: Option<u64>,
    pub pause_ms: u64,
    /// Statements creating the archive table when it does not exist yet.
    pub create_archive: Vec<String>,
    pub archive: Option<ArchiveTo>,
    /// Binds (cutoff); returns (eligible rows, first key, last key) when
    /// the step starts. The walk covers that key span whole, whatever the
    /// count: rows kept by a trigger or made eligible by a concurrent
    /// update never end it early. Keys are text in the backend's key form:
    /// PostgreSQL `k::text`, or `ARRAY[a::text, b::text]::text` for a
    /// composite key; SQLite `json_array(k, …)`, which keeps each value's
    /// storage class (a typeless key holding numbers compares as numbers).
    pub count: String,
    pub batch: BatchSql,
    /// The eligible rows the plan counted (key-window walks report against
    /// it: their own span read runs beside the first batches).
    #[serde(default)]
    pub planned_rows: u64,
    /// The digest of the keys the step would delete, recorded in saved
    /// plans (see `keydigest`); apply of a saved plan compares it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eligible_digest: Option<crate::ops::retention::keydigest::KeyDigest>,
    /// `on_cascade: allow`: per foreign key that acts, the statement that
    /// counts the child rows a batch's delete reaches (binds cutoff, lo, hi
    /// like the batch), run in the batch's transaction before its delete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cascades: Vec<CascadeCount>,
    /// SQLite `sqlite_foreign_keys: off`: the batches run with
    /// `PRAGMA foreign_keys = OFF` on the step's connection.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub foreign_keys_off: bool,
}

/// A foreign key whose ON DELETE acts on rows of another table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CascadeCount {
    /// `child.col → parent.col (name)`.
    pub foreign_key: String,
    /// `CASCADE`, `SET NULL`, `SET DEFAULT`.
    pub on_delete: String,
    pub count: String,
}

/// How one batch is taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "style", rename_all = "snake_case")]
pub enum BatchSql {
    /// The batch's key range first, then statements over `[lo, hi]` in the
    /// same transaction. `bound_first` and `bound_next` bind (cutoff, from,
    /// limit, to) and return (rows, lo, hi): the first `limit` eligible
    /// keys from `from` (inclusive for the first batch, exclusive after) up
    /// to `to`. `copy` (SQLite archive table) and `delete` bind (cutoff,
    /// lo, hi); with a file archive `delete` returns (key, JSON row) of
    /// each row it deleted, and on PostgreSQL with an archive table it is
    /// `WITH moved AS (DELETE … RETURNING *) INSERT INTO archive …`.
    Ranged {
        bound_first: String,
        bound_next: String,
        copy: Option<String>,
        delete: String,
    },
    /// Windows of `batch_size` keys (PostgreSQL, one integer key), as a DBA's
    /// loop over primary-key ranges: `statement` binds (cutoff, lo, hi) and
    /// deletes — and archives, in the same statement — the eligible rows
    /// with `lo <= key <= hi`. `left` (when something can keep rows, see
    /// `db::RetentionSpec::check_left`) binds the same and counts the
    /// eligible rows the window still holds after its delete. `next_key`
    /// binds (after) and returns the first key above it, so a run of empty
    /// windows is one jump. A window holds at most `batch_size` rows and
    /// costs one key-range scan, however sparse the eligible rows are.
    Window {
        statement: String,
        left: Option<String>,
        next_key: String,
        /// Binds (cutoff); the first eligible key (int8). The walk starts
        /// there at once while another session reads the span's end
        /// (`RetentionWork::count`) — the pass a DBA's loop waits for.
        #[serde(default)]
        first_key: String,
    },
}

/// A backup's work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupWork {
    /// The final path, written only after verification.
    pub path: String,
    /// The temporary path the child writes to.
    pub temp_path: String,
    /// `custom`, `directory`, `plain` (pg_dump) or `sqlite` (`VACUUM INTO`).
    pub format: String,
    pub jobs: Option<u64>,
    pub compress: Option<u64>,
    /// `no`, `read` or `restore`.
    pub verify: String,
    pub keep: Option<u64>,
    /// Names of this plan's and step's older backups start with this.
    pub prune_prefix: String,
    pub dir: String,
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
    },
    /// SQLite `VACUUM` of the whole file, after checking free disk space.
    SqliteVacuum {
        /// Bytes that must be free in the database's and the temp directory.
        need_free_bytes: u64,
        dirs: Vec<String>,
        analyze: bool,
        /// When set, the step first checks the free-page ratio and does
        /// nothing below it (the pages upstream deletes free are known only then).
        #[serde(default)]
        min_free_ratio: Option<f64>,
    },
    Retention(RetentionWork),
    Backup(BackupWork),
    /// Author SQL from a `sql` step, run as written: in one transaction
    /// (rolled back whole on failure), or (`transaction: false`) its
    /// `statements` one by one, each committed as it succeeds.
    Sql {
        sql: String,
        transaction: bool,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        statements: Vec<String>,
    },
    /// The health checks of a `check` step.
    Check(crate::ops::check::spec::CheckSpec),
    /// The `stats` report, of the `top` largest tables and indexes.
    Stats {
        top: u64,
    },
    /// One index rebuild (`REINDEX INDEX [CONCURRENTLY]`, SQLite `REINDEX`).
    Reindex(ReindexWork),
    /// INVALID indexes the engine's interrupted rebuilds left, dropped
    /// concurrently, then their journal records closed.
    DropLeftovers {
        /// (schema, index name).
        indexes: Vec<(String, String)>,
        records: Vec<i64>,
    },
    /// The `bloat` report; relations at or over `min_waste_ratio` are findings.
    Bloat {
        spec: crate::ops::bloat::figures::BloatSpec,
        min_waste_ratio: f64,
    },
}

/// One index to rebuild.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReindexWork {
    pub schema: String,
    pub table: String,
    pub index: String,
    pub sql: String,
    pub concurrently: bool,
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
    /// Settings in effect, in milliseconds, for the executor.
    pub lock_timeout_ms: u64,
    pub statement_timeout_ms: u64,
    pub retries: u64,
    pub on_failure_continue: bool,
    /// Problems found while planning: the step cannot run as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
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
    /// Which server and database this plan was computed against: shown in
    /// every header, and checked before a saved plan is applied.
    #[serde(default)]
    pub identity: Option<TargetIdentity>,
    /// Differences from the reviewed rows that `--accept-drift` let through.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted_drift: Vec<String>,
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
    }
}

//! What a retention step reads in the inspection's snapshot: the probe
//! the planner derives from the catalog (table, column, cutoff, referencing
//! keys), and the facts it answers (rows, time range, format, children,
//! partitions, the eligible keys' digest).

use serde::Serialize;

use crate::db::catalog::OnDelete;

/// What a retention step asks of the data: how many rows the predicate
/// selects now, and their time range. The backend turns it into SQL.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetentionProbe {
    pub step: String,
    /// The source table, quoted.
    pub table: String,
    /// The timestamp column, quoted, and its declared type.
    pub column: String,
    pub column_type: String,
    /// The author's extra condition, verbatim.
    pub where_sql: Option<String>,
    /// Rows with `column < cutoff` are eligible.
    pub cutoff: chrono::DateTime<chrono::Utc>,
    /// The plan's `time_format`, checked against the values.
    pub stated_format: Option<crate::ops::retention::timefmt::TimeFormat>,
    /// Wall-clock zone of a zone-less column.
    #[serde(skip)]
    pub zone: chrono_tz::Tz,
    /// Foreign keys that reference the table: rows they hold are counted.
    pub children: Vec<ChildProbe>,
    /// `on_cascade: allow`: children are counted against the rows the
    /// step deletes (the guard applied), not every eligible row.
    #[serde(default)]
    pub cascade: bool,
    /// The table has inheritance children: read and delete `ONLY` it.
    pub only: bool,
    /// A partitioned table: its eligible rows are also counted per partition.
    #[serde(default)]
    pub partitioned: bool,
    /// The step's key as text (SQL), when a saved plan wants the digest
    /// of the eligible keys.
    #[serde(default)]
    pub digest_key: Option<String>,
    /// `NOT EXISTS (…)` for every referencing key: a row some other row
    /// references is never deleted, so no cascade, SET NULL or RESTRICT
    /// error can follow from a delete (rows referenced meanwhile included).
    pub guard_sql: Option<String>,
}

/// One foreign key that references a retention table, ready to count:
/// `SELECT count(*) FROM {from} WHERE EXISTS (SELECT 1 FROM table WHERE {join} AND eligible)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChildProbe {
    /// `comments.root_id → comments.id`, for the diff.
    pub label: String,
    pub on_delete: OnDelete,
    /// The child table, aliased `dbmaint_c`.
    pub from: String,
    /// The key columns matched, child alias against the quoted parent.
    pub join: String,
    /// The key references its own table (`comments.root_id → comments.id`).
    #[serde(default)]
    pub self_ref: bool,
    /// A key further down a cascade (`on_cascade: allow`): the tables its
    /// rows are reached through, nearest the step's table first, each as
    /// (table with its alias, join to the level before).
    #[serde(default)]
    pub via: Vec<(String, String)>,
    /// It leads back to a table already on its path (a cycle).
    #[serde(default)]
    pub cycle: bool,
}

/// How many rows of a child reference the rows a step would delete.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChildCount {
    pub label: String,
    pub on_delete: OnDelete,
    pub rows: u64,
    /// A self-reference that acts: the referencing rows that are not
    /// eligible themselves (a cascade would reach past the cutoff).
    #[serde(default)]
    pub outside: u64,
    /// 1 for a key on the step's table, 2 for a key on a table that
    /// cascade reaches, and so on.
    #[serde(default)]
    pub depth: usize,
    #[serde(default)]
    pub cycle: bool,
}

/// The answer to a probe.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RetentionFacts {
    pub rows: u64,
    /// True when `rows` was counted; false when it is the planner's estimate.
    pub exact: bool,
    pub oldest: Option<String>,
    pub newest: Option<String>,
    /// The cutoff as the column stores time (its own format).
    pub cutoff: String,
    /// How the column stores time, when that could be decided.
    pub format: Option<crate::ops::retention::timefmt::TimeFormat>,
    /// Why it could not: the step is then refused.
    pub format_error: Option<String>,
    /// Rows whose time is NULL: never eligible.
    pub nulls: u64,
    /// The zone a zone-less column is compared in.
    pub zone: Option<String>,
    /// Per referencing foreign key, the child rows that reference eligible rows.
    pub children: Vec<ChildCount>,
    /// Eligible rows left because some row references them.
    pub referenced: u64,
    /// Counted exactly, and no row of the table would remain.
    #[serde(default)]
    pub all_rows: bool,
    /// PostgreSQL row-level security applies to this role on the table:
    /// rows its policies hide are neither counted nor deleted.
    #[serde(default)]
    pub rls_applies: bool,
    /// Rows in the whole table (this table's own, with `ONLY`), for
    /// `max_ratio` and the diff's share; counted when `table_rows_exact`.
    #[serde(default)]
    pub table_rows: u64,
    #[serde(default)]
    pub table_rows_exact: bool,
    /// A partitioned table's eligible rows per partition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionCount>,
    /// The digest of the eligible keys (saved plans only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<crate::ops::retention::keydigest::KeyDigest>,
}

/// One partition's share of a retention step on its partitioned table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionCount {
    /// `schema.name` as `regclass` prints it.
    pub name: String,
    pub eligible: u64,
    /// The partition's rows by the planner's figure (`reltuples`).
    pub rows: u64,
}

/// Planner estimates above this many rows are not counted exactly: a
/// `count(*)` over more rows than this takes seconds on a busy server, so
/// the diff shows the estimate marked `~` instead (docs/operations.md).
pub const EXACT_COUNT_LIMIT: u64 = 5_000_000;

//! The facts planning needs, read from the live database in one read-only
//! transaction. These types are backend-neutral; `db::pg` and `db::sqlite`
//! fill them with a fixed number of set-based catalog queries (never one
//! query per table), plus one count per retention step over live data.

use serde::Serialize;

/// A column of a table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Column {
    pub name: String,
    /// The type as the database spells it (`bigint`, `timestamp with time zone`, `TEXT`).
    pub data_type: String,
    pub not_null: bool,
}

/// A trigger (or, on PostgreSQL, a rule) that acts when rows of its table
/// are deleted: a retention step's delete fires it for every row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeleteTrigger {
    pub name: String,
    /// `BEFORE`, `AFTER`, `INSTEAD OF`, or `RULE`.
    pub timing: String,
    /// Fires per row (not once per statement).
    pub per_row: bool,
    /// The function it calls (PostgreSQL), empty otherwise.
    pub function: String,
    /// What its body does, as far as its text tells (see `triggerbody`).
    pub reads: crate::ops::retention::triggerbody::Body,
}

/// What a foreign key does to its rows when the row it references is
/// deleted (`ON DELETE …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDelete {
    NoAction,
    Restrict,
    Cascade,
    SetNull,
    SetDefault,
}

impl OnDelete {
    /// PostgreSQL's `confdeltype` letter or SQLite's `on_delete` text.
    pub fn parse(text: &str) -> Self {
        match text.to_ascii_uppercase().as_str() {
            "C" | "CASCADE" => Self::Cascade,
            "N" | "SET NULL" => Self::SetNull,
            "D" | "SET DEFAULT" => Self::SetDefault,
            "R" | "RESTRICT" => Self::Restrict,
            _ => Self::NoAction,
        }
    }

    pub fn sql(self) -> &'static str {
        match self {
            Self::NoAction => "NO ACTION",
            Self::Restrict => "RESTRICT",
            Self::Cascade => "CASCADE",
            Self::SetNull => "SET NULL",
            Self::SetDefault => "SET DEFAULT",
        }
    }

    /// The database changes the child rows itself (deletes or updates them).
    pub fn acts(self) -> bool {
        matches!(self, Self::Cascade | Self::SetNull | Self::SetDefault)
    }
}

/// A foreign key: `child (child_columns) REFERENCES parent (parent_columns)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForeignKey {
    pub name: String,
    pub child_schema: String,
    pub child_table: String,
    pub child_columns: Vec<String>,
    pub parent_schema: String,
    pub parent_table: String,
    pub parent_columns: Vec<String>,
    pub on_delete: OnDelete,
}

/// An index of a table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndexFacts {
    pub name: String,
    /// Key columns in order (expressions appear as `expr`).
    pub columns: Vec<String>,
    pub bytes: u64,
    pub unique: bool,
    pub primary: bool,
    pub valid: bool,
    pub partial: bool,
}

/// A table and its maintenance figures. PostgreSQL fills every field;
/// SQLite has no per-table statistics, so the counters stay zero there.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableFacts {
    pub schema: String,
    pub name: String,
    /// Heap, indexes and TOAST.
    pub total_bytes: u64,
    pub live_tuples: u64,
    pub dead_tuples: u64,
    pub mod_since_analyze: u64,
    pub last_vacuum: Option<String>,
    pub last_autovacuum: Option<String>,
    pub last_analyze: Option<String>,
    pub last_autoanalyze: Option<String>,
    /// Age of relfrozenxid in transactions (PostgreSQL).
    pub xid_age: u64,
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
    pub indexes: Vec<IndexFacts>,
    /// Legacy inheritance children (`CREATE TABLE … INHERITS`), `schema.name`:
    /// a plain DELETE on this table reaches their rows too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inheritance_children: Vec<String>,
    /// SQLite `WITHOUT ROWID`: the table has no `rowid` to order batches by.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub without_rowid: bool,
    /// Enabled triggers and rules that act on DELETE of this table's rows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete_triggers: Vec<DeleteTrigger>,
    /// A PostgreSQL partitioned table: no storage of its own, its rows are
    /// in `partitions`. Only retention names one; vacuum, analyze,
    /// reindex and bloat select its partitions, which hold the data.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partitioned: bool,
    /// The partitions of a partitioned table, `schema.name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<String>,
}

impl TableFacts {
    /// `schema.name`, or just `name` in the default schema.
    pub fn display_name(&self, default_schema: &str) -> String {
        if self.schema == default_schema {
            self.name.clone()
        } else {
            format!("{}.{}", self.schema, self.name)
        }
    }

    /// dead / (live + dead), 0 when empty.
    pub fn dead_ratio(&self) -> f64 {
        let all = self.live_tuples + self.dead_tuples;
        if all == 0 {
            0.0
        } else {
            self.dead_tuples as f64 / all as f64
        }
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// True when some valid index starts with `column` (a range on it can use it).
    pub fn has_index_on(&self, column: &str) -> bool {
        self.indexes
            .iter()
            .any(|i| i.valid && !i.partial && i.columns.first().is_some_and(|c| c == column))
    }
}

/// SQLite file figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SqliteFile {
    pub path: String,
    pub page_size: u64,
    pub page_count: u64,
    pub freelist_count: u64,
    pub file_bytes: u64,
}

impl SqliteFile {
    pub fn free_ratio(&self) -> f64 {
        if self.page_count == 0 {
            0.0
        } else {
            self.freelist_count as f64 / self.page_count as f64
        }
    }
}

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

/// The first rows of a read-only query, as text, for the diff.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueryPreview {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// More rows than [`PREVIEW_ROWS`] came back.
    pub truncated: bool,
    /// The query failed (it is shown instead of the rows).
    pub error: Option<String>,
}

/// Rows of a `dry_run` query the diff shows.
pub const PREVIEW_ROWS: usize = 20;

/// Planner estimates above this many rows are not counted exactly: a
/// `count(*)` over more rows than this takes seconds on a busy server, so
/// the diff shows the estimate marked `~` instead (docs/operations.md).
pub const EXACT_COUNT_LIMIT: u64 = 5_000_000;

/// An unfinished rebuild in the journal (`dbmaint.rebuilds`) and the
/// INVALID transient indexes it left on its table (none when it was
/// cleaned some other way: the record is then just closed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Leftover {
    pub record: i64,
    pub schema: String,
    pub table: String,
    pub index: String,
    pub invalid: Vec<String>,
}

/// A materialized view (PostgreSQL), for `refresh_views`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatView {
    pub schema: String,
    pub name: String,
    pub populated: bool,
    pub bytes: u64,
    /// A valid unique index on plain columns without a predicate, which
    /// `REFRESH … CONCURRENTLY` needs; `None` when there is none.
    pub unique_index: Option<String>,
    /// Other materialized views its query reads (`schema.name`).
    pub reads: Vec<String>,
}

/// The snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inspection {
    pub server_version: String,
    /// Schema unqualified names are created in (`public`, `main`).
    pub default_schema: String,
    /// The schemas unqualified names resolve through, in order (PostgreSQL
    /// `current_schemas(false)`, as the application's sessions see them).
    #[serde(default)]
    pub search_path: Vec<String>,
    /// Relations that are not tables (views, materialized views, foreign
    /// tables): named so that a step naming one says what it is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_relations: Vec<OtherRelation>,
    pub database_bytes: u64,
    pub tables: Vec<TableFacts>,
    /// Every foreign key of the database (one catalog query).
    #[serde(default)]
    pub foreign_keys: Vec<ForeignKey>,
    pub sqlite: Option<SqliteFile>,
    /// Retention facts by step id.
    pub retention: indexmap::IndexMap<String, RetentionFacts>,
    /// What each `sql` step's `dry_run` query returned, by step id.
    #[serde(default)]
    pub previews: indexmap::IndexMap<String, QueryPreview>,
    /// What each `check` step's checks found, by step id (an `Err` is the
    /// message of a check query that failed).
    #[serde(default)]
    pub findings: indexmap::IndexMap<String, Result<Vec<crate::ops::check::spec::Finding>, String>>,
    /// Each `stats` step's report, by step id.
    #[serde(default)]
    pub stats: indexmap::IndexMap<String, Result<crate::ops::stats::report::StatsReport, String>>,
    /// Bloat figures for each `bloat` and `reindex` step, by step id.
    #[serde(default)]
    pub bloat: indexmap::IndexMap<String, Result<crate::ops::bloat::figures::BloatReport, String>>,
    /// Unfinished concurrent rebuilds of earlier runs (read when the plan
    /// has a `reindex` step).
    #[serde(default)]
    pub leftovers: Option<Result<Vec<Leftover>, String>>,
    /// Materialized views (read when the plan has a `refresh_views` step).
    #[serde(default)]
    pub matviews: Option<Result<Vec<MatView>, String>>,
    /// Catalog queries issued (fixed whatever the number of tables).
    pub catalog_queries: u32,
}

impl Inspection {
    /// Finds a table by a plan identifier (`name` or `schema.name`). An
    /// unqualified name resolves through the search path, first match
    /// winning, as it does in the application's sessions.
    pub fn table(&self, schema: Option<&str>, name: &str) -> Option<&TableFacts> {
        match schema {
            Some(s) => self.tables.iter().find(|t| t.schema == s && t.name == name),
            None => self
                .search_path
                .iter()
                .chain(std::iter::once(&self.default_schema))
                .find_map(|s| self.tables.iter().find(|t| &t.schema == s && t.name == name)),
        }
    }

    /// A view, materialized view or foreign table by a plan identifier.
    pub fn other_relation(&self, schema: Option<&str>, name: &str) -> Option<&OtherRelation> {
        self.other_relations.iter().find(|r| {
            r.name == name
                && match schema {
                    Some(s) => r.schema == s,
                    None => self.search_path.contains(&r.schema) || r.schema == self.default_schema,
                }
        })
    }
}

/// A relation that is not a table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OtherRelation {
    pub schema: String,
    pub name: String,
    /// `view`, `materialized view` or `foreign table`.
    pub kind: String,
}

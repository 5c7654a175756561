//! The backend interface: connecting with self-limiting sessions, and the
//! maintenance verbs the planner and the executor use (inspect, run one
//! statement, take one retention batch, journal, lock). `pg.rs` and
//! `sqlite.rs` implement it; only they name sqlx driver types.
//!
//! This file also owns the only two ways SQL text is built from names:
//! [`quote_ident`] for identifiers and [`sql`] to hand audited text to sqlx.

/// A retention probe's per-foreign-key counts (`inspect::ChildCount`):
/// the referencing rows of every key, and for an acting self-reference the
/// ones not eligible themselves. `$pred` is the step's predicate; each
/// query binds `$bind` (SQLite's cutoff; none on PostgreSQL, whose
/// predicate carries it as a literal). Evaluates to
/// `Result<Vec<ChildCount>, DbError>`; one text for both drivers.
macro_rules! child_counts {
    ($c:expr, $p:expr, $pred:expr $(, $bind:expr)?) => {
        async {
            // With `on_cascade: allow` the children are counted against the
            // rows the step deletes: the guard (keys that block) applied.
            let child_pred = match (&$p.guard_sql, $p.cascade) {
                (Some(g), true) => format!("{} AND {g}", $pred),
                _ => $pred.to_string(),
            };
            let mut children = vec![];
            for ch in &$p.children {
                let n: i64 = sqlx::query_scalar(sql(super::child_count_sql(ch, &$p.table, &child_pred)))
                    $(.bind($bind))?
                    .fetch_one(&mut *$c)
                    .await?;
                let outside: i64 = if ch.self_ref && ch.on_delete.acts() && ch.via.is_empty() {
                    sqlx::query_scalar(sql(super::outside_count_sql(ch, &$p.table, $pred)))
                        $(.bind($bind))?
                        .fetch_one(&mut *$c)
                        .await?
                } else {
                    0
                };
                children.push(crate::run::inspect::ChildCount {
                    label: ch.label.clone(),
                    on_delete: ch.on_delete,
                    rows: n.max(0) as u64,
                    outside: outside.max(0) as u64,
                    depth: ch.via.len() + 1,
                    cycle: ch.cycle,
                });
            }
            Ok::<Vec<crate::run::inspect::ChildCount>, DbError>(children)
        }
        .await
    };
}

/// A ranged batch, inside the caller's transaction: the batch's key range
/// (`$bound_first` or `$bound_next`, binding cutoff, from, limit, to), the
/// copy into an archive table (SQLite), then the delete — which, with a file
/// archive, returns each deleted row's (key, JSON) so that exactly the rows
/// deleted are appended and fsynced before the caller commits. Evaluates to
/// `Result<BatchDone, DbError>`; the caller writes the journal row and
/// commits. One text for both drivers, whose connection types share no
/// trait sqlx makes easy to name here.
macro_rules! ranged_batch {
    ($c:expr, $work:expr, $keys:expr, $archive_file:expr,
     $bound_first:expr, $bound_next:expr, $copy:expr, $delete:expr) => {
        async {
            let bound = if $keys.inclusive { $bound_first } else { $bound_next };
            let row = sqlx::query(sql(bound.clone()))
                .bind(&$work.cutoff)
                .bind($keys.from)
                .bind($keys.limit as i64)
                .bind($keys.to)
                .fetch_one(&mut *$c)
                .await?;
            let selected = row.get::<i64, _>(0).max(0) as u64;
            if selected == 0 {
                return Ok(BatchDone {
                    rows: 0,
                    selected: 0,
                    last_key: None,
                    cascaded: vec![],
                });
            }
            let (lo, hi): (Option<String>, Option<String>) = (row.get(1), row.get(2));
            let (Some(lo), Some(hi)) = (lo, hi) else {
                return Ok(BatchDone {
                    rows: 0,
                    selected: 0,
                    last_key: None,
                    cascaded: vec![],
                });
            };
            let mut cascaded = vec![];
            for cc in &$work.cascades {
                let n: i64 = sqlx::query_scalar(sql(cc.count.clone()))
                    .bind(&$work.cutoff)
                    .bind(&lo)
                    .bind(&hi)
                    .fetch_one(&mut *$c)
                    .await?;
                cascaded.push(n.max(0) as u64);
            }
            let copied = match $copy {
                Some(q) => Some(
                    sqlx::query(sql(q.clone()))
                        .bind(&$work.cutoff)
                        .bind(&lo)
                        .bind(&hi)
                        .execute(&mut *$c)
                        .await?
                        .rows_affected(),
                ),
                None => None,
            };
            let deleted = match $archive_file {
                Some(file) => {
                    let lines: Vec<(String, String)> = sqlx::query_as(sql($delete.clone()))
                        .bind(&$work.cutoff)
                        .bind(&lo)
                        .bind(&hi)
                        .fetch_all(&mut *$c)
                        .await?;
                    file.append(&lines).map_err(DbError::other)?;
                    lines.len() as u64
                }
                None => sqlx::query(sql($delete.clone()))
                    .bind(&$work.cutoff)
                    .bind(&lo)
                    .bind(&hi)
                    .execute(&mut *$c)
                    .await?
                    .rows_affected(),
            };
            // A copy made before the delete must hold exactly the rows
            // deleted; a row the delete kept would be in both places.
            if let Some(copied) = copied
                && copied != deleted
            {
                return Err(DbError::other(format!(
                    "the batch copied {copied} rows into the archive table but deleted {deleted}: \
                     something kept rows from the delete (a BEFORE DELETE trigger? see the diff); rolled back"
                )));
            }
            Ok::<BatchDone, DbError>(BatchDone {
                rows: deleted,
                selected,
                last_key: Some(hi),
                cascaded,
            })
        }
        .await
    };
}

pub mod applylock;
pub mod conninfo;
pub mod pg;
pub mod query;
pub mod sqlite;

use std::time::Duration;

use crate::plan::values::{Backend, Target};
use crate::run::execplan::RetentionWork;
use crate::run::inspect::{Inspection, RetentionProbe};

/// Ends a transaction by the result of its work: commit on success, roll
/// back on failure (the failure is what the caller reports). Both drivers'
/// batch and statement transactions end here.
/// Runs statements in the given (just begun) transaction and settles it.
async fn statements_in<DB: sqlx::Database>(
    mut tx: sqlx::Transaction<'_, DB>,
    statements: &[String],
) -> Result<(), DbError>
where
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
{
    let result = async {
        for s in statements {
            sqlx::raw_sql(sql(s.clone())).execute(&mut *tx).await?;
        }
        Ok(())
    }
    .await;
    settle(tx, result).await
}

async fn settle<DB: sqlx::Database, T>(
    tx: sqlx::Transaction<'_, DB>,
    result: Result<T, DbError>,
) -> Result<T, DbError> {
    match result {
        Ok(v) => {
            tx.commit().await?;
            Ok(v)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

/// Quotes one identifier: `"name"`, with inner quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a possibly schema-qualified name.
pub fn quote_name(schema: Option<&str>, name: &str) -> String {
    match schema {
        Some(s) => format!("{}.{}", quote_ident(s), quote_ident(name)),
        None => quote_ident(name),
    }
}

/// Quotes a string literal (used only for values the engine made itself,
/// such as a cutoff inlined into EXPLAIN; plan values are bound).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Hands SQL built from quoted identifiers and engine-made literals to sqlx.
/// Every dynamic statement passes here, so this is the one place to audit.
pub(crate) fn sql(text: impl Into<String>) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(text.into())
}

/// What went wrong, sorted by what the executor does about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A lock was not granted within `lock_timeout`: retried with backoff.
    LockTimeout,
    /// `statement_timeout` (or a cancel) stopped the statement.
    StatementTimeout,
    /// A unique or primary key conflict (e.g. a key already in the archive).
    Conflict,
    /// The server could not be reached or the session was lost.
    Connection,
    Other,
}

/// A database error with its password-free message.
#[derive(Debug, Clone)]
pub struct DbError {
    pub kind: ErrorKind,
    pub message: String,
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl DbError {
    pub fn other(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Other,
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        let kind = match &e {
            sqlx::Error::Database(d) => match d.code().as_deref() {
                // PostgreSQL lock_not_available; SQLite BUSY and LOCKED.
                Some("55P03") | Some("5") | Some("6") | Some("517") | Some("261") => ErrorKind::LockTimeout,
                Some("57014") => ErrorKind::StatementTimeout,
                Some("23505") | Some("1555") | Some("2067") => ErrorKind::Conflict,
                Some(c) if c.starts_with("08") || c == "57P01" => ErrorKind::Connection,
                _ => ErrorKind::Other,
            },
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Protocol(_) => {
                ErrorKind::Connection
            }
            _ => ErrorKind::Other,
        };
        let message = match &e {
            // The SQLSTATE beside PostgreSQL's message: `57P01` tells an
            // operator "terminated by an administrator" in any language.
            sqlx::Error::Database(d) => match d.code() {
                Some(c) if c.len() == 5 => format!("{} (SQLSTATE {c})", d.message()),
                _ => d.message().to_string(),
            },
            other => other.to_string(),
        };
        Self {
            kind,
            message: crate::plan::source::redact_passwords(&message),
        }
    }
}

/// How a session limits itself (safety.md rules 1 and 4).
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub lock_timeout: Duration,
    pub statement_timeout: Duration,
    /// Read-only sessions for `plan diff` and inspection.
    pub read_only: bool,
}

impl SessionLimits {
    pub const READ_ONLY: Self = Self {
        lock_timeout: Duration::from_secs(2),
        statement_timeout: Duration::from_secs(300),
        read_only: true,
    };
}

/// One open session.
pub enum Conn {
    Pg(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Conn({})", self.backend())
    }
}

/// Opens a session to `target` with `limits` applied.
pub async fn connect(target: &Target, limits: SessionLimits) -> Result<Conn, DbError> {
    match target.backend {
        Backend::Postgres => pg::connect(target, limits).await.map(Conn::Pg),
        Backend::Sqlite => sqlite::connect(target, limits).await.map(Conn::Sqlite),
    }
}

impl Conn {
    /// Which server and database this session reached, as the server says.
    pub async fn identity(&mut self, target: &Target) -> Result<crate::run::execplan::TargetIdentity, DbError> {
        match self {
            Conn::Pg(c) => pg::identity(c, target).await,
            Conn::Sqlite(_) => sqlite::identity(target),
        }
    }
}

/// Builds the retention probes from the catalog half of an inspection.
pub type ProbeFn<'a> = dyn Fn(&Inspection) -> Vec<RetentionProbe> + Send + Sync + 'a;

/// What the backend needs to write a retention step's statements.
#[derive(Debug, Clone)]
pub struct RetentionSpec {
    /// Quoted source table.
    pub table: String,
    /// Quoted timestamp column and its type.
    pub column: String,
    pub column_type: String,
    /// Quoted batch key columns (primary key, `rowid`, or `key:`) with
    /// their types: one for most tables, several for a composite primary
    /// key, whose batches are ordered and bounded as a row value
    /// (`(a, b) > (…, …)`, keyset pagination).
    pub key: Vec<(String, String)>,
    pub where_sql: Option<String>,
    pub batch_size: u64,
    /// Quoted source columns with their types, in table order.
    pub columns: Vec<(String, String)>,
    /// Quoted primary key columns of the source.
    pub primary_key: Vec<String>,
    pub archive: Option<ArchiveSpec>,
    /// SQLite: the storage class the cutoff is compared as (`INTEGER` for
    /// Unix times, `REAL` for Julian days); text compares as text.
    pub cutoff_cast: Option<&'static str>,
    /// PostgreSQL: the table has inheritance children; statements name
    /// `ONLY` the table, so their rows are never deleted with its own.
    pub only: bool,
    /// Something may keep a row the delete reaches (a row-level DELETE
    /// trigger, a rule, row-level security): key windows then also count
    /// the eligible rows each one left behind. Without such a thing a
    /// window's DELETE is its own selection and that count is skipped.
    pub check_left: bool,
    /// `on_cascade: allow`: the referencing keys that act, at any depth.
    pub cascades: Vec<CascadeSpec>,
}

/// Where a retention step archives.
#[derive(Debug, Clone)]
pub enum ArchiveSpec {
    /// Quoted archive table; `exists: false` adds its CREATE statements.
    Table {
        name: String,
        exists: bool,
    },
    File {
        path: String,
    },
}

/// The statements of a retention step, as the backend writes them.
#[derive(Debug, Clone)]
pub struct RetentionSql {
    pub create_archive: Vec<String>,
    /// Binds (cutoff); returns (eligible rows, first key, last key) when
    /// the step starts (see `execplan::RetentionWork::count`).
    pub count: String,
    pub batch: crate::run::execplan::BatchSql,
    pub cascades: Vec<crate::run::execplan::CascadeCount>,
}

/// The next retention batch of a ranged walk: the eligible rows with a key
/// from `from` (inclusive for the first batch, exclusive after) up to `to`,
/// the last eligible key counted when the step began, at most `limit`. The
/// upper bound ends the walk at the key span's end instead of reading the
/// rest of the key index for rows that are not there; keys are text in the
/// backend's key form (see `execplan::RetentionWork::count`). The LIMIT is a
/// parameter: every dbmaint session plans with `plan_cache_mode =
/// force_custom_plan`, so no generic plan ever sees it as unknown.
#[derive(Debug, Clone, Copy)]
pub struct Keys<'a> {
    pub from: &'a str,
    /// `from` itself is a candidate (the first batch).
    pub inclusive: bool,
    pub to: &'a str,
    pub limit: u64,
}

/// One key window `[lo, hi]` (both inclusive) of a windowed walk.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub lo: i64,
    pub hi: i64,
}

/// Which batch to take.
#[derive(Debug, Clone, Copy)]
pub enum BatchAt<'a> {
    Ranged(Keys<'a>),
    Window(Window),
}

/// A retention key as text, in the backend's key form (see
/// `execplan::RetentionWork::count`).
pub fn key_text_sql(backend: Backend, key: &[(String, String)]) -> String {
    match backend {
        Backend::Postgres => pg::key_text(key),
        Backend::Sqlite => sqlite::key_text(key),
    }
}

/// Writes a retention step's statements in the backend's dialect.
pub fn retention_sql(backend: Backend, spec: &RetentionSpec) -> RetentionSql {
    match backend {
        Backend::Postgres => pg::retention_sql(spec),
        Backend::Sqlite => sqlite::retention_sql(spec),
    }
}

/// The predicate shared by every retention statement; binds the cutoff as
/// parameter 1 in the form `cutoff_param` gives.
pub fn retention_predicate(spec: &RetentionSpec, cutoff_param: &str) -> String {
    let mut p = format!("{} < {cutoff_param}", spec.column);
    if let Some(w) = &spec.where_sql {
        p.push_str(&format!(" AND ({w})"));
    }
    p
}

/// Counts the rows of a referencing (child) table that reference rows of
/// `table` matching `pred`: `ch.from` aliases the child `dbmaint_c`.
pub fn child_count_sql(ch: &crate::run::inspect::ChildProbe, table: &str, pred: &str) -> String {
    reach_sql(&ch.from, &ch.join, &ch.via, table, pred)
}

/// Counts the rows of `from` that reach rows of `table` matching `cond`
/// through the tables of `via` (nearest `table` first): one `EXISTS` per
/// level, each joining a level to the one before.
pub fn reach_sql(from: &str, join: &str, via: &[(String, String)], table: &str, cond: &str) -> String {
    let levels: Vec<(&str, &str)> = via
        .iter()
        .map(|(f, j)| (f.as_str(), j.as_str()))
        .chain(std::iter::once((from, join)))
        .collect();
    let mut reach = format!("EXISTS (SELECT 1 FROM {table} WHERE {} AND {cond})", levels[0].1);
    for k in 1..levels.len() {
        reach = format!(
            "EXISTS (SELECT 1 FROM {} WHERE {} AND {reach})",
            levels[k - 1].0,
            levels[k].1
        );
    }
    format!("SELECT count(*) FROM {from} WHERE {reach}")
}

/// A foreign key whose ON DELETE a batch's delete sets off
/// (`on_cascade: allow`), ready to be counted per batch.
#[derive(Debug, Clone)]
pub struct CascadeSpec {
    pub label: String,
    pub on_delete: String,
    pub from: String,
    pub join: String,
    pub via: Vec<(String, String)>,
}

/// Counts the rows of a self-referencing child that reference rows
/// matching `pred` without matching it themselves: rows a cascade would
/// reach past the cutoff. In the outer query `pred`'s columns are the
/// child's own (it is the only table in scope there).
pub fn outside_count_sql(ch: &crate::run::inspect::ChildProbe, table: &str, pred: &str) -> String {
    format!(
        "SELECT count(*) FROM {} WHERE EXISTS (SELECT 1 FROM {table} WHERE {} AND {pred}) AND ({pred}) IS NOT TRUE",
        ch.from, ch.join
    )
}

/// `RetentionWork::cascades` for a spec, each count over `range` (the
/// batch's key condition, binding lo and hi as the batch does).
pub fn cascade_counts(
    spec: &RetentionSpec,
    table: &str,
    pred: &str,
    range: &str,
) -> Vec<crate::run::execplan::CascadeCount> {
    spec.cascades
        .iter()
        .map(|c| crate::run::execplan::CascadeCount {
            foreign_key: c.label.clone(),
            on_delete: c.on_delete.clone(),
            count: reach_sql(&c.from, &c.join, &c.via, table, &format!("{pred}{range}")),
        })
        .collect()
}

/// Counts the rows matching `pred` that the guard keeps (some row
/// references them).
pub fn referenced_count_sql(from: &str, pred: &str, guard: &str) -> String {
    format!("SELECT count(*) FROM {from} WHERE {pred} AND NOT ({guard})")
}

/// A retention step's eligible rows when it starts and their key span
/// (first, last key as text in the backend's key form); no span when none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eligible {
    pub rows: u64,
    pub span: Option<(String, String)>,
}

/// Rows moved by one batch and where the next one starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchDone {
    /// Rows deleted, by the command tag (or the rows `RETURNING` gave).
    pub rows: u64,
    /// Eligible rows the batch chose. More than `rows` when something kept
    /// some: a trigger that vetoed the delete, a row-level security policy
    /// for DELETE, a concurrent change between choosing and deleting.
    pub selected: u64,
    /// The batch's last key: the next batch starts after it.
    pub last_key: Option<String>,
    /// Per `RetentionWork::cascades`, the child rows its delete reached.
    pub cascaded: Vec<u64>,
}

/// Identifies the journal rows a batch writes in its own transaction.
#[derive(Debug, Clone)]
pub struct BatchJournal {
    pub run_id: i64,
    pub step: String,
    pub batch_no: u64,
}

/// A run's journal row.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub plan: String,
    pub plan_hash: String,
    pub env: Option<String>,
    pub engine_version: String,
    pub host: String,
}

/// A step's journal row at its end.
#[derive(Debug, Clone, Default)]
pub struct StepRecord {
    pub step: String,
    pub op: String,
    pub status: String,
    pub started_at: String,
    pub finished_at: String,
    pub rows: u64,
    pub bytes: u64,
    pub statements: u64,
    pub error: Option<String>,
    pub rolled_back: Option<String>,
}

impl Conn {
    /// Ends the session politely (a Terminate message, the SQLite file
    /// closed); errors are ignored, the session is done either way.
    pub async fn close(self) {
        use sqlx::Connection;
        match self {
            Conn::Pg(c) => {
                let _ = c.close().await;
            }
            Conn::Sqlite(c) => {
                let _ = c.close().await;
            }
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Conn::Pg(_) => Backend::Postgres,
            Conn::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// The read-only snapshot planning needs: the catalog first, then the
    /// retention probes `probes` derives from it, in the same transaction.
    pub async fn inspect(&mut self, probes: &ProbeFn<'_>) -> Result<Inspection, DbError> {
        match self {
            Conn::Pg(c) => pg::inspect(c, probes).await,
            Conn::Sqlite(c) => sqlite::inspect(c, probes).await,
        }
    }

    /// Runs one statement on its own (outside a transaction).
    pub async fn execute(&mut self, statement: &str) -> Result<u64, DbError> {
        match self {
            Conn::Pg(c) => pg::execute(c, statement).await,
            Conn::Sqlite(c) => sqlite::execute(c, statement).await,
        }
    }

    /// Caps this session's statement timeout (PostgreSQL; SQLite has none).
    pub async fn set_statement_timeout(&mut self, d: Duration) -> Result<(), DbError> {
        match self {
            Conn::Pg(c) => pg::set_statement_timeout(c, d).await,
            Conn::Sqlite(_) => Ok(()),
        }
    }

    /// Runs statements together in one writing transaction.
    pub async fn execute_in_transaction(&mut self, statements: &[String]) -> Result<(), DbError> {
        match self {
            Conn::Pg(c) => pg::execute_in_transaction(c, statements).await,
            Conn::Sqlite(c) => sqlite::execute_in_transaction(c, statements).await,
        }
    }

    /// Takes one retention batch in one transaction, with its journal row.
    /// `archive_file` receives the rows of a file archive before the delete.
    pub async fn retention_batch(
        &mut self,
        work: &RetentionWork,
        at: BatchAt<'_>,
        journal: &BatchJournal,
        archive_file: Option<&mut crate::ops::retention::archive::ArchiveFile>,
    ) -> Result<BatchDone, DbError> {
        match self {
            Conn::Pg(c) => pg::retention_batch(c, work, at, journal, archive_file).await,
            Conn::Sqlite(c) => sqlite::retention_batch(c, work, at, journal, archive_file).await,
        }
    }

    /// Runs a `dry_run` query of a `sql` step (on a read-only session) and
    /// keeps its first rows; a failure is kept as the preview's error.
    pub async fn preview(&mut self, query: &str) -> crate::run::inspect::QueryPreview {
        let result = match self {
            Conn::Pg(c) => pg::preview(c, query).await,
            Conn::Sqlite(c) => sqlite::preview(c, query).await,
        };
        result.unwrap_or_else(|e| crate::run::inspect::QueryPreview {
            error: Some(one_line(&e.message)),
            ..Default::default()
        })
    }

    /// Creates the journal tables when missing.
    /// Prepares a windowed retention step's statement on this session.
    pub async fn prepare_window(&mut self, statement: &str) -> Result<(), DbError> {
        match self {
            Conn::Pg(c) => pg::prepare_window(c, statement).await,
            Conn::Sqlite(_) => Err(DbError::other("key windows are a PostgreSQL batch style")),
        }
    }

    /// The first existing key after `after`, for a windowed walk to jump
    /// over a run of empty windows (sparse keys: 1, 10¹², 2·10¹²).
    pub async fn retention_next_key(&mut self, next_key: &str, after: i64) -> Result<Option<i64>, DbError> {
        let Conn::Pg(c) = self else {
            return Err(DbError::other("key windows are a PostgreSQL batch style"));
        };
        let k: Option<i64> = sqlx::query_scalar(sql(next_key.to_string()))
            .bind(after)
            .fetch_one(c)
            .await?;
        Ok(k)
    }

    /// Where a key-window walk resumes: the last key an unfinished earlier
    /// run of the step committed (PostgreSQL; SQLite walks are ranged and
    /// restart from their first eligible key).
    pub async fn journal_resume_key(&mut self, step: &str, run_id: i64) -> Result<Option<String>, DbError> {
        match self {
            Conn::Pg(c) => pg::journal_resume_key(c, step, run_id).await,
            Conn::Sqlite(_) => Ok(None),
        }
    }

    /// A windowed walk's first eligible key (`BatchSql::Window::first_key`).
    pub async fn retention_first_key(&mut self, work: &RetentionWork) -> Result<Option<i64>, DbError> {
        let (Conn::Pg(c), crate::run::execplan::BatchSql::Window { first_key, .. }) = (self, &work.batch) else {
            return Err(DbError::other("key windows are a PostgreSQL batch style"));
        };
        let k: Option<i64> = sqlx::query_scalar(sql(first_key.clone()))
            .bind(&work.cutoff)
            .fetch_one(c)
            .await?;
        Ok(k)
    }

    /// The rows a retention step may remove when it starts, with the first
    /// and last of their keys: the span the walk covers.
    pub async fn retention_count(&mut self, work: &RetentionWork) -> Result<Eligible, DbError> {
        let (n, first, last): (i64, Option<String>, Option<String>) = match self {
            Conn::Pg(c) => {
                sqlx::query_as(sql(work.count.clone()))
                    .bind(&work.cutoff)
                    .fetch_one(c)
                    .await?
            }
            Conn::Sqlite(c) => {
                sqlx::query_as(sql(work.count.clone()))
                    .bind(&work.cutoff)
                    .fetch_one(c)
                    .await?
            }
        };
        Ok(Eligible {
            rows: n.max(0) as u64,
            span: first.zip(last),
        })
    }

    pub async fn journal_setup(&mut self) -> Result<(), DbError> {
        match self {
            Conn::Pg(c) => pg::journal_setup(c).await,
            Conn::Sqlite(c) => sqlite::journal_setup(c).await,
        }
    }

    pub async fn journal_run_started(&mut self, run: &RunRecord) -> Result<i64, DbError> {
        match self {
            Conn::Pg(c) => pg::journal_run_started(c, run).await,
            Conn::Sqlite(c) => sqlite::journal_run_started(c, run).await,
        }
    }

    pub async fn journal_step(&mut self, run_id: i64, s: &StepRecord) -> Result<(), DbError> {
        match self {
            Conn::Pg(c) => pg::journal_step(c, run_id, s).await,
            Conn::Sqlite(c) => sqlite::journal_step(c, run_id, s).await,
        }
    }

    /// Marks runs (and their steps) still `running` as `interrupted`; call
    /// only while holding the apply lock. Returns each run's id and the rows
    /// its committed batches removed.
    pub async fn journal_close_interrupted(&mut self) -> Result<Vec<(i64, i64)>, DbError> {
        match self {
            Conn::Pg(c) => pg::journal_close_interrupted(c).await,
            Conn::Sqlite(c) => sqlite::journal_close_interrupted(c).await,
        }
    }

    pub async fn journal_run_finished(&mut self, run_id: i64, status: &str, exit_code: i32) -> Result<(), DbError> {
        match self {
            Conn::Pg(c) => pg::journal_run_finished(c, run_id, status, exit_code).await,
            Conn::Sqlite(c) => sqlite::journal_run_finished(c, run_id, status, exit_code).await,
        }
    }

    /// Past runs (newest first) or one run's steps, as JSON values.
    pub async fn history(&mut self, run: Option<i64>, limit: u64) -> Result<serde_json::Value, DbError> {
        match self {
            Conn::Pg(c) => pg::history(c, run, limit).await,
            Conn::Sqlite(c) => sqlite::history(c, run, limit).await,
        }
    }

    /// SQLite: freelist pages over all pages, now.
    pub async fn free_ratio(&mut self) -> Result<f64, DbError> {
        match self {
            Conn::Pg(_) => Ok(0.0),
            Conn::Sqlite(c) => sqlite::free_ratio(c).await,
        }
    }

    /// SQLite: the file's size in bytes (page_count × page_size), now.
    pub async fn file_bytes(&mut self) -> Result<u64, DbError> {
        match self {
            Conn::Pg(_) => Ok(0),
            Conn::Sqlite(c) => sqlite::file_bytes(c).await,
        }
    }
}

/// Truncates an error message for a journal row or a one-line report.
pub fn one_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or("").trim();
    if line.len() > 500 {
        let mut end = 500;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &line[..end])
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_with_inner_quotes_doubled() {
        assert_eq!(quote_ident("core_audit_log"), "\"core_audit_log\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_name(Some("audit"), "Events"), "\"audit\".\"Events\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}

//! The backend, knowing no operation: self-limiting sessions ([`connect`],
//! [`SessionLimits`], snapshots), statements for everyone else
//! ([`query`]), the catalog ([`catalog`]), the journal (runs, steps,
//! batches, cascades, history), the apply lock ([`applylock`]) and the
//! target's identity. `pg.rs` and `sqlite.rs` hold each driver's
//! connection and journal dialect; operations keep their own SQL in
//! `ops/<op>/`. Only this room names sqlx types.
//!
//! This file also owns the only ways SQL text is built from names:
//! [`quote_ident`] / [`quote_name`] / [`quote_literal`], and [`sql`] to
//! hand audited text to sqlx.

pub mod applylock;
pub mod catalog;
pub mod conninfo;
pub mod identity;
pub mod pg;
pub mod query;
pub mod sqlite;
pub mod triggerbody;

use std::time::Duration;

use crate::plan::values::{Backend, Target};

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

/// A database error with its password-free message (the driver's error
/// is reduced to it on conversion, so no password can ride along).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DbError {
    pub kind: ErrorKind,
    pub message: String,
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
    pub async fn identity(&mut self, target: &Target) -> Result<crate::db::identity::TargetIdentity, DbError> {
        match self {
            Conn::Pg(c) => pg::identity(c, target).await,
            Conn::Sqlite(_) => sqlite::identity(target),
        }
    }
}

/// Which runs `history` lists: newest first, at most `limit`.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    pub run: Option<i64>,
    /// Runs of this plan (its `name`).
    pub plan: Option<String>,
    /// Runs started at or after this time (`YYYY-MM-DDTHH:MM:SSZ`, UTC).
    pub since: Option<String>,
    /// Runs that ended so (`succeeded`, `failed`, `partial`, …).
    pub status: Option<String>,
    pub limit: u64,
}

/// Identifies the journal rows a batch writes in its own transaction.
#[derive(Debug, Clone)]
pub struct BatchJournal {
    pub run_id: i64,
    pub step: String,
    pub batch_no: u64,
}

/// The journal row of one committed batch, as a statement to run inside
/// the batch's own transaction (values are literals: a key window sends it
/// with its `COMMIT` in one round trip).
pub fn journal_batch_sql(backend: Backend, j: &BatchJournal, last_key: &str, rows: u64) -> String {
    let table = match backend {
        Backend::Postgres => "dbmaint.batches",
        Backend::Sqlite => "dbmaint_batches",
    };
    format!(
        "INSERT INTO {table} (run_id, step, batch_no, last_key, rows) VALUES ({}, {}, {}, {}, {rows}); ",
        j.run_id,
        quote_literal(&j.step),
        j.batch_no,
        quote_literal(last_key)
    )
}

/// The journal row of the rows one batch's delete reached through one
/// foreign key (`on_cascade: allow`), for the batch's own transaction.
pub fn journal_cascade_sql(
    backend: Backend,
    j: &BatchJournal,
    foreign_key: &str,
    on_delete: &str,
    rows: u64,
) -> String {
    let table = match backend {
        Backend::Postgres => "dbmaint.cascades",
        Backend::Sqlite => "dbmaint_cascades",
    };
    format!(
        "INSERT INTO {table} (run_id, step, batch_no, foreign_key, on_delete, rows) VALUES ({}, {}, {}, {}, {}, {rows}); ",
        j.run_id,
        quote_literal(&j.step),
        j.batch_no,
        quote_literal(foreign_key),
        quote_literal(on_delete)
    )
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

/// A PostgreSQL session under its own `application_name` (a side session,
/// such as `verify: restore`'s snapshot and scratch database).
pub async fn connect_named(target: &Target, limits: SessionLimits, app: &str) -> Result<Conn, DbError> {
    Ok(Conn::Pg(pg::connect_named(target, limits, app).await?))
}

/// A SQLite file opened on its own, not as a plan's target (a backup's
/// copy, the demo database): read-only, or created when missing.
pub async fn open_sqlite_file(path: &std::path::Path, read_only: bool, create: bool) -> Result<Conn, DbError> {
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(read_only)
        .create_if_missing(create);
    Ok(Conn::Sqlite(sqlx::ConnectOptions::connect(&opts).await?))
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

    /// Opens the read-only snapshot an inspection reads in: a repeatable
    /// read transaction on PostgreSQL (the catalog and every count see one
    /// instant), a read transaction on SQLite. End it with [`Self::snapshot_end`].
    pub async fn snapshot_begin(&mut self) -> Result<(), DbError> {
        let begin = match self {
            Conn::Pg(_) => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            Conn::Sqlite(_) => "BEGIN",
        };
        self.execute(begin).await.map(|_| ())
    }

    /// Ends the snapshot (it wrote nothing; a failure to end it is moot).
    pub async fn snapshot_end(&mut self) {
        let _ = self.execute("COMMIT").await;
    }

    /// The catalog, in the caller's snapshot, with the tables of `measure`
    /// measured on disk (PostgreSQL; SQLite's file is measured whole).
    pub async fn catalog(&mut self, measure: &catalog::Measure) -> Result<catalog::Catalog, DbError> {
        match self {
            Conn::Pg(c) => pg::catalog(c, measure).await,
            Conn::Sqlite(c) => sqlite::catalog(c).await,
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

    /// Where a key-window walk resumes: the last key an unfinished earlier
    /// run of the step committed (PostgreSQL; SQLite walks are ranged and
    /// restart from their first eligible key).
    pub async fn journal_resume_key(&mut self, step: &str, run_id: i64) -> Result<Option<String>, DbError> {
        match self {
            Conn::Pg(c) => pg::journal_resume_key(c, step, run_id).await,
            Conn::Sqlite(_) => Ok(None),
        }
    }

    /// Creates the journal tables when missing.
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
    pub async fn history(&mut self, f: &HistoryFilter) -> Result<serde_json::Value, DbError> {
        match self {
            Conn::Pg(c) => pg::history(c, f).await,
            Conn::Sqlite(c) => sqlite::history(c, f).await,
        }
    }

    /// The journal's last successful run, of plan `plan` when given:
    /// `(run id, plan, finished_at RFC 3339 UTC)`; `None` when there is none
    /// (or no journal yet).
    pub async fn last_success(&mut self, plan: Option<&str>) -> Result<Option<(i64, String, String)>, DbError> {
        match self {
            Conn::Pg(c) => pg::last_success(c, plan).await,
            Conn::Sqlite(c) => sqlite::last_success(c, plan).await,
        }
    }

    /// The journal's last ten successful runs of each step of plan `plan`:
    /// (step, duration ms, rows, bytes), newest first.
    pub async fn step_history(&mut self, plan: &str) -> Result<Vec<(String, i64, i64, i64)>, DbError> {
        match self {
            Conn::Pg(c) => pg::step_history(c, plan).await,
            Conn::Sqlite(c) => sqlite::step_history(c, plan).await,
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

//! SQLite: sessions, inspection, batches and the journal. Every session has
//! a `busy_timeout` equal to the step's `lock_timeout`; every writing
//! transaction starts with `BEGIN IMMEDIATE`, so it takes the write lock up
//! front (or fails within the timeout) instead of failing at its first
//! write after a reader upgraded (safety.md rule 12).

use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Row};

use super::query::{Exec, query};

use super::catalog::Catalog;
use super::{DbError, ErrorKind, RunRecord, SessionLimits, StepRecord, sql};
use crate::db::catalog::{Column, IndexFacts, SqliteFile, TableFacts};
use crate::plan::values::Target;

pub fn options(target: &Target) -> Result<SqliteConnectOptions, DbError> {
    SqliteConnectOptions::from_str(target.expose_url())
        .map_err(|e| DbError::other(format!("`{}` is not a usable SQLite target: {e}", target.redacted())))
}

pub async fn connect(target: &Target, limits: SessionLimits) -> Result<SqliteConnection, DbError> {
    let path = std::path::Path::new(&target.database);
    if !path.exists() {
        return Err(DbError {
            kind: ErrorKind::Connection,
            message: format!(
                "SQLite database `{}` does not exist (dbmaint never creates the database it maintains)",
                target.database
            ),
        });
    }
    let opts = options(target)?
        .busy_timeout(limits.lock_timeout)
        .read_only(limits.read_only)
        .create_if_missing(false);
    sqlx::ConnectOptions::connect(&opts).await.map_err(|e| {
        let e = DbError::from(e);
        DbError {
            kind: ErrorKind::Connection,
            message: format!("could not open {}: {}", target.redacted(), e.message),
        }
    })
}

/// The database file's real path (symlinks and `..` resolved) and its
/// device and inode: two names for one file are one identity.
pub fn identity(target: &Target) -> Result<crate::db::identity::TargetIdentity, DbError> {
    use std::os::unix::fs::MetadataExt;
    let path = std::path::Path::new(&target.database);
    let real = std::fs::canonicalize(path).map_err(|e| DbError::other(format!("`{}`: {e}", target.database)))?;
    let meta = std::fs::metadata(&real).map_err(|e| DbError::other(format!("`{}`: {e}", real.display())))?;
    Ok(crate::db::identity::TargetIdentity {
        backend: crate::plan::values::Backend::Sqlite,
        host: None,
        port: None,
        database: real.display().to_string(),
        user: None,
        sslmode: None,
        tls: None,
        system_identifier: Some(format!("{}:{}", meta.dev(), meta.ino())),
        source: String::new(),
    })
}

pub async fn execute(c: &mut SqliteConnection, statement: &str) -> Result<u64, DbError> {
    Ok(sqlx::raw_sql(sql(statement.to_string()))
        .execute(c)
        .await?
        .rows_affected())
}

pub async fn execute_in_transaction(c: &mut SqliteConnection, statements: &[String]) -> Result<(), DbError> {
    super::statements_in(c.begin_with("BEGIN IMMEDIATE").await?, statements).await
}

// ---------------------------------------------------------------- inspection

const USER_TABLES: &str = "m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
     AND m.name NOT LIKE 'dbmaint\\_%' ESCAPE '\\'";

/// Three catalog queries in one read transaction, whatever the number of
/// tables (`pragma_*` table-valued functions joined to `sqlite_schema`).
pub async fn catalog(c: &mut SqliteConnection) -> Result<Catalog, DbError> {
    let head = sqlx::query(
        "SELECT sqlite_version(), (SELECT page_size FROM pragma_page_size()), \
         (SELECT page_count FROM pragma_page_count()), (SELECT freelist_count FROM pragma_freelist_count()), \
         (SELECT file FROM pragma_database_list() WHERE name = 'main')",
    )
    .fetch_one(&mut *c)
    .await?;
    let page_size = head.get::<i64, _>(1).max(0) as u64;
    let page_count = head.get::<i64, _>(2).max(0) as u64;
    let freelist_count = head.get::<i64, _>(3).max(0) as u64;
    let path: String = head.get(4);
    let file_bytes = std::fs::metadata(&path)
        .map(|m| m.len())
        .unwrap_or(page_size * page_count);

    let column_rows = sqlx::query(sql(format!(
        "SELECT m.name, p.name, p.type, p.\"notnull\", p.pk, upper(m.sql) LIKE '%WITHOUT%ROWID%' \
         FROM sqlite_schema m JOIN pragma_table_info(m.name) p WHERE {USER_TABLES} ORDER BY m.name, p.cid"
    )))
    .fetch_all(&mut *c)
    .await?;
    let mut tables: Vec<TableFacts> = vec![];
    let mut pk_order: Vec<Vec<(i64, String)>> = vec![];
    for r in &column_rows {
        let table: String = r.get(0);
        if tables.last().is_none_or(|t| t.name != table) {
            tables.push(TableFacts {
                schema: "main".into(),
                name: table,
                total_bytes: 0,
                live_tuples: 0,
                dead_tuples: 0,
                mod_since_analyze: 0,
                last_vacuum: None,
                last_autovacuum: None,
                last_analyze: None,
                last_autoanalyze: None,
                xid_age: 0,
                columns: vec![],
                primary_key: vec![],
                indexes: vec![],
                inheritance_children: vec![],
                without_rowid: r.get::<i64, _>(5) != 0,
                delete_triggers: vec![],
                partitioned: false,
                stats_unknown: false,
                measured_tuples: None,
                partitions: vec![],
                access: Default::default(),
                toast: None,
            });
            pk_order.push(vec![]);
        }
        let name: String = r.get(1);
        let pk: i64 = r.get(4);
        if pk > 0
            && let Some(p) = pk_order.last_mut()
        {
            p.push((pk, name.clone()));
        }
        if let Some(t) = tables.last_mut() {
            t.columns.push(Column {
                name,
                data_type: r.get(2),
                not_null: r.get::<i64, _>(3) != 0,
            });
        }
    }
    for (t, mut pk) in tables.iter_mut().zip(pk_order) {
        pk.sort();
        t.primary_key = pk.into_iter().map(|(_, n)| n).collect();
    }

    let index_rows = sqlx::query(sql(format!(
        "SELECT m.name, il.name, il.\"unique\", il.origin, il.partial, \
           (SELECT json_group_array(coalesce(name, 'expr')) FROM \
              (SELECT name FROM pragma_index_info(il.name) ORDER BY seqno)) \
         FROM sqlite_schema m JOIN pragma_index_list(m.name) il WHERE {USER_TABLES} ORDER BY m.name, il.name"
    )))
    .fetch_all(&mut *c)
    .await?;
    for r in &index_rows {
        let table: String = r.get(0);
        let columns: String = r.get(5);
        if let Some(t) = tables.iter_mut().find(|t| t.name == table) {
            t.indexes.push(IndexFacts {
                name: r.get(1),
                columns: serde_json::from_str(&columns).unwrap_or_default(),
                bytes: 0,
                unique: r.get::<i64, _>(2) != 0,
                primary: r.get::<String, _>(3) == "pk",
                valid: true,
                partial: r.get::<i64, _>(4) != 0,
                exclusion: false,
                parent_index: None,
            });
        }
    }

    // Triggers on DELETE, read from their CREATE text.
    for r in sqlx::query("SELECT tbl_name, name, sql FROM sqlite_schema WHERE type = 'trigger' ORDER BY tbl_name, name")
        .fetch_all(&mut *c)
        .await?
    {
        let (table, name, text): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        let head = text.to_ascii_uppercase();
        // The head up to ` ON `: `CREATE TRIGGER n [BEFORE|AFTER|INSTEAD OF] DELETE ON t`.
        let head = head.split(" ON ").next().unwrap_or("");
        if !head.split_whitespace().any(|w| w == "DELETE") {
            continue;
        }
        let timing = if head.contains("BEFORE") {
            "BEFORE"
        } else if head.contains("INSTEAD") {
            "INSTEAD OF"
        } else {
            "AFTER"
        };
        if let Some(t) = tables.iter_mut().find(|t| t.name.eq_ignore_ascii_case(&table)) {
            t.delete_triggers.push(crate::db::catalog::DeleteTrigger {
                name,
                timing: timing.into(),
                per_row: true,
                function: String::new(),
                reads: crate::db::triggerbody::Body::read(&text, timing == "BEFORE"),
            });
        }
    }

    // `to` is NULL when the key references the parent's primary key.
    let fk_rows = sqlx::query(sql(format!(
        "SELECT m.name, f.id, f.\"table\", f.\"from\", f.\"to\", f.on_delete \
         FROM sqlite_schema m JOIN pragma_foreign_key_list(m.name) f WHERE {USER_TABLES} ORDER BY m.name, f.id, f.seq"
    )))
    .fetch_all(&mut *c)
    .await?;
    let mut foreign_keys: Vec<crate::db::catalog::ForeignKey> = vec![];
    let mut last: Option<(String, i64)> = None;
    for r in &fk_rows {
        let (child, id, parent): (String, i64, String) = (r.get(0), r.get(1), r.get(2));
        let to: Option<String> = r.get(4);
        if last.as_ref() != Some(&(child.clone(), id)) {
            foreign_keys.push(crate::db::catalog::ForeignKey {
                name: format!("{child}_fk{id}"),
                child_schema: "main".into(),
                child_table: child.clone(),
                child_columns: vec![],
                parent_schema: "main".into(),
                parent_table: parent.clone(),
                parent_columns: vec![],
                on_delete: crate::db::catalog::OnDelete::parse(&r.get::<String, _>(5)),
            });
            last = Some((child, id));
        }
        if let Some(fk) = foreign_keys.last_mut() {
            fk.child_columns.push(r.get(3));
            let pk = tables
                .iter()
                .find(|t| t.name.eq_ignore_ascii_case(&parent))
                .and_then(|t| t.primary_key.get(fk.parent_columns.len()).cloned());
            fk.parent_columns.push(to.or(pk).unwrap_or_else(|| "rowid".into()));
        }
    }

    let other_relations =
        sqlx::query_scalar::<_, String>("SELECT name FROM sqlite_schema WHERE type = 'view' ORDER BY name")
            .fetch_all(&mut *c)
            .await?
            .into_iter()
            .map(|name| crate::db::catalog::OtherRelation {
                schema: "main".into(),
                name,
                kind: "view".into(),
            })
            .collect();
    Ok(Catalog {
        server_version: head.get(0),
        default_schema: "main".into(),
        search_path: vec!["main".into()],
        other_relations,
        database_bytes: file_bytes,
        tables,
        foreign_keys,
        sqlite: Some(SqliteFile {
            path,
            page_size,
            page_count,
            freelist_count,
            file_bytes,
        }),
        role: None,
        catalog_queries: 6,
    })
}

// ---------------------------------------------------------------- journal

const JOURNAL_DDL: &str = "\
CREATE TABLE IF NOT EXISTS dbmaint_runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  plan TEXT NOT NULL,
  plan_hash TEXT NOT NULL,
  env TEXT,
  engine_version TEXT NOT NULL,
  host TEXT,
  started_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
  finished_at TEXT,
  status TEXT NOT NULL DEFAULT 'running',
  exit_code INTEGER
);
CREATE TABLE IF NOT EXISTS dbmaint_steps (
  run_id INTEGER NOT NULL REFERENCES dbmaint_runs (id),
  step TEXT NOT NULL,
  op TEXT NOT NULL,
  status TEXT NOT NULL,
  started_at TEXT,
  finished_at TEXT,
  rows INTEGER NOT NULL DEFAULT 0,
  bytes INTEGER NOT NULL DEFAULT 0,
  statements INTEGER NOT NULL DEFAULT 0,
  error TEXT,
  rolled_back TEXT,
  PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS dbmaint_batches (
  run_id INTEGER NOT NULL,
  step TEXT NOT NULL,
  batch_no INTEGER NOT NULL,
  last_key TEXT,
  rows INTEGER NOT NULL,
  committed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  PRIMARY KEY (run_id, step, batch_no)
);
CREATE TABLE IF NOT EXISTS dbmaint_cascades (
  run_id INTEGER NOT NULL,
  step TEXT NOT NULL,
  batch_no INTEGER NOT NULL,
  foreign_key TEXT NOT NULL,
  on_delete TEXT NOT NULL,
  rows INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dbmaint_backups (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id INTEGER,
  plan TEXT NOT NULL,
  step TEXT NOT NULL,
  path TEXT NOT NULL,
  format TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  sha256 TEXT NOT NULL,
  modified TEXT NOT NULL,
  verified TEXT NOT NULL,
  verify_note TEXT NOT NULL DEFAULT '',
  counts TEXT,
  created_at TEXT NOT NULL,
  verified_at TEXT,
  removed_at TEXT,
  database TEXT NOT NULL DEFAULT ''
);";

pub async fn journal_setup(c: &mut SqliteConnection) -> Result<(), DbError> {
    execute_in_transaction(c, &[JOURNAL_DDL.to_string()]).await
}

pub async fn journal_run_started(c: &mut SqliteConnection, run: &RunRecord) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO dbmaint_runs (plan, plan_hash, env, engine_version, host) VALUES (?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(&run.plan)
    .bind(&run.plan_hash)
    .bind(&run.env)
    .bind(&run.engine_version)
    .bind(&run.host)
    .fetch_one(c)
    .await?)
}

pub async fn journal_step(c: &mut SqliteConnection, run_id: i64, s: &StepRecord) -> Result<(), DbError> {
    sqlx::query(
        "INSERT OR REPLACE INTO dbmaint_steps \
         (run_id, step, op, status, started_at, finished_at, rows, bytes, statements, error, rolled_back) \
         VALUES (?, ?, ?, ?, NULLIF(?, ''), NULLIF(?, ''), ?, ?, ?, ?, ?)",
    )
    .bind(run_id)
    .bind(&s.step)
    .bind(&s.op)
    .bind(&s.status)
    .bind(&s.started_at)
    .bind(&s.finished_at)
    .bind(s.rows as i64)
    .bind(s.bytes as i64)
    .bind(s.statements as i64)
    .bind(&s.error)
    .bind(&s.rolled_back)
    .execute(c)
    .await?;
    Ok(())
}

pub async fn journal_run_finished(
    c: &mut SqliteConnection,
    run_id: i64,
    status: &str,
    exit_code: i32,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE dbmaint_runs SET finished_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), status = ?, exit_code = ? WHERE id = ?",
    )
    .bind(status)
    .bind(exit_code)
    .bind(run_id)
    .execute(c)
    .await?;
    Ok(())
}

pub async fn journal_close_interrupted(c: &mut SqliteConnection) -> Result<Vec<(i64, i64)>, DbError> {
    let now = "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')";
    let mut tx = c.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::raw_sql(sql(format!(
        "UPDATE dbmaint_steps SET status = 'interrupted', finished_at = {now}, \
           rows = (SELECT coalesce(sum(b.rows), 0) FROM dbmaint_batches b \
                   WHERE b.run_id = dbmaint_steps.run_id AND b.step = dbmaint_steps.step), \
           error = 'the process ended before the step finished' \
         WHERE status = 'running'"
    )))
    .execute(&mut *tx)
    .await?;
    let runs: Vec<(i64, i64)> = sqlx::query_as(sql(format!(
        "UPDATE dbmaint_runs SET status = 'interrupted', finished_at = {now} WHERE status = 'running' \
         RETURNING id, (SELECT coalesce(sum(b.rows), 0) FROM dbmaint_batches b WHERE b.run_id = dbmaint_runs.id)"
    )))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(runs)
}

pub async fn history(c: &mut SqliteConnection, f: &super::HistoryFilter) -> Result<serde_json::Value, DbError> {
    let exists: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'dbmaint_runs'")
            .fetch_one(&mut *c)
            .await?;
    if exists == 0 {
        return Ok(serde_json::json!({"runs": []}));
    }
    let runs: Vec<String> = sqlx::query_scalar(
        "SELECT json_object('id', id, 'plan', plan, 'plan_hash', plan_hash, 'env', env, \
           'engine_version', engine_version, 'host', host, 'started_at', started_at, \
           'finished_at', finished_at, 'status', status, 'exit_code', exit_code, \
           'duration_ms', CAST((julianday(finished_at) - julianday(started_at)) * 86400000 AS INTEGER), \
           'steps', (SELECT json_group_array(json_object('step', s.step, 'op', s.op, 'status', s.status, \
                'duration_ms', CAST((julianday(s.finished_at) - julianday(s.started_at)) * 86400000 AS INTEGER), \
                'started_at', s.started_at, 'finished_at', s.finished_at, 'rows', s.rows, 'bytes', s.bytes, \
                'statements', s.statements, 'error', s.error, 'rolled_back', s.rolled_back, \
                'batches', (SELECT count(*) FROM dbmaint_batches b WHERE b.run_id = s.run_id AND b.step = s.step))) \
              FROM (SELECT * FROM dbmaint_steps WHERE run_id = r.id ORDER BY started_at IS NULL, started_at, step) s)) \
         FROM dbmaint_runs r WHERE (?1 IS NULL OR id = ?1) AND (?3 IS NULL OR plan = ?3) \
           AND (?4 IS NULL OR started_at >= ?4) AND (?5 IS NULL OR status = ?5) ORDER BY id DESC LIMIT ?2",
    )
    .bind(f.run)
    .bind(f.limit as i64)
    .bind(&f.plan)
    .bind(&f.since)
    .bind(&f.status)
    .fetch_all(c)
    .await?;
    let runs: Vec<serde_json::Value> = runs.iter().filter_map(|r| serde_json::from_str(r).ok()).collect();
    Ok(serde_json::json!({ "runs": runs }))
}

/// The last run that succeeded, of `plan` when given.
pub async fn last_success(
    c: &mut SqliteConnection,
    plan: Option<&str>,
) -> Result<Option<(i64, String, String)>, DbError> {
    let exists: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'dbmaint_runs'")
            .fetch_one(&mut *c)
            .await?;
    if exists == 0 {
        return Ok(None);
    }
    Ok(sqlx::query_as(
        "SELECT id, plan, finished_at FROM dbmaint_runs WHERE status = 'succeeded' AND finished_at IS NOT NULL \
           AND (?1 IS NULL OR plan = ?1) ORDER BY finished_at DESC LIMIT 1",
    )
    .bind(plan)
    .fetch_optional(c)
    .await?)
}

/// Of plan `plan`'s steps that succeeded, the last ten runs of each:
/// (step, duration ms, rows, bytes), newest first; none without a journal.
pub async fn step_history(c: &mut SqliteConnection, plan: &str) -> Result<Vec<(String, i64, i64, i64)>, DbError> {
    let exists: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'dbmaint_steps'")
            .fetch_one(&mut *c)
            .await?;
    if exists == 0 {
        return Ok(vec![]);
    }
    Ok(sqlx::query_as(
        "SELECT step, ms, rows, bytes FROM ( \
           SELECT s.step, CAST(round((julianday(s.finished_at) - julianday(s.started_at)) * 86400000) AS INTEGER) AS ms, \
                  s.rows, s.bytes, row_number() OVER (PARTITION BY s.step ORDER BY s.run_id DESC) AS n \
           FROM dbmaint_steps s JOIN dbmaint_runs r ON r.id = s.run_id \
           WHERE r.plan = ?1 AND s.status = 'succeeded' AND s.started_at IS NOT NULL AND s.finished_at IS NOT NULL) \
         WHERE n <= 10 AND ms IS NOT NULL ORDER BY step, n",
    )
    .bind(plan)
    .fetch_all(c)
    .await?)
}

/// The share of the file's pages on the free list (what `VACUUM` gives back).
pub async fn free_ratio(c: &mut impl Exec) -> Result<f64, DbError> {
    let r = query(
        "SELECT (SELECT freelist_count FROM pragma_freelist_count()), (SELECT page_count FROM pragma_page_count())",
    )
    .fetch_one(c)
    .await?;
    let (free, pages): (i64, i64) = (r.get(0)?, r.get(1)?);
    Ok(if pages > 0 { free as f64 / pages as f64 } else { 0.0 })
}

/// The database file's size: pages × page size.
pub async fn file_bytes(c: &mut impl Exec) -> Result<u64, DbError> {
    let r = query("SELECT (SELECT page_count FROM pragma_page_count()), (SELECT page_size FROM pragma_page_size())")
        .fetch_one(c)
        .await?;
    let (pages, size): (i64, i64) = (r.get(0)?, r.get(1)?);
    Ok((pages.max(0) * size.max(0)) as u64)
}

/// `VACUUM INTO` a new file (the SQLite backup), as one statement.
pub async fn vacuum_into(c: &mut impl Exec, path: &str) -> Result<(), DbError> {
    query("VACUUM INTO ?").bind(path).execute(c).await?;
    Ok(())
}

/// `PRAGMA integrity_check` on a file: `Ok(())` when it says `ok`.
pub async fn integrity_check(path: &str) -> Result<(), DbError> {
    let opts = SqliteConnectOptions::new().filename(path).read_only(true);
    let mut c = sqlx::ConnectOptions::connect(&opts).await?;
    let lines: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check").fetch_all(&mut c).await?;
    let _ = c.close().await;
    if lines.len() == 1 && lines[0] == "ok" {
        Ok(())
    } else {
        Err(DbError::other(format!(
            "integrity_check of `{path}` failed: {}",
            lines.join("; ")
        )))
    }
}

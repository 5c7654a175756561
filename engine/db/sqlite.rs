//! SQLite: sessions, inspection, batches and the journal. Every session has
//! a `busy_timeout` equal to the step's `lock_timeout`; every writing
//! transaction starts with `BEGIN IMMEDIATE`, so it takes the write lock up
//! front (or fails within the timeout) instead of failing at its first
//! write after a reader upgraded (safety.md rule 12).

use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Row};

use super::query::{Exec, query};

use super::{
    ArchiveSpec, BatchAt, BatchDone, BatchJournal, DbError, ErrorKind, Keys, ProbeFn, RetentionSpec, RetentionSql,
    RunRecord, SessionLimits, StepRecord, retention_predicate, sql,
};
use crate::ops::retention::archive::ArchiveFile;
use crate::plan::values::Target;
use crate::run::execplan::{BatchSql, RetentionWork};
use crate::run::inspect::{
    Column, IndexFacts, Inspection, PREVIEW_ROWS, QueryPreview, RetentionFacts, RetentionProbe, SqliteFile, TableFacts,
};

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
pub fn identity(target: &Target) -> Result<crate::run::execplan::TargetIdentity, DbError> {
    use std::os::unix::fs::MetadataExt;
    let path = std::path::Path::new(&target.database);
    let real = std::fs::canonicalize(path).map_err(|e| DbError::other(format!("`{}`: {e}", target.database)))?;
    let meta = std::fs::metadata(&real).map_err(|e| DbError::other(format!("`{}`: {e}", real.display())))?;
    Ok(crate::run::execplan::TargetIdentity {
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

/// A `dry_run` query's first rows: SQLite values are text, integers,
/// reals, NULL or blobs (shown by size).
pub async fn preview(c: &mut SqliteConnection, query: &str) -> Result<QueryPreview, DbError> {
    use sqlx::{Column, ValueRef};
    let mut p = QueryPreview::default();
    let query = query.trim().trim_end_matches(';');
    let rows = sqlx::query(sql(format!("SELECT * FROM ({query}\n) LIMIT {}", PREVIEW_ROWS + 1)))
        .fetch_all(&mut *c)
        .await?;
    p.truncated = rows.len() > PREVIEW_ROWS;
    for r in rows.iter().take(PREVIEW_ROWS) {
        if p.columns.is_empty() {
            p.columns = r.columns().iter().map(|c| c.name().to_string()).collect();
        }
        let cells = (0..r.columns().len())
            .map(|i| {
                if r.try_get_raw(i).is_ok_and(|v| v.is_null()) {
                    "NULL".to_string()
                } else if let Ok(v) = r.try_get::<i64, _>(i) {
                    v.to_string()
                } else if let Ok(v) = r.try_get::<f64, _>(i) {
                    v.to_string()
                } else if let Ok(v) = r.try_get::<String, _>(i) {
                    v
                } else if let Ok(v) = r.try_get::<Vec<u8>, _>(i) {
                    format!("<{} bytes>", v.len())
                } else {
                    "?".into()
                }
            })
            .collect();
        p.rows.push(cells);
    }
    Ok(p)
}

// ---------------------------------------------------------------- inspection

const USER_TABLES: &str = "m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
     AND m.name NOT LIKE 'dbmaint\\_%' ESCAPE '\\'";

/// Three catalog queries in one read transaction, whatever the number of
/// tables (`pragma_*` table-valued functions joined to `sqlite_schema`).
pub async fn inspect(c: &mut SqliteConnection, probes: &ProbeFn<'_>) -> Result<Inspection, DbError> {
    execute(c, "BEGIN").await?;
    let result = inspect_in(c, probes).await;
    let _ = execute(c, "COMMIT").await;
    result
}

async fn inspect_in(c: &mut SqliteConnection, probes: &ProbeFn<'_>) -> Result<Inspection, DbError> {
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
                partitions: vec![],
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
            t.delete_triggers.push(crate::run::inspect::DeleteTrigger {
                name,
                timing: timing.into(),
                per_row: true,
                function: String::new(),
                reads: crate::ops::retention::triggerbody::Body::read(&text, timing == "BEFORE"),
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
    let mut foreign_keys: Vec<crate::run::inspect::ForeignKey> = vec![];
    let mut last: Option<(String, i64)> = None;
    for r in &fk_rows {
        let (child, id, parent): (String, i64, String) = (r.get(0), r.get(1), r.get(2));
        let to: Option<String> = r.get(4);
        if last.as_ref() != Some(&(child.clone(), id)) {
            foreign_keys.push(crate::run::inspect::ForeignKey {
                name: format!("{child}_fk{id}"),
                child_schema: "main".into(),
                child_table: child.clone(),
                child_columns: vec![],
                parent_schema: "main".into(),
                parent_table: parent.clone(),
                parent_columns: vec![],
                on_delete: crate::run::inspect::OnDelete::parse(&r.get::<String, _>(5)),
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
            .map(|name| crate::run::inspect::OtherRelation {
                schema: "main".into(),
                name,
                kind: "view".into(),
            })
            .collect();
    let mut inspection = Inspection {
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
        retention: indexmap::IndexMap::new(),
        previews: indexmap::IndexMap::new(),
        findings: indexmap::IndexMap::new(),
        stats: indexmap::IndexMap::new(),
        bloat: indexmap::IndexMap::new(),
        leftovers: None,
        matviews: None,
        catalog_queries: 6,
    };
    for p in probes(&inspection) {
        let facts = probe(c, &p).await?;
        inspection.retention.insert(p.step.clone(), facts);
    }
    Ok(inspection)
}

/// SQLite has no row estimates, so retention is always counted exactly.
/// One scan samples the column (storage classes, smallest and largest
/// value, NULLs) to decide how it stores time; the cutoff is then built in
/// that form and compared as that storage class.
async fn probe(c: &mut SqliteConnection, p: &RetentionProbe) -> Result<RetentionFacts, DbError> {
    use crate::ops::retention::timefmt::{Sample, TimeFormat, cutoff_value, decide, is_zone_less};
    let r = sqlx::query(sql(format!(
        "SELECT CAST(min({c}) AS REAL), CAST(max({c}) AS REAL), CAST(min({c}) AS TEXT), CAST(max({c}) AS TEXT), \
         coalesce(sum({c} IS NULL), 0), group_concat(DISTINCT typeof({c})) FROM {t}",
        c = p.column,
        t = p.table
    )))
    .fetch_one(&mut *c)
    .await?;
    let classes: Option<String> = r.get(5);
    let sample = Sample {
        declared: p.column_type.to_ascii_lowercase(),
        storage: classes
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty() && *s != "null")
            .map(str::to_string)
            .collect(),
        min_num: r.get(0),
        max_num: r.get(1),
        min_text: r.get(2),
        max_text: r.get(3),
    };
    let nulls = r.get::<i64, _>(4).max(0) as u64;
    let format = match decide(&sample, p.stated_format) {
        Ok(f) => f,
        Err(e) => {
            return Ok(RetentionFacts {
                rows: 0,
                exact: true,
                oldest: sample.min_text,
                newest: sample.max_text,
                cutoff: String::new(),
                format: None,
                format_error: Some(e),
                nulls,
                ..RetentionFacts::default()
            });
        }
    };
    let t_sep = sample
        .min_text
        .as_ref()
        .is_some_and(|t| t.as_bytes().get(10) == Some(&b'T'));
    let zone_less = is_zone_less(format, &sample.declared, sample.min_text.as_deref());
    let cutoff = cutoff_value(format, p.cutoff, p.zone, t_sep);
    let param = match format {
        TimeFormat::JulianDay => "CAST(?1 AS REAL)",
        f if f.is_numeric() => "CAST(?1 AS INTEGER)",
        _ => "?1",
    };
    let mut pred = format!("{} < {param}", p.column);
    if let Some(w) = &p.where_sql {
        pred.push_str(&format!(" AND ({w})"));
    }
    let children = child_counts!(c, p, &pred, &cutoff)?;
    let referenced = match &p.guard_sql {
        Some(g) => {
            let n: i64 = sqlx::query_scalar(sql(super::referenced_count_sql(&p.table, &pred, g)))
                .bind(&cutoff)
                .fetch_one(&mut *c)
                .await?;
            pred.push_str(&format!(" AND {g}"));
            n.max(0) as u64
        }
        None => 0,
    };
    let digest = match &p.digest_key {
        Some(k) => {
            use futures_util::TryStreamExt;
            let mut d = crate::ops::retention::keydigest::KeyDigest::default();
            let mut keys = sqlx::query_scalar::<_, String>(sql(format!("SELECT {k} FROM {} WHERE {pred}", p.table)))
                .bind(&cutoff)
                .fetch(&mut *c);
            while let Some(k) = keys.try_next().await? {
                d.add(&k);
            }
            Some(d)
        }
        None => None,
    };
    let r = sqlx::query(sql(format!(
        "SELECT count(*), CAST(min({c}) AS TEXT), CAST(max({c}) AS TEXT), \
         NOT EXISTS (SELECT 1 FROM {t} WHERE ({pred}) IS NOT 1), (SELECT count(*) FROM {t}) FROM {t} WHERE {pred}",
        t = p.table,
        c = p.column
    )))
    .bind(&cutoff)
    .fetch_one(&mut *c)
    .await?;
    Ok(RetentionFacts {
        rows: r.get::<i64, _>(0).max(0) as u64,
        exact: true,
        oldest: r.get(1),
        newest: r.get(2),
        cutoff,
        format: Some(format),
        format_error: None,
        nulls,
        zone: zone_less.then(|| p.zone.to_string()),
        children,
        referenced,
        all_rows: r.get::<i64, _>(3) != 0,
        rls_applies: false,
        table_rows: r.get::<i64, _>(4).max(0) as u64,
        table_rows_exact: true,
        partitions: vec![],
        digest,
    })
}

/// A retention key in SQLite's SQL: one column (or `rowid`), or a composite
/// key compared as a row value. Keys travel as `json_array(k, …)` text and
/// come back through `json_extract`, which returns each value in the
/// storage class it had: a typeless key holding numbers compares as
/// numbers, text as text, as SQLite itself orders them.
struct SqliteKey<'a>(&'a [(String, String)]);

impl SqliteKey<'_> {
    fn cols(&self) -> Vec<&str> {
        self.0.iter().map(|(c, _)| c.as_str()).collect()
    }

    /// `k` or `(a, b)`.
    fn tuple(&self) -> String {
        match self.cols().as_slice() {
            [one] => one.to_string(),
            many => format!("({})", many.join(", ")),
        }
    }

    fn order(&self, desc: bool) -> String {
        self.cols()
            .iter()
            .map(|c| format!("{c}{}", if desc { " DESC" } else { "" }))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The key as walk text.
    fn text(&self) -> String {
        format!("json_array({})", self.cols().join(", "))
    }

    /// Parameter `?n` (walk text) as a value comparable with [`Self::tuple`].
    fn param(&self, n: u8) -> String {
        let parts: Vec<String> = (0..self.0.len())
            .map(|i| format!("json_extract(?{n}, '$[{i}]')"))
            .collect();
        match parts.as_slice() {
            [one] => one.clone(),
            many => format!("({})", many.join(", ")),
        }
    }

    /// The key a file archive's line carries: the value itself for one
    /// column, a JSON array for several.
    fn file_key(&self) -> String {
        match self.cols().as_slice() {
            [one] => format!("CAST({one} AS TEXT)"),
            _ => self.text(),
        }
    }
}

/// A key as text (see [`SqliteKey`]).
pub fn key_text(key: &[(String, String)]) -> String {
    SqliteKey(key).text()
}

/// SQLite's retention statements: SQLite has no DELETE inside a CTE, so a
/// batch is its key range, then copy and delete over that range, in one
/// `BEGIN IMMEDIATE` transaction.
pub fn retention_sql(spec: &RetentionSpec) -> RetentionSql {
    let param = spec
        .cutoff_cast
        .map_or_else(|| "?1".to_string(), |c| format!("CAST(?1 AS {c})"));
    let pred = retention_predicate(spec, &param);
    let t = &spec.table;
    let key = SqliteKey(&spec.key);
    let kt = key.tuple();
    let cols = spec
        .columns
        .iter()
        .map(|(c, _)| c.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let range = format!(" AND {kt} >= {} AND {kt} <= {}", key.param(2), key.param(3));
    // The eligible rows and their key span; (rows, first key, last key) of
    // a batch. One column: min and max (which order storage classes as
    // comparisons do); several: the ends of the ordered rows.
    let (count, bound_first, bound_next) = if let [(k, _)] = spec.key.as_slice() {
        let bound = |op: &str| {
            format!(
                "SELECT count(*), json_array(min(b.k)), json_array(max(b.k)) \
                 FROM (SELECT {k} AS k FROM {t} WHERE {pred} AND {k} {op} {} AND {k} <= {} ORDER BY {k} LIMIT ?3) b",
                key.param(2),
                key.param(4)
            )
        };
        (
            format!("SELECT count(*), json_array(min({k})), json_array(max({k})) FROM {t} WHERE {pred}"),
            bound(">="),
            bound(">"),
        )
    } else {
        let end = |from: &str, desc| {
            format!(
                "(SELECT {} FROM {from} ORDER BY {} LIMIT 1)",
                key.text(),
                key.order(desc)
            )
        };
        let eligible = format!("{t} WHERE {pred}");
        let bound = |op: &str| {
            format!(
                "WITH b AS MATERIALIZED (SELECT {} FROM {t} WHERE {pred} AND {kt} {op} {} AND {kt} <= {} ORDER BY {} LIMIT ?3) \
                 SELECT (SELECT count(*) FROM b), {}, {}",
                key.cols().join(", "),
                key.param(2),
                key.param(4),
                key.order(false),
                end("b", false),
                end("b", true)
            )
        };
        (
            format!(
                "SELECT count(*), {}, {} FROM {t} WHERE {pred}",
                end(&eligible, false),
                end(&eligible, true)
            ),
            bound(">="),
            bound(">"),
        )
    };
    let mut create_archive = vec![];
    let mut copy = None;
    let delete = format!("DELETE FROM {t} WHERE {pred}{range}");
    let delete = match &spec.archive {
        Some(ArchiveSpec::Table { name, exists }) => {
            if !exists {
                let mut defs: Vec<String> = spec.columns.iter().map(|(c, ty)| format!("{c} {ty}")).collect();
                let pk = if spec.primary_key.is_empty() && kt != "rowid" {
                    key.cols().iter().map(|c| c.to_string()).collect()
                } else {
                    spec.primary_key.clone()
                };
                if !pk.is_empty() {
                    defs.push(format!("PRIMARY KEY ({})", pk.join(", ")));
                }
                create_archive.push(format!("CREATE TABLE {name} ({})", defs.join(", ")));
            }
            copy = Some(format!(
                "INSERT INTO {name} ({cols}) SELECT {cols} FROM {t} WHERE {pred}{range}"
            ));
            delete
        }
        // The rows the delete really removed, for the file (a row a
        // trigger kept is not written).
        Some(ArchiveSpec::File { .. }) => {
            let fields = spec
                .columns
                .iter()
                .map(|(c, _)| format!("'{}', {c}", c.trim_matches('"').replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(", ");
            format!("{delete} RETURNING {}, json_object({fields})", key.file_key())
        }
        None => delete,
    };
    RetentionSql {
        create_archive,
        count,
        batch: BatchSql::Ranged {
            bound_first,
            bound_next,
            copy,
            delete,
        },
        cascades: super::cascade_counts(spec, t, &pred, &range),
    }
}

/// One batch in one `BEGIN IMMEDIATE` transaction with its journal row.
pub async fn retention_batch(
    c: &mut SqliteConnection,
    work: &RetentionWork,
    at: BatchAt<'_>,
    journal: &BatchJournal,
    archive_file: Option<&mut ArchiveFile>,
) -> Result<BatchDone, DbError> {
    let BatchAt::Ranged(keys) = at else {
        return Err(DbError::other("key windows are a PostgreSQL batch style"));
    };
    let mut tx = c.begin_with("BEGIN IMMEDIATE").await?;
    let result = batch_in(&mut tx, work, keys, journal, archive_file).await;
    super::settle(tx, result).await
}

async fn batch_in(
    c: &mut SqliteConnection,
    work: &RetentionWork,
    keys: Keys<'_>,
    journal: &BatchJournal,
    archive_file: Option<&mut ArchiveFile>,
) -> Result<BatchDone, DbError> {
    let BatchSql::Ranged {
        bound_first,
        bound_next,
        copy,
        delete,
    } = &work.batch
    else {
        return Err(DbError::other("a SQLite retention step needs ranged batches"));
    };
    let done = ranged_batch!(c, work, keys, archive_file, bound_first, bound_next, copy, delete)?;
    if done.rows == 0 {
        return Ok(done);
    }
    sqlx::query("INSERT INTO dbmaint_batches (run_id, step, batch_no, last_key, rows) VALUES (?, ?, ?, ?, ?)")
        .bind(journal.run_id)
        .bind(&journal.step)
        .bind(journal.batch_no as i64)
        .bind(&done.last_key)
        .bind(done.rows as i64)
        .execute(&mut *c)
        .await?;
    for (cc, n) in work.cascades.iter().zip(&done.cascaded).filter(|(_, n)| **n > 0) {
        sqlx::query(
            "INSERT INTO dbmaint_cascades (run_id, step, batch_no, foreign_key, on_delete, rows) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(journal.run_id)
        .bind(&journal.step)
        .bind(journal.batch_no as i64)
        .bind(&cc.foreign_key)
        .bind(&cc.on_delete)
        .bind(*n as i64)
        .execute(&mut *c)
        .await?;
    }
    Ok(done)
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

pub async fn history(c: &mut SqliteConnection, run: Option<i64>, limit: u64) -> Result<serde_json::Value, DbError> {
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
           'steps', (SELECT json_group_array(json_object('step', s.step, 'op', s.op, 'status', s.status, \
                'started_at', s.started_at, 'finished_at', s.finished_at, 'rows', s.rows, 'bytes', s.bytes, \
                'statements', s.statements, 'error', s.error, 'rolled_back', s.rolled_back, \
                'batches', (SELECT count(*) FROM dbmaint_batches b WHERE b.run_id = s.run_id AND b.step = s.step))) \
              FROM (SELECT * FROM dbmaint_steps WHERE run_id = r.id ORDER BY started_at IS NULL, started_at, step) s)) \
         FROM dbmaint_runs r WHERE (?1 IS NULL OR id = ?1) ORDER BY id DESC LIMIT ?2",
    )
    .bind(run)
    .bind(limit as i64)
    .fetch_all(c)
    .await?;
    let runs: Vec<serde_json::Value> = runs.iter().filter_map(|r| serde_json::from_str(r).ok()).collect();
    Ok(serde_json::json!({ "runs": runs }))
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
pub async fn vacuum_into(c: &mut SqliteConnection, path: &str) -> Result<(), DbError> {
    sqlx::query("VACUUM INTO ?").bind(path).execute(c).await?;
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

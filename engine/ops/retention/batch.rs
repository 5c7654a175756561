//! Running a retention step's statements: the eligible count and key span
//! when it starts, the first key and next key of a key-window walk, one
//! batch in one transaction with its journal row, and the probe's
//! per-foreign-key counts. The ranged batch and the counts are one text for
//! both backends, over `db::query`; key windows are PostgreSQL's (`pg.rs`).

use super::archive::ArchiveFile;
use super::facts::{ChildCount, RetentionProbe};
use super::work::{BatchSql, RetentionWork};
use crate::db::query::{Exec, query};
use crate::db::{BatchJournal, Conn, DbError};

/// The next retention batch of a ranged walk: the eligible rows with a key
/// from `from` (inclusive for the first batch, exclusive after) up to `to`,
/// the last eligible key counted when the step began, at most `limit`. The
/// upper bound ends the walk at the key span's end instead of reading the
/// rest of the key index for rows that are not there; keys are text in the
/// backend's key form (see `work::RetentionWork::count`). The LIMIT is a
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

/// A probe's per-foreign-key counts: the referencing rows of every key,
/// and for an acting self-reference the ones not eligible themselves.
/// `pred` is the step's predicate; each count binds `bind` when given
/// (SQLite's cutoff; PostgreSQL's predicate carries it as a literal).
pub(super) async fn child_counts(
    c: &mut impl Exec,
    p: &RetentionProbe,
    pred: &str,
    bind: Option<&str>,
) -> Result<Vec<ChildCount>, DbError> {
    // With `on_cascade: allow` the children are counted against the rows
    // the step deletes: the guard (keys that block) applied.
    let child_pred = match (&p.guard_sql, p.cascade) {
        (Some(g), true) => format!("{pred} AND {g}"),
        _ => pred.to_string(),
    };
    let with = |q: String| match bind {
        Some(b) => query(q).bind(b),
        None => query(q),
    };
    let mut children = vec![];
    for ch in &p.children {
        let n: i64 = with(super::sql::child_count_sql(ch, &p.table, &child_pred))
            .scalar(&mut *c)
            .await?;
        let outside: i64 = if ch.self_ref && ch.on_delete.acts() && ch.via.is_empty() {
            with(super::sql::outside_count_sql(ch, &p.table, pred))
                .scalar(&mut *c)
                .await?
        } else {
            0
        };
        children.push(ChildCount {
            label: ch.label.clone(),
            on_delete: ch.on_delete,
            rows: n.max(0) as u64,
            outside: outside.max(0) as u64,
            depth: ch.via.len() + 1,
            cycle: ch.cycle,
        });
    }
    Ok(children)
}

/// A ranged batch, inside the caller's transaction: the batch's key range
/// (`bound_first` or `bound_next`, binding cutoff, from, limit, to), the
/// copy into an archive table (SQLite), then the delete — which, with a
/// file archive, returns each deleted row's (key, JSON) so that exactly the
/// rows deleted are appended and fsynced before the caller commits. The
/// caller writes the journal row and commits.
pub(super) async fn ranged_batch(
    c: &mut impl Exec,
    work: &RetentionWork,
    keys: Keys<'_>,
    archive_file: Option<&mut ArchiveFile>,
) -> Result<BatchDone, DbError> {
    let BatchSql::Ranged {
        bound_first,
        bound_next,
        copy,
        delete,
    } = &work.batch
    else {
        return Err(DbError::other("a windowed step takes key windows, not ranged batches"));
    };
    let nothing = BatchDone {
        rows: 0,
        selected: 0,
        last_key: None,
        cascaded: vec![],
    };
    let bound = if keys.inclusive { bound_first } else { bound_next };
    let row = query(bound.clone())
        .bind(&work.cutoff)
        .bind(keys.from)
        .bind(keys.limit as i64)
        .bind(keys.to)
        .fetch_one(&mut *c)
        .await?;
    let selected = row.get::<i64>(0)?.max(0) as u64;
    if selected == 0 {
        return Ok(nothing);
    }
    let (Some(lo), Some(hi)) = (row.get::<Option<String>>(1)?, row.get::<Option<String>>(2)?) else {
        return Ok(nothing);
    };
    let in_range = |q: &String| query(q.clone()).bind(&work.cutoff).bind(&lo).bind(&hi);
    let mut cascaded = vec![];
    for cc in &work.cascades {
        let n: i64 = in_range(&cc.count).scalar(&mut *c).await?;
        cascaded.push(n.max(0) as u64);
    }
    let copied = match copy {
        Some(q) => Some(in_range(q).execute(&mut *c).await?),
        None => None,
    };
    let deleted = match archive_file {
        Some(file) => {
            let lines: Vec<(String, String)> = in_range(delete).fetch_all_as(&mut *c).await?;
            file.append(&lines).map_err(|e| DbError::other(e.to_string()))?;
            lines.len() as u64
        }
        None => in_range(delete).execute(&mut *c).await?,
    };
    // A copy made before the delete must hold exactly the rows deleted; a
    // row the delete kept would be in both places.
    if let Some(copied) = copied
        && copied != deleted
    {
        return Err(DbError::other(format!(
            "the batch copied {copied} rows into the archive table but deleted {deleted}: \
             something kept rows from the delete (a BEFORE DELETE trigger? see the diff); rolled back"
        )));
    }
    Ok(BatchDone {
        rows: deleted,
        selected,
        last_key: Some(hi),
        cascaded,
    })
}

/// One ranged batch in one writing transaction with its journal rows: the
/// batch and its journal row commit together or not at all (safety.md
/// rules 5 and 6).
pub(super) async fn ranged_in_tx(
    c: &mut Conn,
    work: &RetentionWork,
    keys: Keys<'_>,
    journal: &BatchJournal,
    archive_file: Option<&mut ArchiveFile>,
) -> Result<BatchDone, DbError> {
    let backend = c.backend();
    let mut tx = c.begin().await?;
    let result = async {
        let done = ranged_batch(&mut tx, work, keys, archive_file).await?;
        if done.rows > 0 {
            let mut sql =
                crate::db::journal_batch_sql(backend, journal, done.last_key.as_deref().unwrap_or(""), done.rows);
            for (cc, n) in work.cascades.iter().zip(&done.cascaded).filter(|(_, n)| **n > 0) {
                sql.push_str(&crate::db::journal_cascade_sql(
                    backend,
                    journal,
                    &cc.foreign_key,
                    &cc.on_delete,
                    *n,
                ));
            }
            crate::db::query::execute_raw(&mut tx, &sql).await?;
        }
        Ok(done)
    }
    .await;
    tx.settle(result).await
}

/// The first existing key after `after`, for a windowed walk to jump over
/// a run of empty windows (sparse keys: 1, 10¹², 2·10¹²).
pub async fn next_key(c: &mut Conn, next_key: &str, after: i64) -> Result<Option<i64>, DbError> {
    query(next_key.to_string()).bind(after).scalar(c).await
}

/// A windowed walk's first eligible key (`BatchSql::Window::first_key`).
pub async fn first_key(c: &mut Conn, work: &RetentionWork) -> Result<Option<i64>, DbError> {
    let BatchSql::Window { first_key, .. } = &work.batch else {
        return Err(DbError::other("key windows are a PostgreSQL batch style"));
    };
    query(first_key.clone()).bind(&work.cutoff).scalar(c).await
}

/// The rows a retention step may remove when it starts, with the first and
/// last of their keys: the span the walk covers.
pub async fn count(c: &mut Conn, work: &RetentionWork) -> Result<Eligible, DbError> {
    let (n, first, last): (i64, Option<String>, Option<String>) =
        query(work.count.clone()).bind(&work.cutoff).fetch_one_as(c).await?;
    Ok(Eligible {
        rows: n.max(0) as u64,
        span: first.zip(last),
    })
}

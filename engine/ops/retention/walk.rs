//! Running a retention step: the walk over the eligible rows' key span,
//! batch by batch, each in its own transaction with its journal row. A
//! ranged walk counts the span first; a key-window walk (PostgreSQL, one
//! integer key) starts at the first eligible key and reads the span's end
//! on a second session beside the first windows. Rows a batch selected but
//! did not delete make the step `partial`.

use std::time::{Duration, Instant};

use super::Retention;
use super::archive::ArchiveFile;
use super::batch::{self, BatchAt, Eligible, Keys, Window};
use super::work::{ArchiveTo, BatchSql, RetentionWork};
use crate::db::{BatchJournal, DbError, connect};
use crate::plan::op::OpParams;
use crate::plan::values::Backend;
use crate::run::events::Event;
use crate::run::execplan::PlannedStep;
use crate::run::operation::StepDrift;
use crate::run::steprun::{StepErr, StepRun};
use crate::run::throttle::Throttle;

/// Runs one table's retention walk (SQLite `sqlite_foreign_keys: off`
/// around it).
pub(super) async fn retention(run: &mut StepRun<'_>, work: &RetentionWork) -> Result<(), StepErr> {
    if !work.foreign_keys_off {
        return retention_walk(run, work).await;
    }
    // SQLite reads the pragma per connection and only outside a
    // transaction: off for this step's batches, on again after them.
    run.session()
        .await?
        .execute("PRAGMA foreign_keys = OFF")
        .await
        .map_err(|e| StepErr::failed(format!("turning SQLite foreign keys off: {}", e.message)))?;
    let result = retention_walk(run, work).await;
    if let Ok(c) = run.session().await {
        let _ = c.execute("PRAGMA foreign_keys = ON").await;
    }
    result
}

async fn retention_walk(run: &mut StepRun<'_>, work: &RetentionWork) -> Result<(), StepErr> {
    if !work.create_archive.is_empty() {
        run.transaction(&work.create_archive)
            .await
            .map_err(|e| StepErr::failed(format!("creating the archive table: {}", e.message)))?;
        run.result().statements += work.create_archive.len() as u64;
    }
    let mut file = match &work.archive {
        Some(ArchiveTo::File { path }) => {
            let f = ArchiveFile::open(std::path::Path::new(path), work.batch_size as usize)
                .map_err(|e| StepErr::failed(e.to_string()))?;
            if f.repaired_bytes > 0 {
                run.undone(format!(
                    "cut a torn last line ({} bytes) an interrupted run left in `{path}`",
                    f.repaired_bytes
                ));
            }
            Some(f)
        }
        _ => None,
    };
    // The walk covers the eligible rows' key span whole, whatever rows it
    // deletes on the way. A ranged walk counts them and reads the span
    // first; a key-window walk starts at the first eligible key at once
    // and learns the span's end from a second session reading it beside
    // the first windows (the pass a DBA's loop waits for up front).
    let mut span_read: Option<tokio::task::JoinHandle<Result<Eligible, DbError>>> = None;
    let (mut walk, first, last, eligible_rows) = match &work.batch {
        BatchSql::Window { statement, .. } => {
            let first = match batch::first_key(run.session().await?, work).await {
                Ok(Some(k)) => k,
                Ok(None) => return Ok(()),
                Err(e) => {
                    return Err(StepErr::failed(format!(
                        "finding the first eligible key: {}",
                        e.message
                    )));
                }
            };
            run.result().statements += 1;
            let (target, limits, span_work) = (run.target().clone(), run.session_limits(), work.clone());
            span_read = Some(tokio::spawn(async move {
                let mut s = connect(&target, limits).await?;
                // One core: the windows' deletes keep the others (a
                // parallel read here took them from the deletes).
                s.execute("SET max_parallel_workers_per_gather = 0").await?;
                batch::count(&mut s, &span_work).await
            }));
            prepare_window(run.session().await?, statement)
                .await
                .map_err(|e| StepErr::failed(format!("preparing the batch statement: {}", e.message)))?;
            run.result().statements += 1;
            // An unfinished earlier run: go on after its last committed key
            // first, then walk the keys before it (rows there may have
            // become eligible, or been kept); every key is still walked.
            let (step_id, run_id) = (run.step.id.clone(), run.run_id());
            let resume = match run.session().await?.journal_resume_key(&step_id, run_id).await {
                Ok(k) => k.and_then(|k| k.parse::<i64>().ok()).filter(|r| *r >= first),
                Err(_) => None,
            };
            let walk = match resume {
                Some(r) => {
                    run.warn(format!(
                        "resuming after key {r}, the last batch an unfinished earlier run committed; \
                         keys {first}..={r} are walked after the rest"
                    ));
                    Walk::Window {
                        next: r.checked_add(1),
                        last: None,
                        then: Some((first, r)),
                    }
                }
                None => Walk::Window {
                    next: Some(first),
                    last: None,
                    then: None,
                },
            };
            (walk, String::new(), String::new(), work.planned_rows)
        }
        BatchSql::Ranged { .. } => {
            let counted = crate::with_retries!(run, None, |c, _| batch::count(c, work).await);
            let eligible = match counted {
                Ok(e) => e,
                Err(e) => return Err(StepErr::failed(format!("counting the eligible rows: {}", e.message))),
            };
            run.result().statements += 1;
            let Some((first, last)) = eligible.span.filter(|_| eligible.rows > 0) else {
                return Ok(());
            };
            (Walk::Ranged { after: None }, first, last, eligible.rows)
        }
    };
    let result = walk_batches(run, work, &mut walk, &first, &last, &mut span_read, file.as_mut()).await;
    if let Some(h) = span_read {
        if result.is_ok() {
            // The walk reached the last key before the span read returned
            // (a small table): let it finish rather than cut its session
            // mid-statement, so every statement the diff showed has run
            // and the count of statements is the server's. It started with
            // the walk and is bounded by the step's statement timeout.
            if let Ok(Ok(_)) = h.await {
                run.result().statements += 1;
            }
        } else {
            h.abort();
        }
    }
    let (rows_before, kept) = result?;
    let here = run.result().rows - rows_before;
    if kept > 0 {
        let note = format!(
            "{}: {here} rows deleted, {kept} eligible rows kept (see the batch warnings); {eligible_rows} eligible when counted",
            work.table
        );
        let r = run.result();
        r.partial = Some(match r.partial.take() {
            Some(p) => format!("{p}; {note}"),
            None => note,
        });
    } else if here > eligible_rows {
        run.warn(format!(
            "{here} rows deleted from {}, {} more than were eligible when counted: rows became eligible during the run",
            work.table,
            here - eligible_rows
        ));
    }
    Ok(())
}

/// The batches of one walk; returns the step's row count before it and the
/// eligible rows the batches kept.
async fn walk_batches(
    run: &mut StepRun<'_>,
    work: &RetentionWork,
    walk: &mut Walk,
    first: &str,
    last: &str,
    span_read: &mut Option<tokio::task::JoinHandle<Result<Eligible, DbError>>>,
    mut file: Option<&mut ArchiveFile>,
) -> Result<(u64, u64), StepErr> {
    // Pass 1 of a key-window walk ends at the span's end, once known.
    let mut in_pass1 = true;
    let max_rows = work.max_rows.unwrap_or(u64::MAX);
    let rows_before = run.result().rows;
    let mut kept = 0u64;
    let mut throttle = work.throttle.clone().map(Throttle::new);
    loop {
        // The span's end, once the other session has read it.
        if span_read.as_ref().is_some_and(|h| h.is_finished())
            && let Some(h) = span_read.take()
        {
            let read = match h.await {
                Ok(r) => r,
                Err(e) => Err(DbError::other(e.to_string())),
            };
            let read = match read {
                Ok(e) => Ok(e),
                // No second session (max_connections reached, a pooler's
                // limit): read the span on the step's own session instead.
                Err(e) => {
                    run.warn(format!(
                        "reading the key span beside the batches failed ({}); reading it between them instead",
                        e.message
                    ));
                    batch::count(run.session().await?, work).await
                }
            };
            let end = match read {
                Ok(e) => e.span.and_then(|(_, l)| l.parse::<i64>().ok()),
                Err(e) => return Err(StepErr::failed(format!("reading the eligible key span: {}", e.message))),
            };
            run.result().statements += 1;
            if let Walk::Window { next, last, .. } = walk
                && in_pass1
            {
                // No eligible row left (all deleted already) ends pass 1
                // where it is.
                *last = Some(end.unwrap_or(i64::MIN));
                if next.is_some_and(|n| n > last.unwrap_or(i64::MAX)) {
                    *next = None;
                }
            }
        }
        // `max_rows` caps each table's deletes (a step with inheritance
        // children runs one walk per table).
        let room = work
            .batch_size
            .min(max_rows.saturating_sub(run.result().rows - rows_before));
        if room == 0 {
            break; // max_rows reached
        }
        // The end of a resumed walk's first pass: on to the keys before it.
        if let Walk::Window { next, last, then } = walk
            && next.is_none()
            && let Some((from, to)) = then.take()
        {
            *next = Some(from);
            *last = Some(to);
            in_pass1 = false;
        }
        let after = match &*walk {
            Walk::Ranged { after } => after.clone(),
            Walk::Window { .. } => None,
        };
        let at = match &*walk {
            Walk::Window { next: None, .. } => break, // the span is walked
            Walk::Window {
                next: Some(lo), last, ..
            } => {
                let hi = lo.saturating_add(room as i64 - 1);
                BatchAt::Window(Window {
                    lo: *lo,
                    hi: last.map_or(hi, |l| hi.min(l)),
                })
            }
            Walk::Ranged { .. } => BatchAt::Ranged(Keys {
                from: after.as_deref().unwrap_or(first),
                inclusive: after.is_none(),
                to: last,
                limit: room,
            }),
        };
        if run.expired().await {
            let (batches, rows) = (run.result().batches, run.result().rows);
            return Err(StepErr::deferred(format!(
                "{} after {batches} batches ({rows} rows); a rerun continues",
                run.why_stopped()
            )));
        }
        if let Some(t) = throttle.as_mut() {
            t.wait(run).await?;
        }
        let batch_no = run.next_batch();
        let journal = BatchJournal {
            run_id: run.run_id(),
            step: run.step.id.clone(),
            batch_no,
        };
        let t0 = Instant::now();
        let timeout = run.statement_timeout();
        let taken = crate::with_retries!(run, Some(timeout), |c, _| take(
            c,
            work,
            at,
            &journal,
            file.as_deref_mut()
        )
        .await);
        let done = match taken {
            Ok(b) => b,
            Err(e) => {
                let r = run.result();
                r.rolled_back = Some(format!(
                    "batch {batch_no} rolled back: its rows stay in {}{}; {} earlier batches ({} rows) committed and are in the journal",
                    work.table,
                    if work.archive.is_some() {
                        " and none reached the archive"
                    } else {
                        ""
                    },
                    r.batches,
                    r.rows
                ));
                return Err(StepErr::failed(format!("batch {batch_no}: {}", e.message)));
            }
        };
        run.result().statements += 1;
        // Where the next batch starts; `None` ends the walk.
        match (&mut *walk, at) {
            (Walk::Window { next, last, .. }, BatchAt::Window(w)) => {
                *next = match *last {
                    Some(l) if w.hi >= l => None,
                    _ => w.hi.checked_add(1),
                };
                // An empty window: jump to the next key that exists, so a
                // run of empty windows (sparse keys) costs one lookup.
                if done.selected == 0
                    && let Some(from) = *next
                {
                    let sql = next_key_sql(work);
                    let found = crate::with_retries!(run, None, |c, _| batch::next_key(c, sql, from - 1).await);
                    *next = match found {
                        Ok(k) => k.filter(|k| last.is_none_or(|l| *k <= l)),
                        Err(e) => return Err(StepErr::failed(format!("finding the next key: {}", e.message))),
                    };
                    run.result().statements += 1;
                }
            }
            (Walk::Ranged { after }, _) => {
                if done.selected == 0 || done.last_key.is_none() {
                    break; // no eligible key left in the span
                }
                *after = done.last_key.clone();
            }
            _ => {}
        }
        if done.selected == 0 {
            continue; // an empty window: on to the next, no pause
        }
        if done.selected > done.rows {
            let n = done.selected - done.rows;
            kept += n;
            run.warn(format!(
                "batch {batch_no}: {} eligible rows selected, {} deleted: {n} kept by something on {} \
                 (a DELETE trigger, a row-level security policy, a concurrent change)",
                done.selected, done.rows, work.table
            ));
        }
        for (i, n) in done.cascaded.iter().enumerate() {
            if let Some(cc) = work.cascades.get(i) {
                let r = run.result();
                match r.cascaded.iter_mut().find(|d| d.foreign_key == cc.foreign_key) {
                    Some(d) => d.rows += n,
                    None => r.cascaded.push(crate::run::events::Cascaded {
                        foreign_key: cc.foreign_key.clone(),
                        on_delete: cc.on_delete.clone(),
                        rows: *n,
                    }),
                }
            }
        }
        if done.rows > 0 {
            let r = run.result();
            r.rows += done.rows;
            // Each batch copies to the archive exactly the rows it deletes
            // (one statement on PostgreSQL, a checked copy on SQLite, the
            // delete's RETURNING rows to the file), or rolls back.
            if work.archive.is_some() {
                r.archived += done.rows;
            }
            r.batches += 1;
            let rows_total = r.rows;
            run.emit(Event::BatchDone {
                step: run.step.id.clone(),
                batch: batch_no,
                rows: done.rows,
                rows_total,
                duration_ms: t0.elapsed().as_millis() as u64,
            });
        }
        if work.pause_ms > 0 {
            tokio::time::sleep(Duration::from_millis(work.pause_ms)).await;
        }
    }
    Ok((rows_before, kept))
}

/// A windowed step's next-key statement.
fn next_key_sql(work: &RetentionWork) -> &str {
    match &work.batch {
        BatchSql::Window { next_key, .. } => next_key,
        BatchSql::Ranged { .. } => "",
    }
}

/// How a retention step walks the key span of its eligible rows.
#[derive(Debug, Clone)]
enum Walk {
    /// LIMIT batches; `after` is the last key of the batch before (none
    /// before the first).
    Ranged { after: Option<String> },
    /// Key windows; `next` is the next window's first key, `None` once the
    /// window holding `last` is done (overflow-safe at the type's maximum);
    /// `last` is unknown (`None`) until the span read returns; `then`, a
    /// resumed walk's second pass over the keys before it.
    Window {
        next: Option<i64>,
        last: Option<i64>,
        then: Option<(i64, i64)>,
    },
}

/// Takes one retention batch in one transaction, with its journal row.
/// `archive_file` receives the rows of a file archive before the delete.
pub async fn take(
    c: &mut crate::db::Conn,
    work: &RetentionWork,
    at: BatchAt<'_>,
    journal: &BatchJournal,
    archive_file: Option<&mut ArchiveFile>,
) -> Result<batch::BatchDone, DbError> {
    match at {
        BatchAt::Window(w) if c.backend() == Backend::Postgres => super::pg::window_batch(c, work, w, journal).await,
        BatchAt::Window(_) => Err(DbError::other("key windows are a PostgreSQL batch style")),
        BatchAt::Ranged(keys) => batch::ranged_in_tx(c, work, keys, journal, archive_file).await,
    }
}

/// Prepares a windowed retention step's statement on this session.
pub async fn prepare_window(c: &mut crate::db::Conn, statement: &str) -> Result<(), DbError> {
    match c.backend() {
        Backend::Postgres => super::pg::prepare_window(c, statement).await,
        Backend::Sqlite => Err(DbError::other("key windows are a PostgreSQL batch style")),
    }
}

/// Runs retention work, one table's walk per action.
#[derive(Debug)]
pub struct Run;

impl crate::run::operation::Executes for Run {
    fn key(&self) -> &'static str {
        <Retention as OpParams>::KEY
    }

    fn execute<'a, 'r: 'a>(
        &'a self,
        work: &'a serde_json::Value,
        run: &'a mut StepRun<'r>,
    ) -> futures_util::future::BoxFuture<'a, Result<(), StepErr>> {
        Box::pin(async move {
            let w: RetentionWork = crate::run::operation::decode_work(self.key(), work)?;
            retention(run, &w).await
        })
    }

    /// Besides other statements: more rows than reviewed, or other rows
    /// (the eligible keys' digest), are row drift `--accept-drift` may
    /// accept.
    fn drift(&self, s: &PlannedStep, f: &PlannedStep) -> StepDrift {
        let mut d = crate::run::operation::default_drift(s, f);
        if f.estimate.rows > s.estimate.rows {
            d.rows.push(format!(
                "step `{}` would now remove {} rows, {} more than the {} reviewed",
                s.id,
                f.estimate.rows,
                f.estimate.rows - s.estimate.rows,
                s.estimate.rows
            ));
        }
        let digest = |p: &PlannedStep| {
            p.actions
                .iter()
                .find_map(|a| a.work::<RetentionWork>(<Retention as OpParams>::KEY))
                .and_then(|w| w.eligible_digest)
        };
        if let (Some(then), Some(now)) = (digest(s), digest(f))
            && let Some(c) = then.change_to(&now)
            && f.estimate.rows <= s.estimate.rows
        {
            d.rows.push(format!(
                "step `{}` would now take other rows than were reviewed: {} rows eligible then, {} now; \
                 at least {} left the set and {} joined it",
                s.id, then.rows, now.rows, c.left, c.joined
            ));
        }
        d
    }
}

//! Running `reindex` work: one index rebuild, journaled before it starts
//! when concurrent, its failed attempt's INVALID copy dropped before the
//! next attempt (safety.md rule 7), its success checked in the catalog;
//! and the drop of leftovers earlier runs' interrupted rebuilds left.

use serde::{Deserialize, Serialize};

use super::pg;
use crate::db::{Conn, DbError, quote_name};
use crate::plan::values::Backend;
use crate::run::events::StepResult;
use crate::run::steprun::{StepErr, StepRun};

/// One index to rebuild.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReindexWork {
    pub schema: String,
    pub table: String,
    pub index: String,
    pub sql: String,
    pub concurrently: bool,
}

/// What a `reindex` action does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum Work {
    Rebuild(ReindexWork),
    /// INVALID indexes the engine's interrupted rebuilds left, dropped
    /// concurrently, then their journal records closed.
    DropLeftovers {
        /// (schema, index name).
        indexes: Vec<(String, String)>,
        records: Vec<i64>,
    },
}

/// Rebuilds one index. Success is checked in the catalog, not taken from
/// the server's silence: the index must be valid and ready, on new storage
/// (a rebuild the server skipped with a WARNING or NOTICE leaves the old
/// storage, and fails the step).
pub(super) async fn rebuild(run: &mut StepRun<'_>, work: &ReindexWork) -> Result<(), StepErr> {
    let name = format!("{}.{}", work.schema, work.index);
    let timeout = run.statement_timeout();
    if run.session().await?.backend() != Backend::Postgres {
        run.exec(&work.sql)
            .await
            .map_err(|e| StepErr::failed(format!("`{name}`: {}", e.message)))?;
        run.result().statements += 1;
        run.object_done(name);
        return Ok(());
    }
    let failed = |e: DbError| StepErr::failed(format!("`{name}`: {}", e.message));
    let (run_id, step_id) = (run.run_id(), run.step.id.clone());
    let c = run.session().await?;
    let before = pg::index_state(c, &work.schema, &work.index)
        .await
        .map_err(failed)?
        .ok_or_else(|| StepErr::failed(format!("`{name}` no longer exists")))?;
    let record = if work.concurrently {
        let invalid = pg::invalid_indexes(c, &work.schema, &work.table)
            .await
            .map_err(failed)?;
        let id = pg::rebuild_started(c, run_id, &step_id, &work.schema, &work.table, &work.index, &invalid)
            .await
            .map_err(failed)?;
        Some((id, invalid))
    } else {
        None
    };
    let invalid_before = record.as_ref().map(|(_, b)| b.as_slice());
    let result = crate::with_retries!(
        run,
        Some(timeout),
        |c, r| match (c.execute(&work.sql).await, invalid_before) {
            (Ok(_), _) => Ok(()),
            (Err(e), Some(before)) => Err(drop_failed_copies(c, work, before, r, e).await),
            (Err(e), None) => Err(e),
        }
    );
    run.result().statements += 1;
    let c = run.session().await?;
    let verified = match result {
        Ok(()) => match pg::index_state(c, &work.schema, &work.index).await {
            Ok(Some((true, node, bytes))) if node != before.1 => Ok(bytes),
            Ok(Some((true, _, _))) => Err(format!(
                "`{name}`: the server did not rebuild it (its storage is unchanged): nothing was done"
            )),
            Ok(Some((false, _, _))) => Err(format!("`{name}` is not valid after its rebuild")),
            Ok(None) => Err(format!("`{name}` is gone after its rebuild")),
            Err(e) => Err(format!("`{name}`: checking the rebuilt index: {}", e.message)),
        },
        Err(e) => Err(format!("`{name}`: {}", e.message)),
    };
    // A record stays open only when a leftover could not be dropped: the
    // next run's inspection finds it and drops it.
    if let Some((id, _)) = &record {
        let cleanup_failed = run.result().cleanup_failed.is_some();
        if !cleanup_failed {
            let outcome = if verified.is_ok() {
                "rebuilt"
            } else {
                "failed; leftovers dropped"
            };
            let _ = pg::rebuilds_finished(run.session().await?, &[*id], outcome).await;
        }
    }
    let after = verified.map_err(StepErr::failed)?;
    run.result().bytes += (before.2.max(0) as u64).saturating_sub(after.max(0) as u64);
    run.object_done(name);
    Ok(())
}

/// After a failed concurrent rebuild: drops the INVALID copies it left
/// (those not in `before`), and says so in the step's result; returns the
/// error to report, no longer retryable when the drop itself failed.
async fn drop_failed_copies(
    c: &mut Conn,
    work: &ReindexWork,
    before: &[String],
    r: &mut StepResult,
    e: DbError,
) -> DbError {
    if c.backend() != Backend::Postgres {
        return e;
    }
    let left = match pg::leftovers_since(c, &work.schema, &work.table, before).await {
        Ok(left) => left,
        Err(e2) => {
            r.cleanup_failed = Some(format!(
                "could not list the INVALID indexes the failed rebuild of {}.{} left on {}.{} ({}): \
                 the next run drops them, from the journal",
                work.schema, work.index, work.schema, work.table, e2.message
            ));
            return DbError::other(e.message);
        }
    };
    if left.is_empty() {
        return e;
    }
    match pg::drop_concurrently(c, &work.schema, &left).await {
        Ok(()) => {
            let dropped = format!("dropped the INVALID index {} the failed rebuild left", left.join(", "));
            r.rolled_back = Some(match r.rolled_back.take() {
                Some(earlier) => format!("{earlier}; {dropped}"),
                None => dropped,
            });
            e
        }
        Err((index, e2)) => {
            r.cleanup_failed = Some(format!(
                "INVALID index {}.{index} is left on {}.{} (dropping it failed: {}): the next run drops it, \
                 or run DROP INDEX CONCURRENTLY {}",
                work.schema,
                work.schema,
                work.table,
                e2.message,
                quote_name(Some(&work.schema), &index)
            ));
            DbError::other(e.message)
        }
    }
}

/// Drops the INVALID leftovers of earlier runs' rebuilds and closes their
/// journal records.
pub(super) async fn drop_leftovers(
    run: &mut StepRun<'_>,
    indexes: &[(String, String)],
    records: &[i64],
) -> Result<(), StepErr> {
    let mut dropped = vec![];
    for (schema, name) in indexes {
        let sql = format!("DROP INDEX CONCURRENTLY IF EXISTS {}", quote_name(Some(schema), name));
        if let Err(e) = run.exec(&sql).await {
            run.result().cleanup_failed = Some(format!(
                "INVALID index {schema}.{name}, left by an interrupted rebuild, is still there ({}): \
                 run `{sql}` when nothing holds the table",
                e.message
            ));
            return Err(StepErr::failed(format!("dropping {schema}.{name}: {}", e.message)));
        }
        run.result().statements += 1;
        dropped.push(format!("{schema}.{name}"));
    }
    let c = run.session().await?;
    if c.backend() == Backend::Postgres {
        pg::rebuilds_finished(c, records, "leftovers dropped by a later run")
            .await
            .map_err(|e| StepErr::failed(format!("closing the rebuild journal: {}", e.message)))?;
    }
    if !dropped.is_empty() {
        run.undone(format!(
            "dropped {}, left INVALID by an interrupted rebuild of an earlier run",
            dropped.join(", ")
        ));
    }
    Ok(())
}

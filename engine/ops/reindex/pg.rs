//! PostgreSQL `REINDEX INDEX CONCURRENTLY` bookkeeping (safety.md rule 7).
//!
//! A concurrent rebuild is not transactional: when it fails or its session
//! dies it leaves an INVALID index behind, named `<index>_ccnew[N]` (the
//! new copy, before the swap) or `<index>_ccold[N]` (the old one, after
//! it). Such names are not proof of ownership — a person's own failed
//! rebuild leaves the same — so before each rebuild the engine records, in
//! `dbmaint.rebuilds` and committed, the table and the INVALID indexes it
//! already had. An INVALID `_ccnew`/`_ccold` index of that table that is
//! not in the record is the engine's, and only those are ever dropped: at
//! once after a failure, or by the next run when the engine was killed.

use crate::db::query::{Exec, execute_raw, query};
use crate::db::{DbError, quote_name};
use crate::ops::reindex::Leftover;

/// Names of the INVALID (or not ready) indexes of a table.
pub async fn invalid_indexes(c: &mut impl Exec, schema: &str, table: &str) -> Result<Vec<String>, DbError> {
    query(
        "SELECT i.relname::text FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
         JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE n.nspname = $1 AND t.relname = $2 AND NOT (x.indisvalid AND x.indisready) ORDER BY 1",
    )
    .bind(schema)
    .bind(table)
    .scalars(c)
    .await
}

/// True for the names `REINDEX … CONCURRENTLY` gives its transient copies.
pub fn transient_name(name: &str) -> bool {
    ["_ccnew", "_ccold"].iter().any(|suffix| {
        name.rfind(suffix)
            .is_some_and(|at| name[at + suffix.len()..].chars().all(|c| c.is_ascii_digit()))
    })
}

/// The engine's leftovers on a table: INVALID transient copies that were
/// not there when the rebuild began.
pub async fn leftovers_since(
    c: &mut impl Exec,
    schema: &str,
    table: &str,
    before: &[String],
) -> Result<Vec<String>, DbError> {
    Ok(invalid_indexes(c, schema, table)
        .await?
        .into_iter()
        .filter(|n| transient_name(n) && !before.contains(n))
        .collect())
}

/// Journals a rebuild before it starts (committed at once, so a killed
/// engine's next run finds it); returns the record's id.
pub async fn rebuild_started(
    c: &mut impl Exec,
    run_id: i64,
    step: &str,
    schema: &str,
    table: &str,
    index: &str,
    before: &[String],
) -> Result<i64, DbError> {
    query(
        "INSERT INTO dbmaint.rebuilds (run_id, step, schema_name, table_name, index_name, invalid_before) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(run_id)
    .bind(step)
    .bind(schema)
    .bind(table)
    .bind(index)
    .bind(before)
    .scalar(c)
    .await
}

/// This run's open record of its rebuild of `schema.index` by `step`:
/// `(id, invalid_before)`.
pub async fn open_rebuild(
    c: &mut impl Exec,
    run_id: i64,
    step: &str,
    schema: &str,
    index: &str,
) -> Result<Option<(i64, Vec<String>)>, DbError> {
    query(
        "SELECT id, invalid_before FROM dbmaint.rebuilds WHERE run_id = $1 AND step = $2 \
         AND schema_name = $3 AND index_name = $4 AND finished_at IS NULL ORDER BY id DESC LIMIT 1",
    )
    .bind(run_id)
    .bind(step)
    .bind(schema)
    .bind(index)
    .fetch_optional_as(c)
    .await
}

/// Closes rebuild records: nothing of theirs is left to clean.
pub async fn rebuilds_finished(c: &mut impl Exec, ids: &[i64], outcome: &str) -> Result<(), DbError> {
    query("UPDATE dbmaint.rebuilds SET finished_at = clock_timestamp(), outcome = $2 WHERE id = ANY($1)")
        .bind(ids)
        .bind(outcome)
        .execute(c)
        .await?;
    Ok(())
}

/// `(valid and ready, relfilenode, bytes)` of an index, `None` when gone.
pub async fn index_state(c: &mut impl Exec, schema: &str, index: &str) -> Result<Option<(bool, i64, i64)>, DbError> {
    query(
        "SELECT x.indisvalid AND x.indisready, pg_relation_filenode(x.indexrelid)::int8, \
           pg_relation_size(x.indexrelid)::int8 \
         FROM pg_index x WHERE x.indexrelid = to_regclass($1)",
    )
    .bind(quote_name(Some(schema), index))
    .fetch_optional_as(c)
    .await
}

/// Drops the named indexes of `schema` concurrently, one statement each;
/// stops at the first that fails and says which.
pub async fn drop_concurrently(c: &mut impl Exec, schema: &str, names: &[String]) -> Result<(), (String, DbError)> {
    for n in names {
        let statement = format!("DROP INDEX CONCURRENTLY IF EXISTS {}", quote_name(Some(schema), n));
        if let Err(e) = execute_raw(c, &statement).await {
            return Err((n.clone(), e));
        }
    }
    Ok(())
}

/// Read in the inspection: every unfinished rebuild record and the
/// leftovers it explains now. `Ok(vec![])` when there is no journal yet.
pub async fn open_leftovers(c: &mut impl Exec) -> Result<Vec<Leftover>, DbError> {
    let journal: bool = query("SELECT to_regclass('dbmaint.rebuilds') IS NOT NULL")
        .scalar(&mut *c)
        .await?;
    if !journal {
        return Ok(vec![]);
    }
    type Row = (i64, String, String, String, Vec<String>);
    let open: Vec<Row> = query(
        "SELECT id, schema_name, table_name, index_name, invalid_before FROM dbmaint.rebuilds \
         WHERE finished_at IS NULL ORDER BY id",
    )
    .fetch_all_as(&mut *c)
    .await?;
    let mut out = vec![];
    for (id, schema, table, index, before) in open {
        let names = leftovers_since(c, &schema, &table, &before).await?;
        out.push(Leftover {
            record: id,
            schema,
            table,
            index,
            invalid: names,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::transient_name;

    #[test]
    fn transient_names_are_recognised() {
        assert!(transient_name("orders_pkey_ccnew"));
        assert!(transient_name("orders_pkey_ccnew1"));
        assert!(transient_name("orders_pkey_ccold12"));
        assert!(!transient_name("orders_pkey"));
        assert!(!transient_name("orders_ccnew_idx"));
        assert!(!transient_name("orders_pkey_ccnewx"));
    }
}

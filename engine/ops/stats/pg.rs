//! The `stats` report on PostgreSQL: three set-based queries. Sizes of
//! relations another session holds ACCESS EXCLUSIVE on come from
//! `relpages` (see `db::pg::BUSY`), so the report never queues behind a
//! running `VACUUM FULL`.

use super::report::{IndexStats, StatsReport, TableStats};
use crate::db::DbError;
use crate::db::pg::{BUSY, USER_RELATIONS};
use crate::db::query::{Exec, query};

pub async fn stats(c: &mut impl Exec, top: u64) -> Result<StatsReport, DbError> {
    let database_bytes: i64 = query("SELECT pg_database_size(current_database())::int8")
        .scalar(c)
        .await?;
    let tables = query(format!(
        "SELECT n.nspname || '.' || c.relname, \
           CASE WHEN c.oid IN {BUSY} THEN c.relpages::int8 * current_setting('block_size')::int8 \
                ELSE pg_total_relation_size(c.oid)::int8 END AS bytes, \
           CASE WHEN c.reltuples >= 0 THEN c.reltuples::int8 WHEN s.n_live_tup > 0 THEN s.n_live_tup END, \
           coalesce(s.n_dead_tup, 0)::int8, \
           to_char(greatest(s.last_vacuum, s.last_autovacuum) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
           to_char(greatest(s.last_analyze, s.last_autoanalyze) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
           c.reltuples < 0 \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid \
         WHERE c.relkind IN ('r', 'm') AND {USER_RELATIONS} ORDER BY bytes DESC, 1 LIMIT {top}"
    ))
    .fetch_all(c)
    .await?;
    let indexes = query(format!(
        "SELECT n.nspname || '.' || i.relname, t.relname::text, \
           CASE WHEN i.oid IN {BUSY} THEN i.relpages::int8 * current_setting('block_size')::int8 \
                ELSE pg_relation_size(i.oid)::int8 END AS bytes, \
           coalesce(s.idx_scan, 0)::int8 \
         FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = x.indexrelid \
         WHERE {USER_RELATIONS} ORDER BY bytes DESC, 1 LIMIT {top}"
    ))
    .fetch_all(c)
    .await?;
    let count = |v: i64| v.max(0) as u64;
    Ok(StatsReport {
        database_bytes: count(database_bytes),
        tables: tables
            .iter()
            .map(|r| {
                Ok(TableStats {
                    name: r.get(0)?,
                    total_bytes: count(r.get(1)?),
                    rows: r.get::<Option<i64>>(2)?.map(count),
                    dead_tuples: Some(count(r.get(3)?)),
                    last_vacuum: r.get(4)?,
                    last_analyze: r.get(5)?,
                    never_analyzed: r.get(6)?,
                })
            })
            .collect::<Result<_, DbError>>()?,
        indexes: indexes
            .iter()
            .map(|r| {
                Ok(IndexStats {
                    name: r.get(0)?,
                    table: r.get(1)?,
                    bytes: count(r.get(2)?),
                    scans: Some(count(r.get(3)?)),
                })
            })
            .collect::<Result<_, DbError>>()?,
        note: None,
    })
}

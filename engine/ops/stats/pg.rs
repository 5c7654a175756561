//! The `stats` report on PostgreSQL: three set-based queries. Sizes of
//! relations another session holds ACCESS EXCLUSIVE on come from
//! `relpages` (see `db::pg::BUSY`), so the report never queues behind a
//! running `VACUUM FULL`.

use super::report::{IndexStats, StatsReport, TableStats};
use crate::db::DbError;
use crate::db::catalog::Catalog;
use crate::db::pg::{BUSY, USER_RELATIONS};
use crate::db::query::{Exec, query};

/// The report as `plan apply` runs it: sizes measured now.
pub async fn stats(c: &mut impl Exec, top: u64) -> Result<StatsReport, DbError> {
    let database_bytes: i64 = query("SELECT pg_database_size(current_database())::int8")
        .scalar(&mut *c)
        .await?;
    report(c, top, database_bytes.max(0) as u64, None).await
}

/// The report for a diff: the sizes of tables and their indexes, and the
/// database's, are the catalog's (read once per diff: measuring 25,000
/// relations again took 0.5 s); only materialized views and their indexes
/// are measured here.
pub async fn stats_from(c: &mut impl Exec, catalog: &Catalog, top: u64) -> Result<StatsReport, DbError> {
    report(c, top, catalog.database_bytes, Some(catalog)).await
}

/// Sizes come from `known` for the relations it holds (tables and
/// partitioned tables, and their indexes); every other is measured. The
/// top `top` by size are kept, in Rust: the rows themselves are cheap.
async fn report(
    c: &mut impl Exec,
    top: u64,
    database_bytes: u64,
    known: Option<&Catalog>,
) -> Result<StatsReport, DbError> {
    let size = |rel: &str| {
        let measure = format!(
            "CASE WHEN {rel}.oid IN {BUSY} THEN {rel}.relpages::int8 * current_setting('block_size')::int8 \
                  ELSE pg_{}relation_size({rel}.oid)::int8 END",
            if rel == "c" { "total_" } else { "" }
        );
        match known {
            // The catalog holds the sizes of the indexes of ordinary and
            // partitioned tables, and of those tables.
            Some(_) if rel == "i" => format!("CASE WHEN t.relkind IN ('r', 'p') THEN NULL ELSE {measure} END"),
            Some(_) => format!("CASE WHEN c.relkind = 'r' THEN NULL ELSE {measure} END"),
            None => measure,
        }
    };
    let tables = query(format!(
        "SELECT n.nspname::text, c.relname::text, {}, \
           CASE WHEN c.reltuples >= 0 THEN c.reltuples::int8 WHEN s.n_live_tup > 0 THEN s.n_live_tup END, \
           coalesce(s.n_dead_tup, 0)::int8, \
           to_char(greatest(s.last_vacuum, s.last_autovacuum) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
           to_char(greatest(s.last_analyze, s.last_autoanalyze) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
           c.reltuples < 0 \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid \
         WHERE c.relkind IN ('r', 'm') AND {USER_RELATIONS}",
        size("c")
    ))
    .fetch_all(&mut *c)
    .await?;
    let indexes = query(format!(
        "SELECT n.nspname::text, i.relname::text, t.relname::text, {}, pg_stat_get_numscans(i.oid)::int8 \
         FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE {USER_RELATIONS}",
        size("i")
    ))
    .fetch_all(&mut *c)
    .await?;
    let count = |v: i64| v.max(0) as u64;
    // What the catalog measured: `schema.table` → (bytes, index → bytes).
    let measured: std::collections::HashMap<String, (u64, std::collections::HashMap<&str, u64>)> = known
        .map(|cat| {
            cat.tables
                .iter()
                .map(|t| {
                    let indexes = t.indexes.iter().map(|i| (i.name.as_str(), i.bytes)).collect();
                    (format!("{}.{}", t.schema, t.name), (t.total_bytes, indexes))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut tables = tables
        .iter()
        .map(|r| {
            let name = format!("{}.{}", r.get::<String>(0)?, r.get::<String>(1)?);
            let bytes = match r.get::<Option<i64>>(2)? {
                Some(b) => count(b),
                None => measured.get(&name).map_or(0, |m| m.0),
            };
            Ok(TableStats {
                name,
                total_bytes: bytes,
                rows: r.get::<Option<i64>>(3)?.map(count),
                dead_tuples: Some(count(r.get(4)?)),
                last_vacuum: r.get(5)?,
                last_analyze: r.get(6)?,
                never_analyzed: r.get(7)?,
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    let mut indexes = indexes
        .iter()
        .map(|r| {
            let (schema, index, table): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
            let bytes = match r.get::<Option<i64>>(3)? {
                Some(b) => count(b),
                None => measured
                    .get(&format!("{schema}.{table}"))
                    .and_then(|m| m.1.get(index.as_str()).copied())
                    .unwrap_or(0),
            };
            Ok(IndexStats {
                name: format!("{schema}.{index}"),
                table,
                bytes,
                scans: Some(count(r.get(4)?)),
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    // Largest first, then by name (the byte order PostgreSQL's "C" sort gives).
    tables.sort_by(|a, b| b.total_bytes.cmp(&a.total_bytes).then_with(|| a.name.cmp(&b.name)));
    tables.truncate(top as usize);
    indexes.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
    indexes.truncate(top as usize);
    Ok(StatsReport {
        database_bytes,
        tables,
        indexes,
        note: None,
    })
}

//! What `partitions` reads on PostgreSQL: the parent's partitioning (from
//! `pg_partitioned_table`) and each partition with its bound as the server
//! prints it, whether a concurrent detach of it is pending, its row
//! estimate and its size. Bounds come from the catalog, never from names.

use serde::Serialize;

use crate::db::DbError;
use crate::db::pg::BUSY;
use crate::db::query::{Exec, query};

/// A partitioned table as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Partitioned {
    /// `r` range, `l` list, `h` hash.
    pub strategy: String,
    /// The partition key's columns and their types; an expression key has
    /// no column (its name is empty).
    pub key: Vec<(String, String)>,
    pub partitions: Vec<Partition>,
    /// `DETACH … CONCURRENTLY` exists (PostgreSQL 14 and later).
    pub concurrent_detach: bool,
    /// The archive schema already exists (when one was asked for).
    pub archive_schema_exists: bool,
}

/// One partition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Partition {
    pub schema: String,
    pub name: String,
    /// `FOR VALUES FROM (…) TO (…)` or `DEFAULT`, as `pg_get_expr` prints it.
    pub bound: String,
    /// A `DETACH … CONCURRENTLY` of it was interrupted: it waits for `FINALIZE`.
    pub detach_pending: bool,
    /// The planner's row figure (`reltuples`; 0 when never analyzed).
    pub rows: u64,
    pub bytes: u64,
    /// A table of that name is already in the archive schema.
    pub taken_in_archive: bool,
}

/// Reads `parent` (a quoted name); `None` when it is not partitioned.
pub async fn read(
    c: &mut impl Exec,
    parent: &str,
    archive_schema: Option<&str>,
) -> Result<Option<Partitioned>, DbError> {
    let head: Option<(String, Vec<String>, Vec<String>, bool)> = query(
        "SELECT p.partstrat::text, \
           ARRAY(SELECT coalesce(a.attname::text, '') FROM unnest(p.partattrs::int2[]) WITH ORDINALITY k(attnum, ord) \
                 LEFT JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = k.attnum ORDER BY k.ord), \
           ARRAY(SELECT coalesce(format_type(a.atttypid, a.atttypmod), '') FROM unnest(p.partattrs::int2[]) WITH ORDINALITY k(attnum, ord) \
                 LEFT JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = k.attnum ORDER BY k.ord), \
           current_setting('server_version_num')::int >= 140000 \
         FROM pg_partitioned_table p WHERE p.partrelid = to_regclass($1)",
    )
    .bind(parent)
    .fetch_optional_as(&mut *c)
    .await?;
    let Some((strategy, names, types, concurrent_detach)) = head else {
        return Ok(None);
    };
    let archive_schema_exists = match archive_schema {
        Some(s) => {
            query("SELECT to_regnamespace($1) IS NOT NULL")
                .bind(s)
                .scalar(&mut *c)
                .await?
        }
        None => false,
    };
    // `inhdetachpending` exists from PostgreSQL 14; read through to_jsonb
    // so older servers answer `false` instead of failing.
    let rows: Vec<(String, String, String, bool, i64, i64, bool)> = query(format!(
        "SELECT n.nspname::text, c.relname::text, pg_get_expr(c.relpartbound, c.oid), \
           coalesce((to_jsonb(i) ->> 'inhdetachpending')::bool, false), \
           greatest(c.reltuples, 0)::int8, \
           CASE WHEN c.relkind = 'p' THEN (SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0)::int8 \
                                            FROM pg_partition_tree(c.oid) t WHERE t.isleaf) \
                WHEN c.oid IN {BUSY} THEN c.relpages::int8 * current_setting('block_size')::int8 \
                ELSE pg_total_relation_size(c.oid)::int8 END, \
           $2::text IS NOT NULL AND EXISTS (SELECT 1 FROM pg_class a JOIN pg_namespace an ON an.oid = a.relnamespace \
                                            WHERE an.nspname = $2 AND a.relname = c.relname) \
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE i.inhparent = to_regclass($1) ORDER BY 1, 2"
    ))
    .bind(parent)
    .bind(archive_schema)
    .fetch_all_as(&mut *c)
    .await?;
    Ok(Some(Partitioned {
        strategy,
        key: names.into_iter().zip(types).collect(),
        partitions: rows
            .into_iter()
            .map(|(schema, name, bound, detach_pending, rows, bytes, taken)| Partition {
                schema,
                name,
                bound,
                detach_pending,
                rows: rows.max(0) as u64,
                bytes: bytes.max(0) as u64,
                taken_in_archive: taken,
            })
            .collect(),
        concurrent_detach,
        archive_schema_exists,
    }))
}

/// A `DETACH … CONCURRENTLY` of `partition` (quoted) is pending.
pub async fn detach_pending(c: &mut impl Exec, partition: &str) -> Result<bool, DbError> {
    query(
        "SELECT coalesce(bool_or(coalesce((to_jsonb(i) ->> 'inhdetachpending')::bool, false)), false) \
         FROM pg_inherits i WHERE i.inhrelid = to_regclass($1)",
    )
    .bind(partition)
    .scalar(c)
    .await
}

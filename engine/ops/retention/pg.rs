//! Retention on PostgreSQL: the key form and the statements
//! (`retention_sql`), the probe in the inspection's snapshot, and key-window
//! batches run as a DBA's loop would (`PREPARE` once, `BEGIN; EXECUTE` and
//! the journal row with `COMMIT` per window).

use super::batch::{BatchDone, Window};
use super::facts::{EXACT_COUNT_LIMIT, PartitionCount, RetentionFacts, RetentionProbe};
use super::sql::{ArchiveSpec, RetentionSpec, RetentionSql, retention_predicate};
use super::work::{BatchSql, RetentionWork};
use crate::db::query::{Exec, execute_raw, query};
use crate::db::{BatchJournal, DbError, journal_batch_sql, journal_cascade_sql, quote_literal};
use crate::plan::values::Backend;

/// True for the integer types, whose time columns hold epoch seconds.
fn is_integer_type(t: &str) -> bool {
    matches!(t, "smallint" | "integer" | "bigint" | "int2" | "int4" | "int8")
}

fn cast(param: &str, ty: &str) -> String {
    format!("CAST({param}::text AS {ty})")
}

/// The archive table, when missing: the source's columns and primary key.
fn create_archive_table(spec: &RetentionSpec, name: &str, exists: bool) -> Vec<String> {
    if exists {
        return vec![];
    }
    let pk = if spec.primary_key.is_empty() {
        spec.key.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(", ")
    } else {
        spec.primary_key.join(", ")
    };
    vec![
        format!("CREATE TABLE {name} (LIKE {})", spec.table),
        format!("ALTER TABLE {name} ADD PRIMARY KEY ({pk})"),
    ]
}

/// A retention key in PostgreSQL's SQL: one column, or a composite key
/// compared as a row value. Its text form is `k::text` for one column and
/// `ARRAY[a::text, b::text]::text` for several (array quoting keeps any
/// value intact), read back by [`PgKey::param`].
struct PgKey<'a>(&'a [(String, String)]);

impl PgKey<'_> {
    /// `k` or `(a, b)`, prefixed by `alias.` when given.
    fn tuple(&self, alias: &str) -> String {
        let cols: Vec<String> = self.0.iter().map(|(c, _)| format!("{alias}{c}")).collect();
        if cols.len() == 1 {
            cols[0].clone()
        } else {
            format!("({})", cols.join(", "))
        }
    }

    /// `a, b` (ascending) or `a DESC, b DESC`, for ORDER BY.
    fn order(&self, alias: &str, desc: bool) -> String {
        self.0
            .iter()
            .map(|(c, _)| format!("{alias}{c}{}", if desc { " DESC" } else { "" }))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The key as text.
    fn text(&self, alias: &str) -> String {
        let cols: Vec<String> = self.0.iter().map(|(c, _)| format!("{alias}{c}::text")).collect();
        if cols.len() == 1 {
            cols[0].clone()
        } else {
            format!("ARRAY[{}]::text", cols.join(", "))
        }
    }

    /// Parameter `$n` (key text) as a value comparable with [`Self::tuple`].
    fn param(&self, n: u8) -> String {
        if let [(_, ty)] = self.0 {
            return cast(&format!("${n}"), ty);
        }
        let parts: Vec<String> = self
            .0
            .iter()
            .enumerate()
            .map(|(i, (_, ty))| format!("CAST((${n}::text[])[{}] AS {ty})", i + 1))
            .collect();
        format!("({})", parts.join(", "))
    }

    /// One integer column: batches are key windows.
    fn integer(&self) -> bool {
        matches!(self.0, [(_, ty)] if matches!(ty.as_str(), "bigint" | "integer" | "smallint"))
    }

    /// One column of a type with `min`/`max` (uuid, for one, has neither).
    fn aggregable(&self) -> bool {
        const ORDERED: [&str; 8] = [
            "bigint",
            "integer",
            "smallint",
            "numeric",
            "text",
            "character",
            "date",
            "timestamp",
        ];
        matches!(self.0, [(_, ty)] if ORDERED.iter().any(|o| ty.starts_with(o)))
    }
}

/// A key as text (see [`PgKey`]).
pub fn key_text(key: &[(String, String)]) -> String {
    PgKey(key).text("")
}

/// PostgreSQL's retention statements: key windows for an integer key, else
/// ranged batches whose `LIMIT` is a parameter (safe: every session plans
/// with `plan_cache_mode=force_custom_plan`, so no generic plan ever runs
/// with an unknown limit or bound).
pub fn retention_sql(spec: &RetentionSpec) -> RetentionSql {
    // The cutoff arrives as text; `(SELECT CAST(…))` converts it once per
    // statement (an InitPlan). A bare CAST is a stable function call that a
    // filter evaluates per row: on a key-range scan that parsed the cutoff
    // 10,000 times per batch and doubled the batch's time.
    let pred = retention_predicate(spec, &format!("(SELECT {})", cast("$1", &spec.column_type)));
    let key = PgKey(&spec.key);
    // Read and delete this table's own rows only, never its inheritance
    // children's (`LIKE` below names the table itself).
    let only_t = if spec.only {
        format!("ONLY {}", spec.table)
    } else {
        spec.table.clone()
    };
    let t = &only_t;
    let cols = spec
        .columns
        .iter()
        .map(|(c, _)| c.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let mut create_archive = vec![];
    if let Some(ArchiveSpec::Table { name, exists }) = &spec.archive {
        create_archive.extend(create_archive_table(spec, name, *exists));
    }
    // The eligible rows and their key span, in one pass over them.
    let count = if key.aggregable() {
        let k = key.tuple("");
        format!("SELECT count(*)::int8, min({k})::text, max({k})::text FROM {t} WHERE {pred}")
    } else {
        let end = |desc| {
            format!(
                "(SELECT {} FROM {t} WHERE {pred} ORDER BY {} LIMIT 1)",
                key.text(""),
                key.order("", desc)
            )
        };
        format!(
            "SELECT count(*)::int8, {}, {} FROM {t} WHERE {pred}",
            end(false),
            end(true)
        )
    };
    let (batch, cascade_range) = if key.integer() && !matches!(spec.archive, Some(ArchiveSpec::File { .. })) {
        let k = key.tuple("");
        let window = format!(" AND {k} >= $2::int8 AND {k} <= $3::int8");
        let delete = format!("DELETE FROM {t} WHERE {pred}{window}");
        let batch = BatchSql::Window {
            statement: match &spec.archive {
                // The DBA's loop: key windows, one plain statement each.
                None => delete,
                Some(ArchiveSpec::Table { name, .. }) => {
                    format!("WITH moved AS ({delete} RETURNING *) INSERT INTO {name} ({cols}) SELECT {cols} FROM moved")
                }
                Some(ArchiveSpec::File { .. }) => unreachable!("file archives take ranged batches"),
            },
            left: spec
                .check_left
                .then(|| format!("SELECT count(*)::int8 FROM {t} WHERE {pred}{window}")),
            next_key: format!("SELECT min({k})::int8 FROM {t} WHERE {k} > $1::int8"),
            first_key: format!("SELECT min({k})::int8 FROM {t} WHERE {pred}"),
        };
        (batch, window)
    } else {
        let kt = key.tuple("");
        // (rows, first key, last key) of a batch: the first `limit`
        // eligible keys after `from`, up to the span's end `to`.
        let bound = |op: &str| {
            let sel: Vec<String> = spec.key.iter().map(|(c, _)| c.clone()).collect();
            format!(
                "SELECT count(*)::int8, (array_agg({txt} ORDER BY {asc}))[1], (array_agg({txt} ORDER BY {desc}))[1] \
                 FROM (SELECT {sel} FROM {t} WHERE {pred} AND {kt} {op} {from} AND {kt} <= {to} ORDER BY {order} LIMIT $3) b",
                txt = key.text("b."),
                asc = key.order("b.", false),
                desc = key.order("b.", true),
                sel = sel.join(", "),
                from = key.param(2),
                to = key.param(4),
                order = key.order("", false),
            )
        };
        let range = format!(" AND {kt} >= {} AND {kt} <= {}", key.param(2), key.param(3));
        let delete = format!("DELETE FROM {t} WHERE {pred}{range}");
        let batch = BatchSql::Ranged {
            bound_first: bound(">="),
            bound_next: bound(">"),
            copy: None,
            delete: match &spec.archive {
                // Plain retention: one key-range DELETE; no RETURNING to
                // materialise, no row locks taken twice.
                None => delete,
                Some(ArchiveSpec::Table { name, .. }) => {
                    format!("WITH moved AS ({delete} RETURNING *) INSERT INTO {name} ({cols}) SELECT {cols} FROM moved")
                }
                // The rows the delete really removed, for the file (a row a
                // trigger kept is not written).
                Some(ArchiveSpec::File { .. }) => format!(
                    "WITH moved AS ({delete} RETURNING *) SELECT {}, row_to_json(moved)::text FROM moved ORDER BY {}",
                    key.text("moved."),
                    key.order("moved.", false)
                ),
            },
        };
        (batch, range)
    };
    RetentionSql {
        create_archive,
        count,
        batch,
        cascades: super::sql::cascade_counts(spec, t, &pred, &cascade_range),
    }
}

/// A table whose heap is at most this size is counted whole for the diff's
/// share and `max_ratio` (a sequential read of 64 MiB takes a fraction of
/// a second); larger ones use `reltuples`, the planner's figure.
const TABLE_COUNT_BYTES: i64 = 64 * 1024 * 1024;

/// Counts a retention predicate, unless the planner expects more than
/// [`EXACT_COUNT_LIMIT`] rows: then its estimate, flagged as such.
pub async fn probe(c: &mut impl Exec, p: &RetentionProbe) -> Result<RetentionFacts, DbError> {
    use super::timefmt::{Sample, TimeFormat, cutoff_value, decide, is_zone_less};
    let ty = p.column_type.to_ascii_lowercase();
    // The rows a DELETE on this table would reach: `ONLY` when it has
    // inheritance children (their rows are not this step's).
    let from = if p.only {
        format!("ONLY {}", p.table)
    } else {
        p.table.clone()
    };
    // Native date/time types need no sample; numbers and text do (min and
    // max use the column's index when it has one).
    let mut sample = Sample {
        declared: ty.clone(),
        ..Sample::default()
    };
    if !(ty.starts_with("timestamp") || ty == "date") {
        let numeric = is_integer_type(&ty) || ["numeric", "real", "double", "decimal"].iter().any(|k| ty.contains(k));
        let num = |f: &str| {
            if numeric {
                format!("{f}({})::float8", p.column)
            } else {
                "NULL::float8".into()
            }
        };
        let r = query(format!(
            "SELECT {}, {}, min({c})::text, max({c})::text FROM {from}",
            num("min"),
            num("max"),
            c = p.column
        ))
        .fetch_one(&mut *c)
        .await?;
        sample.min_num = r.get(0)?;
        sample.max_num = r.get(1)?;
        sample.min_text = r.get(2)?;
        sample.max_text = r.get(3)?;
    }
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
                ..RetentionFacts::default()
            });
        }
    };
    let zone_less = is_zone_less(format, &ty, sample.min_text.as_deref());
    let cutoff = if format == TimeFormat::Native && !zone_less {
        p.cutoff.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
    } else {
        let t_sep = sample
            .min_text
            .as_ref()
            .is_some_and(|t| t.as_bytes().get(10) == Some(&b'T'));
        cutoff_value(format, p.cutoff, p.zone, t_sep)
    };
    let zone = zone_less.then(|| p.zone.to_string());
    // Row-level security filters this role's count and delete alike unless
    // it is a superuser, has BYPASSRLS, or owns the table without FORCE.
    let rls_applies: bool = query(format!(
        "SELECT c.relrowsecurity AND NOT (r.rolsuper OR r.rolbypassrls OR (c.relowner = r.oid AND NOT c.relforcerowsecurity)) \
         FROM pg_class c, pg_roles r WHERE c.oid = {}::regclass AND r.rolname = current_user",
        quote_literal(&p.table)
    ))
    .scalar_optional(&mut *c)
    .await?
    .unwrap_or(false);
    let mut pred = format!("{} < CAST({} AS {})", p.column, quote_literal(&cutoff), p.column_type);
    if let Some(w) = &p.where_sql {
        pred.push_str(&format!(" AND ({w})"));
    }
    let children = super::batch::child_counts(c, p, &pred, None).await?;
    let referenced = match &p.guard_sql {
        Some(g) => {
            let n: i64 = query(super::sql::referenced_count_sql(&from, &pred, g))
                .scalar(&mut *c)
                .await?;
            pred.push_str(&format!(" AND {g}"));
            n.max(0) as u64
        }
        None => 0,
    };
    let digest = match &p.digest_key {
        Some(k) => Some(digest_keys(c, format!("SELECT {k} FROM {from} WHERE {pred}")).await?),
        None => None,
    };
    let plan: serde_json::Value = query(format!("EXPLAIN (FORMAT JSON) SELECT 1 FROM {from} WHERE {pred}"))
        .scalar(&mut *c)
        .await?;
    let estimate = plan[0]["Plan"]["Plan Rows"].as_f64().unwrap_or(0.0).max(0.0) as u64;
    // The table's rows: counted when its heap is small enough to read in a
    // moment, else the planner's figure.
    let reg = quote_literal(&p.table);
    // A partitioned table's heap and row figures are its leaf partitions'.
    let (counted, reltuples): (Option<i64>, i64) = query(format!(
        "SELECT CASE WHEN s.bytes <= {TABLE_COUNT_BYTES} THEN (SELECT count(*)::int8 FROM {from}) END, s.tuples \
         FROM (SELECT coalesce(sum(pg_relation_size(l.relid)), 0)::int8 AS bytes, \
                      coalesce(sum(greatest(lc.reltuples, 0)), 0)::int8 AS tuples \
               FROM (SELECT c.oid AS relid FROM pg_class c WHERE c.oid = {reg}::regclass AND c.relkind <> 'p' \
                     UNION ALL SELECT t.relid FROM pg_partition_tree({reg}::regclass) t \
                     WHERE t.isleaf AND (SELECT relkind FROM pg_class WHERE oid = {reg}::regclass) = 'p') l \
               JOIN pg_class lc ON lc.oid = l.relid) s"
    ))
    .fetch_one_as(&mut *c)
    .await?;
    // Per partition, the eligible rows (one pass over them, grouped by
    // the partition each lives in) beside the partition's own row figure.
    let partitions = if p.partitioned {
        let pred_now = pred.clone();
        query(format!(
            "SELECT e.part, e.n, greatest(pc.reltuples, 0)::int8 FROM \
               (SELECT tableoid AS oid, tableoid::regclass::text AS part, count(*)::int8 AS n FROM {from} WHERE {pred_now} GROUP BY 1, 2) e \
             JOIN pg_class pc ON pc.oid = e.oid ORDER BY 2"
        ))
        .fetch_all_as::<(String, i64, i64)>(&mut *c)
        .await?
        .into_iter()
        .map(|(name, eligible, rows)| PartitionCount {
            name,
            eligible: eligible.max(0) as u64,
            rows: rows.max(0) as u64,
        })
        .collect()
    } else {
        vec![]
    };
    let (table_rows, table_rows_exact) = match counted {
        Some(n) => (n.max(0) as u64, true),
        None => (reltuples.max(0) as u64, false),
    };
    if estimate > EXACT_COUNT_LIMIT {
        return Ok(RetentionFacts {
            rows: estimate,
            exact: false,
            oldest: None,
            newest: None,
            cutoff,
            format: Some(format),
            format_error: None,
            nulls: 0,
            zone,
            children,
            referenced,
            all_rows: false,
            rls_applies,
            table_rows,
            table_rows_exact,
            partitions,
            digest,
        });
    }
    // Whether any row would survive is asked only when the eligible rows
    // are at least half the planner's row count: finding the first survivor
    // can mean reading past every eligible row.
    let r = query(format!(
        "SELECT count(*)::int8, min({c})::text, max({c})::text, \
         (SELECT count(*)::int8 FROM {from} WHERE {c} IS NULL), \
         CASE WHEN count(*) * 2 >= (SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = {reg}::regclass) \
              THEN NOT EXISTS (SELECT 1 FROM {from} WHERE ({pred}) IS NOT TRUE) ELSE false END \
         FROM {from} WHERE {pred}",
        reg = quote_literal(&p.table),
        c = p.column
    ))
    .fetch_one(&mut *c)
    .await?;
    Ok(RetentionFacts {
        rows: r.get::<i64>(0)?.max(0) as u64,
        exact: true,
        oldest: r.get(1)?,
        newest: r.get(2)?,
        cutoff,
        format: Some(format),
        format_error: None,
        nulls: r.get::<i64>(3)?.max(0) as u64,
        zone,
        children,
        referenced,
        all_rows: r.get(4)?,
        rls_applies,
        table_rows,
        table_rows_exact,
        partitions,
        digest,
    })
}

/// The digest of the keys `query` returns, streamed (never all in memory).
async fn digest_keys(c: &mut impl Exec, text: String) -> Result<super::keydigest::KeyDigest, DbError> {
    let mut d = super::keydigest::KeyDigest::default();
    query(text)
        .for_each(c, |r| {
            d.add(&r.get::<String>(0)?);
            Ok(())
        })
        .await?;
    Ok(d)
}

// ---------------------------------------------------------------- retention

/// The name a windowed step's statement is prepared under, per session.
const WINDOW_STATEMENT: &str = "dbmaint_window";

/// Prepares a windowed walk's statement on this session (each step has its
/// own connection; a step that walks several tables, `include_children`,
/// replaces the statement of the walk before). Executions get custom
/// plans: `plan_cache_mode=force_custom_plan`.
pub async fn prepare_window(c: &mut impl Exec, statement: &str) -> Result<(), DbError> {
    let prepared: bool = query("SELECT EXISTS (SELECT 1 FROM pg_prepared_statements WHERE name = $1)")
        .bind(WINDOW_STATEMENT)
        .scalar(&mut *c)
        .await?;
    if prepared {
        execute_raw(c, &format!("DEALLOCATE {WINDOW_STATEMENT}")).await?;
    }
    execute_raw(
        c,
        &format!("PREPARE {WINDOW_STATEMENT} (text, int8, int8) AS {statement}"),
    )
    .await
    .map(|_| ())
}

/// One key window in two round trips, as a DBA's loop would run it inside
/// the server: `BEGIN; EXECUTE …` (the delete, or the archive-and-delete),
/// then the journal row and `COMMIT` — one transaction, so the batch and
/// its journal row commit together or not at all (safety.md rules 5, 6).
/// With `left`, a statement after the delete counts the eligible rows the
/// window kept; with cascades, statements before it count the child rows
/// it will reach.
pub(super) async fn window_batch(
    c: &mut impl Exec,
    work: &RetentionWork,
    w: Window,
    journal: &BatchJournal,
) -> Result<BatchDone, DbError> {
    let result = window_in(c, work, w, journal).await;
    if result.is_err() {
        let _ = execute_raw(c, "ROLLBACK").await;
    }
    result
}

async fn window_in(
    c: &mut impl Exec,
    work: &RetentionWork,
    Window { lo, hi }: Window,
    journal: &BatchJournal,
) -> Result<BatchDone, DbError> {
    let BatchSql::Window { left, .. } = &work.batch else {
        return Err(DbError::other("a key window needs a windowed step"));
    };
    let exec = format!(
        "EXECUTE {WINDOW_STATEMENT}({}, {lo}, {hi})",
        quote_literal(&work.cutoff)
    );
    let mut cascaded = vec![];
    // The rows affected add up over the statements; BEGIN affects none.
    let rows = if work.cascades.is_empty() {
        execute_raw(c, &format!("BEGIN; {exec}")).await?
    } else {
        execute_raw(c, "BEGIN").await?;
        for cc in &work.cascades {
            let n: i64 = query(cc.count.clone())
                .bind(&work.cutoff)
                .bind(lo)
                .bind(hi)
                .scalar(&mut *c)
                .await?;
            cascaded.push(n.max(0) as u64);
        }
        execute_raw(c, &exec).await?
    };
    let kept = match left {
        None => 0,
        Some(q) => {
            let n: i64 = query(q.clone())
                .bind(&work.cutoff)
                .bind(lo)
                .bind(hi)
                .scalar(&mut *c)
                .await?;
            n.max(0) as u64
        }
    };
    let last_key = hi.to_string();
    let mut finish = String::new();
    if rows > 0 {
        finish.push_str(&journal_batch_sql(Backend::Postgres, journal, &last_key, rows));
        for (cc, n) in work.cascades.iter().zip(&cascaded).filter(|(_, n)| **n > 0) {
            finish.push_str(&journal_cascade_sql(
                Backend::Postgres,
                journal,
                &cc.foreign_key,
                &cc.on_delete,
                *n,
            ));
        }
    }
    finish.push_str("COMMIT");
    execute_raw(c, &finish).await?;
    Ok(BatchDone {
        rows,
        selected: rows + kept,
        last_key: Some(last_key),
        cascaded,
    })
}

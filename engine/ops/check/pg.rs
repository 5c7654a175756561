//! PostgreSQL's health checks and the session signals of `on_long_query`.
//! The same code answers `plan diff` (read-only session) and `plan apply`.

use std::time::Duration;

use super::spec::{CheckSpec, Finding, SessionAct, SessionTarget};
use crate::db::DbError;
use crate::db::pg::USER_RELATIONS;
use crate::db::query::{Exec, query};
use crate::ops::check::CheckName as C;
use crate::ops::check::spec::Severity::{Error, Warning};

/// Runs the `check` step's PostgreSQL checks; each is one set-based query.
pub async fn run_checks(c: &mut impl Exec, spec: &CheckSpec) -> Result<Vec<Finding>, DbError> {
    let mut out = vec![];
    if spec.runs(C::LongQueries) {
        out.extend(long_queries(c, spec).await?);
    }
    if spec.runs(C::UnusedIndexes) {
        out.extend(unused_indexes(c, spec).await?);
    }
    if spec.runs(C::DuplicateIndexes) {
        out.extend(duplicate_indexes(c, spec).await?);
    }
    if spec.runs(C::FkWithoutIndex) {
        out.extend(fk_without_index(c, spec).await?);
    }
    if spec.runs(C::Connections) {
        out.extend(connections(c, spec).await?);
    }
    if spec.runs(C::Locks) {
        out.extend(locks(c, spec).await?);
    }
    if spec.runs(C::XidAge) {
        out.extend(xid_age(c, spec).await?);
    }
    if spec.runs(C::Sequences) {
        out.extend(sequences(c, spec).await?);
    }
    Ok(out)
}

/// Client sessions running one query, or sitting in a transaction, longer
/// than `max_query_age`; with whether this role may signal each (a
/// superuser's session only a superuser; others with the same role, a
/// role it is a member of, or `pg_signal_backend`).
async fn long_queries(c: &mut impl Exec, spec: &CheckSpec) -> Result<Vec<Finding>, DbError> {
    let mut out = vec![];
    // Client sessions only: never autovacuum, replication, nor this
    // process's own sessions (by pid) and client programs (by their
    // per-process application name); a job merely called
    // `dbmaintenance_reporting` — or `dbmaint` — is somebody else's.
    type Row = (
        i32,
        String,
        String,
        f64,
        String,
        String,
        String,
        String,
        bool,
        Vec<String>,
    );
    let rows: Vec<Row> = query(
        "SELECT a.pid, coalesce(a.usename::text, ''), coalesce(a.application_name, ''), \
           extract(epoch FROM clock_timestamp() - CASE WHEN a.state = 'active' THEN a.query_start \
             ELSE coalesce(a.xact_start, a.query_start) END)::float8, left(a.query, 120), \
           a.backend_start::text, a.query_start::text, a.state, \
           CASE WHEN (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN true \
                WHEN coalesce(r.rolsuper, false) THEN false \
                WHEN pg_has_role(current_user, a.usesysid, 'MEMBER') THEN true \
                ELSE pg_has_role(current_user, 'pg_signal_backend', 'MEMBER') END, \
           ARRAY(SELECT DISTINCT l.mode || ' on ' || l.relation::regclass::text FROM pg_locks l \
                 WHERE l.pid = a.pid AND l.granted AND l.relation IS NOT NULL \
                   AND l.relation NOT IN (SELECT oid FROM pg_class WHERE relnamespace = 'pg_catalog'::regnamespace) \
                 ORDER BY 1 LIMIT 5) \
         FROM pg_stat_activity a LEFT JOIN pg_roles r ON r.oid = a.usesysid \
         WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid() \
           AND a.state IN ('active', 'idle in transaction', 'idle in transaction (aborted)') \
           AND a.pid <> ALL($2::int4[]) AND a.application_name IS DISTINCT FROM $3 \
           AND a.datname = current_database() \
           AND CASE WHEN a.state = 'active' THEN a.query_start ELSE coalesce(a.xact_start, a.query_start) END \
               < clock_timestamp() - $1 * interval '1 millisecond' \
         ORDER BY a.query_start",
    )
    .bind(spec.max_query_age_ms as f64)
    .bind(
        crate::db::pg::own_backend_pids()
            .into_iter()
            .map(i64::from)
            .collect::<Vec<i64>>()
            .as_slice(),
    )
    .bind(crate::db::pg::child_application_name())
    .fetch_all_as(&mut *c)
    .await?;
    for (pid, user, app, secs, query, backend_start, query_start, state, allowed, locks) in rows {
        let idle = state != "active";
        let doing = if idle {
            format!(
                "{state} for {secs:.0} s{} (user `{user}`, application `{app}`), last query: {}",
                if locks.is_empty() {
                    String::new()
                } else {
                    format!(", holding {}", locks.join(", "))
                },
                crate::db::one_line(&query)
            )
        } else {
            format!(
                "running {secs:.0} s (user `{user}`, application `{app}`): {}",
                crate::db::one_line(&query)
            )
        };
        out.push(
            Finding::new(C::LongQueries, Warning, format!("pid {pid}"), doing).with(serde_json::json!({
                "pid": pid, "seconds": secs, "user": user, "application": app,
                "backend_start": backend_start, "query_start": query_start,
                "state": state, "allowed": allowed, "locks": locks,
            })),
        );
    }
    Ok(out)
}

/// Indexes never scanned since the statistics were reset (not unique, not
/// backing a constraint): `pg_stat_user_indexes`' rows, read from the
/// catalogs and `pg_stat_get_numscans` without the view's joins. `NOT IN`
/// a subquery is one hashed set; the `NOT EXISTS` it replaces was planned
/// as a scan of `pg_constraint` per index (3 s at 5,000 indexes).
async fn unused_indexes(c: &mut impl Exec, _spec: &CheckSpec) -> Result<Vec<Finding>, DbError> {
    let mut out = vec![];
    let rows: Vec<(String, String, String, i64, Option<String>)> = query(format!(
        "SELECT n.nspname::text, t.relname::text, i.relname::text, \
           i.relpages::int8 * current_setting('block_size')::int8, \
           (SELECT to_char(stats_reset AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
              FROM pg_stat_database WHERE datname = current_database()) \
         FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE t.relkind IN ('r', 't', 'm') AND pg_stat_get_numscans(i.oid) = 0 \
           AND NOT x.indisunique AND NOT x.indisprimary AND {USER_RELATIONS} \
           AND x.indexrelid NOT IN (SELECT k.conindid FROM pg_constraint k) \
         ORDER BY 4 DESC, 1, 2, 3"
    ))
    .fetch_all_as(&mut *c)
    .await?;
    for (schema, table, index, bytes, since) in rows {
        let since = since.map_or("statistics were never reset".into(), |s| {
            format!("statistics kept since {s}")
        });
        out.push(
            Finding::new(
                C::UnusedIndexes,
                Warning,
                format!("{schema}.{index}"),
                format!(
                    "no scans on `{table}` ({since}); {} to drop or keep",
                    crate::run::execplan::human_bytes(bytes.max(0) as u64)
                ),
            )
            .with(serde_json::json!({"table": table, "bytes": bytes})),
        );
    }
    Ok(out)
}

/// Indexes identical to another, or whose columns lead another's.
async fn duplicate_indexes(c: &mut impl Exec, _spec: &CheckSpec) -> Result<Vec<Finding>, DbError> {
    let mut out = vec![];
    let signatures: Vec<IndexSignature> = query(duplicate_indexes_sql()).fetch_all_as(&mut *c).await?;
    let rows = duplicate_pairs(signatures);
    for (schema, table, index, other, identical) in rows {
        let message = if identical {
            format!("identical to `{other}` on `{table}`: one of them can go")
        } else {
            format!("its columns lead `{other}` on `{table}`, which serves the same lookups")
        };
        out.push(
            Finding::new(C::DuplicateIndexes, Warning, format!("{schema}.{index}"), message)
                .with(serde_json::json!({"table": table, "other": other, "identical": identical})),
        );
    }
    Ok(out)
}

/// One index of a table that has several: schema, table, index, table oid,
/// key columns (`indkey`), unique, expressions, predicate, operator
/// classes, collations.
type IndexSignature = (
    String,
    String,
    String,
    i64,
    String,
    bool,
    String,
    String,
    String,
    String,
);

/// The indexes of every user table with more than one, one row each: a
/// linear read. The comparison is `duplicate_pairs`' (a self-join in SQL
/// was planned as a nested loop over every index: 10 s at 10,000 indexes).
/// `pg_get_expr` runs only for indexes that have expressions or a predicate.
pub fn duplicate_indexes_sql() -> String {
    format!(
        "SELECT n.nspname::text, t.relname::text, i.relname::text, x.indrelid::int8, x.indkey::text, x.indisunique, \
           CASE WHEN x.indexprs IS NULL THEN '' ELSE pg_get_expr(x.indexprs, x.indrelid) END, \
           CASE WHEN x.indpred IS NULL THEN '' ELSE pg_get_expr(x.indpred, x.indrelid) END, \
           x.indclass::text, x.indcollation::text \
         FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE {USER_RELATIONS} \
           AND x.indrelid IN (SELECT indrelid FROM pg_index GROUP BY indrelid HAVING count(*) > 1)"
    )
}

/// `(schema, table, index, other, identical)`, ordered by schema, table,
/// index: within each table, pairs with the same key columns,
/// expressions, predicate, operator classes and collations (identical;
/// the later name is reported against the earlier), and plain non-unique
/// indexes whose columns and operator classes are a left prefix of
/// another's (redundant).
pub fn duplicate_pairs(mut ix: Vec<IndexSignature>) -> Vec<(String, String, String, String, bool)> {
    ix.sort_by(|a, b| (a.3, &a.2).cmp(&(b.3, &b.2)));
    let mut out = vec![];
    for table in ix.chunk_by(|a, b| a.3 == b.3) {
        for a in table {
            for b in table {
                let same = a.4 == b.4 && a.6 == b.6 && a.7 == b.7 && a.8 == b.8 && a.9 == b.9;
                if a.2 > b.2 && same {
                    out.push((a.0.clone(), a.1.clone(), a.2.clone(), b.2.clone(), true));
                }
                let plain = |x: &IndexSignature| x.6.is_empty() && x.7.is_empty();
                if a.2 != b.2
                    && !a.5
                    && plain(a)
                    && plain(b)
                    && b.4.starts_with(&format!("{} ", a.4))
                    && b.8.starts_with(&format!("{} ", a.8))
                {
                    out.push((a.0.clone(), a.1.clone(), a.2.clone(), b.2.clone(), false));
                }
            }
        }
    }
    out.sort_by(|x, y| (&x.0, &x.1, &x.2).cmp(&(&y.0, &y.1, &y.2)));
    out
}

/// Foreign keys without an index on their columns.
async fn fk_without_index(c: &mut impl Exec, _spec: &CheckSpec) -> Result<Vec<Finding>, DbError> {
    let mut out = vec![];
    // An index serves a foreign key when its leading columns are the
    // key's columns, in any order.
    let rows: Vec<(String, String, String, Vec<String>, String)> = query(format!(
        "SELECT n.nspname::text, t.relname::text, k.conname::text, \
           ARRAY(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY u(attnum, o) \
                 JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.attnum ORDER BY u.o), \
           k.confrelid::regclass::text \
         FROM pg_constraint k JOIN pg_class t ON t.oid = k.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE k.contype = 'f' AND {USER_RELATIONS} AND NOT EXISTS ( \
           SELECT 1 FROM pg_index x WHERE x.indrelid = k.conrelid AND x.indpred IS NULL \
             AND (string_to_array(x.indkey::text, ' ')::int2[])[1:cardinality(k.conkey)] @> k.conkey \
             AND (string_to_array(x.indkey::text, ' ')::int2[])[1:cardinality(k.conkey)] <@ k.conkey) \
         ORDER BY 1, 2, 3"
    ))
    .fetch_all_as(&mut *c)
    .await?;
    for (schema, table, constraint, columns, parent) in rows {
        out.push(
            Finding::new(
                C::FkWithoutIndex,
                Warning,
                format!("{schema}.{table}"),
                format!(
                    "foreign key `{constraint}` ({}) → {parent} has no index: deletes on {parent} scan `{table}`",
                    columns.join(", ")
                ),
            )
            .with(serde_json::json!({"constraint": constraint, "columns": columns, "references": parent})),
        );
    }
    Ok(out)
}

/// Client connections against `max_connections`.
async fn connections(c: &mut impl Exec, spec: &CheckSpec) -> Result<Vec<Finding>, DbError> {
    let mut out = vec![];
    let (used, max): (i64, i64) = query(
        "SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'), \
           current_setting('max_connections')::int8",
    )
    .fetch_one_as(&mut *c)
    .await?;
    let ratio = used as f64 / max.max(1) as f64;
    if ratio > spec.max_connections_ratio {
        out.push(
            Finding::new(
                C::Connections,
                if ratio >= 0.95 { Error } else { Warning },
                "server",
                format!("{used} of max_connections {max} in use ({:.0}%)", ratio * 100.0),
            )
            .with(serde_json::json!({"used": used, "max": max, "ratio": ratio})),
        );
    }
    Ok(out)
}

/// Sessions blocked by others, and by whom.
async fn locks(c: &mut impl Exec, _spec: &CheckSpec) -> Result<Vec<Finding>, DbError> {
    let mut out = vec![];
    let rows: Vec<(i32, Vec<i32>, f64, String)> = query(
        "SELECT pid, pg_blocking_pids(pid), \
           coalesce(extract(epoch FROM clock_timestamp() - state_change), 0)::float8, left(query, 120) \
         FROM pg_stat_activity WHERE datname = current_database() AND cardinality(pg_blocking_pids(pid)) > 0 \
         ORDER BY state_change",
    )
    .fetch_all_as(&mut *c)
    .await?;
    for (pid, blockers, secs, query) in rows {
        let by: Vec<String> = blockers.iter().map(|b| b.to_string()).collect();
        out.push(
            Finding::new(
                C::Locks,
                Warning,
                format!("pid {pid}"),
                format!(
                    "blocked for {secs:.0} s by pid {}: {}",
                    by.join(", "),
                    crate::db::one_line(&query)
                ),
            )
            .with(serde_json::json!({"pid": pid, "blocked_by": blockers, "seconds": secs})),
        );
    }
    Ok(out)
}

/// Transaction ID age of the database and its oldest tables.
async fn xid_age(c: &mut impl Exec, spec: &CheckSpec) -> Result<Vec<Finding>, DbError> {
    let mut out = vec![];
    let rows: Vec<(String, i64)> = query(format!(
        "SELECT 'database ' || current_database(), (SELECT age(datfrozenxid)::int8 FROM pg_database WHERE datname = current_database()) \
         UNION ALL \
         (SELECT 'table ' || n.nspname || '.' || c.relname, age(c.relfrozenxid)::int8 FROM pg_class c \
            JOIN pg_namespace n ON n.oid = c.relnamespace \
          WHERE c.relkind IN ('r', 'm', 't') AND {USER_RELATIONS} ORDER BY 2 DESC LIMIT 20)"
    ))
    .fetch_all_as(&mut *c)
    .await?;
    for (object, age) in rows {
        let ratio = age as f64 / crate::ops::check::spec::XID_HORIZON;
        if ratio > spec.max_xid_age_ratio {
            out.push(
                Finding::new(
                    C::XidAge,
                    if ratio >= 0.9 { Error } else { Warning },
                    object,
                    format!(
                        "transaction ID age {age}: {:.1}% of the wraparound horizon used; VACUUM (FREEZE) it",
                        ratio * 100.0
                    ),
                )
                .with(serde_json::json!({"age": age, "ratio": ratio})),
            );
        }
    }
    Ok(out)
}

/// Sequences near their maximum (or their column type's).
async fn sequences(c: &mut impl Exec, spec: &CheckSpec) -> Result<Vec<Finding>, DbError> {
    let mut out = vec![];
    // The owning column's type bounds a sequence before its own maximum.
    let rows: Vec<(String, Option<i64>, f64, Option<String>)> = query(
        "SELECT s.schemaname || '.' || s.sequencename, s.last_value, \
           LEAST(s.max_value::float8, CASE format_type(a.atttypid, NULL) \
             WHEN 'smallint' THEN 32767 WHEN 'integer' THEN 2147483647 ELSE s.max_value::float8 END), \
           t.relname || '.' || a.attname \
         FROM pg_sequences s \
         JOIN pg_namespace sn ON sn.nspname = s.schemaname \
         JOIN pg_class sc ON sc.relname = s.sequencename AND sc.relnamespace = sn.oid \
         LEFT JOIN pg_depend d ON d.objid = sc.oid AND d.classid = 'pg_class'::regclass \
           AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') \
         LEFT JOIN pg_class t ON t.oid = d.refobjid \
         LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
         WHERE s.schemaname NOT IN ('pg_catalog', 'information_schema', 'dbmaint') ORDER BY 1",
    )
    .fetch_all_as(&mut *c)
    .await?;
    for (seq, last, max, column) in rows {
        let Some(last) = last else { continue };
        let ratio = last as f64 / max.max(1.0);
        if ratio > spec.max_sequence_ratio {
            out.push(
                Finding::new(
                    C::Sequences,
                    if ratio >= 0.95 { Error } else { Warning },
                    seq,
                    format!(
                        "at {last} of {max:.0} ({:.1}% used){}",
                        ratio * 100.0,
                        column
                            .as_deref()
                            .map(|c| format!(", feeding `{c}`"))
                            .unwrap_or_default()
                    ),
                )
                .with(serde_json::json!({"last_value": last, "max": max, "ratio": ratio, "column": column})),
            );
        }
    }
    Ok(out)
}

/// Signals the long queries a `check` step's diff listed: cancel each
/// session still running the same query (same pid, `backend_start` and
/// `query_start`: a new session on a reused pid, or the next query of the
/// same one, is never touched), then with `terminate` end those still
/// running it after the grace period — a session whose query the cancel
/// ended (idle, or idle in an aborted transaction) is not terminated. An
/// idle-in-transaction session is not cancelled (that does nothing to it):
/// with `terminate` it is terminated, while still idle in the same
/// transaction. A refusal by the server for one session (a superuser's
/// query) is reported for that session; the others are still signalled.
/// Returns (pid, what happened).
pub async fn signal_sessions(
    c: &mut impl Exec,
    targets: &[SessionTarget],
    act: SessionAct,
) -> Result<Vec<(i32, String)>, DbError> {
    // Checking the session and signalling it is one statement.
    async fn signal(c: &mut impl Exec, t: &SessionTarget, f: &str, states: &str) -> Result<Option<bool>, DbError> {
        query(format!(
            "SELECT {f}(pid) FROM pg_stat_activity WHERE pid = $1 AND backend_start = $2::timestamptz \
             AND query_start = $3::timestamptz AND state IN ({states})"
        ))
        .bind(t.pid)
        .bind(&t.backend_start)
        .bind(&t.query_start)
        .scalar_optional(&mut *c)
        .await
    }
    const ACTIVE: &str = "'active'";
    const IDLE_TX: &str = "'idle in transaction', 'idle in transaction (aborted)'";
    let refused = |e: DbError| format!("refused by the server: {}", e.message);
    let mut out = vec![];
    let mut cancelled = vec![];
    for t in targets {
        let what = if t.idle_in_transaction {
            if !act.terminate {
                continue;
            }
            match signal(c, t, "pg_terminate_backend", IDLE_TX).await {
                Ok(None) => "skipped: that session ended its transaction or runs a query now".to_string(),
                Ok(Some(false)) => "terminate refused by the server (needs the same role or pg_signal_backend)".into(),
                Ok(Some(true)) => "idle in transaction: terminated".into(),
                Err(e) => refused(e),
            }
        } else {
            match signal(c, t, "pg_cancel_backend", ACTIVE).await {
                Ok(None) => "skipped: that session ended or runs another query now".to_string(),
                Ok(Some(false)) => "cancel refused by the server (needs the same role or pg_signal_backend)".into(),
                Ok(Some(true)) => {
                    cancelled.push(t);
                    "cancelled".to_string()
                }
                Err(e) => refused(e),
            }
        };
        out.push((t.pid, what));
    }
    if act.terminate && !cancelled.is_empty() {
        tokio::time::sleep(Duration::from_millis(act.grace_ms)).await;
        for t in cancelled {
            // Still active in the same query: the cancel did not take.
            let what = match signal(c, t, "pg_terminate_backend", ACTIVE).await {
                Ok(None) => continue,
                Ok(Some(true)) => format!("cancelled, still running after {} ms: terminated", act.grace_ms),
                Ok(Some(false)) => "cancelled, still running; terminate refused by the server".into(),
                Err(e) => format!("cancelled, still running; terminate {}", refused(e)),
            };
            if let Some(entry) = out.iter_mut().find(|(pid, _)| *pid == t.pid) {
                entry.1 = what;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::duplicate_pairs;

    fn ix(table: i64, name: &str, keys: &str, unique: bool, opc: &str) -> super::IndexSignature {
        let s = |x: &str| x.to_string();
        (
            s("public"),
            format!("t{table}"),
            s(name),
            table,
            s(keys),
            unique,
            s(""),
            s(""),
            s(opc),
            s("0"),
        )
    }

    #[test]
    fn identical_and_leading_indexes_are_paired_within_their_table_only() {
        let pairs = duplicate_pairs(vec![
            ix(1, "a_idx", "1 2", false, "10 20"),
            ix(1, "b_idx", "1 2", false, "10 20"),
            ix(1, "c_idx", "1", false, "10"),
            // Unique: never redundant, even when it leads another.
            ix(1, "d_key", "1", true, "10"),
            // Same keys on another table: no pair.
            ix(2, "e_idx", "1 2", false, "10 20"),
            // A different operator class is not the same index.
            ix(1, "f_idx", "1 2", false, "11 20"),
        ]);
        let got: Vec<(String, String, bool)> = pairs.into_iter().map(|p| (p.2, p.3, p.4)).collect();
        let want = |a: &str, b: &str, same: bool| (a.to_string(), b.to_string(), same);
        assert_eq!(
            got,
            vec![
                want("b_idx", "a_idx", true),
                want("c_idx", "a_idx", false),
                want("c_idx", "b_idx", false),
                want("d_key", "c_idx", true),
            ]
        );
    }
}

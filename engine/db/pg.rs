//! PostgreSQL: sessions, inspection, batches, journal and the advisory lock.
//! Every session sets `application_name`, `lock_timeout`,
//! `statement_timeout`, `idle_in_transaction_session_timeout` and
//! `client_connection_check_interval` in its startup packet (safety.md rule
//! 4), plus `TimeZone=UTC` so cutoffs mean one thing, and
//! `plan_cache_mode=force_custom_plan` so a prepared batch never runs on a
//! generic plan that scans the whole table.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Row};

use super::catalog::Catalog;
use super::conninfo::{ConnInfo, SslMode};
use super::{DbError, RunRecord, SessionLimits, StepRecord, sql};
use crate::db::catalog::{Column, IndexFacts, Measure, TableFacts};
use crate::plan::values::Target;

/// The advisory lock key: `dbmt` in ASCII, and 0. Advisory locks are per
/// database, so one key serves every database of a server.
pub const LOCK_CLASS: i32 = 0x6462_6d74;

/// How long connecting may take before it is an error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The connection a target means (URL, service file, `PG*` environment).
pub fn conninfo(target: &Target) -> Result<ConnInfo, DbError> {
    ConnInfo::resolve(target.expose_url(), &super::conninfo::process_env).map_err(|e| DbError {
        kind: super::ErrorKind::Connection,
        message: format!("cannot use target {}: {e}", target.redacted()),
    })
}

/// sqlx options for one resolved connection, with the TLS mode to try.
/// Built as a URL so that sqlx still reads the passfile for a connection
/// without a password, matching on the final host, port, user and database.
fn options(ci: &ConnInfo, mode: SslMode) -> Result<PgConnectOptions, DbError> {
    use std::fmt::Write as _;
    let enc = |t: &str| {
        url::form_urlencoded::byte_serialize(t.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    };
    let mut url = format!("postgres://{}", enc(&ci.user));
    if let Some(p) = ci.password() {
        let _ = write!(url, ":{}", enc(p));
    }
    let host = if ci.is_socket() {
        "localhost".to_string()
    } else if ci.host.contains(':') {
        format!("[{}]", ci.host)
    } else {
        ci.host.clone()
    };
    let _ = write!(url, "@{host}:{}/{}?sslmode={}", ci.port, enc(&ci.dbname), mode.as_str());
    if ci.is_socket() {
        let _ = write!(url, "&host={}", enc(&ci.host));
    }
    for (k, v) in [
        ("sslrootcert", &ci.sslrootcert),
        ("sslcert", &ci.sslcert),
        ("sslkey", &ci.sslkey),
    ] {
        if let Some(v) = v {
            let _ = write!(url, "&{k}={}", enc(v));
        }
    }
    PgConnectOptions::from_str(&url)
        .map_err(|e| DbError::other(format!("cannot use {ci}: {}", super::one_line(&e.to_string()))))
}

pub async fn connect(target: &Target, limits: SessionLimits) -> Result<PgConnection, DbError> {
    connect_named(target, limits, "dbmaint").await
}

pub async fn connect_named(target: &Target, limits: SessionLimits, app: &str) -> Result<PgConnection, DbError> {
    let ci = conninfo(target)?;
    let ms = |d: Duration| d.as_millis().max(1).to_string();
    let mut settings = vec![
        ("lock_timeout", ms(limits.lock_timeout)),
        ("statement_timeout", ms(limits.statement_timeout)),
        ("idle_in_transaction_session_timeout", "60000".to_string()),
        // A database's idle_session_timeout would end the lock session (and
        // with it the apply lock) or the journal session between steps.
        ("idle_session_timeout", "0".to_string()),
        ("client_connection_check_interval", "2000".to_string()),
        ("TimeZone", "UTC".to_string()),
        ("plan_cache_mode", "force_custom_plan".to_string()),
    ];
    if limits.read_only {
        settings.push(("default_transaction_read_only", "on".to_string()));
        // The inspection's catalog queries have large cost estimates and
        // short runs: JIT compiled them for 0.1 s each at 25,000 relations
        // and never paid it back.
        settings.push(("jit", "off".to_string()));
    }
    let attempt = |mode: SslMode| {
        let settings = settings.clone();
        let ci = &ci;
        async move {
            let opts = options(ci, mode)?.application_name(app).options(settings);
            tokio::time::timeout(CONNECT_TIMEOUT, sqlx::ConnectOptions::connect(&opts))
                .await
                .map_err(|_| DbError {
                    kind: super::ErrorKind::Connection,
                    message: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
                })?
                .map_err(|e| DbError {
                    kind: super::ErrorKind::Connection,
                    message: connect_error(e, ci),
                })
        }
    };
    let result = match ci.effective_sslmode() {
        // libpq's `allow`: plain first, TLS when the server insists.
        SslMode::Allow => match attempt(SslMode::Disable).await {
            Ok(c) => Ok(c),
            Err(_) => attempt(SslMode::Require).await,
        },
        mode => attempt(mode).await,
    };
    let mut conn = result.map_err(|e| DbError {
        kind: super::ErrorKind::Connection,
        message: format!("could not connect to {} ({ci}): {}", target.redacted(), e.message),
    })?;
    // Remember the server process behind the session: `check` never
    // signals this process's own sessions, told by pid (sqlx does not
    // expose the pid the server announces at startup, hence the query).
    if let Ok(pid) = sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
    {
        own_sessions().lock().map(|mut s| s.insert(pid)).ok();
    }
    Ok(conn)
}

fn own_sessions() -> &'static std::sync::Mutex<std::collections::HashSet<i32>> {
    static OWN: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<i32>>> = std::sync::OnceLock::new();
    OWN.get_or_init(Default::default)
}

/// Server pids of the sessions this process opened (a pid reused by
/// another session after ours closed stays listed: it is then spared a
/// signal, never sent one it should not get).
pub fn own_backend_pids() -> Vec<i32> {
    own_sessions()
        .lock()
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default()
}

/// The `application_name` of this process's client programs (`pg_dump`,
/// `pg_restore`, `psql`): their sessions are told by this exact name.
pub fn child_application_name() -> String {
    format!("dbmaint child {}", std::process::id())
}

/// The session's server, database, role and TLS state. The system
/// identifier needs `pg_control_system()` (granted to superusers and
/// `pg_monitor`-like roles only on some servers): without it the identity
/// rests on host, port and database name.
pub async fn identity(c: &mut PgConnection, target: &Target) -> Result<crate::db::identity::TargetIdentity, DbError> {
    let ci = conninfo(target)?;
    let row = sqlx::query(
        "SELECT current_database()::text, current_user::text, \
         (SELECT CASE WHEN ssl THEN version ELSE 'off' END FROM pg_stat_ssl WHERE pid = pg_backend_pid())",
    )
    .fetch_one(&mut *c)
    .await?;
    // In a savepoint-free way: a failed statement outside a transaction
    // leaves the session usable.
    let system: Option<String> = sqlx::query_scalar("SELECT system_identifier::text FROM pg_control_system()")
        .fetch_one(&mut *c)
        .await
        .ok();
    Ok(crate::db::identity::TargetIdentity {
        backend: crate::plan::values::Backend::Postgres,
        host: Some(ci.host.clone()),
        port: Some(ci.port),
        database: row.get(0),
        user: Some(row.get(1)),
        sslmode: Some(ci.effective_sslmode().as_str().to_string()),
        tls: row.get::<Option<String>, _>(2).or(Some("off".into())),
        system_identifier: system,
        source: String::new(),
    })
}

/// One line that says why connecting failed, in the operator's terms.
fn connect_error(e: sqlx::Error, ci: &ConnInfo) -> String {
    let raw = super::one_line(&DbError::from(e).message);
    let lower = raw.to_lowercase();
    if lower.contains("not valid for name") || lower.contains("notvalidforname") {
        format!(
            "TLS: the server's certificate is not valid for the host name `{}` (sslmode=verify-full checks it); connect by a name the certificate lists, or use sslmode=verify-ca ({raw})",
            ci.host
        )
    } else if lower.contains("unknownissuer")
        || lower.contains("unknown issuer")
        || lower.contains("invalid peer certificate")
    {
        format!("TLS: the server's certificate is not signed by a trusted CA; set sslrootcert to the CA file ({raw})")
    } else if lower.contains("server does not support tls") {
        format!(
            "TLS: the server does not offer TLS but sslmode={} requires it",
            ci.effective_sslmode().as_str()
        )
    } else if lower.contains("unsupported startup parameter") {
        format!(
            "{raw}: a connection pooler (PgBouncer?) refused dbmaint's session settings (lock_timeout, statement_timeout …); \
             connect to PostgreSQL directly"
        )
    } else if lower.contains("no pg_hba.conf entry") && lower.contains("no encryption") {
        format!("{raw}; the server accepts only TLS connections here: use sslmode=require (or verify-full)")
    } else {
        raw
    }
}

pub async fn execute(c: &mut PgConnection, statement: &str) -> Result<u64, DbError> {
    Ok(sqlx::raw_sql(sql(statement.to_string()))
        .execute(c)
        .await?
        .rows_affected())
}

pub async fn set_statement_timeout(c: &mut PgConnection, d: Duration) -> Result<(), DbError> {
    execute(c, &format!("SET statement_timeout = {}", d.as_millis().max(1)))
        .await
        .map(|_| ())
}

pub async fn execute_in_transaction(c: &mut PgConnection, statements: &[String]) -> Result<(), DbError> {
    super::statements_in(c.begin().await?, statements).await
}

// ---------------------------------------------------------------- inspection

/// Relations another session holds or awaits an ACCESS EXCLUSIVE lock on.
/// `pg_total_relation_size` / `pg_relation_size` open the relation with an
/// ACCESS SHARE lock, so on these they would queue behind a running
/// `VACUUM FULL`, `ALTER TABLE` or `LOCK TABLE` until lock_timeout failed
/// the whole diff; their size comes from `pg_class.relpages` (as of their
/// last VACUUM/ANALYZE) instead. Reading pg_locks and pg_class takes no lock.
pub const BUSY: &str = "(SELECT l.relation FROM pg_locks l WHERE l.locktype = 'relation' \
     AND l.mode = 'AccessExclusiveLock' AND l.pid <> pg_backend_pid() \
     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))";

pub const USER_RELATIONS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema', 'dbmaint') \
     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'";

/// The inspection's catalog queries, in order: server facts, tables (with
/// sizes and pg_stat counters), columns, indexes. Set-based: their number
/// does not grow with the number of tables. Tables outside `measure` (and
/// their indexes) are sized from `relpages`, not measured on disk; with
/// `Measure::Named`, the tables and indexes queries take the names as $1.
/// Public so the benchmark can time the same SQL raw.
pub fn catalog_sql(measure: &Measure) -> [String; 4] {
    // The named tables and their partitions and inheritance children.
    let named = matches!(measure, Measure::Named(_));
    let with = if named {
        "WITH RECURSIVE measured(oid) AS ( \
           SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
           WHERE c.relname = ANY($1) OR n.nspname || '.' || c.relname = ANY($1) \
           UNION SELECT h.inhrelid FROM pg_inherits h JOIN measured m ON h.inhparent = m.oid) "
    } else {
        ""
    };
    let inside = |rel: &str| {
        if named {
            format!("{rel} IN (SELECT oid FROM measured)")
        } else {
            "true".to_string()
        }
    };
    let (table_in, index_table_in) = (inside("c.oid"), inside("t.oid"));
    [
        format!(
            "SELECT current_setting('server_version'), pg_database_size(current_database())::int8, \
         coalesce(current_schema(), 'public'), current_schemas(false)::text[], \
         (SELECT coalesce(json_agg(json_build_array(n.nspname, c.relname, c.relkind::text)), '[]')::text \
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
          WHERE c.relkind IN ('v', 'm', 'f') AND {USER_RELATIONS}), \
         current_user::text, r.rolsuper, r.rolcreatedb, pg_has_role('pg_read_all_stats', 'USAGE'), \
         pg_has_role('pg_signal_backend', 'USAGE'), pg_has_role('pg_read_all_data', 'USAGE'), \
         has_database_privilege(current_database(), 'CREATE'), \
         (SELECT pg_has_role(nspowner, 'USAGE') FROM pg_namespace WHERE nspname = 'dbmaint'), current_database()::text \
         FROM pg_roles r WHERE r.rolname = current_user"
        ),
        format!(
            "{with}SELECT n.nspname, c.relname, \
           CASE WHEN c.oid IN {BUSY} OR c.reltoastrelid IN {BUSY} OR NOT {table_in} \
                THEN (c.relpages::int8 + coalesce((SELECT t.relpages FROM pg_class t WHERE t.oid = c.reltoastrelid), 0)) \
                     * current_setting('block_size')::int8 \
                ELSE pg_table_size(c.oid)::int8 END, \
           coalesce(s.n_live_tup, 0)::int8, coalesce(s.n_dead_tup, 0)::int8, \
           coalesce(s.n_mod_since_analyze, 0)::int8, \
           s.last_vacuum::text, s.last_autovacuum::text, s.last_analyze::text, s.last_autoanalyze::text, \
           age(c.relfrozenxid)::int8, c.relkind = 'p', \
           CASE WHEN c.relkind = 'r' \
             AND (coalesce(s.n_live_tup, 0) + coalesce(s.n_dead_tup, 0) = 0 \
                  OR (d.stats_reset IS NOT NULL \
                      AND coalesce(greatest(s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze), \
                                   '-infinity') < d.stats_reset)) \
             THEN (CASE WHEN c.oid IN {BUSY} OR NOT {table_in} THEN c.relpages > 0 \
                        ELSE pg_relation_size(c.oid) > 0 END) \
             ELSE false END, \
           pg_get_userbyid(c.relowner)::text, pg_has_role(c.relowner, 'USAGE'), \
           has_table_privilege(c.oid, 'SELECT'), has_table_privilege(c.oid, 'DELETE'), \
           coalesce((SELECT rolsuper FROM pg_roles WHERE oid = c.relowner), false), \
           tc.relname::text, ti.relname::text, \
           CASE WHEN ti.oid IS NULL THEN 0 \
                WHEN ti.oid IN {BUSY} OR NOT {table_in} THEN ti.relpages::int8 * current_setting('block_size')::int8 \
                ELSE pg_relation_size(ti.oid)::int8 END \
         FROM pg_class c \
         LEFT JOIN pg_class tc ON tc.oid = c.reltoastrelid \
         LEFT JOIN pg_index tx ON tx.indrelid = c.reltoastrelid \
         LEFT JOIN pg_class ti ON ti.oid = tx.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid \
         CROSS JOIN (SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()) d \
         WHERE c.relkind IN ('r', 'p') AND {USER_RELATIONS} ORDER BY 1, 2"
        ),
        format!(
            "SELECT n.nspname, c.relname, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attnum \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped AND {USER_RELATIONS} \
         ORDER BY 1, 2, a.attnum"
        ),
        format!(
            "{with}SELECT n.nspname, t.relname, i.relname, \
           CASE WHEN i.oid IN {BUSY} OR NOT {index_table_in} THEN i.relpages::int8 * current_setting('block_size')::int8 \
                ELSE pg_relation_size(i.oid)::int8 END, \
           x.indisunique, x.indisprimary, x.indisvalid AND x.indisready, x.indpred IS NOT NULL, \
           (x.indkey::int2[])[0:x.indnkeyatts - 1]::int4[], \
           x.indisexclusion, pn.nspname || '.' || pi.relname \
         FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
         JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
         LEFT JOIN pg_inherits h ON h.inhrelid = i.oid LEFT JOIN pg_class pi ON pi.oid = h.inhparent \
         LEFT JOIN pg_namespace pn ON pn.oid = pi.relnamespace \
         WHERE t.relkind IN ('r', 'p') AND {USER_RELATIONS} ORDER BY 1, 2, 3"
        ),
    ]
}

/// Live and dead tuples of the tables whose statistics are unknown (lost
/// or reset), measured by `pgstattuple_approx` when the extension is
/// installed and the role may run it: it reads only the pages the
/// visibility map does not mark all-visible, so a clean table costs
/// little, and its dead-tuple count is exact for the pages it reads. One
/// statement for all of them; a table another session holds ACCESS
/// EXCLUSIVE is left unknown (its lock would be waited for). Whatever
/// fails leaves them unknown — under a savepoint when the caller is in a
/// transaction (the diff's snapshot), so that stays usable.
async fn measure_unknown(c: &mut PgConnection, tables: &mut [TableFacts]) {
    let unknown: Vec<usize> = (0..tables.len())
        .filter(|&i| tables[i].stats_unknown && !tables[i].partitioned)
        .collect();
    if unknown.is_empty() {
        return;
    }
    let in_tx = execute(c, "SAVEPOINT dbmaint_measure").await.is_ok();
    let rows = measure_sql(c, &unknown, tables).await;
    if in_tx {
        let end = if rows.is_ok() {
            "RELEASE SAVEPOINT dbmaint_measure"
        } else {
            "ROLLBACK TO SAVEPOINT dbmaint_measure"
        };
        let _ = execute(c, end).await;
    }
    for r in rows.unwrap_or_default() {
        let i: i64 = r.get(0);
        if let Some(&t) = usize::try_from(i - 1).ok().and_then(|k| unknown.get(k)) {
            tables[t].measured_tuples = Some((r.get::<i64, _>(1).max(0) as u64, r.get::<i64, _>(2).max(0) as u64));
        }
    }
}

/// `measure_unknown`'s statements: (1-based position in `unknown`, live,
/// dead) per table measured; none when pgstattuple is not there to run.
async fn measure_sql(
    c: &mut PgConnection,
    unknown: &[usize],
    tables: &[TableFacts],
) -> Result<Vec<sqlx::postgres::PgRow>, sqlx::Error> {
    // to_regprocedure: NULL, not an error, where the function is not. The
    // locked tables are filtered before the function is called (OFFSET 0
    // keeps the planner from moving the filter after it).
    let ext: Option<String> = sqlx::query_scalar(
        "SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace \
         WHERE e.extname = 'pgstattuple' \
           AND coalesce(has_function_privilege( \
                 to_regprocedure(format('%I.pgstattuple_approx(regclass)', n.nspname)), 'EXECUTE'), false)",
    )
    .fetch_optional(&mut *c)
    .await?;
    let Some(ext) = ext else { return Ok(vec![]) };
    let schemas: Vec<String> = unknown.iter().map(|&i| tables[i].schema.clone()).collect();
    let names: Vec<String> = unknown.iter().map(|&i| tables[i].name.clone()).collect();
    let q = format!(
        "SELECT u.i::int8, (a).approx_tuple_count::int8, (a).dead_tuple_count::int8 \
         FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(s, n, i) \
         CROSS JOIN LATERAL (SELECT r FROM (SELECT format('%I.%I', u.s, u.n)::regclass AS r) y \
                             WHERE r::oid NOT IN {BUSY} OFFSET 0) x \
         CROSS JOIN LATERAL {}.pgstattuple_approx(x.r) a",
        crate::db::quote_ident(&ext)
    );
    sqlx::query(sql(q)).bind(&schemas).bind(&names).fetch_all(&mut *c).await
}

/// The catalog: the four catalog queries plus inheritance, triggers and
/// foreign keys, whatever the number of tables (in the caller's snapshot).
pub async fn catalog(c: &mut PgConnection, measure: &Measure) -> Result<Catalog, DbError> {
    let [facts, tables, columns, indexes] = catalog_sql(measure);
    // The tables and indexes queries take the measured names as $1.
    let measured = |q: String| {
        let q = sqlx::query(sql(q));
        match measure {
            Measure::All => q,
            Measure::Named(names) => q.bind(names.clone()),
        }
    };
    let head = sqlx::query(sql(facts)).fetch_one(&mut *c).await?;
    let server_version: String = head.get(0);
    let database_bytes: i64 = head.get(1);
    let default_schema: String = head.get(2);
    let search_path: Vec<String> = head.get(3);
    let other_relations = other_relations(&head.get::<String, _>(4));
    let role = crate::db::catalog::RoleFacts {
        name: head.get(5),
        superuser: head.get(6),
        createdb: head.get(7),
        read_all_stats: head.get(8),
        signal_backend: head.get(9),
        read_all_data: head.get(10),
        create_on_database: head.get(11),
        owns_journal: head.get(12),
        database: head.get(13),
    };

    let table_rows = measured(tables).fetch_all(&mut *c).await?;
    let mut tables: Vec<TableFacts> = table_rows
        .iter()
        .map(|r| TableFacts {
            schema: r.get(0),
            name: r.get(1),
            total_bytes: r.get::<i64, _>(2).max(0) as u64,
            live_tuples: r.get::<i64, _>(3).max(0) as u64,
            dead_tuples: r.get::<i64, _>(4).max(0) as u64,
            mod_since_analyze: r.get::<i64, _>(5).max(0) as u64,
            last_vacuum: r.get(6),
            last_autovacuum: r.get(7),
            last_analyze: r.get(8),
            last_autoanalyze: r.get(9),
            xid_age: r.get::<i64, _>(10).max(0) as u64,
            columns: vec![],
            primary_key: vec![],
            indexes: vec![],
            inheritance_children: vec![],
            without_rowid: false,
            delete_triggers: vec![],
            partitioned: r.get(11),
            stats_unknown: r.get(12),
            measured_tuples: None,
            partitions: vec![],
            access: crate::db::catalog::TableAccess {
                owner: r.get(13),
                owned: r.get(14),
                select: r.get(15),
                delete: r.get(16),
                owner_superuser: r.get(17),
            },
            toast: match (r.get::<Option<String>, _>(18), r.get::<Option<String>, _>(19)) {
                (Some(table), Some(index)) => Some(crate::db::catalog::Toast {
                    table,
                    index,
                    index_bytes: r.get::<i64, _>(20).max(0) as u64,
                }),
                _ => None,
            },
        })
        .collect();
    measure_unknown(&mut *c, &mut tables).await;
    // Rows of the column and index queries find their table by name: a map,
    // not a scan per row (5,000 tables have ~20,000 such rows).
    let by_name: std::collections::HashMap<(String, String), usize> = tables
        .iter()
        .enumerate()
        .map(|(i, t)| ((t.schema.clone(), t.name.clone()), i))
        .collect();
    let find = |schema: &str, name: &str| by_name.get(&(schema.to_string(), name.to_string())).copied();

    // Each table's column names by attribute number, for its indexes' keys
    // (read here once, not looked up per index in SQL).
    let mut attnames: Vec<std::collections::HashMap<i16, String>> = vec![Default::default(); tables.len()];
    let column_rows = sqlx::query(sql(columns)).fetch_all(&mut *c).await?;
    for r in &column_rows {
        let (schema, name): (String, String) = (r.get(0), r.get(1));
        if let Some(i) = find(&schema, &name) {
            attnames[i].insert(r.get(5), r.get(2));
            tables[i].columns.push(Column {
                name: r.get(2),
                data_type: r.get(3),
                not_null: r.get(4),
            });
        }
    }

    let index_rows = measured(indexes).fetch_all(&mut *c).await?;
    for r in &index_rows {
        let (schema, name): (String, String) = (r.get(0), r.get(1));
        if let Some(i) = find(&schema, &name) {
            let idx = IndexFacts {
                name: r.get(2),
                bytes: r.get::<i64, _>(3).max(0) as u64,
                unique: r.get(4),
                primary: r.get(5),
                valid: r.get(6),
                partial: r.get(7),
                // Key columns in order; 0 is an expression.
                columns: r
                    .get::<Vec<i32>, _>(8)
                    .into_iter()
                    .map(|n| {
                        i16::try_from(n)
                            .ok()
                            .and_then(|n| attnames[i].get(&n).cloned())
                            .unwrap_or_else(|| "expr".into())
                    })
                    .collect(),
                exclusion: r.get(9),
                parent_index: r.get(10),
            };
            if idx.primary {
                tables[i].primary_key = idx.columns.clone();
            }
            // The table query measured the table without its indexes
            // (`pg_table_size`): each index's size is added here, measured
            // once (`pg_total_relation_size` would stat every index file
            // a second time).
            tables[i].total_bytes += idx.bytes;
            tables[i].indexes.push(idx);
        }
    }

    // Legacy inheritance (`DELETE FROM parent` reaches the children's
    // rows) and declarative partitions.
    for r in sqlx::query(
        "SELECT pn.nspname::text, pc.relname::text, cn.nspname::text || '.' || cc.relname::text, pc.relkind = 'p' \
         FROM pg_inherits i JOIN pg_class pc ON pc.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = pc.relnamespace \
         JOIN pg_class cc ON cc.oid = i.inhrelid JOIN pg_namespace cn ON cn.oid = cc.relnamespace \
         WHERE pc.relkind IN ('r', 'p') ORDER BY 3",
    )
    .fetch_all(&mut *c)
    .await?
    {
        let (schema, name): (String, String) = (r.get(0), r.get(1));
        if let Some(i) = find(&schema, &name) {
            if r.get::<bool, _>(3) {
                tables[i].partitions.push(r.get(2));
            } else {
                tables[i].inheritance_children.push(r.get(2));
            }
        }
    }
    // Enabled user triggers that fire on DELETE (tgtype bits: 1 row, 2
    // before, 8 delete, 64 instead of), and rules on DELETE.
    for r in sqlx::query(
        "SELECT n.nspname::text, c.relname::text, tg.tgname::text, \
           CASE WHEN tg.tgtype & 2 <> 0 THEN 'BEFORE' WHEN tg.tgtype & 64 <> 0 THEN 'INSTEAD OF' ELSE 'AFTER' END, \
           tg.tgtype & 1 <> 0, p.oid::regprocedure::text, p.prosrc \
         FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_proc p ON p.oid = tg.tgfoid \
         WHERE NOT tg.tgisinternal AND tg.tgtype & 8 <> 0 AND tg.tgenabled <> 'D' \
         UNION ALL \
         SELECT schemaname::text, tablename::text, rulename::text, 'RULE', true, '', definition \
         FROM pg_rules WHERE definition ~* 'ON DELETE' ORDER BY 1, 2, 3",
    )
    .fetch_all(&mut *c)
    .await?
    {
        let (schema, name): (String, String) = (r.get(0), r.get(1));
        if let Some(i) = find(&schema, &name) {
            let timing: String = r.get(3);
            let body: String = r.get(6);
            tables[i].delete_triggers.push(crate::db::catalog::DeleteTrigger {
                name: r.get(2),
                reads: crate::db::triggerbody::Body::read(&body, timing == "BEFORE"),
                timing,
                per_row: r.get(4),
                function: r.get(5),
            });
        }
    }
    let foreign_keys = sqlx::query(
        "SELECT con.conname::text, cn.nspname::text, cc.relname::text, pn.nspname::text, pc.relname::text, \
           con.confdeltype::text, \
           (SELECT array_agg(a.attname::text ORDER BY k.o) FROM unnest(con.conkey) WITH ORDINALITY k(n, o) \
              JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n), \
           (SELECT array_agg(a.attname::text ORDER BY k.o) FROM unnest(con.confkey) WITH ORDINALITY k(n, o) \
              JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n) \
         FROM pg_constraint con \
         JOIN pg_class cc ON cc.oid = con.conrelid JOIN pg_namespace cn ON cn.oid = cc.relnamespace \
         JOIN pg_class pc ON pc.oid = con.confrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace \
         WHERE con.contype = 'f' AND con.conparentid = 0 ORDER BY 2, 3, 1",
    )
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(|r| crate::db::catalog::ForeignKey {
        name: r.get(0),
        child_schema: r.get(1),
        child_table: r.get(2),
        parent_schema: r.get(3),
        parent_table: r.get(4),
        on_delete: crate::db::catalog::OnDelete::parse(&r.get::<String, _>(5)),
        child_columns: r.get(6),
        parent_columns: r.get(7),
    })
    .collect();

    Ok(Catalog {
        server_version,
        default_schema,
        search_path,
        other_relations,
        database_bytes: database_bytes.max(0) as u64,
        tables,
        foreign_keys,
        sqlite: None,
        role: Some(role),
        // The catalog queries, inheritance, triggers and the foreign keys.
        catalog_queries: catalog_sql(measure).len() as u32 + 3,
    })
}

/// Views, materialized views and foreign tables from the facts query's
/// JSON: `[[schema, name, relkind], …]`.
fn other_relations(json: &str) -> Vec<crate::db::catalog::OtherRelation> {
    let rows: Vec<(String, String, String)> = serde_json::from_str(json).unwrap_or_default();
    rows.into_iter()
        .map(|(schema, name, kind)| crate::db::catalog::OtherRelation {
            schema,
            name,
            kind: match kind.as_str() {
                "v" => "view",
                "m" => "materialized view",
                _ => "foreign table",
            }
            .into(),
        })
        .collect()
}

// ---------------------------------------------------------------- journal

const JOURNAL_DDL: &str = "\
CREATE SCHEMA IF NOT EXISTS dbmaint;
CREATE TABLE IF NOT EXISTS dbmaint.rebuilds (
  id bigserial PRIMARY KEY,
  run_id bigint NOT NULL,
  step text NOT NULL,
  schema_name text NOT NULL,
  table_name text NOT NULL,
  index_name text NOT NULL,
  invalid_before text[] NOT NULL,
  started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  finished_at timestamptz,
  outcome text
);
CREATE TABLE IF NOT EXISTS dbmaint.runs (
  id bigserial PRIMARY KEY,
  plan text NOT NULL,
  plan_hash text NOT NULL,
  env text,
  engine_version text NOT NULL,
  host text,
  started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  finished_at timestamptz,
  status text NOT NULL DEFAULT 'running',
  exit_code int
);
CREATE TABLE IF NOT EXISTS dbmaint.steps (
  run_id bigint NOT NULL REFERENCES dbmaint.runs (id),
  step text NOT NULL,
  op text NOT NULL,
  status text NOT NULL,
  started_at timestamptz,
  finished_at timestamptz,
  rows bigint NOT NULL DEFAULT 0,
  bytes bigint NOT NULL DEFAULT 0,
  statements bigint NOT NULL DEFAULT 0,
  error text,
  rolled_back text,
  PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS dbmaint.batches (
  run_id bigint NOT NULL,
  step text NOT NULL,
  batch_no bigint NOT NULL,
  last_key text,
  rows bigint NOT NULL,
  committed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (run_id, step, batch_no)
);
CREATE TABLE IF NOT EXISTS dbmaint.cascades (
  run_id bigint NOT NULL,
  step text NOT NULL,
  batch_no bigint NOT NULL,
  foreign_key text NOT NULL,
  on_delete text NOT NULL,
  rows bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS dbmaint.backups (
  id bigserial PRIMARY KEY,
  run_id bigint,
  plan text NOT NULL,
  step text NOT NULL,
  path text NOT NULL,
  format text NOT NULL,
  bytes bigint NOT NULL,
  sha256 text NOT NULL,
  modified text NOT NULL,
  verified text NOT NULL,
  verify_note text NOT NULL DEFAULT '',
  counts text,
  created_at text NOT NULL,
  verified_at text,
  removed_at text,
  database text NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS dbmaint.scratch_databases (
  name text NOT NULL,
  server text NOT NULL,
  run_id bigint,
  created_at text NOT NULL,
  dropped_at text
);";

pub async fn journal_setup(c: &mut PgConnection) -> Result<(), DbError> {
    let exists: bool = sqlx::query_scalar(
        "SELECT to_regclass('dbmaint.batches') IS NOT NULL AND to_regclass('dbmaint.rebuilds') IS NOT NULL \
           AND to_regclass('dbmaint.cascades') IS NOT NULL AND to_regclass('dbmaint.backups') IS NOT NULL \
           AND to_regclass('dbmaint.scratch_databases') IS NOT NULL",
    )
    .fetch_one(&mut *c)
    .await?;
    if !exists {
        execute(c, JOURNAL_DDL).await?;
    }
    Ok(())
}

pub async fn journal_run_started(c: &mut PgConnection, run: &RunRecord) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO dbmaint.runs (plan, plan_hash, env, engine_version, host) VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(&run.plan)
    .bind(&run.plan_hash)
    .bind(&run.env)
    .bind(&run.engine_version)
    .bind(&run.host)
    .fetch_one(c)
    .await?)
}

pub async fn journal_step(c: &mut PgConnection, run_id: i64, s: &StepRecord) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO dbmaint.steps (run_id, step, op, status, started_at, finished_at, rows, bytes, statements, error, rolled_back) \
         VALUES ($1, $2, $3, $4, $5::timestamptz, $6::timestamptz, $7, $8, $9, $10, $11) \
         ON CONFLICT (run_id, step) DO UPDATE SET status = EXCLUDED.status, started_at = EXCLUDED.started_at, \
         finished_at = EXCLUDED.finished_at, rows = EXCLUDED.rows, bytes = EXCLUDED.bytes, \
         statements = EXCLUDED.statements, error = EXCLUDED.error, rolled_back = EXCLUDED.rolled_back",
    )
    .bind(run_id)
    .bind(&s.step)
    .bind(&s.op)
    .bind(&s.status)
    .bind(none_if_empty(&s.started_at))
    .bind(none_if_empty(&s.finished_at))
    .bind(s.rows as i64)
    .bind(s.bytes as i64)
    .bind(s.statements as i64)
    .bind(&s.error)
    .bind(&s.rolled_back)
    .execute(c)
    .await?;
    Ok(())
}

fn none_if_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

pub async fn journal_run_finished(
    c: &mut PgConnection,
    run_id: i64,
    status: &str,
    exit_code: i32,
) -> Result<(), DbError> {
    sqlx::query("UPDATE dbmaint.runs SET finished_at = clock_timestamp(), status = $2, exit_code = $3 WHERE id = $1")
        .bind(run_id)
        .bind(status)
        .bind(exit_code)
        .execute(c)
        .await?;
    Ok(())
}

pub async fn journal_close_interrupted(c: &mut PgConnection) -> Result<Vec<(i64, i64)>, DbError> {
    let mut tx = sqlx::Connection::begin(&mut *c).await?;
    sqlx::query(
        "UPDATE dbmaint.steps s SET status = 'interrupted', finished_at = clock_timestamp(), \
           rows = (SELECT coalesce(sum(b.rows), 0) FROM dbmaint.batches b WHERE b.run_id = s.run_id AND b.step = s.step), \
           error = 'the process ended before the step finished' \
         WHERE s.status = 'running'",
    )
    .execute(&mut *tx)
    .await?;
    let runs: Vec<(i64, i64)> = sqlx::query_as(
        "UPDATE dbmaint.runs r SET status = 'interrupted', finished_at = clock_timestamp() \
         WHERE r.status = 'running' \
         RETURNING r.id, (SELECT coalesce(sum(b.rows), 0)::int8 FROM dbmaint.batches b WHERE b.run_id = r.id)",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(runs)
}

/// The last key the latest earlier run of `step` committed, when that run
/// did not finish the step (deferred, interrupted, failed): where a rerun
/// of a key-window walk resumes.
pub async fn journal_resume_key(c: &mut PgConnection, step: &str, run_id: i64) -> Result<Option<String>, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT b.last_key FROM dbmaint.batches b \
         JOIN dbmaint.steps s ON s.run_id = b.run_id AND s.step = b.step \
         WHERE b.step = $1 AND s.status IN ('deferred', 'interrupted', 'failed') \
           AND b.run_id = (SELECT max(run_id) FROM dbmaint.steps WHERE step = $1 AND run_id < $2) \
         ORDER BY b.batch_no DESC LIMIT 1",
    )
    .bind(step)
    .bind(run_id)
    .fetch_optional(&mut *c)
    .await?
    .flatten())
}

pub async fn history(c: &mut PgConnection, f: &super::HistoryFilter) -> Result<serde_json::Value, DbError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('dbmaint.runs') IS NOT NULL")
        .fetch_one(&mut *c)
        .await?;
    if !exists {
        return Ok(serde_json::json!({"runs": []}));
    }
    let runs: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT json_build_object('id', id, 'plan', plan, 'plan_hash', plan_hash, 'env', env, \
           'engine_version', engine_version, 'host', host, \
           'started_at', to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
           'finished_at', to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
           'status', status, 'exit_code', exit_code, \
           'duration_ms', (extract(epoch FROM finished_at - started_at) * 1000)::int8, \
           'steps', (SELECT coalesce(json_agg(json_build_object('step', s.step, 'op', s.op, 'status', s.status, \
                'duration_ms', (extract(epoch FROM s.finished_at - s.started_at) * 1000)::int8, \
                'started_at', to_char(s.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                'finished_at', to_char(s.finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                'rows', s.rows, 'bytes', s.bytes, 'statements', s.statements, 'error', s.error, \
                'rolled_back', s.rolled_back, \
                'batches', (SELECT count(*) FROM dbmaint.batches b WHERE b.run_id = s.run_id AND b.step = s.step)) \
                ORDER BY s.started_at NULLS LAST, s.step), '[]'::json) FROM dbmaint.steps s WHERE s.run_id = r.id)) \
         FROM dbmaint.runs r WHERE ($1::int8 IS NULL OR id = $1) AND ($3::text IS NULL OR plan = $3) \
           AND ($4::timestamptz IS NULL OR started_at >= $4::timestamptz) AND ($5::text IS NULL OR status = $5) \
         ORDER BY id DESC LIMIT $2",
    )
    .bind(f.run)
    .bind(f.limit as i64)
    .bind(&f.plan)
    .bind(&f.since)
    .bind(&f.status)
    .fetch_all(c)
    .await?;
    Ok(serde_json::json!({ "runs": runs }))
}

/// The last run that succeeded, of `plan` when given.
pub async fn last_success(c: &mut PgConnection, plan: Option<&str>) -> Result<Option<(i64, String, String)>, DbError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('dbmaint.runs') IS NOT NULL")
        .fetch_one(&mut *c)
        .await?;
    if !exists {
        return Ok(None);
    }
    Ok(sqlx::query_as(
        "SELECT id, plan, to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
         FROM dbmaint.runs WHERE status = 'succeeded' AND finished_at IS NOT NULL \
           AND ($1::text IS NULL OR plan = $1) ORDER BY finished_at DESC LIMIT 1",
    )
    .bind(plan)
    .fetch_optional(c)
    .await?)
}

/// Of plan `plan`'s steps that succeeded, the last ten runs of each:
/// (step, duration ms, rows, bytes), newest first; none without a journal.
pub async fn step_history(c: &mut PgConnection, plan: &str) -> Result<Vec<(String, i64, i64, i64)>, DbError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('dbmaint.steps') IS NOT NULL")
        .fetch_one(&mut *c)
        .await?;
    if !exists {
        return Ok(vec![]);
    }
    Ok(sqlx::query_as(
        "SELECT step, ms, rows, bytes FROM ( \
           SELECT s.step, (extract(epoch FROM s.finished_at - s.started_at) * 1000)::int8 AS ms, s.rows, s.bytes, \
                  row_number() OVER (PARTITION BY s.step ORDER BY s.run_id DESC) AS n \
           FROM dbmaint.steps s JOIN dbmaint.runs r ON r.id = s.run_id \
           WHERE r.plan = $1 AND s.status = 'succeeded' AND s.started_at IS NOT NULL AND s.finished_at IS NOT NULL) x \
         WHERE n <= 10 ORDER BY step, n",
    )
    .bind(plan)
    .fetch_all(c)
    .await?)
}

// ---------------------------------------------------------------- lock

/// Tries the advisory lock once; never waits (safety.md rule 3). On
/// refusal, names the session that holds it.
pub async fn try_lock(c: &mut PgConnection) -> Result<Result<(), String>, DbError> {
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, 0)")
        .bind(LOCK_CLASS)
        .fetch_one(&mut *c)
        .await?;
    if got {
        return Ok(Ok(()));
    }
    let holder: Option<(i32, String, String, String)> = sqlx::query_as(
        "SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.client_addr::text, 'local socket'), \
           to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.classid = $1::oid AND l.objid = 0 AND l.granted \
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(LOCK_CLASS as i64)
    .fetch_optional(&mut *c)
    .await?;
    Ok(Err(match holder {
        Some((pid, app, addr, since)) => {
            format!("backend pid {pid} (`{app}`, from {addr}, connected since {since})")
        }
        None => "another session (it released the lock just now; try again)".to_string(),
    }))
}

/// Refuses a connection that reaches PostgreSQL through a pooler in
/// transaction mode (PgBouncer's `pool_mode = transaction`): there a
/// session-level advisory lock and prepared statements stay on a server
/// session the next transaction may not get. Detected by what a pooler does
/// and a direct connection never can: a second connection, holding a
/// transaction open, is given the server session this one just used, or
/// this one's next transaction runs in another session. Simple-protocol
/// queries only, as prepared statements are what a pooler breaks.
pub async fn refuse_transaction_pooling(
    c: &mut PgConnection,
    target: &Target,
    limits: SessionLimits,
) -> Result<(), DbError> {
    async fn pid(c: &mut PgConnection) -> Result<i64, DbError> {
        let row = sqlx::raw_sql("SELECT pg_backend_pid()::int8")
            .fetch_one(&mut *c)
            .await?;
        Ok(row.get::<i64, _>(0))
    }
    let first = pid(c).await?;
    let mut other = connect_named(target, limits, "dbmaint pooler check").await?;
    sqlx::raw_sql("BEGIN").execute(&mut other).await?;
    let others = pid(&mut other).await;
    // A pool of one server session makes this wait for `other`: a direct
    // connection answers at once, so a long wait is itself the sign.
    let second = tokio::time::timeout(Duration::from_secs(3), pid(c)).await;
    let _ = sqlx::raw_sql("ROLLBACK").execute(&mut other).await;
    let _ = other.close().await;
    let others = others?;
    let second = match second {
        Ok(p) => p?,
        Err(_) => -1,
    };
    if others == first || second != first {
        return Err(DbError {
            kind: super::ErrorKind::Connection,
            message: format!(
                "{} reaches PostgreSQL through a connection pooler in transaction mode (PgBouncer?): one connection ran in \
                 server sessions {first} and {second}, and another connection was given session {others}; dbmaint's apply lock \
                 and prepared statements are session state and would silently misbehave: connect to PostgreSQL directly \
                 (or through a pool in session mode)",
                target.redacted()
            ),
        });
    }
    Ok(())
}

/// Whether this session still holds the apply lock. An error (the session
/// was terminated, the server went away) means it does not.
pub async fn holds_lock(c: &mut PgConnection) -> Result<bool, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() \
           AND classid = $1::oid AND objid = 0 AND granted)",
    )
    .bind(LOCK_CLASS as i64)
    .fetch_one(&mut *c)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(raw: &str) -> String {
        let ci = ConnInfo::resolve("postgres://app@db.example.com/app", &|_| None).expect("conninfo");
        connect_error(sqlx::Error::Protocol(raw.into()), &ci)
    }

    /// Each TLS library words an untrusted certificate its own way; every
    /// wording gets the same advice (cargo-mutants: the `||` between them
    /// as `&&` was missed while only rustls' wording was tested).
    #[test]
    fn an_untrusted_certificate_in_any_wording_gets_the_sslrootcert_advice() {
        for raw in [
            "invalid peer certificate: UnknownIssuer",
            "certificate verify failed: unknown issuer",
            "UnknownIssuer",
            "invalid peer certificate: BadSignature",
        ] {
            assert!(
                said(raw).contains("set sslrootcert to the CA file"),
                "{raw}: {}",
                said(raw)
            );
        }
        assert!(!said("connection refused").contains("sslrootcert"));
    }

    /// Only a refusal of a connection without encryption says "use TLS"; a
    /// missing pg_hba.conf entry for a TLS connection is another matter.
    #[test]
    fn only_a_refused_plain_connection_is_told_to_use_tls() {
        let plain = said(r#"no pg_hba.conf entry for host "10.0.0.5", user "app", database "app", no encryption"#);
        assert!(plain.contains("use sslmode=require"), "{plain}");
        let tls = said(r#"no pg_hba.conf entry for host "10.0.0.5", user "app", database "app", SSL encryption"#);
        assert!(!tls.contains("use sslmode=require"), "{tls}");
    }
}

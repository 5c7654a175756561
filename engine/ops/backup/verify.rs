//! `verify: restore` — restore the new backup and compare row counts with
//! the source *as the backup saw it*, so live writes during the backup do
//! not make a good backup look bad (nor a bad one look good).
//!
//! - PostgreSQL: a read-only REPEATABLE READ transaction exports its
//!   snapshot; `pg_dump --snapshot` dumps exactly that snapshot, and the
//!   same transaction counts every table. The dump is restored into a
//!   scratch database (`dbmaint_verify_<pid>`, from `template0`; needs
//!   CREATEDB), counted, and dropped whatever happened.
//! - SQLite: the copy is itself a database. `PRAGMA data_version` before
//!   `VACUUM INTO` and after counting the source on the same connection
//!   tells whether another connection committed meanwhile: if not, the
//!   counts are compared exactly. If so (another step of the run, or the
//!   application), the source is counted again and compared exactly; only
//!   if that differs too is the comparison reduced to the table list, and
//!   the result says so. The journal's own `dbmaint_*` tables, written by
//!   this very run, are left out of the comparison.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::db::query::{Exec, execute_raw, query};
use crate::db::{Conn, DbError, SessionLimits, quote_literal, quote_name};
use crate::plan::values::Target;

/// Why `verify: restore` could not vouch for a backup.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot connect for `verify: restore`: {0}")]
    Connect(#[source] DbError),
    #[error("cannot export a snapshot for `verify: restore`: {0}")]
    Snapshot(#[source] DbError),
    #[error("counting rows for `verify: restore` failed: {0}")]
    Count(#[source] DbError),
    #[error("cannot drop a stale scratch database {db}: {source}")]
    StaleScratch { db: String, source: DbError },
    #[error(
        "`verify: restore` cannot create its scratch database {db}: {source}; grant CREATEDB to the plan's user or use `verify: read`"
    )]
    CreateScratch { db: String, source: DbError },
    #[error("could not drop the scratch database {db}: {source}; drop it by hand")]
    DropScratch { db: String, source: DbError },
    /// The restored copy's counts differ from the source's.
    #[error("{0}")]
    Mismatch(String),
}

/// Row counts per table, by quoted name.
pub type Counts = BTreeMap<String, i64>;

/// An open snapshot the dump and the counts share.
#[derive(Debug)]
pub struct PgSnapshot {
    conn: Conn,
    pub id: String,
}

/// Opens the exporting transaction. It stays open (idle while `pg_dump`
/// runs, hence no idle timeout for it) until [`PgSnapshot::counts`].
pub async fn pg_snapshot(target: &Target, statement_timeout: Duration) -> Result<PgSnapshot, VerifyError> {
    let limits = SessionLimits {
        lock_timeout: Duration::from_secs(5),
        statement_timeout,
        read_only: true,
    };
    let mut conn = crate::db::connect_named(target, limits, "dbmaint verify")
        .await
        .map_err(VerifyError::Connect)?;
    let id: String = async {
        execute_raw(
            &mut conn,
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL idle_in_transaction_session_timeout = 0",
        )
        .await?;
        query("SELECT pg_export_snapshot()").scalar(&mut conn).await
    }
    .await
    .map_err(VerifyError::Snapshot)?;
    Ok(PgSnapshot { conn, id })
}

impl PgSnapshot {
    /// Counts every table in the snapshot, then ends the transaction.
    pub async fn counts(mut self) -> Result<Counts, VerifyError> {
        let counts = pg_counts(&mut self.conn).await.map_err(VerifyError::Count);
        let _ = execute_raw(&mut self.conn, "COMMIT").await;
        self.conn.close().await;
        counts
    }
}

/// Every ordinary table (and partition) outside the system schemas.
const PG_TABLES: &str = "SELECT n.nspname::text, c.relname::text FROM pg_class c \
     JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
       AND n.nspname !~ '^pg_(toast|temp)' AND n.nspname <> 'dbmaint' ORDER BY 1, 2";

/// Row counts of every table of a PostgreSQL database but dbmaint's own.
pub async fn pg_counts(c: &mut impl Exec) -> Result<Counts, DbError> {
    let tables: Vec<(String, String)> = query(PG_TABLES).fetch_all_as(&mut *c).await?;
    let names: Vec<String> = tables.iter().map(|(s, t)| quote_name(Some(s), t)).collect();
    let Some(text) = count_query(&names) else {
        return Ok(Counts::new());
    };
    let rows: Vec<(String, i64)> = query(text).fetch_all_as(&mut *c).await?;
    Ok(rows.into_iter().collect())
}

/// One statement counting every table, whatever their number.
fn count_query(names: &[String]) -> Option<String> {
    (!names.is_empty()).then(|| {
        names
            .iter()
            .map(|n| format!("SELECT {}, count(*) FROM {n}", quote_literal(n)))
            .collect::<Vec<_>>()
            .join(" UNION ALL ")
    })
}

/// Compares counts; `Ok(summary)` or `Err(first differences)`.
pub fn compare(source: &Counts, restored: &Counts, exact: bool) -> Result<String, VerifyError> {
    let mut problems = vec![];
    for (table, n) in source {
        match restored.get(table) {
            None => problems.push(format!("{table} is missing")),
            Some(m) if exact && m != n => problems.push(format!("{table} has {m} rows, the source had {n}")),
            _ => {}
        }
    }
    for table in restored.keys().filter(|t| !source.contains_key(*t)) {
        problems.push(format!("{table} is not in the source"));
    }
    if problems.is_empty() {
        let rows: i64 = source.values().sum();
        Ok(if exact {
            format!(
                "restored and compared: {} tables, {} rows match",
                source.len(),
                crate::run::execplan::human_count(rows.max(0) as u64)
            )
        } else {
            format!(
                "restored: all {} tables present; row counts not compared, the database was written during the backup",
                source.len()
            )
        })
    } else {
        let more = problems.len().saturating_sub(5);
        problems.truncate(5);
        Err(VerifyError::Mismatch(format!(
            "verification by restore failed: {}{}",
            problems.join("; "),
            if more > 0 {
                format!(" (and {more} more)")
            } else {
                String::new()
            }
        )))
    }
}

/// A scratch database on the target's server, dropped by [`Scratch::drop_db`].
#[derive(Debug)]
pub struct Scratch {
    admin: Conn,
    name: String,
    pub target: Target,
}

/// A session on the scratch server to create or drop databases.
async fn admin_session(server: &Target) -> Result<Conn, VerifyError> {
    let limits = SessionLimits {
        lock_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(300),
        read_only: false,
    };
    crate::db::connect_named(server, limits, "dbmaint verify")
        .await
        .map_err(VerifyError::Connect)
}

/// Creates the scratch database `name` on `server` (the caller journaled
/// it first, so a killed run's copy is found and dropped by the next).
pub async fn create_scratch(server: &Target, name: &str) -> Result<Scratch, VerifyError> {
    let mut admin = admin_session(server).await?;
    let scratch_target = server.with_database(name);
    let quoted = crate::db::quote_ident(name);
    execute_raw(&mut admin, &format!("CREATE DATABASE {quoted} TEMPLATE template0"))
        .await
        .map_err(|source| VerifyError::CreateScratch {
            db: quoted.clone(),
            source,
        })?;
    Ok(Scratch {
        admin,
        name: name.to_string(),
        target: scratch_target,
    })
}

/// A restored plain dump brings the source's logical-replication
/// subscriptions (created disabled, `connect = false`), and PostgreSQL
/// refuses to drop a database that has one, even `WITH (FORCE)`. Each is
/// detached from its slot (which lives on the publisher and is not this
/// copy's to drop) and dropped first. Best effort: a database that is
/// gone or cannot be reached has none to drop, and when this fails the
/// DROP DATABASE says why.
async fn drop_subscriptions(scratch: &Target) {
    let Ok(mut c) = admin_session(scratch).await else {
        return;
    };
    let names: Result<Vec<String>, DbError> = query(
        "SELECT subname::text FROM pg_subscription \
         WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .scalars(&mut c)
    .await;
    for name in names.unwrap_or_default() {
        let quoted = crate::db::quote_ident(&name);
        for sql in [
            format!("ALTER SUBSCRIPTION {quoted} DISABLE"),
            format!("ALTER SUBSCRIPTION {quoted} SET (slot_name = NONE)"),
            format!("DROP SUBSCRIPTION {quoted}"),
        ] {
            if execute_raw(&mut c, &sql).await.is_err() {
                break;
            }
        }
    }
    c.close().await;
}

/// Drops a scratch database an earlier run left on `server`.
pub async fn drop_leftover(server: &Target, name: &str) -> Result<(), VerifyError> {
    drop_subscriptions(&server.with_database(name)).await;
    let mut admin = admin_session(server).await?;
    let quoted = crate::db::quote_ident(name);
    let r = execute_raw(&mut admin, &format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")).await;
    admin.close().await;
    r.map(|_| ())
        .map_err(|source| VerifyError::StaleScratch { db: quoted, source })
}

impl Scratch {
    /// Counts the restored tables.
    pub async fn counts(&self) -> Result<Counts, VerifyError> {
        let limits = SessionLimits {
            lock_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(3600),
            read_only: true,
        };
        let mut c = crate::db::connect_named(&self.target, limits, "dbmaint verify")
            .await
            .map_err(VerifyError::Connect)?;
        let counts = pg_counts(&mut c).await.map_err(VerifyError::Count);
        c.close().await;
        counts
    }

    /// Drops the scratch database; `Err` names what is left for a person.
    pub async fn drop_db(mut self) -> Result<(), VerifyError> {
        drop_subscriptions(&self.target).await;
        let quoted = crate::db::quote_ident(&self.name);
        let r = execute_raw(
            &mut self.admin,
            &format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"),
        )
        .await;
        self.admin.close().await;
        r.map(|_| ())
            .map_err(|source| VerifyError::DropScratch { db: quoted, source })
    }
}

/// SQLite: `VACUUM INTO` and count on one connection, bracketed by
/// `data_version`; returns the source counts and whether they are exact.
pub async fn sqlite_copy_and_count(c: &mut impl Exec, path: &str) -> Result<(Counts, bool), DbError> {
    let v1: i64 = query("PRAGMA data_version").scalar(&mut *c).await?;
    crate::db::sqlite::vacuum_into(c, path).await?;
    let counts = sqlite_counts(c).await?;
    let v2: i64 = query("PRAGMA data_version").scalar(&mut *c).await?;
    Ok((counts, v1 == v2))
}

/// Row counts of every table but SQLite's own and the journal's.
pub async fn sqlite_counts(c: &mut impl Exec) -> Result<Counts, DbError> {
    let tables: Vec<String> = query(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
         AND name NOT LIKE 'dbmaint\\_%' ESCAPE '\\' ORDER BY name",
    )
    .scalars(&mut *c)
    .await?;
    let names: Vec<String> = tables.iter().map(|t| quote_name(None, t)).collect();
    let Some(text) = count_query(&names) else {
        return Ok(Counts::new());
    };
    let rows: Vec<(String, i64)> = query(text).fetch_all_as(&mut *c).await?;
    Ok(rows.into_iter().collect())
}

/// Counts the tables of a SQLite file opened read-only.
pub async fn sqlite_file_counts(path: &str) -> Result<Counts, DbError> {
    let mut c = crate::db::open_sqlite_file(std::path::Path::new(path), true, false).await?;
    let counts = sqlite_counts(&mut c).await;
    c.close().await;
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(items: &[(&str, i64)]) -> Counts {
        items.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    #[test]
    fn compare_names_missing_extra_and_different_tables() {
        let src = counts(&[("\"a\"", 3), ("\"b\"", 5)]);
        assert!(compare(&src, &src, true).is_ok_and(|s| s.contains("2 tables, 8 rows match")));
        let err = compare(&src, &counts(&[("\"a\"", 2), ("\"c\"", 1)]), true)
            .expect_err("differs")
            .to_string();
        assert!(err.contains("\"a\" has 2 rows, the source had 3"), "{err}");
        assert!(err.contains("\"b\" is missing"), "{err}");
        assert!(err.contains("\"c\" is not in the source"), "{err}");
        // Not exact: counts may differ, tables may not.
        assert!(compare(&src, &counts(&[("\"a\"", 9), ("\"b\"", 9)]), false).is_ok());
    }

    #[test]
    fn one_statement_counts_every_table() {
        let q = count_query(&["\"a\"".into(), "\"b\"\"x\"".into()]).expect("query");
        assert_eq!(
            q,
            "SELECT '\"a\"', count(*) FROM \"a\" UNION ALL SELECT '\"b\"\"x\"', count(*) FROM \"b\"\"x\""
        );
        assert!(count_query(&[]).is_none());
    }
}

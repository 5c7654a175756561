//! Realistic application data for the demo, the tests and the benchmarks:
//! a Django-style schema (audit log and task log over three years,
//! soft-deleted failed tasks, sessions half expired), reproducible from a
//! seed. The same rows seed SQLite (`dbmaint demo`) and PostgreSQL (tests).

use chrono::{DateTime, Duration, Utc};

use crate::db::DbError;
use crate::db::query::{Exec, execute_raw, query};

/// A small, fast, reproducible generator (splitmix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// How much data: `scale` 1 gives about 58,000 rows.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    pub audit_logs: u64,
    pub task_logs: u64,
    pub sessions: u64,
    pub failed_tasks: u64,
}

impl Size {
    pub fn scaled(scale: f64) -> Self {
        let n = |base: f64| (base * scale).round().max(1.0) as u64;
        Self {
            audit_logs: n(30_000.0),
            task_logs: n(20_000.0),
            sessions: n(5_000.0),
            failed_tasks: n(3_000.0),
        }
    }
}

/// One generated value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Int(i64),
    Text(String),
    Null,
}

/// A table of the demo schema and its generated rows.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: &'static str,
    /// Column name and (PostgreSQL type, SQLite type).
    pub columns: Vec<(&'static str, &'static str, &'static str)>,
    pub indexes: Vec<(&'static str, &'static str)>,
    pub rows: Vec<Vec<Val>>,
}

fn ts(t: DateTime<Utc>) -> Val {
    Val::Text(t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// A moment in the last `days` days before `now`, uniformly.
fn within(rng: &mut Rng, now: DateTime<Utc>, days: i64) -> DateTime<Utc> {
    now - Duration::seconds(rng.below((days * 86_400) as u64) as i64 + 1)
}

/// Generates the demo data relative to `now`.
pub fn generate(seed: u64, size: Size, now: DateTime<Utc>) -> Vec<Table> {
    let mut rng = Rng::new(seed);
    let actions = ["login", "logout", "update", "create", "delete", "export", "view"];
    let objects = ["invoice", "customer", "order", "user", "report"];
    let tasks = ["send_email", "sync_crm", "build_report", "charge_card", "resize_image"];
    let statuses = ["ok", "ok", "ok", "ok", "retry", "error"];

    // Audit log: ids grow with time, as an append-only log's do.
    let mut audit: Vec<DateTime<Utc>> = (0..size.audit_logs).map(|_| within(&mut rng, now, 3 * 365)).collect();
    audit.sort();
    let audit_rows = audit
        .iter()
        .enumerate()
        .map(|(i, t)| {
            vec![
                Val::Int(i as i64 + 1),
                ts(*t),
                Val::Int(rng.below(500) as i64 + 1),
                Val::Text(rng.pick(&actions).into()),
                Val::Text(rng.pick(&objects).into()),
                Val::Int(rng.below(100_000) as i64),
                Val::Text(format!("{{\"ip\": \"10.0.{}.{}\"}}", rng.below(255), rng.below(255))),
            ]
        })
        .collect();

    let mut task: Vec<DateTime<Utc>> = (0..size.task_logs).map(|_| within(&mut rng, now, 3 * 365)).collect();
    task.sort();
    let task_rows = task
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let status = rng.pick(&statuses);
            vec![
                Val::Int(i as i64 + 1),
                ts(*t),
                Val::Text(rng.pick(&tasks).into()),
                Val::Text(status.into()),
                Val::Int(rng.below(30_000) as i64),
                if status == "ok" {
                    Val::Null
                } else {
                    Val::Text("upstream timeout".into())
                },
            ]
        })
        .collect();

    // Sessions: about half expired, the rest valid for up to two weeks.
    let session_rows = (0..size.sessions)
        .map(|i| {
            let expire = if rng.below(2) == 0 {
                within(&mut rng, now, 60)
            } else {
                now + Duration::seconds(rng.below(14 * 86_400) as i64 + 60)
            };
            vec![
                Val::Text(format!("{:016x}{:016x}{i:08x}", rng.next_u64(), rng.next_u64())),
                Val::Text("e30:1t2Xq:session".into()),
                ts(expire),
            ]
        })
        .collect();

    // Failed tasks: soft-deleted (deleted_at set) for about 60%, over three years.
    let mut failed: Vec<DateTime<Utc>> = (0..size.failed_tasks).map(|_| within(&mut rng, now, 3 * 365)).collect();
    failed.sort();
    let failed_rows = failed
        .iter()
        .enumerate()
        .map(|(i, created)| {
            let deleted = if rng.below(10) < 6 {
                let age = (now - *created).num_seconds().max(2) as u64;
                ts(now - Duration::seconds(rng.below(age) as i64 + 1))
            } else {
                Val::Null
            };
            vec![
                Val::Int(i as i64 + 1),
                Val::Text(rng.pick(&tasks).into()),
                Val::Text("Traceback (most recent call last): ...".into()),
                ts(*created),
                deleted,
            ]
        })
        .collect();

    vec![
        Table {
            name: "core_audit_log",
            columns: vec![
                ("id", "bigint", "INTEGER"),
                ("created_at", "timestamptz", "datetime"),
                ("actor_id", "integer", "integer"),
                ("action", "text", "varchar(32)"),
                ("object_type", "text", "varchar(32)"),
                ("object_id", "bigint", "integer"),
                ("payload", "text", "text"),
            ],
            indexes: vec![("core_audit_log_created_at_idx", "created_at")],
            rows: audit_rows,
        },
        Table {
            name: "core_task_log",
            columns: vec![
                ("id", "bigint", "INTEGER"),
                ("created_at", "timestamptz", "datetime"),
                ("task_name", "text", "varchar(64)"),
                ("status", "text", "varchar(16)"),
                ("duration_ms", "integer", "integer"),
                ("message", "text", "text"),
            ],
            indexes: vec![("core_task_log_created_at_idx", "created_at")],
            rows: task_rows,
        },
        Table {
            name: "django_session",
            columns: vec![
                ("session_key", "varchar(40)", "varchar(40)"),
                ("session_data", "text", "text"),
                ("expire_date", "timestamptz", "datetime"),
            ],
            indexes: vec![("django_session_expire_date_idx", "expire_date")],
            rows: session_rows,
        },
        Table {
            name: "failed_task",
            columns: vec![
                ("id", "bigint", "INTEGER"),
                ("task_name", "text", "varchar(64)"),
                ("error", "text", "text"),
                ("created_at", "timestamptz", "datetime"),
                ("deleted_at", "timestamptz", "datetime"),
            ],
            indexes: vec![("failed_task_deleted_at_idx", "deleted_at")],
            rows: failed_rows,
        },
    ]
}

fn ddl(t: &Table, postgres: bool) -> Vec<String> {
    let cols: Vec<String> = t
        .columns
        .iter()
        .enumerate()
        .map(|(i, (n, pg, lite))| {
            let ty = if postgres { pg } else { lite };
            let pk = if i == 0 { " PRIMARY KEY" } else { "" };
            let not_null = if *n == "deleted_at" || *n == "message" {
                ""
            } else {
                " NOT NULL"
            };
            format!("{n} {ty}{pk}{not_null}")
        })
        .collect();
    let mut out = vec![format!("CREATE TABLE {} ({})", t.name, cols.join(", "))];
    for (idx, col) in &t.indexes {
        out.push(format!("CREATE INDEX {idx} ON {} ({col})", t.name));
    }
    out
}

/// Writes the tables into a new SQLite file at `path` (replacing it).
/// `PRAGMA application_id` of the databases `dbmaint demo` makes (`dbmd`),
/// so it replaces only its own files.
pub const DEMO_APPLICATION_ID: u32 = 0x6462_6d64;

/// Whether `path` is a SQLite database with the demo's application id (read
/// from the header at offset 68, without opening it as a database).
pub fn is_demo_database(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut header = [0u8; 72];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .is_ok_and(|()| {
            header.starts_with(b"SQLite format 3\0")
                && u32::from_be_bytes([header[68], header[69], header[70], header[71]]) == DEMO_APPLICATION_ID
        })
}

pub async fn seed_sqlite(path: &std::path::Path, tables: &[Table]) -> Result<(), DbError> {
    let _ = std::fs::remove_file(path);
    let mut c = crate::db::open_sqlite_file(path, false, true).await?;
    execute_raw(
        &mut c,
        &format!("PRAGMA application_id = {}", DEMO_APPLICATION_ID as i32),
    )
    .await?;
    let mut tx = c.begin().await?;
    for t in tables {
        for s in ddl(t, false) {
            execute_raw(&mut tx, &s).await?;
        }
        let params = vec!["?"; t.columns.len()].join(", ");
        let insert = format!("INSERT INTO {} VALUES ({params})", t.name);
        for row in &t.rows {
            let mut q = query(insert.clone());
            for v in row {
                q = match v {
                    Val::Int(i) => q.bind(*i),
                    Val::Text(s) => q.bind(s.clone()),
                    Val::Null => q.bind(None::<String>),
                };
            }
            q.execute(&mut tx).await?;
        }
    }
    tx.commit().await?;
    execute_raw(&mut c, "ANALYZE").await?;
    c.close().await;
    Ok(())
}

/// Creates and fills the tables in a PostgreSQL database, in chunks of
/// multi-row INSERTs with bound values.
pub async fn seed_postgres(c: &mut impl Exec, tables: &[Table]) -> Result<(), DbError> {
    for t in tables {
        for s in ddl(t, true) {
            execute_raw(&mut *c, &s).await?;
        }
        let width = t.columns.len();
        for chunk in t.rows.chunks(1000) {
            let mut text = format!("INSERT INTO {} VALUES ", t.name);
            let mut n = 0;
            for (r, _) in chunk.iter().enumerate() {
                if r > 0 {
                    text.push_str(", ");
                }
                let cells: Vec<String> = t
                    .columns
                    .iter()
                    .map(|(_, ty, _)| {
                        n += 1;
                        format!("${n}::text::{ty}")
                    })
                    .collect();
                text.push_str(&format!("({})", cells.join(", ")));
            }
            let mut q = query(text);
            for row in chunk {
                debug_assert_eq!(row.len(), width);
                for v in row {
                    q = match v {
                        Val::Int(i) => q.bind(i.to_string()),
                        Val::Text(s) => q.bind(s.clone()),
                        Val::Null => q.bind(None::<String>),
                    };
                }
            }
            q.execute(&mut *c).await?;
        }
    }
    execute_raw(&mut *c, "ANALYZE").await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_rows() {
        let now = DateTime::parse_from_rfc3339("2026-11-21T03:00:00Z")
            .expect("test setup")
            .to_utc();
        let a = generate(7, Size::scaled(0.01), now);
        let b = generate(7, Size::scaled(0.01), now);
        assert_eq!(a[0].rows, b[0].rows);
        assert_ne!(generate(8, Size::scaled(0.01), now)[0].rows, a[0].rows);
        assert_eq!(a[0].rows.len(), 300);
    }
}

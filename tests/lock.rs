//! One apply at a time, also when the server ends the lock's session: an
//! `idle_session_timeout` never frees the lock under a running apply, a
//! terminated lock session stops the run before its next step (exit 4,
//! journaled `lock lost`), and every name of a SQLite file contends for the
//! one lock.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::cli::{dbmaint, pg_count, rt, seed_pg};
use crate::support::cluster::{Cluster, connect};

/// A slow first step (`pg_sleep`) and a retention step after it.
fn slow_plan(dir: &Path, url: &str, seconds: u32) -> std::path::PathBuf {
    let text = format!(
        r#"version: 1
name: slow
target: "{url}"
steps:
  wait:
    statement_timeout: 60s
    sql: {{ sql: "SELECT pg_sleep({seconds})" }}
  audit-logs:
    needs: [wait]
    retention: {{ table: core_audit_log, column: created_at, older_than: 90 days, batch_size: 100 }}
"#
    );
    let path = dir.join("slow.yaml");
    std::fs::write(&path, text).expect("write plan");
    path
}

fn spawn_apply(dir: &Path, plan: &Path) -> Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("dbmaint"))
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .args(["plan", "apply", "--auto-approve", "--log-dir", "logs"])
        .arg(plan)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dbmaint")
}

/// The pid of the first apply's lock session, once it holds the lock.
async fn lock_session(url: &str, child: &mut Child) -> i32 {
    let mut c = connect(url).await;
    let t0 = Instant::now();
    loop {
        assert!(child.try_wait().expect("wait").is_none(), "the first apply ended early");
        let pid: Option<i32> = sqlx::query_scalar(
            "SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.classid = $1::oid AND l.granted \
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .bind(dbmaint::db::pg::LOCK_CLASS as i64)
        .fetch_optional(&mut c)
        .await
        .expect("pg_locks");
        if let Some(pid) = pid {
            return pid;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "the apply never took the lock");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn postgres_idle_session_timeout_never_lets_a_second_apply_run_beside_the_first() {
    let rt = rt();
    let url = rt.block_on(Cluster::get().fresh_db());
    rt.block_on(seed_pg(&url));
    let name = crate::support::cluster::db_name(&url);
    rt.block_on(async {
        let mut c = connect(&url).await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {name} SET idle_session_timeout = '1s'"
        )))
        .execute(&mut c)
        .await
        .expect("set idle_session_timeout");
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = slow_plan(dir.path(), &url, 5);
    let mut first = spawn_apply(dir.path(), &plan);
    let pid = rt.block_on(lock_session(&url, &mut first));
    // The lock session is idle from here on; the database would end an
    // idle session after 1 s. Wait until that has passed three times over.
    let since = Instant::now();
    while since.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let alive = rt.block_on(pg_count(
        &url,
        &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"),
    ));
    assert_eq!(alive, 1, "the lock session survived idle_session_timeout");
    let second = dbmaint(dir.path())
        .args(["plan", "apply", "--auto-approve", "--log-dir", "logs2"])
        .arg(&plan)
        .output()
        .expect("second apply");
    assert_eq!(
        second.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let out = first.wait_with_output().expect("first apply");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // One run in the journal, and no two runs' intervals overlap.
    let overlapping = rt.block_on(pg_count(
        &url,
        "SELECT count(*) FROM dbmaint.runs a JOIN dbmaint.runs b ON a.id < b.id \
         AND tstzrange(a.started_at, coalesce(a.finished_at, 'infinity')) && tstzrange(b.started_at, coalesce(b.finished_at, 'infinity'))",
    ));
    assert_eq!(overlapping, 0);
    let runs = rt.block_on(pg_count(
        &url,
        "SELECT count(*) FROM dbmaint.runs WHERE status = 'succeeded'",
    ));
    assert_eq!(runs, 1);
}

#[test]
fn postgres_terminated_lock_session_stops_the_run_before_its_next_step_with_exit_4() {
    let rt = rt();
    let url = rt.block_on(Cluster::get().fresh_db());
    rt.block_on(seed_pg(&url));
    let before = rt.block_on(pg_count(&url, "SELECT count(*) FROM core_audit_log"));
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = slow_plan(dir.path(), &url, 3);
    let mut first = spawn_apply(dir.path(), &plan);
    let pid = rt.block_on(lock_session(&url, &mut first));
    let terminated = rt.block_on(pg_count(
        &url,
        &format!("SELECT count(*) FROM (SELECT pg_terminate_backend({pid})) t"),
    ));
    assert_eq!(terminated, 1);
    // The lock is free now: a second apply could take it. The first must
    // notice before it starts the retention step.
    let out = first.wait_with_output().expect("first apply");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("apply lock") && stderr.contains("lost"), "{stderr}");
    assert_eq!(
        before,
        rt.block_on(pg_count(&url, "SELECT count(*) FROM core_audit_log")),
        "the retention step after the loss never started"
    );
    let status = rt.block_on(pg_count(
        &url,
        "SELECT count(*) FROM dbmaint.runs WHERE status = 'lock lost' AND exit_code = 4",
    ));
    assert_eq!(status, 1, "journaled as `lock lost`");
}

#[test]
fn sqlite_every_name_of_the_file_contends_for_one_lock() {
    let rt = rt();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("x")).expect("dirs");
    let db = data.join("app.db");
    let tables = dbmaint::demo::generate(3, dbmaint::demo::Size::scaled(0.02), chrono::Utc::now());
    rt.block_on(dbmaint::demo::seed_sqlite(&db, &tables)).expect("seed");
    let link = dir.path().join("link.db");
    std::os::unix::fs::symlink(&db, &link).expect("symlink");
    let hard = dir.path().join("hard.db");
    std::fs::hard_link(&db, &hard).expect("hard link");
    // The engine's own lock, taken through the plain path, as a running
    // apply holds it.
    let target = dbmaint::plan::values::Target::parse(&format!("sqlite:{}", db.display())).expect("target");
    let held = rt
        .block_on(dbmaint::db::applylock::ApplyLock::acquire(&target))
        .expect("lock");
    // Counted by the sqlite3 binary: no connection of this process may
    // open the file while the lock is held (closing it would drop the
    // process's fcntl locks, see applylock.rs).
    let rows = |p: &Path| {
        let out = std::process::Command::new("sqlite3")
            .arg(p)
            .arg("SELECT count(*) FROM core_audit_log")
            .output()
            .expect("sqlite3");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let before = rows(&db);
    for name in [
        link.display().to_string(),
        hard.display().to_string(),
        format!("{}/x/../app.db", data.display()),
    ] {
        let plan = dir.path().join("p.yaml");
        std::fs::write(
            &plan,
            format!(
                "version: 1\nname: lk\ntarget: \"sqlite:{name}\"\nsteps:\n  audit-logs:\n    retention: {{ table: core_audit_log, column: created_at, older_than: 90 days }}\n"
            ),
        )
        .expect("plan");
        let out = dbmaint(dir.path())
            .args(["plan", "apply", "--auto-approve"])
            .arg(&plan)
            .output()
            .expect("apply");
        assert_eq!(
            out.status.code(),
            Some(4),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(before, rows(&db), "nothing deleted while the lock was held");
    rt.block_on(held.release());
}

#[test]
fn sqlite_busy_wait_follows_the_plans_lock_timeout_and_retries() {
    let rt = rt();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let tables = dbmaint::demo::generate(3, dbmaint::demo::Size::scaled(0.02), chrono::Utc::now());
    rt.block_on(dbmaint::demo::seed_sqlite(&db, &tables)).expect("seed");
    // Another writer: the sqlite3 shell inside BEGIN IMMEDIATE, kept open.
    let mut writer = std::process::Command::new("sqlite3")
        .arg(&db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sqlite3");
    let mut stdin = writer.stdin.take().expect("stdin");
    std::io::Write::write_all(&mut stdin, b"BEGIN IMMEDIATE;\nSELECT 'locked';\n").expect("write");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(writer.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("read");
    assert_eq!(line.trim(), "locked");
    let plan = dir.path().join("p.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: busy\ntarget: \"sqlite:{}\"\ndefaults: {{ lock_timeout: 300ms, retries: 1 }}\nsteps:\n  \
             audit-logs:\n    retention: {{ table: core_audit_log, column: created_at, older_than: 90 days }}\n",
            db.display()
        ),
    )
    .expect("plan");
    let t0 = Instant::now();
    let out = dbmaint(dir.path())
        .args(["plan", "apply", "--auto-approve"])
        .arg(&plan)
        .output()
        .expect("apply");
    let took = t0.elapsed();
    drop(stdin);
    let _ = writer.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("longer than 600 ms"), "{stderr}");
    // 300 ms × 2 tries, not the 5 s it used to wait whatever the plan said.
    assert!(took < Duration::from_millis(4000), "waited {took:?}");
}

#[test]
fn postgres_apply_through_a_transaction_mode_pooler_is_refused_clearly() {
    let rt = rt();
    let url = rt.block_on(Cluster::get().fresh_db());
    rt.block_on(seed_pg(&url));
    let name = crate::support::cluster::db_name(&url);
    let bouncer = crate::support::cluster::PgBouncer::start(Cluster::get());
    let before = rt.block_on(pg_count(&url, "SELECT count(*) FROM core_audit_log"));
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("p.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: pooled\ntarget: \"{}\"\nsteps:\n  audit-logs:\n    retention: {{ table: core_audit_log, column: created_at, older_than: 90 days }}\n",
            bouncer.url(name)
        ),
    )
    .expect("plan");
    let out = dbmaint(dir.path())
        .args(["plan", "apply", "--auto-approve"])
        .arg(&plan)
        .output()
        .expect("apply");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("connection pooler in transaction mode"), "{stderr}");
    assert!(stderr.contains("connect to PostgreSQL directly"), "{stderr}");
    assert_eq!(
        before,
        rt.block_on(pg_count(&url, "SELECT count(*) FROM core_audit_log")),
        "nothing deleted"
    );
    let journal = rt.block_on(pg_count(
        &url,
        "SELECT count(*) FROM pg_namespace WHERE nspname = 'dbmaint'",
    ));
    assert_eq!(journal, 0, "no journal created");
}

#[test]
fn sqlite_apply_records_its_host_and_leaves_no_lock_note_behind() {
    // While an apply holds the SQLite lock, `<file>.dbmaint-lock` says who
    // (pid, host): a second apply's refusal quotes it. Released, the note is
    // removed; the journal names the host the run came from.
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    crate::support::test::sqlite(
        &db,
        "CREATE TABLE ev (id INTEGER PRIMARY KEY, created_at TEXT NOT NULL); \
         INSERT INTO ev (created_at) VALUES (datetime('now', '-800 days')), (datetime('now'));",
    );
    let plan = dir.path().join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: hosted\ntarget: \"sqlite:{}\"\nsteps:\n  old:\n    \
             retention: {{ table: ev, column: created_at, older_than: 365 days }}\n",
            db.display()
        ),
    )
    .expect("plan");
    let out = dbmaint(dir.path())
        .args(["plan", "apply", "--auto-approve"])
        .arg(&plan)
        .output()
        .expect("apply");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // What the engine calls this machine: /etc/hostname, or `unknown-host`.
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    assert!(!host.is_empty());
    assert_eq!(crate::support::test::sqlite(&db, "SELECT host FROM dbmaint_runs"), host);
    assert_eq!(crate::support::test::sqlite(&db, "SELECT count(*) FROM ev"), "1");
    let note = std::path::PathBuf::from(format!(
        "{}.dbmaint-lock",
        std::fs::canonicalize(&db).expect("db").display()
    ));
    assert!(!note.exists(), "the lock note is removed with the lock");
}

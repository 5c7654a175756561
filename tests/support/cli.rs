//! Running the CLI the way an operator does, from a scratch directory, and
//! what most tests need around it: a runtime, a demo-seeded database, a
//! count, a plan with the demo's retention policy.

use std::path::Path;

use assert_cmd::Command;

use crate::support::cluster::connect;

pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A plan against `url` with the demo's retention policy (no backup, so
/// tests need no pg_dump unless they ask).
pub(crate) fn retention_plan(dir: &Path, url: &str, extra: &str) -> std::path::PathBuf {
    let text = format!(
        r#"version: 1
name: test
target: "{url}"
defaults: {{ lock_timeout: 1s, retries: 1 }}
steps:
  audit-logs:
    retention: {{ table: core_audit_log, column: created_at, older_than: 90 days, batch_size: 1000 }}
  failed-tasks-archive:
    retention:
      table: failed_task
      column: deleted_at
      older_than: 365 days
      batch_size: 10
      archive: {{ table: failed_task_archive }}
  after-archive:
    needs: [failed-tasks-archive]
    analyze: {{}}
{extra}"#
    );
    let path = dir.join("plan.yaml");
    std::fs::write(&path, text).expect("write plan");
    path
}

pub(crate) fn dbmaint(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("dbmaint").expect("binary");
    // Run logs default to the state directory: the test's own, never HOME's.
    c.current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("DBMAINT_LOG_DIR")
        .env("XDG_STATE_HOME", dir.join(".state"))
        .env("NO_COLOR", "1");
    c
}

/// `dbmaint plan apply --auto-approve PLAN` in `dir`; its output.
pub(crate) fn apply(dir: &Path, plan: &Path) -> std::process::Output {
    dbmaint(dir)
        .args(["plan", "apply", "--auto-approve"])
        .arg(plan)
        .output()
        .expect("run apply")
}

pub(crate) fn diff_json(dir: &Path, plan: &Path) -> serde_json::Value {
    let out = dbmaint(dir)
        .args(["--output", "json", "plan", "diff"])
        .arg(plan)
        .output()
        .expect("run diff");
    assert!(
        out.status.success(),
        "diff failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("diff JSON")
}

pub(crate) fn step_rows(diff: &serde_json::Value, id: &str) -> u64 {
    diff["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == id))
        .and_then(|s| s["estimate"]["rows"].as_u64())
        .unwrap_or_else(|| panic!("no step {id} in the diff"))
}

pub(crate) async fn seed_pg(url: &str) {
    let mut c = connect(url).await;
    let tables = ::dbmaint::demo::generate(7, ::dbmaint::demo::Size::scaled(0.1), chrono::Utc::now());
    ::dbmaint::demo::seed_postgres(&mut c, &tables)
        .await
        .expect("seed PostgreSQL");
    crate::support::cluster::flush_stats(&mut c).await;
}

pub(crate) async fn pg_count(url: &str, sql: &str) -> i64 {
    let mut c = connect(url).await;
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(&mut c)
        .await
        .expect("count")
}

/// The backups in `dir` by file name, sorted; the manifests dbmaint writes
/// beside them (`NAME.manifest.json`) left out.
pub(crate) fn backup_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.ends_with(".manifest.json"))
        .collect();
    names.sort();
    names
}

/// One value from `psql -At` on `url` (fails the test when psql does).
pub(crate) fn psql_scalar(url: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args(["-X", "-At", "-d", url, "-c", sql])
        .output()
        .expect("psql");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Polls `probe` until it answers `Some`, failing the test with `what`
/// after `secs` seconds: waiting on an observed state, never a sleep.
pub(crate) fn poll_until<T>(what: &str, secs: u64, mut probe: impl FnMut() -> Option<T>) -> T {
    let t0 = std::time::Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(t0.elapsed() < std::time::Duration::from_secs(secs), "{what}");
    }
}

/// Polls `sql` (answering a pid, or 0 for none yet) on `url` until it
/// names a session; returns the pid.
pub(crate) fn poll_pid(url: &str, sql: &str, what: &str) -> String {
    poll_until(what, 20, || {
        let pid = psql_scalar(url, sql);
        (pid != "0").then_some(pid)
    })
}

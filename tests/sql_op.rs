//! The `sql` operation: author SQL, previewed by its read-only `dry_run`
//! in the diff (which changes nothing), run in one transaction by default.

use crate::support::cli::{apply, dbmaint, pg_count, rt, seed_pg};
use crate::support::cluster::Cluster;

fn sql_plan(dir: &std::path::Path, url: &str, steps: &str) -> std::path::PathBuf {
    let path = dir.join("plan.yaml");
    std::fs::write(
        &path,
        format!("version: 1\nname: sql-test\ntarget: \"{url}\"\nsteps:\n{steps}"),
    )
    .expect("plan");
    path
}

const MARK_FAILED: &str = r#"  mark-failed:
    sql:
      sql: "UPDATE core_task_log SET status = 'expired' WHERE status = 'error' AND created_at < now() - interval '365 days'"
      dry_run: "SELECT count(*) AS rows_to_update FROM core_task_log WHERE status = 'error' AND created_at < now() - interval '365 days'"
"#;

#[test]
fn postgres_sql_dry_run_shows_its_figures_changes_nothing_and_apply_runs_it() {
    let rt = rt();
    let url = rt.block_on(Cluster::get().fresh_db());
    rt.block_on(seed_pg(&url));
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = sql_plan(dir.path(), &url, MARK_FAILED);
    let eligible = rt.block_on(pg_count(
        &url,
        "SELECT count(*) FROM core_task_log WHERE status = 'error' AND created_at < now() - interval '365 days'",
    ));
    assert!(eligible > 0);
    let out = dbmaint(dir.path())
        .args(["plan", "diff", "-v"])
        .arg(&plan)
        .output()
        .expect("diff");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("author SQL, run as written"), "{text}");
    assert!(text.contains("rows_to_update"), "{text}");
    assert!(
        text.contains(&eligible.to_string()),
        "the dry_run's figure is shown: {text}"
    );
    assert_eq!(
        rt.block_on(pg_count(
            &url,
            "SELECT count(*) FROM core_task_log WHERE status = 'expired'"
        )),
        0,
        "the diff changed nothing"
    );
    let out = apply(dir.path(), &plan);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("(sql: author SQL) succeeded"));
    assert_eq!(
        rt.block_on(pg_count(
            &url,
            "SELECT count(*) FROM core_task_log WHERE status = 'expired'"
        )),
        eligible
    );
}

#[test]
fn postgres_sql_that_fails_rolls_back_whole_and_a_writing_dry_run_is_refused() {
    let rt = rt();
    let url = rt.block_on(Cluster::get().fresh_db());
    rt.block_on(seed_pg(&url));
    let dir = tempfile::tempdir().expect("tempdir");
    let before = rt.block_on(pg_count(&url, "SELECT count(*) FROM core_audit_log"));
    // A dry_run that writes: the read-only session refuses it, the diff says so.
    let writing = sql_plan(
        dir.path(),
        &url,
        "  purge:\n    sql: { sql: \"SELECT 1\", dry_run: \"DELETE FROM core_audit_log RETURNING id\" }\n",
    );
    let out = dbmaint(dir.path())
        .args(["plan", "diff"])
        .arg(&writing)
        .output()
        .expect("diff");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("read-only"), "{all}");
    assert_eq!(
        before,
        rt.block_on(pg_count(&url, "SELECT count(*) FROM core_audit_log"))
    );
    // Two statements, the second fails: the first is rolled back with it.
    let failing = sql_plan(
        dir.path(),
        &url,
        "  two:\n    sql: { sql: \"DELETE FROM core_audit_log; SELECT 1 / 0\" }\n  after:\n    needs: [two]\n    analyze: {}\n",
    );
    let out = apply(dir.path(), &failing);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("division by zero (SQLSTATE 22012)"),
        "the report names the SQLSTATE: {stdout}"
    );
    assert!(stdout.contains("rolled back"), "{stdout}");
    assert!(stdout.contains("after (analyze) skipped"), "{stdout}");
    assert_eq!(
        before,
        rt.block_on(pg_count(&url, "SELECT count(*) FROM core_audit_log"))
    );
}

#[test]
fn sqlite_sql_previews_and_runs() {
    let rt = rt();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let tables = dbmaint::demo::generate(9, dbmaint::demo::Size::scaled(0.05), chrono::Utc::now());
    rt.block_on(dbmaint::demo::seed_sqlite(&db, &tables)).expect("seed");
    let plan = sql_plan(
        dir.path(),
        &format!("sqlite:{}", db.display()),
        "  touch:\n    sql:\n      sql: \"UPDATE django_session SET session_data = 'x' WHERE expire_date < datetime('now')\"\n      dry_run: \"SELECT count(*) AS n, 'sessions' AS what FROM django_session WHERE expire_date < datetime('now')\"\n",
    );
    let count = || -> String {
        let out = std::process::Command::new("sqlite3")
            .arg(&db)
            .arg("SELECT count(*) FROM django_session WHERE session_data = 'x'")
            .output()
            .expect("sqlite3");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let expired = {
        let out = std::process::Command::new("sqlite3")
            .arg(&db)
            .arg("SELECT count(*) FROM django_session WHERE expire_date < datetime('now')")
            .output()
            .expect("sqlite3");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let out = dbmaint(dir.path())
        .args(["plan", "diff"])
        .arg(&plan)
        .output()
        .expect("diff");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("{expired} | sessions")), "{text}");
    assert_eq!(count(), "0");
    let out = apply(dir.path(), &plan);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(count(), expired);
}

#[test]
fn postgres_sql_without_a_transaction_runs_statement_by_statement() {
    let rt = rt();
    let url = crate::support::cluster::seeded_db(
        "CREATE TABLE a (id int); CREATE TABLE b (id int); INSERT INTO a VALUES (1); INSERT INTO b VALUES (1);",
        &[],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    // VACUUM refuses a transaction block: as one call the two would fail.
    let p = sql_plan(
        dir.path(),
        &url,
        "  vac:\n    sql: { sql: \"VACUUM a; VACUUM b\", transaction: false }\n",
    );
    let out = apply(dir.path(), &p);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        rt.block_on(pg_count(
            &url,
            "SELECT count(*) FROM pg_stat_user_tables WHERE relname IN ('a', 'b') AND vacuum_count > 0"
        )),
        2
    );
    // A failing second statement leaves the first done and the third not run.
    let p = sql_plan(
        dir.path(),
        &url,
        "  three:\n    sql: { sql: \"CREATE TABLE kept (id int); SELECT 1 / 0; CREATE TABLE never (id int)\", transaction: false }\n",
    );
    let out = apply(dir.path(), &p);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("statement 2 of 3"), "{stdout}");
    assert!(stdout.contains("statements 1–1 ran and stay done"), "{stdout}");
    assert_eq!(
        rt.block_on(pg_count(
            &url,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'kept'"
        )),
        1
    );
    assert_eq!(
        rt.block_on(pg_count(
            &url,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'never'"
        )),
        0
    );
}

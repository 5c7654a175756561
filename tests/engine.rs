//! The engine end to end on real databases: the diff changes nothing, apply
//! does what the diff said, failures lose nothing, one apply at a time.

use std::path::Path;

use sqlx::Row;

use crate::support::cli::{apply, dbmaint, diff_json, pg_count, retention_plan, rt, seed_pg, step_rows};
use crate::support::cluster::{Cluster, connect};

async fn pg_counters(url: &str) -> Vec<(String, i64, i64, i64, i64)> {
    let mut c = connect(url).await;
    sqlx::query(
        "SELECT c.relname::text, s.n_tup_ins, s.n_tup_upd, s.n_tup_del, c.relfilenode::int8 \
         FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid ORDER BY 1",
    )
    .fetch_all(&mut c)
    .await
    .expect("counters")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
    .collect()
}

/// The database's directory under the cluster: (file name, size) of each.
fn database_files(cluster: &Cluster, url: &str) -> Vec<(String, u64)> {
    let oid = rt().block_on(pg_count(
        url,
        "SELECT oid::int8 FROM pg_database WHERE datname = current_database()",
    ));
    let dir = cluster.socket_dir.join("data/base").join(oid.to_string());
    let mut files: Vec<(String, u64)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| {
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            (e.file_name().to_string_lossy().to_string(), len)
        })
        .collect();
    files.sort();
    assert!(files.len() > 10, "a real database directory");
    files
}

#[test]
fn postgres_diff_changes_nothing() {
    let rt = rt();
    let cluster = Cluster::get();
    let url = rt.block_on(cluster.fresh_db());
    rt.block_on(seed_pg(&url));
    let dir = tempfile::tempdir().expect("tempdir");
    // A backup step too: the diff must not start pg_dump or create its dir.
    let plan = retention_plan(dir.path(), &url, "  dump:\n    backup: { dir: backups }\n");
    // Counters are flushed when a session ends; read them from a new one.
    let before = rt.block_on(pg_counters(&url));
    let files_before = database_files(cluster, &url);
    let diff = diff_json(dir.path(), &plan);
    assert!(step_rows(&diff, "audit-logs") > 0);
    let after = rt.block_on(pg_counters(&url));
    assert_eq!(
        files_before,
        database_files(cluster, &url),
        "the database's files are unchanged"
    );
    assert!(!dir.path().join("backups").exists(), "no backup directory, no pg_dump");
    assert_eq!(
        before, after,
        "insert/update/delete counters and relfilenodes must not move"
    );
    let journal = rt.block_on(pg_count(
        &url,
        "SELECT count(*) FROM pg_namespace WHERE nspname = 'dbmaint'",
    ));
    assert_eq!(journal, 0, "a diff creates no journal");
}

/// Every table's counters, catalogs included (an ANALYZE writes
/// `pg_statistic`, a temporary table `pg_class`): inserts, updates,
/// deletes, vacuum and analyze counts, and the user tables' relfilenodes
/// and last analyze. Read once the sessions that might have written are
/// gone (a backend flushes its counters when it exits). Shared catalogs
/// (`pg_database`, …) are left out: other tests create databases.
async fn all_counters(url: &str) -> Vec<String> {
    let mut c = connect(url).await;
    sqlx::query_scalar(
        "SELECT concat_ws(' ', s.schemaname, s.relname, s.n_tup_ins, s.n_tup_upd, s.n_tup_del, s.vacuum_count, \
                s.analyze_count, s.last_analyze, c.relfilenode) \
         FROM pg_stat_all_tables s JOIN pg_class c ON c.oid = s.relid \
         WHERE NOT c.relisshared ORDER BY s.relid",
    )
    .fetch_all(&mut c)
    .await
    .expect("counters")
}

#[test]
fn postgres_diff_of_every_operation_writes_nothing_and_starts_no_tool() {
    let rt = rt();
    let cluster = Cluster::get();
    let url = rt.block_on(cluster.fresh_db());
    rt.block_on(seed_pg(&url));
    rt.block_on(async {
        let mut c = connect(&url).await;
        sqlx::raw_sql(
            "CREATE MATERIALIZED VIEW actions AS SELECT action, count(*) AS n FROM core_audit_log GROUP BY action;
             CREATE UNIQUE INDEX actions_action ON actions (action);
             DELETE FROM core_task_log WHERE id % 3 = 0;",
        )
        .execute(&mut c)
        .await
        .expect("schema");
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            r#"version: 1
name: everything
target: "{url}"
steps:
  dump:
    backup: {{ dir: backups, verify: {{ same_server: true }} }}
  audit-logs:
    needs: [dump]
    retention: {{ table: core_audit_log, column: created_at, older_than: 90 days }}
  archive:
    retention: {{ table: failed_task, column: deleted_at, older_than: 365 days, archive: {{ table: failed_task_archive }} }}
  vacuum:
    needs: [audit-logs]
    vacuum: {{ analyze: true, min_dead_ratio: 0 }}
  analyze:
    analyze: {{}}
  reindex:
    needs: [vacuum]
    reindex: {{ indexes: [core_task_log_pkey] }}
  views:
    refresh_views: {{ views: [actions] }}
  expire:
    sql: {{ sql: "UPDATE core_task_log SET status = 'expired' WHERE status = 'error'", dry_run: "SELECT count(*) FROM core_task_log WHERE status = 'error'" }}
  health:
    check: {{ max_query_age: 1s }}
  bloat:
    bloat: {{}}
  stats:
    stats: {{}}
"#
        ),
    )
    .expect("plan");
    let path = crate::support::test::recording_path(dir.path());
    let before = rt.block_on(all_counters(&url));
    let files_before = database_files(cluster, &url);
    let out = dbmaint(dir.path())
        .env("PATH", &path)
        .args(["--output", "json", "plan", "diff"])
        .arg(&plan)
        .output()
        .expect("diff");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let diff: serde_json::Value = serde_json::from_slice(&out.stdout).expect("diff JSON");
    // Every operation was planned, and most have something to do.
    let ops: std::collections::BTreeSet<&str> = diff["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["op"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(ops.len(), 10, "{ops:?}");
    for id in ["audit-logs", "archive", "vacuum", "reindex", "views", "expire"] {
        let step = diff["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["id"] == id))
            .expect("step");
        assert!(
            !step["statements"].as_array().is_none_or(Vec::is_empty)
                || step["actions"].as_array().is_some_and(|a| !a.is_empty()),
            "{id} has work: {step}"
        );
    }
    // The diff's sessions are gone (so their counters are flushed).
    crate::support::cli::poll_until("the diff's sessions never ended", 10, || {
        (rt.block_on(pg_count(
            &url,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )) == 0)
            .then_some(())
    });
    let after = rt.block_on(all_counters(&url));
    let moved: Vec<_> = before.iter().zip(&after).filter(|(b, a)| b != a).collect();
    assert!(
        moved.is_empty() && before.len() == after.len(),
        "counters moved: {moved:#?}"
    );
    assert_eq!(
        files_before,
        database_files(cluster, &url),
        "the database's files are unchanged"
    );
    assert!(!dir.path().join("backups").exists(), "no backup directory");
    let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap_or_default();
    assert!(
        calls.lines().all(|l| l.ends_with("--version")),
        "the diff ran no client tool: {calls}"
    );
    assert_eq!(
        rt.block_on(pg_count(
            &url,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'dbmaint'"
        )),
        0,
        "a diff creates no journal"
    );
    // The same stand-ins do record a real call: apply runs pg_dump.
    let out = dbmaint(dir.path())
        .env("PATH", &path)
        .args(["plan", "apply", "--auto-approve", "--step", "dump"])
        .arg(&plan)
        .output()
        .expect("apply");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap_or_default();
    assert!(
        calls
            .lines()
            .any(|l| l.starts_with("pg_dump ") && !l.ends_with("--version")),
        "{calls}"
    );
}

#[test]
fn postgres_apply_removes_exactly_what_the_diff_counted() {
    let rt = rt();
    let url = rt.block_on(Cluster::get().fresh_db());
    rt.block_on(seed_pg(&url));
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = retention_plan(dir.path(), &url, "");
    let diff = diff_json(dir.path(), &plan);
    let (audit, archived) = (step_rows(&diff, "audit-logs"), step_rows(&diff, "failed-tasks-archive"));
    let audit_before = rt.block_on(pg_count(&url, "SELECT count(*) FROM core_audit_log"));
    let young_before = rt.block_on(pg_count(
        &url,
        "SELECT count(*) FROM core_audit_log WHERE created_at >= now() - interval '89 days'",
    ));
    let hash_before = rt.block_on(pg_count(
        &url,
        "SELECT count(*) FROM failed_task WHERE deleted_at < now() - interval '365 days'",
    ));
    let out = apply(dir.path(), &plan);
    assert!(
        out.status.success(),
        "apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The lock was released by the run, not left to the process's exit.
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("apply lock is released only when"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let audit_after = rt.block_on(pg_count(&url, "SELECT count(*) FROM core_audit_log"));
    assert_eq!(
        (audit_before - audit_after) as u64,
        audit,
        "rows deleted equal the diff's count"
    );
    let young_after = rt.block_on(pg_count(
        &url,
        "SELECT count(*) FROM core_audit_log WHERE created_at >= now() - interval '89 days'",
    ));
    assert_eq!(young_before, young_after, "rows outside the predicate are untouched");
    let in_archive = rt.block_on(pg_count(&url, "SELECT count(*) FROM failed_task_archive"));
    assert_eq!(in_archive as u64, archived);
    assert_eq!(hash_before as u64, archived);
    let left = rt.block_on(pg_count(
        &url,
        "SELECT count(*) FROM failed_task WHERE deleted_at < now() - interval '365 days'",
    ));
    assert_eq!(left, 0);
    let overlap = rt.block_on(pg_count(
        &url,
        "SELECT count(*) FROM failed_task f JOIN failed_task_archive a USING (id)",
    ));
    assert_eq!(overlap, 0, "no row is in both source and archive");
    let journal_rows = rt.block_on(pg_count(
        &url,
        "SELECT coalesce(sum(rows), 0)::int8 FROM dbmaint.batches WHERE step = 'audit-logs'",
    ));
    assert_eq!(
        journal_rows as u64, audit,
        "the journal's batch rows add up to the rows removed"
    );
}

#[test]
fn postgres_failed_batch_keeps_rows_and_skips_dependents() {
    let rt = rt();
    let url = rt.block_on(Cluster::get().fresh_db());
    rt.block_on(seed_pg(&url));
    // The archive already holds a key the second batch will try to move.
    let conflict: i64 = rt.block_on(async {
        let mut c = connect(&url).await;
        sqlx::raw_sql(
            "CREATE TABLE failed_task_archive (LIKE failed_task); ALTER TABLE failed_task_archive ADD PRIMARY KEY (id)",
        )
        .execute(&mut c)
        .await
        .expect("archive");
        let id: i64 = sqlx::query_scalar(
            "SELECT id FROM failed_task WHERE deleted_at < now() - interval '365 days' ORDER BY id OFFSET 12 LIMIT 1",
        )
        .fetch_one(&mut c)
        .await
        .expect("an eligible id");
        sqlx::query("INSERT INTO failed_task_archive SELECT * FROM failed_task WHERE id = $1")
            .bind(id)
            .execute(&mut c)
            .await
            .expect("conflict row");
        id
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = retention_plan(dir.path(), &url, "");
    let eligible = rt.block_on(pg_count(
        &url,
        "SELECT count(*) FROM failed_task WHERE deleted_at < now() - interval '365 days'",
    ));
    let out = dbmaint(dir.path())
        .args(["plan", "apply", "--auto-approve", "--parallelism", "1"])
        .arg(&plan)
        .output()
        .expect("apply");
    assert_eq!(out.status.code(), Some(1), "a failed step exits 1");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("rolled back: its rows stay in"),
        "report says what rolled back:\n{stdout}"
    );
    assert!(
        stdout.contains("after-archive (analyze) skipped"),
        "dependent skipped:\n{stdout}"
    );
    // The batches before the conflict committed (and are in the journal);
    // the failing batch left everything in place.
    let committed = rt.block_on(pg_count(
        &url,
        "SELECT coalesce(sum(rows), 0)::int8 FROM dbmaint.batches WHERE step = 'failed-tasks-archive'",
    ));
    assert!(
        committed > 0 && committed < 13,
        "batches before the 13th row committed: {committed}"
    );
    let left = rt.block_on(pg_count(
        &url,
        "SELECT count(*) FROM failed_task WHERE deleted_at < now() - interval '365 days'",
    ));
    assert_eq!(left, eligible - committed);
    let archived = rt.block_on(pg_count(&url, "SELECT count(*) FROM failed_task_archive"));
    assert_eq!(
        archived,
        committed + 1,
        "the committed rows plus the planted conflict, nothing of the failed batch"
    );
    let still_there = rt.block_on(pg_count(
        &url,
        &format!("SELECT count(*) FROM failed_task WHERE id = {conflict}"),
    ));
    assert_eq!(still_there, 1, "the conflicting row stays in the source");
    let status = rt.block_on(pg_count(
        &url,
        "SELECT count(*) FROM dbmaint.steps WHERE step = 'failed-tasks-archive' AND status = 'failed'",
    ));
    assert_eq!(status, 1, "the journal records the failure");
}

#[test]
fn postgres_second_apply_exits_4_naming_the_holder() {
    let rt = rt();
    let url = rt.block_on(Cluster::get().fresh_db());
    rt.block_on(seed_pg(&url));
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = retention_plan(dir.path(), &url, "");
    let mut holder = rt.block_on(connect(&url));
    let got: bool = rt
        .block_on(
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1, 0)")
                .bind(dbmaint::db::pg::LOCK_CLASS)
                .fetch_one(&mut holder),
        )
        .expect("lock");
    assert!(got);
    let before = rt.block_on(pg_count(&url, "SELECT count(*) FROM core_audit_log"));
    let t0 = std::time::Instant::now();
    let out = apply(dir.path(), &plan);
    assert_eq!(out.status.code(), Some(4));
    assert!(t0.elapsed() < std::time::Duration::from_secs(10), "refused at once");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("backend pid"), "names the holder: {stderr}");
    assert_eq!(
        before,
        rt.block_on(pg_count(&url, "SELECT count(*) FROM core_audit_log"))
    );
}

#[test]
fn unreachable_host_with_a_password_is_one_clear_line_and_never_printed() {
    let secret = "s3cr3t-Pa55word";
    // An unreachable TCP port with a password in the URL.
    let bad = format!("postgres://app:{secret}@127.0.0.1:1/app");
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = retention_plan(dir.path(), &bad, "");
    let out = apply(dir.path(), &plan);
    assert_eq!(out.status.code(), Some(1));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains(secret), "password leaked: {all}");
    assert!(all.contains("could not connect"), "{all}");
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1, "{all}");
}

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).expect("read file");
    format!("{:x}", sha2::Sha256::digest(bytes))
}

#[test]
fn sqlite_diff_leaves_the_file_byte_identical() {
    let rt = rt();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let tables = dbmaint::demo::generate(3, dbmaint::demo::Size::scaled(0.05), chrono::Utc::now());
    rt.block_on(dbmaint::demo::seed_sqlite(&db, &tables)).expect("seed");
    let plan = retention_plan(dir.path(), &format!("sqlite:{}", db.display()), "");
    let before = sha256(&db);
    let diff = diff_json(dir.path(), &plan);
    assert!(step_rows(&diff, "audit-logs") > 0);
    assert_eq!(before, sha256(&db));
}

#[test]
fn sqlite_apply_archives_exactly_the_deleted_rows() {
    let rt = rt();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let tables = dbmaint::demo::generate(5, dbmaint::demo::Size::scaled(0.05), chrono::Utc::now());
    rt.block_on(dbmaint::demo::seed_sqlite(&db, &tables)).expect("seed");
    let url = format!("sqlite:{}", db.display());
    let plan = retention_plan(dir.path(), &url, "");
    let diff = diff_json(dir.path(), &plan);
    let archived = step_rows(&diff, "failed-tasks-archive");
    let query = |sql: &str| -> Vec<String> {
        let out = std::process::Command::new("sqlite3")
            .arg(&db)
            .arg(sql)
            .output()
            .expect("sqlite3");
        String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect()
    };
    let cutoff = (chrono::Utc::now() - chrono::Duration::days(365))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let expected = query(&format!(
        "SELECT id || '|' || task_name || '|' || created_at || '|' || deleted_at FROM failed_task WHERE deleted_at < '{cutoff}' ORDER BY id"
    ));
    let out = apply(dir.path(), &plan);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = query(
        "SELECT id || '|' || task_name || '|' || created_at || '|' || deleted_at FROM failed_task_archive ORDER BY id",
    );
    assert_eq!(got.len() as u64, archived);
    assert!(expected.len() as u64 >= archived);
    assert_eq!(
        got,
        expected[..got.len()].to_vec(),
        "the archive holds exactly the deleted rows"
    );
    let left = query(&format!(
        "SELECT count(*) FROM failed_task WHERE deleted_at < '{cutoff}'"
    ));
    assert_eq!(left, ["0"]);
    let history = dbmaint(dir.path())
        .args(["--output", "json", "history", "--target", &url])
        .output()
        .expect("history");
    let v: serde_json::Value = serde_json::from_slice(&history.stdout).expect("history JSON");
    assert_eq!(v["runs"][0]["status"], "succeeded");
}

/// The README's first command: `dbmaint demo` creates the database, backs
/// it up, removes exactly the rows the plan's retention selects (checked
/// row by row against the backup it took first), archives before it
/// purges, and journals what each step did.
#[test]
fn demo_command_runs_end_to_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dbmaint(dir.path())
        .args(["demo", "--scale", "0.1"])
        .output()
        .expect("demo");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Run 1 of plan `demo` succeeded"), "{stdout}");
    assert!(
        stdout.contains("run 1 `demo` succeeded"),
        "the journal's history: {stdout}"
    );
    let backups = dir.path().join("dbmaint-demo-backups");
    let files = crate::support::cli::backup_files(&backups);
    assert_eq!(files.len(), 1, "{files:?}");
    let db = dir.path().join("dbmaint-demo.db");
    crate::support::test::assert_demo_plan_ran(&db, &backups.join(&files[0]));
    // One measure per figure: the rows total is the rows the retention
    // steps deleted (not vacuum's dead tuples), the backup's size is
    // written, not given back.
    let deleted: u64 = crate::support::test::sqlite(&db, "SELECT sum(rows) FROM dbmaint_steps WHERE op = 'retention'")
        .parse()
        .expect("sum");
    let totals = stdout
        .lines()
        .find(|l| l.starts_with("Totals: "))
        .expect("a Totals line");
    let human = dbmaint::run::execplan::human_count;
    assert!(
        totals.starts_with(&format!(
            "Totals: {} rows deleted (predicted {}, +0.0%), ",
            human(deleted),
            human(deleted)
        )),
        "{totals}"
    );
    assert!(totals.contains(" written by backups (predicted "), "{totals}");
}

#[test]
fn sqlite_apply_step_shows_only_that_step_and_warns_about_the_needs_it_skips() {
    let rt = rt();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let tables = dbmaint::demo::generate(5, dbmaint::demo::Size::scaled(0.05), chrono::Utc::now());
    rt.block_on(dbmaint::demo::seed_sqlite(&db, &tables)).expect("seed");
    let plan = retention_plan(dir.path(), &format!("sqlite:{}", db.display()), "");
    let out = dbmaint(dir.path())
        .args(["plan", "apply", "--auto-approve", "--step", "after-archive"])
        .arg(&plan)
        .output()
        .expect("apply");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("after-archive (analyze)"), "{stdout}");
    assert!(
        !stdout.contains("audit-logs (retention)"),
        "not selected, not shown: {stdout}"
    );
    assert!(!stdout.contains("failed-tasks-archive (retention)"), "{stdout}");
    assert!(
        stderr.contains("`--step after-archive` skips `failed-tasks-archive`"),
        "{stderr}"
    );
}

#[test]
fn demo_replaces_only_its_own_database_unless_forced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| dbmaint(dir.path()).args(args).output().expect("demo");
    // Its own earlier database is replaced: a second run succeeds.
    assert!(run(&["demo", "--scale", "0.05"]).status.success());
    assert!(run(&["demo", "--scale", "0.05"]).status.success());
    // Somebody's database is refused and left byte for byte as it was.
    let theirs = dir.path().join("theirs.db");
    let out = std::process::Command::new("sqlite3")
        .arg(&theirs)
        .arg("CREATE TABLE precious (v text); INSERT INTO precious VALUES ('keep me');")
        .output()
        .expect("sqlite3");
    assert!(out.status.success());
    let before = std::fs::read(&theirs).expect("read");
    let out = run(&["demo", "--scale", "0.05", "--db", "theirs.db"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a demo database"));
    assert_eq!(before, std::fs::read(&theirs).expect("read"), "unchanged");
    // A plain file too; with --force it is replaced.
    std::fs::write(dir.path().join("notes.txt"), "my notes").expect("write");
    assert_eq!(
        run(&["demo", "--scale", "0.05", "--db", "notes.txt"]).status.code(),
        Some(1)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("notes.txt")).expect("read"),
        "my notes"
    );
    assert!(
        run(&["demo", "--scale", "0.05", "--db", "theirs.db", "--force"])
            .status
            .success()
    );
}

#[test]
fn postgres_text_keys_and_file_archives_take_counted_batches() {
    let rt = rt();
    let url = rt.block_on(Cluster::get().fresh_db());
    rt.block_on(seed_pg(&url));
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = r#"  sessions:
    retention: { table: django_session, column: expire_date, older_than: 0s, batch_size: 7 }
  task-log-file:
    retention:
      table: core_task_log
      column: created_at
      older_than: 30 days
      batch_size: 500
      archive: { file: archive/task_log.jsonl }
"#;
    let plan = retention_plan(dir.path(), &url, extra);
    let diff = diff_json(dir.path(), &plan);
    let (sessions, tasks) = (step_rows(&diff, "sessions"), step_rows(&diff, "task-log-file"));
    assert!(sessions > 7 && tasks > 500, "several batches each: {sessions} {tasks}");
    let out = apply(dir.path(), &plan);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        rt.block_on(pg_count(
            &url,
            "SELECT count(*) FROM django_session WHERE expire_date < now()"
        )),
        0
    );
    let lines = std::fs::read_to_string(dir.path().join("archive/task_log.jsonl")).expect("archive file");
    let keys: std::collections::HashSet<String> = lines
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line")["key"].to_string())
        .collect();
    assert_eq!(lines.lines().count() as u64, tasks, "one line per row removed");
    assert_eq!(keys.len() as u64, tasks, "no key twice");
    assert_eq!(
        rt.block_on(pg_count(
            &url,
            "SELECT count(*) FROM core_task_log WHERE created_at < now() - interval '30 days'"
        )),
        0
    );
}

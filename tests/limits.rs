//! Lock timeouts and retries under a competing session, `max_runtime`
//! deferral and its rerun, and saved plans (applied unchanged; refused when
//! the data grew beyond what was reviewed). PostgreSQL, real sessions.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::cli::{apply, dbmaint, diff_json, pg_count, retention_plan, rt, seed_pg, step_rows};
use crate::support::cluster::{Cluster, connect};

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write plan");
    path
}

async fn exec(url: &str, sql: &str) {
    let mut c = connect(url).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A plan whose only step is `VACUUM FULL hot` (ACCESS EXCLUSIVE), with a
/// 300 ms lock_timeout and two retries.
fn vacuum_full_plan(dir: &Path, url: &str) -> std::path::PathBuf {
    write(
        dir,
        "vacuum.yaml",
        &format!(
            r#"version: 1
name: lock-test
target: "{url}"
steps:
  rewrite-hot:
    lock_timeout: 300ms
    retries: 2
    vacuum: {{ tables: [hot], full: true, allow_exclusive_lock: true, min_dead_ratio: 0, min_dead_tuples: 0 }}
"#
        ),
    )
}

async fn relfilenode(url: &str) -> i64 {
    pg_count(url, "SELECT relfilenode::int8 FROM pg_class WHERE relname = 'hot'").await
}

/// Times `SELECT count(*) FROM hot` back to back on its own session (no
/// lock_timeout: it waits as long as it is made to) until `stop`.
fn reader(url: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Duration> {
    std::thread::spawn(move || {
        rt().block_on(async {
            let mut c = connect(&url).await;
            let mut worst = Duration::ZERO;
            while !stop.load(Ordering::SeqCst) {
                let t0 = Instant::now();
                let _: i64 = sqlx::query_scalar("SELECT count(*) FROM hot")
                    .fetch_one(&mut c)
                    .await
                    .expect("reader query");
                worst = worst.max(t0.elapsed());
            }
            worst
        })
    })
}

/// A table `hot`, a plan to `VACUUM FULL` it, and another session reading
/// it in an open transaction: its ACCESS SHARE lock conflicts with VACUUM
/// FULL's ACCESS EXCLUSIVE.
struct Hot {
    rt: tokio::runtime::Runtime,
    url: String,
    before: i64,
    dir: tempfile::TempDir,
    plan: std::path::PathBuf,
    holder: sqlx::PgConnection,
}

fn hot() -> Hot {
    let rt = rt();
    let url = rt.block_on(Cluster::get().fresh_db());
    rt.block_on(exec(
        &url,
        "CREATE TABLE hot (id int PRIMARY KEY, v text); INSERT INTO hot SELECT i, md5(i::text) FROM generate_series(1, 2000) i",
    ));
    let before = rt.block_on(relfilenode(&url));
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = vacuum_full_plan(dir.path(), &url);
    let mut holder = rt.block_on(connect(&url));
    rt.block_on(sqlx::raw_sql("BEGIN; SELECT count(*) FROM hot").execute(&mut holder))
        .expect("holder");
    Hot {
        rt,
        url,
        before,
        dir,
        plan,
        holder,
    }
}

#[test]
fn postgres_lock_held_elsewhere_retries_then_fails_and_readers_wait_at_most_lock_timeout() {
    let Hot {
        rt,
        url,
        before,
        dir,
        plan,
        mut holder,
    } = hot();
    let stop = Arc::new(AtomicBool::new(false));
    let reading = reader(url.clone(), stop.clone());
    let t0 = Instant::now();
    let out = dbmaint(dir.path())
        .args(["--output", "json", "plan", "apply", "--auto-approve"])
        .arg(&plan)
        .output()
        .expect("apply");
    let took = t0.elapsed();
    stop.store(true, Ordering::SeqCst);
    let worst = reading.join().expect("reader thread");
    println!("the reader's worst wait while dbmaint queued for VACUUM FULL: {worst:?} (lock_timeout 300 ms)");

    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("diff and report JSON");
    let report = &v["report"];
    let step = &report["steps"][0];
    assert_eq!(step["status"], "failed");
    assert_eq!(step["retries"], 2, "retried `retries` times, then failed: {step}");
    assert!(
        step["error"].as_str().unwrap_or("").contains("lock"),
        "the error names the lock: {step}"
    );
    // Three attempts of 300 ms and two backoffs, never an unbounded wait.
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert!(
        worst < Duration::from_millis(700),
        "a reader waited {worst:?} behind dbmaint's queued lock request (lock_timeout 300 ms)"
    );
    assert!(
        worst >= Duration::from_millis(150),
        "the reader never queued behind dbmaint ({worst:?}): the test did not exercise the lock queue"
    );
    rt.block_on(sqlx::raw_sql("COMMIT").execute(&mut holder))
        .expect("commit");
    assert_eq!(before, rt.block_on(relfilenode(&url)), "the table was not rewritten");
}

#[test]
fn postgres_lock_released_during_backoff_lets_the_retry_succeed() {
    let Hot {
        rt,
        url,
        before,
        dir,
        plan,
        mut holder,
    } = hot();
    let logs = dir.path().join("logs");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("dbmaint"))
        .current_dir(dir.path())
        .args(["--output", "json", "plan", "apply", "--auto-approve", "--log-dir"])
        .arg(&logs)
        .arg(&plan)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("apply");
    // Wait for the first `retrying` event in the JSON Lines log, then let go.
    let t0 = Instant::now();
    let retrying = || {
        std::fs::read_dir(&logs)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains("\"event\":\"retrying\"")))
    };
    while !retrying() {
        assert!(t0.elapsed() < Duration::from_secs(20), "no retry event");
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "apply ended before retrying"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    rt.block_on(sqlx::raw_sql("COMMIT").execute(&mut holder))
        .expect("commit");
    let out = child.wait_with_output().expect("apply output");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("diff and report JSON");
    let report = &v["report"];
    assert_eq!(report["steps"][0]["status"], "succeeded");
    assert!(report["steps"][0]["retries"].as_u64() >= Some(1));
    assert_ne!(before, rt.block_on(relfilenode(&url)), "VACUUM FULL rewrote the table");
}

/// A database with `events`: 20,000 rows over 1,000 days, half of them
/// older than 500 days, in blocks of 500 ids.
fn events_db() -> (tokio::runtime::Runtime, String) {
    let rt = rt();
    let url = rt.block_on(Cluster::get().fresh_db());
    rt.block_on(exec(
        &url,
        "CREATE TABLE events (id bigint PRIMARY KEY, created_at timestamptz NOT NULL);
         INSERT INTO events SELECT i, now() - (i % 1000) * interval '1 day' - interval '12 hours' FROM generate_series(1, 20000) i;
         CREATE INDEX ON events (created_at);",
    ));
    (rt, url)
}

#[test]
fn postgres_max_runtime_defers_the_rest_and_a_rerun_continues() {
    let (rt, url) = events_db();
    let eligible = rt.block_on(pg_count(
        &url,
        "SELECT count(*) FROM events WHERE created_at < now() - interval '500 days'",
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = write(
        dir.path(),
        "plan.yaml",
        &format!(
            r#"version: 1
name: limits-test
target: "{url}"
limits: {{ max_runtime: 1s }}
steps:
  old-events:
    retention: {{ table: events, column: created_at, older_than: 500 days, batch_size: 100, pause: 20ms }}
  after:
    needs: [old-events]
    analyze: {{ tables: [events] }}
"#
        ),
    );
    let mut runs = vec![];
    loop {
        let out = dbmaint(dir.path())
            .args(["--output", "json", "plan", "apply", "--auto-approve"])
            .arg(&plan)
            .output()
            .expect("apply");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("report JSON: {}", String::from_utf8_lossy(&out.stderr)));
        let report = &v["report"];
        let code = out.status.code();
        let left = rt.block_on(pg_count(
            &url,
            "SELECT count(*) FROM events WHERE created_at < now() - interval '500 days'",
        ));
        runs.push((code, left));
        if code == Some(0) {
            assert_eq!(report["steps"][0]["status"], "succeeded");
            break;
        }
        assert_eq!(code, Some(3), "deferred work exits 3: {report}");
        // Either the retention stopped between batches, or it finished its
        // last batch just as max_runtime ran out and only the dependent
        // waits: both are the limit at work.
        if report["steps"][0]["status"] != "succeeded" {
            assert_eq!(report["steps"][0]["status"], "deferred", "{report}");
            assert!(
                report["steps"][0]["deferred"]
                    .as_str()
                    .is_some_and(|d| d.contains("max_runtime")),
                "{report}"
            );
        } else {
            assert_eq!(left, 0, "a succeeded retention left nothing: {report}");
            assert!(
                report["steps"][1]["deferred"]
                    .as_str()
                    .is_some_and(|d| d.contains("max_runtime")),
                "{report}"
            );
        }
        assert_eq!(
            report["steps"][1]["status"], "deferred",
            "the dependent waits for a rerun: {report}"
        );
        let duration = report["duration_ms"].as_u64().expect("duration_ms");
        assert!(
            duration <= 1000 + 3000,
            "overran max_runtime by more than a few seconds: {duration} ms"
        );
        assert!(runs.len() < 30, "reruns make no progress: {runs:?}");
    }
    assert!(runs.len() >= 2, "the work did not outlast one max_runtime: {runs:?}");
    assert!(
        runs.windows(2).all(|w| w[1].1 < w[0].1 || (w[0].1 == 0 && w[1].1 == 0)),
        "each rerun continued where the last stopped: {runs:?}"
    );
    assert_eq!(runs.last().map(|r| r.1), Some(0));
    let journal = rt.block_on(pg_count(&url, "SELECT sum(rows)::int8 FROM dbmaint.batches"));
    assert_eq!(
        journal, eligible,
        "every deleted row is in a committed batch of the journal"
    );
}

#[test]
fn postgres_saved_plan_applies_its_reviewed_cutoff_not_a_fresh_one() {
    let rt = rt();
    let url = rt.block_on(Cluster::get().fresh_db());
    rt.block_on(seed_pg(&url));
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = retention_plan(dir.path(), &url, "");
    let saved = dir.path().join("reviewed.json");
    let diff = diff_json(dir.path(), &plan);
    let out = dbmaint(dir.path())
        .args(["plan", "diff", "--out"])
        .arg(&saved)
        .arg(&plan)
        .output()
        .expect("diff --out");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Rows a millisecond younger than the reviewed cutoff arrive after the
    // review, and the clock moves past them: a fresh plan (its reference
    // time now) would delete them; the saved plan holds its reference time,
    // so the reviewed rows are deleted and these are not.
    let saved_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).expect("saved")).expect("saved JSON");
    let cutoff = saved_json["execution"]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["id"] == "audit-logs")
        .and_then(|s| s["objects"].as_array())
        .and_then(|o| o.iter().find_map(|o| o["figures"]["cutoff"].as_str()))
        .expect("the reviewed cutoff")
        .to_string();
    rt.block_on(exec(
        &url,
        &format!(
            "INSERT INTO core_audit_log (id, created_at, actor_id, action, object_type, object_id, payload) \
             SELECT 20000000 + i, CAST('{cutoff}' AS timestamptz) + interval '1 millisecond', 1, 'login', 'user', 1, '{{}}' \
             FROM generate_series(1, 7) i"
        ),
    ));
    let late = "SELECT count(*) FROM core_audit_log WHERE id > 20000000";
    let reviewed = step_rows(&saved_json["execution"], "audit-logs");
    crate::support::cli::poll_until("the clock never passed the late rows", 5, || {
        (rt.block_on(pg_count(
            &url,
            "SELECT count(*) FROM core_audit_log WHERE id > 20000000 AND created_at < now() - interval '90 days 1 second'",
        )) == 7)
            .then_some(())
    });
    assert!(
        step_rows(&diff_json(dir.path(), &plan), "audit-logs") >= reviewed + 7,
        "a fresh plan would take the late rows too"
    );
    let before = rt.block_on(pg_count(&url, "SELECT count(*) FROM core_audit_log"));
    let out = apply(dir.path(), &saved);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = rt.block_on(pg_count(&url, "SELECT count(*) FROM core_audit_log"));
    assert_eq!((before - after) as u64, reviewed);
    assert_eq!(rt.block_on(pg_count(&url, late)), 7, "the late rows were not reviewed");
    // The journal records the reviewed plan's hash.
    let saved_hash = serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&saved).expect("saved"))
        .expect("saved JSON")["execution"]["hash"]
        .as_str()
        .expect("hash")
        .to_string();
    assert_eq!(saved_hash, diff["hash"].as_str().expect("diff hash"));
    let journaled: String = rt.block_on(async {
        let mut c = connect(&url).await;
        sqlx::query_scalar("SELECT plan_hash FROM dbmaint.runs")
            .fetch_one(&mut c)
            .await
            .expect("run")
    });
    assert_eq!(journaled, saved_hash);
}

#[test]
fn postgres_saved_plan_is_refused_when_the_data_grew_beyond_the_review() {
    let rt = rt();
    let url = rt.block_on(Cluster::get().fresh_db());
    rt.block_on(seed_pg(&url));
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = retention_plan(dir.path(), &url, "");
    let saved = dir.path().join("reviewed.json");
    let out = dbmaint(dir.path())
        .args(["plan", "diff", "--out"])
        .arg(&saved)
        .arg(&plan)
        .output()
        .expect("diff --out");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // 25 more rows past the cutoff arrive after the review.
    rt.block_on(exec(
        &url,
        "INSERT INTO core_audit_log (id, created_at, actor_id, action, object_type, object_id, payload) \
         SELECT 10000000 + i, now() - interval '400 days', 1, 'login', 'user', 1, '{}' FROM generate_series(1, 25) i",
    ));
    let before = rt.block_on(pg_count(&url, "SELECT count(*) FROM core_audit_log"));
    let out = apply(dir.path(), &saved);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("25 more than the"), "says by how much: {stderr}");
    assert!(stderr.contains("nothing was done"), "{stderr}");
    assert_eq!(
        before,
        rt.block_on(pg_count(&url, "SELECT count(*) FROM core_audit_log"))
    );
    assert_eq!(
        rt.block_on(pg_count(
            &url,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'dbmaint'"
        )),
        0,
        "no run was started"
    );
}

#[test]
fn postgres_sigint_stops_between_batches_reports_and_a_rerun_continues() {
    let (rt, url) = events_db();
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = write(
        dir.path(),
        "plan.yaml",
        &format!(
            r#"version: 1
name: sigint-test
target: "{url}"
steps:
  old-events:
    retention: {{ table: events, column: created_at, older_than: 500 days, batch_size: 100, pause: 20ms }}
"#
        ),
    );
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("dbmaint"))
        .current_dir(dir.path())
        .args(["--output", "json", "plan", "apply", "--auto-approve"])
        .arg(&plan)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("apply");
    let t0 = Instant::now();
    let batches = || {
        rt.block_on(async {
            let mut c = connect(&url).await;
            let exists: bool = sqlx::query_scalar("SELECT to_regclass('dbmaint.batches') IS NOT NULL")
                .fetch_one(&mut c)
                .await
                .expect("regclass");
            if !exists {
                return 0;
            }
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM dbmaint.batches")
                .fetch_one(&mut c)
                .await
                .expect("batches")
        })
    };
    while batches() < 3 {
        assert!(t0.elapsed() < Duration::from_secs(20), "no batches");
        std::thread::sleep(Duration::from_millis(5));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let out = child.wait_with_output().expect("apply output");
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    let step = &v["report"]["steps"][0];
    assert_eq!(step["status"], "deferred", "{step}");
    assert!(
        step["deferred"]
            .as_str()
            .is_some_and(|d| d.contains("interrupted by a signal")),
        "{step}"
    );
    let removed = step["rows"].as_i64().expect("rows");
    assert!(removed > 0 && removed < 10_000, "stopped part way: {removed}");
    assert_eq!(
        rt.block_on(pg_count(
            &url,
            "SELECT coalesce(sum(rows), 0)::int8 FROM dbmaint.batches"
        )),
        removed,
        "the report and the journal agree"
    );
    assert_eq!(
        rt.block_on(pg_count(
            &url,
            "SELECT count(*) FROM dbmaint.runs WHERE status = 'interrupted'"
        )),
        1
    );
    let out = apply(dir.path(), &plan);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        rt.block_on(pg_count(
            &url,
            "SELECT count(*) FROM events WHERE created_at < now() - interval '500 days'"
        )),
        0
    );
}

/// Starts `dbmaint plan apply` on `plan` with stderr read line by line into
/// a channel (stdout kept for the report).
fn spawn_apply(dir: &Path, plan: &Path) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("dbmaint"))
        .current_dir(dir)
        .args(["--output", "json", "plan", "apply", "--auto-approve"])
        .arg(plan)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("apply");
    let (tx, rx) = std::sync::mpsc::channel();
    let err = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// Waits for a stderr line containing `needle`; the lines seen so far on failure.
fn wait_line(rx: &std::sync::mpsc::Receiver<String>, needle: &str) {
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) if l.contains(needle) => return,
            Ok(l) => seen.push(l),
            Err(e) => panic!("no `{needle}` on stderr ({e}): {seen:#?}"),
        }
    }
}

/// Waits until a session runs `pg_sleep` for the plan's sql step.
fn wait_for_sleeper(rt: &tokio::runtime::Runtime, url: &str) {
    let t0 = Instant::now();
    while rt.block_on(pg_count(
        url,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' \
         AND query LIKE 'SELECT pg_sleep(%'",
    )) == 0
    {
        assert!(t0.elapsed() < Duration::from_secs(30), "the sql step never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A plan: a 3-second statement, then a retention step that must not start
/// once a signal came.
fn sleep_then_delete_plan(dir: &Path, url: &str, seconds: u32) -> std::path::PathBuf {
    write(
        dir,
        "plan.yaml",
        &format!(
            r#"version: 1
name: sigterm-test
target: "{url}"
steps:
  slow:
    sql: {{ sql: "SELECT pg_sleep({seconds})" }}
  old-events:
    needs: [slow]
    retention: {{ table: events, column: created_at, older_than: 500 days, batch_size: 100 }}
"#
        ),
    )
}

#[test]
fn postgres_sigterm_lets_the_running_statement_finish_and_starts_nothing_new() {
    // The first SIGTERM (a stopped cron job, `systemctl stop`) does not cut
    // the statement short: it finishes, its step succeeds, the next step
    // never starts, and the run is journaled `interrupted`, exit 130.
    let (rt, url) = events_db();
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = sleep_then_delete_plan(dir.path(), &url, 3);
    let (child, rx) = spawn_apply(dir.path(), &plan);
    wait_for_sleeper(&rt, &url);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    wait_line(&rx, "stopping:");
    let out = child.wait_with_output().expect("apply output");
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stdout));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    let steps = v["report"]["steps"].as_array().expect("steps");
    let status = |name: &str| {
        steps
            .iter()
            .find(|s| s["id"] == name)
            .map(|s| s["status"].clone())
            .unwrap_or_default()
    };
    assert_eq!(
        status("slow"),
        "succeeded",
        "the running statement finished: {steps:#?}"
    );
    assert_ne!(status("old-events"), "succeeded", "{steps:#?}");
    assert_eq!(
        rt.block_on(pg_count(&url, "SELECT count(*) FROM events")),
        20_000,
        "no row deleted after the signal"
    );
    assert_eq!(
        rt.block_on(pg_count(
            &url,
            "SELECT count(*) FROM dbmaint.runs WHERE status = 'interrupted'"
        )),
        1
    );
}

#[test]
fn postgres_a_second_signal_exits_at_once_and_the_next_apply_marks_the_run_interrupted() {
    let (rt, url) = events_db();
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = sleep_then_delete_plan(dir.path(), &url, 60);
    let (mut child, rx) = spawn_apply(dir.path(), &plan);
    wait_for_sleeper(&rt, &url);
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    wait_line(&rx, "stopping:");
    // The first signal waits for the 60-second statement.
    assert!(child.try_wait().expect("try_wait").is_none(), "the first signal waits");
    let t0 = Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130));
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "exited at once, not after the statement: {:?}",
        t0.elapsed()
    );
    // The server still runs the orphaned sleep (this database's only; the
    // cluster is shared); end it as an operator would.
    rt.block_on(exec(
        &url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() \
         AND query LIKE 'SELECT pg_sleep(%' AND pid <> pg_backend_pid()",
    ));
    assert_eq!(
        rt.block_on(pg_count(
            &url,
            "SELECT count(*) FROM dbmaint.runs WHERE status = 'running'"
        )),
        1,
        "the killed run is still recorded as running"
    );
    // The next apply (the same plan, without the long statement) closes it.
    let plan = sleep_then_delete_plan(dir.path(), &url, 0);
    let out = apply(dir.path(), &plan);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        rt.block_on(pg_count(
            &url,
            "SELECT count(*) FROM dbmaint.runs WHERE status = 'interrupted'"
        )),
        1,
        "the next apply marked the killed run interrupted"
    );
    assert_eq!(
        rt.block_on(pg_count(
            &url,
            "SELECT count(*) FROM dbmaint.steps WHERE step = 'slow' AND status = 'interrupted'"
        )),
        1,
        "and its running step"
    );
}

/// `HH:MM-HH:MM` from `from` to `to` minutes after now (UTC), across midnight as needed.
fn window_from_now(from: i64, to: i64) -> String {
    let now = chrono::Utc::now();
    let at = |m: i64| (now + chrono::Duration::minutes(m)).format("%H:%M").to_string();
    format!("{}-{}", at(from), at(to))
}

#[test]
fn sqlite_apply_outside_the_window_changes_nothing_and_inside_it_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    crate::support::test::sqlite(
        &db,
        "CREATE TABLE ev (id INTEGER PRIMARY KEY, created_at TEXT NOT NULL); \
         WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 100) \
         INSERT INTO ev (created_at) SELECT datetime('now', '-' || (n * 10) || ' days') FROM g;",
    );
    let plan = |window: &str| {
        write(
            dir.path(),
            "plan.yaml",
            &format!(
                "version: 1\nname: windowed\ntarget: \"sqlite:{}\"\nlimits: {{ window: \"{window}\" }}\nsteps:\n  \
                 old:\n    retention: {{ table: ev, column: created_at, older_than: 365 days }}\n",
                db.display()
            ),
        )
    };
    let old = "SELECT count(*) FROM ev WHERE created_at < datetime('now', '-365 days')";
    assert_eq!(crate::support::test::sqlite(&db, old), "64");
    // Two to three hours from now: not yet.
    let out = apply(dir.path(), &plan(&window_from_now(120, 180)));
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("outside the maintenance window"), "{stderr}");
    assert_eq!(crate::support::test::sqlite(&db, old), "64", "nothing deleted");
    assert_eq!(
        crate::support::test::sqlite(&db, "SELECT count(*) FROM sqlite_schema WHERE name LIKE 'dbmaint%'"),
        "0",
        "no run started, no journal"
    );
    // From an hour ago to an hour from now: it runs.
    let out = apply(dir.path(), &plan(&window_from_now(-60, 60)));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(crate::support::test::sqlite(&db, old), "0");
    assert_eq!(crate::support::test::sqlite(&db, "SELECT count(*) FROM ev"), "36");
}

#[test]
fn postgres_retention_pause_spaces_the_batches_commits() {
    // `pause: 300ms` between batches: each batch commits at least that long
    // after the one before (the journal's commit times, the server's clock).
    let (rt, url) = events_db();
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = write(
        dir.path(),
        "plan.yaml",
        &format!(
            r#"version: 1
name: paused
target: "{url}"
steps:
  old-events:
    retention: {{ table: events, column: created_at, older_than: 500 days, batch_size: 2000, pause: 300ms }}
"#
        ),
    );
    let out = apply(dir.path(), &plan);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (batches, min_gap_ms): (i64, f64) = rt.block_on(async {
        let mut c = connect(&url).await;
        sqlx::query_as(
            "SELECT count(*)::int8, coalesce(min(gap), 0)::float8 FROM ( \
               SELECT extract(epoch FROM committed_at - lag(committed_at) OVER (ORDER BY batch_no)) * 1000 AS gap \
               FROM dbmaint.batches WHERE rows > 0) g",
        )
        .fetch_one(&mut c)
        .await
        .expect("batches")
    });
    assert!(batches >= 4, "{batches} batches");
    assert!(min_gap_ms >= 300.0, "batches {min_gap_ms:.0} ms apart, pause 300 ms");
    assert_eq!(
        rt.block_on(pg_count(
            &url,
            "SELECT count(*) FROM events WHERE created_at < now() - interval '500 days'"
        )),
        0
    );
}

/// Issue 14 §6: from the journal's history, each step's expected duration
/// (p90 of its past runs, scaled by this run's rows) is shown in the diff,
/// and with `limits.fit: defer` a step that does not fit in what is left
/// of max_runtime is deferred before it starts (exit 3); the others run.
#[test]
fn sqlite_fit_defer_defers_the_step_whose_history_says_it_will_not_fit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let sqlite = |sql: &str| crate::support::test::sqlite(&db, sql);
    let old_rows = |table: &str| {
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) \
             INSERT INTO {table} (at) SELECT datetime('now', '-400 days', '-' || i || ' minutes') FROM n;"
        )
    };
    sqlite(&format!(
        "CREATE TABLE fast (id INTEGER PRIMARY KEY, at TEXT NOT NULL); INSERT INTO fast (at) VALUES (datetime('now')); \
         CREATE TABLE slow (id INTEGER PRIMARY KEY, at TEXT NOT NULL); INSERT INTO slow (at) VALUES (datetime('now')); \
         {} {}",
        old_rows("fast"),
        old_rows("slow")
    ));
    let plan = write(
        dir.path(),
        "fit.yaml",
        "version: 1\nname: fit\ntarget: \"sqlite:app.db\"\nlimits: { max_runtime: 60s, fit: defer }\nsteps:\n  \
         fast:\n    retention: { table: fast, column: at, older_than: 365 days }\n  \
         slow:\n    retention: { table: slow, column: at, older_than: 365 days }\n",
    );
    // No history yet: both run.
    let out = apply(dir.path(), &plan);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The journal now says `slow` took 120 s for its 100 rows (as if it
    // had), `fast` what it really took.
    sqlite(
        "UPDATE dbmaint_steps SET finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', started_at, '+120 seconds') \
         WHERE step = 'slow'",
    );
    sqlite(&format!("{} {}", old_rows("fast"), old_rows("slow")));
    let diff = dbmaint(dir.path())
        .args(["plan", "diff"])
        .arg(&plan)
        .output()
        .expect("diff");
    let text = String::from_utf8_lossy(&diff.stdout);
    assert!(
        text.contains("    expected: 2m00s (p90 of 1 run, scaled to 100 rows)"),
        "{text}"
    );
    assert!(text.contains("Expected: 2m"), "{text}");
    assert!(text.contains("limits.fit: defer"), "{text}");
    let out = dbmaint(dir.path())
        .args(["--output", "json", "plan", "apply", "--auto-approve"])
        .arg(&plan)
        .output()
        .expect("apply");
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report");
    let slow = v["report"]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["id"] == "slow")
        .cloned()
        .expect("slow");
    assert_eq!(slow["status"], "deferred", "{slow}");
    let why = slow["deferred"].as_str().unwrap_or("");
    assert!(
        why.contains("expected to take 2m00s") && why.contains("of max_runtime"),
        "{why}"
    );
    assert_eq!(sqlite("SELECT count(*) FROM fast"), "1", "fast ran");
    assert_eq!(sqlite("SELECT count(*) FROM slow"), "101", "slow was not started");
}

/// Issue 14 §6 on PostgreSQL: after a run, the next diff expects each
/// step to take what its history says, scaled to the rows it predicts now.
#[test]
fn postgres_the_diff_after_a_run_expects_each_step_from_its_history() {
    let (rt, url) = events_db();
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = write(
        dir.path(),
        "hist.yaml",
        &format!(
            "version: 1\nname: hist\ntarget: \"{url}\"\nsteps:\n  purge:\n    \
             retention: {{ table: events, column: created_at, older_than: 800 days, batch_size: 1000 }}\n"
        ),
    );
    let diff = diff_json(dir.path(), &plan);
    assert!(diff["steps"][0]["expected"].is_null(), "no history yet: {diff}");
    let out = apply(dir.path(), &plan);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Rows become eligible again: the next run's expectation is scaled.
    rt.block_on(exec(
        &url,
        "UPDATE events SET created_at = created_at - interval '300 days' WHERE id % 1000 BETWEEN 500 AND 699",
    ));
    let diff = diff_json(dir.path(), &plan);
    let e = &diff["steps"][0]["expected"];
    assert_eq!(e["runs"], 1, "{diff}");
    let rows = diff["steps"][0]["estimate"]["rows"].as_u64().expect("rows");
    assert!(rows > 0, "{diff}");
    assert_eq!(
        e["basis"].as_str().unwrap_or(""),
        format!(
            "p90 of 1 run, scaled to {} rows",
            dbmaint::run::execplan::human_count(rows)
        )
    );
}

/// `limits.window` is also a deadline: a run started inside the window
/// starts no batch once it closes, and says so (exit 3); the rows left
/// are there for the next window.
#[test]
fn sqlite_a_window_that_closes_mid_run_stops_the_batches_at_its_end() {
    use chrono::Timelike;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    crate::support::test::sqlite(
        &db,
        "CREATE TABLE ev (id INTEGER PRIMARY KEY, created_at TEXT NOT NULL); \
         WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 300) \
         INSERT INTO ev (created_at) SELECT datetime('now', '-400 days') FROM g;",
    );
    // The window ends at the next minute's end at the latest (the one
    // after when this minute is nearly over), in UTC.
    let now = chrono::Utc::now();
    let span = if now.second() < 50 { 1 } else { 2 };
    let start =
        now - chrono::Duration::seconds(now.second().into()) - chrono::Duration::nanoseconds(now.nanosecond().into());
    let closes = start + chrono::Duration::minutes(span);
    let window = format!("{}-{}", start.format("%H:%M"), closes.format("%H:%M"));
    let plan = write(
        dir.path(),
        "plan.yaml",
        &format!(
            "version: 1\nname: closing\ntarget: \"sqlite:{}\"\nlimits: {{ window: \"{window}\", tz: UTC }}\nsteps:\n  \
             old:\n    retention: {{ table: ev, column: created_at, older_than: 365 days, batch_size: 1, pause: 1s, allow_all_rows: true }}\n",
            db.display()
        ),
    );
    let out = apply(dir.path(), &plan);
    let ended = chrono::Utc::now();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("the maintenance window closed"), "{stderr}");
    assert!(
        ended >= closes && ended < closes + chrono::Duration::seconds(5),
        "stopped at the close ({closes}), not before or long after: {ended}"
    );
    let left: u64 = crate::support::test::sqlite(&db, "SELECT count(*) FROM ev")
        .parse()
        .expect("count");
    assert!(left > 0 && left < 300, "some batches ran, the rest wait: {left} left");
    let journaled: u64 = crate::support::test::sqlite(&db, "SELECT coalesce(sum(rows), 0) FROM dbmaint_batches")
        .parse()
        .expect("journal");
    assert_eq!(journaled, 300 - left, "every deleted row is in the journal");
}

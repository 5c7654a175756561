//! `kill -9` during retention, at random moments: every eligible row is in
//! exactly one of source or archive after each kill, and a rerun finishes
//! the job. Moments are drawn from a seeded generator (the seed is printed
//! on failure); most trials wait until the journal or the archive file shows
//! that batches are flowing, then kill at a random point of the batch cycle;
//! some kill at a random time from spawn (connecting, planning, locking).

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dbmaint::demo::Rng;

use crate::support::cluster::{Cluster, connect};

const ROWS: i64 = 40_000;
const SEED: u64 = 0x6b696c6c;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn write_plan(dir: &Path, url: &str, archive: &str) -> std::path::PathBuf {
    let text = format!(
        r#"version: 1
name: kill-trials
target: "{url}"
defaults: {{ lock_timeout: 1s, retries: 2 }}
steps:
  old-events:
    retention:
      table: events
      column: created_at
      older_than: 500 days
      batch_size: 100
      pause: 10ms
      archive: {archive}
"#
    );
    let path = dir.join("plan.yaml");
    std::fs::write(&path, text).expect("write plan");
    path
}

fn spawn_apply(dir: &Path, plan: &Path, output: fn() -> Stdio) -> Child {
    Command::new(assert_cmd::cargo::cargo_bin("dbmaint"))
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .args(["plan", "apply", "--auto-approve", "--progress", "never"])
        .arg(plan)
        .stdin(Stdio::null())
        .stdout(output())
        .stderr(output())
        .spawn()
        .expect("spawn dbmaint")
}

/// Polls `cond` every 2 ms until it holds, the child exits, or 20 s pass.
fn wait_until(child: &mut Child, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        if child.try_wait().expect("try_wait").is_some() || t0.elapsed() > Duration::from_secs(20) {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Runs the trials: returns how many kills landed while dbmaint ran.
fn trials(
    rng: &mut Rng,
    n: usize,
    dir: &Path,
    plan: &Path,
    progress: &mut dyn FnMut() -> u64,
    settle_and_check: &mut dyn FnMut(usize),
) -> usize {
    let mut landed = 0;
    for trial in 0..n {
        let before = progress();
        let mut child = spawn_apply(dir, plan, Stdio::null);
        if trial % 5 == 4 {
            // Anywhere from spawn: connect, inspect, lock, journal, batches.
            std::thread::sleep(Duration::from_millis(rng.below(400)));
        } else {
            let more = 1 + rng.below(3);
            wait_until(&mut child, || progress() >= before + more);
            std::thread::sleep(Duration::from_micros(rng.below(15_000)));
        }
        if child.try_wait().expect("try_wait").is_none() {
            landed += 1;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        settle_and_check(trial);
    }
    landed
}

#[test]
fn postgres_kill_9_during_retention_loses_and_duplicates_nothing() {
    let rt = rt();
    let url = rt.block_on(Cluster::get().fresh_db());
    let q = |sql: &str| -> i64 {
        rt.block_on(async {
            let mut c = connect(&url).await;
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
                .fetch_one(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        })
    };
    rt.block_on(async {
        let mut c = connect(&url).await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE events (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, payload text NOT NULL);
             INSERT INTO events SELECT i, now() - (i % 1000) * interval '1 day' - interval '12 hours', md5(i::text)
               FROM generate_series(1, {ROWS}) i;
             CREATE INDEX ON events (created_at);
             CREATE TABLE expected AS SELECT id, md5(e::text) AS h FROM events e
               WHERE created_at < now() - interval '500 days';
             CREATE TABLE untouched AS SELECT id, md5(e::text) AS h FROM events e
               WHERE created_at >= now() - interval '500 days';"
        )))
        .execute(&mut c)
        .await
        .expect("seed");
    });
    let eligible = q("SELECT count(*) FROM expected");
    assert!(eligible > 15_000, "{eligible}");
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = write_plan(dir.path(), &url, "{ table: events_archive }");

    let archive_exists = || q("SELECT (to_regclass('events_archive') IS NOT NULL)::int::int8") == 1;
    let mut progress = || -> u64 {
        if q("SELECT (to_regclass('dbmaint.batches') IS NOT NULL)::int::int8") == 0 {
            return 0;
        }
        q("SELECT count(*) FROM dbmaint.batches") as u64
    };
    // Exactly one of source or archive, with the row unchanged.
    let violations = || -> (i64, i64) {
        if !archive_exists() {
            return (
                q("SELECT count(*) FROM expected x WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = x.id)"),
                0,
            );
        }
        let wrong_place = q("SELECT count(*) FROM expected x WHERE \
               EXISTS (SELECT 1 FROM events e WHERE e.id = x.id) = EXISTS (SELECT 1 FROM events_archive a WHERE a.id = x.id)");
        let altered = q("SELECT count(*) FROM events_archive a LEFT JOIN expected x USING (id) \
               WHERE x.h IS DISTINCT FROM md5(ROW(a.id, a.created_at, a.payload)::text)");
        (wrong_place, altered)
    };
    let mut settle_and_check = |trial: usize| {
        // A killed client's backend ends when it next touches the socket
        // (client_connection_check_interval covers a running statement).
        let t0 = Instant::now();
        while q(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'dbmaint%'",
        ) > 0
        {
            assert!(
                t0.elapsed() < Duration::from_secs(15),
                "the killed run's sessions did not end"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let (wrong_place, altered) = violations();
        assert_eq!(wrong_place, 0, "seed {SEED:#x} trial {trial}: rows in neither or both");
        assert_eq!(
            altered, 0,
            "seed {SEED:#x} trial {trial}: archive rows differ from the source rows"
        );
        let untouched = q("SELECT count(*) FROM untouched u JOIN events e USING (id) WHERE u.h = md5(e::text)");
        assert_eq!(
            untouched,
            ROWS - eligible,
            "seed {SEED:#x} trial {trial}: rows outside the cutoff changed"
        );
    };
    let mut rng = Rng::new(SEED);
    let landed = trials(&mut rng, 22, dir.path(), &plan, &mut progress, &mut settle_and_check);
    assert!(landed >= 20, "only {landed} of 22 kills landed while dbmaint ran");
    let moved = q("SELECT count(*) FROM events_archive");
    assert!(
        moved > 0 && moved < eligible,
        "the trials moved part of the work: {moved} of {eligible}"
    );

    // The rerun finishes the job and closes the killed runs in the journal.
    let out = spawn_apply(dir.path(), &plan, Stdio::piped)
        .wait_with_output()
        .expect("rerun");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("marked `interrupted`"),
        "the rerun says it closed the killed runs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(q("SELECT count(*) FROM events_archive"), eligible);
    assert_eq!(q("SELECT count(*) FROM events e JOIN expected USING (id)"), 0);
    assert_eq!(violations(), (0, 0));
    assert_eq!(q("SELECT count(*) FROM dbmaint.runs WHERE status = 'running'"), 0);
    assert!(q("SELECT count(*) FROM dbmaint.runs WHERE status = 'interrupted'") > 0);
    assert_eq!(
        q("SELECT sum(rows)::int8 FROM dbmaint.batches"),
        eligible,
        "the journal's committed batches add up to every row moved"
    );
}

fn file_keys(path: &Path) -> Vec<i64> {
    file_rows(path).into_iter().map(|(k, _)| k).collect()
}

/// The archive's complete lines, in order: (key, the row as written).
fn file_rows(path: &Path) -> Vec<(i64, serde_json::Value)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // A torn last line (killed mid-write) is not a row yet; the next run cuts it.
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("every complete line is JSON");
            let key = v["key"].as_str().and_then(|k| k.parse().ok()).expect("key");
            (key, v["row"].clone())
        })
        .collect()
}

#[test]
fn sqlite_kill_9_during_file_archive_loses_nothing_and_a_rerun_writes_each_row_once() {
    use sqlx::Connection;
    let rt = rt();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let url = format!("sqlite:{}", db.display());
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&db)
        .create_if_missing(true);
    let ids = |sql: &str| -> Vec<i64> {
        rt.block_on(async {
            let mut c = sqlx::SqliteConnection::connect_with(&opts).await.expect("open");
            let v = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
                .fetch_all(&mut c)
                .await
                .expect("query");
            let _ = c.close().await;
            v
        })
    };
    rt.block_on(async {
        let mut c = sqlx::SqliteConnection::connect_with(&opts).await.expect("create");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE events (id INTEGER PRIMARY KEY, created_at TEXT NOT NULL, payload TEXT NOT NULL);
             WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {ROWS})
             INSERT INTO events SELECT i, datetime('now', '-' || (i % 1000) || ' days', '-12 hours'), hex(randomblob(8)) FROM s;
             CREATE INDEX events_created ON events (created_at);"
        )))
        .execute(&mut c)
        .await
        .expect("seed");
        let _ = c.close().await;
    });
    let eligible: HashSet<i64> = ids("SELECT id FROM events WHERE created_at < datetime('now', '-500 days')")
        .into_iter()
        .collect();
    let untouched = ids("SELECT id FROM events WHERE created_at >= datetime('now', '-500 days')").len();
    // Each eligible row as seeded, to compare with what the archive holds.
    let seeded: std::collections::HashMap<i64, serde_json::Value> = rt.block_on(async {
        let mut c = sqlx::SqliteConnection::connect_with(&opts).await.expect("open");
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT id, created_at, payload FROM events WHERE created_at < datetime('now', '-500 days')",
        )
        .fetch_all(&mut c)
        .await
        .expect("rows");
        let _ = c.close().await;
        rows.into_iter()
            .map(|(id, at, payload)| (id, serde_json::json!({"id": id, "created_at": at, "payload": payload})))
            .collect()
    });
    assert_eq!(seeded.len(), eligible.len());
    let archive = dir.path().join("archive/events.jsonl");
    let plan = write_plan(dir.path(), &url, &format!("{{ file: \"{}\" }}", archive.display()));
    let mut progress = || std::fs::metadata(&archive).map(|m| m.len() / 4000).unwrap_or(0);
    let mut settle_and_check = |trial: usize| {
        // The process is gone and SQLite recovers its journal on next open.
        let in_source: HashSet<i64> = ids("SELECT id FROM events").into_iter().collect();
        let rows = file_rows(&archive);
        let in_file: HashSet<i64> = rows.iter().map(|(k, _)| *k).collect();
        // Each row is in the file once, with the content it had.
        assert_eq!(
            in_file.len(),
            rows.len(),
            "seed {SEED:#x} trial {trial}: a row written twice"
        );
        for (key, row) in &rows {
            assert_eq!(
                Some(row),
                seeded.get(key),
                "seed {SEED:#x} trial {trial}: row {key} as archived"
            );
        }
        let neither = eligible
            .iter()
            .filter(|id| !in_source.contains(id) && !in_file.contains(id))
            .count();
        assert_eq!(
            neither, 0,
            "seed {SEED:#x} trial {trial}: rows deleted without being archived"
        );
        assert_eq!(
            in_source.len() + in_file.len() - in_source.intersection(&in_file).count(),
            ROWS as usize
        );
        // Only the last batch, fsynced but its delete not committed when
        // the kill landed, may be in both: the file's last lines (a rerun
        // skips them, tested below).
        let tail: HashSet<i64> = rows.iter().rev().take(100).map(|(k, _)| *k).collect();
        let both: HashSet<i64> = in_source.intersection(&in_file).copied().collect();
        assert!(
            both.is_subset(&tail),
            "seed {SEED:#x} trial {trial}: {} rows in both places, not all in the last batch",
            both.len()
        );
        assert_eq!(in_source.iter().filter(|id| !eligible.contains(id)).count(), untouched);
    };
    let mut rng = Rng::new(SEED ^ 1);
    let landed = trials(&mut rng, 8, dir.path(), &plan, &mut progress, &mut settle_and_check);
    assert!(landed >= 6, "only {landed} of 8 kills landed while dbmaint ran");

    let out = spawn_apply(dir.path(), &plan, Stdio::piped)
        .wait_with_output()
        .expect("rerun");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = file_rows(&archive);
    for (key, row) in &rows {
        assert_eq!(Some(row), seeded.get(key), "row {key} as archived");
    }
    let keys = file_keys(&archive);
    let unique: HashSet<i64> = keys.iter().copied().collect();
    assert_eq!(keys.len(), unique.len(), "no row is written twice");
    assert_eq!(unique, eligible, "the file holds exactly the eligible rows");
    assert_eq!(
        ids("SELECT id FROM events WHERE created_at < datetime('now', '-500 days')").len(),
        0
    );
    assert!(
        std::fs::read_to_string(&archive).expect("archive").ends_with('\n'),
        "no torn line is left"
    );
}

#[test]
fn postgres_kill_9_during_file_archive_loses_nothing_and_a_rerun_writes_each_row_once() {
    let rt = rt();
    let url = rt.block_on(Cluster::get().fresh_db());
    let q = |sql: &str| -> Vec<(i64, String)> {
        rt.block_on(async {
            let mut c = connect(&url).await;
            sqlx::query_as(sqlx::AssertSqlSafe(sql.to_string()))
                .fetch_all(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        })
    };
    rt.block_on(async {
        let mut c = connect(&url).await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE events (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, payload text NOT NULL);
             INSERT INTO events SELECT i, now() - (i % 1000) * interval '1 day' - interval '12 hours', md5(i::text)
               FROM generate_series(1, {ROWS}) i;
             CREATE INDEX ON events (created_at);"
        )))
        .execute(&mut c)
        .await
        .expect("seed");
    });
    // Each eligible row's payload, to compare with what the file holds.
    let seeded: std::collections::HashMap<i64, String> =
        q("SELECT id, payload FROM events WHERE created_at < now() - interval '500 days'")
            .into_iter()
            .collect();
    let untouched = ROWS as usize - seeded.len();
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("archive/events.jsonl");
    let plan = write_plan(dir.path(), &url, &format!("{{ file: \"{}\" }}", archive.display()));
    let mut progress = || std::fs::metadata(&archive).map(|m| m.len() / 8000).unwrap_or(0);
    let mut settle_and_check = |trial: usize| {
        let t0 = Instant::now();
        while !q(
            "SELECT 0::int8, pid::text FROM pg_stat_activity WHERE datname = current_database() \
                  AND application_name LIKE 'dbmaint%'",
        )
        .is_empty()
        {
            assert!(
                t0.elapsed() < Duration::from_secs(15),
                "the killed run's sessions did not end"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let in_source: HashSet<i64> = q("SELECT id, '' FROM events").into_iter().map(|(i, _)| i).collect();
        let rows = file_rows(&archive);
        let in_file: HashSet<i64> = rows.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            in_file.len(),
            rows.len(),
            "seed {SEED:#x} trial {trial}: a row written twice"
        );
        for (key, row) in &rows {
            assert_eq!(
                row["payload"].as_str(),
                seeded.get(key).map(String::as_str),
                "seed {SEED:#x} trial {trial}: row {key} as archived"
            );
        }
        let lost = seeded
            .keys()
            .filter(|id| !in_source.contains(id) && !in_file.contains(id))
            .count();
        assert_eq!(
            lost, 0,
            "seed {SEED:#x} trial {trial}: rows deleted without being archived"
        );
        // Only the last batch (fsynced, its delete not committed) may be in both.
        let tail: HashSet<i64> = rows.iter().rev().take(100).map(|(k, _)| *k).collect();
        let both: HashSet<i64> = in_source.intersection(&in_file).copied().collect();
        assert!(
            both.is_subset(&tail),
            "seed {SEED:#x} trial {trial}: {} rows in both",
            both.len()
        );
        assert_eq!(
            in_source.iter().filter(|id| !seeded.contains_key(id)).count(),
            untouched,
            "seed {SEED:#x} trial {trial}: rows outside the cutoff changed"
        );
    };
    let mut rng = Rng::new(SEED ^ 2);
    let landed = trials(&mut rng, 8, dir.path(), &plan, &mut progress, &mut settle_and_check);
    assert!(landed >= 6, "only {landed} of 8 kills landed while dbmaint ran");
    let moved = file_keys(&archive).len();
    assert!(
        moved > 0 && moved < seeded.len(),
        "the trials archived part of the work: {moved} of {}",
        seeded.len()
    );

    let out = spawn_apply(dir.path(), &plan, Stdio::piped)
        .wait_with_output()
        .expect("rerun");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let keys = file_keys(&archive);
    let unique: HashSet<i64> = keys.iter().copied().collect();
    assert_eq!(keys.len(), unique.len(), "no row is written twice");
    assert_eq!(
        unique,
        seeded.keys().copied().collect::<HashSet<i64>>(),
        "exactly the eligible rows"
    );
    assert!(q("SELECT id, '' FROM events WHERE created_at < now() - interval '500 days'").is_empty());
}

//! `partitions` on a real cluster: a monthly range-partitioned table of 36
//! partitions (one straddling the cutoff) with a default partition; the
//! diff lists what goes with its bounds and changes nothing, apply drops
//! exactly the partitions whose whole range is older, keeps every other row;
//! `detach` into an archive schema keeps every row; an interrupted
//! `DETACH … CONCURRENTLY` is finished by the next run; SQLite is refused.

use chrono::{Datelike, NaiveDate, Utc};

use crate::support::cli::{apply, dbmaint, diff_json, pg_count, rt};
use crate::support::cluster::seeded_db;
use crate::support::test::{Test, sqlite};

/// First day of the month `back` months before this one (UTC).
fn month_start(back: i32) -> NaiveDate {
    let now = Utc::now().date_naive();
    let months = now.year() * 12 + now.month0() as i32 - back;
    NaiveDate::from_ymd_opt(months.div_euclid(12), months.rem_euclid(12) as u32 + 1, 1).expect("date")
}

/// `events` partitioned by month over the last 36 months (`events_00` is
/// this month, `events_35` the oldest), 10 rows in each, and optionally a
/// default partition holding 7 rows dated 2100. Returns the URL and the
/// partitions whose whole range ends a year or more ago.
fn partitioned_db(with_default: bool) -> (String, Vec<String>) {
    let cutoff = (Utc::now() - chrono::Duration::days(365)).date_naive();
    let mut sql = String::from(
        "CREATE TABLE events (id bigint NOT NULL, created_at timestamptz NOT NULL, body text) PARTITION BY RANGE (created_at);\n",
    );
    let mut old = vec![];
    for back in 0..36 {
        let (from, to) = (month_start(back), month_start(back - 1));
        sql.push_str(&format!(
            "CREATE TABLE events_{back:02} PARTITION OF events FOR VALUES FROM ('{from} 00:00:00+00') TO ('{to} 00:00:00+00');\n\
             INSERT INTO events SELECT g, '{from} 12:00:00+00'::timestamptz + g * interval '1 hour', 'x' FROM generate_series(1, 10) g;\n"
        ));
        if to <= cutoff {
            old.push(format!("events_{back:02}"));
        }
    }
    if with_default {
        sql.push_str(
            "CREATE TABLE events_default PARTITION OF events DEFAULT;\n\
             INSERT INTO events SELECT g, '2100-01-01'::timestamptz, 'future' FROM generate_series(1, 7) g;\n",
        );
    }
    (seeded_db(&sql, &["ANALYZE events"]), old)
}

fn plan(dir: &std::path::Path, url: &str, params: &str) -> std::path::PathBuf {
    let path = dir.join("plan.yaml");
    std::fs::write(
        &path,
        format!("version: 1\nname: parts\ntarget: \"{url}\"\nsteps:\n  old-events:\n    partitions: {{ {params} }}\n"),
    )
    .expect("plan");
    path
}

fn partitions_of(url: &str) -> Vec<String> {
    rt().block_on(async {
        let mut c = crate::support::cluster::connect(url).await;
        sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'events'::regclass ORDER BY 1",
        )
        .fetch_all(&mut c)
        .await
        .expect("partitions")
    })
}

fn apply_ok(dir: &std::path::Path, plan: &std::path::Path) {
    let out = apply(dir, plan);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn postgres_partitions_drop_exactly_those_older_than_the_cutoff_and_never_the_default() {
    let (url, old) = partitioned_db(true);
    assert!(
        old.len() >= 22,
        "the fixture has a year and more of old partitions: {old:?}"
    );
    let t = Test::new();
    let p = plan(t.path(), &url, "table: events, older_than: 365d");
    let before = partitions_of(&url);
    assert_eq!(before.len(), 37);

    let diff = diff_json(t.path(), &p);
    let step = &diff["steps"][0];
    let objects = step["objects"].as_array().expect("objects");
    let named = |marker: &str| -> Vec<String> {
        objects
            .iter()
            .filter(|o| o["marker"] == marker)
            .map(|o| {
                o["name"]
                    .as_str()
                    .unwrap_or("")
                    .trim_start_matches("public.")
                    .to_string()
            })
            .collect()
    };
    let mut dropped = named("-");
    dropped.sort();
    let mut want = old.clone();
    want.sort();
    assert_eq!(dropped, want, "{step}");
    let kept = named("=");
    assert!(kept.contains(&"events_default".to_string()), "{step}");
    assert_eq!(
        kept.len(),
        2,
        "the default and the partition holding the cutoff are listed: {step}"
    );
    let straddling = kept.iter().find(|k| *k != "events_default").expect("straddling");
    assert!(!old.contains(straddling));
    let text = step.to_string();
    assert!(text.contains("FOR VALUES FROM"), "bounds are shown: {text}");
    assert!(
        step["warnings"].to_string().contains("no backup step"),
        "a backup is suggested: {step}"
    );
    // A default partition rules out CONCURRENTLY: plain DETACH, then DROP.
    let statements = step["statements"].to_string();
    assert!(
        statements.contains("DETACH PARTITION") && !statements.contains("CONCURRENTLY"),
        "{statements}"
    );
    let text = dbmaint(t.path())
        .args(["plan", "diff", "-v"])
        .arg(&p)
        .output()
        .expect("diff");
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    for want in [
        "detach and drop",
        "holds the cutoff",
        "the default partition is never touched",
        "DROP TABLE",
    ] {
        assert!(text.contains(want), "`{want}` in:\n{text}");
    }
    println!("{text}");
    assert_eq!(partitions_of(&url), before, "the diff changed nothing");

    apply_ok(t.path(), &p);
    let after = partitions_of(&url);
    assert_eq!(after.len(), 37 - old.len(), "{after:?}");
    for o in &old {
        assert!(!after.contains(o), "{o} is still attached");
        let gone = rt().block_on(pg_count(
            &url,
            &format!("SELECT count(*) FROM pg_class WHERE relname = '{o}'"),
        ));
        assert_eq!(gone, 0, "{o} was dropped, not only detached");
    }
    assert!(after.contains(&"events_default".to_string()) && after.contains(straddling));
    let rows = rt().block_on(pg_count(&url, "SELECT count(*) FROM events"));
    assert_eq!(
        rows,
        10 * (36 - old.len() as i64) + 7,
        "every row of a kept partition stays"
    );
}

#[test]
fn postgres_partitions_detach_into_an_archive_schema_keeping_every_row() {
    let (url, old) = partitioned_db(false);
    let t = Test::new();
    let p = plan(
        t.path(),
        &url,
        "table: events, older_than: 365d, archive: {schema: old_events}",
    );
    let diff = diff_json(t.path(), &p);
    let statements = diff["steps"][0]["statements"].to_string();
    assert!(statements.contains("CREATE SCHEMA IF NOT EXISTS"), "{statements}");
    assert!(
        statements.contains("CONCURRENTLY"),
        "no default partition: DETACH … CONCURRENTLY: {statements}"
    );
    apply_ok(t.path(), &p);
    assert_eq!(partitions_of(&url).len(), 36 - old.len());
    for o in &old {
        let n = rt().block_on(pg_count(&url, &format!("SELECT count(*) FROM old_events.{o}")));
        assert_eq!(n, 10, "{o} kept its rows in the archive schema");
    }
    let attached = rt().block_on(pg_count(&url, "SELECT count(*) FROM events"));
    assert_eq!(attached, 10 * (36 - old.len() as i64));
}

#[test]
fn postgres_an_interrupted_concurrent_detach_is_finished_by_the_next_run() {
    let (url, old) = partitioned_db(false);
    let victim = old[0].clone();
    rt().block_on(async {
        // An old snapshot makes DETACH … CONCURRENTLY wait in its second
        // transaction; cancelling it there leaves the partition pending.
        let mut holder = crate::support::cluster::connect(&url).await;
        sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM events")
            .execute(&mut holder)
            .await
            .expect("snapshot");
        let detach_url = url.clone();
        let stmt = format!("ALTER TABLE events DETACH PARTITION {victim} CONCURRENTLY");
        let (pid_tx, pid_rx) = tokio::sync::oneshot::channel::<i32>();
        let detach = tokio::spawn(async move {
            let mut c = crate::support::cluster::connect(&detach_url).await;
            let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                .fetch_one(&mut c)
                .await
                .expect("pid");
            let _ = pid_tx.send(pid);
            sqlx::raw_sql(sqlx::AssertSqlSafe(stmt)).execute(&mut c).await
        });
        let pid = pid_rx.await.expect("the detach session's pid");
        let mut admin = crate::support::cluster::connect(&url).await;
        // Its first transaction has committed (the partition is pending)
        // and its second waits for the old snapshot: cancel it there.
        let pending_now =
            format!("SELECT count(*) FROM pg_inherits WHERE inhrelid = '{victim}'::regclass AND inhdetachpending");
        let mut cancelled = false;
        for _ in 0..1000 {
            assert!(
                !detach.is_finished(),
                "the detach ended before it waited: {:?}",
                detach.await
            );
            let pending: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(pending_now.clone()))
                .fetch_one(&mut admin)
                .await
                .expect("pending");
            if pending == 1 {
                cancelled = sqlx::query_scalar("SELECT pg_cancel_backend($1)")
                    .bind(pid)
                    .fetch_one(&mut admin)
                    .await
                    .expect("cancel");
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(cancelled, "the concurrent detach never reached its second phase");
        assert!(detach.await.expect("task").is_err(), "the detach was cancelled");
        sqlx::raw_sql("COMMIT").execute(&mut holder).await.expect("commit");
    });
    let pending = rt().block_on(pg_count(
        &url,
        &format!("SELECT count(*) FROM pg_inherits WHERE inhrelid = '{victim}'::regclass AND inhdetachpending"),
    ));
    assert_eq!(pending, 1, "the fixture left {victim} detach pending");

    let t = Test::new();
    let p = plan(t.path(), &url, "table: events, older_than: 365d");
    let diff = diff_json(t.path(), &p);
    let step = diff["steps"][0].to_string();
    assert!(
        step.contains(&format!("DETACH PARTITION \\\"public\\\".\\\"{victim}\\\" FINALIZE")),
        "{step}"
    );
    assert!(step.contains("was interrupted"), "the diff says why: {step}");
    apply_ok(t.path(), &p);
    let left = rt().block_on(pg_count(
        &url,
        &format!("SELECT count(*) FROM pg_class WHERE relname = '{victim}'"),
    ));
    assert_eq!(left, 0, "{victim} was finished and dropped");
    assert_eq!(partitions_of(&url).len(), 36 - old.len());
}

#[test]
fn sqlite_refuses_a_partitions_step_naming_it() {
    let t = Test::new();
    let db = t.path().join("app.db");
    sqlite(&db, "CREATE TABLE events (id INTEGER PRIMARY KEY, created_at TEXT)");
    let p = plan(
        t.path(),
        &format!("sqlite:{}", db.display()),
        "table: events, older_than: 30d",
    );
    let out = dbmaint(t.path())
        .args(["plan", "validate"])
        .arg(&p)
        .output()
        .expect("validate");
    assert_eq!(out.status.code(), Some(1));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("old-events") && text.contains("partitions"), "{text}");
    assert!(text.to_lowercase().contains("sqlite"), "{text}");
}

#[test]
fn postgres_a_concurrent_detach_that_gives_up_waiting_is_finished_by_its_retry() {
    use std::io::BufRead as _;
    let (url, old) = partitioned_db(false);
    let t = Test::new();
    let p = t.path().join("plan.yaml");
    std::fs::write(
        &p,
        format!(
            "version: 1\nname: parts\ntarget: \"{url}\"\nsteps:\n  old-events:\n    lock_timeout: 300ms\n    retries: 3\n    \
             partitions: {{ table: events, older_than: 365d }}\n"
        ),
    )
    .expect("plan");
    rt().block_on(async {
        // An old snapshot: the first DETACH … CONCURRENTLY marks its
        // partition pending, then times out waiting for it.
        let mut holder = crate::support::cluster::connect(&url).await;
        sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM events")
            .execute(&mut holder)
            .await
            .expect("snapshot");
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("dbmaint"))
            .current_dir(t.path())
            .env_remove("DATABASE_URL")
            .args(["--progress", "never", "plan", "apply", "--auto-approve"])
            .arg(&p)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("apply");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = std::io::BufReader::new(stderr).lines();
        let mut seen = vec![];
        // The step's first attempt gave up: only now let the retry through.
        for line in lines.by_ref() {
            let line = line.expect("stderr line");
            let retrying = line.contains("retry 1");
            seen.push(line);
            if retrying {
                break;
            }
        }
        sqlx::raw_sql("COMMIT").execute(&mut holder).await.expect("commit");
        seen.extend(lines.map_while(Result::ok));
        let status = child.wait().expect("wait");
        assert!(status.success(), "{}", seen.join("\n"));
        assert!(seen.iter().any(|l| l.contains("retry 1")), "{}", seen.join("\n"));
    });
    assert_eq!(partitions_of(&url).len(), 36 - old.len());
    let pending = rt().block_on(pg_count(
        &url,
        "SELECT count(*) FROM pg_inherits WHERE inhdetachpending",
    ));
    assert_eq!(pending, 0);
    for o in &old {
        let gone = rt().block_on(pg_count(
            &url,
            &format!("SELECT count(*) FROM pg_class WHERE relname = '{o}'"),
        ));
        assert_eq!(gone, 0, "{o}");
    }
}

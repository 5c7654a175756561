//! The sample plans in `plans/` diff and apply end to end against seeded
//! databases: Django nightly and the standard/full pair on PostgreSQL,
//! sqlite-app on SQLite. Each apply exits 0 and removes exactly the rows
//! its retention steps select.

use std::path::Path;

use crate::engine::{dbmaint, pg_count, rt, seed_pg};
use crate::pg::seeded_db;

/// `plan diff` then `plan apply` of `plans/<name>.yaml`, run in `dir` (so
/// backups land there) with `env` set; returns the apply's JSON report.
fn diff_and_apply(dir: &Path, name: &str, env: (&str, &str), vars: &[&str]) -> serde_json::Value {
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("plans/{name}.yaml"));
    let diff = dbmaint(dir)
        .env(env.0, env.1)
        .args(["plan", "diff"])
        .arg(&plan)
        .args(vars)
        .output()
        .expect("diff");
    let text = String::from_utf8_lossy(&diff.stdout);
    assert!(
        diff.status.success(),
        "{name}: diff failed:\n{text}\n{}",
        String::from_utf8_lossy(&diff.stderr)
    );
    assert!(!text.contains("cannot plan"), "{name}:\n{text}");
    let out = dbmaint(dir)
        .env(env.0, env.1)
        .args(["--output", "json", "plan", "apply", "--auto-approve"])
        .arg(&plan)
        .args(vars)
        .output()
        .expect("apply");
    assert!(
        out.status.success(),
        "{name}: apply failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report");
    v["report"].clone()
}

fn statuses(report: &serde_json::Value) -> Vec<String> {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["id"].as_str().unwrap_or(""),
                s["status"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn django_nightly_plan_runs_end_to_end() {
    let url = seeded_db("SELECT 1", &[]);
    rt().block_on(seed_pg(&url));
    rt().block_on(async {
        let mut c = crate::pg::connect(&url).await;
        sqlx::raw_sql(
            "CREATE MATERIALIZED VIEW daily_audit AS
               SELECT date_trunc('day', created_at) AS day, count(*) AS n FROM core_audit_log GROUP BY 1;
             CREATE UNIQUE INDEX daily_audit_day ON daily_audit (day);",
        )
        .execute(&mut c)
        .await
        .expect("view");
    });
    let old = rt().block_on(pg_count(
        &url,
        "SELECT count(*) FROM core_audit_log WHERE created_at < now() - interval '90 days'",
    ));
    assert!(old > 0, "the seed has old audit rows");
    let dir = tempfile::tempdir().expect("tempdir");
    let report = diff_and_apply(
        dir.path(),
        "django-nightly",
        ("DATABASE_URL", &url),
        &["--var", &window_around_now()],
    );
    let s = statuses(&report);
    assert!(s.iter().all(|x| x.ends_with(" succeeded")), "{s:?}");
    for step in ["dump", "views", "reindex", "bloat", "stats"] {
        assert!(s.contains(&format!("{step} succeeded")), "{step}: {s:?}");
    }
    let expired = rt().block_on(pg_count(
        &url,
        "SELECT count(*) FROM django_session WHERE expire_date < now()",
    ));
    assert_eq!(expired, 0);
    let backups = std::fs::read_dir(dir.path().join("backups")).expect("backups").count();
    assert_eq!(backups, 1);
}

/// `window=HH:00-HH:00` from an hour ago to two hours ahead (UTC): the
/// plan's 02:00-05:00 window would make the test pass only at night.
fn window_around_now() -> String {
    let h = chrono::Timelike::hour(&chrono::Utc::now());
    format!("window={:02}:00-{:02}:00", (h + 23) % 24, (h + 2) % 24)
}

/// The schema the standard and full plans maintain.
fn cryoprotect_db() -> String {
    seeded_db(
        "CREATE TABLE cache_invalidation_events (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL, key text);
         INSERT INTO cache_invalidation_events (created_at, key)
           SELECT now() - g * interval '1 hour', md5(g::text) FROM generate_series(1, 2000) g;
         CREATE INDEX ON cache_invalidation_events (created_at);
         CREATE TABLE user_sessions (id bigserial PRIMARY KEY, expires_at timestamptz NOT NULL);
         INSERT INTO user_sessions (expires_at) SELECT now() + (g - 500) * interval '1 minute'
           FROM generate_series(1, 1000) g;
         CREATE TABLE audit_log (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL, actor int);
         INSERT INTO audit_log (created_at, actor) SELECT now() - g * interval '1 hour', g % 50
           FROM generate_series(1, 2000) g;",
        &["ANALYZE"],
    )
}

#[test]
fn standard_and_full_plans_run_end_to_end() {
    for name in ["standard", "full"] {
        let url = cryoprotect_db();
        let dir = tempfile::tempdir().expect("tempdir");
        let report = diff_and_apply(dir.path(), name, ("DATABASE_URL", &url), &[]);
        let s = statuses(&report);
        assert!(s.iter().all(|x| x.ends_with(" succeeded")), "{name}: {s:?}");
        let count = |q: &str| rt().block_on(pg_count(&url, q));
        // 7 days of hourly events stay (168), 30 days of hourly logs (720);
        // the margins cover the time between the run's reference time and now.
        let events = count("SELECT count(*) FROM cache_invalidation_events");
        let stale = count(
            "SELECT count(*) FROM cache_invalidation_events WHERE created_at < now() - interval '7 days 1 minute'",
        );
        let expired = count("SELECT count(*) FROM user_sessions WHERE expires_at < now() - interval '1 minute'");
        assert_eq!((stale, expired), (0, 0), "{name}: {events} events left; {report}");
        assert!((167..=169).contains(&events), "{name}: {events}");
        assert!((719..=721).contains(&count("SELECT count(*) FROM audit_log")), "{name}");
    }
}

#[test]
fn sqlite_app_plan_runs_end_to_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let out = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg(
            "CREATE TABLE events (id INTEGER PRIMARY KEY, created_at TEXT NOT NULL, body TEXT);
             CREATE INDEX events_created_at ON events (created_at);
             WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 3000)
               INSERT INTO events (created_at, body)
               SELECT strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-' || (n / 24) || ' days'), hex(randomblob(50)) FROM g;
             CREATE TABLE sessions (id INTEGER PRIMARY KEY, expires_at TEXT NOT NULL);
             WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 400)
               INSERT INTO sessions (expires_at)
               SELECT strftime('%Y-%m-%dT%H:%M:%SZ', 'now', (n - 200) || ' minutes') FROM g;",
        )
        .output()
        .expect("sqlite3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = diff_and_apply(dir.path(), "sqlite-app", ("APP_DB", db.to_str().expect("path")), &[]);
    let s = statuses(&report);
    assert!(s.iter().all(|x| x.ends_with(" succeeded")), "{s:?}");
    let count = |q: &str| {
        let out = std::process::Command::new("sqlite3")
            .arg(&db)
            .arg(q)
            .output()
            .expect("sqlite3");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<i64>()
            .expect("count")
    };
    assert_eq!(
        count(
            "SELECT count(*) FROM events WHERE created_at < strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-30 days', '-1 minute')"
        ),
        0
    );
    assert!(count("SELECT count(*) FROM events") > 0);
    assert_eq!(
        count("SELECT count(*) FROM sessions WHERE expires_at < strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-1 minute')"),
        0
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("backups")).expect("backups").count(),
        1
    );
}

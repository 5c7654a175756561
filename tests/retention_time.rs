//! Retention reads a time column in the format it really has (issue 11,
//! part 1): Julian days, Unix seconds / milliseconds, ISO text, native
//! types; mixed storage and formats the values contradict are refused
//! before anything is deleted; NULLs are counted and never deleted; a
//! zone-less timestamp is compared in the zone the plan states.

use std::path::Path;

use crate::support::cli::{dbmaint, pg_count, rt};
use crate::support::cluster::seeded_db;

/// Runs SQL with the sqlite3 binary; its trimmed output.
pub(crate) fn sqlite(db: &Path, sql: &str) -> String {
    let out = std::process::Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("sqlite3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A plan with one retention step `purge` (its parameters inline).
pub(crate) fn plan(dir: &Path, target: &str, retention: &str) -> std::path::PathBuf {
    let path = dir.join("plan.yaml");
    std::fs::write(
        &path,
        format!("version: 1\nname: rt\ntarget: \"{target}\"\nsteps:\n  purge:\n    retention: {{ {retention} }}\n"),
    )
    .expect("plan");
    path
}

/// `plan diff --output json`: exit code, JSON, stderr.
pub(crate) fn diff_json(dir: &Path, plan: &Path) -> (Option<i32>, serde_json::Value, String) {
    let out = dbmaint(dir)
        .args(["--output", "json", "plan", "diff"])
        .arg(plan)
        .output()
        .expect("diff");
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), v, String::from_utf8_lossy(&out.stderr).to_string())
}

/// The rows the diff says the (only) retention step deletes.
pub(crate) fn step_rows(v: &serde_json::Value) -> u64 {
    v["steps"][0]["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .find(|o| o["kind"] == "table")
        .and_then(|o| o["figures"]["rows"].as_u64())
        .expect("rows")
}

pub(crate) fn apply(dir: &Path, plan: &Path) -> std::process::Output {
    dbmaint(dir)
        .args(["plan", "apply", "--auto-approve", "--log-dir", "logs"])
        .arg(plan)
        .output()
        .expect("apply")
}

#[test]
fn sqlite_julian_day_column_deletes_only_rows_older_than_the_cutoff() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    // 1,000 rows, one a day back from now (plus half a day, so no row sits
    // on the cutoff), stored as REAL Julian days and some NULLs.
    sqlite(
        &db,
        "CREATE TABLE ev (id INTEGER PRIMARY KEY, created REAL); \
         WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 999) \
         INSERT INTO ev (created) SELECT julianday('now') - i - 0.5 FROM n; \
         INSERT INTO ev (created) VALUES (NULL), (NULL), (NULL);",
    );
    let expected: u64 = sqlite(&db, "SELECT count(*) FROM ev WHERE created < julianday('now') - 900")
        .parse()
        .expect("n");
    assert_eq!(expected, 100);
    let target = format!("sqlite:{}", db.display());
    let p = plan(dir.path(), &target, "table: ev, column: created, older_than: 900 days");
    let (code, v, err) = diff_json(dir.path(), &p);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(step_rows(&v), expected, "the diff predicts exactly the old rows");
    let column = v["steps"][0]["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .find(|o| o["kind"] == "column")
        .expect("the time format decision is shown");
    assert_eq!(column["figures"]["time_format"], "julian_day");
    assert_eq!(column["figures"]["nulls"], 3);
    assert!(apply(dir.path(), &p).status.success());
    assert_eq!(
        sqlite(&db, "SELECT count(*) FROM ev"),
        "903",
        "900 young rows and the 3 NULLs stay"
    );
    assert_eq!(
        sqlite(&db, "SELECT count(*) FROM ev WHERE created < julianday('now') - 900"),
        "0"
    );
    assert_eq!(sqlite(&db, "SELECT count(*) FROM ev WHERE created IS NULL"), "3");
}

#[test]
fn sqlite_unix_milliseconds_are_read_as_milliseconds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    sqlite(
        &db,
        "CREATE TABLE ev (id INTEGER PRIMARY KEY, ts INTEGER); \
         WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 99) \
         INSERT INTO ev (ts) SELECT (unixepoch('now') - i * 86400 - 43200) * 1000 FROM n;",
    );
    let target = format!("sqlite:{}", db.display());
    let p = plan(dir.path(), &target, "table: ev, column: ts, older_than: 30 days");
    let (code, v, err) = diff_json(dir.path(), &p);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(step_rows(&v), 70);
    assert!(apply(dir.path(), &p).status.success());
    assert_eq!(sqlite(&db, "SELECT count(*) FROM ev"), "30");
    // Stating seconds for milliseconds is a planning error, not a no-op.
    let p = plan(
        dir.path(),
        &target,
        "table: ev, column: ts, older_than: 1 days, time_format: unix_s",
    );
    let (code, v, _) = diff_json(dir.path(), &p);
    assert_eq!(code, Some(1));
    assert!(
        v["steps"][0]["errors"][0]
            .as_str()
            .unwrap_or("")
            .contains("Unix milliseconds"),
        "{v}"
    );
}

#[test]
fn sqlite_mixed_text_and_integer_times_are_refused_and_nothing_is_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    sqlite(
        &db,
        "CREATE TABLE ev (id INTEGER PRIMARY KEY, created); \
         WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 999) \
         INSERT INTO ev (created) SELECT CASE WHEN i % 2 = 0 THEN datetime('now', '-' || i || ' days') \
           ELSE unixepoch('now') - i * 86400 END FROM n;",
    );
    let target = format!("sqlite:{}", db.display());
    let p = plan(dir.path(), &target, "table: ev, column: created, older_than: 100 days");
    let (code, v, _) = diff_json(dir.path(), &p);
    assert_eq!(code, Some(1));
    let error = v["steps"][0]["errors"][0].as_str().unwrap_or("");
    assert!(error.contains("integer and text values side by side"), "{error}");
    let out = apply(dir.path(), &p);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(sqlite(&db, "SELECT count(*) FROM ev"), "1000");
}

#[test]
fn postgres_bigint_milliseconds_are_read_as_milliseconds() {
    let rt = rt();
    let url = seeded_db(
        "CREATE TABLE ev (id bigserial PRIMARY KEY, ts bigint); \
         INSERT INTO ev (ts) SELECT ((extract(epoch FROM now()) - g * 86400 - 43200) * 1000)::bigint \
           FROM generate_series(0, 99) g; \
         INSERT INTO ev (ts) VALUES (NULL);",
        &[],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let p = plan(dir.path(), &url, "table: ev, column: ts, older_than: 30 days");
    let (code, v, err) = diff_json(dir.path(), &p);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(step_rows(&v), 70);
    assert!(apply(dir.path(), &p).status.success());
    assert_eq!(
        rt.block_on(pg_count(&url, "SELECT count(*) FROM ev")),
        31,
        "30 young rows and the NULL"
    );
}

#[test]
fn postgres_zone_less_timestamps_are_compared_in_the_stated_zone() {
    let rt = rt();
    // The application writes New York wall-clock time into a `timestamp`
    // column: one row every 10 minutes over the last 5 hours, offset by 5
    // minutes so that none sits on a cutoff.
    let url = seeded_db(
        "CREATE TABLE ev (id serial PRIMARY KEY, at timestamp without time zone); \
         INSERT INTO ev (at) SELECT (now() AT TIME ZONE 'America/New_York') - (g * 10 + 5) * interval '1 minute' \
           FROM generate_series(0, 29) g;",
        &[],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let p = plan(
        dir.path(),
        &url,
        "table: ev, column: at, older_than: 2 hours, column_tz: America/New_York",
    );
    let (code, v, err) = diff_json(dir.path(), &p);
    assert_eq!(code, Some(0), "{err}");
    // Ages 5, 15, … 295 minutes: those over 120 are 12..=29, 18 rows.
    assert_eq!(step_rows(&v), 18);
    let text = dbmaint(dir.path())
        .args(["plan", "diff"])
        .arg(&p)
        .output()
        .expect("diff");
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("compared as wall-clock time in America/New_York"),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );
    assert!(apply(dir.path(), &p).status.success());
    assert_eq!(rt.block_on(pg_count(&url, "SELECT count(*) FROM ev")), 12);
    assert_eq!(
        rt.block_on(pg_count(
            &url,
            "SELECT count(*) FROM ev WHERE at < (now() AT TIME ZONE 'America/New_York') - interval '2 hours'"
        )),
        0
    );
}

#[test]
fn sqlite_a_step_that_would_empty_its_table_says_all_rows_and_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    // Every row is old: a plausible cutoff for a table the author did not
    // mean to empty.
    sqlite(
        &db,
        "CREATE TABLE ev (id INTEGER PRIMARY KEY, created TEXT); \
         WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 49) \
         INSERT INTO ev (created) SELECT datetime('now', '-' || (100 + i) || ' days') FROM n;",
    );
    let target = format!("sqlite:{}", db.display());
    let p = plan(dir.path(), &target, "table: ev, column: created, older_than: 30 days");
    let out = dbmaint(dir.path())
        .args(["plan", "diff"])
        .arg(&p)
        .output()
        .expect("diff");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().find(|l| l.contains("purge (retention)")).unwrap_or("");
    assert!(first.contains("ALL ROWS"), "{text}");
    assert!(text.contains("allow_all_rows: true"), "{text}");
    assert_eq!(apply(dir.path(), &p).status.code(), Some(1));
    assert_eq!(sqlite(&db, "SELECT count(*) FROM ev"), "50");
    let p = plan(
        dir.path(),
        &target,
        "table: ev, column: created, older_than: 30 days, allow_all_rows: true",
    );
    assert!(apply(dir.path(), &p).status.success());
    assert_eq!(sqlite(&db, "SELECT count(*) FROM ev"), "0");
}

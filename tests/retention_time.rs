//! Retention reads a time column in the format it really has (issue 11,
//! part 1): Julian days, Unix seconds / milliseconds, ISO text, native
//! types; mixed storage and formats the values contradict are refused
//! before anything is deleted; NULLs are counted and never deleted; a
//! zone-less timestamp is compared in the zone the plan states.

use crate::support::cli::{dbmaint, pg_count, rt};
use crate::support::cluster::seeded_db;
use crate::support::test::{Ran, Test, retention_rows, sqlite};

#[test]
fn sqlite_julian_day_column_deletes_only_rows_older_than_the_cutoff() {
    let t = Test::new();
    let db = t.path().join("app.db");
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
    let p = t.retention_plan(&target, "table: ev, column: created, older_than: 900 days");
    let Ran {
        code,
        json: v,
        stderr: err,
        ..
    } = t.diff(&p);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(retention_rows(&v), expected, "the diff predicts exactly the old rows");
    let column = v["steps"][0]["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .find(|o| o["kind"] == "column")
        .expect("the time format decision is shown");
    assert_eq!(column["figures"]["time_format"], "julian_day");
    assert_eq!(column["figures"]["nulls"], 3);
    assert!(t.apply(&p).success());
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
    let t = Test::new();
    let db = t.path().join("app.db");
    sqlite(
        &db,
        "CREATE TABLE ev (id INTEGER PRIMARY KEY, ts INTEGER); \
         WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 99) \
         INSERT INTO ev (ts) SELECT (unixepoch('now') - i * 86400 - 43200) * 1000 FROM n;",
    );
    let target = format!("sqlite:{}", db.display());
    let p = t.retention_plan(&target, "table: ev, column: ts, older_than: 30 days");
    let Ran {
        code,
        json: v,
        stderr: err,
        ..
    } = t.diff(&p);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(retention_rows(&v), 70);
    assert!(t.apply(&p).success());
    assert_eq!(sqlite(&db, "SELECT count(*) FROM ev"), "30");
    // Stating seconds for milliseconds is a planning error, not a no-op.
    let p = t.retention_plan(
        &target,
        "table: ev, column: ts, older_than: 1 days, time_format: unix_s",
    );
    let Ran { code, json: v, .. } = t.diff(&p);
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
    let t = Test::new();
    let db = t.path().join("app.db");
    sqlite(
        &db,
        "CREATE TABLE ev (id INTEGER PRIMARY KEY, created); \
         WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 999) \
         INSERT INTO ev (created) SELECT CASE WHEN i % 2 = 0 THEN datetime('now', '-' || i || ' days') \
           ELSE unixepoch('now') - i * 86400 END FROM n;",
    );
    let target = format!("sqlite:{}", db.display());
    let p = t.retention_plan(&target, "table: ev, column: created, older_than: 100 days");
    let Ran { code, json: v, .. } = t.diff(&p);
    assert_eq!(code, Some(1));
    let error = v["steps"][0]["errors"][0].as_str().unwrap_or("");
    assert!(error.contains("integer and text values side by side"), "{error}");
    let out = t.apply(&p);
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
    let t = Test::new();
    let p = t.retention_plan(&url, "table: ev, column: ts, older_than: 30 days");
    let Ran {
        code,
        json: v,
        stderr: err,
        ..
    } = t.diff(&p);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(retention_rows(&v), 70);
    assert!(t.apply(&p).success());
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
    let t = Test::new();
    let p = t.retention_plan(
        &url,
        "table: ev, column: at, older_than: 2 hours, column_tz: America/New_York",
    );
    let Ran {
        code,
        json: v,
        stderr: err,
        ..
    } = t.diff(&p);
    assert_eq!(code, Some(0), "{err}");
    // Ages 5, 15, … 295 minutes: those over 120 are 12..=29, 18 rows.
    assert_eq!(retention_rows(&v), 18);
    let text = dbmaint(t.path()).args(["plan", "diff"]).arg(&p).output().expect("diff");
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("compared as wall-clock time in America/New_York"),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );
    assert!(t.apply(&p).success());
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
    let t = Test::new();
    let db = t.path().join("app.db");
    // Every row is old: a plausible cutoff for a table the author did not
    // mean to empty.
    sqlite(
        &db,
        "CREATE TABLE ev (id INTEGER PRIMARY KEY, created TEXT); \
         WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 49) \
         INSERT INTO ev (created) SELECT datetime('now', '-' || (100 + i) || ' days') FROM n;",
    );
    let target = format!("sqlite:{}", db.display());
    let p = t.retention_plan(&target, "table: ev, column: created, older_than: 30 days");
    let out = dbmaint(t.path()).args(["plan", "diff"]).arg(&p).output().expect("diff");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().find(|l| l.contains("purge (retention)")).unwrap_or("");
    assert!(first.contains("ALL ROWS"), "{text}");
    assert!(text.contains("allow_all_rows: true"), "{text}");
    assert_eq!(t.apply(&p).code, Some(1));
    assert_eq!(sqlite(&db, "SELECT count(*) FROM ev"), "50");
    let p = t.retention_plan(
        &target,
        "table: ev, column: created, older_than: 30 days, allow_all_rows: true",
    );
    assert!(t.apply(&p).success());
    assert_eq!(sqlite(&db, "SELECT count(*) FROM ev"), "0");
}

#[test]
fn postgres_over_five_million_expected_rows_are_estimated_not_counted_and_apply_is_exact() {
    // 20,000 old rows and 1,000 young; the planner is then told the table
    // holds 210 M rows (its density scaled from `reltuples`), so it expects
    // ~200 M old ones: past EXACT_COUNT_LIMIT the diff shows the planner's
    // figure marked as an estimate instead of counting them.
    let url = seeded_db(
        "CREATE TABLE ev (id bigint PRIMARY KEY, created_at timestamptz NOT NULL);
         INSERT INTO ev SELECT i, now() - interval '400 days' - i * interval '1 minute' FROM generate_series(1, 20000) i;
         INSERT INTO ev SELECT i, now() - interval '1 day' FROM generate_series(20001, 21000) i;
         CREATE INDEX ON ev (created_at);
         ANALYZE ev;
         UPDATE pg_class SET reltuples = 210000000 WHERE oid = 'ev'::regclass;",
        &[],
    );
    let t = Test::new();
    let p = t.retention_plan(&url, "table: ev, column: created_at, older_than: 365 days");
    let Ran {
        code, json: v, stderr, ..
    } = t.diff(&p);
    assert_eq!(code, Some(0), "{stderr}");
    let table = v["steps"][0]["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .find(|o| o["kind"] == "table")
        .expect("table")
        .clone();
    assert_eq!(table["figures"]["exact"], false, "{table}");
    assert!(retention_rows(&v) > 5_000_000, "the planner's figure: {table}");
    assert_eq!(v["steps"][0]["estimate"]["fidelity"], "estimate", "{}", v["steps"][0]);
    assert!(
        table["detail"].as_str().is_some_and(|d| d.contains('~')),
        "marked `~`: {table}"
    );
    // Apply deletes the rows that really are old, no more.
    let ran = t.apply(&p);
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(
        rt().block_on(pg_count(
            &url,
            "SELECT count(*) FROM ev WHERE created_at < now() - interval '365 days'"
        )),
        0
    );
    assert_eq!(rt().block_on(pg_count(&url, "SELECT count(*) FROM ev")), 1000);
}

/// `where:` narrows the step: only old rows it matches are counted,
/// archived and deleted; old rows it does not match stay, as do NULLs in
/// its column (SQL's three-valued logic: `NULL = 'done'` is not true).
fn where_narrows(t: &Test, target: &str, count: &dyn Fn(&str) -> u64) {
    let p = t.retention_plan(
        target,
        "table: ev, column: created_at, older_than: 365 days, where: \"status = 'done'\", \
         batch_size: 7, archive: { table: ev_archive }",
    );
    let expected = count("SELECT count(*) FROM ev WHERE old AND status = 'done'");
    assert_eq!(expected, 40);
    let Ran {
        code, json: v, stderr, ..
    } = t.diff(&p);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        retention_rows(&v),
        expected,
        "the diff counts only what `where` matches"
    );
    let ran = t.apply_json(&p);
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(ran.report["steps"][0]["archived"], 40, "{}", ran.report);
    assert_eq!(ran.report["totals"]["rows_archived"], 40, "{}", ran.report);
    assert_eq!(count("SELECT count(*) FROM ev WHERE old AND status = 'done'"), 0);
    assert_eq!(
        count("SELECT count(*) FROM ev WHERE old AND status = 'open'"),
        40,
        "not matched: kept"
    );
    assert_eq!(
        count("SELECT count(*) FROM ev WHERE old AND status IS NULL"),
        20,
        "NULL: kept"
    );
    assert_eq!(count("SELECT count(*) FROM ev WHERE NOT old"), 100, "young: kept");
    assert_eq!(count("SELECT count(*) FROM ev_archive WHERE status = 'done'"), 40);
    assert_eq!(count("SELECT count(*) FROM ev_archive"), 40, "only those archived");
}

#[test]
fn sqlite_retention_where_deletes_only_the_rows_it_matches() {
    let t = Test::new();
    let db = t.path().join("app.db");
    // 200 rows: ids 1-100 two years old, 101-200 a day old; status cycles
    // done, open, done, open, NULL (so 40 done, 40 open, 20 NULL old ones).
    sqlite(
        &db,
        "CREATE TABLE ev (id INTEGER PRIMARY KEY, created_at TEXT NOT NULL, status TEXT, old INTEGER NOT NULL); \
         WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 200) \
         INSERT INTO ev SELECT n, datetime('now', CASE WHEN n <= 100 THEN '-730 days' ELSE '-1 days' END), \
           CASE n % 5 WHEN 0 THEN NULL WHEN 1 THEN 'done' WHEN 3 THEN 'done' ELSE 'open' END, n <= 100 FROM g;",
    );
    let count = |sql: &str| -> u64 {
        let sql = sql
            .replace("WHERE old", "WHERE old = 1")
            .replace("WHERE NOT old", "WHERE old = 0");
        sqlite(&db, &sql).parse().expect("count")
    };
    where_narrows(&t, &format!("sqlite:{}", db.display()), &count);
}

#[test]
fn postgres_retention_where_deletes_only_the_rows_it_matches() {
    let url = seeded_db(
        "CREATE TABLE ev (id int PRIMARY KEY, created_at timestamptz NOT NULL, status text, old boolean NOT NULL);
         INSERT INTO ev SELECT n, now() - CASE WHEN n <= 100 THEN interval '730 days' ELSE interval '1 day' END,
           CASE n % 5 WHEN 0 THEN NULL WHEN 1 THEN 'done' WHEN 3 THEN 'done' ELSE 'open' END, n <= 100
         FROM generate_series(1, 200) n;",
        &[],
    );
    let t = Test::new();
    let count = |sql: &str| -> u64 { rt().block_on(pg_count(&url, sql)) as u64 };
    where_narrows(&t, &url, &count);
}

//! The sample plans in `plans/` diff and apply end to end against seeded
//! databases: Django nightly and the standard/full pair on PostgreSQL,
//! sqlite-app and demo on SQLite. Each apply exits 0 and removes exactly
//! the rows its retention steps select; each `plan diff -v` is pinned in
//! `tests/snapshots/diff-<plan>.snap` (times, sizes, counts redacted); on
//! PostgreSQL the server ran exactly the statements the diff showed.

use std::path::Path;

use crate::support::cli::{dbmaint, pg_count, rt, seed_pg};
use crate::support::cluster::{seeded_db, statements_ran};

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
    if ["sqlite-app", "standard", "full", "django-nightly", "demo"].contains(&name) {
        // What a reviewer reads, pinned: steps, markers, objects,
        // statements; times, sizes, counts and paths redacted.
        let verbose = dbmaint(dir)
            .env(env.0, env.1)
            .args(["plan", "diff", "-v"])
            .arg(&plan)
            .args(vars)
            .output()
            .expect("diff -v");
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path("snapshots");
        settings.set_prepend_module_to_snapshot(false);
        settings.bind(|| {
            insta::assert_snapshot!(
                format!("diff-{name}"),
                redact_diff(&String::from_utf8_lossy(&verbose.stdout), dir)
            )
        });
    }
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
    let url = django_db();
    let old = rt().block_on(pg_count(
        &url,
        "SELECT count(*) FROM core_audit_log WHERE created_at < now() - interval '90 days'",
    ));
    assert!(old > 0, "the seed has old audit rows");
    // The rows as the run will find them (whole rows as text), with
    // whether each is clearly younger than its step's cutoff (by a minute:
    // the run's reference time is a moment after this).
    let steps = [
        ("audit-logs", "core_audit_log", "created_at", "90 days"),
        ("task-logs", "core_task_log", "created_at", "30 days"),
        ("sessions", "django_session", "expire_date", "0 days"),
    ];
    let rows_of = |sql: &str| -> Vec<(String, bool)> {
        rt().block_on(async {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.to_string()))
                .fetch_all(&mut crate::support::cluster::connect(&url).await)
                .await
                .expect("rows")
        })
    };
    let before: Vec<Vec<(String, bool)>> = steps
        .iter()
        .map(|(_, table, column, age)| {
            rows_of(&format!(
                "SELECT t::text, {column} >= now() - interval '{age}' + interval '1 minute' FROM {table} t"
            ))
        })
        .collect();
    let cols = "(id, task_name, error, created_at, deleted_at)::text";
    let tasks_before = rows_of(&format!("SELECT {cols}, true FROM failed_task"));
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
    let count = |q: &str| rt().block_on(pg_count(&url, q));
    let reported = |step: &str| {
        report["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .find(|s| s["id"] == step)
            .and_then(|s| s["rows"].as_i64())
            .unwrap_or_else(|| panic!("{step}: {report}"))
    };
    let now_in =
        |sql: &str| -> std::collections::HashSet<String> { rows_of(sql).into_iter().map(|(r, _)| r).collect() };
    for ((step, table, column, age), before) in steps.iter().zip(&before) {
        let after = now_in(&format!("SELECT t::text, true FROM {table} t"));
        let gone: Vec<&(String, bool)> = before.iter().filter(|(r, _)| !after.contains(r)).collect();
        assert!(!gone.is_empty(), "{step}: the seed has rows to remove");
        assert_eq!(
            gone.len() as i64,
            reported(step),
            "{step}: the report counts the rows removed"
        );
        let young: Vec<_> = gone.iter().filter(|(_, young)| *young).collect();
        assert!(young.is_empty(), "{step}: younger rows were removed: {young:?}");
        let old = format!("SELECT count(*) FROM {table} WHERE {column} < now() - interval '{age} 1 minute'");
        assert_eq!(count(&old), 0, "{step}: no older row is left");
        let was: std::collections::HashSet<&String> = before.iter().map(|(r, _)| r).collect();
        assert!(
            after.iter().all(|r| was.contains(r)),
            "{step}: the rows kept are unchanged"
        );
    }
    // Failed tasks move to the archive intact; the purge takes the oldest.
    let tasks_after = now_in(&format!("SELECT {cols}, true FROM failed_task"));
    let moved = tasks_before.iter().filter(|(r, _)| !tasks_after.contains(r)).count() as i64;
    assert!(moved > 0, "the seed has failed tasks to archive");
    assert_eq!(moved, reported("failed-tasks-archive"));
    let archive = now_in(&format!("SELECT {cols}, true FROM failed_task_archive"));
    let was: std::collections::HashSet<&String> = tasks_before.iter().map(|(r, _)| r).collect();
    assert!(
        archive.iter().all(|r| was.contains(r) && !tasks_after.contains(r)),
        "the archive holds the moved rows as they were"
    );
    assert_eq!(moved - archive.len() as i64, reported("failed-tasks-purge"));
    // One measure per figure: the totals' rows are the rows deleted, never
    // the vacuum step's projected dead tuples (it has some here).
    let steps = report["steps"].as_array().expect("steps");
    let retention_sum = |field: &dyn Fn(&serde_json::Value) -> u64| -> u64 {
        steps.iter().filter(|s| s["op"] == "retention").map(field).sum()
    };
    assert_eq!(
        report["totals"]["rows"].as_u64(),
        Some(retention_sum(&|s| s["rows"].as_u64().unwrap_or(0)))
    );
    assert_eq!(
        report["totals"]["rows_predicted"].as_u64(),
        Some(retention_sum(&|s| s["predicted"]["rows"].as_u64().unwrap_or(0))),
        "{}",
        report["totals"]
    );
    let vacuum = steps.iter().find(|s| s["op"] == "vacuum").expect("vacuum step");
    assert!(vacuum["predicted"]["rows"].as_u64().unwrap_or(0) > 0, "{vacuum}");
    assert!(
        report["totals"]["bytes_written"].as_u64().unwrap_or(0) > 0,
        "the dump's bytes are written"
    );
    assert_eq!(
        count("SELECT count(*) FROM failed_task_archive WHERE deleted_at < now() - interval '730 days 1 minute'"),
        0
    );
    let backups = crate::support::cli::backup_files(&dir.path().join("backups")).len();
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
    assert_eq!(crate::support::cli::backup_files(&dir.path().join("backups")).len(), 1);
}

#[test]
fn demo_plan_runs_end_to_end_on_the_demo_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("demo.db");
    let tables = dbmaint::demo::generate(7, dbmaint::demo::Size::scaled(0.1), chrono::Utc::now());
    rt().block_on(dbmaint::demo::seed_sqlite(&db, &tables)).expect("seed");
    let report = diff_and_apply(dir.path(), "demo", ("DBMAINT_DEMO_DB", db.to_str().expect("path")), &[]);
    let s = statuses(&report);
    assert!(s.iter().all(|x| x.ends_with(" succeeded")), "{s:?}");
    let backups = dir.path().join("dbmaint-demo-backups");
    let files = crate::support::cli::backup_files(&backups);
    assert_eq!(files.len(), 1, "{files:?}");
    crate::support::test::assert_demo_plan_ran(&db, &backups.join(&files[0]));
}

/// A statement as both sides can be compared: constants and parameters
/// (`'…'`, numbers, `$n`, `?n`) become `?`, a `PREPARE name (…) AS` prefix
/// goes (the server records a prepared statement by its PREPARE text),
/// case and spacing are folded.
fn shape(sql: &str) -> String {
    let mut s = sql.trim().trim_end_matches(';').to_lowercase();
    if s.starts_with("prepare ")
        && let Some(at) = s.find(" as ")
    {
        s = s[at + 4..].to_string();
    }
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\'' => {
                while let Some(c) = chars.next() {
                    if c == '\'' {
                        if chars.peek() == Some(&'\'') {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
                out.push('?');
            }
            '$' | '?' if chars.peek().is_some_and(|c| c.is_ascii_digit()) => {
                while chars.peek().is_some_and(|c| c.is_ascii_digit()) {
                    chars.next();
                }
                out.push('?');
            }
            c if c.is_ascii_digit() && !out.ends_with(|p: char| p.is_alphanumeric() || p == '_' || p == '"') => {
                while chars.peek().is_some_and(|c| c.is_ascii_digit() || *c == '.') {
                    chars.next();
                }
                out.push('?');
            }
            c if c.is_whitespace() => {
                if !out.ends_with(' ') {
                    out.push(' ');
                }
            }
            c => out.push(c),
        }
    }
    out.trim().to_string()
}

/// Every statement `plan diff` shows for a step (but comments and a
/// backup's, which name a file `pg_dump` writes) is one the server ran
/// during `plan apply`: the diff and the apply come from one execution plan.
fn assert_diff_statements_ran(name: &str, diff: &serde_json::Value, ran: &[String]) {
    let ran: Vec<String> = ran.iter().map(|s| shape(s)).collect();
    let mut checked = 0;
    for step in diff["steps"].as_array().expect("steps") {
        if step["op"] == "backup" || step["no_op"] == true {
            continue;
        }
        for s in step["statements"].as_array().expect("statements") {
            let s = s.as_str().expect("text");
            if s.trim_start().starts_with("--") {
                continue;
            }
            let want = shape(s);
            assert!(
                ran.contains(&want),
                "{name}: step `{}` shows `{s}`, which the server never ran; it ran:\n{}",
                step["id"],
                ran.join("\n")
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "{name}: no statement compared");
}

/// The Django database of `django_nightly_plan_runs_end_to_end`.
fn django_db() -> String {
    let url = seeded_db("SELECT 1", &[]);
    rt().block_on(seed_pg(&url));
    rt().block_on(async {
        let mut c = crate::support::cluster::connect(&url).await;
        sqlx::raw_sql(
            "CREATE MATERIALIZED VIEW daily_audit AS
               SELECT date_trunc('day', created_at) AS day, count(*) AS n FROM core_audit_log GROUP BY 1;
             CREATE UNIQUE INDEX daily_audit_day ON daily_audit (day);",
        )
        .execute(&mut c)
        .await
        .expect("view");
    });
    url
}

#[test]
fn postgres_sample_plans_run_exactly_the_statements_their_diff_shows() {
    let window = window_around_now();
    for name in ["standard", "full", "django-nightly"] {
        let url = if name == "django-nightly" {
            django_db()
        } else {
            cryoprotect_db()
        };
        let vars: Vec<&str> = if name == "django-nightly" {
            vec!["--var", &window]
        } else {
            vec![]
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("plans/{name}.yaml"));
        let out = dbmaint(dir.path())
            .env("DATABASE_URL", &url)
            .args(["--output", "json", "plan", "diff"])
            .arg(&plan)
            .args(&vars)
            .output()
            .expect("diff");
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let diff: serde_json::Value = serde_json::from_slice(&out.stdout).expect("diff json");
        let ran = statements_ran(&url, || {
            let out = dbmaint(dir.path())
                .env("DATABASE_URL", &url)
                .args(["plan", "apply", "--auto-approve"])
                .arg(&plan)
                .args(&vars)
                .output()
                .expect("apply");
            assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        });
        assert_diff_statements_ran(name, &diff, &ran);
    }
}

/// A diff with what changes from run to run taken out: the header (target,
/// identity, reference time), the scratch directory, times, sizes and every
/// number (counts move with the clock: a row expiring this minute).
fn redact_diff(text: &str, dir: &Path) -> String {
    let dir = dir.display().to_string();
    let mut out = String::new();
    for line in text.lines().skip_while(|l| !l.is_empty()) {
        let mut l = line.replace(&dir, "<dir>");
        for (pattern, with) in [
            (r"\d{8}T\d{6}Z", "<stamp>"),
            (
                r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2})?(\.\d+)?(Z|[+-]\d{2}(:?\d{2})?)?)?",
                "<time>",
            ),
            (r"\d+(\.\d+)? (B|KiB|MiB|GiB|TiB)\b", "<bytes>"),
            (r"\d+(?:[.,]\d+)*", "N"),
            // A count's noun follows the count (1 batch, 2 batches): its
            // number is redacted, so is its plural.
            (r"\bN (batch|batches)\b", "N batch(es)"),
            (r"\bN (check|checks)\b", "N check(s)"),
            (r"\bN (finding|findings)\b", "N finding(s)"),
        ] {
            l = regex::Regex::new(pattern)
                .expect("redaction pattern")
                .replace_all(&l, with)
                .into_owned();
        }
        out.push_str(&l);
        out.push('\n');
    }
    freeze_order_aside(&out)
}

/// A freezing vacuum takes the oldest `relfrozenxid` first, and a new
/// table's is the cluster's oldest snapshot when it was created: with the
/// other tests' transactions running beside, tables seeded one after the
/// other may get one horizon or two. The pinned diff lists a freezing
/// step's tables and statements by name; `postgres_freezing_takes_the_
/// oldest_table_first` checks the order itself against the server.
fn freeze_order_aside(text: &str) -> String {
    let mut out: Vec<String> = vec![];
    let mut run: Vec<String> = vec![];
    let mut freezing = false;
    for line in text.lines() {
        if !line.starts_with("    ") {
            freezing = line.contains("(vacuum)");
        }
        let sortable = freezing && (line.starts_with("    ~ table ") || line.starts_with("    sql: VACUUM (FREEZE"));
        if sortable && run.first().is_none_or(|f| f[..10] == line[..10]) {
            run.push(line.to_string());
            continue;
        }
        run.sort();
        out.append(&mut run);
        if sortable {
            run.push(line.to_string());
        } else {
            out.push(line.to_string());
        }
    }
    run.sort();
    out.append(&mut run);
    out.iter().map(|l| format!("{l}\n")).collect()
}

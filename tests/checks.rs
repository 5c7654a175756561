//! The `check` operation: each PostgreSQL and SQLite check finds what the
//! test planted, with its figures, and nothing on a clean database.

use std::time::{Duration, Instant};

use crate::support::cli::{apply, dbmaint, rt};
use crate::support::cluster::{Cluster, connect};

fn check_plan(dir: &std::path::Path, url: &str, params: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join("plan.yaml");
    std::fs::write(
        &path,
        format!("version: 1\nname: checks\ntarget: \"{url}\"\nsteps:\n  health:\n    check: {params}\n{extra}"),
    )
    .expect("plan");
    path
}

/// The diff's first step, asserted to have run without a query error.
fn check_step(dir: &std::path::Path, plan: &std::path::Path) -> serde_json::Value {
    let out = dbmaint(dir)
        .args(["--output", "json", "plan", "diff"])
        .arg(plan)
        .output()
        .expect("diff");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("diff JSON");
    let step = v["steps"][0].clone();
    assert!(
        step["errors"].as_array().is_none_or(Vec::is_empty),
        "a check query failed: {step}"
    );
    step
}

/// What the checks found: the step's `objects`, which must be there (a
/// missing list is not "no findings").
fn findings(dir: &std::path::Path, plan: &std::path::Path) -> Vec<serde_json::Value> {
    let step = check_step(dir, plan);
    step["objects"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no `objects` in the check step: {step}"))
}

fn kinds(found: &[serde_json::Value]) -> Vec<String> {
    let mut k: Vec<String> = found
        .iter()
        .map(|f| {
            format!(
                "{} {}",
                f["kind"].as_str().unwrap_or(""),
                f["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    k.sort();
    k
}

#[test]
fn postgres_clean_database_has_no_findings() {
    let rt = rt();
    let url = rt.block_on(Cluster::get().fresh_db());
    rt.block_on(async {
        let mut c = connect(&url).await;
        sqlx::raw_sql("CREATE TABLE clean (id bigserial PRIMARY KEY, v text); INSERT INTO clean (v) VALUES ('a')")
            .execute(&mut c)
            .await
            .expect("schema");
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = check_plan(dir.path(), &url, "{}", "");
    let step = check_step(dir.path(), &plan);
    assert_eq!(step["op"], "check", "{step}");
    // Every default check ran, and found nothing.
    assert_eq!(
        step["summary"],
        "8 checks (long_queries, unused_indexes, duplicate_indexes, fk_without_index, connections, locks, \
         xid_age, sequences): 0 findings now",
        "{step}"
    );
    assert_eq!(step["objects"], serde_json::json!([]), "{step}");
}

#[test]
fn postgres_checks_find_what_was_planted() {
    let rt = rt();
    let url = rt.block_on(Cluster::get().fresh_db());
    rt.block_on(async {
        let mut c = connect(&url).await;
        sqlx::raw_sql(
            "CREATE TABLE parent (id int PRIMARY KEY);
             CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent (id));
             CREATE TABLE t (a int, b int);
             CREATE INDEX t_a ON t (a); CREATE INDEX t_a_copy ON t (a); CREATE INDEX t_ab ON t (a, b);
             CREATE TABLE s (id serial PRIMARY KEY);
             SELECT setval('s_id_seq', 2040109465);",
        )
        .execute(&mut c)
        .await
        .expect("schema");
    });
    // A long query and a session blocked behind a lock.
    let (sleeper_url, holder_url, waiter_url) = (url.clone(), url.clone(), url.clone());
    let sleeper = std::thread::spawn(move || {
        crate::support::cli::rt().block_on(async {
            let mut c = connect(&sleeper_url).await;
            let _ = sqlx::query("SELECT pg_sleep(3)").execute(&mut c).await;
        })
    });
    let mut holder = rt.block_on(connect(&holder_url));
    rt.block_on(sqlx::raw_sql("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE").execute(&mut holder))
        .expect("lock");
    let waiter = std::thread::spawn(move || {
        crate::support::cli::rt().block_on(async {
            let mut c = connect(&waiter_url).await;
            let _ = sqlx::query("SELECT count(*) FROM t").execute(&mut c).await;
        })
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = check_plan(dir.path(), &url, "{ max_query_age: 1s }", "");
    // Wait until the sleep is over a second old (polling, bounded).
    let t0 = Instant::now();
    let mut found = findings(dir.path(), &plan);
    while !found.iter().any(|f| f["kind"] == "long_queries") {
        assert!(t0.elapsed() < Duration::from_secs(5), "no long query found: {found:?}");
        std::thread::sleep(Duration::from_millis(100));
        found = findings(dir.path(), &plan);
    }
    let k = kinds(&found);
    for expected in [
        "duplicate_indexes public.t_a_copy",
        "duplicate_indexes public.t_a",
        "fk_without_index public.child",
        "sequences public.s_id_seq",
        "unused_indexes public.t_a",
        "unused_indexes public.t_ab",
    ] {
        assert!(k.iter().any(|x| x == expected), "{expected} missing from {k:#?}");
    }
    assert!(k.iter().any(|x| x.starts_with("locks pid ")), "{k:#?}");
    let seq = found.iter().find(|f| f["kind"] == "sequences").expect("sequence");
    assert!(
        seq["detail"]
            .as_str()
            .unwrap_or("")
            .starts_with("error: at 2040109465 of 2147483647 (95.0% used)"),
        "{seq}"
    );
    assert!(
        !k.iter()
            .any(|x| x.starts_with("xid_age") || x.starts_with("connections")),
        "nothing else: {k:#?}"
    );
    // fail_on: warning fails the step at apply and skips its dependents.
    rt.block_on(sqlx::raw_sql("ROLLBACK").execute(&mut holder))
        .expect("release");
    waiter.join().expect("waiter");
    sleeper.join().expect("sleeper");
    let plan = check_plan(
        dir.path(),
        &url,
        "{ checks: [fk_without_index, sequences], fail_on: warning }",
        "  after:\n    needs: [health]\n    analyze: {}\n",
    );
    let out = apply(dir.path(), &plan);
    // Exit 6: the checks found problems; dbmaint itself worked (not 1).
    assert_eq!(out.status.code(), Some(6), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2 findings at or above `fail_on: warning`"), "{stdout}");
    assert!(stdout.contains("error sequences public.s_id_seq"), "{stdout}");
    assert!(stdout.contains("after (analyze) skipped"), "{stdout}");
}

#[test]
fn sqlite_foreign_key_violations_are_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let out = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg(
            "CREATE TABLE parent (id INTEGER PRIMARY KEY); \
             CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent (id)); \
             INSERT INTO parent VALUES (1); INSERT INTO child VALUES (1, 1), (2, 7), (3, 8);",
        )
        .output()
        .expect("sqlite3");
    assert!(out.status.success());
    let plan = check_plan(dir.path(), &format!("sqlite:{}", db.display()), "{}", "");
    let found = findings(dir.path(), &plan);
    assert_eq!(kinds(&found), ["foreign_keys child"]);
    assert_eq!(found[0]["figures"]["rows"], 2);
    assert_eq!(found[0]["figures"]["parent"], "parent");
}

#[test]
fn postgres_diff_runs_the_same_statements_with_2000_extra_tables() {
    let rt = rt();
    let url = rt.block_on(Cluster::get().fresh_db());
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = check_plan(
        dir.path(),
        &url,
        "{}",
        "  vacuum-all:\n    vacuum: {}\n  analyze-all:\n    analyze: {}\n",
    );
    // Statements the server ran for the whole diff (inspection, probes,
    // checks), counted by pg_stat_statements; and the objects it planned.
    let diff = || -> (i64, usize) {
        let mut objects = 0;
        let statements = crate::support::cluster::statements_during(&url, || {
            let out = dbmaint(dir.path())
                .args(["--output", "json", "plan", "diff"])
                .arg(&plan)
                .output()
                .expect("diff");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("diff JSON");
            objects = v["steps"]
                .as_array()
                .map(|s| s.iter().map(|s| s["objects"].as_array().map_or(0, Vec::len)).sum())
                .unwrap_or(0);
        });
        (statements, objects)
    };
    let (before, _) = diff();
    rt.block_on(async {
        let mut c = connect(&url).await;
        let ddl: String = (0..2000)
            .map(|i| {
                format!("CREATE TABLE extra_{i} (id int PRIMARY KEY, v text); INSERT INTO extra_{i} VALUES (1, 'x');")
            })
            .collect();
        sqlx::raw_sql(sqlx::AssertSqlSafe(ddl))
            .execute(&mut c)
            .await
            .expect("2,000 tables");
    });
    let (after, objects) = diff();
    println!("statements the server ran for the diff: {before} with no extra tables, {after} with 2,000");
    assert!(before > 4, "the count is real: {before}");
    assert_eq!(
        before, after,
        "the diff's statements must not grow with the table count"
    );
    assert!(
        objects >= 2000,
        "the 2,000 tables were inspected and planned: {objects} objects"
    );
}

#[test]
fn stats_report_the_largest_tables_and_indexes_on_both_backends() {
    let rt = rt();
    let url = rt.block_on(Cluster::get().fresh_db());
    rt.block_on(crate::support::cli::seed_pg(&url));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("plan.yaml");
    std::fs::write(
        &path,
        format!("version: 1\nname: stats\ntarget: \"{url}\"\nsteps:\n  sizes:\n    stats: {{ top: 2 }}\n"),
    )
    .expect("plan");
    let biggest = rt.block_on(crate::support::cli::pg_count(
        &url,
        "SELECT pg_total_relation_size('core_audit_log')::int8",
    ));
    let diff = findings(dir.path(), &path);
    let tables: Vec<&serde_json::Value> = diff.iter().filter(|o| o["kind"] == "table").collect();
    assert_eq!(tables.len(), 2, "top: 2 → two tables: {diff:#?}");
    assert_eq!(tables[0]["name"], "public.core_audit_log", "largest first");
    assert_eq!(tables[0]["figures"]["total_bytes"], biggest);
    assert_eq!(diff.iter().filter(|o| o["kind"] == "index").count(), 2);
    let out = dbmaint(dir.path())
        .args(["--output", "json", "plan", "apply", "--auto-approve"])
        .arg(&path)
        .output()
        .expect("apply");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let stats = &v["report"]["steps"][0]["stats"];
    assert_eq!(stats["tables"][0]["name"], "public.core_audit_log", "{stats}");
    assert!(stats["database_bytes"].as_u64() > Some(0));

    // SQLite: sizes from dbstat.
    let db = dir.path().join("app.db");
    let tables = dbmaint::demo::generate(4, dbmaint::demo::Size::scaled(0.05), chrono::Utc::now());
    rt.block_on(dbmaint::demo::seed_sqlite(&db, &tables)).expect("seed");
    std::fs::write(
        &path,
        format!(
            "version: 1\nname: stats\ntarget: \"sqlite:{}\"\nsteps:\n  sizes:\n    stats: {{}}\n",
            db.display()
        ),
    )
    .expect("plan");
    let diff = findings(dir.path(), &path);
    let names: Vec<&str> = diff
        .iter()
        .filter(|o| o["kind"] == "table")
        .filter_map(|o| o["name"].as_str())
        .collect();
    assert_eq!(names.first(), Some(&"core_audit_log"), "{diff:#?}");
    assert_eq!(names.len(), 4, "every table: {names:?}");
}

#[test]
fn postgres_long_query_is_cancelled_when_asked_and_untouched_by_the_diff() {
    let url = crate::support::cluster::seeded_db("SELECT 1", &[]);
    let sleeper_url = url.clone();
    // The sleeper reports how its query ended.
    let sleeper = std::thread::spawn(move || {
        crate::support::cli::rt().block_on(async {
            let mut c = connect(&sleeper_url).await;
            let started = Instant::now();
            let r = sqlx::query("SELECT pg_sleep(30)").execute(&mut c).await;
            (r.map(|_| ()).map_err(|e| e.to_string()), started.elapsed())
        })
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = check_plan(
        dir.path(),
        &url,
        "{ checks: [long_queries], max_query_age: 1s, cancel: true }",
        "",
    );
    let t0 = Instant::now();
    let mut found = findings(dir.path(), &plan);
    while found.is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(10), "no long query found");
        std::thread::sleep(Duration::from_millis(100));
        found = findings(dir.path(), &plan);
    }
    // The diff marks it `!` and says what apply would do, and touches it
    // not: another diff, a whole process later (a cancel lands within
    // milliseconds), finds the same session still running its query.
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["marker"], "!", "{found:?}");
    assert!(
        found[0]["detail"].as_str().unwrap_or("").ends_with(": would cancel"),
        "{found:?}"
    );
    let again = findings(dir.path(), &plan);
    assert_eq!(
        (again.len(), &again[0]["name"]),
        (1, &found[0]["name"]),
        "the diff left the query running: {again:?}"
    );
    assert!(!sleeper.is_finished(), "the diff left the query running");
    let out = crate::support::cli::dbmaint(dir.path())
        .args(["--output", "json", "plan", "apply", "--auto-approve"])
        .arg(&plan)
        .output()
        .expect("apply");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (result, ran) = sleeper.join().expect("sleeper");
    let err = result.expect_err("the query was cancelled");
    assert!(err.contains("canceling statement due to user request"), "{err}");
    assert!(ran < Duration::from_secs(25), "cancelled, not finished ({ran:?})");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report");
    let message = report["report"]["steps"][0]["findings"][0]["message"].to_string();
    assert!(message.contains("cancelled"), "{report}");
}

#[test]
fn postgres_saved_plan_never_signals_a_different_session() {
    let url = crate::support::cluster::seeded_db("SELECT 1", &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = check_plan(
        dir.path(),
        &url,
        "{ checks: [long_queries], max_query_age: 1s, cancel: true }",
        "",
    );
    // The diff (saved) lists one sleeper ...
    let first_url = url.clone();
    let first = std::thread::spawn(move || {
        crate::support::cli::rt().block_on(async {
            let mut c = connect(&first_url).await;
            let _ = sqlx::query("SELECT pg_sleep(2)").execute(&mut c).await;
        })
    });
    let saved = dir.path().join("saved.json");
    let t0 = Instant::now();
    loop {
        let out = crate::support::cli::dbmaint(dir.path())
            .args(["plan", "diff", "--out"])
            .arg(&saved)
            .arg(&plan)
            .output()
            .expect("diff");
        if String::from_utf8_lossy(&out.stdout).contains("would cancel") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "no long query found");
        std::thread::sleep(Duration::from_millis(100));
    }
    first.join().expect("first");
    // ... which ends; another long query runs when the saved plan is applied.
    let second_url = url.clone();
    let second = std::thread::spawn(move || {
        crate::support::cli::rt().block_on(async {
            let mut c = connect(&second_url).await;
            sqlx::query("SELECT pg_sleep(3)").execute(&mut c).await.map(|_| ())
        })
    });
    // Apply once the new query is over `max_query_age` (the server's clock).
    let t0 = Instant::now();
    while crate::support::cli::rt().block_on(crate::support::cli::pg_count(
        &url,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND query = 'SELECT pg_sleep(3)' AND now() - query_start > interval '1.1 s'",
    )) == 0
    {
        assert!(t0.elapsed() < Duration::from_secs(3), "the second query never aged");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = crate::support::cli::dbmaint(dir.path())
        .args(["--output", "json", "plan", "apply", "--auto-approve"])
        .arg(&saved)
        .output()
        .expect("apply");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("skipped: that session ended"), "{report}");
    second.join().expect("second").expect("the new query was not signalled");
}

#[test]
fn postgres_connections_and_xid_age_find_what_is_really_there() {
    let rt = rt();
    let url = rt.block_on(Cluster::get().fresh_db());
    rt.block_on(async {
        let mut c = connect(&url).await;
        sqlx::raw_sql("CREATE TABLE aging (id int)")
            .execute(&mut c)
            .await
            .expect("table");
        // 5,000 transaction IDs go by: the table's relfrozenxid ages.
        for _ in 0..5000 {
            sqlx::query("SELECT txid_current()").execute(&mut c).await.expect("xid");
        }
    });
    // Ten more sessions held open while the checks run.
    let held: Vec<sqlx::PgConnection> = (0..10).map(|_| rt.block_on(connect(&url))).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    // 0.000002 of the 2^31 horizon is 4,295 transaction IDs; 4% of
    // max_connections (200 on the test cluster) is 8 sessions.
    let params = "{ checks: [connections, xid_age], max_connections_ratio: 0.04, max_xid_age_ratio: 0.000002 }";
    let plan = check_plan(dir.path(), &url, params, "");
    let found = findings(dir.path(), &plan);
    let conn = found
        .iter()
        .find(|f| f["kind"] == "connections")
        .unwrap_or_else(|| panic!("no connections finding: {found:#?}"));
    assert!(conn["figures"]["used"].as_i64().is_some_and(|u| u >= 11), "{conn}");
    assert_eq!(conn["figures"]["max"], 200, "{conn}");
    let aging = found
        .iter()
        .find(|f| f["kind"] == "xid_age" && f["name"] == "table public.aging")
        .unwrap_or_else(|| panic!("no xid_age finding for the table: {found:#?}"));
    assert!(aging["figures"]["age"].as_i64().is_some_and(|a| a >= 5000), "{aging}");
    // Frozen, the table is young again.
    drop(held);
    rt.block_on(async {
        let mut c = connect(&url).await;
        sqlx::raw_sql("VACUUM (FREEZE) aging")
            .execute(&mut c)
            .await
            .expect("freeze");
    });
    let found = findings(dir.path(), &plan);
    assert!(
        !found.iter().any(|f| f["name"] == "table public.aging"),
        "frozen: no finding for the table: {found:#?}"
    );
    // With the default thresholds neither check finds anything.
    let plan = check_plan(dir.path(), &url, "{ checks: [connections, xid_age] }", "");
    assert_eq!(kinds(&findings(dir.path(), &plan)), Vec::<String>::new());
}

/// docs/operations.md: long_queries never counts autovacuum. A cluster of
/// its own runs autovacuum, slowed to a crawl on one table so that its
/// worker stays busy past `max_query_age`; a client query as old is found
/// beside it, the worker is not.
#[test]
fn long_queries_never_counts_an_autovacuum_worker() {
    let cluster = Cluster::with_autovacuum();
    let url = rt().block_on(cluster.fresh_db());
    crate::support::cluster::admin_statements(
        &url,
        &["CREATE TABLE churn (id int NOT NULL, pad text NOT NULL) \
           WITH (autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1); \
           INSERT INTO churn SELECT g, md5(g::text) FROM generate_series(1, 100000) g; \
           DELETE FROM churn WHERE id % 2 = 0"
            .into()],
    );
    let worker_age = || -> f64 {
        crate::support::cli::psql_scalar(
            &url,
            "SELECT coalesce(max(extract(epoch FROM now() - query_start)), -1) FROM pg_stat_activity \
             WHERE backend_type = 'autovacuum worker' AND datname = current_database()",
        )
        .parse()
        .expect("age")
    };
    let t0 = Instant::now();
    while worker_age() < 2.0 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no autovacuum worker ran on churn for 2 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let sleeper_url = url.clone();
    let sleeper = std::thread::spawn(move || {
        rt().block_on(async {
            let mut c = connect(&sleeper_url).await;
            let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                .fetch_one(&mut c)
                .await
                .expect("pid");
            let _ = sqlx::query("SELECT pg_sleep(20)").execute(&mut c).await;
            pid
        })
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = check_plan(dir.path(), &url, "{ checks: [long_queries], max_query_age: 1s }", "");
    let t0 = Instant::now();
    let mut found = findings(dir.path(), &plan);
    while found.is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the client's long query was never found"
        );
        std::thread::sleep(Duration::from_millis(100));
        found = findings(dir.path(), &plan);
    }
    assert!(worker_age() > 2.0, "the worker was still running during the check");
    crate::support::cluster::admin_statements(
        &url,
        &["SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(20)'".into()],
    );
    let pid = sleeper.join().expect("sleeper");
    assert_eq!(found.len(), 1, "only the client's query: {found:?}");
    let text = found[0].to_string();
    assert!(text.contains(&pid.to_string()), "{text}");
    assert!(!text.to_lowercase().contains("autovacuum"), "{text}");
}

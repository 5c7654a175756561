//! `jobs: N` on vacuum and reindex (issue 14 §8): that many tables at once,
//! each on its own session, never more, and never two indexes of one table
//! at once. Watched from the server's own progress views by a session
//! sampling them while the apply runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::support::cli::{pg_count, rt};
use crate::support::cluster::{connect, seeded_db};
use crate::support::test::Test;

/// `plan.yaml` with one step `op` of `params` against `url`.
fn plan(t: &Test, url: &str, op: &str, params: &str) -> std::path::PathBuf {
    let path = t.path().join("plan.yaml");
    std::fs::write(
        &path,
        format!("version: 1\nname: jobs\ntarget: \"{url}\"\nsteps:\n  work:\n    {op}: {{ {params} }}\n"),
    )
    .expect("plan");
    path
}

/// Samples `sql` (one row per thing in progress, its first column a name)
/// every few milliseconds until `done`; every sample's names.
fn sample(url: &str, sql: &'static str, done: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Vec<String>>> {
    let url = url.to_string();
    std::thread::spawn(move || {
        rt().block_on(async {
            let mut c = connect(&url).await;
            let mut seen = vec![];
            while !done.load(Ordering::SeqCst) {
                let names: Vec<String> = sqlx::query_scalar(sql).fetch_all(&mut c).await.expect("sample");
                seen.push(names);
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            seen
        })
    })
}

/// Every VACUUM in database `db` sleeps `delay_ms` each `limit` cost
/// units (a dirtied page costs 20), so it runs long enough to be watched.
fn slow_vacuums(url: &str, db: &str, delay_ms: u64, limit: u64) {
    crate::support::cluster::admin_statements(
        url,
        &[
            format!("ALTER DATABASE {db} SET vacuum_cost_delay = '{delay_ms}ms'"),
            format!("ALTER DATABASE {db} SET vacuum_cost_limit = {limit}"),
        ],
    );
}

/// Four tables with half their rows dead; every VACUUM of this database
/// sleeps on its cost limit, so each takes long enough to be seen.
const FOUR_TABLES: &str = "CREATE TABLE t1 (id int, pad text) WITH (autovacuum_enabled = off); \
     CREATE TABLE t2 (LIKE t1) WITH (autovacuum_enabled = off); \
     CREATE TABLE t3 (LIKE t1) WITH (autovacuum_enabled = off); \
     CREATE TABLE t4 (LIKE t1) WITH (autovacuum_enabled = off); \
     INSERT INTO t1 SELECT g, md5(g::text) FROM generate_series(1, 60000) g; \
     INSERT INTO t2 SELECT * FROM t1; INSERT INTO t3 SELECT * FROM t1; INSERT INTO t4 SELECT * FROM t1; \
     DELETE FROM t1 WHERE id % 2 = 0; DELETE FROM t2 WHERE id % 2 = 0; \
     DELETE FROM t3 WHERE id % 2 = 0; DELETE FROM t4 WHERE id % 2 = 0;";

#[test]
fn postgres_vacuum_jobs_vacuums_that_many_tables_at_once_and_no_more() {
    let url = seeded_db(FOUR_TABLES, &[]);
    let db = crate::support::cluster::db_name(&url).to_string();
    // About half a second a VACUUM: long enough for the sampler to see
    // two at once even on a loaded machine.
    slow_vacuums(&url, &db, 10, 50);
    let t = Test::new();
    // jobs 3, parallelism 2: two at once.
    let p = plan(&t, &url, "vacuum", "min_dead_ratio: 0.2, analyze: false, jobs: 3");
    let diff = t.diff(&p);
    let notes = diff.json["steps"][0]["notes"].to_string();
    assert!(notes.contains("jobs: up to 3"), "the diff says it: {notes}");
    let done = Arc::new(AtomicBool::new(false));
    let seen = sample(
        &url,
        "SELECT relid::regclass::text FROM pg_stat_progress_vacuum WHERE datname = current_database()",
        done.clone(),
    );
    let out = t.apply_json(&p);
    done.store(true, Ordering::SeqCst);
    let seen = seen.join().expect("sampler");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let most = seen.iter().map(Vec::len).max().unwrap_or(0);
    assert_eq!(
        most, 2,
        "two tables vacuumed at once, never three (--parallelism 2): {seen:?}"
    );
    let vacuumed = rt().block_on(pg_count(
        &url,
        "SELECT count(*) FROM pg_stat_user_tables WHERE vacuum_count = 1 AND n_dead_tup = 0",
    ));
    assert_eq!(vacuumed, 4, "every table vacuumed once");
    assert_eq!(out.report["steps"][0]["statements"], 4, "{}", out.report);
}

#[test]
fn postgres_reindex_jobs_rebuilds_two_tables_at_once_but_one_tables_indexes_in_turn() {
    let url = seeded_db(
        "CREATE TABLE a (id int, v text); CREATE TABLE b (id int, v text); \
         INSERT INTO a SELECT g, md5(g::text) FROM generate_series(1, 150000) g; \
         INSERT INTO b SELECT * FROM a; \
         CREATE INDEX a_id ON a (id); CREATE INDEX a_v ON a (v); \
         CREATE INDEX b_id ON b (id); CREATE INDEX b_v ON b (v);",
        &[],
    );
    let t = Test::new();
    let p = plan(&t, &url, "reindex", "indexes: ['a_*', 'b_*'], jobs: 2");
    let done = Arc::new(AtomicBool::new(false));
    let seen = sample(
        &url,
        "SELECT relid::regclass::text FROM pg_stat_progress_create_index WHERE datname = current_database()",
        done.clone(),
    );
    let before = rt().block_on(pg_count(
        &url,
        "SELECT count(*) FROM pg_class WHERE relname IN ('a_id', 'a_v', 'b_id', 'b_v')",
    ));
    let oids = |u: &str| {
        rt().block_on(async {
            let mut c = connect(u).await;
            let v: Vec<i64> = sqlx::query_scalar(
                "SELECT relfilenode::int8 FROM pg_class WHERE relname IN ('a_id', 'a_v', 'b_id', 'b_v') ORDER BY relname",
            )
            .fetch_all(&mut c)
            .await
            .expect("relfilenodes");
            v
        })
    };
    let files_before = oids(&url);
    let out = t.apply_json(&p);
    done.store(true, Ordering::SeqCst);
    let seen = seen.join().expect("sampler");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(before, 4);
    let files_after = oids(&url);
    assert!(
        files_before.iter().zip(&files_after).all(|(b, a)| b != a),
        "every index rebuilt (new files): {files_before:?} → {files_after:?}"
    );
    for s in &seen {
        let mut tables = s.clone();
        tables.sort();
        tables.dedup();
        assert_eq!(tables.len(), s.len(), "two indexes of one table rebuilt at once: {s:?}");
    }
    assert!(
        seen.iter().any(|s| s.len() == 2),
        "the two tables were never rebuilt at once: {seen:?}"
    );
}

/// A role allowed three sessions (the apply lock's, the journal's, one
/// step session): the second lane cannot open its session, says so, and
/// the step vacuums every table on the first.
#[test]
fn postgres_a_lane_without_a_session_leaves_its_tables_to_the_others() {
    let url = seeded_db(FOUR_TABLES, &[]);
    let as_role = crate::support::cluster::role_url(&url, "jl", |role, db| {
        vec![
            format!("CREATE ROLE {role} LOGIN CONNECTION LIMIT 3"),
            format!("GRANT CREATE ON DATABASE {db} TO {role}"),
            format!("ALTER TABLE t1 OWNER TO {role}"),
            format!("ALTER TABLE t2 OWNER TO {role}"),
            format!("ALTER TABLE t3 OWNER TO {role}"),
            format!("ALTER TABLE t4 OWNER TO {role}"),
        ]
    });
    let t = Test::new();
    let p = plan(&t, &as_role, "vacuum", "min_dead_ratio: 0.2, analyze: false, jobs: 2");
    let out = t.apply_json(&p);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains("jobs: session 2 of 2 could not be opened"),
        "{}",
        out.stderr
    );
    let vacuumed = rt().block_on(pg_count(
        &url,
        "SELECT count(*) FROM pg_stat_user_tables WHERE vacuum_count = 1",
    ));
    assert_eq!(vacuumed, 4, "every table vacuumed on the one session");
}

/// Issue 14 §4: while a VACUUM runs, the periodic progress line says its
/// phase from `pg_stat_progress_vacuum` (read on a second session).
#[test]
fn postgres_a_running_vacuum_shows_its_phase_in_the_progress_lines() {
    let url = seeded_db(
        "CREATE TABLE big (id int, pad text) WITH (autovacuum_enabled = off); \
         INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 300000) g; \
         DELETE FROM big WHERE id % 2 = 0;",
        &[],
    );
    let db = crate::support::cluster::db_name(&url).to_string();
    // Every VACUUM here sleeps on its cost limit: several seconds.
    slow_vacuums(&url, &db, 20, 20);
    let t = Test::new();
    let p = plan(&t, &url, "vacuum", "tables: [big], min_dead_ratio: 0.2, analyze: false");
    let out = crate::support::cli::dbmaint(t.path())
        .env("DBMAINT_PROGRESS_EVERY", "0.5")
        .args(["--progress", "always", "plan", "apply", "--auto-approve"])
        .arg(&p)
        .output()
        .expect("apply");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let phases: Vec<&str> = err
        .lines()
        .filter(|l| l.contains(" progress ") && l.contains("(public.big: "))
        .collect();
    assert!(
        phases.iter().any(|l| l.contains("public.big: scanning heap ")
            || l.contains("public.big: vacuuming heap ")
            || l.contains("public.big: vacuuming indexes")),
        "the phase of the running VACUUM: {err}"
    );
    let vacuumed = rt().block_on(pg_count(
        &url,
        "SELECT count(*) FROM pg_stat_user_tables WHERE relname = 'big' AND vacuum_count = 1",
    ));
    assert_eq!(vacuumed, 1);
}

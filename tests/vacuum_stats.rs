//! Statistics you can trust, or a safe fallback (issue 14 §2): after
//! `pg_stat_reset()` (as after a crash, a failover, a clone or
//! `pg_upgrade`) a table's zero dead tuples mean *unknown*, so `vacuum`
//! vacuums it unless `on_unknown_stats: skip`; `min_dead_ratio: 0` selects
//! every table.

use std::path::Path;

use crate::support::cli::{dbmaint, rt};
use crate::support::cluster::{connect, flush_stats, seeded_db};

/// A plan with one vacuum step, in a file of its own per parameters.
fn vacuum_plan(dir: &Path, url: &str, params: &str) -> std::path::PathBuf {
    let file: String = params.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let p = dir.join(format!("vacuum-{file}.yaml"));
    std::fs::write(
        &p,
        format!("version: 1\nname: v\ntarget: \"{url}\"\nsteps:\n  vacuum:\n    vacuum: {params}\n"),
    )
    .expect("plan");
    p
}

fn diff_step(dir: &Path, plan: &Path) -> serde_json::Value {
    let out = dbmaint(dir)
        .args(["--output", "json", "plan", "diff"])
        .arg(plan)
        .output()
        .expect("diff");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    v["steps"][0].clone()
}

fn selected(step: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = step["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter(|o| o["kind"] == "table")
        .map(|o| o["name"].as_str().unwrap_or("").to_string())
        .collect();
    names.sort();
    names
}

/// The step's object named `name`.
fn object(step: &serde_json::Value, name: &str) -> serde_json::Value {
    step["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .find(|o| o["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no object {name}: {step}"))
}

/// Applies `plan` (it must succeed) and returns the tables the server
/// now says were vacuumed, by name.
fn apply_and_vacuumed(dir: &Path, plan: &Path, url: &str) -> Vec<String> {
    let out = dbmaint(dir)
        .args(["plan", "apply", "--auto-approve"])
        .arg(plan)
        .output()
        .expect("apply");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    rt().block_on(async {
        let mut c = connect(url).await;
        flush_stats(&mut c).await;
        sqlx::query_scalar("SELECT relname::text FROM pg_stat_user_tables WHERE last_vacuum IS NOT NULL ORDER BY 1")
            .fetch_all(&mut c)
            .await
            .expect("vacuumed")
    })
}

#[test]
fn postgres_reset_statistics_still_vacuum_the_bloated_table() {
    let rt = rt();
    let url = seeded_db(
        "CREATE TABLE churn (id int PRIMARY KEY, body text); \
         INSERT INTO churn SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g; \
         DELETE FROM churn WHERE id % 3 = 0; \
         CREATE TABLE calm (id int PRIMARY KEY); INSERT INTO calm SELECT generate_series(1, 1000); \
         ANALYZE churn; ANALYZE calm;",
        &[],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = vacuum_plan(dir.path(), &url, "{}");
    // Before the reset: the counters see churn's 33 % dead tuples.
    assert_eq!(selected(&diff_step(dir.path(), &plan)), ["churn"]);
    // The reset: counters zero, as after a failover.
    rt.block_on(async {
        let mut c = connect(&url).await;
        sqlx::raw_sql("SELECT pg_stat_reset()")
            .execute(&mut c)
            .await
            .expect("reset");
        flush_stats(&mut c).await;
    });
    let step = diff_step(dir.path(), &plan);
    assert_eq!(selected(&step), ["calm", "churn"], "unknown is vacuumed: {step}");
    let churn = object(&step, "churn");
    assert!(
        churn["detail"]
            .as_str()
            .unwrap_or("")
            .starts_with("dead tuples unknown"),
        "{churn}"
    );
    assert_eq!(churn["figures"]["stats_unknown"], true);
    // `on_unknown_stats: skip` leaves them, and says so.
    let skip = vacuum_plan(dir.path(), &url, "{ on_unknown_stats: skip }");
    let step = diff_step(dir.path(), &skip);
    assert!(selected(&step).is_empty(), "{step}");
    assert!(
        step["warnings"][0]
            .as_str()
            .unwrap_or("")
            .contains("statistics unknown"),
        "{step}"
    );
    // Apply the default plan: both vacuumed; the next diff trusts the
    // counters again and selects nothing.
    let out = dbmaint(dir.path())
        .args(["plan", "apply", "--auto-approve"])
        .arg(&plan)
        .output()
        .expect("apply");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let vacuumed: i64 = rt.block_on(async {
        let mut c = connect(&url).await;
        flush_stats(&mut c).await;
        sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_user_tables WHERE last_vacuum IS NOT NULL AND relname IN ('churn', 'calm')",
        )
        .fetch_one(&mut c)
        .await
        .expect("count")
    });
    assert_eq!(vacuumed, 2);
    assert!(selected(&diff_step(dir.path(), &plan)).is_empty());
}

/// With pgstattuple installed, a table whose statistics were reset is
/// measured (`pgstattuple_approx`) instead of vacuumed blind: the bloated
/// one is selected with its real dead ratio, the clean one is not.
#[test]
fn postgres_reset_statistics_are_measured_by_pgstattuple_approx_when_installed() {
    let rt = rt();
    let url = seeded_db(
        "CREATE EXTENSION pgstattuple; \
         CREATE TABLE churn (id int PRIMARY KEY, body text); \
         INSERT INTO churn SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g; \
         DELETE FROM churn WHERE id % 3 = 0; \
         CREATE TABLE calm (id int PRIMARY KEY); INSERT INTO calm SELECT generate_series(1, 1000); \
         ANALYZE churn; ANALYZE calm; SELECT pg_stat_reset();",
        &[],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = vacuum_plan(dir.path(), &url, "{}");
    let step = diff_step(dir.path(), &plan);
    assert_eq!(selected(&step), ["churn"], "measured, not vacuumed blind: {step}");
    let churn = &step["objects"][0];
    assert!(
        churn["detail"]
            .as_str()
            .unwrap_or("")
            .contains("measured by pgstattuple_approx"),
        "{churn}"
    );
    assert_eq!(churn["figures"]["measured_by"], "pgstattuple_approx");
    // 6,666 of the 20,000 rows were deleted: a third dead.
    assert_eq!(churn["figures"]["dead_tuples"], 6666, "{churn}");
    let ratio = churn["figures"]["dead_ratio"].as_f64().unwrap_or(0.0);
    assert!((ratio - 1.0 / 3.0).abs() < 0.02, "{ratio}");
    // A table another session holds ACCESS EXCLUSIVE is not measured (the
    // diff would wait for its lock): unknown, and vacuumed to be safe.
    let mut holder = rt.block_on(connect(&url));
    rt.block_on(sqlx::raw_sql("BEGIN; LOCK TABLE calm IN ACCESS EXCLUSIVE MODE").execute(&mut holder))
        .expect("lock");
    let locked = diff_step(dir.path(), &plan);
    rt.block_on(sqlx::raw_sql("ROLLBACK").execute(&mut holder))
        .expect("unlock");
    assert_eq!(selected(&locked), ["calm", "churn"], "{locked}");
    let calm = object(&locked, "calm");
    assert!(
        calm["detail"].as_str().unwrap_or("").starts_with("dead tuples unknown"),
        "{calm}"
    );
    assert!(
        locked["objects"].to_string().contains("measured by pgstattuple_approx"),
        "the other table is still measured: {locked}"
    );
    assert_eq!(apply_and_vacuumed(dir.path(), &plan, &url), ["churn"]);
}

#[test]
fn postgres_min_dead_ratio_zero_selects_every_table() {
    let url = seeded_db(
        "CREATE TABLE a (id int PRIMARY KEY); INSERT INTO a SELECT generate_series(1, 100); \
         CREATE TABLE b (id int PRIMARY KEY); INSERT INTO b SELECT generate_series(1, 100); ANALYZE;",
        &[],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(selected(&diff_step(dir.path(), &vacuum_plan(dir.path(), &url, "{}"))).is_empty());
    let every = vacuum_plan(dir.path(), &url, "{ min_dead_ratio: 0 }");
    assert_eq!(selected(&diff_step(dir.path(), &every)), ["a", "b"]);
}

/// The selected tables in the order the step runs them.
fn order(step: &serde_json::Value) -> Vec<String> {
    step["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter(|o| o["kind"] == "table")
        .map(|o| o["name"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn postgres_freezing_takes_the_oldest_table_first() {
    // `z_old` gets its relfrozenxid 200 transactions before `a_new`.
    let url = seeded_db(
        "CREATE TABLE z_old (id int PRIMARY KEY); INSERT INTO z_old VALUES (1);",
        &[],
    );
    rt().block_on(async {
        let mut c = connect(&url).await;
        for _ in 0..200 {
            sqlx::raw_sql("SELECT txid_current()")
                .execute(&mut c)
                .await
                .expect("xid");
        }
        sqlx::raw_sql("CREATE TABLE a_new (id int PRIMARY KEY); INSERT INTO a_new VALUES (1); ANALYZE")
            .execute(&mut c)
            .await
            .expect("table");
        flush_stats(&mut c).await;
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = vacuum_plan(dir.path(), &url, "{ min_dead_ratio: 0 }");
    assert_eq!(order(&diff_step(dir.path(), &plain)), ["a_new", "z_old"], "by name");
    let freeze = vacuum_plan(dir.path(), &url, "{ min_dead_ratio: 0, freeze: true }");
    let step = diff_step(dir.path(), &freeze);
    // The server's own order (a concurrent snapshot elsewhere in the
    // cluster can give both tables one relfrozenxid: then names decide).
    let by_age: Vec<String> = rt().block_on(async {
        let mut c = connect(&url).await;
        sqlx::query_scalar(
            "SELECT relname::text FROM pg_class WHERE relname IN ('z_old', 'a_new') \
             ORDER BY age(relfrozenxid) DESC, relname",
        )
        .fetch_all(&mut c)
        .await
        .expect("ages")
    });
    assert_eq!(order(&step), by_age, "oldest first: {step}");
    if by_age[0] != "z_old" {
        eprintln!("note: both tables got one relfrozenxid (a concurrent snapshot); the order fell back to names");
    }
}

#[test]
fn postgres_each_vacuum_threshold_selects_its_tables_and_apply_vacuums_only_those() {
    // a: 25 % dead (2,500); b: 10 % dead (1,000); c: 40 % dead but only 40
    // tuples; d: none dead.
    let url = seeded_db(
        "CREATE TABLE a (id int PRIMARY KEY); INSERT INTO a SELECT generate_series(1, 10000); \
         CREATE TABLE b (id int PRIMARY KEY); INSERT INTO b SELECT generate_series(1, 10000); \
         CREATE TABLE c (id int PRIMARY KEY); INSERT INTO c SELECT generate_series(1, 100); \
         CREATE TABLE d (id int PRIMARY KEY); INSERT INTO d SELECT generate_series(1, 1000); \
         ANALYZE; \
         DELETE FROM a WHERE id % 4 = 0; DELETE FROM b WHERE id % 10 = 0; DELETE FROM c WHERE id <= 40;",
        &[],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let pick = |params: &str| selected(&diff_step(dir.path(), &vacuum_plan(dir.path(), &url, params)));
    // Defaults (ratio 0.2 and 50 tuples): a only.
    assert_eq!(pick("{}"), ["a"]);
    // A lower ratio takes b too; c stays under the 50-tuple floor.
    assert_eq!(pick("{ min_dead_ratio: 0.05 }"), ["a", "b"]);
    // A lower floor lets c's 40 in.
    assert_eq!(pick("{ min_dead_tuples: 10 }"), ["a", "c"]);
    assert_eq!(pick("{ min_dead_ratio: 0.05, min_dead_tuples: 10 }"), ["a", "b", "c"]);
    // By transaction-ID age every table qualifies (each is at least 1 old).
    assert_eq!(pick("{ min_xid_age: 1 }"), ["a", "b", "c", "d"]);
    // Apply the ratio-and-floor plan: exactly a, b and c are vacuumed.
    let plan = vacuum_plan(dir.path(), &url, "{ min_dead_ratio: 0.05, min_dead_tuples: 10 }");
    assert_eq!(apply_and_vacuumed(dir.path(), &plan, &url), ["a", "b", "c"]);
}

/// A plan with one analyze step.
fn analyze_plan(dir: &Path, url: &str, params: &str) -> std::path::PathBuf {
    let file: String = params.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let p = dir.join(format!("analyze-{file}.yaml"));
    std::fs::write(
        &p,
        format!("version: 1\nname: a\ntarget: \"{url}\"\nsteps:\n  analyze:\n    analyze: {params}\n"),
    )
    .expect("plan");
    p
}

#[test]
fn postgres_analyze_selects_by_modified_share_and_apply_analyzes_only_those() {
    // m: 20 % of its rows changed since its ANALYZE; n: 5 %; o: none.
    let rt = rt();
    let url = seeded_db(
        "CREATE TABLE m (id int PRIMARY KEY, v int); INSERT INTO m SELECT g, 0 FROM generate_series(1, 1000) g; \
         CREATE TABLE n (id int PRIMARY KEY, v int); INSERT INTO n SELECT g, 0 FROM generate_series(1, 1000) g; \
         CREATE TABLE o (id int PRIMARY KEY, v int); INSERT INTO o SELECT g, 0 FROM generate_series(1, 1000) g;",
        // Each its own transaction; the inserts' counters flushed before the
        // ANALYZE (a session reports them when it goes idle), so they count
        // as analyzed.
        &[
            "SELECT pg_stat_force_next_flush()",
            "SELECT 1",
            "ANALYZE",
            "UPDATE m SET v = 1 WHERE id <= 200",
            "UPDATE n SET v = 1 WHERE id <= 50",
        ],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let pick = |params: &str| selected(&diff_step(dir.path(), &analyze_plan(dir.path(), &url, params)));
    let step = diff_step(dir.path(), &analyze_plan(dir.path(), &url, "{}"));
    assert_eq!(selected(&step), ["m"], "default 0.1: {step}");
    assert_eq!(pick("{ min_mod_ratio: 0.01 }"), ["m", "n"]);
    assert_eq!(pick("{ min_mod_ratio: 0 }"), ["m", "n", "o"]);
    let counts = || -> Vec<(String, i64)> {
        rt.block_on(async {
            let mut c = connect(&url).await;
            flush_stats(&mut c).await;
            sqlx::query_as(
                "SELECT relname::text, analyze_count FROM pg_stat_user_tables WHERE schemaname = 'public' ORDER BY 1",
            )
            .fetch_all(&mut c)
            .await
            .expect("counts")
        })
    };
    let before = counts();
    let out = dbmaint(dir.path())
        .args(["plan", "apply", "--auto-approve"])
        .arg(analyze_plan(dir.path(), &url, "{}"))
        .output()
        .expect("apply");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = counts();
    let analyzed: Vec<&str> = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| a.1 > b.1)
        .map(|(b, _)| b.0.as_str())
        .collect();
    assert_eq!(analyzed, ["m"], "{before:?} -> {after:?}");
}

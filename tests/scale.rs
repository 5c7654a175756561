//! Planning at scale (issue 16): the diff's statements read rows and
//! buffers linear in the number of relations. Measured from the server's
//! side (pg_stat_statements' `rows` and `shared_blks_hit` of every
//! statement), not timed: at 0, 1,000 and 2,000 extra tables, the second
//! thousand may cost a statement no more than the first did (a quadratic
//! statement's second thousand costs three times its first). Two sizes
//! alone cannot tell: a statement's fixed part (the system catalogs) is
//! unknown.
//!
//! What these counters cannot see: a join looping over rows already in
//! memory (a CTE scanned once per row, a sort merged against a filter).
//! The unused-index check's scan of `pg_constraint` per index showed here
//! (246,730 buffer hits at 2,000 tables, against 70,439 at 1,000), the
//! self-join of the duplicate-index check and the `pg_stats` join of the
//! bloat estimate did not: `cargo bench --bench catalog` times those.

use crate::support::cli::{dbmaint, rt};
use crate::support::cluster::{Cluster, ServerStatement, connect, server_statements};

/// A plan with every step that reads the catalog at diff time.
fn six_step_plan(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let path = dir.join("six.yaml");
    std::fs::write(
        &path,
        format!(
            "version: 1\nname: scale\ntarget: \"{url}\"\nsteps:\n  \
             vacuum:\n    vacuum: {{}}\n  analyze:\n    analyze: {{}}\n  stats:\n    stats: {{ top: 20 }}\n  \
             bloat:\n    bloat: {{ min_waste_ratio: 0.2, min_bytes: 8192 }}\n  check:\n    check: {{}}\n  \
             reindex:\n    reindex: {{ min_bloat_ratio: 0.3 }}\n"
        ),
    )
    .expect("plan");
    path
}

/// `extra_{from}` … `extra_{to - 1}`: a primary key, a secondary index, a
/// TOAST-able column and a foreign key to `accounts`, analyzed.
async fn add_tables(c: &mut sqlx::PgConnection, from: usize, to: usize) {
    let ddl: String = (from..to)
        .map(|i| {
            format!(
                "CREATE TABLE extra_{i} (id int PRIMARY KEY, account int REFERENCES accounts, v text); \
                 CREATE INDEX ON extra_{i} (v); INSERT INTO extra_{i} SELECT g, 1, md5(g::text) FROM generate_series(1, 5) g; \
                 ANALYZE extra_{i};"
            )
        })
        .collect();
    sqlx::raw_sql(sqlx::AssertSqlSafe(ddl))
        .execute(&mut *c)
        .await
        .expect("extra tables");
}

/// The diff's statements, by normalized text, from the server's counters.
fn diff_counters(dir: &std::path::Path, plan: &std::path::Path, url: &str) -> Vec<ServerStatement> {
    server_statements(url, || {
        let out = dbmaint(dir)
            .args(["--output", "json", "plan", "diff"])
            .arg(plan)
            .output()
            .expect("diff");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("diff JSON");
        assert_eq!(v["steps"].as_array().map(Vec::len), Some(6), "six steps planned");
    })
}

#[test]
fn postgres_diff_statements_read_rows_and_buffers_linear_in_the_relation_count() {
    let rt = rt();
    let url = rt.block_on(Cluster::get().fresh_db());
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = six_step_plan(dir.path(), &url);
    let mut c = rt.block_on(connect(&url));
    rt.block_on(async {
        sqlx::raw_sql(
            "CREATE TABLE accounts (id int PRIMARY KEY, name text); INSERT INTO accounts VALUES (1, 'a'); \
             CREATE TABLE events AS SELECT g AS id, g % 50 AS kind, md5(g::text) AS payload FROM generate_series(1, 20000) g; \
             ALTER TABLE events ADD PRIMARY KEY (id); CREATE INDEX ON events (kind); CREATE INDEX ON events (kind, id); \
             CREATE INDEX ON events (lower(payload)); DELETE FROM events WHERE id % 3 = 0; ANALYZE;",
        )
        .execute(&mut c)
        .await
        .expect("seed");
    });
    let mut points: Vec<(i64, Vec<ServerStatement>)> = vec![];
    for (from, to) in [(0, 0), (0, 1000), (1000, 2000)] {
        rt.block_on(add_tables(&mut c, from, to));
        let relations: i64 = rt
            .block_on(sqlx::query_scalar("SELECT count(*) FROM pg_class").fetch_one(&mut c))
            .expect("relations");
        points.push((relations, diff_counters(dir.path(), &plan, &url)));
    }
    let find = |at: &[ServerStatement], q: &str| at.iter().find(|s| s.query == q).cloned();
    let mut failures = vec![];
    let mut compared = 0;
    for s0 in &points[0].1 {
        let (Some(s1), Some(s2)) = (find(&points[1].1, &s0.query), find(&points[2].1, &s0.query)) else {
            continue;
        };
        compared += 1;
        for (what, a, b, c) in [
            ("rows", s0.rows, s1.rows, s2.rows),
            (
                "shared_blks_hit",
                s0.shared_blks_hit,
                s1.shared_blks_hit,
                s2.shared_blks_hit,
            ),
        ] {
            let (first, second) = (b - a, c - b);
            // The second thousand tables may cost what the first did, with
            // room for the catalogs' own growth (a new page, a deeper
            // index): a quadratic statement's costs three times as much.
            if second > first + first / 2 + 200 {
                failures.push(format!(
                    "{what}: {a} → {b} → {c} at {} → {} → {} relations: {}",
                    points[0].0,
                    points[1].0,
                    points[2].0,
                    s0.query.chars().take(160).collect::<String>()
                ));
            }
        }
    }
    assert!(compared >= 15, "only {compared} statements ran at every size");
    assert!(
        failures.is_empty(),
        "statements whose work grows faster than the relation count:\n{}",
        failures.join("\n")
    );
}

/// Buffer hits of the catalog's tables query in one diff: the query that
/// measures tables on disk (each measured relation costs relation-cache
/// lookups, dozens of catalog buffer hits).
fn tables_query_hits(dir: &std::path::Path, plan: &std::path::Path, url: &str) -> (i64, serde_json::Value) {
    let mut diff = serde_json::Value::Null;
    let statements = server_statements(url, || {
        let out = dbmaint(dir)
            .args(["--output", "json", "plan", "diff"])
            .arg(plan)
            .output()
            .expect("diff");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        diff = serde_json::from_slice(&out.stdout).expect("diff JSON");
    });
    let hits = statements
        .iter()
        .filter(|s| s.query.contains("pg_table_size"))
        .map(|s| s.shared_blks_hit)
        .sum();
    (hits, diff)
}

#[test]
fn postgres_a_plan_naming_its_tables_measures_only_those_on_disk() {
    let rt = rt();
    let url = rt.block_on(Cluster::get().fresh_db());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = rt.block_on(connect(&url));
    // `events` grows after its ANALYZE: its relpages is stale, so a size
    // from relpages and a size measured on disk differ.
    rt.block_on(async {
        sqlx::raw_sql(
            "CREATE TABLE accounts (id int PRIMARY KEY, name text); INSERT INTO accounts VALUES (1, 'a'); \
             CREATE TABLE events AS SELECT g AS id, md5(g::text) AS payload FROM generate_series(1, 20000) g; \
             ALTER TABLE events ADD PRIMARY KEY (id); ANALYZE events; \
             INSERT INTO events SELECT g, md5(g::text) FROM generate_series(20001, 40000) g; \
             DELETE FROM events WHERE id % 2 = 0;",
        )
        .execute(&mut c)
        .await
        .expect("seed");
        crate::support::cluster::flush_stats(&mut c).await;
    });
    let plan = |name: &str, tables: &str| {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &path,
            format!(
                "version: 1\nname: {name}\ntarget: \"{url}\"\nsteps:\n  \
                 vacuum:\n    vacuum: {{ {tables}min_dead_ratio: 0 }}\n  analyze:\n    analyze: {{ {tables}min_mod_ratio: 0 }}\n"
            ),
        )
        .expect("plan");
        path
    };
    let (named, all) = (plan("named", "tables: [events], "), plan("all", ""));
    let events_bytes = |diff: &serde_json::Value| {
        diff["steps"][0]["objects"]
            .as_array()
            .and_then(|o| {
                o.iter()
                    .find(|o| o["name"].as_str().is_some_and(|n| n.ends_with("events")))
            })
            .and_then(|o| o["figures"]["bytes"].as_u64())
            .unwrap_or_else(|| panic!("events in the vacuum step: {diff}"))
    };
    let (named_before, diff) = tables_query_hits(dir.path(), &named, &url);
    let on_disk: i64 = rt
        .block_on(sqlx::query_scalar("SELECT pg_total_relation_size('events')").fetch_one(&mut c))
        .expect("size");
    assert_eq!(events_bytes(&diff) as i64, on_disk, "a named table is measured on disk");
    let (all_before, _) = tables_query_hits(dir.path(), &all, &url);
    rt.block_on(add_tables(&mut c, 0, 1000));
    let (named_after, diff) = tables_query_hits(dir.path(), &named, &url);
    assert_eq!(
        events_bytes(&diff) as i64,
        on_disk,
        "the same size with 1,000 more tables"
    );
    let (all_after, _) = tables_query_hits(dir.path(), &all, &url);
    // Measuring a table costs relation-cache lookups (catalog buffer
    // hits) on top of the scan every table costs: the 1,000 new tables
    // (5,000 relations) cost the plan that measures every table about
    // three times what they cost the plan naming `events` (50,000 against
    // 17,000 buffer hits when this test was written).
    let (all_growth, named_growth) = (all_after - all_before, named_after - named_before);
    assert!(
        named_growth * 2 < all_growth,
        "the plan naming `events` measured only it: {named_before} → {named_after} buffer hits, \
         against {all_before} → {all_after} for the plan measuring every table"
    );
}

//! `refresh_views`: CONCURRENTLY needs a usable unique index (refused in
//! the diff otherwise); a concurrent refresh lets readers read; views
//! refresh after the views they read.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::cli::{apply, dbmaint, diff_json, rt};
use crate::support::cluster::{connect, seeded_db};

fn views_plan(dir: &std::path::Path, url: &str, params: &str) -> std::path::PathBuf {
    let path = dir.join("views.yaml");
    std::fs::write(
        &path,
        format!("version: 1\nname: views\ntarget: \"{url}\"\nsteps:\n  views:\n    refresh_views: {params}\n"),
    )
    .expect("plan");
    path
}

#[test]
fn postgres_view_without_unique_index_is_refused_for_concurrent_refresh() {
    let url = seeded_db(
        "CREATE TABLE base (id int PRIMARY KEY, v int);
         INSERT INTO base SELECT g, g FROM generate_series(1, 100) g;
         CREATE MATERIALIZED VIEW no_key AS SELECT id, v FROM base;
         CREATE MATERIALIZED VIEW partial_key AS SELECT id, v FROM base;
         CREATE UNIQUE INDEX partial_key_id ON partial_key (id) WHERE id > 10;
         CREATE MATERIALIZED VIEW empty AS SELECT id, v FROM base WITH NO DATA;
         CREATE UNIQUE INDEX empty_id ON empty (id);",
        &[],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = views_plan(dir.path(), &url, "{}");
    let out = dbmaint(dir.path())
        .args(["plan", "diff"])
        .arg(&plan)
        .output()
        .expect("diff");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    for v in [
        "public.no_key has no unique index",
        "public.partial_key has no unique index",
        "public.empty is not populated",
    ] {
        assert!(text.contains(v), "`{v}` missing from:\n{text}");
    }
    assert!(text.contains("CREATE UNIQUE INDEX CONCURRENTLY ON"), "{text}");
    // apply refuses the step and refreshes nothing.
    let out = apply(dir.path(), &plan);
    assert_eq!(out.status.code(), Some(1));
    // `concurrently: false` refreshes all three, the empty one included.
    std::fs::write(
        &plan,
        std::fs::read_to_string(&plan).expect("plan").replace(
            "refresh_views: {}",
            "refresh_views: {concurrently: false, allow_exclusive_lock: true}",
        ),
    )
    .expect("rewrite");
    let out = apply(dir.path(), &plan);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let populated: bool = rt().block_on(async {
        sqlx::query_scalar("SELECT relispopulated FROM pg_class WHERE relname = 'empty'")
            .fetch_one(&mut connect(&url).await)
            .await
            .expect("populated")
    });
    assert!(populated);
}

#[test]
fn postgres_concurrent_refresh_keeps_readers_reading_and_follows_dependencies() {
    let url = seeded_db(
        "CREATE TABLE base (id int PRIMARY KEY, v int NOT NULL);
         INSERT INTO base SELECT g, 0 FROM generate_series(1, 200000) g;
         CREATE MATERIALIZED VIEW totals AS SELECT id, v, md5(id::text || v::text) AS h FROM base;
         CREATE UNIQUE INDEX totals_id ON totals (id);
         CREATE MATERIALIZED VIEW summary AS SELECT v, count(*) AS n FROM totals GROUP BY v;
         CREATE UNIQUE INDEX summary_v ON summary (v);
         UPDATE base SET v = 1 WHERE id % 2 = 0;",
        &[],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    // Listed dependent-first: the order comes from the dependency, not the glob.
    let plan = views_plan(dir.path(), &url, "{views: [summary, totals]}");
    let diff = diff_json(dir.path(), &plan);
    assert_eq!(
        diff["steps"][0]["statements"],
        serde_json::json!([
            "REFRESH MATERIALIZED VIEW CONCURRENTLY \"public\".\"totals\"",
            "REFRESH MATERIALIZED VIEW CONCURRENTLY \"public\".\"summary\""
        ]),
        "{diff}"
    );
    // A reader queries the view in a loop while the refresh runs. Before
    // and after each read it asks the server whether the refresh of `totals`
    // is running: a read with the refresh running on both sides of it ran
    // *during* the refresh. A plain REFRESH (ACCESS EXCLUSIVE) would hold
    // the read until it committed, so no read would be bracketed.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, url) = (stop.clone(), url.clone());
        std::thread::spawn(move || {
            rt().block_on(async {
                let mut c = connect(&url).await;
                let running = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
                               AND datname = current_database() AND query LIKE 'REFRESH MATERIALIZED VIEW %\"totals\"'";
                let (mut during, mut worst) = (0u32, Duration::ZERO);
                while !stop.load(Ordering::SeqCst) {
                    let before: i64 = sqlx::query_scalar(running).fetch_one(&mut c).await.expect("activity");
                    let t0 = Instant::now();
                    let _: i64 = sqlx::query_scalar("SELECT count(*) FROM totals WHERE id < 1000")
                        .fetch_one(&mut c)
                        .await
                        .expect("read during refresh");
                    let took = t0.elapsed();
                    let after: i64 = sqlx::query_scalar(running).fetch_one(&mut c).await.expect("activity");
                    if before > 0 && after > 0 {
                        during += 1;
                        worst = worst.max(took);
                    }
                }
                (during, worst)
            })
        })
    };
    let t0 = Instant::now();
    let out = apply(dir.path(), &plan);
    let took = t0.elapsed();
    stop.store(true, Ordering::SeqCst);
    let (during, worst) = reader.join().expect("reader");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    println!("apply took {took:?}; {during} reads ran during the refresh of totals, worst {worst:?}");
    // Thousands run during a concurrent refresh; a blocking one lets only
    // the few it held through (each released with the refresh, and seen
    // bracketed because the server reports the refresh idle a moment after
    // its commit).
    assert!(
        during >= 100,
        "reads must run while the refresh does: {during} were bracketed by it"
    );
    assert!(worst < Duration::from_millis(500), "a reader waited {worst:?}");
    // Both views see the update; summary was refreshed after totals.
    let summary: Vec<(i32, i64)> = rt().block_on(async {
        sqlx::query_as("SELECT v, n FROM summary ORDER BY v")
            .fetch_all(&mut connect(&url).await)
            .await
            .expect("summary")
    });
    assert_eq!(summary, [(0, 100000), (1, 100000)]);
}

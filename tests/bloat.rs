//! The `bloat` operation: the extension-free estimate agrees with
//! `pgstattuple` on bloat the test makes; SQLite reports its free pages.

use std::path::Path;

use crate::support::cli::{dbmaint, rt};
use crate::support::cluster::{connect, seeded_db};

fn bloat_plan(dir: &Path, url: &str, params: &str) -> std::path::PathBuf {
    let path = dir.join("bloat.yaml");
    std::fs::write(
        &path,
        format!("version: 1\nname: bloat\ntarget: \"{url}\"\nsteps:\n  bloat:\n    bloat: {params}\n"),
    )
    .expect("plan");
    path
}

/// Applies the plan and returns the step's report (`steps[0]`).
fn applied(dir: &Path, plan: &Path) -> serde_json::Value {
    let out = dbmaint(dir)
        .args(["--output", "json", "plan", "apply", "--auto-approve"])
        .arg(plan)
        .output()
        .expect("apply");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    v["report"]["steps"][0].clone()
}

/// name → (ratio, method) of every measured relation.
fn ratios(step: &serde_json::Value) -> std::collections::BTreeMap<String, (f64, String)> {
    step["bloat"]["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                format!(
                    "{} {}",
                    e["kind"].as_str().unwrap_or(""),
                    e["name"].as_str().unwrap_or("")
                ),
                (
                    e["ratio"].as_f64().unwrap_or(-1.0),
                    e["method"].as_str().unwrap_or("").to_string(),
                ),
            )
        })
        .collect()
}

#[test]
fn postgres_estimate_is_within_15_points_of_pgstattuple() {
    // `churn` loses 60% of its rows, spread over every page, then is
    // vacuumed: the pages stay, mostly empty. `steady` is freshly loaded.
    // `half` is bloated by updates of every other row.
    let url = seeded_db(
        "CREATE TABLE churn (id bigserial PRIMARY KEY, n int NOT NULL, payload text NOT NULL);
         INSERT INTO churn (n, payload) SELECT g % 1000, md5(g::text) || md5((g * 7)::text)
           FROM generate_series(1, 200000) g;
         CREATE INDEX churn_n ON churn (n);
         DELETE FROM churn WHERE id % 5 < 3;
         CREATE TABLE steady (id bigserial PRIMARY KEY, n int NOT NULL, payload text NOT NULL);
         INSERT INTO steady (n, payload) SELECT g % 1000, md5(g::text) FROM generate_series(1, 100000) g;
         CREATE INDEX steady_n ON steady (n);
         CREATE TABLE half (id bigint PRIMARY KEY, v int NOT NULL) WITH (autovacuum_enabled = off);
         INSERT INTO half SELECT g, 0 FROM generate_series(1, 150000) g;
         UPDATE half SET v = 1 WHERE id % 2 = 0;
         CREATE EXTENSION pgstattuple;",
        &["VACUUM ANALYZE churn", "VACUUM ANALYZE steady", "VACUUM ANALYZE half"],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let estimate = ratios(&applied(
        dir.path(),
        &bloat_plan(dir.path(), &url, "{min_waste_ratio: 0.99, min_bytes: 65536}"),
    ));
    let exact = ratios(&applied(
        dir.path(),
        &bloat_plan(
            dir.path(),
            &url,
            "{min_waste_ratio: 0.99, min_bytes: 65536, exact: true}",
        ),
    ));
    let expect = [
        "table public.churn",
        "index public.churn_pkey",
        "index public.churn_n",
        "table public.steady",
        "index public.steady_pkey",
        "index public.steady_n",
        "table public.half",
        "index public.half_pkey",
    ];
    println!("{:<28} {:>9} {:>12}", "relation", "estimate", "pgstattuple");
    let mut worst = 0.0f64;
    for name in expect {
        let (e, em) = estimate
            .get(name)
            .unwrap_or_else(|| panic!("{name} not estimated: {estimate:?}"));
        let (x, xm) = exact
            .get(name)
            .unwrap_or_else(|| panic!("{name} not measured: {exact:?}"));
        println!("{name:<28} {:>8.1}% {:>11.1}%", e * 100.0, x * 100.0);
        assert_eq!((em.as_str(), xm.as_str()), ("estimate", "pgstattuple"), "{name}");
        worst = worst.max((e - x).abs());
        assert!((e - x).abs() <= 0.15, "{name}: estimate {e:.3} vs pgstattuple {x:.3}");
    }
    println!("largest difference: {:.1} points", worst * 100.0);
    // The seeded bloat is seen, the fresh table is not bloated.
    assert!(exact["table public.churn"].0 > 0.4, "{exact:?}");
    assert!(estimate["table public.churn"].0 > 0.4, "{estimate:?}");
    assert!(estimate["index public.churn_n"].0 > 0.3, "{estimate:?}");
    assert!(estimate["table public.steady"].0 < 0.1, "{estimate:?}");
}

#[test]
fn postgres_bloat_findings_follow_the_threshold_and_say_estimate() {
    let url = seeded_db(
        "CREATE TABLE churn (id bigserial PRIMARY KEY, payload text NOT NULL);
         INSERT INTO churn (payload) SELECT md5(g::text) FROM generate_series(1, 100000) g;
         DELETE FROM churn WHERE id % 4 <> 0;
         CREATE TABLE tiny (id int PRIMARY KEY); INSERT INTO tiny VALUES (1);",
        &["VACUUM ANALYZE churn", "VACUUM ANALYZE tiny"],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    // Without pgstattuple, `exact: true` says so and estimates.
    let plan = bloat_plan(
        dir.path(),
        &url,
        "{min_waste_ratio: 0.5, exact: true, min_bytes: 65536}",
    );
    let out = dbmaint(dir.path())
        .args(["plan", "diff"])
        .arg(&plan)
        .output()
        .expect("diff");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("table public.churn"), "{text}");
    assert!(text.contains("estimate"), "{text}");
    assert!(text.contains("pgstattuple extension is not installed"), "{text}");
    assert!(!text.contains("tiny"), "tiny tables are skipped: {text}");
    let step = applied(dir.path(), &plan);
    let found: Vec<&str> = step["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| f["object"].as_str().unwrap_or(""))
        .collect();
    assert!(found.contains(&"table public.churn"), "{found:?}");
    assert!(
        step["findings"]
            .as_array()
            .is_some_and(|f| f.iter().all(|f| f["severity"] == "warning"))
    );
    assert!(step["bloat"]["skipped_small"].as_u64().unwrap_or(0) >= 2, "{step}");
}

#[test]
fn sqlite_bloat_is_the_free_page_ratio() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let free = sqlite_half_free(&db);
    let target = format!("sqlite:{}", db.display());
    // `inspect bloat` reads only: the figure is the one sqlite3 just read.
    let report = inspect(dir.path(), &target, "bloat");
    let e = &report["bloat"]["entries"][0];
    assert_eq!(
        (e["kind"].as_str(), e["method"].as_str()),
        (Some("database"), Some("freelist")),
        "{report}"
    );
    let ratio = e["ratio"].as_f64().expect("ratio");
    assert!((ratio - free).abs() < 1e-9, "{ratio} vs sqlite3's {free}");
    assert_eq!(report["findings"].as_array().map(Vec::len), Some(1), "{report}");
    // In a plan, over `min_waste_ratio` it is a warning finding.
    let step = applied(dir.path(), &bloat_plan(dir.path(), &target, "{min_waste_ratio: 0.1}"));
    assert_eq!(step["findings"][0]["severity"], "warning", "{step}");
    assert_eq!(step["findings"][0]["check"], "bloat", "{step}");
}

/// `dbmaint --output json inspect --target T what`.
fn inspect(dir: &Path, target: &str, what: &str) -> serde_json::Value {
    let out = dbmaint(dir)
        .args(["--output", "json", "inspect", "--target", target, what])
        .output()
        .expect("inspect");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("inspect JSON")
}

#[test]
fn postgres_inspect_reports_without_a_plan_and_writes_nothing() {
    let url = seeded_db(
        "CREATE TABLE parent (id int PRIMARY KEY);
         CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent (id));
         CREATE TABLE churn (id bigserial PRIMARY KEY, payload text NOT NULL);
         INSERT INTO churn (payload) SELECT md5(g::text) FROM generate_series(1, 100000) g;
         DELETE FROM churn WHERE id % 4 <> 0;",
        &["VACUUM ANALYZE churn"],
    );
    let rt = rt();
    let counters = || {
        rt.block_on(async {
            let mut c = connect(&url).await;
            sqlx::query_as::<_, (i64, i64)>(
                "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::int8, count(*)::int8 \
                 FROM pg_stat_user_tables",
            )
            .fetch_one(&mut c)
            .await
            .expect("counters")
        })
    };
    // `seeded_db` flushed the seed's statistics: its 100,000 inserts and
    // 75,000 deletes are counted before inspect runs.
    let before = counters();
    assert_eq!(before.0, 175_000, "the seed's writes are counted");
    let dir = tempfile::tempdir().expect("tempdir");
    let stats = inspect(dir.path(), &url, "stats");
    assert_eq!(stats["stats"]["tables"][0]["name"], "public.churn", "{stats}");
    let bloat = inspect(dir.path(), &url, "bloat");
    assert_eq!(bloat["findings"][0]["object"], "table public.churn", "{bloat}");
    let checks = inspect(dir.path(), &url, "checks");
    let found: Vec<String> = checks["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            format!(
                "{} {}",
                f["check"].as_str().unwrap_or(""),
                f["object"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(found, ["fk_without_index public.child"], "{checks}");
    // No journal schema, no written rows.
    assert_eq!(counters(), before);
    let text = dbmaint(dir.path())
        .args(["inspect", "--target", &url, "bloat"])
        .output()
        .expect("inspect text");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("table public.churn:") && text.contains("estimate"),
        "{text}"
    );
}

/// Makes a SQLite file with about half its pages free (via the sqlite3
/// shell) and returns freelist_count / page_count as sqlite3 reports it.
fn sqlite_half_free(db: &Path) -> f64 {
    let sql = "PRAGMA auto_vacuum = NONE; CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
        WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 20000)
        INSERT INTO t SELECT n, hex(randomblob(100)) FROM g;
        DELETE FROM t WHERE id % 2 = 0 OR id > 15000;
        SELECT (SELECT freelist_count FROM pragma_freelist_count()) * 1.0 / (SELECT page_count FROM pragma_page_count());";
    let out = std::process::Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("sqlite3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("ratio")
}

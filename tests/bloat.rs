//! The `bloat` operation: the extension-free estimate and `exact: true`
//! (pgstattuple) both agree with what a rebuild gives back, on the shapes
//! real schemas have; SQLite reports its free pages.

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

/// Size of every relation of `public` (tables, their TOAST tables, their
/// indexes), keyed as the bloat report names them.
fn sizes(url: &str) -> std::collections::BTreeMap<String, i64> {
    rt().block_on(async {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT 'table public.' || c.relname, pg_relation_size(c.oid) FROM pg_class c \
               WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' \
             UNION ALL SELECT 'table pg_toast.' || t.relname, pg_relation_size(t.oid) FROM pg_class c \
               JOIN pg_class t ON t.oid = c.reltoastrelid \
               WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' \
             UNION ALL SELECT 'index public.' || i.relname, pg_relation_size(i.oid) FROM pg_index x \
               JOIN pg_class i ON i.oid = x.indexrelid WHERE i.relnamespace = 'public'::regnamespace",
        )
        .fetch_all(&mut connect(url).await)
        .await
        .expect("sizes");
        rows.into_iter().collect()
    })
}

/// pgstattuple's own figures of `name` (a report key), as ratios: of a
/// table free_percent + dead_tuple_percent and tuple_percent (live tuple
/// bytes), of an index avg_leaf_density (and 0).
fn pgstattuple_own(url: &str, name: &str) -> (f64, f64) {
    let (kind, rel) = name.split_once(' ').expect("kind name");
    let sql = if kind == "table" {
        "SELECT ((free_percent + dead_tuple_percent) / 100)::float8, (tuple_percent / 100)::float8 \
         FROM pgstattuple($1::regclass)"
    } else {
        "SELECT (avg_leaf_density / 100)::float8, 0::float8 FROM pgstatindex($1::regclass)"
    };
    rt().block_on(async {
        sqlx::query_as(sql)
            .bind(rel)
            .fetch_one(&mut connect(url).await)
            .await
            .expect("pgstattuple")
    })
}

/// The ground truth is what a rebuild gives back: after both reports,
/// `VACUUM FULL` rewrites every table, TOAST table and index at its
/// fillfactor, and 1 − size after / size before is each one's waste. Both
/// the estimate and `exact: true` are held to it on the shapes real
/// schemas have, before and after VACUUM; pgstattuple's own figures are
/// printed beside them and bound what can be given back.
#[test]
fn postgres_bloat_matches_what_a_rebuild_gives_back_on_many_shapes() {
    let url = seeded_db(
        "CREATE EXTENSION pgstattuple;
         -- 60% of the rows deleted over every page, before VACUUM (dead tuples) ...
         CREATE TABLE dead (id bigserial PRIMARY KEY, n int NOT NULL, payload text NOT NULL)
           WITH (autovacuum_enabled = off);
         INSERT INTO dead (n, payload) SELECT g % 1000, md5(g::text) FROM generate_series(1, 100000) g;
         DELETE FROM dead WHERE id % 5 < 3;
         -- ... and after it (free space)
         CREATE TABLE vacuumed (id bigserial PRIMARY KEY, n int NOT NULL, payload text NOT NULL);
         INSERT INTO vacuumed (n, payload) SELECT g % 1000, md5(g::text) FROM generate_series(1, 100000) g;
         -- (n has 100 rows a key: a deduplicated btree)
         CREATE INDEX vacuumed_n ON vacuumed (n);
         DELETE FROM vacuumed WHERE id % 5 < 3;
         -- every other row updated at fillfactor 100, then vacuumed
         CREATE TABLE half (id bigint PRIMARY KEY, v int NOT NULL) WITH (autovacuum_enabled = off);
         INSERT INTO half SELECT g, 0 FROM generate_series(1, 150000) g;
         UPDATE half SET v = 1 WHERE id % 2 = 0;
         -- wide rows (~1.4 kB, five a page), a third deleted
         CREATE TABLE wide (id bigserial PRIMARY KEY, body text NOT NULL);
         INSERT INTO wide (body) SELECT (SELECT string_agg(md5(g::text || k), '') FROM generate_series(1, 45) k)
           FROM generate_series(1, 20000) g;
         DELETE FROM wide WHERE id % 3 = 0;
         -- 8 kB values stored out of line (TOAST), half deleted
         CREATE TABLE docs (id bigserial PRIMARY KEY, body text NOT NULL);
         INSERT INTO docs (body) SELECT (SELECT string_agg(md5(g::text || k), '') FROM generate_series(1, 250) k)
           FROM generate_series(1, 3000) g;
         DELETE FROM docs WHERE id % 2 = 0;
         -- fillfactor 70, every row updated once
         CREATE TABLE ff70 (id bigint PRIMARY KEY, v int NOT NULL, pad text NOT NULL)
           WITH (fillfactor = 70, autovacuum_enabled = off);
         INSERT INTO ff70 SELECT g, 0, md5(g::text) FROM generate_series(1, 100000) g;
         UPDATE ff70 SET v = 1;
         -- a partial and an expression index, three rows in four deleted
         CREATE TABLE tagged (id bigserial PRIMARY KEY, flag bool NOT NULL, email text NOT NULL);
         INSERT INTO tagged (flag, email) SELECT g % 3 = 0, 'User' || g || '@Example.com'
           FROM generate_series(1, 150000) g;
         CREATE INDEX tagged_flagged ON tagged (id) WHERE flag;
         CREATE INDEX tagged_email_lower ON tagged (lower(email));
         DELETE FROM tagged WHERE id % 4 <> 0;
         -- freshly loaded: nothing to give back
         CREATE TABLE fresh (id bigserial PRIMARY KEY, payload text NOT NULL);
         INSERT INTO fresh (payload) SELECT md5(g::text) FROM generate_series(1, 100000) g;",
        &[
            "ANALYZE dead",
            "VACUUM ANALYZE vacuumed",
            "VACUUM ANALYZE half",
            "VACUUM ANALYZE wide",
            "VACUUM ANALYZE docs",
            "VACUUM ANALYZE ff70",
            "VACUUM ANALYZE tagged",
            "VACUUM ANALYZE fresh",
        ],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let params = "min_waste_ratio: 0.99, min_bytes: 65536";
    let estimate = ratios(&applied(
        dir.path(),
        &bloat_plan(dir.path(), &url, &format!("{{{params}}}")),
    ));
    let exact = ratios(&applied(
        dir.path(),
        &bloat_plan(dir.path(), &url, &format!("{{{params}, exact: true}}")),
    ));
    let own: std::collections::BTreeMap<String, (f64, f64)> =
        exact.keys().map(|k| (k.clone(), pgstattuple_own(&url, k))).collect();
    let before = sizes(&url);
    crate::support::cluster::admin_statements(&url, &["VACUUM FULL".into()]);
    let after = sizes(&url);
    println!(
        "{:<36} {:>9} {:>9} {:>9} {:>12}",
        "relation", "rebuild", "estimate", "exact", "pgstattuple"
    );
    let (mut worst_estimate, mut worst_exact) = (0.0f64, 0.0f64);
    let mut measured = 0;
    for (name, size) in &before {
        if *size < 65536 {
            continue;
        }
        let truth = 1.0 - after[name] as f64 / *size as f64;
        let (e, em) = estimate
            .get(name)
            .unwrap_or_else(|| panic!("{name} not estimated: {estimate:?}"));
        let (x, xm) = exact
            .get(name)
            .unwrap_or_else(|| panic!("{name} not measured: {exact:?}"));
        let (o, live) = own[name];
        println!(
            "{name:<36} {:>8.1}% {:>8.1}% {:>8.1}% {:>11.1}%{}",
            truth * 100.0,
            e * 100.0,
            x * 100.0,
            o * 100.0,
            if name.starts_with("index") {
                format!(
                    " leaf density{}",
                    if xm == "estimate" { "; exact: estimated" } else { "" }
                )
            } else {
                format!(" free + dead ({:.1}% live)", live * 100.0)
            }
        );
        assert_eq!(em, "estimate", "{name}");
        if name == "index public.dead_pkey" {
            // Before VACUUM its leaf pages still hold the dead rows'
            // entries, which pgstatindex counts as live (o ≈ 90%).
            assert_eq!(xm, "estimate", "{name}: {exact:?}");
        } else {
            assert_eq!(xm, "pgstattuple", "{name}");
        }
        if name.starts_with("table") {
            // Live tuples cannot be given back; what holds none can.
            assert!(
                truth <= 1.0 - live + 0.01,
                "{name}: rebuild gave back {truth:.3}, {live:.3} live"
            );
            assert!(*x <= 1.0 - live + 0.01, "{name}: exact {x:.3}, {live:.3} live");
            assert!(*x <= o + 0.10, "{name}: exact {x:.3}, free + dead {o:.3}");
        }
        worst_estimate = worst_estimate.max((e - truth).abs());
        worst_exact = worst_exact.max((x - truth).abs());
        measured += 1;
    }
    println!(
        "largest difference from the rebuild: estimate {:.1} points, exact {:.1} points ({measured} relations)",
        worst_estimate * 100.0,
        worst_exact * 100.0
    );
    assert_eq!(measured, 20, "relations over 64 KiB: {before:?}");
    assert!(worst_exact <= 0.05, "exact is {worst_exact:.3} off the rebuild");
    assert!(
        worst_estimate <= 0.12,
        "the estimate is {worst_estimate:.3} off the rebuild"
    );
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

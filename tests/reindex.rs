//! The `reindex` operation: bloat selects what is rebuilt; a concurrent
//! rebuild that fails or is killed leaves no INVALID index of the engine's
//! once the step (or the next run) has cleaned up; a person's INVALID index
//! is reported and never touched.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::cli::{apply, dbmaint, diff_json, rt};
use crate::support::cluster::{connect, seeded_db};

fn reindex_plan(dir: &Path, url: &str, params: &str, defaults: &str) -> std::path::PathBuf {
    let path = dir.join("reindex.yaml");
    std::fs::write(
        &path,
        format!(
            "version: 1\nname: reindex\ntarget: \"{url}\"\ndefaults: {{{defaults}}}\nsteps:\n  rebuild:\n    reindex: {params}\n"
        ),
    )
    .expect("plan");
    path
}

/// (valid and ready, relfilenode, bytes) by index name, of every index in `public`.
fn indexes(url: &str) -> std::collections::BTreeMap<String, (bool, i64, i64)> {
    rt().block_on(async {
        let mut c = connect(url).await;
        let rows: Vec<(String, bool, i64, i64)> = sqlx::query_as(
            "SELECT i.relname::text, x.indisvalid AND x.indisready, pg_relation_filenode(i.oid)::int8, \
               pg_relation_size(i.oid)::int8 \
             FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
             JOIN pg_namespace n ON n.oid = i.relnamespace WHERE n.nspname = 'public'",
        )
        .fetch_all(&mut c)
        .await
        .expect("indexes");
        rows.into_iter().map(|(n, v, f, b)| (n, (v, f, b))).collect()
    })
}

/// Two tables over 1 MiB of index each: `churn` loses 75% of its rows
/// (its indexes keep their pages), `steady` is freshly loaded.
fn bloated_db() -> String {
    seeded_db(
        "CREATE TABLE churn (id bigserial PRIMARY KEY, n int NOT NULL);
         INSERT INTO churn (n) SELECT g FROM generate_series(1, 200000) g;
         CREATE INDEX churn_n ON churn (n);
         DELETE FROM churn WHERE id % 4 <> 0;
         CREATE TABLE steady (id bigserial PRIMARY KEY, n int NOT NULL);
         INSERT INTO steady (n) SELECT g FROM generate_series(1, 100000) g;
         CREATE INDEX steady_n ON steady (n);",
        &["VACUUM ANALYZE churn", "VACUUM ANALYZE steady"],
    )
}

#[test]
fn postgres_reindex_rebuilds_the_bloated_indexes_only() {
    let url = bloated_db();
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = reindex_plan(dir.path(), &url, "{min_bloat_ratio: 0.3}", "");
    let diff = diff_json(dir.path(), &plan);
    let mut chosen: Vec<String> = diff["steps"][0]["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| o["name"].as_str().unwrap_or("").to_string())
        .collect();
    chosen.sort();
    assert_eq!(chosen, ["public.churn_n", "public.churn_pkey"], "{diff}");
    let before = indexes(&url);
    let out = apply(dir.path(), &plan);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = indexes(&url);
    for name in ["churn_n", "churn_pkey"] {
        let (b, a) = (before[name], after[name]);
        assert!(a.0, "{name} valid after");
        assert_ne!(a.1, b.1, "{name} rebuilt (new storage)");
        assert!(a.2 * 2 < b.2, "{name} smaller: {} → {} bytes", b.2, a.2);
        println!("{name}: {} → {} bytes", b.2, a.2);
    }
    for name in ["steady_n", "steady_pkey"] {
        assert_eq!(after[name], before[name], "{name} below the threshold is left alone");
    }
    assert_eq!(after.len(), 4, "no extra index: {after:?}");
    // The journal closed both rebuild records.
    let open: i64 = rt().block_on(async {
        sqlx::query_scalar("SELECT count(*) FROM dbmaint.rebuilds WHERE finished_at IS NULL OR outcome <> 'rebuilt'")
            .fetch_one(&mut connect(&url).await)
            .await
            .expect("rebuilds")
    });
    assert_eq!(open, 0);
}

/// Holds a snapshot (REPEATABLE READ after a first query) on a session
/// of its own, so a concurrent rebuild waits for it, until dropped.
fn hold_snapshot(url: &str) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    hold(url, "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1")
}

/// Runs `begin` (which opens a transaction) on a session of its own and
/// keeps that transaction open until the sender is dropped.
fn hold(url: &str, begin: &'static str) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let url = url.to_string();
    let handle = std::thread::spawn(move || {
        rt().block_on(async {
            let mut c = connect(&url).await;
            sqlx::raw_sql(begin).execute(&mut c).await.expect("hold");
            ready_tx.send(()).expect("ready");
            let _ = tokio::task::spawn_blocking(move || rx.recv()).await;
            let _ = sqlx::raw_sql("COMMIT").execute(&mut c).await;
        });
    });
    ready_rx.recv().expect("snapshot held");
    (tx, handle)
}

#[test]
fn postgres_failed_concurrent_reindex_drops_its_invalid_copy_and_leaves_a_foreign_one() {
    let url = bloated_db();
    // A person's failed CREATE UNIQUE INDEX CONCURRENTLY over duplicates:
    // an INVALID index that is not the engine's.
    rt().block_on(async {
        let mut c = connect(&url).await;
        let e = sqlx::raw_sql("CREATE UNIQUE INDEX CONCURRENTLY hand_made ON steady ((n % 10))")
            .execute(&mut c)
            .await;
        assert!(e.is_err(), "duplicates make it fail");
    });
    assert!(!indexes(&url)["hand_made"].0, "hand_made is INVALID");
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = reindex_plan(
        dir.path(),
        &url,
        "{indexes: [churn_n, hand_made]}",
        "lock_timeout: 300ms, retries: 1",
    );
    let diff = diff_json(dir.path(), &plan);
    let undo = diff["steps"][0]["actions"][0]["undo"][0]["shows"]
        .as_str()
        .unwrap_or("");
    assert!(
        undo.starts_with("DROP INDEX CONCURRENTLY the INVALID copy of public.churn_n"),
        "the rebuild carries its undo: {diff}"
    );
    let warnings = diff["steps"][0]["warnings"].to_string();
    assert!(
        warnings.contains("public.hand_made") && warnings.contains("left alone"),
        "{diff}"
    );
    let before = indexes(&url);
    // The rebuild waits for the old snapshot and times out, twice.
    let (release, holder) = hold_snapshot(&url);
    let out = dbmaint(dir.path())
        .args(["--output", "json", "plan", "apply", "--auto-approve"])
        .arg(&plan)
        .output()
        .expect("apply");
    drop(release);
    holder.join().expect("holder");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report");
    let step = &report["report"]["steps"][0];
    assert_eq!(step["retries"], 1, "{step}");
    // Two attempts, two copies dropped: the first before the retry, the
    // last by the rebuild's undo action, which the executor ran.
    let rolled = step["rolled_back"].as_str().unwrap_or("");
    assert_eq!(
        rolled.matches("dropped the INVALID index churn_n_ccnew").count(),
        2,
        "{step}"
    );
    let outcomes: Vec<String> = rt().block_on(async {
        sqlx::query_scalar("SELECT coalesce(outcome, 'open') FROM dbmaint.rebuilds ORDER BY id")
            .fetch_all(&mut connect(&url).await)
            .await
            .expect("rebuilds")
    });
    assert_eq!(
        outcomes,
        ["failed; leftovers dropped"],
        "the undo closed the journal record"
    );
    let after = indexes(&url);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "no _ccnew left"
    );
    assert_eq!(
        after["churn_n"], before["churn_n"],
        "the original is untouched and valid"
    );
    assert_eq!(
        after["hand_made"], before["hand_made"],
        "the foreign INVALID index is untouched"
    );
}

/// docs/operations.md: when the drop of a failed rebuild's copy fails,
/// the report says what is left ("LEFT FOR YOU"), the journal record
/// stays open for the next run, and the run exits 5.
#[test]
fn postgres_rebuild_copy_that_cannot_be_dropped_is_left_for_you_with_exit_5() {
    let url = bloated_db();
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = reindex_plan(
        dir.path(),
        &url,
        "{indexes: [churn_n]}",
        "lock_timeout: 300ms, retries: 0",
    );
    let before = indexes(&url);
    // A writer's open transaction: the rebuild waits for it after its copy
    // exists (and times out), and so does every DROP INDEX CONCURRENTLY.
    let (release, holder) = hold(&url, "BEGIN; LOCK TABLE churn IN ROW EXCLUSIVE MODE");
    let out = dbmaint(dir.path())
        .args(["plan", "apply", "--auto-approve"])
        .arg(&plan)
        .output()
        .expect("apply");
    let left = indexes(&url);
    let open: Vec<(String, Option<String>)> = rt().block_on(async {
        sqlx::query_as("SELECT index_name::text, outcome FROM dbmaint.rebuilds ORDER BY id")
            .fetch_all(&mut connect(&url).await)
            .await
            .expect("rebuilds")
    });
    drop(release);
    holder.join().expect("holder");
    crate::support::test::assert_left_for_you(&out, "churn_n_ccnew");
    assert!(
        left.get("churn_n_ccnew").is_some_and(|s| !s.0),
        "the INVALID copy is still there: {left:?}"
    );
    assert_eq!(
        left["churn_n"], before["churn_n"],
        "the original is untouched and valid"
    );
    assert_eq!(
        open,
        [("churn_n".to_string(), None)],
        "the journal record stays open for the next run"
    );
    // With the writer gone the next run drops the copy, closes the record
    // and rebuilds.
    applied_cleans_and_rebuilds(dir.path(), &plan, &url, before["churn_n"].1);
}

#[test]
fn postgres_killed_concurrent_reindex_is_cleaned_by_the_next_run() {
    let url = bloated_db();
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = reindex_plan(dir.path(), &url, "{indexes: [churn_n]}", "lock_timeout: 60s");
    let (release, holder) = hold_snapshot(&url);
    let mut child = crate::support::test::spawn_apply(dir.path(), &plan);
    // Kill it while its REINDEX waits for the old snapshot, after the new
    // copy was built.
    let waiting = || {
        rt().block_on(async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'REINDEX%' \
                 AND wait_event_type = 'Lock'",
            )
            .fetch_one(&mut connect(&url).await)
            .await
            .expect("activity")
        })
    };
    let t0 = Instant::now();
    while waiting() == 0 {
        assert!(t0.elapsed() < Duration::from_secs(30), "the REINDEX never waited");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("kill -9");
    let _ = child.wait();
    // The server notices the dead client (client_connection_check_interval).
    let t0 = Instant::now();
    while waiting() > 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "the REINDEX outlived its client"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(release);
    holder.join().expect("holder");
    let left = indexes(&url);
    assert!(
        left.get("churn_n_ccnew").is_some_and(|s| !s.0),
        "the kill left an INVALID copy: {left:?}"
    );
    // The next run's diff shows it as the engine's leftover; apply drops it
    // and rebuilds.
    let diff = diff_json(dir.path(), &plan);
    let objects = diff["steps"][0]["objects"].as_array().expect("objects");
    assert!(
        objects
            .iter()
            .any(|o| o["marker"] == "-" && o["name"] == "public.churn_n_ccnew"),
        "{diff}"
    );
    applied_cleans_and_rebuilds(dir.path(), &plan, &url, left["churn_n"].1);
}

/// Applies `plan`: the leftover `churn_n_ccnew` is dropped, `churn_n`
/// rebuilt (valid, on storage other than `node_before`), and every
/// rebuild record closed.
fn applied_cleans_and_rebuilds(dir: &Path, plan: &Path, url: &str, node_before: i64) {
    let out = apply(dir, plan);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = indexes(url);
    assert!(!after.contains_key("churn_n_ccnew"), "{after:?}");
    assert!(after["churn_n"].0);
    assert_ne!(after["churn_n"].1, node_before, "rebuilt");
    let open: i64 = rt().block_on(async {
        sqlx::query_scalar("SELECT count(*) FROM dbmaint.rebuilds WHERE finished_at IS NULL")
            .fetch_one(&mut connect(url).await)
            .await
            .expect("rebuilds")
    });
    assert_eq!(open, 0, "every rebuild record closed");
}

/// Pages of each index of `db` (SQLite's `dbstat`, read by the sqlite3 binary).
fn sqlite_index_pages(db: &Path) -> std::collections::BTreeMap<String, u64> {
    crate::support::test::sqlite(
        db,
        "SELECT s.name, count(*) FROM dbstat s JOIN sqlite_schema m ON m.name = s.name \
         WHERE m.type = 'index' GROUP BY s.name",
    )
    .lines()
    .map(|l| {
        let (name, pages) = l.split_once('|').expect("name|pages");
        (name.to_string(), pages.parse().expect("pages"))
    })
    .collect()
}

#[test]
fn sqlite_reindex_rebuilds_the_selected_indexes() {
    // 40,000 random keys, every other row then deleted: the indexes keep
    // their pages half empty (SQLite merges only nearly empty pages);
    // REINDEX refills them in key order, in about half the pages.
    // `other`'s index is just as loose and is not selected.
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    crate::support::test::sqlite(
        &db,
        "CREATE TABLE events (id INTEGER PRIMARY KEY, k TEXT NOT NULL); \
         CREATE INDEX events_k ON events (k); CREATE INDEX events_k_id ON events (k, id); \
         CREATE TABLE other (id INTEGER PRIMARY KEY, k TEXT NOT NULL); CREATE INDEX other_k ON other (k); \
         WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 40000) \
         INSERT INTO events (k) SELECT hex(randomblob(12)) FROM g; \
         INSERT INTO other (k) SELECT k FROM events; \
         DELETE FROM events WHERE id % 2 = 0; DELETE FROM other WHERE id % 2 = 0;",
    );
    let before = sqlite_index_pages(&db);
    let plan = reindex_plan(
        dir.path(),
        &format!("sqlite:{}", db.display()),
        "{tables: [events]}",
        "",
    );
    let diff = diff_json(dir.path(), &plan);
    let statements = diff["steps"][0]["statements"].to_string();
    assert!(statements.contains("REINDEX \\\"events_k\\\""), "{statements}");
    assert!(!statements.contains("other_k"), "{statements}");
    assert_eq!(sqlite_index_pages(&db), before, "the diff rebuilt nothing");
    let out = dbmaint(dir.path())
        .args(["--output", "json", "plan", "apply", "--auto-approve"])
        .arg(&plan)
        .output()
        .expect("apply");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = sqlite_index_pages(&db);
    for name in ["events_k", "events_k_id"] {
        assert!(
            after[name] * 10 < before[name] * 8,
            "{name} rebuilt in key order: {} pages before, {} after",
            before[name],
            after[name]
        );
    }
    assert_eq!(after["other_k"], before["other_k"], "other_k not selected, untouched");
    assert_eq!(crate::support::test::sqlite(&db, "PRAGMA integrity_check"), "ok");
    assert_eq!(
        crate::support::test::sqlite(&db, "SELECT count(*) FROM events INDEXED BY events_k WHERE k > ''"),
        "20000"
    );
}

/// `purge` deletes 87% of `events` spread over every page, `vac` vacuums
/// it, `rx` reindexes what bloat selects: at diff time nothing is bloated.
fn retention_chain(dir: &Path) -> (String, std::path::PathBuf) {
    let url = seeded_db(
        "CREATE TABLE events (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, v text NOT NULL); \
         INSERT INTO events SELECT g, now() - CASE WHEN g % 100 < 87 THEN interval '400 days' ELSE interval '1 day' END, \
           md5(g::text) FROM generate_series(1, 200000) g; \
         CREATE INDEX events_v ON events (v); ANALYZE events;",
        &[],
    );
    let path = dir.join("chain.yaml");
    std::fs::write(
        &path,
        format!(
            "version: 1\nname: chain\ntarget: \"{url}\"\nsteps:\n  \
             purge:\n    retention: {{ table: events, column: created_at, older_than: 365d, batch_size: 50000 }}\n  \
             vac:\n    needs: [purge]\n    vacuum: {{ tables: [events], min_dead_ratio: 0.1 }}\n  \
             rx:\n    needs: [vac]\n    reindex: {{ tables: [events], min_bloat_ratio: 0.3 }}\n"
        ),
    )
    .expect("plan");
    (url, path)
}

/// Issue 14 §1: a reindex after retention is planned on the bloat the
/// deletes will leave, and re-evaluated when it starts: in the same run it
/// rebuilds what the deletes bloated (run 1, not run 2).
#[test]
fn postgres_reindex_after_retention_rebuilds_in_the_same_run_what_the_deletes_bloated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, plan) = retention_chain(dir.path());
    let diff = diff_json(dir.path(), &plan);
    let rx = diff["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == "rx"))
        .expect("rx")
        .clone();
    assert!(
        rx["summary"].as_str().unwrap_or("").starts_with("rebuild 2 of 2"),
        "{rx}"
    );
    let detail = rx["objects"].to_string();
    assert!(
        detail.contains("once purge deletes 174,000 of its table's ~200,000 rows")
            && detail.contains("rebuilt only if over 30.0%"),
        "{detail}"
    );
    assert!(rx["notes"].to_string().contains("re-evaluated at start"), "{rx}");
    let before = indexes(&url);
    let out = dbmaint(dir.path())
        .args(["--output", "json", "plan", "apply", "--auto-approve"])
        .arg(&plan)
        .output()
        .expect("apply");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = indexes(&url);
    for name in ["events_pkey", "events_v"] {
        assert_ne!(before[name].1, after[name].1, "{name} rebuilt in the same run");
        assert!(
            after[name].2 * 3 < before[name].2,
            "{name} gave its space back: {before:?} → {after:?}"
        );
    }
    let step = json["report"]["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == "rx"))
        .expect("rx")
        .clone();
    let said = step["reselected"].as_str().unwrap_or_default();
    assert!(said.starts_with("2 of 2 indexes over 30.0% bloat"), "{step}");
    // One measure per figure, each the server's own count (issue 14 §3).
    let totals = &json["report"]["totals"];
    let left = rt().block_on(async {
        let mut c = connect(&url).await;
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events")
            .fetch_one(&mut c)
            .await
            .expect("count")
    });
    assert_eq!(totals["rows"], 200_000 - left, "rows deleted: {totals}");
    assert_eq!(
        totals["dead_tuples_removed"],
        200_000 - left,
        "the vacuum removed each: {totals}"
    );
    let given_back: i64 = ["events_pkey", "events_v"]
        .iter()
        .map(|n| before[*n].2 - after[*n].2)
        .sum();
    assert_eq!(
        step["bytes"], given_back,
        "the rebuilds' bytes are the indexes' sizes before minus after"
    );
    assert_eq!(totals["bytes"], given_back, "nothing else gave bytes back: {totals}");
    assert!(totals["bytes_reusable_predicted"].as_u64().unwrap_or(0) > 0, "{totals}");
}

/// Run alone, without the deletes it was projected on, the reindex
/// re-evaluates at start and rebuilds nothing: a projection never rebuilds
/// blindly.
#[test]
fn postgres_a_projected_rebuild_whose_deletes_did_not_run_is_dropped_at_step_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, plan) = retention_chain(dir.path());
    let before = indexes(&url);
    let out = dbmaint(dir.path())
        .args(["--output", "json", "plan", "apply", "--auto-approve", "--step", "rx"])
        .arg(&plan)
        .output()
        .expect("apply");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(before, indexes(&url), "no index rebuilt");
    let step = &json["report"]["steps"][0];
    let said = step["reselected"].as_str().unwrap_or_default();
    assert!(
        said.starts_with("0 of 2 indexes over 30.0% bloat; not rebuilt: public.events_pkey"),
        "{step}"
    );
    assert_eq!(step["statements"], 1, "one estimate, no rebuild: {step}");
}

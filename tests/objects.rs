//! Operations that act on many objects (reindex, refresh_views, vacuum,
//! analyze): one object's failure never stops the others — the step ends
//! `partial` with a per-object list — and planning leaves out what the
//! server cannot do, saying why.

use crate::support::cluster::{Cluster, admin_statements, role_url};
use crate::support::test::Test;

fn fresh_db() -> String {
    crate::support::cli::rt().block_on(Cluster::get().fresh_db())
}

fn scalar(url: &str, sql: &str) -> String {
    crate::support::cli::psql_scalar(url, sql)
}

/// `plan.yaml` with one step `views` (refresh_views) or other `op: params`.
fn plan(t: &Test, target: &str, step: &str, op: &str) -> std::path::PathBuf {
    let path = t.path().join("plan.yaml");
    std::fs::write(
        &path,
        format!("version: 1\nname: objs\ntarget: \"{target}\"\nsteps:\n  {step}:\n    {op}\n"),
    )
    .expect("plan");
    path
}

/// Three materialized views over one table; `mv_b` divides by a value
/// that becomes 0, so its refresh fails (SQLSTATE 22012); `mv_d` reads
/// `mv_b`.
fn views_db() -> String {
    let url = fresh_db();
    admin_statements(
        &url,
        &[
            "CREATE TABLE src (id int PRIMARY KEY, d int NOT NULL)".into(),
            "INSERT INTO src SELECT g, 1 FROM generate_series(1, 10) g".into(),
            "CREATE MATERIALIZED VIEW mv_a AS SELECT count(*) AS n FROM src".into(),
            "CREATE MATERIALIZED VIEW mv_b AS SELECT id, 10 / d AS q FROM src".into(),
            "CREATE MATERIALIZED VIEW mv_c AS SELECT max(id) AS top FROM src".into(),
            "CREATE MATERIALIZED VIEW mv_d AS SELECT count(*) AS n FROM mv_b".into(),
            // New rows: a refresh shows them; one makes mv_b divide by zero.
            "INSERT INTO src SELECT g, 1 FROM generate_series(11, 20) g".into(),
            "UPDATE src SET d = 0 WHERE id = 20".into(),
        ],
    );
    url
}

#[test]
fn a_failing_view_does_not_stop_the_others_and_its_dependents_are_skipped() {
    let t = Test::new();
    let url = views_db();
    let p = plan(
        &t,
        &url,
        "views",
        "refresh_views: { concurrently: false, allow_exclusive_lock: true }",
    );
    let ran = t.apply_json(&p);
    assert_eq!(ran.code, Some(1), "partial is exit 1: {}", ran.stderr);
    let step = &ran.report["steps"][0];
    assert_eq!(step["status"], "partial", "{step}");
    assert_eq!(step["objects_failed"][0]["object"], "public.mv_b", "{step}");
    assert_eq!(step["objects_failed"][0]["sqlstate"], "22012", "{step}");
    assert_eq!(step["objects_skipped"][0]["object"], "public.mv_d", "{step}");
    // The views around the failure were refreshed: they see the new rows.
    assert_eq!(scalar(&url, "SELECT n FROM mv_a"), "20");
    assert_eq!(scalar(&url, "SELECT top FROM mv_c"), "20");
    // The failed one kept its old rows; the skipped one too.
    assert_eq!(scalar(&url, "SELECT count(*) FROM mv_b"), "10");
    assert_eq!(scalar(&url, "SELECT n FROM mv_d"), "10");
}

#[test]
fn on_object_failure_abort_stops_at_the_first_failure() {
    let t = Test::new();
    let url = views_db();
    let p = plan(
        &t,
        &url,
        "views",
        "on_object_failure: abort\n    refresh_views: { concurrently: false, allow_exclusive_lock: true }",
    );
    let ran = t.apply_json(&p);
    assert_eq!(ran.code, Some(1));
    assert_eq!(ran.report["steps"][0]["status"], "failed");
    assert_eq!(
        scalar(&url, "SELECT n FROM mv_a"),
        "20",
        "before the failure: refreshed"
    );
    assert_eq!(scalar(&url, "SELECT top FROM mv_c"), "10", "after it: not attempted");
}

#[test]
fn a_view_owned_by_another_role_is_left_out_and_the_others_refreshed() {
    let t = Test::new();
    let url = fresh_db();
    let db = crate::support::cluster::db_name(&url).to_string();
    let as_maint = role_url(&url, "rv", |role, db| {
        vec![
            format!("CREATE ROLE {role} LOGIN"),
            format!("CREATE ROLE other_{db}"),
            format!("GRANT CREATE, CONNECT ON DATABASE {db} TO {role}"),
            format!("GRANT ALL ON SCHEMA public TO {role}, other_{db}"),
            "CREATE TABLE src (id int PRIMARY KEY)".into(),
            "INSERT INTO src SELECT generate_series(1, 10)".into(),
            format!("GRANT SELECT ON src TO {role}, other_{db}"),
            "CREATE MATERIALIZED VIEW mv_a AS SELECT count(*) AS n FROM src".into(),
            "CREATE MATERIALIZED VIEW mv_b AS SELECT count(*) AS n FROM src".into(),
            "CREATE MATERIALIZED VIEW mv_c AS SELECT count(*) AS n FROM src".into(),
            format!("ALTER MATERIALIZED VIEW mv_a OWNER TO {role}"),
            format!("ALTER MATERIALIZED VIEW mv_b OWNER TO other_{db}"),
            format!("ALTER MATERIALIZED VIEW mv_c OWNER TO {role}"),
            "INSERT INTO src SELECT generate_series(11, 15)".into(),
        ]
    });
    let p = plan(
        &t,
        &as_maint,
        "views",
        "refresh_views: { concurrently: false, allow_exclusive_lock: true }",
    );
    let diff = t.diff(&p);
    assert!(diff.success(), "{}", diff.stderr);
    let text = diff.json.to_string();
    assert!(
        text.contains(&format!("not refreshed: owned by `other_{db}`")),
        "{text}"
    );
    let ran = t.apply_json(&p);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(scalar(&url, "SELECT n FROM mv_a"), "15");
    assert_eq!(scalar(&url, "SELECT n FROM mv_b"), "10", "left out");
    assert_eq!(scalar(&url, "SELECT n FROM mv_c"), "15");
}

#[test]
fn an_exclusion_constraint_index_is_left_out_of_a_concurrent_reindex_and_the_others_rebuilt() {
    let t = Test::new();
    let url = fresh_db();
    admin_statements(
        &url,
        &[
            "CREATE EXTENSION IF NOT EXISTS btree_gist".into(),
            "CREATE TABLE booking (id int PRIMARY KEY, room int NOT NULL, during tsrange NOT NULL, \
             EXCLUDE USING gist (room WITH =, during WITH &&))"
                .into(),
            "CREATE INDEX booking_room ON booking (room)".into(),
            "INSERT INTO booking SELECT g, g, tsrange('2026-01-01'::timestamp + g * interval '1 hour', \
             '2026-01-01'::timestamp + (g + 1) * interval '1 hour') FROM generate_series(1, 2000) g"
                .into(),
        ],
    );
    let file = |idx: &str| scalar(&url, &format!("SELECT pg_relation_filenode('{idx}')"));
    let (room_before, excl_before) = (file("booking_room"), file("booking_room_during_excl"));
    let p = plan(&t, &url, "rebuild", "reindex: { indexes: [\"*\"] }");
    let diff = t.diff(&p);
    assert!(diff.success(), "{}", diff.stderr);
    let text = diff.json.to_string();
    assert!(
        text.contains("booking_room_during_excl") && text.contains("backs an exclusion constraint"),
        "{text}"
    );
    let ran = t.apply_json(&p);
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
    assert_ne!(file("booking_room"), room_before, "the normal index was rebuilt");
    assert_eq!(
        file("booking_room_during_excl"),
        excl_before,
        "the exclusion index was left alone"
    );
    assert_eq!(
        scalar(&url, "SELECT count(*) FROM pg_index WHERE NOT indisvalid"),
        "0",
        "no INVALID copy left"
    );
}

#[test]
fn sqlite_vacuum_checks_the_temporary_directory_sqlite_really_uses_and_names_it() {
    let t = Test::new();
    let db = crate::backups::demo_db(&t);
    let tmp = t.path().join("small-tmp");
    let _fs = crate::backups::SmallFs::mount(&tmp, 16);
    let p = plan(
        &t,
        &format!("sqlite:{}", db.display()),
        "squeeze",
        "vacuum: { min_dead_ratio: 0 }",
    );
    let rows = "SELECT (SELECT count(*) FROM core_audit_log) || ',' || (SELECT count(*) FROM django_session)";
    let before = crate::support::test::sqlite(&db, rows);
    let out = crate::support::cli::dbmaint(t.path())
        .env("SQLITE_TMPDIR", &tmp)
        .args(["plan", "apply", "--auto-approve"])
        .arg(&p)
        .output()
        .expect("apply");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "`{}`, SQLite's temporary directory (from SQLITE_TMPDIR)",
            tmp.display()
        )) && said.contains("set SQLITE_TMPDIR"),
        "{said}"
    );
    assert_eq!(crate::support::test::sqlite(&db, rows), before, "the data is unchanged");
    assert_eq!(crate::support::test::sqlite(&db, "PRAGMA integrity_check"), "ok");
}

#[test]
fn a_sqlite_backup_that_fills_the_disk_leaves_no_file_behind() {
    let t = Test::new();
    let db = crate::backups::demo_db(&t);
    let backups = t.path().join("backups");
    let _fs = crate::backups::SmallFs::mount(&backups, 1024);
    let p = plan(
        &t,
        &format!("sqlite:{}", db.display()),
        "dump",
        "backup: { dir: backups }",
    );
    // Leave exactly the estimate free: the diff's check passes, but the
    // copy's rollback journal needs a page more and the write fails.
    let estimate = t.diff(&p).json["steps"][0]["estimate"]["bytes"]
        .as_u64()
        .expect("estimate");
    let filler = backups.join("filler");
    let free = nix::sys::statvfs::statvfs(&backups).expect("statvfs");
    let room = free.blocks_available() as u64 * free.fragment_size() as u64;
    std::fs::write(&filler, vec![0u8; (room - estimate) as usize]).expect("fill");
    let ran = t.apply(&p);
    assert_eq!(ran.code, Some(1), "{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("disk is full"), "{}", ran.stdout);
    std::fs::remove_file(&filler).expect("unfill");
    let left: Vec<String> = std::fs::read_dir(&backups)
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert!(left.is_empty(), "nothing left behind, no -journal either: {left:?}");
}

/// A table of 30,000 rows with 70 % of them deleted.
fn churned_db() -> String {
    let url = fresh_db();
    admin_statements(
        &url,
        &[
            "CREATE TABLE churn (id int PRIMARY KEY, payload text NOT NULL)".into(),
            "INSERT INTO churn SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 30000) g".into(),
            "ANALYZE churn".into(),
            "DELETE FROM churn WHERE id % 10 < 7".into(),
        ],
    );
    url
}

#[test]
fn vacuum_full_reports_the_bytes_the_table_gave_back() {
    let t = Test::new();
    let url = churned_db();
    let size = || -> i64 {
        scalar(&url, "SELECT pg_total_relation_size('churn')")
            .parse()
            .expect("size")
    };
    let before = size();
    let p = plan(
        &t,
        &url,
        "squeeze",
        "vacuum: { tables: [churn], full: true, allow_exclusive_lock: true, min_dead_ratio: 0 }",
    );
    let ran = t.apply_json(&p);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let after = size();
    assert!(after < before, "VACUUM FULL shrank the table: {before} -> {after}");
    assert_eq!(
        ran.report["steps"][0]["bytes"].as_i64(),
        Some(before - after),
        "{}",
        ran.report
    );
}

#[test]
fn a_vacuum_held_back_by_an_old_snapshot_names_its_holder() {
    let t = Test::new();
    let url = fresh_db();
    admin_statements(
        &url,
        &[
            "CREATE TABLE churn (id int PRIMARY KEY, payload text NOT NULL)".into(),
            "INSERT INTO churn SELECT g, md5(g::text) FROM generate_series(1, 20000) g".into(),
        ],
    );
    // A reporting session takes a snapshot before the deletes.
    let app = format!("report_{}", crate::support::cluster::db_name(&url));
    let mut holder = std::process::Command::new("psql")
        .args(["-X", "-q", "-d", &url])
        .env("PGAPPNAME", &app)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("psql");
    {
        use std::io::Write;
        holder
            .stdin
            .as_mut()
            .expect("stdin")
            .write_all(b"BEGIN ISOLATION LEVEL REPEATABLE READ;\nSELECT count(*) FROM churn;\n")
            .expect("feed");
    }
    let sql = format!(
        "SELECT coalesce(max(pid), 0) FROM pg_stat_activity WHERE application_name = '{app}' AND backend_xmin IS NOT NULL AND state = 'idle in transaction'"
    );
    let pid = crate::support::cli::poll_pid(&url, &sql, "the snapshot was never taken");
    admin_statements(&url, &["DELETE FROM churn WHERE id % 2 = 0".into()]);
    let p = plan(&t, &url, "tidy", "vacuum: { tables: [churn], min_dead_ratio: 0 }");
    let ran = t.apply(&p);
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(ran.success(), "{}\n{}", ran.stdout, ran.stderr);
    let said = format!("{}{}", ran.stdout, ran.stderr);
    assert!(
        said.contains("dead tuples could not be removed") && said.contains(&format!("held by pid {pid}")),
        "{said}"
    );
}

#[test]
fn a_partitioned_index_is_rebuilt_as_its_partitions_indexes_and_a_toast_index_through_its_table() {
    let t = Test::new();
    let url = fresh_db();
    admin_statements(
        &url,
        &[
            "CREATE TABLE meas (id int, at date NOT NULL, v text) PARTITION BY RANGE (at)".into(),
            "CREATE TABLE meas_01 PARTITION OF meas FOR VALUES FROM ('2026-01-01') TO ('2026-02-01')".into(),
            "CREATE TABLE meas_02 PARTITION OF meas FOR VALUES FROM ('2026-02-01') TO ('2026-03-01') \
             PARTITION BY RANGE (at)"
                .into(),
            "CREATE TABLE meas_02a PARTITION OF meas_02 FOR VALUES FROM ('2026-02-01') TO ('2026-03-01')".into(),
            "CREATE INDEX meas_at ON meas (at)".into(),
            "INSERT INTO meas SELECT g, '2026-01-01'::date + (g % 50), md5(g::text) FROM generate_series(1, 5000) g"
                .into(),
            "CREATE TABLE docs (id int PRIMARY KEY, body text)".into(),
            "INSERT INTO docs SELECT g, repeat(md5(g::text), 200) FROM generate_series(1, 300) g".into(),
        ],
    );
    let toast = scalar(
        &url,
        "SELECT i.relname FROM pg_class c JOIN pg_index x ON x.indrelid = c.reltoastrelid \
         JOIN pg_class i ON i.oid = x.indexrelid WHERE c.relname = 'docs'",
    );
    let leaf_indexes = "SELECT string_agg(c.relname || ':' || pg_relation_filenode(c.oid), ',' ORDER BY c.relname) \
         FROM pg_class c WHERE c.relkind = 'i' AND c.relname LIKE 'meas%'";
    let before = scalar(&url, leaf_indexes);
    let toast_node = || scalar(&url, &format!("SELECT pg_relation_filenode('pg_toast.{toast}')"));
    let toast_before = toast_node();
    let p = plan(
        &t,
        &url,
        "rebuild",
        &format!("reindex: {{ indexes: [meas_at, \"pg_toast.{toast}\"] }}"),
    );
    let diff = t.diff(&p);
    assert!(diff.success(), "{}", diff.stderr);
    let text = diff.json.to_string();
    assert!(text.contains("of the partitioned index public.meas_at"), "{text}");
    assert!(
        text.contains("rebuild 3 of 3"),
        "two leaf partitions and the TOAST index: {text}"
    );
    let ran = t.apply_json(&p);
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
    let after = scalar(&url, leaf_indexes);
    let changed = before.split(',').zip(after.split(',')).filter(|(b, a)| b != a).count();
    assert_eq!(changed, 2, "both leaf partitions' indexes are new: {before} -> {after}");
    assert_ne!(toast_node(), toast_before, "the TOAST index was rebuilt");
}

#[test]
fn a_never_analyzed_table_is_counted_from_inserts_and_listed_for_analyze_with_its_size() {
    let t = Test::new();
    let url = fresh_db();
    admin_statements(
        &url,
        &[
            "CREATE TABLE fresh (id int, note text) WITH (autovacuum_enabled = false)".into(),
            "INSERT INTO fresh SELECT g, md5(g::text) FROM generate_series(1, 100000) g".into(),
        ],
    );
    assert_eq!(
        scalar(&url, "SELECT reltuples FROM pg_class WHERE relname = 'fresh'"),
        "-1"
    );
    // The inserting session's counters reach the server when it ends.
    let t0 = std::time::Instant::now();
    while scalar(
        &url,
        "SELECT coalesce(n_live_tup, 0) FROM pg_stat_user_tables WHERE relname = 'fresh'",
    ) != "100000"
    {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(20),
            "statistics never arrived"
        );
    }
    let inspect = |what: &str| {
        let out = crate::support::cli::dbmaint(t.path())
            .args(["inspect", "--target", &url, what])
            .output()
            .expect("inspect");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let stats = inspect("stats");
    assert!(
        stats.contains("~100,000 rows (counted from inserts: never analyzed)"),
        "{stats}"
    );
    let bloat = inspect("bloat");
    let bytes: u64 = scalar(&url, "SELECT pg_relation_size('fresh')").parse().expect("size");
    let listed = format!("public.fresh {}", dbmaint::run::execplan::human_bytes(bytes));
    assert!(
        bloat.contains(&listed) && bloat.contains("run ANALYZE"),
        "{listed} in {bloat}"
    );
}

#[test]
fn a_bloated_toast_table_is_estimated_within_15_points_of_pgstattuple_and_measured_exactly() {
    let t = Test::new();
    let url = fresh_db();
    admin_statements(
        &url,
        &[
            "CREATE EXTENSION pgstattuple".into(),
            "CREATE TABLE docs (id int PRIMARY KEY, body text) WITH (autovacuum_enabled = false, toast.autovacuum_enabled = false)".into(),
            // ~6 KB of hex per row: stored out of line, in four chunks.
            "INSERT INTO docs SELECT g, (SELECT string_agg(md5(random()::text || g || i), '') FROM generate_series(1, 200) i) \
             FROM generate_series(1, 2000) g"
                .into(),
            "DELETE FROM docs WHERE id % 4 <> 0".into(),
            "VACUUM docs".into(),
        ],
    );
    let toast = scalar(
        &url,
        "SELECT 'pg_toast.' || t.relname FROM pg_class c JOIN pg_class t ON t.oid = c.reltoastrelid WHERE c.relname = 'docs'",
    );
    let free: f64 = scalar(
        &url,
        &format!("SELECT free_percent + dead_tuple_percent FROM pgstattuple('{toast}')"),
    )
    .parse()
    .expect("percent");
    let bloat = |exact: bool| -> f64 {
        let mut args = vec!["--output", "json", "inspect", "--target", &url, "bloat"];
        if exact {
            args.push("--exact");
        }
        let out = crate::support::cli::dbmaint(t.path())
            .args(&args)
            .output()
            .expect("inspect");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let entry = v["bloat"]["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .find(|e| e["name"] == toast.as_str())
            .unwrap_or_else(|| panic!("{toast} not reported: {v}"))
            .clone();
        assert_eq!(entry["table"], "public.docs");
        entry["ratio"].as_f64().expect("ratio") * 100.0
    };
    let estimate = bloat(false);
    assert!(
        (estimate - free).abs() <= 15.0,
        "estimate {estimate:.1}% vs pgstattuple {free:.1}%"
    );
    let exact = bloat(true);
    eprintln!("TOAST bloat: estimate {estimate:.1}%, exact {exact:.1}%, pgstattuple {free:.1}%");
    assert!(
        (exact - free).abs() <= 5.0,
        "exact {exact:.1}% vs pgstattuple {free:.1}%"
    );
}

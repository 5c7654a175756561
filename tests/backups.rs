//! The other half of backups: rotation that only ever removes what the
//! journal knows (and exactly what the diff listed), `backups list`,
//! `backups verify`, `backups restore`, and the `backup_age` check.

use std::path::{Path, PathBuf};

use crate::support::cli::backup_files as backups_in;
use crate::support::test::{Test, sqlite};

/// A SQLite database with the demo's tables, in the test's directory.
fn demo_db(t: &Test) -> PathBuf {
    let db = t.path().join("app.db");
    let tables = dbmaint::demo::generate(5, dbmaint::demo::Size::scaled(0.02), chrono::Utc::now());
    crate::support::cli::rt()
        .block_on(dbmaint::demo::seed_sqlite(&db, &tables))
        .expect("seed");
    db
}

/// `plan.yaml` with one backup step `dump` (name `bk`).
fn backup_plan(t: &Test, target: &str, params: &str) -> PathBuf {
    let path = t.path().join("plan.yaml");
    std::fs::write(
        &path,
        format!(
            "version: 1\nname: bk\ntarget: \"{target}\"\nsteps:\n  dump:\n    backup: {{ dir: backups, {params} }}\n"
        ),
    )
    .expect("plan");
    path
}

/// The diff's objects of step `dump` with `marker`, as (name, detail).
fn objects(diff: &serde_json::Value, marker: &str) -> Vec<(String, String)> {
    diff["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["id"] == "dump")
        .expect("step dump")["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter(|o| o["marker"] == marker)
        .map(|o| {
            (
                o["name"].as_str().unwrap_or_default().to_string(),
                o["detail"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn file_name(path: &str) -> String {
    Path::new(path).file_name().expect("name").to_string_lossy().to_string()
}

#[test]
fn keep_1_keeps_the_new_backup_and_an_operators_copy_named_like_a_backup() {
    let t = Test::new();
    let db = demo_db(&t);
    let plan = backup_plan(&t, &format!("sqlite:{}", db.display()), "keep: 1");
    let first = t.apply(&plan);
    assert!(first.success(), "{}", first.stderr);
    let backups = t.path().join("backups");
    let made = backups_in(&backups);
    assert_eq!(made.len(), 1, "{made:?}");
    // The operator's copy sorts after every timestamp, as in the report.
    let copy = backups.join("bk-dump-manual-copy.db");
    std::fs::copy(backups.join(&made[0]), &copy).expect("copy");

    let diff = t.diff(&plan);
    let removed: Vec<String> = objects(&diff.json, "-")
        .into_iter()
        .map(|(n, _)| file_name(&n))
        .collect();
    assert_eq!(removed, [made[0].clone()], "the diff removes the journaled backup only");
    let unknown = objects(&diff.json, "=");
    assert!(
        unknown
            .iter()
            .any(|(n, d)| n.ends_with("bk-dump-manual-copy.db") && d.contains("not in dbmaint's journal")),
        "{unknown:?}"
    );

    let second = t.apply(&plan);
    assert!(second.success(), "{}", second.stderr);
    let after = backups_in(&backups);
    assert_eq!(after.len(), 2, "the new backup and the copy: {after:?}");
    assert!(after.contains(&"bk-dump-manual-copy.db".to_string()));
    assert!(!after.contains(&made[0]), "the older backup was rotated out");
    // The journal knows the removal; the new backup is the one left.
    let live = sqlite(&db, "SELECT path FROM dbmaint_backups WHERE removed_at IS NULL");
    assert!(
        Path::new(live.trim()).exists() && !live.contains("manual-copy"),
        "{live}"
    );
    assert_eq!(
        sqlite(&db, "SELECT count(*) FROM dbmaint_backups WHERE removed_at IS NOT NULL"),
        "1"
    );
}

#[test]
fn keep_and_keep_days_remove_exactly_what_the_diff_listed() {
    let t = Test::new();
    let db = demo_db(&t);
    let plan = backup_plan(&t, &format!("sqlite:{}", db.display()), "keep: 2, keep_days: 3");
    for _ in 0..4 {
        let ran = t.apply(&plan);
        assert!(ran.success(), "{}", ran.stderr);
    }
    // Journal times 5, 4, 2 and 1 days ago, oldest id first.
    for (id, days) in [(1, 5), (2, 4), (3, 2), (4, 1)] {
        sqlite(
            &db,
            &format!(
                "UPDATE dbmaint_backups SET created_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-{days} days') WHERE id = {id}"
            ),
        );
    }
    let path_of = |id: i64| sqlite(&db, &format!("SELECT path FROM dbmaint_backups WHERE id = {id}"));
    let stray = t.path().join("backups").join("bk-dump-stray.db");
    std::fs::write(&stray, b"not a backup of ours").expect("stray");

    let diff = t.diff(&plan);
    let mut removed: Vec<String> = objects(&diff.json, "-").into_iter().map(|(n, _)| n).collect();
    removed.sort();
    let mut expected = vec![path_of(1), path_of(2)];
    expected.sort();
    assert_eq!(removed, expected, "5 and 4 days old: beyond keep 2 and keep_days 3");

    let ran = t.apply(&plan);
    assert!(ran.success(), "{}", ran.stderr);
    for id in [1, 2] {
        assert!(!Path::new(&path_of(id)).exists(), "backup {id} removed");
    }
    for id in [3, 4, 5] {
        assert!(Path::new(&path_of(id)).exists(), "backup {id} kept");
    }
    assert!(stray.exists(), "a file the journal does not know is never removed");
    assert_eq!(
        sqlite(
            &db,
            "SELECT group_concat(id) FROM dbmaint_backups WHERE removed_at IS NOT NULL ORDER BY id"
        ),
        "1,2"
    );
}

/// A tmpfs of `kib` KiB at `dir`, unmounted when dropped (the tests run as
/// root, as .ci/run does; a mount that fails fails the test).
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(dir: &Path, kib: u64) -> Self {
        std::fs::create_dir_all(dir).expect("mount point");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(
            ok.success(),
            "cannot mount a small tmpfs at {} (needs root)",
            dir.display()
        );
        Self(dir.to_path_buf())
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_backup_that_cannot_fit_is_refused_in_the_diff_and_nothing_is_written() {
    let t = Test::new();
    let db = demo_db(&t);
    let _fs = SmallFs::mount(&t.path().join("backups"), 64);
    let plan = backup_plan(&t, &format!("sqlite:{}", db.display()), "keep: 1");
    let diff = t.diff(&plan);
    assert!(!diff.success(), "the diff refuses: {}", diff.stdout);
    let errors = diff.json["steps"][0]["errors"].to_string();
    assert!(
        errors.contains("does not fit in `backups`") && errors.contains("free"),
        "{errors}"
    );
    let apply = t.apply(&plan);
    assert!(!apply.success(), "apply refuses too");
    assert!(backups_in(&t.path().join("backups")).is_empty(), "nothing written");
    assert_eq!(
        sqlite(&db, "SELECT count(*) FROM sqlite_schema WHERE name = 'dbmaint_backups'"),
        "0",
        "refused before the run began: no journal either"
    );
}

/// A PostgreSQL test database with the demo tables and a table big
/// enough that restoring it takes a moment.
fn pg_db_with_bulk(rows: u64) -> String {
    let rt = crate::support::cli::rt();
    let url = rt.block_on(crate::support::cluster::Cluster::get().fresh_db());
    rt.block_on(crate::support::cli::seed_pg(&url));
    crate::support::cluster::admin_statements(
        &url,
        &[format!(
            "CREATE TABLE bulk AS SELECT g AS id, md5(g::text) AS payload FROM generate_series(1, {rows}) g"
        )],
    );
    url
}

fn pg_scalar(url: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args(["-X", "-At", "-d", url, "-c", sql])
        .output()
        .expect("psql");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn postgres_verify_restores_into_the_scratch_server_restore_to_names() {
    let t = Test::new();
    let url = pg_db_with_bulk(1000);
    let scratch = crate::support::cluster::TlsCluster::get().socket_url("postgres");
    let plan = backup_plan(&t, &url, &format!("verify: {{ restore_to: \"{scratch}\" }}"));
    let diff = t.diff(&plan);
    assert!(diff.success(), "{}", diff.stderr);
    let created = objects(&diff.json, "+");
    assert!(
        created
            .iter()
            .any(|(n, d)| n.starts_with("dbmaint_verify_") && d.contains("on the scratch server")),
        "{created:?}"
    );
    let ran = t.apply(&plan);
    assert!(ran.success(), "{}\n{}", ran.stdout, ran.stderr);
    // The journal names the server it restored into, and the drop.
    let journaled = pg_scalar(
        &url,
        "SELECT server || ' ' || (dropped_at IS NOT NULL) FROM dbmaint.scratch_databases",
    );
    assert_eq!(journaled, format!("{scratch} true"));
    assert_eq!(
        pg_scalar(&url, "SELECT verified FROM dbmaint.backups"),
        "restored-and-compared"
    );
    let counts = pg_scalar(&url, "SELECT counts FROM dbmaint.backups");
    assert!(counts.contains("\"\\\"public\\\".\\\"bulk\\\"\":1000"), "{counts}");
}

#[test]
fn a_verify_restore_killed_midway_leaves_a_scratch_database_the_next_run_drops() {
    let t = Test::new();
    let url = pg_db_with_bulk(400_000);
    let plan = backup_plan(&t, &url, "verify: { same_server: true }");
    let server = crate::support::cluster::Cluster::get().url("postgres");
    let scratch_sql =
        "SELECT coalesce(string_agg(datname, ','), '') FROM pg_database WHERE datname LIKE 'dbmaint_verify_%'";
    assert_eq!(pg_scalar(&server, scratch_sql), "", "no scratch database yet");
    let mut child = crate::support::test::spawn_apply(t.path(), &plan);
    let t0 = std::time::Instant::now();
    let name = loop {
        let found = pg_scalar(&server, scratch_sql);
        if !found.is_empty() {
            break found;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(60),
            "the restore never started"
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "apply ended before its restore was seen"
        );
    };
    child.kill().expect("kill -9 dbmaint");
    let _ = child.wait();
    assert_eq!(
        pg_scalar(
            &url,
            "SELECT name FROM dbmaint.scratch_databases WHERE dropped_at IS NULL"
        ),
        name,
        "journaled before it was created"
    );
    let diff = t.diff(&plan);
    assert!(
        objects(&diff.json, "-")
            .iter()
            .any(|(n, d)| *n == name && d.contains("interrupted")),
        "the diff shows the leftover it drops: {}",
        diff.stdout
    );
    let ran = t.apply(&plan);
    assert!(ran.success(), "{}\n{}", ran.stdout, ran.stderr);
    let said = format!("{}{}", ran.stdout, ran.stderr);
    assert!(said.contains(&format!("dropped the scratch database {name}")), "{said}");
    assert_eq!(
        pg_scalar(&server, scratch_sql),
        "",
        "the leftover and this run's scratch are gone"
    );
    assert_eq!(
        pg_scalar(
            &url,
            "SELECT count(*) FROM dbmaint.scratch_databases WHERE dropped_at IS NULL"
        ),
        "0"
    );
}

/// `inspect checks --max-backup-age AGE --fail-on error` on `db`: exit
/// code and output.
fn backup_age_probe(t: &Test, db: &Path, age: &str) -> (Option<i32>, String) {
    let out = crate::support::cli::dbmaint(t.path())
        .args(["inspect", "--target"])
        .arg(format!("sqlite:{}", db.display()))
        .args(["checks", "--fail-on", "error", "--max-backup-age", age])
        .output()
        .expect("inspect");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn backup_age_alerts_without_a_recent_verified_backup_in_checks_and_probes() {
    let t = Test::new();
    let db = demo_db(&t);
    let (code, said) = backup_age_probe(&t, &db, "26h");
    assert_eq!(code, Some(6), "no backup yet: {said}");
    assert!(said.contains("no verified backup"), "{said}");

    let plan = backup_plan(&t, &format!("sqlite:{}", db.display()), "keep: 3");
    assert!(t.apply(&plan).success());
    let (code, said) = backup_age_probe(&t, &db, "26h");
    assert_eq!(code, Some(0), "a fresh verified backup: {said}");
    assert!(!said.contains("backup_age"), "{said}");

    sqlite(
        &db,
        "UPDATE dbmaint_backups SET created_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-2 days')",
    );
    let (code, said) = backup_age_probe(&t, &db, "26h");
    assert_eq!(code, Some(6), "two days old: {said}");
    assert!(
        said.contains("the newest verified backup is 2d old (max 1d 2h)"),
        "{said}"
    );

    // The same check as a plan step fails it on its finding (exit 6).
    let check = t.path().join("check.yaml");
    std::fs::write(
        &check,
        format!(
            "version: 1\nname: watch\ntarget: \"sqlite:{}\"\nsteps:\n  fresh:\n    check: {{ max_backup_age: 26h, fail_on: error }}\n",
            db.display()
        ),
    )
    .expect("plan");
    let ran = t.apply(&check);
    assert_eq!(ran.code, Some(6), "{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("backup_age"), "{}", ran.stdout);
}

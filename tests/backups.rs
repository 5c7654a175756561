//! The other half of backups: rotation that only ever removes what the
//! journal knows (and exactly what the diff listed), `backups list`,
//! `backups verify`, `backups restore`, and the `backup_age` check.

use std::path::{Path, PathBuf};

use crate::support::cli::backup_files as backups_in;
use crate::support::test::{Test, sqlite};

/// A SQLite database with the demo's tables, in the test's directory.
pub(crate) fn demo_db(t: &Test) -> PathBuf {
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
    // `backups list`: the journal's backup, and the operator's copy as the
    // one file the journal does not know (hidden and partial files aside).
    std::fs::write(backups.join(".bk-dump-x.db.partial"), b"partial").expect("partial");
    let list = listing(&t, &plan);
    assert_eq!(list["source"], "journal", "{list}");
    assert_eq!(list["backups"].as_array().map(Vec::len), Some(1), "{list}");
    let unknown: Vec<String> = list["unknown"]
        .as_array()
        .expect("unknown")
        .iter()
        .map(|u| file_name(u.as_str().unwrap_or_default()))
        .collect();
    assert_eq!(unknown, ["bk-dump-manual-copy.db"], "{list}");
    // Verifying the copy checks the file, and records nothing: it has no
    // record in the journal to record it in.
    let journal_before = sqlite(&db, "SELECT count(*), group_concat(verified_at) FROM dbmaint_backups");
    let (code, v, err) = cli_json(
        &t,
        &[
            "backups",
            "verify",
            &copy.display().to_string(),
            "--plan",
            &plan.display().to_string(),
        ],
    );
    assert_eq!(code, Some(0), "{v}\n{err}");
    assert_eq!(
        (v["ok"].as_bool(), v["journaled"].as_bool()),
        (Some(true), Some(false)),
        "{v}"
    );
    assert_eq!(
        sqlite(&db, "SELECT count(*), group_concat(verified_at) FROM dbmaint_backups"),
        journal_before
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
pub(crate) struct SmallFs(PathBuf);

impl SmallFs {
    pub(crate) fn mount(dir: &Path, kib: u64) -> Self {
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
    crate::support::cli::psql_scalar(url, sql)
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
    // Other tests' scratch databases live on the same cluster: this run's
    // is the one its own journal names.
    let exists = |name: &str| {
        pg_scalar(
            &server,
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
        ) == "1"
    };
    let ours = || -> Option<String> {
        let journal = pg_scalar(&url, "SELECT to_regclass('dbmaint.scratch_databases') IS NOT NULL");
        (journal == "t")
            .then(|| {
                pg_scalar(
                    &url,
                    "SELECT coalesce(max(name), '') FROM dbmaint.scratch_databases WHERE dropped_at IS NULL",
                )
            })
            .filter(|n| !n.is_empty() && exists(n))
    };
    let mut child = crate::support::test::spawn_apply(t.path(), &plan);
    let name = crate::support::cli::poll_until("the restore never started", 60, || {
        let found = ours();
        assert!(
            found.is_some() || child.try_wait().expect("wait").is_none(),
            "apply ended before its restore was seen"
        );
        found
    });
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
    assert!(!exists(&name), "the leftover is gone");
    assert_eq!(ours(), None, "and so is this run's scratch database");
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

/// `dbmaint ARGS…` in the test's directory: (exit code, stdout, stderr).
fn cli(t: &Test, args: &[&str]) -> (Option<i32>, String, String) {
    let out = crate::support::cli::dbmaint(t.path())
        .args(args)
        .output()
        .expect("dbmaint");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// `backups list --output json` of the plan's target.
fn listing(t: &Test, plan: &Path) -> serde_json::Value {
    let (code, list, err) = cli_json(t, &["backups", "list", "--plan", &plan.display().to_string()]);
    assert_eq!(code, Some(0), "{err}");
    list
}

/// `dbmaint --output json ARGS`: the exit code, the JSON printed, stderr.
fn cli_json(t: &Test, args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let (code, out, err) = cli(t, &[&["--output", "json"][..], args].concat());
    let json = serde_json::from_str(&out).unwrap_or_else(|e| panic!("no JSON ({e}): {out}\n{err}"));
    (code, json, err)
}

#[test]
fn postgres_backup_list_restore_into_a_new_database_with_equal_counts() {
    let t = Test::new();
    let url = pg_db_with_bulk(5000);
    let plan = backup_plan(&t, &url, "verify: { same_server: true }");
    let ran = t.apply(&plan);
    assert!(ran.success(), "{}\n{}", ran.stdout, ran.stderr);
    let list = listing(&t, &plan);
    let b = &list["backups"][0];
    assert_eq!(b["status"], "restored-and-compared", "{list}");
    assert_eq!(b["format"], "custom");
    let id = b["id"].to_string();

    // Into a new, empty database: restored, counts equal to the record's.
    let rt = crate::support::cli::rt();
    let fresh = rt.block_on(crate::support::cluster::Cluster::get().fresh_db());
    let plan_arg = plan.display().to_string();
    let (code, out, err) = cli(
        &t,
        &["backups", "restore", &id, "--plan", &plan_arg, "--target", &fresh],
    );
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("\"public\".\"bulk\"") && out.contains("5000"), "{out}");
    assert_eq!(pg_scalar(&fresh, "SELECT count(*) FROM bulk"), "5000");
    assert_eq!(
        pg_scalar(&fresh, "SELECT count(*) FROM core_audit_log"),
        pg_scalar(&url, "SELECT count(*) FROM core_audit_log")
    );

    // Again: the database is not empty now; refused, nothing touched.
    crate::support::cluster::admin_statements(
        &fresh,
        &["INSERT INTO bulk VALUES (-1, 'added after the restore')".into()],
    );
    let (code, _, err) = cli(
        &t,
        &["backups", "restore", &id, "--plan", &plan_arg, "--target", &fresh],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("holds") && err.contains("--clean"), "{err}");
    assert_eq!(
        pg_scalar(&fresh, "SELECT count(*) FROM bulk"),
        "5001",
        "refused: nothing changed"
    );

    // --clean without a terminal needs --auto-approve; then drops and restores.
    let (code, _, err) = cli(
        &t,
        &[
            "backups", "restore", &id, "--plan", &plan_arg, "--target", &fresh, "--clean",
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--auto-approve"), "{err}");
    let (code, out, err) = cli(
        &t,
        &[
            "backups",
            "restore",
            &id,
            "--plan",
            &plan_arg,
            "--target",
            &fresh,
            "--clean",
            "--auto-approve",
        ],
    );
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        err.contains("- public.bulk (table"),
        "the preview lists what is dropped: {err}"
    );
    assert_eq!(pg_scalar(&fresh, "SELECT count(*) FROM bulk"), "5000");

    // Onto the database it was taken from: refused without --force.
    let (code, _, err) = cli(
        &t,
        &[
            "backups",
            "restore",
            &id,
            "--plan",
            &plan_arg,
            "--target",
            &url,
            "--clean",
            "--auto-approve",
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("the database this backup was taken from"), "{err}");
    assert_eq!(pg_scalar(&url, "SELECT count(*) FROM bulk"), "5000");
}

#[test]
fn a_tampered_backup_is_listed_as_changed_and_fails_verify() {
    let t = Test::new();
    let db = demo_db(&t);
    let plan = backup_plan(&t, &format!("sqlite:{}", db.display()), "keep: 3");
    assert!(t.apply(&plan).success());
    let plan_arg = plan.display().to_string();
    let (code, out, err) = cli(&t, &["backups", "verify", "1", "--plan", &plan_arg]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("checksum and integrity_check ok"), "{out}");

    // Flip one byte in the middle: same size, other content.
    let path = listing(&t, &plan)["backups"][0]["path"]
        .as_str()
        .expect("path")
        .to_string();
    let mut bytes = std::fs::read(&path).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, &bytes).expect("tamper");
    assert_eq!(listing(&t, &plan)["backups"][0]["status"], "size or checksum changed");
    let (code, out, _) = cli(&t, &["backups", "verify", "1", "--plan", &plan_arg]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("size or checksum changed"), "{out}");
    assert!(
        sqlite(&db, "SELECT verified FROM dbmaint_backups WHERE id = 1").starts_with("failed:"),
        "the journal records the failed verification"
    );
    // A restore of it is refused before anything is written.
    let fresh = t.path().join("fresh.db");
    let (code, _, err) = cli(
        &t,
        &[
            "backups",
            "restore",
            "1",
            "--plan",
            &plan_arg,
            "--target",
            &format!("sqlite:{}", fresh.display()),
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(!fresh.exists(), "nothing written");
}

#[test]
fn sqlite_restore_onto_its_source_needs_force_and_keeps_the_backup_journal() {
    let t = Test::new();
    let db = demo_db(&t);
    let target = format!("sqlite:{}", db.display());
    let plan = backup_plan(&t, &target, "verify: restore, keep: 5");
    assert!(t.apply(&plan).success());
    let before = sqlite(&db, "SELECT count(*) FROM core_audit_log");
    sqlite(&db, "DELETE FROM core_audit_log");
    assert!(t.apply(&plan).success(), "a second backup, of the emptied table");
    let plan_arg = plan.display().to_string();
    let args = [
        "backups",
        "restore",
        "1",
        "--plan",
        &plan_arg,
        "--target",
        &target,
        "--clean",
        "--auto-approve",
    ];
    let (code, _, err) = cli(&t, &args);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("taken from") && err.contains("--force"), "{err}");
    assert_eq!(
        sqlite(&db, "SELECT count(*) FROM core_audit_log"),
        "0",
        "refused: unchanged"
    );

    let (code, out, err) = cli(&t, &[&args[..], &["--force"]].concat());
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(
        sqlite(&db, "SELECT count(*) FROM core_audit_log"),
        before,
        "the rows are back"
    );
    // The restored file is the first backup, yet the journal still knows both.
    assert_eq!(
        sqlite(&db, "SELECT count(*) FROM dbmaint_backups WHERE removed_at IS NULL"),
        "2"
    );
    assert_eq!(sqlite(&db, "PRAGMA integrity_check"), "ok");
}

#[test]
fn a_restore_killed_midway_leaves_nothing_the_next_clean_restore_cannot_fix() {
    let t = Test::new();
    let url = pg_db_with_bulk(600_000);
    let plan = backup_plan(&t, &url, "verify: { same_server: true }");
    assert!(t.apply(&plan).success());
    let rt = crate::support::cli::rt();
    let fresh = rt.block_on(crate::support::cluster::Cluster::get().fresh_db());
    let plan_arg = plan.display().to_string();
    let args = ["backups", "restore", "1", "--plan", &plan_arg, "--target", &fresh];
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("dbmaint"))
        .current_dir(t.path())
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // Wait until pg_restore is copying rows into the target, then kill -9.
    let db = crate::support::cluster::db_name(&fresh).to_string();
    let copying = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND application_name LIKE 'dbmaint child %' AND query LIKE 'COPY%'"
    );
    let server = crate::support::cluster::Cluster::get().url("postgres");
    crate::support::cli::poll_until("pg_restore never copied", 60, || {
        let copies = pg_scalar(&server, &copying) != "0";
        assert!(
            copies || child.try_wait().expect("wait").is_none(),
            "the restore ended before it was seen copying"
        );
        copies.then_some(())
    });
    child.kill().expect("kill -9");
    let _ = child.wait();
    // pg_restore dies with the engine; its single transaction rolls back.
    crate::support::cli::poll_until("pg_restore outlived the engine", 10, || {
        (pg_scalar(&server, &copying) == "0").then_some(())
    });
    let tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'";
    assert_eq!(
        pg_scalar(&fresh, tables),
        "0",
        "a killed restore left no half-restored table"
    );
    let (code, out, err) = cli(&t, &[&args[..], &["--clean", "--auto-approve"]].concat());
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(pg_scalar(&fresh, "SELECT count(*) FROM bulk"), "600000");
}

#[test]
fn directory_and_plain_backups_restore_in_parallel_and_through_psql() {
    let t = Test::new();
    let url = pg_db_with_bulk(20_000);
    let rt = crate::support::cli::rt();
    // The client tools record their calls: `--jobs 2` restores in
    // parallel, one job (or none given) in one transaction.
    let path = crate::support::test::recording_path(t.path());
    let calls = t.path().join("calls");
    for (format, extra, expect) in [
        ("directory", vec!["--jobs", "2"], "pg_restore --exit-on-error"),
        ("directory", vec!["--jobs", "1"], "pg_restore --exit-on-error"),
        ("plain", vec![], "psql -X -q -v ON_ERROR_STOP=1 --single-transaction"),
    ] {
        let plan = backup_plan(&t, &url, &format!("format: {format}, verify: {{ same_server: true }}"));
        let ran = t.apply(&plan);
        assert!(ran.success(), "{format}: {}\n{}", ran.stdout, ran.stderr);
        let newest = listing(&t, &plan)["backups"]
            .as_array()
            .expect("backups")
            .iter()
            .rfind(|b| b["format"] == format)
            .expect("this format's backup")["id"]
            .to_string();
        let fresh = rt.block_on(crate::support::cluster::Cluster::get().fresh_db());
        let plan_arg = plan.display().to_string();
        let args = [
            &[
                "backups",
                "restore",
                newest.as_str(),
                "--plan",
                &plan_arg,
                "--target",
                &fresh,
            ][..],
            &extra,
        ]
        .concat();
        let _ = std::fs::remove_file(&calls);
        let out = crate::support::cli::dbmaint(t.path())
            .env("PATH", &path)
            .args(&args)
            .output()
            .expect("restore");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(0), "{format}: {stdout}\n{stderr}");
        assert!(!stdout.contains("differs"), "{format}: {stdout}");
        assert_eq!(pg_scalar(&fresh, "SELECT count(*) FROM bulk"), "20000", "{format}");
        let recorded = std::fs::read_to_string(&calls).unwrap_or_default();
        let call = recorded
            .lines()
            .find(|l| l.starts_with(expect))
            .unwrap_or_else(|| panic!("{format} {extra:?}: no `{expect}` call in {recorded}"));
        let parallel = extra == ["--jobs", "2"];
        assert_eq!(call.contains("--jobs=2"), parallel, "{call}");
        assert_eq!(call.contains("--single-transaction"), !parallel, "{call}");
    }
}

#[test]
fn postgres_verify_fails_a_restore_whose_counts_differ_and_a_truncated_dump() {
    let t = Test::new();
    let url = pg_db_with_bulk(2000);
    let plan = backup_plan(&t, &url, "verify: { same_server: true }");
    let ran = t.apply(&plan);
    assert!(ran.success(), "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(
        pg_scalar(&url, "SELECT verified FROM dbmaint.backups"),
        "restored-and-compared"
    );
    let plan_arg = plan.display().to_string();
    let verify = |extra: &[&str]| {
        let mut args = vec!["backups", "verify", "1", "--plan", &plan_arg];
        args.extend_from_slice(extra);
        cli(&t, &args)
    };
    let (code, out, err) = verify(&["--restore", "--same-server"]);
    assert_eq!(code, Some(0), "the untouched backup verifies: {out}{err}");

    // Held to other counts (as if rows went missing between dump and
    // restore), the restore no longer matches: verification fails.
    crate::support::cluster::admin_statements(
        &url,
        &["UPDATE dbmaint.backups SET counts = replace(counts, '\"bulk\\\"\":2000', '\"bulk\\\"\":2001')".into()],
    );
    assert!(pg_scalar(&url, "SELECT counts FROM dbmaint.backups").contains(":2001"));
    let (code, out, err) = verify(&["--restore", "--same-server"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(format!("{out}{err}").contains("2001"), "names the mismatch: {out}{err}");
    assert!(pg_scalar(&url, "SELECT verified FROM dbmaint.backups").starts_with("failed:"));

    // Truncated to half, its checksum forgotten (so the checksum cannot be
    // what catches it): the full read by pg_restore fails.
    let path = listing(&t, &plan)["backups"][0]["path"]
        .as_str()
        .expect("path")
        .to_string();
    let len = std::fs::metadata(&path).expect("dump").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(len / 2))
        .expect("truncate");
    crate::support::cluster::admin_statements(
        &url,
        &["UPDATE dbmaint.backups SET sha256 = '', verified = 'verified'".into()],
    );
    let (code, out, err) = verify(&[]);
    assert_eq!(code, Some(1), "a truncated dump fails: {out}{err}");
    assert!(pg_scalar(&url, "SELECT verified FROM dbmaint.backups").starts_with("failed:"));
}

/// A logical-replication subscriber's backup verifies by restore: the
/// copy never keeps the subscription (pg_restore leaves it out; a plain
/// dump's is detached from its slot and dropped), so every scratch
/// database is dropped and the run exits 0. PostgreSQL refuses to drop a
/// database with a subscription, even WITH (FORCE): before, each run left
/// its scratch database behind and exited 5.
#[test]
fn a_subscribers_backup_verifies_by_restore_and_leaves_no_scratch_database() {
    let t = Test::new();
    let url = pg_db_with_bulk(500);
    crate::support::cluster::admin_statements(
        &url,
        &[
            "CREATE SUBSCRIPTION replica_of_orders CONNECTION 'dbname=nowhere' PUBLICATION orders \
           WITH (connect = false)"
                .into(),
        ],
    );
    let subscriptions_here = "SELECT count(*) FROM pg_subscription \
        WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())";
    for format in ["custom", "plain"] {
        let plan = backup_plan(&t, &url, &format!("format: {format}, verify: {{ same_server: true }}"));
        let ran = t.apply(&plan);
        assert_eq!(ran.code, Some(0), "{format}: {}\n{}", ran.stdout, ran.stderr);
        assert_eq!(
            pg_scalar(&url, "SELECT verified FROM dbmaint.backups ORDER BY id DESC LIMIT 1"),
            "restored-and-compared",
            "{format}"
        );
        let scratch = pg_scalar(
            &url,
            "SELECT count(*) FILTER (WHERE dropped_at IS NOT NULL) || '/' || count(*) FROM dbmaint.scratch_databases",
        );
        let n = if format == "custom" { "1/1" } else { "2/2" };
        assert_eq!(scratch, n, "{format}: every scratch database is journaled as dropped");
        assert_eq!(
            pg_scalar(
                &url,
                "SELECT count(*) FROM pg_database d JOIN dbmaint.scratch_databases s ON s.name = d.datname"
            ),
            "0",
            "{format}: no scratch database is left on the server"
        );
    }
    assert_eq!(
        pg_scalar(&url, subscriptions_here),
        "1",
        "the source's own subscription is untouched"
    );
}

/// docs/operations.md: a scratch database whose DROP fails is reported
/// ("LEFT FOR YOU") and the run exits 5; it stays journaled, and the next
/// run's backup step drops it first and exits 0.
#[test]
fn a_scratch_database_that_cannot_be_dropped_exits_5_and_the_next_run_drops_it() {
    use std::os::unix::fs::PermissionsExt;
    let t = Test::new();
    let url = pg_db_with_bulk(500);
    let plan = backup_plan(&t, &url, "verify: { same_server: true }");
    // pg_restore as usual, then a prepared transaction in the copy: the
    // one hold that DROP DATABASE … WITH (FORCE) does not break.
    let path = crate::support::test::recording_path(t.path());
    let real = crate::support::test::pg_bindir();
    let pin = t.path().join("fakebin/pg_restore");
    std::fs::write(
        &pin,
        format!(
            "#!/bin/sh\n'{real}/pg_restore' \"$@\" || exit $?\n\
             for a in \"$@\"; do case \"$a\" in --dbname=*) db=\"${{a#--dbname=}}\";; esac; done\n\
             exec '{real}/psql' -X -q -v ON_ERROR_STOP=1 -d \"$db\" \
             -c \"BEGIN; CREATE TABLE pinned (); PREPARE TRANSACTION 'pin_$db'\"\n"
        ),
    )
    .expect("stand-in");
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = crate::support::cli::dbmaint(t.path())
        .env("PATH", &path)
        .args(["plan", "apply", "--auto-approve"])
        .arg(&plan)
        .output()
        .expect("apply");
    let left = pg_scalar(
        &url,
        "SELECT string_agg(name, ',') FROM dbmaint.scratch_databases WHERE dropped_at IS NULL",
    );
    assert!(
        left.starts_with("dbmaint_verify_"),
        "the scratch database stays journaled: {left:?}"
    );
    let exists = format!("SELECT count(*) FROM pg_database WHERE datname = '{left}'");
    assert_eq!(pg_scalar(&url, &exists), "1", "and is still there");
    crate::support::test::assert_left_for_you(&out, &left);
    // The prepared transaction ends; the next run drops the leftover.
    let scratch_url = crate::support::cluster::Cluster::get().url(&left);
    crate::support::cluster::admin_statements(&scratch_url, &[format!("ROLLBACK PREPARED 'pin_{left}'")]);
    let ran = t.apply(&plan);
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stderr
            .contains(&format!("dump: rolled back: dropped the scratch database {left}")),
        "the run says it dropped the leftover: {}",
        ran.stderr
    );
    assert_eq!(pg_scalar(&url, &exists), "0", "the leftover is gone");
    assert_eq!(
        pg_scalar(
            &url,
            "SELECT count(*) FROM dbmaint.scratch_databases WHERE dropped_at IS NULL"
        ),
        "0",
        "every scratch database is journaled as dropped"
    );
}

/// The database gone (the file lost, the server down), `backups list`
/// reads the manifests beside the backups: the backups are still found,
/// and the listing says where it read them from and why.
#[test]
fn backups_list_reads_the_manifests_when_the_journal_cannot_be_read() {
    let t = Test::new();
    let db = demo_db(&t);
    let target = format!("sqlite:{}", db.display());
    let plan = backup_plan(&t, &target, "keep: 3");
    for _ in 0..2 {
        let ran = t.apply(&plan);
        assert!(ran.success(), "{}", ran.stderr);
    }
    let made = backups_in(&t.path().join("backups"));
    assert_eq!(made.len(), 2, "{made:?}");
    std::fs::remove_file(&db).expect("lose the database");
    let dir = t.path().join("backups").display().to_string();
    let (code, list, err) = cli_json(&t, &["backups", "list", "--target", &target, "--dir", &dir]);
    assert_eq!(code, Some(0), "{list}\n{err}");
    assert_eq!(list["source"], "manifests", "{list}");
    assert!(list["journal_error"].is_string(), "{list}");
    let backups = list["backups"].as_array().expect("backups");
    let mut listed: Vec<String> = backups
        .iter()
        .map(|b| file_name(b["path"].as_str().unwrap_or_default()))
        .collect();
    let created: Vec<&str> = backups.iter().filter_map(|b| b["created_at"].as_str()).collect();
    assert!(created.len() == 2 && created[0] < created[1], "oldest first: {list}");
    listed.sort();
    assert_eq!(listed, made, "both backups: {list}");
    assert_eq!(list["unknown"], serde_json::json!([]), "{list}");
    assert!(!db.exists(), "listing never creates the database");
}

/// A restore whose tables do not match the counts recorded at backup time
/// says so and fails: here the record names a table the backup does not
/// hold (as a truncated or mislabelled dump would), recorded with 1 row.
#[test]
fn a_restore_missing_a_recorded_table_fails_its_count_comparison() {
    let t = Test::new();
    let db = demo_db(&t);
    let plan = backup_plan(&t, &format!("sqlite:{}", db.display()), "verify: restore");
    assert!(t.apply(&plan).success());
    sqlite(
        &db,
        "UPDATE dbmaint_backups SET counts = json_set(counts, '$.ghost', 1)",
    );
    let into = t.path().join("restored.db");
    let (code, done, err) = cli_json(
        &t,
        &[
            "backups",
            "restore",
            "1",
            "--plan",
            &plan.display().to_string(),
            "--target",
            &format!("sqlite:{}", into.display()),
        ],
    );
    assert_eq!(code, Some(1), "{done}\n{err}");
    assert_eq!(done["counts_match"], false, "{done}");
    let ghost = done["counts"]
        .as_array()
        .and_then(|c| c.iter().find(|t| t[0] == "ghost"))
        .expect("the recorded table is listed");
    assert_eq!(ghost, &serde_json::json!(["ghost", 1, -1]), "recorded 1, restored none");
    // Every other table matched its record.
    let others_match = done["counts"]
        .as_array()
        .expect("counts")
        .iter()
        .filter(|t| t[0] != "ghost")
        .all(|t| t[1] == t[2]);
    assert!(others_match, "{done}");
    assert_eq!(
        sqlite(&into, "SELECT count(*) FROM core_audit_log"),
        sqlite(&db, "SELECT count(*) FROM core_audit_log")
    );
}

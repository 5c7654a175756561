//! dbmaint as a monitoring probe (issue 13 §3): a `check` step failing on
//! its findings exits 6, not 1; `inspect checks --fail-on` and
//! `history --stale-after`, in text (exit 6 when the condition holds) and
//! in the Nagios plugin format (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
//! Both read only and never wait for the apply lock.

use std::path::Path;

use crate::support::cli::{dbmaint, rt};
use crate::support::cluster::{connect, seeded_db};
use crate::support::test::sqlite;

fn run(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = dbmaint(dir).args(args).output().expect("dbmaint");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

#[test]
fn sqlite_staleness_is_fresh_after_a_run_and_stale_once_it_is_old() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    sqlite(&db, "CREATE TABLE ev (id INTEGER PRIMARY KEY, at TEXT NOT NULL)");
    let target = format!("sqlite:{}", db.display());
    let probe = |extra: &[&str]| {
        let mut args = vec!["history", "--target", target.as_str(), "--stale-after", "26h"];
        args.extend_from_slice(extra);
        run(dir.path(), &args)
    };
    // No journal yet: never succeeded.
    let (code, line) = probe(&["--format", "nagios"]);
    assert_eq!(code, Some(2), "{line}");
    assert!(
        line.starts_with("DBMAINT STALENESS CRITICAL - any plan never succeeded"),
        "{line}"
    );
    let plan = dir.path().join("p.yaml");
    std::fs::write(
        &plan,
        format!("version: 1\nname: nightly\ntarget: \"{target}\"\nsteps:\n  a:\n    analyze: {{}}\n"),
    )
    .expect("plan");
    let out = dbmaint(dir.path())
        .args(["plan", "apply", "--auto-approve"])
        .arg(&plan)
        .output()
        .expect("apply");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (code, line) = probe(&["--name", "nightly"]);
    assert_eq!(code, Some(0), "{line}");
    assert!(
        line.starts_with("plan `nightly` last succeeded") && line.contains("within 1d 2h"),
        "{line}"
    );
    let (code, line) = probe(&["--name", "nightly", "--format", "nagios"]);
    assert_eq!(code, Some(0), "{line}");
    assert!(
        line.starts_with("DBMAINT STALENESS OK") && line.contains("| age="),
        "{line}"
    );
    // The plan file names the runs too; another plan's runs do not count.
    let (code, _) = run(
        dir.path(),
        &[
            "history",
            "--plan",
            plan.to_str().expect("utf-8"),
            "--stale-after",
            "26h",
        ],
    );
    assert_eq!(code, Some(0));
    let (code, line) = probe(&["--name", "weekly"]);
    assert_eq!(code, Some(6), "{line}");
    // Two days later, as far as the journal knows.
    sqlite(
        &db,
        "UPDATE dbmaint_runs SET finished_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-2 days')",
    );
    let (code, line) = probe(&["--name", "nightly"]);
    assert_eq!(code, Some(6), "{line}");
    assert!(line.starts_with("STALE: plan `nightly` last succeeded 2d"), "{line}");
    let (code, line) = probe(&["--name", "nightly", "--format", "nagios"]);
    assert_eq!(code, Some(2), "{line}");
    assert!(line.starts_with("DBMAINT STALENESS CRITICAL"), "{line}");
    // A database that cannot be read: UNKNOWN, not OK or CRITICAL.
    let (code, line) = run(
        dir.path(),
        &[
            "history",
            "--target",
            "sqlite:/nonexistent/app.db",
            "--stale-after",
            "1h",
            "--format",
            "nagios",
        ],
    );
    assert_eq!(code, Some(3), "{line}");
    assert!(line.starts_with("DBMAINT STALENESS UNKNOWN"), "{line}");
}

#[test]
fn postgres_probes_answer_while_an_apply_holds_the_lock() {
    let rt = rt();
    // A foreign key without an index: one `fk_without_index` warning.
    let url = seeded_db(
        "CREATE TABLE parent (id int PRIMARY KEY); \
         CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent (id));",
        &[],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    // Another apply holds the lock for the whole test.
    let mut holder = rt.block_on(connect(&url));
    rt.block_on(
        sqlx::query("SELECT pg_advisory_lock($1, 0)")
            .bind(dbmaint::db::pg::LOCK_CLASS)
            .execute(&mut holder),
    )
    .expect("lock");
    let (code, out) = run(
        dir.path(),
        &["inspect", "checks", "--target", &url, "--fail-on", "warning"],
    );
    assert_eq!(code, Some(6), "{out}");
    assert!(out.contains("fk_without_index"), "{out}");
    let (code, out) = run(
        dir.path(),
        &["inspect", "checks", "--target", &url, "--fail-on", "error"],
    );
    assert_eq!(code, Some(0), "warnings do not reach `error`: {out}");
    let (code, line) = run(
        dir.path(),
        &["inspect", "checks", "--target", &url, "--format", "nagios"],
    );
    assert_eq!(code, Some(1), "{line}");
    assert!(
        line.starts_with("DBMAINT CHECKS WARNING - 0 errors, 1 warning; fk_without_index public.child")
            && line.ends_with("| errors=0;;1 warnings=1;1;"),
        "{line}"
    );
    let (code, line) = run(
        dir.path(),
        &["history", "--target", &url, "--stale-after", "1h", "--format", "nagios"],
    );
    assert_eq!(code, Some(2), "no journal: never succeeded: {line}");
    // A refused connection is UNKNOWN, and exit 1 in text mode.
    let bad = format!("{url}_nope");
    let (code, line) = run(
        dir.path(),
        &["inspect", "checks", "--target", &bad, "--format", "nagios"],
    );
    assert_eq!(code, Some(3), "{line}");
    let (code, _) = run(
        dir.path(),
        &["inspect", "checks", "--target", &bad, "--fail-on", "warning"],
    );
    assert_eq!(code, Some(1));
}

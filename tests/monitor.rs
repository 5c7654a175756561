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

/// Writes `yaml` as `dir/file` and applies it: exit code and stderr.
fn apply_plan(dir: &Path, file: &str, yaml: &str) -> (Option<i32>, String) {
    let plan = dir.join(file);
    std::fs::write(&plan, yaml).expect("plan");
    let out = dbmaint(dir)
        .args(["plan", "apply", "--auto-approve"])
        .arg(&plan)
        .output()
        .expect("apply");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
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
    let (code, err) = apply_plan(
        dir.path(),
        "p.yaml",
        &format!("version: 1\nname: nightly\ntarget: \"{target}\"\nsteps:\n  a:\n    analyze: {{}}\n"),
    );
    assert_eq!(code, Some(0), "{err}");
    let plan = dir.path().join("p.yaml");
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
    // A plan of checks only reads: it runs beside the held lock (exit 6 on
    // its finding, not 4), while a plan that writes is refused with 4.
    let (code, err) = apply_plan(
        dir.path(),
        "checks.yaml",
        &format!(
            "version: 1\nname: probe\ntarget: \"{url}\"\nsteps:\n  health:\n    check: {{ checks: [fk_without_index], fail_on: warning }}\n"
        ),
    );
    assert_eq!(code, Some(6), "{err}");
    let (code, err) = apply_plan(
        dir.path(),
        "writing.yaml",
        &format!("version: 1\nname: w\ntarget: \"{url}\"\nsteps:\n  a:\n    analyze: {{}}\n"),
    );
    assert_eq!(code, Some(4), "{err}");
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

/// A Python with `prometheus_client` (the reference text-format parser):
/// `DBMAINT_TEST_PYTHON` (what .ci/run sets), else `python3` when it has
/// the package. `None` outside CI when there is none.
fn prometheus_python() -> Option<String> {
    let candidates = std::env::var("DBMAINT_TEST_PYTHON")
        .ok()
        .into_iter()
        .chain(["python3".to_string()]);
    for py in candidates {
        let ok = std::process::Command::new(&py)
            .args(["-c", "import prometheus_client.parser"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(py);
        }
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "no Python with prometheus_client; .ci/run installs it"
    );
    eprintln!("skipped: no Python with prometheus_client (.ci/run installs it)");
    None
}

/// The metrics file parsed by prometheus_client: `name{labels} value` per
/// sample, labels sorted, as `(name, labels, value)`.
fn parse_metrics(py: &str, file: &Path) -> Vec<(String, std::collections::BTreeMap<String, String>, f64)> {
    let out = std::process::Command::new(py)
        .args([
            "-c",
            "import json, sys\n\
             from prometheus_client.parser import text_string_to_metric_families\n\
             out = []\n\
             for fam in text_string_to_metric_families(open(sys.argv[1]).read()):\n\
             \x20   for s in fam.samples:\n\
             \x20       out.append([s.name, s.labels, s.value, fam.type])\n\
             print(json.dumps(out))",
        ])
        .arg(file)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "the parser refused the file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<(String, std::collections::BTreeMap<String, String>, f64, String)> =
        serde_json::from_slice(&out.stdout).expect("JSON");
    v.into_iter().map(|(n, l, x, _)| (n, l, x)).collect()
}

#[test]
fn sqlite_apply_writes_metrics_a_prometheus_parser_reads() {
    let Some(py) = prometheus_python() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    sqlite(
        &db,
        "CREATE TABLE ev (id INTEGER PRIMARY KEY, at TEXT NOT NULL); \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 60) \
         INSERT INTO ev (at) SELECT datetime('now', '-' || i || ' days') FROM n; \
         CREATE TABLE p (id INTEGER PRIMARY KEY); CREATE TABLE c (id INTEGER PRIMARY KEY, p INTEGER REFERENCES p (id)); \
         INSERT INTO c VALUES (1, 99);",
    );
    let (code, err) = apply_plan(
        dir.path(),
        "p.yaml",
        "version: 1\nname: nightly\ntarget: \"sqlite:app.db\"\nmetrics_file: metrics/dbmaint.prom\nsteps:\n  \
         purge:\n    retention: { table: ev, column: at, older_than: 30 days }\n  \
         health:\n    check: { checks: [foreign_keys], fail_on: error }\n",
    );
    assert_eq!(code, Some(6), "the orphan fails the check: {err}");
    let plan = dir.path().join("p.yaml");
    let file = dir.path().join("metrics/dbmaint.prom");
    let samples = parse_metrics(&py, &file);
    let one = |name: &str, want: &[(&str, &str)]| -> f64 {
        let found: Vec<f64> = samples
            .iter()
            .filter(|(n, l, _)| n == name && want.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
            .map(|(_, _, x)| *x)
            .collect();
        assert_eq!(found.len(), 1, "{name} {want:?} in {samples:?}");
        found[0]
    };
    let run = [("plan", "nightly"), ("env", "")];
    assert_eq!(one("dbmaint_run_exit_code", &run), 6.0);
    assert!(one("dbmaint_run_duration_seconds", &run) >= 0.0);
    let purge = [("plan", "nightly"), ("step", "purge"), ("op", "retention")];
    assert_eq!(one("dbmaint_step_rows_total", &purge), 30.0);
    assert_eq!(
        one("dbmaint_step_status", &[("step", "purge"), ("status", "succeeded")]),
        1.0
    );
    assert_eq!(
        one("dbmaint_step_status", &[("step", "health"), ("status", "failed")]),
        1.0
    );
    assert_eq!(
        one("dbmaint_check_findings", &[("step", "health"), ("severity", "error")]),
        1.0
    );
    // Not successful: no last success yet.
    assert!(
        !samples
            .iter()
            .any(|(n, _, _)| n == "dbmaint_run_last_success_timestamp_seconds")
    );
    // Fix the orphan; the next run succeeds and says when.
    sqlite(&db, "DELETE FROM c");
    let before = chrono::Utc::now().timestamp();
    let out = dbmaint(dir.path())
        .args(["plan", "apply", "--auto-approve", "--metrics-file", "other.prom"])
        .arg(&plan)
        .output()
        .expect("apply");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let samples = parse_metrics(&py, &dir.path().join("other.prom"));
    let last = samples
        .iter()
        .find(|(n, _, _)| n == "dbmaint_run_last_success_timestamp_seconds")
        .map(|(_, _, x)| *x as i64)
        .expect("a last success");
    assert!(
        last >= before - 1 && last <= chrono::Utc::now().timestamp() + 1,
        "{last} vs {before}"
    );
    assert!(
        std::fs::read_dir(dir.path()).expect("dir").all(|e| !e
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp")),
        "no temporary file left"
    );
}

#[test]
fn history_filters_by_plan_status_and_time_and_prints_an_aligned_table() {
    let t = crate::support::test::Test::new();
    let db = crate::backups::demo_db(&t);
    let target = format!("sqlite:{}", db.display());
    for name in ["first", "second"] {
        let plan = t.path().join(format!("{name}.yaml"));
        std::fs::write(
            &plan,
            format!(
                "version: 1\nname: {name}\ntarget: \"{target}\"\nsteps:\n  dump:\n    backup: {{ dir: backups }}\n"
            ),
        )
        .expect("plan");
        assert!(t.apply(&plan).success());
    }
    let history = |extra: &[&str]| {
        let out = crate::support::cli::dbmaint(t.path())
            .args(["history", "--target", &target])
            .args(extra)
            .output()
            .expect("history");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let all = history(&[]);
    assert!(all.contains("`first`") && all.contains("`second`"), "{all}");
    let second = history(&["--name", "second"]);
    assert!(second.contains("`second`") && !second.contains("`first`"), "{second}");
    assert!(history(&["--status", "failed"]).contains("no runs in the journal match"));
    assert!(history(&["--since", "2099-01-01"]).contains("no runs in the journal match"));
    assert!(history(&["--since", "1h"]).contains("`first`"));
    // The steps as an aligned table: a header, human sizes, durations.
    let header = second
        .lines()
        .find(|l| l.trim_start().starts_with("step"))
        .expect("header");
    let row = second
        .lines()
        .find(|l| l.trim_start().starts_with("dump"))
        .expect("row");
    assert!(row.contains("KiB") && row.contains(" ms"), "{row}");
    let column = |line: &str, word: &str| line.find(word).expect("column");
    assert_eq!(
        column(header, "status"),
        column(row, "succeeded"),
        "aligned:\n{header}\n{row}"
    );
}

//! Where run logs go (issue 13 §4): the platform's state directory by
//! default, never the current directory; an unwritable directory refuses
//! the run before it touches the database; `--log-keep` prunes a plan's
//! older run logs.

use std::path::Path;

use crate::support::cli::dbmaint;
use crate::support::test::sqlite;

fn plan(dir: &Path) -> std::path::PathBuf {
    sqlite(
        &dir.join("app.db"),
        "CREATE TABLE ev (id INTEGER PRIMARY KEY, at TEXT NOT NULL); \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50) \
         INSERT INTO ev (at) SELECT datetime('now', '-' || i || ' days') FROM n;",
    );
    let p = dir.join("p.yaml");
    std::fs::write(
        &p,
        "version: 1\nname: logs\ntarget: \"sqlite:app.db\"\nsteps:\n  purge:\n    retention: { table: ev, column: at, older_than: 40 days }\n  stats:\n    needs: [purge]\n    analyze: {}\n",
    )
    .expect("plan");
    p
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn run_logs_go_to_the_state_directory_and_keep_prunes_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = plan(dir.path());
    let state = dir.path().join("xdg-state");
    let apply = |extra: &[&str]| {
        dbmaint(dir.path())
            .env("XDG_STATE_HOME", &state)
            .args(["plan", "apply", "--auto-approve"])
            .args(extra)
            .arg(&p)
            .output()
            .expect("apply")
    };
    let out = apply(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let logs = state.join("dbmaint/logs");
    let first = names(&logs);
    assert_eq!(first.len(), 2, "the event log and the report: {first:?}");
    assert!(first.iter().all(|n| n.starts_with("logs-run1-")), "{first:?}");
    assert!(
        !names(dir.path()).iter().any(|n| n.contains("log")),
        "nothing in the current directory: {:?}",
        names(dir.path())
    );
    // Two more runs, keeping two: the first run's files go.
    assert!(apply(&[]).status.success());
    assert!(apply(&["--log-keep", "2"]).status.success());
    let kept = names(&logs);
    assert_eq!(kept.len(), 4, "{kept:?}");
    assert!(!kept.iter().any(|n| n.starts_with("logs-run1-")), "{kept:?}");
}

#[test]
fn an_unwritable_log_directory_refuses_the_run_before_any_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = plan(dir.path());
    std::fs::write(dir.path().join("blocked"), b"a file, not a directory").expect("write");
    let out = dbmaint(dir.path())
        .args(["plan", "apply", "--auto-approve", "--log-dir", "blocked/logs"])
        .arg(&p)
        .output()
        .expect("apply");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("blocked/logs") && err.contains("not writable"), "{err}");
    assert_eq!(
        sqlite(&dir.path().join("app.db"), "SELECT count(*) FROM ev"),
        "50",
        "nothing deleted"
    );
    // Not even a journal: the run never started.
    assert_eq!(
        sqlite(
            &dir.path().join("app.db"),
            "SELECT count(*) FROM sqlite_master WHERE name LIKE 'dbmaint%'"
        ),
        "0"
    );
}

/// The run's stderr log lines as JSON objects (`--log-format json`).
fn json_log(dir: &Path, p: &Path, extra: &[&str], env: Option<(&str, &str)>) -> Vec<serde_json::Value> {
    let mut c = dbmaint(dir);
    c.args(["--log-format", "json", "--progress", "never"]).args(extra);
    if let Some((k, v)) = env {
        c.env(k, v);
    }
    let out = c
        .args(["plan", "apply", "--auto-approve"])
        .arg(p)
        .output()
        .expect("apply");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {l}")))
        .collect()
}

#[test]
fn the_stderr_log_has_levels_and_a_json_form_for_log_shippers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = plan(dir.path());
    let events = |v: &[serde_json::Value]| -> Vec<String> {
        v.iter()
            .map(|e| e["event"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let info = json_log(dir.path(), &p, &[], None);
    assert!(
        info.iter().all(|e| e["ts"].is_string() && e["level"].is_string()),
        "{info:?}"
    );
    let names = events(&info);
    assert!(
        names.contains(&"run_started".to_string()) && names.contains(&"step_finished".to_string()),
        "{names:?}"
    );
    assert!(
        !names.contains(&"object_done".to_string()),
        "objects are debug: {names:?}"
    );
    // -v: objects too; -vv: batches too.
    let sqlite_reset = || {
        sqlite(
            &dir.path().join("app.db"),
            "INSERT INTO ev (at) VALUES (datetime('now', '-45 days'))",
        )
    };
    sqlite_reset();
    assert!(events(&json_log(dir.path(), &p, &["-v"], None)).contains(&"object_done".to_string()));
    sqlite_reset();
    let trace = events(&json_log(dir.path(), &p, &["-vv"], None));
    assert!(trace.contains(&"batch_done".to_string()), "{trace:?}");
    // DBMAINT_LOG=warn, or -q: nothing at info.
    for (extra, env) in [(&[][..], Some(("DBMAINT_LOG", "warn"))), (&["-q"][..], None)] {
        let quiet = json_log(dir.path(), &p, extra, env);
        assert!(
            quiet.iter().all(|e| e["level"] == "warn" || e["level"] == "error"),
            "{quiet:?}"
        );
    }
}

#[test]
fn the_plans_logs_keep_prunes_like_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = plan(dir.path());
    let text = std::fs::read_to_string(&p)
        .expect("plan")
        .replace("steps:\n", "logs: { keep: 1 }\nsteps:\n");
    std::fs::write(&p, text).expect("plan");
    for _ in 0..2 {
        let out = dbmaint(dir.path())
            .args(["plan", "apply", "--auto-approve", "--log-dir", "runlogs"])
            .arg(&p)
            .output()
            .expect("apply");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let left = names(&dir.path().join("runlogs"));
    assert_eq!(left.len(), 2, "one run's log and report: {left:?}");
    assert!(left.iter().all(|n| n.starts_with("logs-run2-")), "{left:?}");
}

#[test]
fn progress_always_without_a_terminal_still_logs_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = plan(dir.path());
    let out = dbmaint(dir.path())
        .args(["--progress", "always", "plan", "apply", "--auto-approve"])
        .arg(&p)
        .output()
        .expect("apply");
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("purge (retention) started") && err.contains("purge finished"),
        "stderr is a pipe here: the run is logged, not drawn: {err}"
    );
}

/// Issue 14 §4: without a TTY (captured here), `--progress always` prints a
/// plain progress line every interval beside the log lines — the running
/// retention's rows against its total, with rate and ETA; `auto` keeps the
/// log lines only.
#[test]
fn progress_always_without_a_tty_prints_a_progress_line_every_interval() {
    let run = |progress: &str| {
        let dir = tempfile::tempdir().expect("tempdir");
        sqlite(
            &dir.path().join("app.db"),
            "CREATE TABLE ev (id INTEGER PRIMARY KEY, at TEXT NOT NULL); \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) \
             INSERT INTO ev (at) SELECT datetime('now', '-400 days', '-' || i || ' minutes') FROM n; \
             INSERT INTO ev (at) VALUES (datetime('now'));",
        );
        let p = dir.path().join("p.yaml");
        // 30 batches 100 ms apart: about three seconds of work.
        std::fs::write(
            &p,
            "version: 1\nname: slow\ntarget: \"sqlite:app.db\"\nsteps:\n  purge:\n    \
             retention: { table: ev, column: at, older_than: 365 days, batch_size: 100, pause: 100ms }\n",
        )
        .expect("plan");
        let out = dbmaint(dir.path())
            .env("DBMAINT_PROGRESS_EVERY", "0.5")
            .args(["--progress", progress, "plan", "apply", "--auto-approve"])
            .arg(&p)
            .output()
            .expect("apply");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(sqlite(&dir.path().join("app.db"), "SELECT count(*) FROM ev"), "1");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let err = run("always");
    let progress: Vec<&str> = err.lines().filter(|l| l.contains(" progress ")).collect();
    assert!(progress.len() >= 2, "a line every 0.5 s over ~3 s: {err}");
    assert!(
        progress
            .iter()
            .any(|l| l.contains("0 of 1 steps done; purge (retention) ")
                && l.contains(" of 3,000 rows (")
                && l.contains(" rows/s, ETA ")),
        "{progress:#?}"
    );
    assert!(err.contains("purge (retention) started"), "the log lines stay: {err}");
    let err = run("auto");
    assert!(!err.contains(" progress "), "{err}");
    assert!(err.contains("purge (retention) started"), "{err}");
}

//! A scratch directory to run the CLI in, the way an operator does
//! (just's `Test`): write a plan, run `plan diff` / `plan apply`, get a
//! [`Ran`] with the exit code, the JSON document and the output as text.
//!
//! ```ignore
//! let t = Test::new();
//! let p = t.retention_plan(&target, "table: ev, column: ts, older_than: 30 days");
//! let Ran { code, json, stderr, .. } = t.diff(&p);
//! assert!(t.apply(&p).success());
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use crate::support::cli::dbmaint;

/// One test's scratch directory (removed when dropped).
pub(crate) struct Test {
    dir: tempfile::TempDir,
}

/// What one command did.
#[derive(Debug)]
pub(crate) struct Ran {
    /// The exit code; `None` when the process was killed (`apply_within`).
    pub code: Option<i32>,
    pub status: ExitStatus,
    /// The whole JSON document printed (`Null` for text output).
    pub json: serde_json::Value,
    /// `json["report"]`: an apply's report.
    pub report: serde_json::Value,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

impl Test {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `plan.yaml`: one retention step `purge` with `params` inline.
    pub fn retention_plan(&self, target: &str, params: &str) -> PathBuf {
        let path = self.path().join("plan.yaml");
        std::fs::write(
            &path,
            format!("version: 1\nname: rt\ntarget: \"{target}\"\nsteps:\n  purge:\n    retention: {{ {params} }}\n"),
        )
        .expect("plan");
        path
    }

    /// `plan diff --output json PLAN`.
    pub fn diff(&self, plan: &Path) -> Ran {
        self.run(&["--output", "json", "plan", "diff"], plan, None)
    }

    /// `plan apply --auto-approve PLAN`, text output, logs in `logs/`.
    pub fn apply(&self, plan: &Path) -> Ran {
        self.run(&["plan", "apply", "--auto-approve", "--log-dir", "logs"], plan, None)
    }

    /// The same with `--output json` (see [`Ran::report`]).
    pub fn apply_json(&self, plan: &Path) -> Ran {
        let ran = self.run(JSON_APPLY, plan, None);
        assert!(
            !ran.json.is_null(),
            "apply printed no JSON: {}\n{}",
            ran.stdout,
            ran.stderr
        );
        ran
    }

    /// [`Self::apply_json`], the process killed past `limit` (its code is
    /// then `None`).
    pub fn apply_within(&self, plan: &Path, limit: Duration) -> Ran {
        self.run(JSON_APPLY, plan, Some(limit))
    }

    fn run(&self, args: &[&str], plan: &Path, limit: Option<Duration>) -> Ran {
        let mut cmd = dbmaint(self.path());
        cmd.args(args).arg(plan);
        if let Some(l) = limit {
            cmd.timeout(l);
        }
        let out = cmd.output().expect("run dbmaint");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        Ran {
            code: out.status.code(),
            status: out.status,
            report: json["report"].clone(),
            json,
            stdout: String::from_utf8_lossy(&out.stdout).to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        }
    }
}

/// `plan apply --output json` started in `dir` and left running (to kill
/// it, or its children, midway), its output piped.
pub(crate) fn spawn_apply(dir: &Path, plan: &Path) -> std::process::Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("dbmaint"))
        .current_dir(dir)
        .env("XDG_STATE_HOME", dir.join(".state"))
        .args(JSON_APPLY)
        .arg(plan)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn dbmaint")
}

const JSON_APPLY: &[&str] = &[
    "--output",
    "json",
    "plan",
    "apply",
    "--auto-approve",
    "--log-dir",
    "logs",
];

/// Runs SQL with the sqlite3 binary; its trimmed output.
pub(crate) fn sqlite(db: &Path, sql: &str) -> String {
    let out = std::process::Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("sqlite3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The rows the diff says its first (retention) step deletes.
pub(crate) fn retention_rows(diff: &serde_json::Value) -> u64 {
    diff["steps"][0]["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .find(|o| o["kind"] == "table")
        .and_then(|o| o["figures"]["rows"].as_u64())
        .expect("rows")
}

/// A directory of stand-ins for the PostgreSQL client tools (and a
/// `pg_config` naming it as the bindir): each records its call in `calls`
/// and then runs the real tool. Returns the `PATH` that puts them first.
pub(crate) fn recording_path(dir: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let real = pg_bindir();
    let bin = dir.join("fakebin");
    std::fs::create_dir_all(&bin).expect("fakebin");
    let calls = dir.join("calls");
    for tool in ["pg_dump", "pg_restore", "psql", "pg_dumpall", "createdb", "dropdb"] {
        let path = bin.join(tool);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"{tool} $*\" >> '{}'\nexec '{real}/{tool}' \"$@\"\n",
                calls.display()
            ),
        )
        .expect("stand-in");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let config = bin.join("pg_config");
    std::fs::write(
        &config,
        format!(
            "#!/bin/sh\nif [ \"$1\" = --bindir ]; then echo '{}'; else exec '{real}/pg_config' \"$@\"; fi\n",
            bin.display()
        ),
    )
    .expect("pg_config");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default())
}

/// What `plans/demo.yaml` must have done to the demo database `db`, row by
/// row against `backup` (the database as the run found it: the backup is
/// its first step): removed exactly the rows past each cutoff, kept the
/// others unchanged, moved failed tasks to the archive intact before the
/// purge, and journaled each step's rows.
pub(crate) fn assert_demo_plan_ran(db: &Path, backup: &Path) {
    // `b` is the database as the run found it: the backup came first.
    let attach = format!("ATTACH '{}' AS b;", backup.display());
    let n = |sql: &str| -> i64 {
        let v = sqlite(db, &format!("{attach} {sql}"));
        v.parse().unwrap_or_else(|_| panic!("{sql}: {v}"))
    };
    let journaled = |step: &str| n(&format!("SELECT rows FROM main.dbmaint_steps WHERE step = '{step}'"));
    for (step, table, column, age) in [
        ("audit-logs", "core_audit_log", "created_at", "-90 days"),
        ("task-logs", "core_task_log", "created_at", "-30 days"),
        ("sessions", "django_session", "expire_date", "-0 days"),
    ] {
        let gone = n(&format!(
            "SELECT count(*) FROM (SELECT * FROM b.{table} EXCEPT SELECT * FROM main.{table})"
        ));
        assert!(gone > 0, "{step}: the seed has rows to remove");
        assert_eq!(gone, journaled(step), "{step}: the journal counts the rows removed");
        // A minute either side of the cutoff: the run's reference time is
        // a moment before this check's `now`.
        let young_gone = n(&format!(
            "SELECT count(*) FROM (SELECT * FROM b.{table} WHERE {column} >= datetime('now', '{age}', '+1 minute') \
             EXCEPT SELECT * FROM main.{table})"
        ));
        assert_eq!(young_gone, 0, "{step}: no row younger than the cutoff was removed");
        let old_kept = n(&format!(
            "SELECT count(*) FROM main.{table} WHERE {column} < datetime('now', '{age}', '-1 minute')"
        ));
        assert_eq!(old_kept, 0, "{step}: no row older than the cutoff is left");
        let changed = n(&format!(
            "SELECT count(*) FROM (SELECT * FROM main.{table} EXCEPT SELECT * FROM b.{table})"
        ));
        assert_eq!(changed, 0, "{step}: the rows kept are the rows that were there");
    }
    // failed_task: moved to the archive (content intact), then the archive
    // purged of what is older than 730 days.
    let cols = "id, task_name, error, created_at, deleted_at";
    let moved = n(&format!(
        "SELECT count(*) FROM (SELECT {cols} FROM b.failed_task EXCEPT SELECT {cols} FROM main.failed_task)"
    ));
    assert!(moved > 0, "the seed has failed tasks to archive");
    assert_eq!(moved, journaled("failed-tasks-archive"));
    let archived = n("SELECT count(*) FROM main.failed_task_archive");
    assert_eq!(
        n(&format!(
            "SELECT count(*) FROM (SELECT {cols} FROM main.failed_task_archive EXCEPT SELECT {cols} FROM b.failed_task)"
        )),
        0,
        "the archive holds the source's rows as they were"
    );
    assert_eq!(
        n(&format!(
            "SELECT count(*) FROM (SELECT {cols} FROM b.failed_task \
               WHERE deleted_at < datetime('now', '-365 days', '-1 minute') \
                 AND deleted_at >= datetime('now', '-730 days', '+1 minute') \
             EXCEPT SELECT {cols} FROM main.failed_task_archive)"
        )),
        0,
        "every row moved and younger than the purge is in the archive"
    );
    assert_eq!(
        moved - archived,
        journaled("failed-tasks-purge"),
        "the purge removed the rest"
    );
}

/// The machine's PostgreSQL client tools' directory (`pg_config --bindir`).
pub(crate) fn pg_bindir() -> String {
    String::from_utf8(
        std::process::Command::new("pg_config")
            .arg("--bindir")
            .output()
            .expect("pg_config")
            .stdout,
    )
    .expect("utf-8")
    .trim()
    .to_string()
}

/// An apply whose cleanup failed: exit 5, and the report's "LEFT FOR YOU"
/// naming `what`. Returns its stdout.
pub(crate) fn assert_left_for_you(out: &std::process::Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(5),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("LEFT FOR YOU") && stdout.contains(what),
        "the report names what is left ({what}): {stdout}"
    );
    stdout
}

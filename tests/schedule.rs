//! `dbmaint schedule export` (issue 13 §1): each artifact checked by the
//! tool that will run it — the crontab line run by /bin/sh from `/` as cron
//! would, the systemd units by `systemd-analyze verify` and their calendars
//! by `systemd-analyze calendar` against croner, the Kubernetes manifests
//! by `kubernetes-validate` against the API schemas. A tool that is
//! missing fails the test in CI (`.ci/run` installs them) and is named
//! when skipped elsewhere.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::cli::dbmaint;
use crate::support::test::sqlite;

/// A SQLite plan in `dir/my plans/` (a space, as real paths have) with a
/// relative target and backup dir, so that only the working directory
/// makes them right.
fn sqlite_plan(dir: &Path, schedule: &str, tz: &str) -> PathBuf {
    let plans = dir.join("my plans");
    std::fs::create_dir_all(plans.join("env")).expect("mkdir");
    sqlite(
        &dir.join("app.db"),
        "CREATE TABLE ev (id INTEGER PRIMARY KEY, at TEXT NOT NULL); \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) \
         INSERT INTO ev (at) SELECT datetime('now', '-' || i || ' days') FROM n;",
    );
    let plan = plans.join("nightly.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: nightly\ntarget: \"sqlite:app.db\"\nschedule: \"{schedule}\"\n\
             limits: {{ max_runtime: 30m, tz: {tz} }}\n\
             steps:\n  dump:\n    backup: {{ dir: backups }}\n  purge:\n    needs: [dump]\n\
             \x20   retention: {{ table: ev, column: at, older_than: 30 days }}\n"
        ),
    )
    .expect("plan");
    std::fs::write(plans.join("env/prod.yaml"), "limits: { max_runtime: 40m }\n").expect("overlay");
    plan
}

fn export(dir: &Path, plan: &Path, args: &[&str]) -> std::process::Output {
    dbmaint(dir)
        .args(["schedule", "export"])
        .arg(plan)
        .args(args)
        .output()
        .expect("export")
}

/// A tool the test needs: its path, or `None` (and a line saying so)
/// outside CI; in CI its absence fails the test.
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "`{name}` is not installed; .ci/run installs it"
        );
        eprintln!("skipped: `{name}` is not installed (.ci/run installs it)");
    }
    found
}

#[test]
fn cron_line_runs_as_printed_from_slash_with_a_plain_shell() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = sqlite_plan(dir.path(), "30 4 * * 1-5", "Europe/Paris");
    let logs = dir.path().join("state logs");
    let out = export(
        dir.path(),
        &plan,
        &[
            "--format",
            "cron",
            "--env",
            "prod",
            "--log-dir",
            logs.to_str().expect("utf-8"),
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("\nCRON_TZ=Europe/Paris\n"), "{text}");
    let line = text
        .lines()
        .find(|l| !l.starts_with('#') && !l.starts_with("CRON_TZ"))
        .expect("the entry");
    let fields: Vec<&str> = line.splitn(6, ' ').collect();
    assert_eq!(fields[..5], ["30", "4", "*", "*", "1-5"], "{line}");
    // What cron does with the command: `\%` → `%`, then /bin/sh -c, from
    // `/`, with a bare environment.
    let command = fields[5].replace("\\%", "%");
    let run = Command::new("/bin/sh")
        .arg("-c")
        .arg(&command)
        .current_dir("/")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", dir.path())
        .output()
        .expect("sh");
    assert!(
        run.status.success(),
        "{command}\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let db = dir.path().join("app.db");
    assert_eq!(
        sqlite(&db, "SELECT count(*) FROM ev"),
        "29",
        "the plan ran on the right file"
    );
    assert_eq!(crate::support::cli::backup_files(&dir.path().join("backups")).len(), 1);
    let mut logged: Vec<String> = std::fs::read_dir(&logs)
        .expect("log dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .collect();
    logged.sort();
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert!(
        logged[0].starts_with("nightly-run1-") && logged[0].ends_with(".jsonl") && logged[1].ends_with(".report.json"),
        "the run's event log and report in the given directory: {logged:?}"
    );
}

#[test]
fn systemd_units_pass_systemd_analyze_and_fire_when_croner_says() {
    let Some(analyze) = tool("systemd-analyze") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = sqlite_plan(dir.path(), "*/20 6-8 1,15 * Mon", "UTC");
    let units = dir.path().join("units");
    let out = dbmaint(dir.path())
        .args(["schedule", "export"])
        .arg(&plan)
        .args([
            "--format",
            "systemd",
            "--env",
            "prod",
            "--randomized-delay",
            "300",
            "--out-dir",
        ])
        .arg(&units)
        .output()
        .expect("export");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let service = units.join("dbmaint-nightly-prod.service");
    let timer = units.join("dbmaint-nightly-prod.timer");
    let text = std::fs::read_to_string(&service).expect("service");
    assert!(text.contains("Type=oneshot") && !text.contains("\nRestart="), "{text}");
    // max_runtime 40m from the overlay, plus 5 minutes.
    assert!(text.contains("TimeoutStartSec=2700\n"), "{text}");
    assert!(
        text.contains("\"/") && text.contains("my plans/nightly.yaml\""),
        "quoted path: {text}"
    );
    let verify = Command::new(&analyze)
        .args(["verify", "--man=no"])
        .arg(&service)
        .arg(&timer)
        .output()
        .expect("systemd-analyze verify");
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    // Either day (the 1st/15th, or a Monday): two calendars, whose union
    // is croner's schedule.
    let timer_text = std::fs::read_to_string(&timer).expect("timer");
    let calendars: Vec<&str> = timer_text
        .lines()
        .filter_map(|l| l.strip_prefix("OnCalendar="))
        .collect();
    assert_eq!(calendars.len(), 2, "{timer_text}");
    let mut fired: Vec<String> = vec![];
    for c in &calendars {
        fired.extend(next_elapses(&analyze, c, 30));
    }
    fired.sort();
    fired.dedup();
    let croner = croner_times("*/20 6-8 1,15 * Mon", 80);
    // systemd counts from now, croner from a minute ago: systemd's first 30
    // of the union are croner's, in order, from where they start.
    let first = croner
        .iter()
        .position(|t| *t == fired[0])
        .expect("systemd's first elapse is croner's");
    assert_eq!(fired[..30], croner[first..first + 30], "calendars {calendars:?}");
}

/// `systemd-analyze calendar --iterations=N`: the elapses, as
/// `YYYY-MM-DD HH:MM` in UTC.
fn next_elapses(analyze: &Path, calendar: &str, n: usize) -> Vec<String> {
    let out = Command::new(analyze)
        .env("TZ", "UTC")
        .args(["calendar", &format!("--iterations={n}"), calendar])
        .output()
        .expect("systemd-analyze calendar");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let re =
        regex::Regex::new(r"(?:Next elapse|Iter\. #\d+): \w{3} (\d{4}-\d{2}-\d{2} \d{2}:\d{2}):00 UTC").expect("re");
    re.captures_iter(&String::from_utf8_lossy(&out.stdout))
        .map(|c| c[1].to_string())
        .collect()
}

/// croner's next `n` firing times from a minute ago, in UTC.
fn croner_times(schedule: &str, n: usize) -> Vec<String> {
    let cron = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .build()
        .parse(schedule)
        .expect("croner");
    let from = chrono::Utc::now() - chrono::Duration::minutes(1);
    cron.iter_after(from)
        .take(n)
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .collect()
}

#[test]
fn kubernetes_manifests_pass_the_api_schemas_and_carry_no_secret() {
    let Some(validate) = tool("kubernetes-validate") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = sqlite_plan(dir.path(), "0 2 * * *", "Europe/Berlin");
    let out = export(
        dir.path(),
        &plan,
        &[
            "--format",
            "kubernetes",
            "--env",
            "prod",
            "--image",
            "registry.example/dbmaint:1.2",
            "--volume-claim",
            "dbmaint-work",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let manifest = dir.path().join("k8s.yaml");
    std::fs::write(&manifest, &out.stdout).expect("write");
    let check = |file: &Path| {
        Command::new(&validate)
            .args(["--strict", "--quiet"])
            .arg(file)
            .output()
            .expect("kubernetes-validate")
    };
    let ok = check(&manifest);
    assert!(
        ok.status.success(),
        "{}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    let docs: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .split("\n---\n")
        .skip(1)
        .map(|d| serde_saphyr::from_str(d).expect("YAML document"))
        .collect();
    let (cm, cj) = (&docs[0], &docs[1]);
    assert_eq!(cm["kind"], "ConfigMap");
    assert!(
        cm["data"]["nightly.yaml"]
            .as_str()
            .unwrap_or("")
            .contains("name: nightly")
    );
    assert_eq!(cm["data"]["env.prod.yaml"], "limits: { max_runtime: 40m }\n");
    let spec = &cj["spec"];
    assert_eq!(spec["schedule"], "0 2 * * *");
    assert_eq!(spec["timeZone"], "Europe/Berlin");
    assert_eq!(spec["concurrencyPolicy"], "Forbid");
    let job = &spec["jobTemplate"]["spec"];
    assert_eq!(job["backoffLimit"], 0);
    assert_eq!(job["activeDeadlineSeconds"], 2700);
    let pod = &job["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "registry.example/dbmaint:1.2");
    assert_eq!(
        c["args"],
        serde_json::json!([
            "plan",
            "apply",
            "/etc/dbmaint/plan/nightly.yaml",
            "--env",
            "prod",
            "--auto-approve",
            "--progress",
            "never",
            "--log-dir",
            "/var/log/dbmaint"
        ])
    );
    assert_eq!(c["envFrom"][0]["secretRef"]["name"], "dbmaint-nightly-prod-secrets");
    assert_eq!(pod["volumes"][2]["persistentVolumeClaim"]["claimName"], "dbmaint-work");
    // The validator is real: a field the API does not have is refused.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        String::from_utf8_lossy(&out.stdout).replace(
            "concurrencyPolicy: Forbid",
            "concurrencyPolicy: Forbid\n  concurrency: 1",
        ),
    )
    .expect("write");
    assert!(
        !check(&bad).status.success(),
        "strict validation refuses an unknown field"
    );
}

#[test]
fn refusals_name_what_to_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("p.yaml");
    std::fs::write(
        &plan,
        "version: 1\nname: p\ntarget: \"sqlite:a.db\"\nsteps:\n  a:\n    analyze: {}\n",
    )
    .expect("plan");
    let out = export(dir.path(), &plan, &["--format", "cron"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("has no `schedule`") && err.contains("schedule: \"0 3 * * *\""),
        "{err}"
    );
    let other = tempfile::tempdir().expect("tempdir");
    let plan = sqlite_plan(other.path(), "0 0 L * *", "UTC");
    let out = export(dir.path(), &plan, &["--format", "systemd"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`L` is a croner extension"));
    std::fs::write(
        &plan,
        std::fs::read_to_string(&plan)
            .expect("plan")
            .replace("0 0 L * *", "0 3 * * *"),
    )
    .expect("plan");
    let out = export(
        dir.path(),
        &plan,
        &["--format", "kubernetes", "--target", "postgres://app:s3cret@db/app"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("carries a password") && !err.contains("s3cret"), "{err}");
}

#[test]
fn kubernetes_fleet_export_is_an_indexed_job_with_one_pod_per_target() {
    let Some(validate) = tool("kubernetes-validate") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = sqlite_plan(dir.path(), "0 2 * * *", "UTC");
    let inventory = dir.path().join("targets.yaml");
    std::fs::write(
        &inventory,
        "targets:\n  eu: { url_env: EU_URL, labels: { tier: prod } }\n  us: { url_env: US_URL, labels: { tier: prod } }\n  \
         dev: { url_env: DEV_URL, labels: { tier: dev } }\n",
    )
    .expect("inventory");
    let out = dbmaint(dir.path())
        .env("EU_URL", "postgres://maint@eu/app")
        .env("US_URL", "postgres://maint@us/app")
        .env("DEV_URL", "postgres://maint@dev/app")
        .args(["schedule", "export"])
        .arg(&plan)
        .args([
            "--format",
            "kubernetes",
            "--select",
            "tier=prod",
            "--fleet-parallelism",
            "1",
            "--targets",
        ])
        .arg(&inventory)
        .output()
        .expect("export");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let manifest = dir.path().join("fleet.yaml");
    std::fs::write(&manifest, &out.stdout).expect("write");
    let check = Command::new(&validate)
        .args(["--strict", "--quiet"])
        .arg(&manifest)
        .output()
        .expect("validate");
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    let text = String::from_utf8_lossy(&out.stdout);
    let docs: Vec<serde_json::Value> = text
        .split("\n---\n")
        .skip(1)
        .map(|d| serde_saphyr::from_str(d).expect("YAML"))
        .collect();
    assert!(
        docs[0]["data"]["targets.yaml"]
            .as_str()
            .unwrap_or("")
            .contains("url_env: EU_URL")
    );
    let job = &docs[1]["spec"]["jobTemplate"]["spec"];
    assert_eq!(job["completionMode"], "Indexed");
    assert_eq!(job["completions"], 2, "two prod targets");
    assert_eq!(job["parallelism"], 1);
    assert_eq!(job["backoffLimitPerIndex"], 0, "one target's failure is its own");
    // Two waves of one pod: twice one run's deadline (30m + 5m).
    assert_eq!(job["activeDeadlineSeconds"], 2 * 2100);
    let args: Vec<String> = job["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().unwrap_or("").to_string())
        .collect();
    let joined = args.join(" ");
    assert!(
        joined.contains(
            "--targets /etc/dbmaint/plan/targets.yaml --select tier=prod --target-index $(JOB_COMPLETION_INDEX)"
        ),
        "{joined}"
    );
    assert!(
        !text.contains("postgres://maint@"),
        "no URL in the manifest: the Secret holds them"
    );
}

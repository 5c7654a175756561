//! `plan diff|apply --targets FILE`: one plan over every selected database
//! of an inventory. Each target runs in a `dbmaint` child process of its
//! own — its own connections, lock, journal and log directory, its URL in
//! the child's environment (`DBMAINT_TARGET`), never in its argv — at most
//! `--fleet-parallelism` at once, so one slow or unreachable database holds
//! one slot and never the others. The parent connects nowhere; it prints
//! each target's outcome as it ends, then a summary, and exits with the
//! worst code. `--target-index N` instead runs the Nth target in this
//! process (a Kubernetes Indexed Job's pod).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use dbmaint::fleet::{FleetTarget, Inventory};
use dbmaint::run::execplan::human_count;
use dbmaint::run::exit;

use crate::{ApplyArgs, Cli, FleetArgs, Output, PlanArgs};

/// How a diff or apply command runs.
pub(crate) enum Mode {
    /// On one target (no inventory, or `--target-index`).
    One(PlanArgs),
    /// On these targets, in child processes.
    Fleet(Vec<FleetTarget>),
}

/// What each child does.
pub(crate) enum Job<'a> {
    Diff { detailed: bool },
    Apply(&'a ApplyArgs),
}

/// Reads the inventory, if any, and decides the mode.
pub(crate) fn mode(plan: &PlanArgs, fleet: &FleetArgs) -> Result<Mode, i32> {
    let Some(file) = &fleet.targets else {
        return Ok(Mode::One(plan.clone()));
    };
    let refuse = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        exit::ERROR
    };
    let inventory = Inventory::load(file, &|k| std::env::var(k).ok()).map_err(|e| refuse(&e))?;
    let chosen = inventory.select(&fleet.select).map_err(|e| refuse(&e))?;
    match fleet.target_index {
        Some(i) => {
            let t = chosen.get(i).ok_or_else(|| {
                refuse(&dbmaint::fleet::InventoryError::Index {
                    index: i,
                    count: chosen.len(),
                })
            })?;
            Ok(Mode::One(for_target(plan, t)))
        }
        None => Ok(Mode::Fleet(chosen.into_iter().cloned().collect())),
    }
}

/// The plan arguments of one target: its URL, its overlay (else the
/// command line's), its variables before the command line's (which win).
fn for_target(plan: &PlanArgs, t: &FleetTarget) -> PlanArgs {
    PlanArgs {
        plan: plan.plan.clone(),
        env: t.env.clone().or_else(|| plan.env.clone()),
        vars: t.vars.iter().chain(&plan.vars).cloned().collect(),
        target: Some(t.target.expose_url().to_string()),
    }
}

/// One target's outcome.
#[derive(Debug, serde::Serialize)]
struct Outcome {
    name: String,
    exit_code: i32,
    status: String,
    duration_ms: u64,
    /// Rows deleted (apply) or to delete (diff), when the child said.
    rows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The child's own JSON document (its diff, or diff and report).
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    document: serde_json::Value,
}

pub(crate) async fn run(cli: &Cli, plan: &PlanArgs, fleet: &FleetArgs, targets: &[FleetTarget], job: Job<'_>) -> i32 {
    if let Job::Apply(a) = &job
        && !a.auto_approve
    {
        eprintln!(
            "error: a fleet apply does not ask target by target: review with `plan diff --targets`, then apply with --auto-approve"
        );
        return exit::ERROR;
    }
    let log_root = match &job {
        Job::Apply(a) => match crate::state::log_dir(a.log_dir.as_deref())
            .and_then(|d| crate::state::ensure_writable(&d).map(|()| d))
        {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::ERROR;
            }
        },
        Job::Diff { .. } => None,
    };
    let plan_file = std::path::absolute(&plan.plan).unwrap_or_else(|_| plan.plan.clone());
    let binary = match std::env::current_exe() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot find this dbmaint to run per target: {e}");
            return exit::ERROR;
        }
    };
    let n = fleet.fleet_parallelism.max(1);
    if cli.output == Output::Text && !cli.quiet {
        eprintln!(
            "{} plan `{}` on {} target{}, {} at a time",
            match job {
                Job::Diff { .. } => "diff of",
                Job::Apply(_) => "apply of",
            },
            plan.plan.display(),
            targets.len(),
            if targets.len() == 1 { "" } else { "s" },
            n.min(targets.len())
        );
    }
    let started = Instant::now();
    let slots = Arc::new(tokio::sync::Semaphore::new(n));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, t) in targets.iter().enumerate() {
        let args = child_args(&job, &for_target(plan, t), &plan_file, log_root.as_deref(), &t.name);
        let (binary, slots, url, name) = (
            binary.clone(),
            slots.clone(),
            t.target.expose_url().to_string(),
            t.name.clone(),
        );
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await;
            (i, run_child(&binary, &args, &url, &name).await)
        });
    }
    let mut outcomes: Vec<Option<Outcome>> = targets.iter().map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let Ok((i, o)) = joined else { continue };
        if cli.output == Output::Text && !cli.quiet {
            eprintln!("  {}", line(&o));
        }
        outcomes[i] = Some(o);
    }
    let outcomes: Vec<Outcome> = outcomes.into_iter().flatten().collect();
    let worst = worst(outcomes.iter().map(|o| o.exit_code));
    match cli.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "targets": outcomes,
                "exit_code": worst,
                "duration_ms": started.elapsed().as_millis() as u64,
            }))
            .unwrap_or_default()
        ),
        Output::Text => print!("{}", summary(&outcomes, worst, started.elapsed().as_millis() as u64)),
    }
    worst
}

/// The child's command line: everything but the URL, which goes in its
/// environment.
fn child_args(job: &Job, one: &PlanArgs, plan_file: &Path, log_root: Option<&Path>, name: &str) -> Vec<String> {
    let mut a: Vec<String> = vec!["--output".into(), "json".into(), "--progress".into(), "never".into()];
    match job {
        Job::Diff { detailed } => {
            a.extend(["plan".into(), "diff".into(), plan_file.display().to_string()]);
            if *detailed {
                a.push("--detailed-exitcode".into());
            }
        }
        Job::Apply(args) => {
            a.extend([
                "plan".into(),
                "apply".into(),
                plan_file.display().to_string(),
                "--auto-approve".into(),
            ]);
            a.extend(["--parallelism".into(), args.parallelism.to_string()]);
            for s in &args.steps {
                a.extend(["--step".into(), s.clone()]);
            }
            if args.accept_drift {
                a.push("--accept-drift".into());
            }
            if let Some(k) = args.log_keep {
                a.extend(["--log-keep".into(), k.to_string()]);
            }
            if let Some(root) = log_root {
                a.extend(["--log-dir".into(), root.join(name).display().to_string()]);
            }
            if let Some(m) = &args.metrics_file {
                // One file per target, beside the one asked for.
                a.extend(["--metrics-file".into(), per_target(m, name).display().to_string()]);
            }
        }
    }
    if let Some(e) = &one.env {
        a.extend(["--env".into(), e.clone()]);
    }
    for v in &one.vars {
        a.extend(["--var".into(), v.clone()]);
    }
    a
}

/// `metrics/dbmaint.prom` → `metrics/dbmaint-NAME.prom`.
fn per_target(path: &Path, name: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    path.with_file_name(format!("{stem}-{name}{ext}"))
}

async fn run_child(binary: &Path, args: &[String], url: &str, name: &str) -> Outcome {
    let started = Instant::now();
    let out = tokio::process::Command::new(binary)
        .args(args)
        .env("DBMAINT_TARGET", url)
        .env_remove("DATABASE_URL")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await;
    let duration_ms = started.elapsed().as_millis() as u64;
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            return Outcome {
                name: name.to_string(),
                exit_code: exit::ERROR,
                status: "failed".into(),
                duration_ms,
                rows: None,
                error: Some(format!("cannot start dbmaint for this target: {e}")),
                document: serde_json::Value::Null,
            };
        }
    };
    let code = out.status.code().unwrap_or(exit::ERROR);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let error = doc["error"].as_str().map(str::to_string).or_else(|| {
        (code != exit::OK && code != exit::CHANGES)
            .then(|| last_line(&stderr))
            .flatten()
    });
    let rows = doc["report"]["totals"]["rows"]
        .as_u64()
        .or_else(|| doc["totals"]["rows_to_remove"].as_u64());
    let status = doc["report"]["status"].as_str().map(str::to_string).unwrap_or_else(|| {
        match code {
            exit::OK => "no changes",
            exit::CHANGES => "changes",
            exit::LOCKED => "locked",
            _ => "failed",
        }
        .to_string()
    });
    Outcome {
        name: name.to_string(),
        exit_code: code,
        status,
        duration_ms,
        rows,
        error,
        document: doc,
    }
}

fn last_line(text: &str) -> Option<String> {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
}

/// The worst of the exit codes: a cleanup left for a person, an error, a
/// lock held elsewhere, findings, a signal, limits, changes, success.
fn worst(codes: impl Iterator<Item = i32>) -> i32 {
    let rank = |c: i32| match c {
        exit::OK => 0,
        exit::CHANGES => 1,
        exit::LIMITS => 2,
        exit::INTERRUPTED => 3,
        exit::ALERT => 4,
        exit::LOCKED => 5,
        exit::CLEANUP_FAILED => 7,
        _ => 6,
    };
    codes.max_by_key(|c| rank(*c)).unwrap_or(exit::OK)
}

fn line(o: &Outcome) -> String {
    format!(
        "{}: {} in {:.2} s{}{}",
        o.name,
        o.status,
        o.duration_ms as f64 / 1000.0,
        o.rows.map(|r| format!(", {} rows", human_count(r))).unwrap_or_default(),
        o.error.as_ref().map(|e| format!(" — {e}")).unwrap_or_default()
    )
}

fn summary(outcomes: &[Outcome], worst: i32, duration_ms: u64) -> String {
    let width = outcomes.iter().map(|o| o.name.len()).max().unwrap_or(6).max(6);
    let mut out = format!(
        "\n{:<width$}  {:<14} {:>9} {:>12}  exit\n",
        "target", "status", "duration", "rows"
    );
    for o in outcomes {
        out.push_str(&format!(
            "{:<width$}  {:<14} {:>8.2}s {:>12}  {}{}\n",
            o.name,
            o.status,
            o.duration_ms as f64 / 1000.0,
            o.rows.map(human_count).unwrap_or_else(|| "-".into()),
            o.exit_code,
            o.error
                .as_ref()
                .map(|e| format!("  {}", dbmaint::report::textsafe::visible(e)))
                .unwrap_or_default()
        ));
    }
    let ok = outcomes
        .iter()
        .filter(|o| o.exit_code == exit::OK || o.exit_code == exit::CHANGES)
        .count();
    out.push_str(&format!(
        "\n{} targets in {:.2} s: {ok} ok, {} not; exit code {worst} (the worst)\n",
        outcomes.len(),
        duration_ms as f64 / 1000.0,
        outcomes.len() - ok
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_code_wins() {
        assert_eq!(worst([0, 2, 0].into_iter()), 2);
        assert_eq!(worst([0, 4, 1, 3].into_iter()), 1);
        assert_eq!(worst([6, 3, 0].into_iter()), 6);
        assert_eq!(worst([1, 5].into_iter()), 5);
        assert_eq!(worst(std::iter::empty()), 0);
    }

    #[test]
    fn a_childs_argv_never_holds_its_url() {
        let one = PlanArgs {
            plan: "p.yaml".into(),
            env: Some("prod".into()),
            vars: vec!["days=3".into()],
            target: Some("postgres://maint:s3cret@db/app".into()),
        };
        let args = child_args(&Job::Diff { detailed: true }, &one, Path::new("/p.yaml"), None, "eu");
        assert!(
            !args.iter().any(|a| a.contains("s3cret") || a.contains("postgres://")),
            "{args:?}"
        );
        assert!(args.windows(2).any(|w| w == ["--env", "prod"]) && args.windows(2).any(|w| w == ["--var", "days=3"]));
    }

    #[test]
    fn metrics_files_are_one_per_target() {
        assert_eq!(
            per_target(Path::new("/m/dbmaint.prom"), "eu"),
            Path::new("/m/dbmaint-eu.prom")
        );
    }
}

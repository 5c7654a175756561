//! The database commands of the command line: `plan diff`, `plan apply`,
//! `history` and `demo`. They load, call `dbmaint::run`, render, and pick
//! the exit code; nothing here decides what a step does.

use std::io::{IsTerminal, Write as _};
use std::path::Path;

use dbmaint::report::diff as render;
use dbmaint::run::execplan::{ExecutionPlan, SAVED_FORMAT, SavedPlan};
use dbmaint::run::exit;
use dbmaint::run::{self, ApplyOptions, Failure};

use crate::{ApplyArgs, Cli, Output, PlanArgs, Progress, TargetArgs, report};

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
}

/// Prints a command-ending error on stderr (or as JSON) and gives its code.
pub(crate) fn fail(cli: &Cli, f: &Failure) -> i32 {
    match cli.output {
        Output::Json => println!("{}", serde_json::json!({"error": f.message, "exit_code": f.code})),
        Output::Text => eprintln!("error: {}", dbmaint::report::textsafe::visible(&f.message)),
    }
    f.code
}

/// A loaded, valid plan with its target and the run's reference time.
struct Ready {
    loaded: dbmaint::Loaded,
    target: dbmaint::plan::values::Target,
    now: chrono::DateTime<chrono::Utc>,
}

fn prepare(cli: &Cli, args: &PlanArgs, now: Option<&str>) -> Result<Ready, i32> {
    let mut opts = dbmaint::LoadOptions::from_process();
    opts.env = args.env.clone();
    opts.vars = args.vars.clone();
    opts.target = args.target.clone();
    if let Some(now) = now {
        opts.now = now.to_string();
    }
    let loaded = dbmaint::load(&args.plan, &opts);
    if !loaded.is_valid() {
        if cli.output == Output::Json {
            println!(
                "{}",
                serde_json::to_string_pretty(&dbmaint::plan::diag::to_json(&loaded.diags, &loaded.sources))
                    .unwrap_or_default()
            );
        } else {
            report(cli, &loaded);
        }
        return Err(exit::ERROR);
    }
    let plan = loaded.plan.as_ref().expect("a valid load has a plan");
    let target = run::target_of(plan).map_err(|f| fail(cli, &f))?;
    let now = chrono::DateTime::parse_from_rfc3339(&opts.now)
        .map(|d| d.to_utc())
        .unwrap_or_else(|_| chrono::Utc::now());
    Ok(Ready { loaded, target, now })
}

/// `digest`: also digest each retention step's eligible keys (for saving a
/// plan, or checking a saved one).
async fn compute(cli: &Cli, r: &Ready, digest: bool) -> Result<ExecutionPlan, i32> {
    let (Some(plan), Some(graph)) = (&r.loaded.plan, &r.loaded.graph) else {
        return Err(exit::ERROR);
    };
    run::compute(plan, graph, &r.target, r.now, digest, &dbmaint::ops::REGISTRY)
        .await
        .map_err(|f| fail(cli, &f))
}

fn print_diff(cli: &Cli, ep: &ExecutionPlan) {
    match cli.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&render::render_json(ep)).unwrap_or_default()
        ),
        Output::Text => print!("{}", render::render_text(ep, cli.verbose > 0)),
    }
}

/// `dbmaint grants PLAN`: every privilege the plan needs, as the
/// statements an administrator runs; those the role holds commented out.
pub async fn grants(cli: &Cli, args: &PlanArgs) -> i32 {
    let ready = match prepare(cli, args, None) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let ep = match compute(cli, &ready, false).await {
        Ok(ep) => ep,
        Err(code) => return code,
    };
    let mut rows: Vec<(String, &dbmaint::run::execplan::Need)> = ep
        .privileges
        .iter()
        .map(|n| ("the run (journal)".to_string(), n))
        .collect();
    for s in &ep.steps {
        rows.extend(s.privileges.iter().map(|n| (format!("step `{}` ({})", s.id, s.op), n)));
    }
    match cli.output {
        Output::Json => {
            let list: Vec<serde_json::Value> = rows
                .iter()
                .map(|(who, n)| serde_json::json!({"for": who, "what": n.what, "grant": n.grant, "held": n.held}))
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "plan": ep.plan, "target": ep.target, "privileges": list,
                    "missing": rows.iter().filter(|(_, n)| !n.held).count(),
                }))
                .unwrap_or_default()
            );
        }
        Output::Text => {
            let to = ep.identity.as_ref().map_or_else(|| ep.target.clone(), |i| i.describe());
            println!("-- privileges plan `{}` needs on {to}", ep.plan);
            if rows.is_empty() {
                println!("-- none to check here (SQLite has no roles)");
            }
            let mut printed = std::collections::HashSet::new();
            for (who, n) in &rows {
                let first = printed.insert(n.grant.clone());
                if n.held {
                    println!("-- held, {who}: {}", dbmaint::report::textsafe::visible(&n.what));
                } else {
                    println!("-- MISSING, {who}: {}", dbmaint::report::textsafe::visible(&n.what));
                    if first {
                        println!("{}", dbmaint::report::textsafe::visible(&n.grant));
                    }
                }
            }
            let missing = rows.iter().filter(|(_, n)| !n.held).count();
            eprintln!(
                "{missing} of {} privileges missing{}",
                rows.len(),
                if missing > 0 {
                    ": run the statements above as an administrator"
                } else {
                    ""
                }
            );
        }
    }
    exit::OK
}

pub async fn diff(cli: &Cli, args: &PlanArgs, detailed: bool, out: Option<&Path>) -> i32 {
    let ready = match prepare(cli, args, None) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let ep = match compute(cli, &ready, out.is_some()).await {
        Ok(ep) => ep,
        Err(code) => return code,
    };
    print_diff(cli, &ep);
    if let Some(out) = out {
        let saved = SavedPlan {
            format: SAVED_FORMAT.into(),
            plan_file: args.plan.display().to_string(),
            env: args.env.clone(),
            vars: args.vars.clone(),
            execution: ep.clone(),
        };
        if let Err(e) = std::fs::write(out, serde_json::to_string_pretty(&saved).unwrap_or_default() + "\n") {
            return fail(cli, &Failure::error(format!("cannot write `{}`: {e}", out.display())));
        }
        if cli.output == Output::Text {
            eprintln!(
                "saved the plan to {}; apply it with `dbmaint plan apply {}`",
                out.display(),
                out.display()
            );
        }
    }
    if ep.has_errors() {
        exit::ERROR
    } else if detailed && ep.has_changes() {
        exit::CHANGES
    } else {
        exit::OK
    }
}

/// Why a file that looks like a saved plan cannot be applied.
#[derive(Debug, thiserror::Error)]
enum SavedPlanError {
    #[error("`{path}` is not a saved dbmaint plan: {source}")]
    NotAPlan { path: String, source: serde_json::Error },
    #[error(
        "`{path}` is a saved plan of format `{found}`, expected `{SAVED_FORMAT}`: compute it again with `plan diff --out`"
    )]
    OtherFormat { path: String, found: String },
}

/// Reads a saved plan, if `path` is one (a JSON object, where a plan is
/// YAML).
fn read_saved(path: &Path) -> Option<Result<SavedPlan, SavedPlanError>> {
    let text = std::fs::read_to_string(path).ok()?;
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let path = path.display().to_string();
    Some(match serde_json::from_str::<SavedPlan>(&text) {
        Err(source) => Err(SavedPlanError::NotAPlan { path, source }),
        Ok(s) if s.format != SAVED_FORMAT => Err(SavedPlanError::OtherFormat { path, found: s.format }),
        Ok(s) => Ok(s),
    })
}

pub async fn apply(cli: &Cli, args: &ApplyArgs) -> i32 {
    // The log directory first: a run that could not be logged never starts.
    let log_dir = match crate::state::log_dir(args.log_dir.as_deref())
        .and_then(|d| crate::state::ensure_writable(&d).map(|()| d))
    {
        Ok(d) => d,
        Err(e) => return fail(cli, &Failure::error(e)),
    };
    let saved = match read_saved(&args.plan.plan) {
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => return fail(cli, &Failure::error(e.to_string())),
        None => None,
    };
    let plan_args = match &saved {
        Some(s) => PlanArgs {
            plan: s.plan_file.clone().into(),
            env: s.env.clone(),
            vars: s.vars.clone(),
            target: args.plan.target.clone(),
        },
        None => PlanArgs {
            plan: args.plan.plan.clone(),
            env: args.plan.env.clone(),
            vars: args.plan.vars.clone(),
            target: args.plan.target.clone(),
        },
    };
    let ready = match prepare(cli, &plan_args, saved.as_ref().map(|s| s.execution.now.as_str())) {
        Ok(r) => r,
        Err(code) => return code,
    };
    for id in &args.steps {
        if ready.loaded.plan.as_ref().is_some_and(|p| !p.steps.contains_key(id)) {
            return fail(
                cli,
                &Failure::error(format!("`--step {id}`: the plan has no enabled step `{id}`")),
            );
        }
    }
    let fresh = match compute(cli, &ready, saved.is_some()).await {
        Ok(ep) => ep,
        Err(code) => return code,
    };
    let ep = match saved {
        Some(s) => {
            // A plan reviewed against one database never runs on another.
            if let (Some(reviewed), Some(here)) = (&s.execution.identity, &fresh.identity)
                && let Some(why) = reviewed.mismatch(here)
            {
                return fail(
                    cli,
                    &Failure::error(format!(
                        "the saved plan is refused, nothing was done: it was {why}; apply it to the database it was reviewed against, or run `plan diff --out` for this one"
                    )),
                );
            }
            let drift = run::drift(&s.execution, &fresh, &dbmaint::ops::REGISTRY);
            if !drift.hard.is_empty() || (!drift.rows.is_empty() && !args.accept_drift) {
                let all: Vec<String> = drift.hard.iter().chain(&drift.rows).cloned().collect();
                return fail(
                    cli,
                    &Failure::error(format!(
                        "the saved plan is refused, nothing was done: {}; run `plan diff --out` again and review it{}",
                        all.join("; "),
                        if drift.hard.is_empty() {
                            " (or apply it anyway with --accept-drift)"
                        } else {
                            ""
                        }
                    )),
                );
            }
            let mut ep = s.execution;
            ep.accepted_drift = drift.rows;
            for d in &ep.accepted_drift {
                eprintln!("warning: applied with --accept-drift: {d}");
            }
            ep
        }
        None => fresh,
    };
    // `--step`: the diff shown and approved is exactly what runs; every
    // `needs` it skips is said out loud (as `terraform -target` does).
    let shown = if args.steps.is_empty() {
        ep.clone()
    } else {
        for s in ep.steps.iter().filter(|s| args.steps.contains(&s.id)) {
            for n in s.needs.iter().filter(|n| !args.steps.contains(n)) {
                eprintln!(
                    "warning: `--step {}` skips `{n}`, which `{}` needs: `{}` runs as if `{n}` had succeeded; \
                     run without --step (or add `--step {n}`) to include it",
                    s.id, s.id, s.id
                );
            }
        }
        let mut only = ep.clone();
        only.steps.retain(|s| args.steps.contains(&s.id));
        only
    };
    if cli.output == Output::Text || args.dry_run {
        print_diff(cli, &shown);
    }
    if args.dry_run {
        return if ep.has_errors() { exit::ERROR } else { exit::OK };
    }
    if ep.has_errors() {
        return fail(
            cli,
            &Failure::error("the plan has steps that cannot run (see the diff); nothing was done"),
        );
    }
    let now = chrono::Utc::now();
    let window_closes = match ready.loaded.plan.as_ref().map(|plan| run::check_window(plan, now)) {
        Some(Err(f)) => return fail(cli, &f),
        Some(Ok(closes)) => closes,
        None => None,
    };
    if !args.auto_approve {
        if !std::io::stdin().is_terminal() {
            return fail(
                cli,
                &Failure::error("not applying without approval: stdin is not a terminal; pass --auto-approve"),
            );
        }
        let to = ep.identity.as_ref().map_or_else(|| ep.target.clone(), |i| i.describe());
        eprint!("Apply these changes to {to}? Only `yes` is accepted: ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if answer.trim() != "yes" {
            eprintln!("apply cancelled; nothing was done");
            return exit::ERROR;
        }
    }
    let opts = ApplyOptions {
        parallelism: args.parallelism,
        only: (!args.steps.is_empty()).then(|| args.steps.clone()),
        log_dir: Some(log_dir.clone()),
        window_closes,
    };
    let (plan_metrics, plan_keep) = ready
        .loaded
        .plan
        .as_ref()
        .map_or((None, None), |p| (p.metrics_file.clone(), p.log_keep));
    let result = run::apply(
        &ep,
        &ready.target,
        &opts,
        display(cli, opts.selected(&ep)),
        &dbmaint::ops::REGISTRY,
    )
    .await;
    if let Some(path) = args
        .metrics_file
        .clone()
        .or_else(|| plan_metrics.as_ref().map(Into::into))
    {
        leave_metrics(&path, &ep, &ready.target, &result).await;
    }
    let notify = ready.loaded.plan.as_ref().and_then(|p| p.notify.clone());
    let deliveries = match &notify {
        Some(n) => notify_run(n, &ep, &result).await,
        None => vec![],
    };
    for d in deliveries.iter().filter(|d| !d.ok) {
        eprintln!(
            "warning: the {} notification failed after {} attempt{}: {}",
            d.channel,
            d.attempts,
            if d.attempts == 1 { "" } else { "s" },
            d.error.as_deref().unwrap_or("")
        );
    }
    match result {
        Ok(report) => {
            if let Some(keep) = args.log_keep.or(plan_keep.map(|k| k as usize)) {
                for old in crate::state::prune(&log_dir, &ep.plan, keep) {
                    if cli.verbose > 0 {
                        eprintln!("removed the old run log `{}` (--log-keep {keep})", old.display());
                    }
                }
            }
            match cli.output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"diff": render::render_json(&shown), "report": report, "notifications": deliveries})
                    )
                    .unwrap_or_default()
                ),
                Output::Text => print!("\n{}", dbmaint::report::reporter::render_text(&report)),
            }
            report.exit_code
        }
        Err(f) => fail(cli, &f),
    }
}

/// Sends the plan's notifications when the run's outcome is one it names;
/// a run that failed before it started (a refused connection, a held lock)
/// is reported as a run without steps.
async fn notify_run(
    n: &dbmaint::plan::PlanNotify,
    ep: &ExecutionPlan,
    result: &Result<run::collect::Report, Failure>,
) -> Vec<dbmaint::notify::Delivery> {
    let (report, text) = match result {
        Ok(r) => (r.clone(), dbmaint::report::reporter::render_text(r)),
        Err(f) => (stepless_report(ep, f), format!("error: {}\n", f.message)),
    };
    if !dbmaint::notify::wanted(n, report.exit_code) {
        return vec![];
    }
    dbmaint::notify::send(n, &report, &text).await
}

/// The report of a run that ended before its first step.
fn stepless_report(ep: &ExecutionPlan, f: &Failure) -> run::collect::Report {
    run::collect::Report {
        run_id: 0,
        plan: ep.plan.clone(),
        hash: ep.hash.clone(),
        target: ep.target.clone(),
        env: ep.env.clone(),
        status: "failed".into(),
        exit_code: f.code,
        duration_ms: 0,
        steps: vec![],
        totals: Default::default(),
        accepted_drift: vec![],
    }
}

/// Writes the run's metrics file; a failure to write it is a warning, never
/// the run's failure. The last success comes from the journal, or, when it
/// cannot be read, from the file's earlier value.
async fn leave_metrics(
    path: &Path,
    ep: &ExecutionPlan,
    target: &dbmaint::plan::values::Target,
    result: &Result<run::collect::Report, Failure>,
) {
    use dbmaint::report::metrics;
    let report = match result {
        Ok(r) => r.clone(),
        Err(f) => stepless_report(ep, f),
    };
    let last = match run::last_success(target, Some(&ep.plan)).await {
        Ok(l) => l.and_then(|(_, _, at)| chrono::DateTime::parse_from_rfc3339(&at).ok().map(|t| t.timestamp())),
        Err(_) => std::fs::read_to_string(path)
            .ok()
            .and_then(|t| metrics::previous_last_success(&t)),
    };
    let name = ep
        .identity
        .as_ref()
        .map_or(target.database.clone(), |i| i.database.clone());
    let labels = metrics::Labels {
        env: ep.env.as_deref(),
        target: &name,
    };
    let text = metrics::render(&report, &labels, last, chrono::Utc::now().timestamp());
    if let Err(e) = crate::state::write_atomically(path, &text) {
        eprintln!("warning: cannot write the metrics file `{}`: {e}", path.display());
    }
}

/// The target of a command without a plan to run: `--target` > the plan
/// of `--plan` > DATABASE_URL > the libpq environment; and where it came
/// from, for the header.
pub(crate) fn target_arg(cli: &Cli, args: &TargetArgs) -> Result<(dbmaint::plan::values::Target, String), i32> {
    let mut opts = dbmaint::LoadOptions::from_process();
    opts.target = args.target.clone();
    if let Some(plan) = &args.plan {
        opts.env = args.env.clone();
        let loaded = dbmaint::load(plan, &opts);
        if !loaded.is_valid() {
            report(cli, &loaded);
            return Err(exit::ERROR);
        }
        let plan = loaded.plan.as_ref().expect("a valid load has a plan");
        let target = run::target_of(plan).map_err(|f| fail(cli, &f))?;
        return Ok((target, plan.target_origin.clone().unwrap_or_default()));
    }
    let (text, origin) = dbmaint::plan::load::fallback_targets(&opts)
        .first()
        .ok_or_else(|| {
            fail(
                cli,
                &Failure::error(
                    "no target: pass `--target URL` or `--plan FILE`, set DATABASE_URL, or set the libpq variables (PGHOST, PGDATABASE, PGSERVICE …)",
                ),
            )
        })?;
    let target = dbmaint::plan::values::Target::parse(&text).map_err(|e| fail(cli, &Failure::error(e.message)))?;
    Ok((target, origin.to_string()))
}

pub async fn inspect(
    cli: &Cli,
    target: &TargetArgs,
    what: crate::InspectArg,
    top: u64,
    exact: bool,
    max_backup_age_ms: Option<u64>,
) -> i32 {
    let (target, origin) = match target_arg(cli, target) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let what = match what {
        crate::InspectArg::Stats => dbmaint::ops::inspect::InspectWhat::Stats,
        crate::InspectArg::Bloat => dbmaint::ops::inspect::InspectWhat::Bloat,
        crate::InspectArg::Checks => dbmaint::ops::inspect::InspectWhat::Checks,
    };
    match dbmaint::ops::inspect::inspect_report(&target, &origin, what, top.max(1), exact, max_backup_age_ms).await {
        Ok(r) => {
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default()),
                Output::Text => print!("{}", dbmaint::report::text::render_inspect(&r)),
            }
            exit::OK
        }
        Err(f) => fail(cli, &f),
    }
}

pub async fn history(cli: &Cli, target: &TargetArgs, filter: dbmaint::db::HistoryFilter, html: bool) -> i32 {
    let (target, origin) = match target_arg(cli, target) {
        Ok(t) => t,
        Err(code) => return code,
    };
    match run::history(&target, &origin, &filter).await {
        Ok(v) => {
            match cli.output {
                _ if html => print!("{}", dbmaint::report::html::history_page(&v)),
                Output::Json => println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default()),
                Output::Text => print!("{}", dbmaint::report::text::render_history(&v)),
            }
            exit::OK
        }
        Err(f) => fail(cli, &f),
    }
}

/// The demo plan, built in so `dbmaint demo` works from any directory.
const DEMO_PLAN: &str = include_str!("../../plans/demo.yaml");

pub async fn demo(cli: &Cli, db: &Path, force: bool, seed: u64, scale: f64) -> i32 {
    if db.exists() && !force && !dbmaint::demo::is_demo_database(db) {
        return fail(
            cli,
            &Failure::error(format!(
                "`{}` exists and is not a demo database dbmaint made: nothing was changed; \
                 name another file with `--db`, or pass `--force` to replace it",
                db.display()
            )),
        );
    }
    let now = chrono::Utc::now();
    let tables = dbmaint::demo::generate(seed, dbmaint::demo::Size::scaled(scale), now);
    let rows: usize = tables.iter().map(|t| t.rows.len()).sum();
    eprintln!(
        "== creating {} with {rows} rows of application data (seed {seed})",
        db.display()
    );
    if let Err(e) = dbmaint::demo::seed_sqlite(db, &tables).await {
        return fail(
            cli,
            &Failure::error(format!("cannot create the demo database: {}", e.message)),
        );
    }
    let mut opts = dbmaint::LoadOptions::from_process();
    opts.process_env.retain(|(k, _)| k != "DBMAINT_DEMO_DB");
    opts.process_env
        .push(("DBMAINT_DEMO_DB".into(), db.display().to_string()));
    let loaded = dbmaint::load_str("plans/demo.yaml", DEMO_PLAN, &opts);
    let (Some(plan), Some(graph)) = (&loaded.plan, &loaded.graph) else {
        report(cli, &loaded);
        return exit::ERROR;
    };
    let target = match run::target_of(plan) {
        Ok(t) => t,
        Err(f) => return fail(cli, &f),
    };
    eprintln!("== dbmaint plan diff plans/demo.yaml");
    let ep = match run::compute(plan, graph, &target, now, false, &dbmaint::ops::REGISTRY).await {
        Ok(ep) => ep,
        Err(f) => return fail(cli, &f),
    };
    print_diff(cli, &ep);
    eprintln!("== dbmaint plan apply plans/demo.yaml --auto-approve");
    let opts = ApplyOptions {
        parallelism: 2,
        only: None,
        log_dir: Some("dbmaint-logs".into()),
        window_closes: None,
    };
    let report = match run::apply(
        &ep,
        &target,
        &opts,
        display(cli, opts.selected(&ep)),
        &dbmaint::ops::REGISTRY,
    )
    .await
    {
        Ok(r) => r,
        Err(f) => return fail(cli, &f),
    };
    print!("\n{}", dbmaint::report::reporter::render_text(&report));
    eprintln!("== dbmaint history --target sqlite:{}", db.display());
    let last_five = dbmaint::db::HistoryFilter {
        limit: 5,
        ..Default::default()
    };
    match run::history(&target, "the demo", &last_five).await {
        Ok(v) => print!("{}", dbmaint::report::text::render_history(&v)),
        Err(f) => return fail(cli, &f),
    }
    report.exit_code
}

/// What the operator watches during `apply`: progress bars on a TTY (not
/// under CI), start/finish lines otherwise, nothing with `--quiet`.
fn display(cli: &Cli, selected: usize) -> Vec<Box<dyn dbmaint::run::collect::Reporter>> {
    use dbmaint::report::reporter::{Level, Lines, progress::Bars};
    // -v/-q when given, else DBMAINT_LOG, else info.
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => Level::Warn,
        (false, 1) => Level::Debug,
        (false, v) if v >= 2 => Level::Trace,
        _ => std::env::var("DBMAINT_LOG")
            .ok()
            .and_then(|l| Level::parse(&l))
            .unwrap_or(Level::Info),
    };
    let json = cli.log_format == crate::LogFormat::Json;
    // Bars need a terminal to draw on: without one, `always` prints the
    // log lines and a periodic progress line instead.
    let tty = std::io::stderr().is_terminal();
    let bars = !cli.quiet
        && !json
        && tty
        && match cli.progress {
            Progress::Always => true,
            Progress::Never => false,
            Progress::Auto => std::env::var_os("CI").is_none(),
        };
    if bars {
        vec![Box::new(Bars::new(selected as u64))]
    } else if matches!(cli.progress, Progress::Always) && !cli.quiet && !json {
        // Asked for progress where no bar can be drawn (a CI log, a pipe):
        // a plain progress line every interval, beside the log lines.
        use dbmaint::report::reporter::periodic::{Periodic, every_from_env};
        vec![
            Box::new(Lines { level, json }),
            Box::new(Periodic::new(selected as u64, every_from_env())),
        ]
    } else {
        vec![Box::new(Lines { level, json })]
    }
}

//! The `dbmaint` command line: parses arguments, calls the library, renders
//! its results and chooses the exit code. No plan logic lives here.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use dbmaint::plan::diag::{Diagnostics, render_text, summary, to_json};
use dbmaint::run::exit;
use dbmaint::{LoadOptions, Loaded, load};

mod backups;
mod commands;
mod fleet;
mod probe;
mod report;
mod schedule;
mod state;
use commands::{apply, demo, diff, grants, history, inspect, runtime};

#[derive(Debug, Parser)]
#[command(
    name = "dbmaint",
    version,
    about = "Declarative maintenance plans for PostgreSQL and SQLite"
)]
pub(crate) struct Cli {
    /// Output format: text for people, json for programs (one document on stdout).
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub(crate) output: Output,
    /// Progress bars: auto (only on a TTY, never when CI is set), always, never.
    #[arg(long, global = true, value_enum, default_value_t = Progress::Auto)]
    pub(crate) progress: Progress,
    /// More detail (repeatable): -v adds each object done to the stderr log, -vv each batch.
    /// Without -v/-q, DBMAINT_LOG=error|warn|info|debug|trace sets the level (default info).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// Less output: no progress, only warnings and errors in the stderr log.
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
    /// The stderr log of a run: text lines, or one JSON object per event (for log shippers).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
    /// Run as if started in DIR (like `git -C`): relative paths on the
    /// command line and in the plan (backup `dir`, archive files, SQLite
    /// targets) are taken from there — what a scheduler that starts in `/`
    /// needs.
    #[arg(short = 'C', long = "directory", global = true, value_name = "DIR")]
    pub(crate) directory: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Progress {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with plan files.
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Past runs and their steps, from the target's journal.
    #[command(
        after_help = "Examples:\n  dbmaint history --plan plans/nightly.yaml --env prod\n  dbmaint history --target \"$DATABASE_URL\" 42                         # one run\n  dbmaint history --plan plans/nightly.yaml --stale-after 26h --format nagios"
    )]
    History {
        #[command(flatten)]
        target: TargetArgs,
        /// How many runs to list.
        #[arg(long, default_value_t = 20)]
        limit: u64,
        /// One run's id.
        run_id: Option<i64>,
        /// A probe instead of the list: exit 6 (ALERT) when the last
        /// successful run is older than this (e.g. `26h`), or there is none.
        #[arg(long, value_name = "DURATION", conflicts_with = "run_id")]
        stale_after: Option<String>,
        /// Only runs of this plan (its `name`) [with --stale-after, default: the plan of --plan, else any].
        #[arg(long, value_name = "PLAN_NAME")]
        name: Option<String>,
        /// Only runs started since: a duration back from now (`7d`, `12h`) or a UTC date or time (`2026-11-30`, `2026-11-30T02:00:00Z`).
        #[arg(long, value_name = "WHEN", value_parser = parse_since)]
        since: Option<String>,
        /// Only runs that ended so: succeeded, failed, partial, interrupted, deferred, locked, …
        #[arg(long, value_name = "STATUS")]
        status: Option<String>,
        /// text; nagios: one plugin line and exit 0/1/2/3 (with --stale-after); html: the runs of each plan over time, one self-contained page.
        #[arg(long, value_enum, default_value_t = HistoryFormat::Text)]
        format: HistoryFormat,
    },
    /// One past run from its run log: a self-contained HTML page (timeline, predicted and actual, batches) or its report's JSON.
    #[command(
        after_help = "Examples:\n  dbmaint report --format html > run.html                 # the newest run in the log directory\n  dbmaint report 42 --plan-name nightly --log-dir /var/log/dbmaint --format html > run42.html"
    )]
    Report {
        /// The run's id (default: the newest run log).
        run_id: Option<i64>,
        /// Only runs of this plan (its `name`).
        #[arg(long, value_name = "PLAN_NAME")]
        plan_name: Option<String>,
        /// Where the apply wrote its run logs (default as apply: DBMAINT_LOG_DIR, else the state directory).
        #[arg(long, value_name = "DIR", env = "DBMAINT_LOG_DIR")]
        log_dir: Option<PathBuf>,
        /// html: one page, no script and no network; json: the run's report.
        #[arg(long, value_enum, default_value_t = ReportFormat::Html)]
        format: ReportFormat,
    },
    /// The read-only reports of `stats`, `bloat` or `check` without a plan.
    #[command(
        after_help = "Examples:\n  dbmaint inspect --target \"$DATABASE_URL\" stats --top 20\n  dbmaint inspect --target \"$DATABASE_URL\" bloat --exact\n  dbmaint inspect --target \"$DATABASE_URL\" checks --fail-on warning --format nagios"
    )]
    Inspect {
        #[command(flatten)]
        target: TargetArgs,
        /// stats: sizes and activity; bloat: waste per table and index; checks: health findings.
        #[arg(value_enum)]
        report: InspectArg,
        /// stats: how many of the largest tables and indexes to list.
        #[arg(long, default_value_t = dbmaint::ops::stats::DEFAULT_TOP)]
        top: u64,
        /// bloat: exact figures from pgstattuple when it is installed (reads every page).
        #[arg(long)]
        exact: bool,
        /// checks: exit 6 (ALERT) when a finding is at or above this severity.
        #[arg(long, value_enum, value_name = "SEVERITY")]
        fail_on: Option<FailOnArg>,
        /// checks: text, or nagios: one plugin line and exit 0/1/2/3.
        #[arg(long, value_enum, default_value_t = ProbeFormat::Text)]
        format: ProbeFormat,
        /// checks: also run `backup_age` — an error when the newest verified backup in the journal is older (e.g. `26h`).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
        max_backup_age: Option<u64>,
    },
    /// The GRANT statements the plan's role needs for this plan, from the live database (missing ones uncommented).
    #[command(
        after_help = "Examples:\n  dbmaint grants plans/nightly.yaml --env prod\n  dbmaint grants plans/nightly.yaml --output json"
    )]
    Grants(PlanArgs),
    /// The backups dbmaint made: list, re-verify one, restore one.
    #[command(subcommand)]
    Backups(backups::BackupsCommand),
    /// Create a SQLite database with realistic data, diff and apply `plans/demo.yaml` on it.
    Demo {
        /// The database file to create (an earlier demo database is replaced; any other file is refused).
        #[arg(long, default_value = "dbmaint-demo.db")]
        db: PathBuf,
        /// Replace `--db` even when it is not a demo database dbmaint made.
        #[arg(long)]
        force: bool,
        /// Seed of the data generator.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Data size: 1.0 is about 58,000 rows.
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
    },
    /// Run a plan on its `schedule`: artifacts for cron, systemd or Kubernetes.
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// Print the plan format's JSON Schema.
    Schema,
    /// Print the manual page (roff), or write one page per command with --out-dir.
    #[command(after_help = "Examples:\n  dbmaint man | man -l -\n  dbmaint man --out-dir /usr/local/share/man/man1")]
    Man {
        /// Write dbmaint.1 and one dbmaint-COMMAND.1 page per command here.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Print shell completions.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

/// `--since`: a duration back from now, or a date or time, as the
/// journal's UTC text (`YYYY-MM-DDTHH:MM:SSZ`).
fn parse_since(text: &str) -> Result<String, String> {
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    if let Ok(d) = dbmaint::plan::values::Duration::parse(text) {
        let back = chrono::Duration::from_std(d.0).map_err(|e| e.to_string())?;
        return Ok(fmt(chrono::Utc::now() - back));
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(fmt(t.with_timezone(&chrono::Utc)));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| fmt(t.and_utc()))
        .ok_or_else(|| {
            format!("`{text}` is neither a duration (`7d`) nor a date or time (`2026-11-30`, `2026-11-30T02:00:00Z`)")
        })
}

/// A duration argument (`26h`, `90m`) in milliseconds.
fn parse_duration_ms(text: &str) -> Result<u64, String> {
    dbmaint::plan::values::Duration::parse(text)
        .map(|d| d.0.as_millis() as u64)
        .map_err(|e| e.message)
}

/// How a probe (`inspect checks`, `history --stale-after`) answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProbeFormat {
    Text,
    /// The Nagios plugin format (check_postgres, Icinga, Sensu): exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    Nagios,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum HistoryFormat {
    Text,
    Nagios,
    Html,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ReportFormat {
    Html,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FailOnArg {
    Warning,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum InspectArg {
    Stats,
    Bloat,
    Checks,
}

#[derive(Debug, Subcommand)]
enum PlanCommand {
    /// Load, overlay, render and check a plan; report every problem at once.
    #[command(
        after_help = "Examples:\n  dbmaint plan validate plans/nightly.yaml\n  dbmaint plan validate plans/nightly.yaml --env prod --var retention_days=30"
    )]
    Validate(PlanArgs),
    /// Print the effective plan after overlays and templates, or its graph.
    Show {
        #[command(flatten)]
        plan: PlanArgs,
        /// yaml or json: the effective plan; dot or mermaid: the dependency graph with levels.
        #[arg(long, value_enum, default_value_t = ShowFormat::Yaml)]
        format: ShowFormat,
    },
    /// Dry run: inspect the live database read-only and print what each step would do.
    #[command(
        after_help = "Examples:\n  dbmaint plan diff plans/nightly.yaml --env prod\n  dbmaint plan diff plans/nightly.yaml -v --out reviewed.json   # with SQL, saved for apply\n  dbmaint plan diff plans/nightly.yaml --detailed-exitcode       # 0 nothing to do, 2 changes"
    )]
    Diff {
        #[command(flatten)]
        plan: PlanArgs,
        /// Exit 0 when nothing would change, 2 when something would.
        #[arg(long)]
        detailed_exitcode: bool,
        /// Save the computed plan, for `plan apply FILE`.
        #[arg(long, value_name = "FILE", conflicts_with = "targets")]
        out: Option<PathBuf>,
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Execute the plan (or a saved plan) against the database.
    #[command(
        after_help = "Examples:\n  dbmaint plan apply plans/nightly.yaml --env prod\n  dbmaint plan apply reviewed.json --auto-approve            # exactly what was reviewed\n  dbmaint plan apply plans/nightly.yaml --step vacuum --auto-approve --metrics-file /var/lib/node_exporter/dbmaint.prom"
    )]
    Apply(ApplyArgs),
}

#[derive(Debug, Clone, Args)]
pub(crate) struct ApplyArgs {
    #[command(flatten)]
    pub(crate) plan: PlanArgs,
    /// Run only this step (repeatable).
    #[arg(long = "step", value_name = "ID")]
    pub(crate) steps: Vec<String>,
    /// Steps run at the same time, each on its own connection.
    #[arg(long, default_value_t = 2)]
    pub(crate) parallelism: usize,
    /// Do not ask for approval.
    #[arg(long)]
    pub(crate) auto_approve: bool,
    #[command(flatten)]
    pub(crate) fleet: FleetArgs,
    /// Only show the diff (the same as `plan diff`).
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Apply a saved plan whose retention steps would now take other rows
    /// than were reviewed (said in the report); without it such a plan is refused.
    #[arg(long)]
    pub(crate) accept_drift: bool,
    /// Where the run's JSON Lines event log goes [default: $XDG_STATE_HOME/dbmaint/logs,
    /// else ~/.local/state/dbmaint/logs]; a service sets /var/log/dbmaint.
    #[arg(long, env = "DBMAINT_LOG_DIR", value_name = "DIR")]
    pub(crate) log_dir: Option<PathBuf>,
    /// Keep only this plan's newest N run logs in the log directory [default: the plan's `logs.keep`].
    #[arg(long, value_name = "N")]
    pub(crate) log_keep: Option<usize>,
    /// Write Prometheus text-format metrics of the run here, atomically (node_exporter's
    /// textfile collector) [default: the plan's `metrics_file`].
    #[arg(long, value_name = "PATH")]
    pub(crate) metrics_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct PlanArgs {
    /// The plan file.
    pub(crate) plan: PathBuf,
    /// Environment overlay: `env/NAME.yaml` beside the plan.
    #[arg(long)]
    pub(crate) env: Option<String>,
    /// Override a variable: `--var key=value` (repeatable; wins over DBMAINT_VAR_*).
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub(crate) vars: Vec<String>,
    /// Target database URL: replaces the plan's `target:` (said in the header).
    /// DBMAINT_TARGET is the same, for a URL that must not be in argv.
    #[arg(long, env = "DBMAINT_TARGET", hide_env_values = true)]
    pub(crate) target: Option<String>,
}

/// One plan over many databases (`docs/operations.md#fleets`).
#[derive(Debug, Clone, Args)]
pub(crate) struct FleetArgs {
    /// An inventory of databases: run the plan on each selected one, each with its own lock and journal.
    #[arg(long, value_name = "FILE", conflicts_with = "target")]
    pub(crate) targets: Option<PathBuf>,
    /// Only targets whose label KEY is VALUE (`name=ID` for one target); repeatable, all must match.
    #[arg(long = "select", value_name = "KEY=VALUE", requires = "targets")]
    pub(crate) select: Vec<String>,
    /// Databases worked on at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub(crate) fleet_parallelism: usize,
    /// Only the Nth selected target (from 0), in this process: what pod N of a Kubernetes Indexed Job runs.
    #[arg(long, value_name = "N", requires = "targets")]
    pub(crate) target_index: Option<usize>,
}

/// Which database a command without a plan reads: `--target` > the plan
/// of `--plan` > DATABASE_URL > the libpq environment.
#[derive(Debug, Args)]
pub(crate) struct TargetArgs {
    /// Target database URL (replaces the plan's; default: DATABASE_URL, then PGHOST/PGSERVICE…).
    #[arg(long)]
    pub(crate) target: Option<String>,
    /// Use this plan's target.
    #[arg(long)]
    pub(crate) plan: Option<PathBuf>,
    /// With --plan: its environment overlay.
    #[arg(long, requires = "plan")]
    pub(crate) env: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ShowFormat {
    Yaml,
    Json,
    Dot,
    Mermaid,
}

/// A reader that went away (`dbmaint … | head -1`) ends the program the
/// way a shell tool ends: quietly, with 128 + SIGPIPE. Rust ignores SIGPIPE
/// and `println!` panics on the broken pipe instead; the hook turns that
/// one panic into the conventional exit and leaves every other panic as is.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if text.contains("failed printing to stdout") && text.contains("Broken pipe") {
            std::process::exit(128 + 13);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    if let Some(dir) = &cli.directory
        && let Err(e) = std::env::set_current_dir(dir)
    {
        eprintln!("error: cannot change to directory `{}` (-C): {e}", dir.display());
        return ExitCode::from(exit::ERROR as u8);
    }
    let code = match &cli.command {
        Command::Plan(PlanCommand::Validate(args)) => validate(&cli, args),
        Command::Plan(PlanCommand::Show { plan, format }) => show(&cli, plan, *format),
        Command::Plan(PlanCommand::Diff {
            plan,
            detailed_exitcode,
            out,
            fleet: f,
        }) => match fleet::mode(plan, f) {
            Ok(fleet::Mode::One(one)) => runtime().block_on(diff(&cli, &one, *detailed_exitcode, out.as_deref())),
            Ok(fleet::Mode::Fleet(targets)) => runtime().block_on(fleet::run(
                &cli,
                plan,
                f,
                &targets,
                fleet::Job::Diff {
                    detailed: *detailed_exitcode,
                },
            )),
            Err(code) => code,
        },
        Command::Plan(PlanCommand::Apply(args)) => match fleet::mode(&args.plan, &args.fleet) {
            Ok(fleet::Mode::One(one)) => {
                let args = ApplyArgs {
                    plan: one,
                    ..args.clone()
                };
                runtime().block_on(apply(&cli, &args))
            }
            Ok(fleet::Mode::Fleet(targets)) => runtime().block_on(fleet::run(
                &cli,
                &args.plan,
                &args.fleet,
                &targets,
                fleet::Job::Apply(args),
            )),
            Err(code) => code,
        },
        Command::History {
            target,
            stale_after: Some(age),
            name,
            format,
            ..
        } => {
            let format = match format {
                HistoryFormat::Nagios => ProbeFormat::Nagios,
                _ => ProbeFormat::Text,
            };
            runtime().block_on(probe::stale(&cli, target, age, name.as_deref(), format))
        }
        Command::History {
            target,
            limit,
            run_id,
            name,
            since,
            status,
            format,
            ..
        } => {
            let filter = dbmaint::db::HistoryFilter {
                run: *run_id,
                plan: name.clone(),
                since: since.clone(),
                status: status.clone(),
                limit: *limit,
            };
            runtime().block_on(history(&cli, target, filter, *format == HistoryFormat::Html))
        }
        Command::Inspect {
            target,
            report: InspectArg::Checks,
            fail_on,
            format,
            max_backup_age,
            ..
        } if fail_on.is_some() || *format == ProbeFormat::Nagios => {
            runtime().block_on(probe::checks(&cli, target, *fail_on, *format, *max_backup_age))
        }
        Command::Inspect {
            target,
            report,
            top,
            exact,
            max_backup_age,
            ..
        } => runtime().block_on(inspect(&cli, target, *report, *top, *exact, *max_backup_age)),
        Command::Backups(cmd) => runtime().block_on(backups::run(&cli, cmd)),
        Command::Grants(args) => runtime().block_on(grants(&cli, args)),
        Command::Demo { db, force, seed, scale } => runtime().block_on(demo(&cli, db, *force, *seed, *scale)),
        Command::Schedule(schedule::ScheduleCommand::Export(args)) => schedule::export(&cli, args),
        Command::Report {
            run_id,
            plan_name,
            log_dir,
            format,
        } => report::run(
            log_dir.as_deref(),
            plan_name.as_deref(),
            *run_id,
            *format == ReportFormat::Html,
        ),
        Command::Schema => {
            print!("{}", dbmaint::plan_schema_json());
            exit::OK
        }
        Command::Man { out_dir } => man(out_dir.as_deref()),
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "dbmaint", &mut std::io::stdout());
            exit::OK
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// The manual: the whole command line as roff, from the same definitions
/// as `--help`.
fn man(out_dir: Option<&std::path::Path>) -> i32 {
    let cmd = Cli::command();
    let result = match out_dir {
        Some(dir) => std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(cmd, dir)),
        None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout()),
    };
    match result {
        Ok(()) => exit::OK,
        // `dbmaint man | head`: the reader went away, as for every command.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 128 + 13,
        Err(e) => {
            eprintln!("error: cannot write the manual: {e}");
            exit::ERROR
        }
    }
}

pub(crate) fn load_plan(args: &PlanArgs) -> Loaded {
    let mut opts = LoadOptions::from_process();
    opts.env = args.env.clone();
    opts.vars = args.vars.clone();
    opts.target = args.target.clone();
    load(&args.plan, &opts)
}

/// Diagnostics go to stderr in text mode; in JSON mode the report is stdout.
pub(crate) fn report(cli: &Cli, loaded: &Loaded) {
    if cli.output == Output::Text {
        let mut err = std::io::stderr().lock();
        let shown = if cli.quiet {
            only_errors(&loaded.diags)
        } else {
            loaded.diags.clone()
        };
        let _ = write!(err, "{}", render_text(&shown, &loaded.sources));
        if !loaded.is_valid() || (!cli.quiet && !loaded.diags.items.is_empty()) {
            let _ = writeln!(err, "{}", summary(&loaded.diags));
        }
    }
}

fn only_errors(d: &Diagnostics) -> Diagnostics {
    Diagnostics {
        items: d.items.iter().filter(|d| d.is_error()).cloned().collect(),
    }
}

fn validate(cli: &Cli, args: &PlanArgs) -> i32 {
    let loaded = load_plan(args);
    match cli.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&loaded.diags, &loaded.sources)).unwrap_or_default()
        ),
        Output::Text => {
            report(cli, &loaded);
            if let (Some(plan), Some(graph), false) = (&loaded.plan, &loaded.graph, cli.quiet) {
                let hash = plan.hash();
                println!(
                    "{}: plan `{}` is valid: {} steps in {} levels{}, hash {}",
                    args.plan.display(),
                    plan.name,
                    plan.steps.len(),
                    graph.by_level().len(),
                    if plan.disabled.is_empty() {
                        String::new()
                    } else {
                        format!(" ({} disabled)", plan.disabled.len())
                    },
                    &hash[..12]
                );
            }
        }
    }
    if loaded.is_valid() { exit::OK } else { exit::ERROR }
}

fn show(cli: &Cli, args: &PlanArgs, format: ShowFormat) -> i32 {
    let loaded = load_plan(args);
    let (Some(plan), Some(graph)) = (&loaded.plan, &loaded.graph) else {
        match cli.output {
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(&to_json(&loaded.diags, &loaded.sources)).unwrap_or_default()
            ),
            Output::Text => report(cli, &loaded),
        }
        return exit::ERROR;
    };
    if cli.output == Output::Text && !cli.quiet {
        // Warnings still deserve a look, on stderr.
        let _ = write!(std::io::stderr(), "{}", render_text(&loaded.diags, &loaded.sources));
    }
    let format = if cli.output == Output::Json && format == ShowFormat::Yaml {
        ShowFormat::Json
    } else {
        format
    };
    let out = match format {
        ShowFormat::Yaml => dbmaint::plan::effective_yaml(plan),
        ShowFormat::Json => {
            let mut v = serde_json::to_value(plan).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("hash".into(), plan.hash().into());
                o.insert(
                    "levels".into(),
                    serde_json::to_value(graph.by_level()).unwrap_or_default(),
                );
            }
            serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
        }
        ShowFormat::Dot => graph.to_dot(plan),
        ShowFormat::Mermaid => graph.to_mermaid(plan),
    };
    print!("{out}");
    exit::OK
}

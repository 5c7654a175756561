//! `dbmaint schedule export`: the command line of `dbmaint::schedule`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use dbmaint::run::exit;
use dbmaint::schedule::{self, Artifact, Export};

use crate::{Cli, Output, PlanArgs, load_plan, report};

#[derive(Debug, Subcommand)]
pub(crate) enum ScheduleCommand {
    /// Print (or write) what runs the plan on its `schedule`, in `limits.tz`.
    #[command(after_help = "Examples:\n  \
        dbmaint schedule export plans/nightly.yaml --format cron --env prod | crontab -\n  \
        dbmaint schedule export plans/nightly.yaml --format systemd --out-dir /etc/systemd/system\n  \
        dbmaint schedule export plans/nightly.yaml --format kubernetes --image registry/dbmaint:1 | kubectl apply -f -")]
    Export(ExportArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// One crontab entry (with CRON_TZ).
    Cron,
    /// A .service (oneshot) and a .timer.
    Systemd,
    /// A ConfigMap with the plan and a batch/v1 CronJob.
    Kubernetes,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    plan: PlanArgs,
    /// What runs it.
    #[arg(long, value_enum)]
    format: Format,
    /// The dbmaint binary the artifact calls [default: this one].
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
    /// Where the plan's relative paths resolve (backup dir, archive files,
    /// SQLite files) [default: the current directory].
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// cron: the run logs' directory [default: the state directory].
    #[arg(long, env = "DBMAINT_LOG_DIR", value_name = "DIR")]
    log_dir: Option<PathBuf>,
    /// systemd: spread the start over up to this many seconds (RandomizedDelaySec).
    #[arg(long, value_name = "SECONDS")]
    randomized_delay: Option<u64>,
    /// kubernetes: the container image (built from the repository's Dockerfile).
    #[arg(long, default_value = "dbmaint:latest")]
    image: String,
    /// kubernetes: the Secret holding DATABASE_URL / PGPASSWORD … [default: NAME-secrets].
    #[arg(long, value_name = "NAME")]
    secret: Option<String>,
    /// kubernetes: a PersistentVolumeClaim for the working directory (backups, archive files).
    #[arg(long, value_name = "NAME")]
    volume_claim: Option<String>,
    /// An inventory: run the plan over its databases (Kubernetes: an Indexed Job, one pod per target).
    #[arg(long, value_name = "FILE")]
    targets: Option<PathBuf>,
    /// With --targets: only targets whose label KEY is VALUE (repeatable).
    #[arg(long = "select", value_name = "KEY=VALUE", requires = "targets")]
    select: Vec<String>,
    /// With --targets: databases at once (cron, systemd) or pods at once (Kubernetes).
    #[arg(long, value_name = "N", default_value_t = 4)]
    fleet_parallelism: usize,
    /// Write each artifact into this directory instead of printing it.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

pub(crate) fn export(cli: &Cli, args: &ExportArgs) -> i32 {
    let loaded = load_plan(&args.plan);
    let Some(plan) = &loaded.plan else {
        report(cli, &loaded);
        return exit::ERROR;
    };
    match artifacts(plan, args) {
        Ok(list) => match write(cli, args, &list) {
            Ok(()) => exit::OK,
            Err(e) => refuse(&e),
        },
        Err(e) => refuse(&e),
    }
}

fn refuse(e: &str) -> i32 {
    eprintln!("error: {e}");
    exit::ERROR
}

fn artifacts(plan: &dbmaint::plan::Plan, args: &ExportArgs) -> Result<Vec<Artifact>, String> {
    let absolute = |p: &std::path::Path| std::path::absolute(p).map_err(|e| format!("`{}`: {e}", p.display()));
    let binary = match &args.binary {
        Some(b) => absolute(b)?,
        None => {
            std::env::current_exe().map_err(|e| format!("cannot tell where this dbmaint is ({e}): give --binary"))?
        }
    };
    let workdir = absolute(args.workdir.as_deref().unwrap_or(std::path::Path::new(".")))?;
    let e = Export {
        plan,
        plan_file: absolute(&args.plan.plan)?,
        env: args.plan.env.clone(),
        vars: args.plan.vars.clone(),
        target: args.plan.target.clone(),
        binary,
        workdir,
        log_dir: crate::state::log_dir(args.log_dir.as_deref())?,
        randomized_delay_s: args.randomized_delay,
        image: args.image.clone(),
        secret: args.secret.clone(),
        volume_claim: args.volume_claim.clone(),
        fleet: match &args.targets {
            None => None,
            Some(file) => {
                let inventory =
                    dbmaint::fleet::Inventory::load(file, &|k| std::env::var(k).ok()).map_err(|e| e.to_string())?;
                let count = inventory.select(&args.select).map_err(|e| e.to_string())?.len();
                Some(schedule::ExportFleet {
                    file: absolute(file)?,
                    select: args.select.clone(),
                    count,
                    parallelism: args.fleet_parallelism.max(1),
                })
            }
        },
    };
    match args.format {
        Format::Cron => schedule::cron(&e),
        Format::Systemd => schedule::systemd(&e),
        Format::Kubernetes => schedule::kubernetes(&e),
    }
    .map_err(|e| e.to_string())
}

fn write(cli: &Cli, args: &ExportArgs, list: &[Artifact]) -> Result<(), String> {
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
        for a in list {
            let path = dir.join(&a.name);
            std::fs::write(&path, &a.text).map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
            if !cli.quiet {
                eprintln!("wrote {}", path.display());
            }
        }
        return Ok(());
    }
    match cli.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "artifacts": list })).unwrap_or_default()
        ),
        Output::Text if list.len() == 1 => print!("{}", list[0].text),
        Output::Text => {
            for (i, a) in list.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                println!("# ==> {} <==", a.name);
                print!("{}", a.text);
            }
        }
    }
    Ok(())
}

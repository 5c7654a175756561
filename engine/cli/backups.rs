//! `dbmaint backups list | verify | restore`: the commands around the
//! backups dbmaint made. The work is `ops::backup::manage`'s; this file
//! owns the arguments, the questions asked on a terminal, and the output.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use dbmaint::ops::backup::manage::{self, Listing, RestoreRequest, Scratch};
use dbmaint::plan::values::Target;
use dbmaint::run::exit;
use dbmaint::run::{Failure, execplan::human_age, execplan::human_bytes};

use crate::commands::{fail, target_arg};
use crate::{Cli, Output, TargetArgs};

#[derive(Debug, Subcommand)]
pub(crate) enum BackupsCommand {
    /// Every backup dbmaint made for a database: the journal joined with what is on disk.
    #[command(
        after_help = "Examples:\n  dbmaint backups list --plan plans/nightly.yaml --env prod\n  dbmaint backups list --target sqlite:app.db --dir backups --output json"
    )]
    List {
        #[command(flatten)]
        target: TargetArgs,
        /// Also backups rotation removed.
        #[arg(long)]
        all: bool,
        /// Also look in this backup directory (repeatable); a plan's backup `dir`s are looked in already.
        #[arg(long = "dir", value_name = "DIR")]
        dirs: Vec<String>,
    },
    /// Re-check one backup now (checksum, a full read; --restore: restore and compare counts); recorded in the journal.
    #[command(
        after_help = "Examples:\n  dbmaint backups verify 12 --plan plans/nightly.yaml\n  dbmaint backups verify 12 --plan plans/nightly.yaml --restore --restore-to postgres://scratch-host/postgres"
    )]
    Verify {
        #[command(flatten)]
        target: TargetArgs,
        /// The backup: its id in `backups list`, or its path.
        backup: String,
        /// Also restore it into a scratch database and compare row counts with those recorded at backup time.
        #[arg(long)]
        restore: bool,
        /// PostgreSQL: the scratch server --restore restores into (no password in the URL; use ~/.pgpass).
        #[arg(long, value_name = "URL", requires = "restore")]
        restore_to: Option<String>,
        /// PostgreSQL: restore into the database's own server (its volume must hold a full copy).
        #[arg(long, requires = "restore", conflicts_with = "restore_to")]
        same_server: bool,
    },
    /// Restore one backup into a database: empty, or emptied first with --clean.
    #[command(
        after_help = "Examples:\n  dbmaint backups restore 12 --plan plans/nightly.yaml --target postgres://db/app_restored\n  dbmaint backups restore backups/app-dump-20261201T020000Z.dump --target postgres://db/app --clean --jobs 4\n  dbmaint backups restore backups/app-dump-20261201T020000Z.db --target sqlite:app.db --clean"
    )]
    Restore(RestoreArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    /// The backup: its id in `backups list` (with --plan or --from), or its path.
    backup: String,
    /// The database to restore into (PostgreSQL URL, or sqlite:PATH).
    #[arg(long, value_name = "URL")]
    target: String,
    /// The plan whose target's journal lists the backup (for an id).
    #[arg(long)]
    plan: Option<PathBuf>,
    /// With --plan: its environment overlay.
    #[arg(long, requires = "plan")]
    env: Option<String>,
    /// The database whose journal lists the backup (for an id), instead of --plan.
    #[arg(long, value_name = "URL", conflicts_with = "plan")]
    from: Option<String>,
    /// Drop everything the target holds first (the preview lists it; asked on a terminal).
    #[arg(long)]
    clean: bool,
    /// Parallel pg_restore jobs (custom and directory formats; without it the restore is one transaction).
    #[arg(long)]
    jobs: Option<u64>,
    /// Restore onto the very database the backup was taken from without typing its name.
    #[arg(long)]
    force: bool,
    /// Do not ask before dropping what --clean drops (needed without a terminal).
    #[arg(long)]
    auto_approve: bool,
}

pub(crate) async fn run(cli: &Cli, cmd: &BackupsCommand) -> i32 {
    match cmd {
        BackupsCommand::List { target, all, dirs } => list(cli, target, *all, dirs).await,
        BackupsCommand::Verify {
            target,
            backup,
            restore,
            restore_to,
            same_server,
        } => {
            let scratch = match (restore, restore_to, same_server) {
                (false, _, _) => None,
                (true, Some(url), _) => Some(Scratch::To(url.clone())),
                (true, None, true) => Some(Scratch::SameServer),
                (true, None, false) => None,
            };
            verify(cli, target, backup, *restore, scratch).await
        }
        BackupsCommand::Restore(args) => restore(cli, args).await,
    }
}

/// The backup `dir`s of the plan named by `--plan`.
fn plan_dirs(args: &TargetArgs) -> Vec<String> {
    let Some(path) = &args.plan else { return vec![] };
    let mut opts = dbmaint::LoadOptions::from_process();
    opts.env = args.env.clone();
    let loaded = dbmaint::load(path, &opts);
    loaded
        .plan
        .iter()
        .flat_map(|p| p.steps.values())
        .filter(|s| s.op.key() == "backup")
        .map(|s| s.op.params_json()["dir"].as_str().unwrap_or("backups").to_string())
        .collect()
}

async fn list(cli: &Cli, args: &TargetArgs, all: bool, dirs: &[String]) -> i32 {
    let (target, _) = match target_arg(cli, args) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let mut dirs = dirs.to_vec();
    dirs.extend(plan_dirs(args));
    let listing = manage::list(&target, &dirs, all).await;
    match cli.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&listing).unwrap_or_default()),
        Output::Text => print!("{}", render_list(&listing)),
    }
    exit::OK
}

/// The list as an aligned table, newest last, then the unknown files.
fn render_list(l: &Listing) -> String {
    let mut out = format!("backups of {} (from the {})\n", l.target, l.source);
    if let Some(e) = &l.journal_error {
        out.push_str(&format!(
            "  the journal could not be read ({e}): listed from the manifests beside the backups\n"
        ));
    }
    let rows: Vec<[String; 7]> = l
        .backups
        .iter()
        .map(|b| {
            [
                b.record.id.to_string(),
                b.record
                    .created_at
                    .chars()
                    .take(19)
                    .collect::<String>()
                    .replace('T', " "),
                human_age(b.age_s.max(0) as u64),
                format!("{}/{}", b.record.plan, b.record.step),
                format!("{} {}", b.record.format, human_bytes(b.record.bytes)),
                b.status.clone(),
                b.record.path.clone(),
            ]
        })
        .collect();
    let head = ["id", "time (UTC)", "age", "plan/step", "format, size", "status", "path"].map(String::from);
    let mut widths = [0usize; 7];
    for r in rows.iter().chain([&head]) {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    if rows.is_empty() {
        out.push_str("  no backup in the journal\n");
    } else {
        for r in [&head].into_iter().chain(rows.iter()) {
            let line: Vec<String> = r
                .iter()
                .zip(widths)
                .enumerate()
                .map(|(i, (c, w))| if i == 6 { c.clone() } else { format!("{c:<w$}") })
                .collect();
            out.push_str(&format!(
                "  {}\n",
                dbmaint::report::textsafe::visible(line.join("  ").trim_end())
            ));
        }
    }
    for u in &l.unknown {
        out.push_str(&format!(
            "  ? {}: not in the journal (not made by dbmaint for this database, or before it journaled backups); never removed\n",
            dbmaint::report::textsafe::visible(u)
        ));
    }
    out
}

async fn verify(cli: &Cli, args: &TargetArgs, backup: &str, restore: bool, scratch: Option<Scratch>) -> i32 {
    let target = target_arg(cli, args).ok().map(|(t, _)| t);
    if restore
        && scratch.is_none()
        && target
            .as_ref()
            .is_some_and(|t| t.backend == dbmaint::plan::values::Backend::Postgres)
    {
        return fail(
            cli,
            &Failure::error(
                "--restore on PostgreSQL restores a full copy: say where, with `--restore-to URL` (a scratch server) or `--same-server`",
            ),
        );
    }
    let scratch = scratch.or(restore.then_some(Scratch::SameServer));
    let record = match manage::find(target.as_ref(), backup).await {
        Ok(r) => r,
        Err(f) => return fail(cli, &f),
    };
    let done = manage::recheck(target.as_ref(), &record, scratch).await;
    match cli.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&done).unwrap_or_default()),
        Output::Text => {
            let mark = if done.ok { "✓" } else { "✗" };
            println!(
                "{mark} backup {} `{}`: {}{}",
                done.id,
                dbmaint::report::textsafe::visible(&done.path),
                dbmaint::report::textsafe::visible(&done.note),
                if done.journaled {
                    " (recorded in the journal)"
                } else {
                    ""
                }
            );
        }
    }
    if done.ok { exit::OK } else { exit::ERROR }
}

async fn restore(cli: &Cli, args: &RestoreArgs) -> i32 {
    let dest = match Target::parse(&args.target) {
        Ok(t) => t,
        Err(e) => return fail(cli, &Failure::error(format!("--target: {}", e.message))),
    };
    // The journal that lists the backup: --from, the plan's target, else the destination's.
    let journal = if let Some(url) = &args.from {
        match Target::parse(url) {
            Ok(t) => Some(t),
            Err(e) => return fail(cli, &Failure::error(format!("--from: {}", e.message))),
        }
    } else if args.plan.is_some() {
        let ta = TargetArgs {
            target: None,
            plan: args.plan.clone(),
            env: args.env.clone(),
        };
        match target_arg(cli, &ta) {
            Ok((t, _)) => Some(t),
            Err(code) => return code,
        }
    } else {
        Some(dest.clone())
    };
    let record = match manage::find(journal.as_ref(), &args.backup).await {
        Ok(r) => r,
        Err(f) => return fail(cli, &f),
    };
    let mut req = RestoreRequest {
        record,
        dest: dest.clone(),
        clean: args.clean,
        jobs: args.jobs,
        same_database: args.force,
    };
    let here = match manage::destination(&req).await {
        Ok(d) => d,
        Err(f) => return fail(cli, &f),
    };
    let tty = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    eprintln!(
        "restore `{}` ({} {}, {}) into {}",
        dbmaint::report::textsafe::visible(&req.record.path),
        req.record.format,
        human_bytes(req.record.bytes),
        if req.record.created_at.is_empty() {
            "not journaled"
        } else {
            req.record.created_at.as_str()
        },
        here.target
    );
    if here.is_source && !args.force {
        if !tty {
            return fail(
                cli,
                &Failure::error(format!(
                    "{} is the database this backup was taken from: nothing was changed; confirm with `--force` (or type its name when asked on a terminal)",
                    here.target
                )),
            );
        }
        let name = dest.database.clone();
        let prompt = format!(
            "{} is the database this backup was taken from. Type its name (`{name}`) to restore onto it: ",
            here.target
        );
        if !ask(&prompt, &name) {
            eprintln!("restore cancelled; nothing was done");
            return exit::ERROR;
        }
        req.same_database = true;
    }
    if args.clean && here.object_count > 0 {
        eprintln!("--clean drops {} objects first:", here.object_count);
        if !here.schemas.is_empty() {
            eprintln!(
                "  whole schemas: {} (every function, type and view in them goes too; `public` is recreated)",
                here.schemas.join(", ")
            );
        }
        for o in &here.objects {
            eprintln!("  - {}", dbmaint::report::textsafe::visible(o));
        }
        if here.object_count > here.objects.len() as u64 {
            eprintln!("  … and {} more", here.object_count - here.objects.len() as u64);
        }
        if !args.auto_approve {
            if !tty {
                return fail(
                    cli,
                    &Failure::error("not dropping without approval: stdin is not a terminal; pass --auto-approve"),
                );
            }
            if !ask("Drop them and restore? Only `yes` is accepted: ", "yes") {
                eprintln!("restore cancelled; nothing was done");
                return exit::ERROR;
            }
        }
    }
    let say = |line: &str| eprintln!("  {}", dbmaint::report::textsafe::visible(line));
    let done = match manage::restore(&req, &here, &say).await {
        Ok(d) => d,
        Err(f) => return fail(cli, &f),
    };
    match cli.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&done).unwrap_or_default()),
        Output::Text => {
            println!(
                "{} restored `{}` into {} in {:.1}s{}",
                if done.counts_match { "✓" } else { "✗" },
                dbmaint::report::textsafe::visible(&done.backup),
                done.target,
                done.duration_ms as f64 / 1000.0,
                if done.dropped > 0 {
                    format!(" ({} objects dropped first)", done.dropped)
                } else {
                    String::new()
                }
            );
            let w = done
                .counts
                .iter()
                .map(|(t, _, _)| t.chars().count())
                .max()
                .unwrap_or(5)
                .max(5);
            println!("  {:<w$}  {:>12}  {:>12}", "table", "at backup", "restored");
            for (t, at_backup, now) in &done.counts {
                let b = at_backup.map_or("-".to_string(), |n| n.to_string());
                let flag = if at_backup.is_some_and(|b| b != *now) {
                    "  ✗ differs"
                } else {
                    ""
                };
                println!(
                    "  {:<w$}  {b:>12}  {now:>12}{flag}",
                    dbmaint::report::textsafe::visible(t)
                );
            }
            if !done.counts_recorded {
                println!("  no row counts were recorded at backup time (only `verify: restore` records them)");
            }
        }
    }
    if done.counts_match { exit::OK } else { exit::ERROR }
}

/// Asks on the terminal; true when the answer is exactly `expected`.
fn ask(prompt: &str, expected: &str) -> bool {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().read_line(&mut answer);
    answer.trim() == expected
}

//! The monitoring probes: `inspect checks --fail-on … [--format nagios]`
//! and `history --stale-after D [--format nagios]`. Both only read, on a
//! read-only session, and never take the apply lock. In text mode the
//! answer is a line (or the checks report) and exit 6 (ALERT) when the
//! watched condition holds; in Nagios mode one plugin line on stdout and
//! exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (dbmaint could not tell).

use dbmaint::report::monitor::{self, Probe};
use dbmaint::run::events::Severity;
use dbmaint::run::exit;

use crate::commands::target_arg;
use crate::{Cli, FailOnArg, Output, ProbeFormat, TargetArgs};

/// `inspect checks` as a probe.
pub(crate) async fn checks(
    cli: &Cli,
    args: &TargetArgs,
    fail_on: Option<FailOnArg>,
    format: ProbeFormat,
    max_backup_age_ms: Option<u64>,
) -> i32 {
    const SERVICE: &str = "CHECKS";
    let fail_on = match fail_on {
        Some(FailOnArg::Error) => Severity::Error,
        _ => Severity::Warning,
    };
    let (target, origin) = match target_arg(cli, args) {
        Ok(t) => t,
        Err(code) => return unknown(format, SERVICE, "no usable target (see the error above)", code),
    };
    let what = dbmaint::ops::inspect::InspectWhat::Checks;
    let report = match dbmaint::ops::inspect::inspect_report(&target, &origin, what, 1, false, max_backup_age_ms).await
    {
        Ok(r) => r,
        Err(f) => {
            if format == ProbeFormat::Text {
                eprintln!("error: {}", f.message);
            }
            return unknown(format, SERVICE, &f.message, f.code);
        }
    };
    let probe = monitor::checks(&report.findings, fail_on);
    match format {
        ProbeFormat::Nagios => nagios(&probe),
        ProbeFormat::Text => {
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default()),
                Output::Text => print!("{}", dbmaint::report::text::render_inspect(&report)),
            }
            if probe.alert { exit::ALERT } else { exit::OK }
        }
    }
}

/// `history --stale-after` as a probe.
pub(crate) async fn stale(cli: &Cli, args: &TargetArgs, age: &str, name: Option<&str>, format: ProbeFormat) -> i32 {
    const SERVICE: &str = "STALENESS";
    let max_age = match dbmaint::plan::values::Duration::parse(age) {
        Ok(d) => d.0.as_secs(),
        Err(e) => {
            eprintln!("error: --stale-after `{age}`: {}", e.message);
            return unknown(format, SERVICE, &e.message, exit::ERROR);
        }
    };
    // The plan of `--plan FILE` names the runs to look at, unless --name does.
    let plan_name = match (name, &args.plan) {
        (Some(n), _) => Some(n.to_string()),
        (None, Some(file)) => {
            let mut opts = dbmaint::LoadOptions::from_process();
            opts.env = args.env.clone();
            dbmaint::load(file, &opts).plan.map(|p| p.name)
        }
        (None, None) => None,
    };
    let (target, _) = match target_arg(cli, args) {
        Ok(t) => t,
        Err(code) => return unknown(format, SERVICE, "no usable target (see the error above)", code),
    };
    let last = match dbmaint::run::last_success(&target, plan_name.as_deref()).await {
        Ok(l) => l,
        Err(f) => {
            if format == ProbeFormat::Text {
                eprintln!("error: {}", f.message);
            }
            return unknown(format, SERVICE, &f.message, f.code);
        }
    };
    let probe = monitor::staleness(
        plan_name.as_deref(),
        last.as_ref().map(|(id, p, at)| (*id, p.as_str(), at.as_str())),
        chrono::Utc::now(),
        max_age,
    );
    match (format, cli.output) {
        (ProbeFormat::Nagios, _) => nagios(&probe),
        (ProbeFormat::Text, Output::Json) => {
            println!(
                "{}",
                serde_json::json!({
                    "stale": probe.alert, "summary": probe.summary, "max_age_s": max_age,
                    "last_success": last.as_ref().map(|(id, p, at)| serde_json::json!({"run_id": id, "plan": p, "finished_at": at})),
                })
            );
            if probe.alert { exit::ALERT } else { exit::OK }
        }
        (ProbeFormat::Text, Output::Text) => {
            println!("{}{}", if probe.alert { "STALE: " } else { "" }, probe.summary);
            if probe.alert { exit::ALERT } else { exit::OK }
        }
    }
}

fn nagios(p: &Probe) -> i32 {
    println!("{}", p.nagios());
    p.state.code()
}

/// What could not be answered: UNKNOWN for Nagios, else the error's code.
fn unknown(format: ProbeFormat, service: &'static str, why: &str, code: i32) -> i32 {
    match format {
        ProbeFormat::Nagios => nagios(&Probe::unknown(service, why)),
        ProbeFormat::Text => code,
    }
}

//! `dbmaint schedule export`: what runs a plan every night, built from its
//! `schedule` (in `limits.tz`) — a crontab line, a systemd service and
//! timer, or a Kubernetes CronJob with the plan in a ConfigMap. Each is
//! runnable as printed: absolute paths, the working directory given
//! (`-C`, `WorkingDirectory=`, `workingDir`), no shell wrapper, secrets
//! from the environment and never in the artifact.
//!
//! Owns: the artifacts and the cron → systemd calendar conversion
//! ([`calendar`]). Must not: touch a database (export reads only the plan).

pub mod calendar;
mod kube;

use std::path::{Path, PathBuf};

use crate::plan::Plan;

pub use calendar::{CalendarError, CronSets};

/// Why no artifact could be built.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "plan `{plan}` has no `schedule`: add a top-level `schedule: \"0 3 * * *\"` \
         (minute hour day-of-month month day-of-week, in `limits.tz`)"
    )]
    NoSchedule { plan: String },
    #[error(transparent)]
    Calendar(#[from] CalendarError),
    #[error(
        "`--target` carries a password, which would be written into the {what}: \
         give the password through the environment (PGPASSWORD, a passfile, DATABASE_URL in the \
         environment file or Secret) and export without it"
    )]
    PasswordInTarget { what: &'static str },
    #[error("`{path}` is not valid UTF-8; the {what} needs a printable path")]
    Path { path: String, what: &'static str },
    #[error("cannot read `{path}` for the ConfigMap: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot write the manifest: {0}")]
    Yaml(String),
}

/// One file of an export.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Artifact {
    /// A file name (`dbmaint-nightly.timer`), or `crontab` for the line.
    pub name: String,
    pub text: String,
}

/// What an export needs besides the plan.
#[derive(Debug, Clone)]
pub struct Export<'a> {
    pub plan: &'a Plan,
    /// The plan file, absolute.
    pub plan_file: PathBuf,
    pub env: Option<String>,
    pub vars: Vec<String>,
    /// `--target` to pass on (never with a password).
    pub target: Option<String>,
    /// The dbmaint binary, absolute.
    pub binary: PathBuf,
    /// Where relative paths of the plan resolve (backup `dir`, archive
    /// files, SQLite targets), absolute.
    pub workdir: PathBuf,
    /// The run logs' directory (cron; systemd and Kubernetes use their own).
    pub log_dir: PathBuf,
    /// systemd: `RandomizedDelaySec=`, in seconds.
    pub randomized_delay_s: Option<u64>,
    /// Kubernetes: the container image.
    pub image: String,
    /// Kubernetes: the Secret whose keys become the environment.
    pub secret: Option<String>,
    /// Kubernetes: a PersistentVolumeClaim for the working directory
    /// (backups, archive files); an emptyDir without it.
    pub volume_claim: Option<String>,
    /// One plan over an inventory of databases.
    pub fleet: Option<ExportFleet>,
}

/// The fleet an export runs the plan over.
#[derive(Debug, Clone)]
pub struct ExportFleet {
    /// The inventory file, absolute.
    pub file: PathBuf,
    /// `--select` filters, passed on.
    pub select: Vec<String>,
    /// How many targets the selection holds (Kubernetes: one pod each).
    pub count: usize,
    /// Targets at once (cron, systemd: `--fleet-parallelism`; Kubernetes:
    /// the Job's `parallelism`).
    pub parallelism: usize,
}

impl Export<'_> {
    /// `dbmaint-NAME[-ENV]`: the unit, CronJob and ConfigMap name.
    pub fn unit_name(&self) -> String {
        let mut name = format!("dbmaint-{}", self.plan.name);
        if let Some(env) = &self.env {
            name.push('-');
            name.push_str(env);
        }
        // Kubernetes names: lower-case alphanumerics and `-`, at most 52
        // characters for a CronJob; systemd accepts the same.
        let mut clean: String = name
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        clean.truncate(52);
        clean.trim_end_matches('-').to_string()
    }

    fn schedule(&self) -> Result<(&str, CronSets), ScheduleError> {
        let Some(s) = &self.plan.schedule else {
            return Err(ScheduleError::NoSchedule {
                plan: self.plan.name.clone(),
            });
        };
        Ok((&s.0, CronSets::parse(&s.0)?))
    }

    fn tz(&self) -> &str {
        self.plan.limits.tz.0.name()
    }

    /// How long a run may take before its supervisor stops it:
    /// `max_runtime` plus a margin for the statement in flight (its own
    /// timeout ends it) and the report — 10 %, at least 5 minutes.
    pub fn deadline_s(&self) -> Option<u64> {
        let max = self.plan.limits.max_runtime.as_ref()?.0.as_secs();
        Some(max + (max / 10).max(300))
    }

    /// `plan apply …` as each artifact runs it; `plan` and `log_dir` are
    /// where the runner sees them.
    fn apply_args(&self, plan: &str, log_dir: &str, what: &'static str) -> Result<Vec<String>, ScheduleError> {
        self.apply_args_with(plan, log_dir, what, None)
    }

    /// The same; with a fleet, `inventory` is where the runner sees the
    /// inventory (the whole fleet in one process, or — `indexed` — the
    /// one target of a Kubernetes Indexed Job's pod).
    fn apply_args_with(
        &self,
        plan: &str,
        log_dir: &str,
        what: &'static str,
        indexed: Option<&str>,
    ) -> Result<Vec<String>, ScheduleError> {
        let mut args: Vec<String> = vec!["plan".into(), "apply".into(), plan.into()];
        if let Some(f) = &self.fleet {
            let inventory = match indexed {
                Some(path) => path.to_string(),
                None => path_text(&f.file, what)?,
            };
            args.extend(["--targets".into(), inventory]);
            for s in &f.select {
                args.extend(["--select".into(), s.clone()]);
            }
            match indexed {
                Some(_) => args.extend(["--target-index".into(), "$(JOB_COMPLETION_INDEX)".into()]),
                None => args.extend(["--fleet-parallelism".into(), f.parallelism.to_string()]),
            }
        }
        if let Some(env) = &self.env {
            args.extend(["--env".into(), env.clone()]);
        }
        for v in &self.vars {
            args.extend(["--var".into(), v.clone()]);
        }
        if let Some(t) = &self.target {
            if crate::plan::source::redact_url(t) != *t {
                return Err(ScheduleError::PasswordInTarget { what });
            }
            args.extend(["--target".into(), t.clone()]);
        }
        args.extend(
            ["--auto-approve", "--progress", "never", "--log-dir", log_dir]
                .iter()
                .map(|s| s.to_string()),
        );
        Ok(args)
    }

    fn header(&self, schedule: &str) -> String {
        format!(
            "dbmaint plan `{}`{}: \"{schedule}\" in {}",
            self.plan.name,
            self.env.as_ref().map(|e| format!(" (env {e})")).unwrap_or_default(),
            self.tz()
        )
    }
}

fn path_text(p: &Path, what: &'static str) -> Result<String, ScheduleError> {
    p.to_str().map(str::to_string).ok_or_else(|| ScheduleError::Path {
        path: p.display().to_string(),
        what,
    })
}

/// The crontab lines: the zone, then the schedule and the command.
pub fn cron(e: &Export) -> Result<Vec<Artifact>, ScheduleError> {
    const WHAT: &str = "crontab line";
    let (schedule, _) = e.schedule()?;
    let mut argv = vec![path_text(&e.binary, WHAT)?, "-C".into(), path_text(&e.workdir, WHAT)?];
    argv.extend(e.apply_args(&path_text(&e.plan_file, WHAT)?, &path_text(&e.log_dir, WHAT)?, WHAT)?);
    // cron hands the line to /bin/sh, after turning each unescaped `%`
    // into a newline: quote for the shell, then escape `%`.
    let command = argv
        .iter()
        .map(|a| shell_quote(a).replace('%', "\\%"))
        .collect::<Vec<_>>()
        .join(" ");
    let text = format!(
        "# {}\n\
         # CRON_TZ sets the schedule's zone (cronie, busybox, systemd-cron; Debian's cron\n\
         # ignores it and uses the machine's zone). The report goes to cron's mail\n\
         # (MAILTO); the run logs to {}. Secrets come from the environment\n\
         # (PGPASSWORD, ~/.pgpass, PGSERVICE), never from this line.\n\
         CRON_TZ={}\n\
         {schedule} {command}\n",
        e.header(schedule),
        e.log_dir.display(),
        e.tz(),
    );
    Ok(vec![Artifact {
        name: "crontab".into(),
        text,
    }])
}

/// A `.service` (oneshot, no restart loop) and a `.timer`.
pub fn systemd(e: &Export) -> Result<Vec<Artifact>, ScheduleError> {
    const WHAT: &str = "systemd unit";
    const LOG_DIR: &str = "/var/log/dbmaint";
    let (schedule, sets) = e.schedule()?;
    let unit = e.unit_name();
    let mut argv = vec![path_text(&e.binary, WHAT)?];
    argv.extend(e.apply_args(&path_text(&e.plan_file, WHAT)?, LOG_DIR, WHAT)?);
    let exec = argv.iter().map(|a| systemd_quote(a)).collect::<Vec<_>>().join(" ");
    let timeout = match e.deadline_s() {
        Some(s) => format!(
            "# limits.max_runtime plus a margin: the run stops starting work at max_runtime.\n\
             TimeoutStartSec={s}\n"
        ),
        None => "# No limits.max_runtime: no start timeout (a oneshot's default).\n".into(),
    };
    let service = format!(
        "# {header}\n\
         [Unit]\n\
         Description=dbmaint plan {name}\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         # Secrets (DATABASE_URL, PGPASSWORD, PGSERVICE …), one KEY=value per line.\n\
         EnvironmentFile=-/etc/dbmaint/{unit}.env\n\
         WorkingDirectory={workdir}\n\
         ExecStart={exec}\n\
         {timeout}\
         SyslogIdentifier={unit}\n\
         LogsDirectory=dbmaint\n\
         # No Restart=: a failed run is reported and the next timer tries again;\n\
         # an interrupted one resumes from its journal.\n\
         # Run it as a user of its own: User=dbmaint\n",
        header = e.header(schedule),
        name = e.plan.name,
        workdir = systemd_quote(&path_text(&e.workdir, WHAT)?),
    );
    let calendars: String = sets
        .on_calendar(e.tz())
        .iter()
        .map(|c| format!("OnCalendar={c}\n"))
        .collect();
    let delay = e
        .randomized_delay_s
        .map(|s| format!("RandomizedDelaySec={s}\n"))
        .unwrap_or_default();
    let timer = format!(
        "# {header}\n\
         [Unit]\n\
         Description=dbmaint plan {name}, on schedule\n\
         \n\
         [Timer]\n\
         {calendars}\
         # A run missed while the machine was off starts at boot.\n\
         Persistent=true\n\
         {delay}\
         Unit={unit}.service\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n",
        header = e.header(schedule),
        name = e.plan.name,
    );
    Ok(vec![
        Artifact {
            name: format!("{unit}.service"),
            text: service,
        },
        Artifact {
            name: format!("{unit}.timer"),
            text: timer,
        },
    ])
}

/// A ConfigMap with the plan (and its overlay) and a CronJob running it.
pub fn kubernetes(e: &Export) -> Result<Vec<Artifact>, ScheduleError> {
    let (schedule, _) = e.schedule()?;
    Ok(vec![Artifact {
        name: format!("{}.yaml", e.unit_name()),
        text: kube::manifests(e, schedule)?,
    }])
}

/// One word for /bin/sh: as is when it is safe, else in single quotes.
fn shell_quote(a: &str) -> String {
    if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "_-./:=@+,".contains(c)) {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

/// One word of a systemd command line: `%` and `$` doubled (specifiers and
/// variables), quoted when it holds a space, a quote or a backslash.
fn systemd_quote(a: &str) -> String {
    let a = a.replace('%', "%%").replace('$', "$$");
    if !a.is_empty() && !a.chars().any(|c| c.is_whitespace() || "\"'\\;".contains(c)) {
        a
    } else {
        format!("\"{}\"", a.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_odd_paths() {
        assert_eq!(shell_quote("/usr/bin/dbmaint"), "/usr/bin/dbmaint");
        assert_eq!(shell_quote("/srv/my plans/it's.yaml"), "'/srv/my plans/it'\\''s.yaml'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(systemd_quote("/srv/my plans/a.yaml"), "\"/srv/my plans/a.yaml\"");
        assert_eq!(systemd_quote("days=50%"), "days=50%%");
        assert_eq!(systemd_quote("$HOME"), "$$HOME");
    }
}

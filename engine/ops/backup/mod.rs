//! `backup`: pg_dump on PostgreSQL, `VACUUM INTO` on SQLite. Parameters and
//! rules only; running it belongs to the executor.

pub mod exec;
pub mod verify;

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Serialize;

use super::{BOTH, OpCheck, OpParams, get};
use crate::plan::decode::{Cx, Decode, scalar_text};
use crate::plan::node::{Kind, Node};
use crate::plan::values::Backend;
use crate::run::execplan::{Action, Estimate, Fidelity, Marker, human_bytes};
use crate::run::planner::{Draft, PlanCx};

crate::keywords! {
    /// pg_dump's archive format.
    pub enum Format ("a backup format") {
        /// `pg_dump -Fc`: one compressed file, restorable selectively.
        Custom = "custom",
        /// `pg_dump -Fd`: a directory, dumped in parallel with `jobs`.
        Directory = "directory",
        /// `pg_dump -Fp`: a plain SQL script.
        Plain = "plain",
    }
}

/// How the new backup is checked before it replaces older ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Not checked.
    No,
    /// Read back entirely (`pg_restore -f /dev/null`; SQLite `integrity_check`).
    Read,
    /// Restored into a scratch database and row counts compared.
    Restore,
}

impl Decode for Verify {
    const EXPECTED: &'static str = "`true`, `false` or `restore`";
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        match (&node.kind, scalar_text(node).as_deref()) {
            (Kind::Bool(true), _) | (Kind::Str(_), Some("true")) => Some(Self::Read),
            (Kind::Bool(false), _) | (Kind::Str(_), Some("false")) => Some(Self::No),
            (Kind::Str(_), Some("restore")) => Some(Self::Restore),
            _ => {
                cx.invalid(node, format!("`verify` must be {}", Self::EXPECTED), None);
                None
            }
        }
    }
}

impl Serialize for Verify {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::No => s.serialize_bool(false),
            Self::Read => s.serialize_bool(true),
            Self::Restore => s.serialize_str("restore"),
        }
    }
}

impl JsonSchema for Verify {
    fn schema_name() -> Cow<'static, str> {
        "Verify".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "true: read the whole backup back; restore: restore into a scratch database and compare row counts",
            "anyOf": [{"type": "boolean"}, {"const": "restore"}]
        })
    }
}

crate::params! {
    /// Parameters of `backup`.
    pub struct Backup ("backup parameters") {
        required {}
        optional {
            /// Archive format (PostgreSQL): `custom` (default), `directory`, `plain`.
            format: Format,
            /// Directory the backup is written to (default `backups`), relative to the working directory.
            dir: String,
            /// Parallel pg_dump jobs; only with `format: directory`.
            jobs: u64,
            /// Compression level 0..9 passed to pg_dump.
            compress: u64,
            /// Check the backup before keeping it (default `true`).
            verify: Verify,
            /// Keep this many of this plan's backups; older ones are pruned after the new one verified.
            keep: u64,
        }
    }
}

impl OpParams for Backup {
    const KEY: &'static str = "backup";
    const BACKENDS: &'static [Backend] = BOTH;

    fn check(&self, c: &mut OpCheck<'_>) {
        if let Some(jobs) = &self.jobs {
            let directory = self.format.as_ref().is_some_and(|f| f.value == Format::Directory);
            if !directory {
                c.error(
                    "invalid-combination",
                    jobs.pos,
                    "`jobs` needs `format: directory`: pg_dump dumps in parallel only into a directory".to_string(),
                    "set `format: directory`, or remove `jobs`",
                );
            }
        }
        c.in_range(&self.jobs, "jobs", 1..=64);
        c.in_range(&self.compress, "compress", 0..=9);
        c.in_range(&self.keep, "keep", 1..=10_000);
        if let Some(dir) = &self.dir
            && dir.value.trim().is_empty()
        {
            c.error(
                "invalid-value",
                dir.pos,
                "`dir` is empty".to_string(),
                "name a directory, e.g. `backups`",
            );
        }
        c.not_on(&self.format, "format", Backend::Sqlite);
        c.not_on(&self.jobs, "jobs", Backend::Sqlite);
        c.not_on(&self.compress, "compress", Backend::Sqlite);
    }
}

impl Backup {
    pub fn plan(&self, cx: &PlanCx<'_>) -> Draft {
        let dir = get(&self.dir).unwrap_or_else(|| "backups".into());
        let format = match cx.backend {
            Backend::Postgres => get(&self.format).unwrap_or(Format::Custom).as_str().to_string(),
            Backend::Sqlite => "sqlite".to_string(),
        };
        let ext = match format.as_str() {
            "custom" => "dump",
            "directory" => "dir",
            "plain" => "sql",
            _ => "db",
        };
        let prefix = format!("{}-{}-", cx.plan.name, cx.step.id);
        let name = format!("{prefix}{}.{ext}", cx.now.format("%Y%m%dT%H%M%SZ"));
        let path = std::path::Path::new(&dir).join(&name);
        let temp = std::path::Path::new(&dir).join(format!(".{name}.partial"));
        let verify = match get(&self.verify).unwrap_or(Verify::Read) {
            Verify::No => "no",
            Verify::Read => "read",
            Verify::Restore => "restore",
        };
        let keep = get(&self.keep);
        // Older backups of this plan and step, oldest first (names sort by time).
        let mut older: Vec<(String, u64)> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter_map(|e| {
                        let n = e.file_name().to_string_lossy().to_string();
                        (n.starts_with(&prefix) && n.ends_with(&format!(".{ext}")))
                            .then(|| (n, e.metadata().map(|m| m.len()).unwrap_or(0)))
                    })
                    .collect()
            })
            .unwrap_or_default();
        older.sort();
        let (bytes, fidelity, basis) = match (cx.backend, &cx.insp.sqlite, older.last()) {
            (Backend::Sqlite, Some(f), _) => (
                (f.page_count - f.freelist_count) * f.page_size,
                Fidelity::Estimate,
                "used pages",
            ),
            (_, _, Some((_, size))) if ext != "dir" => (*size, Fidelity::Estimate, "the last backup"),
            _ => (
                cx.insp.database_bytes,
                Fidelity::Estimate,
                "the database size, an upper bound",
            ),
        };
        let mut d = Draft {
            marker: Some(Marker::Create),
            lock: match cx.backend {
                Backend::Postgres => "ACCESS SHARE on every dumped table (pg_dump)".into(),
                Backend::Sqlite => "a read transaction (VACUUM INTO)".into(),
            },
            compensation: format!(
                "a failed or killed backup removes its partial file `{}`",
                temp.display()
            ),
            ..Draft::default()
        };
        d.object(
            Marker::Create,
            "file",
            path.display().to_string(),
            format!(
                "~{} ({format}, estimated from {basis}), verify: {verify}",
                human_bytes(bytes)
            ),
            serde_json::json!({"bytes": bytes, "format": format, "verify": verify}),
        );
        if let Some(keep) = keep {
            let prune = (older.len() + 1).saturating_sub(keep as usize);
            for (old, size) in older.iter().take(prune) {
                d.object(
                    Marker::Remove,
                    "file",
                    std::path::Path::new(&dir).join(old).display().to_string(),
                    format!(
                        "{}, pruned after the new backup verified (keep: {keep})",
                        human_bytes(*size)
                    ),
                    serde_json::json!({"bytes": size}),
                );
            }
        }
        d.statements.push(match cx.backend {
            Backend::Postgres => {
                let mut cmd = format!("pg_dump --format={format} --file={} --no-password", temp.display());
                if let Some(j) = get(&self.jobs) {
                    cmd.push_str(&format!(" --jobs={j}"));
                }
                if let Some(z) = get(&self.compress) {
                    cmd.push_str(&format!(" --compress={z}"));
                }
                cmd + " <target without password; password via PGPASSWORD>"
            }
            Backend::Sqlite => format!("VACUUM INTO '{}'", temp.display()),
        });
        if verify == "restore" && cx.backend == Backend::Postgres {
            // The scratch database lives only while verification runs.
            let scratch = "dbmaint_verify_<pid>";
            d.object(
                Marker::Read,
                "database",
                scratch.to_string(),
                "scratch database for `verify: restore`: created from template0, restored, counted against the dump's snapshot, dropped".to_string(),
                serde_json::json!({}),
            );
            d.statements.extend([
                format!("CREATE DATABASE {scratch} TEMPLATE template0"),
                format!(
                    "{} <scratch database> {}",
                    if format == "plain" {
                        "psql -X -v ON_ERROR_STOP=1 --file"
                    } else {
                        "pg_restore --no-owner --no-privileges --exit-on-error"
                    },
                    temp.display()
                ),
                format!("DROP DATABASE IF EXISTS {scratch} WITH (FORCE)"),
            ]);
        }
        d.summary = format!("write `{}` (~{})", path.display(), human_bytes(bytes));
        d.estimate = Some(Estimate {
            rows: 0,
            bytes,
            fidelity,
        });
        let temp_path = temp.display().to_string();
        let write = Action::op(
            <Backup as OpParams>::KEY,
            &Work::Write(BackupWork {
                path: path.display().to_string(),
                temp_path: temp.display().to_string(),
                format,
                jobs: get(&self.jobs),
                compress: get(&self.compress),
                verify: verify.into(),
                keep,
                prune_prefix: prefix,
                dir,
            }),
        );
        d.actions.push(write.undone_by(
            format!("remove the partial file `{temp_path}`"),
            Action::op(<Backup as OpParams>::KEY, &Work::RemovePartial { temp_path }),
        ));
        d
    }
}

impl crate::run::operation::Operation for Backup {
    fn plan(&self, cx: &PlanCx) -> Draft {
        Backup::plan(self, cx)
    }
}

/// What a `backup` action does.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum Work {
    Write(BackupWork),
    /// The undo of a failed `Write`: its partial file removed.
    RemovePartial {
        temp_path: String,
    },
}

/// A backup to write.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct BackupWork {
    /// The final path, written only after verification.
    pub path: String,
    /// The temporary path the child writes to.
    pub temp_path: String,
    /// `custom`, `directory`, `plain` (pg_dump) or `sqlite` (`VACUUM INTO`).
    pub format: String,
    pub jobs: Option<u64>,
    pub compress: Option<u64>,
    /// `no`, `read` or `restore`.
    pub verify: String,
    pub keep: Option<u64>,
    /// Names of this plan's and step's older backups start with this.
    pub prune_prefix: String,
    pub dir: String,
}

/// Runs a backup: the child (or `VACUUM INTO`), verification, the rename.
#[derive(Debug)]
pub struct Run;

impl crate::run::operation::Executes for Run {
    fn key(&self) -> &'static str {
        <Backup as OpParams>::KEY
    }

    fn execute<'a, 'r: 'a>(
        &'a self,
        work: &'a serde_json::Value,
        run: &'a mut crate::run::steprun::StepRun<'r>,
    ) -> futures_util::future::BoxFuture<'a, Result<(), crate::run::steprun::StepErr>> {
        Box::pin(async move {
            use crate::run::steprun::StepErr;
            let work = match crate::run::operation::decode_work(self.key(), work)? {
                Work::Write(work) => work,
                Work::RemovePartial { temp_path } => {
                    return match exec::remove_partial(&temp_path) {
                        Ok(Some(removed)) => {
                            run.result().rolled_back = Some(removed);
                            Ok(())
                        }
                        Ok(None) => {
                            run.result().rolled_back = Some("no partial file was left".into());
                            Ok(())
                        }
                        Err(left) => Err(StepErr::failed(left)),
                    };
                }
            };
            for stale in exec::remove_stale_partials(&work) {
                run.undone(format!("removed `{stale}`, left by an interrupted run"));
            }
            let timeouts = (run.step.lock_timeout_ms, run.step.statement_timeout_ms);
            let target = run.target().clone();
            match exec::run(&work, &target, timeouts).await {
                Ok(done) => {
                    let r = run.result();
                    r.bytes += done.bytes;
                    r.statements += 1;
                    r.cleanup_failed = done.cleanup_failed;
                    run.object_done(format!("{} ({})", work.path, done.verified));
                    Ok(())
                }
                Err(e) => {
                    run.result().cleanup_failed = e.cleanup_failed;
                    Err(StepErr::failed(e.message))
                }
            }
        })
    }

    /// A backup's statements name its file, whose name carries the time:
    /// they differ on every computation and say nothing of drift.
    fn drift(
        &self,
        _saved: &crate::run::execplan::PlannedStep,
        _fresh: &crate::run::execplan::PlannedStep,
    ) -> crate::run::operation::StepDrift {
        crate::run::operation::StepDrift::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::findings;

    #[test]
    fn jobs_need_directory_format() {
        assert_eq!(
            findings::<Backup>("{format: custom, jobs: 4}", Backend::Postgres),
            ["invalid-combination"]
        );
        assert!(
            findings::<Backup>(
                "{format: directory, jobs: 4, verify: restore, keep: 7}",
                Backend::Postgres
            )
            .is_empty()
        );
    }

    #[test]
    fn unknown_format_suggests_the_closest() {
        assert_eq!(
            findings::<Backup>("{format: custon}", Backend::Postgres),
            ["invalid-value"]
        );
    }
}

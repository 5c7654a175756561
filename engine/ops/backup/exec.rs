//! Running a planned backup: the child process (`pg_dump`) or `VACUUM
//! INTO`, verification, fsync, the rename into place, and pruning. The
//! backup is written under a temporary name and renamed only after the
//! child succeeded and verification passed; a failed backup's action is
//! undone by [`remove_partial`], which the executor runs (safety.md rule 8). The password reaches `pg_dump` through
//! `PGPASSWORD` in its environment, never its argv (rule 11), and the child
//! is started under `setpriv --pdeathsig KILL` when available, so it dies
//! with a killed engine instead of writing on.

use std::path::Path;
use std::process::Stdio;

use std::time::Duration;

use super::BackupWork;
use crate::db::DbError;
use crate::ops::backup::verify::{self, VerifyError};
use crate::plan::values::{Backend, Target};

/// A failed backup: what went wrong, and what of verification is left for
/// a person (the partial file is its action's undo).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BackupError {
    pub message: String,
    /// A scratch database verification could not drop.
    pub cleanup_failed: Option<String>,
}

/// Why writing or verifying a backup failed, with its source; the step
/// reports it as text ([`BackupError::message`]).
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot create backup directory `{dir}`: {source}")]
    CreateDir { dir: String, source: std::io::Error },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("VACUUM INTO `{path}` failed: {source}")]
    VacuumInto { path: String, source: DbError },
    #[error("cannot open the copy `{path}`: {source}")]
    OpenCopy { path: String, source: DbError },
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error("cannot start `{bin}`: {source}; install the PostgreSQL client tools")]
    Start { bin: String, source: std::io::Error },
    /// A client binary exited badly; `stderr` is on one line, passwords redacted.
    #[error("`{program}` failed ({status}): {stderr}")]
    Child {
        program: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("verification failed, the backup is unreadable: {0}")]
    Unreadable(Box<WriteError>),
    #[error("verification failed, the backup does not restore: {0}")]
    DoesNotRestore(Box<WriteError>),
    #[error("cannot read `{path}` back: {source}")]
    ReadBack { path: String, source: std::io::Error },
    #[error("verification failed: `{path}` does not end with pg_dump's completion line")]
    Incomplete { path: String },
    #[error("cannot fsync `{path}`: {source}")]
    Fsync { path: String, source: std::io::Error },
    #[error("cannot rename to `{path}`: {source}")]
    Rename { path: String, source: std::io::Error },
}

/// A backup written, verified and renamed into place.
#[derive(Debug)]
pub struct BackupDone {
    pub bytes: u64,
    /// How it was verified, for the report.
    pub verified: String,
    /// A leftover of verification a person must remove (a scratch database
    /// that could not be dropped): the backup is good, the run exits 5.
    pub cleanup_failed: Option<String>,
}

/// Runs the backup.
pub async fn run(work: &BackupWork, target: &Target, timeouts: (u64, u64)) -> Result<BackupDone, BackupError> {
    let mut leftover = None;
    let verified = match write_and_verify(work, target, timeouts, &mut leftover).await {
        Ok(v) => v,
        Err(e) => {
            return Err(BackupError {
                message: e.to_string(),
                cleanup_failed: leftover,
            });
        }
    };
    if let Err(e) = fsync_and_rename(work) {
        return Err(BackupError {
            message: e.to_string(),
            cleanup_failed: leftover,
        });
    }
    let bytes = size_of(Path::new(&work.path));
    if let Some(keep) = work.keep {
        prune(work, keep);
    }
    Ok(BackupDone {
        bytes,
        verified,
        cleanup_failed: leftover,
    })
}

/// Removes `.{plan}-{step}-*.partial` files a killed run left behind; the
/// caller holds the apply lock, so none of them is being written. Returns
/// what it removed.
pub fn remove_stale_partials(work: &BackupWork) -> Vec<String> {
    let prefix = format!(".{}", work.prune_prefix);
    let mut removed = vec![];
    for entry in std::fs::read_dir(&work.dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !(name.starts_with(&prefix) && name.ends_with(".partial")) {
            continue;
        }
        let path = entry.path();
        let ok = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if ok.is_ok() {
            removed.push(path.display().to_string());
        }
    }
    removed
}

/// Undoes a failed backup: removes its partial file (or directory) when
/// there is one. Returns what it removed, or what is left and why.
pub fn remove_partial(temp_path: &str) -> Result<Option<String>, String> {
    let temp = Path::new(temp_path);
    if !temp.exists() {
        return Ok(None);
    }
    let removed = if temp.is_dir() {
        std::fs::remove_dir_all(temp)
    } else {
        std::fs::remove_file(temp)
    };
    match removed {
        Ok(()) => Ok(Some(format!("removed the partial backup `{temp_path}`"))),
        Err(e) => Err(format!(
            "the partial backup `{temp_path}` is left ({e}): delete it by hand"
        )),
    }
}

/// Writes the backup under its temp name and verifies it; returns how it
/// was verified. `leftover` receives what verification could not clean up.
async fn write_and_verify(
    work: &BackupWork,
    target: &Target,
    (lock_timeout_ms, statement_timeout_ms): (u64, u64),
    leftover: &mut Option<String>,
) -> Result<String, WriteError> {
    std::fs::create_dir_all(&work.dir).map_err(|source| WriteError::CreateDir {
        dir: work.dir.clone(),
        source,
    })?;
    let restore = work.verify == "restore";
    match target.backend {
        Backend::Sqlite => {
            let mut conn = crate::db::connect(target, crate::db::SessionLimits::READ_ONLY).await?;
            let copy_failed = |source| WriteError::VacuumInto {
                path: work.temp_path.clone(),
                source,
            };
            let source = if restore {
                Some(
                    verify::sqlite_copy_and_count(&mut conn, &work.temp_path)
                        .await
                        .map_err(copy_failed)?,
                )
            } else {
                crate::db::sqlite::vacuum_into(&mut conn, &work.temp_path)
                    .await
                    .map_err(copy_failed)?;
                None
            };
            if work.verify == "no" {
                return Ok("not verified (verify: no)".into());
            }
            crate::db::sqlite::integrity_check(&work.temp_path).await?;
            match source {
                None => Ok("integrity_check ok".into()),
                Some((source, exact)) => {
                    let copy =
                        verify::sqlite_file_counts(&work.temp_path)
                            .await
                            .map_err(|source| WriteError::OpenCopy {
                                path: work.temp_path.clone(),
                                source,
                            })?;
                    if exact {
                        return Ok(verify::compare(&source, &copy, true)?);
                    }
                    // Written meanwhile: the copy may still match the source now.
                    let now = verify::sqlite_counts(&mut conn).await?;
                    Ok(verify::compare(&now, &copy, true).or_else(|_| verify::compare(&source, &copy, false))?)
                }
            }
        }
        Backend::Postgres => {
            let conn = PgChildEnv::from_target(target)?;
            let snapshot = if restore {
                Some(verify::pg_snapshot(target, Duration::from_millis(statement_timeout_ms)).await?)
            } else {
                None
            };
            let mut args = vec![
                format!("--format={}", work.format),
                format!("--file={}", work.temp_path),
                "--no-password".to_string(),
                format!("--lock-wait-timeout={lock_timeout_ms}"),
            ];
            if let Some(s) = &snapshot {
                args.push(format!("--snapshot={}", s.id));
            }
            if let Some(j) = work.jobs {
                args.push(format!("--jobs={j}"));
            }
            if let Some(z) = work.compress {
                args.push(format!("--compress={z}"));
            }
            run_child("pg_dump", &args, &conn).await?;
            match (snapshot, work.verify.as_str(), work.format.as_str()) {
                (Some(snapshot), _, _) => {
                    let source = snapshot.counts().await?;
                    restore_and_compare(work, target, &source, leftover).await
                }
                (None, "no", _) => Ok("not verified (verify: no)".into()),
                (None, _, "plain") => verify_plain(&work.temp_path).map(|()| "completion line present".into()),
                (None, _, _) => {
                    let args = vec!["--file=/dev/null".to_string(), work.temp_path.clone()];
                    run_child("pg_restore", &args, &conn)
                        .await
                        .map(|()| "pg_restore read every block".into())
                        .map_err(|e| WriteError::Unreadable(Box::new(e)))
                }
            }
        }
    }
}

/// Restores the dump into a scratch database, compares its counts with the
/// snapshot's, and drops the scratch database whatever happened.
async fn restore_and_compare(
    work: &BackupWork,
    target: &Target,
    source: &verify::Counts,
    leftover: &mut Option<String>,
) -> Result<String, WriteError> {
    let scratch = verify::create_scratch(target).await?;
    let result = async {
        let scratch_env = PgChildEnv::from_target(&scratch.target)?;
        let (program, args) = if work.format == "plain" {
            let args = ["-X", "-q", "-v", "ON_ERROR_STOP=1"].map(String::from).to_vec();
            ("psql", [args, vec![format!("--file={}", work.temp_path)]].concat())
        } else {
            // pg_restore writes to a database only when one is named; the
            // name comes from PGDATABASE like every other setting.
            let args = ["--no-owner", "--no-privileges", "--exit-on-error"]
                .map(String::from)
                .to_vec();
            (
                "pg_restore",
                [
                    args,
                    vec![format!("--dbname={}", scratch.target.database), work.temp_path.clone()],
                ]
                .concat(),
            )
        };
        run_child(program, &args, &scratch_env)
            .await
            .map_err(|e| WriteError::DoesNotRestore(Box::new(e)))?;
        let restored = scratch.counts().await?;
        Ok(verify::compare(source, &restored, true)?)
    }
    .await;
    if let Err(e) = scratch.drop_db().await {
        *leftover = Some(e.to_string());
    }
    result
}

/// A plain dump is complete when pg_dump wrote its closing comment.
fn verify_plain(path: &str) -> Result<(), WriteError> {
    let text = std::fs::read(path).map_err(|source| WriteError::ReadBack {
        path: path.to_string(),
        source,
    })?;
    let tail = String::from_utf8_lossy(&text[text.len().saturating_sub(512)..]).to_string();
    if tail.contains("PostgreSQL database dump complete") {
        Ok(())
    } else {
        Err(WriteError::Incomplete { path: path.to_string() })
    }
}

/// The connection for a child process: the resolved libpq settings, for
/// its environment (the password included, never in its argv).
struct PgChildEnv {
    vars: Vec<(&'static str, Option<String>)>,
}

impl PgChildEnv {
    fn from_target(target: &Target) -> Result<Self, WriteError> {
        let ci = crate::db::pg::conninfo(target)?;
        Ok(Self { vars: ci.child_env() })
    }
}

/// Runs a PostgreSQL client binary; kills it if this future is dropped.
async fn run_child(program: &str, args: &[String], env: &PgChildEnv) -> Result<(), WriteError> {
    let bin = pg_bin(program);
    let mut cmd = if setpriv_available() {
        let mut c = tokio::process::Command::new("setpriv");
        c.arg("--pdeathsig").arg("KILL").arg(&bin);
        c
    } else {
        tokio::process::Command::new(&bin)
    };
    cmd.args(args)
        .env("PGAPPNAME", "dbmaint")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in &env.vars {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd.output().await.map_err(|source| WriteError::Start { bin, source })?;
    if out.status.success() {
        Ok(())
    } else {
        let stderr = crate::plan::source::redact_passwords(String::from_utf8_lossy(&out.stderr).trim());
        Err(WriteError::Child {
            program: program.to_string(),
            status: out.status,
            stderr: crate::db::one_line(&stderr),
        })
    }
}

/// `pg_dump` from `pg_config --bindir` when present (the server's own
/// version), else from `PATH`.
pub fn pg_bin(program: &str) -> String {
    static BINDIR: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let from_config = BINDIR.get_or_init(|| {
        std::process::Command::new("pg_config")
            .arg("--bindir")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    });
    match from_config {
        Some(dir) if Path::new(&dir).join(program).exists() => Path::new(&dir).join(program).display().to_string(),
        _ => program.to_string(),
    }
}

fn setpriv_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        std::process::Command::new("setpriv")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn fsync_tree(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            fsync_tree(&entry?.path())?;
        }
    }
    std::fs::File::open(path)?.sync_all()
}

fn fsync_and_rename(work: &BackupWork) -> Result<(), WriteError> {
    let temp = Path::new(&work.temp_path);
    fsync_tree(temp).map_err(|source| WriteError::Fsync {
        path: work.temp_path.clone(),
        source,
    })?;
    std::fs::rename(temp, &work.path).map_err(|source| WriteError::Rename {
        path: work.path.clone(),
        source,
    })?;
    if let Ok(dir) = std::fs::File::open(&work.dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

fn size_of(path: &Path) -> u64 {
    if path.is_dir() {
        std::fs::read_dir(path)
            .map(|rd| rd.filter_map(Result::ok).map(|e| size_of(&e.path())).sum())
            .unwrap_or(0)
    } else {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }
}

/// Removes this plan's and step's oldest backups beyond `keep`; runs only
/// after the new one verified.
fn prune(work: &BackupWork, keep: u64) {
    let ext = Path::new(&work.path)
        .extension()
        .map(|e| e.to_string_lossy().to_string());
    let mut ours: Vec<String> = std::fs::read_dir(&work.dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| {
                    n.starts_with(&work.prune_prefix)
                        && Path::new(n).extension().map(|e| e.to_string_lossy().to_string()) == ext
                })
                .collect()
        })
        .unwrap_or_default();
    ours.sort();
    let excess = ours.len().saturating_sub(keep as usize);
    for old in ours.into_iter().take(excess) {
        let p = Path::new(&work.dir).join(old);
        let _ = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::remove_partial;

    #[test]
    fn the_undo_removes_a_partial_file_or_directory_and_says_when_there_was_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join(".p-dump-1.dump.partial");
        std::fs::write(&file, b"half a dump").expect("write");
        let tree = dir.path().join(".p-dump-2.dir.partial");
        std::fs::create_dir_all(tree.join("sub")).expect("mkdir");
        std::fs::write(tree.join("sub/toc.dat"), b"x").expect("write");
        for p in [&file, &tree] {
            let said = remove_partial(&p.display().to_string()).expect("removed");
            assert!(said.is_some_and(|s| s.starts_with("removed the partial backup")));
            assert!(!p.exists(), "{} is gone", p.display());
        }
        assert_eq!(
            remove_partial(&file.display().to_string()),
            Ok(None),
            "nothing left: nothing said"
        );
    }
}

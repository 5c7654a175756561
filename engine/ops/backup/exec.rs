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

use super::{BackupWork, journal};
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
    /// The journal's verification state (`journal::VERIFIED`, …).
    pub state: &'static str,
    /// Rows per table at backup time, when verification counted them.
    pub counts: Option<verify::Counts>,
    /// A leftover of verification a person must remove (a scratch database
    /// that could not be dropped): the backup is good, the run exits 5.
    pub cleanup_failed: Option<String>,
}

/// Runs the backup.
pub async fn run(
    work: &BackupWork,
    target: &Target,
    timeouts: (u64, u64),
    run_id: i64,
) -> Result<BackupDone, BackupError> {
    let mut leftover = None;
    let verified = match write_and_verify(work, target, timeouts, run_id, &mut leftover).await {
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
    let bytes = journal::size_of(Path::new(&work.path));
    Ok(BackupDone {
        bytes,
        verified: verified.note,
        state: verified.state,
        counts: verified.counts,
        cleanup_failed: leftover,
    })
}

/// How a backup was verified.
pub(super) struct Verified {
    pub(super) note: String,
    pub(super) state: &'static str,
    pub(super) counts: Option<verify::Counts>,
}

impl Verified {
    fn read(note: impl Into<String>) -> Self {
        Self {
            note: note.into(),
            state: journal::VERIFIED,
            counts: None,
        }
    }
    fn not() -> Self {
        Self {
            note: "not verified (verify: no)".into(),
            state: journal::UNVERIFIED,
            counts: None,
        }
    }
    fn restored(note: String, counts: verify::Counts, exact: bool) -> Self {
        Self {
            note,
            state: if exact { journal::RESTORED } else { journal::VERIFIED },
            counts: exact.then_some(counts),
        }
    }
}

/// The journal's record of a backup just written: its checksum is read
/// from the file (off the async workers: it reads the whole backup).
pub async fn record_of(
    work: &BackupWork,
    done: &BackupDone,
    run_id: i64,
    database: &str,
) -> Result<journal::BackupRecord, String> {
    let path = std::fs::canonicalize(&work.path)
        .map_err(|e| format!("cannot resolve `{}`: {e}", work.path))?
        .display()
        .to_string();
    let for_hash = path.clone();
    let sha256 = tokio::task::spawn_blocking(move || journal::digest(Path::new(&for_hash)))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot read `{path}` for its checksum: {e}"))?;
    let now = journal::now_text();
    Ok(journal::BackupRecord {
        id: 0,
        run_id: Some(run_id),
        plan: work.plan.clone(),
        step: work.step.clone(),
        modified: journal::modified(Path::new(&path)).unwrap_or_default(),
        path,
        format: work.format.clone(),
        bytes: done.bytes,
        sha256,
        verified: done.state.to_string(),
        verify_note: done.verified.clone(),
        counts: done.counts.clone(),
        created_at: now.clone(),
        verified_at: (done.state != journal::UNVERIFIED).then_some(now),
        removed_at: None,
        database: database.to_string(),
    })
}

/// Removes one earlier backup rotation selected, after checking that the
/// file is still the one the journal recorded (size and checksum) and is
/// not the backup just written. Returns what it removed or why not.
pub async fn remove_known(r: &journal::BackupRecord, new_path: &str) -> Result<String, String> {
    let same_as_new = std::fs::canonicalize(new_path).is_ok_and(|p| p == Path::new(&r.path));
    if same_as_new {
        return Err(format!("`{}` is the backup just written: kept", r.path));
    }
    let check = r.clone();
    let disk = tokio::task::spawn_blocking(move || journal::on_disk(&check, true))
        .await
        .map_err(|e| e.to_string())?;
    if disk != journal::OnDisk::Intact {
        return Err(format!("`{}` kept: {}", r.path, disk.as_str()));
    }
    let p = Path::new(&r.path);
    let removed = if p.is_dir() {
        std::fs::remove_dir_all(p)
    } else {
        std::fs::remove_file(p)
    };
    removed.map_err(|e| format!("cannot remove `{}`: {e}", r.path))?;
    let _ = std::fs::remove_file(journal::BackupRecord::manifest_path(&r.path));
    Ok(format!(
        "removed `{}` ({} of {})",
        r.path,
        crate::run::execplan::human_bytes(r.bytes),
        r.created_at
    ))
}

/// Removes `.{plan}-{step}-*.partial` files a killed run left behind; the
/// caller holds the apply lock, so none of them is being written. Returns
/// what it removed.
pub fn remove_stale_partials(work: &BackupWork) -> Vec<String> {
    let prefix = format!(".{}", work.prune_prefix);
    let mut removed = vec![];
    for entry in std::fs::read_dir(&work.dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let partial = [".partial", ".partial-journal", ".partial-wal", ".partial-shm"]
            .iter()
            .any(|end| name.ends_with(end));
        if !(name.starts_with(&prefix) && partial) {
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
    // A failed `VACUUM INTO` leaves the copy's own rollback journal (and
    // in WAL mode its -wal/-shm) beside it: part of the same leftover.
    let mut sides = vec![];
    for side in ["-journal", "-wal", "-shm"] {
        let p = format!("{temp_path}{side}");
        if Path::new(&p).exists() && std::fs::remove_file(&p).is_ok() {
            sides.push(p);
        }
    }
    if !temp.exists() {
        return Ok((!sides.is_empty()).then(|| format!("removed the partial backup's `{}`", sides.join("`, `"))));
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
    run_id: i64,
    leftover: &mut Option<String>,
) -> Result<Verified, WriteError> {
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
                return Ok(Verified::not());
            }
            crate::db::sqlite::integrity_check(&work.temp_path).await?;
            match source {
                None => Ok(Verified::read("integrity_check ok")),
                Some((source, exact)) => {
                    let copy =
                        verify::sqlite_file_counts(&work.temp_path)
                            .await
                            .map_err(|source| WriteError::OpenCopy {
                                path: work.temp_path.clone(),
                                source,
                            })?;
                    if exact {
                        let note = verify::compare(&source, &copy, true)?;
                        return Ok(Verified::restored(note, copy, true));
                    }
                    // Written meanwhile: the copy may still match the source now.
                    let now = verify::sqlite_counts(&mut conn).await?;
                    match verify::compare(&now, &copy, true) {
                        Ok(note) => Ok(Verified::restored(note, copy, true)),
                        Err(_) => {
                            let note = verify::compare(&source, &copy, false)?;
                            Ok(Verified::restored(note, copy, false))
                        }
                    }
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
                // dbmaint's own journal is the live database's history, not
                // its data: a restore keeps the target's (see `manage`).
                "--exclude-schema=dbmaint".to_string(),
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
                    restore_and_compare(work, target, Some(&source), run_id, leftover).await
                }
                (None, "no", _) => Ok(Verified::not()),
                (None, _, "plain") => verify_plain(&work.temp_path).map(|()| Verified::read("completion line present")),
                (None, _, _) => {
                    let args = vec!["--file=/dev/null".to_string(), work.temp_path.clone()];
                    run_child("pg_restore", &args, &conn)
                        .await
                        .map(|()| Verified::read("pg_restore read every block"))
                        .map_err(|e| WriteError::Unreadable(Box::new(e)))
                }
            }
        }
    }
}

/// The server `verify: restore` restores into, and its journal key: the
/// plan's `restore_to` (a URL without password), or the target's own
/// server (`same`).
pub fn scratch_server(work: &BackupWork, target: &Target) -> Result<(Target, String), String> {
    match &work.restore_to {
        Some(url) => Target::parse(url)
            .map(|t| (t, url.clone()))
            .map_err(|e| format!("`restore_to`: {}", e.message)),
        None => Ok((target.clone(), SAME_SERVER.to_string())),
    }
}

/// The journal's `server` of a scratch database on the target's server.
pub const SAME_SERVER: &str = "same";

/// A short session on the target to write the scratch journal.
async fn journal_session(target: &Target) -> Result<crate::db::Conn, DbError> {
    crate::db::connect(
        target,
        crate::db::SessionLimits {
            lock_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            read_only: false,
        },
    )
    .await
}

/// Drops the scratch databases earlier (killed) runs left, as journaled;
/// returns what was dropped, or what is left and why.
pub async fn drop_scratch_leftovers(target: &Target) -> (Vec<String>, Option<String>) {
    let mut c = match journal_session(target).await {
        Ok(c) => c,
        Err(e) => return (vec![], Some(format!("cannot read the scratch journal: {}", e.message))),
    };
    let left = match journal::scratch_leftovers(&mut c).await {
        Ok(left) => left,
        Err(e) => return (vec![], Some(format!("cannot read the scratch journal: {}", e.message))),
    };
    let mut dropped = vec![];
    let mut failed = vec![];
    for l in left {
        let server = if l.server == SAME_SERVER {
            Ok(target.clone())
        } else {
            Target::parse(&l.server).map_err(|e| e.message)
        };
        let result = match server {
            Ok(server) => verify::drop_leftover(&server, &l.name).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                let _ = journal::scratch_dropped(&mut c, &l.name, &l.server).await;
                dropped.push(format!(
                    "dropped the scratch database {} an interrupted run left{}",
                    l.name,
                    l.run_id.map(|r| format!(" (run {r})")).unwrap_or_default()
                ));
            }
            Err(e) => failed.push(format!("{} on {}: {e}", l.name, l.server)),
        }
    }
    c.close().await;
    let failed = (!failed.is_empty()).then(|| {
        format!(
            "scratch databases left by interrupted runs could not be dropped: {}; drop them by hand",
            failed.join("; ")
        )
    });
    (dropped, failed)
}

/// Restores the dump into a scratch database (journaled before it is
/// created), compares its counts with the snapshot's, and drops it
/// whatever happened.
pub(super) async fn restore_and_compare(
    work: &BackupWork,
    target: &Target,
    source: Option<&verify::Counts>,
    run_id: i64,
    leftover: &mut Option<String>,
) -> Result<Verified, WriteError> {
    let (server, key) = scratch_server(work, target).map_err(|e| WriteError::Db(DbError::other(e)))?;
    let name = format!("dbmaint_verify_{run_id}_{}", std::process::id());
    {
        let mut j = journal_session(target).await?;
        let started = journal::scratch_started(&mut j, &name, &key, Some(run_id)).await;
        j.close().await;
        started.map_err(|e| {
            WriteError::Db(DbError::other(format!(
                "cannot journal the scratch database before creating it (not created): {}",
                e.message
            )))
        })?;
    }
    let scratch = verify::create_scratch(&server, &name).await?;
    let result = async {
        let scratch_env = PgChildEnv::from_target(&scratch.target)?;
        let (program, args) = if work.format == "plain" {
            let args = ["-X", "-q", "-v", "ON_ERROR_STOP=1"].map(String::from).to_vec();
            ("psql", [args, vec![format!("--file={}", work.temp_path)]].concat())
        } else {
            // pg_restore writes to a database only when one is named; the
            // name comes from PGDATABASE like every other setting.
            // Subscriptions are left out: a copy must not subscribe, and
            // one would keep the scratch database from being dropped.
            let args = ["--no-owner", "--no-privileges", "--no-subscriptions", "--exit-on-error"]
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
        match source {
            Some(source) => {
                let note = verify::compare(source, &restored, true)?;
                Ok(Verified::restored(note, restored, true))
            }
            None => Ok(Verified {
                note: format!(
                    "restored: {} tables, {} rows (no counts were recorded at backup time to compare with)",
                    restored.len(),
                    crate::run::execplan::human_count(restored.values().sum::<i64>().max(0) as u64)
                ),
                state: journal::VERIFIED,
                counts: Some(restored),
            }),
        }
    }
    .await;
    match scratch.drop_db().await {
        Err(e) => *leftover = Some(e.to_string()),
        Ok(()) => {
            if let Ok(mut j) = journal_session(target).await {
                let _ = journal::scratch_dropped(&mut j, &name, &key).await;
                j.close().await;
            }
        }
    }
    result
}

/// A plain dump is complete when pg_dump wrote its closing comment.
pub(super) fn verify_plain(path: &str) -> Result<(), WriteError> {
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
pub(super) struct PgChildEnv {
    vars: Vec<(&'static str, Option<String>)>,
}

impl PgChildEnv {
    pub(super) fn from_target(target: &Target) -> Result<Self, WriteError> {
        let ci = crate::db::pg::conninfo(target)?;
        Ok(Self { vars: ci.child_env() })
    }
}

/// Runs a PostgreSQL client binary; kills it if this future is dropped.
pub(super) async fn run_child(program: &str, args: &[String], env: &PgChildEnv) -> Result<(), WriteError> {
    let bin = pg_bin(program);
    let mut cmd = if setpriv_available() {
        let mut c = tokio::process::Command::new("setpriv");
        c.arg("--pdeathsig").arg("KILL").arg(&bin);
        c
    } else {
        tokio::process::Command::new(&bin)
    };
    cmd.args(args)
        .env("PGAPPNAME", crate::db::pg::child_application_name())
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
    if Path::new(&work.path).exists() {
        return Err(WriteError::Rename {
            path: work.path.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a file of that name exists and is not overwritten; plan again (`plan diff`) for a new name",
            ),
        });
    }
    std::fs::rename(temp, &work.path).map_err(|source| WriteError::Rename {
        path: work.path.clone(),
        source,
    })?;
    if let Ok(dir) = std::fs::File::open(&work.dir) {
        let _ = dir.sync_all();
    }
    Ok(())
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

    #[test]
    fn the_undo_also_removes_the_copys_own_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join(".p-dump-1.db.partial");
        let journal = dir.path().join(".p-dump-1.db.partial-journal");
        std::fs::write(&journal, b"rollback journal").expect("write");
        let said = remove_partial(&file.display().to_string()).expect("removed");
        assert!(said.is_some_and(|s| s.contains("partial-journal")));
        assert!(!journal.exists());
    }
}

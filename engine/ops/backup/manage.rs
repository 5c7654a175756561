//! `dbmaint backups list | verify | restore`: the backups dbmaint made,
//! from the journal joined with what is on disk (or, when the database is
//! gone, from the manifests beside the files); one re-checked now; one
//! restored into a database.
//!
//! A restore never lands on a database with objects unless asked
//! (`clean`), never on the database the backup came from unless told so
//! (`same_database`), checks the file against its record first, and
//! compares row counts afterwards with those recorded at backup time.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::exec::{self, PgChildEnv, run_child};
use super::journal::{self, BackupRecord, OnDisk};
use super::verify::{self, Counts};
use super::{BackupWork, source_identity};
use crate::db::query::query;
use crate::db::{SessionLimits, connect};
use crate::plan::values::{Backend, Target};
use crate::run::Failure;

/// One backup as `backups list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub record: BackupRecord,
    /// `verified`, `restored-and-compared`, `unverified`, `failed: …`,
    /// `missing on disk`, `size or checksum changed`, `removed by rotation`.
    pub status: String,
    pub age_s: i64,
}

/// `backups list`.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    pub target: String,
    /// `journal`, or `manifests` when the journal could not be read.
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal_error: Option<String>,
    pub backups: Vec<Listed>,
    /// Backup-like files in the backup directories the journal does not know.
    pub unknown: Vec<String>,
}

/// The status a record has now.
fn status_of(r: &BackupRecord) -> String {
    if r.removed_at.is_some() {
        return "removed by rotation".into();
    }
    match journal::on_disk(r, false) {
        OnDisk::Intact => r.verified.clone(),
        other => other.as_str().into(),
    }
}

/// Lists the target's backups: the journal's (removed ones with `all`),
/// else — the database unreachable — the manifests found in `dirs`; and
/// the files in the backup directories nobody recorded.
pub async fn list(target: &Target, dirs: &[String], all: bool) -> Listing {
    let now = chrono::Utc::now();
    let from_journal = async {
        let mut c = connect(target, SessionLimits::READ_ONLY).await?;
        let r = journal::records(&mut c, all).await;
        c.close().await;
        r
    }
    .await;
    let (records, source, journal_error) = match from_journal {
        Ok(r) => (r, "journal", None),
        Err(e) => (manifests_in(dirs), "manifests", Some(e.message)),
    };
    let mut dirs: Vec<PathBuf> = dirs.iter().map(PathBuf::from).collect();
    dirs.extend(
        records
            .iter()
            .filter_map(|r| Path::new(&r.path).parent().map(Path::to_path_buf)),
    );
    let known: std::collections::HashSet<PathBuf> = records.iter().map(|r| PathBuf::from(&r.path)).collect();
    let mut unknown = std::collections::BTreeSet::new();
    for dir in dirs {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let path = std::fs::canonicalize(entry.path()).unwrap_or(entry.path());
            if looks_like_backup(&name) && !known.contains(&path) {
                unknown.insert(path.display().to_string());
            }
        }
    }
    Listing {
        target: target.redacted(),
        source: source.into(),
        journal_error,
        backups: records
            .into_iter()
            .map(|r| Listed {
                status: status_of(&r),
                age_s: r.age_secs(now),
                record: r,
            })
            .collect(),
        unknown: unknown.into_iter().collect(),
    }
}

/// A backup's file by its extension; manifests, partial and hidden files
/// are not.
fn looks_like_backup(name: &str) -> bool {
    !name.starts_with('.') && [".dump", ".dir", ".sql", ".db"].iter().any(|e| name.ends_with(e))
}

/// The records of the manifests in `dirs`, oldest first.
fn manifests_in(dirs: &[String]) -> Vec<BackupRecord> {
    let mut out: Vec<BackupRecord> = dirs
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let backup = name.strip_suffix(".manifest.json")?;
            let path = e.path().with_file_name(backup);
            journal::read_manifest(&path.display().to_string())
        })
        .collect();
    out.sort_by(|a, b| (&a.created_at, a.id).cmp(&(&b.created_at, b.id)));
    out
}

/// A backup named on the command line: a journal id, or a path (its
/// manifest gives the record; without one, what the file says).
pub async fn find(journal_target: Option<&Target>, id_or_path: &str) -> Result<BackupRecord, Failure> {
    let path = Path::new(id_or_path);
    if path.exists() {
        let real = std::fs::canonicalize(path).map_err(|e| Failure::error(format!("`{id_or_path}`: {e}")))?;
        let real_text = real.display().to_string();
        if let Some(mut r) = journal::read_manifest(&real_text) {
            r.path = real_text;
            return Ok(r);
        }
        return Ok(bare_record(&real));
    }
    let id: i64 = id_or_path.parse().map_err(|_| {
        Failure::error(format!(
            "`{id_or_path}` is neither a backup file nor a backup id (see `dbmaint backups list`)"
        ))
    })?;
    let Some(target) = journal_target else {
        return Err(Failure::error(format!(
            "backup {id}: name the database whose journal lists it (`--plan FILE` or `--from URL`), or give the backup's path"
        )));
    };
    let mut c = connect(target, SessionLimits::READ_ONLY).await?;
    let r = journal::by_id(&mut c, id).await;
    c.close().await;
    r?.ok_or_else(|| Failure::error(format!("no backup {id} in the journal of {}", target.redacted())))
}

/// A file with no record: its format from its name (no checksum or
/// counts to hold it to).
fn bare_record(path: &Path) -> BackupRecord {
    let name = path.display().to_string();
    let format = if path.is_dir() {
        "directory"
    } else if name.ends_with(".sql") {
        "plain"
    } else if name.ends_with(".db") || name.ends_with(".sqlite") || name.ends_with(".sqlite3") {
        "sqlite"
    } else {
        "custom"
    };
    BackupRecord {
        id: 0,
        run_id: None,
        plan: String::new(),
        step: String::new(),
        path: name,
        format: format.into(),
        bytes: journal::size_of(path),
        sha256: String::new(),
        modified: journal::modified(path).unwrap_or_default(),
        verified: journal::UNVERIFIED.into(),
        verify_note: "not recorded by dbmaint".into(),
        counts: None,
        created_at: String::new(),
        verified_at: None,
        removed_at: None,
        database: String::new(),
    }
}

/// The outcome of `backups verify`.
#[derive(Debug, Clone, Serialize)]
pub struct Rechecked {
    pub id: i64,
    pub path: String,
    pub ok: bool,
    /// The journal's new state.
    pub state: String,
    pub note: String,
    /// Whether the journal recorded it (a backup with no record cannot be).
    pub journaled: bool,
}

/// Where `backups verify --restore` restores on PostgreSQL.
#[derive(Debug, Clone)]
pub enum Scratch {
    /// A separate server (URL without password).
    To(String),
    /// The journal's own server, knowingly.
    SameServer,
}

/// Re-checks one backup now: its checksum, a full read (`pg_restore` to
/// `/dev/null`, the completion line of a plain dump, SQLite's
/// `integrity_check`), and with `restore` a restore and count comparison
/// against the counts recorded at backup time; the outcome is recorded in
/// the journal of `journal_target` when the backup has a record there.
pub async fn recheck(journal_target: Option<&Target>, r: &BackupRecord, restore: Option<Scratch>) -> Rechecked {
    let outcome = recheck_file(journal_target, r, restore).await;
    let (ok, state, note) = match outcome {
        Ok((state, note)) => (true, state.to_string(), note),
        Err(why) => (false, format!("failed: {why}"), why),
    };
    let mut journaled = false;
    if let (Some(target), true) = (journal_target, r.id > 0)
        && let Ok(mut c) = connect(target, write_limits()).await
    {
        journaled = journal::mark_verified(&mut c, r.id, &state, &note).await.is_ok();
        c.close().await;
    }
    Rechecked {
        id: r.id,
        path: r.path.clone(),
        ok,
        state,
        note,
        journaled,
    }
}

fn write_limits() -> SessionLimits {
    SessionLimits {
        lock_timeout: std::time::Duration::from_secs(5),
        statement_timeout: std::time::Duration::from_secs(60),
        read_only: false,
    }
}

async fn recheck_file(
    journal_target: Option<&Target>,
    r: &BackupRecord,
    restore: Option<Scratch>,
) -> Result<(&'static str, String), String> {
    intact(r).await?;
    if r.format == "sqlite" {
        crate::db::sqlite::integrity_check(&r.path)
            .await
            .map_err(|e| e.message)?;
        if restore.is_none() {
            return Ok((journal::VERIFIED, "checksum and integrity_check ok".into()));
        }
        let copy = verify::sqlite_file_counts(&r.path).await.map_err(|e| e.message)?;
        return match &r.counts {
            Some(at_backup) => verify::compare(at_backup, &copy, true)
                .map(|note| (journal::RESTORED, note))
                .map_err(|e| e.to_string()),
            None => Ok((
                journal::VERIFIED,
                format!(
                    "integrity_check ok; {} tables (no counts recorded at backup time)",
                    copy.len()
                ),
            )),
        };
    }
    let env = PgChildEnv::from_target(
        journal_target.ok_or("checking a PostgreSQL backup needs its database: `--plan` or `--target`")?,
    )
    .map_err(|e| e.to_string())?;
    if r.format == "plain" {
        exec::verify_plain(&r.path).map_err(|e| e.to_string())?;
    } else {
        let args = vec!["--file=/dev/null".to_string(), r.path.clone()];
        run_child("pg_restore", &args, &env)
            .await
            .map_err(|e| format!("the backup is unreadable: {e}"))?;
    }
    let Some(scratch) = restore else {
        return Ok((journal::VERIFIED, "checksum ok; the whole backup reads back".into()));
    };
    let target = journal_target.ok_or("`--restore` needs the database: `--plan` or `--target`")?;
    let work = BackupWork {
        path: r.path.clone(),
        temp_path: r.path.clone(),
        format: r.format.clone(),
        jobs: None,
        compress: None,
        verify: "restore".into(),
        prune: vec![],
        prune_prefix: String::new(),
        dir: String::new(),
        plan: r.plan.clone(),
        step: r.step.clone(),
        restore_to: match scratch {
            Scratch::To(url) => Some(url),
            Scratch::SameServer => None,
        },
    };
    let mut leftover = None;
    let v = exec::restore_and_compare(&work, target, r.counts.as_ref(), 0, &mut leftover)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(left) = leftover {
        return Err(format!("{} (and {left})", v.note));
    }
    Ok((v.state, v.note))
}

/// The file is still the one recorded (its SHA-256, read in full).
async fn intact(r: &BackupRecord) -> Result<(), String> {
    if r.sha256.is_empty() {
        return if Path::new(&r.path).exists() {
            Ok(())
        } else {
            Err(format!("`{}` is missing", r.path))
        };
    }
    let check = r.clone();
    let disk = tokio::task::spawn_blocking(move || journal::on_disk(&check, true))
        .await
        .map_err(|e| e.to_string())?;
    match disk {
        OnDisk::Intact => Ok(()),
        other => Err(format!("`{}`: {}", r.path, other.as_str())),
    }
}

// ---------------------------------------------------------------- restore

/// What `backups restore` is asked to do.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    pub record: BackupRecord,
    pub dest: Target,
    /// Drop what the destination holds first (after the preview).
    pub clean: bool,
    /// Parallel `pg_restore` jobs (custom and directory formats).
    pub jobs: Option<u64>,
    /// The operator confirmed restoring onto the database the backup is of.
    pub same_database: bool,
}

/// What the destination holds now: objects `clean` would drop, and
/// whether it is the database the backup was taken from.
#[derive(Debug, Clone, Serialize)]
pub struct Destination {
    pub target: String,
    /// `schema.name (kind, ~rows)` of every user relation, up to 200.
    pub objects: Vec<String>,
    pub object_count: u64,
    /// The backup was taken from this very database.
    pub is_source: bool,
    pub exists: bool,
    /// PostgreSQL: the schemas `clean` drops whole (functions, types and
    /// everything else in them go too), all but dbmaint's journal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<String>,
}

/// Looks at the destination, read-only.
pub async fn destination(req: &RestoreRequest) -> Result<Destination, Failure> {
    let dest = &req.dest;
    let mut d = Destination {
        target: dest.redacted(),
        objects: vec![],
        object_count: 0,
        is_source: false,
        exists: true,
        schemas: vec![],
    };
    if dest.backend == Backend::Sqlite && !Path::new(&dest.database).exists() {
        d.exists = false;
        return Ok(d);
    }
    let mut c = connect(dest, SessionLimits::READ_ONLY).await?;
    let sql = match dest.backend {
        Backend::Postgres => {
            "SELECT n.nspname || '.' || c.relname || ' (' || CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' \
             WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence' ELSE 'foreign table' END \
             || CASE WHEN c.relkind NOT IN ('r', 'm') THEN '' WHEN c.reltuples < 0 THEN ', never analyzed' \
             ELSE ', ~' || c.reltuples::int8 || ' rows' END || ')' \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'dbmaint') \
               AND n.nspname !~ '^pg_' ORDER BY 1"
        }
        Backend::Sqlite => {
            "SELECT name || ' (' || type || ')' FROM sqlite_schema WHERE type IN ('table', 'view') \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE 'dbmaint\\_%' ESCAPE '\\' ORDER BY 1"
        }
    };
    let objects: Vec<String> = query(sql).scalars(&mut c).await?;
    d.object_count = objects.len() as u64;
    if dest.backend == Backend::Postgres {
        d.schemas = query(CLEANED_SCHEMAS).scalars(&mut c).await?;
    }
    d.objects = objects.into_iter().take(200).collect();
    d.is_source = !req.record.database.is_empty() && source_identity(&mut c, dest).await == req.record.database;
    c.close().await;
    Ok(d)
}

/// The schemas `--clean` drops: every user schema but the journal's.
const CLEANED_SCHEMAS: &str = "SELECT nspname::text FROM pg_namespace WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'dbmaint') \
     AND nspname !~ '^pg_' ORDER BY 1";

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub backup: String,
    pub target: String,
    pub dropped: u64,
    /// (table, rows at backup time if recorded, rows restored).
    pub counts: Vec<(String, Option<i64>, i64)>,
    /// Every recorded count matched (true when none was recorded).
    pub counts_match: bool,
    pub counts_recorded: bool,
    pub duration_ms: u64,
}

/// Restores the backup. The caller has shown [`destination`] and been
/// told to go on: a non-empty destination needs `clean`, the source
/// database `same_database`. `say` receives progress lines.
pub async fn restore(req: &RestoreRequest, dest: &Destination, say: &dyn Fn(&str)) -> Result<Restored, Failure> {
    let t0 = std::time::Instant::now();
    if dest.object_count > 0 && !req.clean {
        return Err(Failure::error(format!(
            "{} holds {} objects ({}{}): nothing was changed; restore into an empty database, or pass `--clean` to drop them first",
            dest.target,
            dest.object_count,
            dest.objects.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
            if dest.object_count > 3 { ", …" } else { "" }
        )));
    }
    if dest.is_source && !req.same_database {
        return Err(Failure::error(format!(
            "{} is the database this backup was taken from: nothing was changed; confirm with `--force` (or type its name when asked)",
            dest.target
        )));
    }
    say(&format!("checking `{}` against its record", req.record.path));
    intact(&req.record).await.map_err(Failure::error)?;
    let restored = match req.dest.backend {
        Backend::Sqlite => restore_sqlite(req, say).await?,
        Backend::Postgres => restore_pg(req, dest, say).await?,
    };
    let counts_recorded = req.record.counts.is_some();
    let recorded = req.record.counts.clone().unwrap_or_default();
    let mut tables: std::collections::BTreeSet<String> = restored.keys().cloned().collect();
    tables.extend(recorded.keys().cloned());
    let counts: Vec<(String, Option<i64>, i64)> = tables
        .into_iter()
        .map(|t| {
            let at_backup = recorded.get(&t).copied();
            let now = restored.get(&t).copied().unwrap_or(-1);
            (t, at_backup, now)
        })
        .collect();
    let counts_match = !counts_recorded || counts.iter().all(|(_, b, n)| b.is_some_and(|b| b == *n));
    Ok(Restored {
        backup: req.record.path.clone(),
        target: dest.target.clone(),
        dropped: if req.clean { dest.object_count } else { 0 },
        counts,
        counts_match,
        counts_recorded,
        duration_ms: t0.elapsed().as_millis() as u64,
    })
}

/// PostgreSQL: with `clean`, every user schema but the journal's is
/// dropped and `public` recreated, in one transaction; then `pg_restore`
/// (one transaction unless `jobs`, so a killed restore leaves nothing
/// half-done) or `psql --single-transaction` for a plain dump. dbmaint's
/// journal schema is not in its backups, so the destination keeps its own.
async fn restore_pg(req: &RestoreRequest, dest: &Destination, say: &dyn Fn(&str)) -> Result<Counts, Failure> {
    if req.clean && dest.object_count > 0 {
        say(&format!(
            "dropping the {} objects of {}",
            dest.object_count, dest.target
        ));
        let mut c = connect(&req.dest, write_limits()).await?;
        let schemas: Vec<String> = query(CLEANED_SCHEMAS).scalars(&mut c).await?;
        let mut tx = c.begin().await?;
        for s in &schemas {
            query(format!("DROP SCHEMA {} CASCADE", crate::db::quote_ident(s)))
                .execute(&mut tx)
                .await?;
        }
        query("CREATE SCHEMA public").execute(&mut tx).await?;
        tx.commit().await?;
        c.close().await;
    }
    let env = PgChildEnv::from_target(&req.dest).map_err(|e| Failure::error(e.to_string()))?;
    let (program, args) = if req.record.format == "plain" {
        let args = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction"]
            .map(String::from)
            .to_vec();
        ("psql", [args, vec![format!("--file={}", req.record.path)]].concat())
    } else {
        let mut args = vec![
            "--exit-on-error".to_string(),
            "--no-owner".to_string(),
            format!("--dbname={}", req.dest.database),
            "--exclude-schema=dbmaint".to_string(),
        ];
        match req.jobs {
            Some(j) if j > 1 => args.push(format!("--jobs={j}")),
            _ => args.push("--single-transaction".into()),
        }
        args.push(req.record.path.clone());
        ("pg_restore", args)
    };
    say(&format!("{program} `{}` into {}", req.record.path, dest.target));
    run_child(program, &args, &env)
        .await
        .map_err(|e| Failure::error(format!("the restore failed: {e}")))?;
    say("counting the restored tables");
    let mut c = connect(&req.dest, SessionLimits::READ_ONLY).await?;
    let counts = verify::pg_counts(&mut c).await?;
    c.close().await;
    Ok(counts)
}

/// SQLite: the backup is checked (`integrity_check`), copied beside the
/// destination, fsynced, and renamed over it; the destination's WAL is
/// checkpointed away first and its backup journal carried over, so
/// rotation still knows every backup.
async fn restore_sqlite(req: &RestoreRequest, say: &dyn Fn(&str)) -> Result<Counts, Failure> {
    crate::db::sqlite::integrity_check(&req.record.path)
        .await
        .map_err(|e| Failure::error(format!("the backup fails integrity_check: {}", e.message)))?;
    let dest = PathBuf::from(&req.dest.database);
    let mut carried = vec![];
    if dest.exists() {
        let mut c = crate::db::open_sqlite_file(&dest, false, false).await?;
        carried = journal::records(&mut c, true).await.unwrap_or_default();
        query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut c).await?;
        c.close().await;
    }
    let beside = dest.with_file_name(format!(
        ".{}.restore.partial",
        dest.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
    ));
    say(&format!("copying `{}` beside {}", req.record.path, dest.display()));
    let copied = (|| -> std::io::Result<()> {
        std::fs::copy(&req.record.path, &beside)?;
        std::fs::File::open(&beside)?.sync_all()
    })();
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&beside);
        return Err(Failure::error(format!(
            "cannot copy the backup beside {}: {e}",
            dest.display()
        )));
    }
    if let Err(e) = crate::db::sqlite::integrity_check(&beside.display().to_string()).await {
        let _ = std::fs::remove_file(&beside);
        return Err(Failure::error(format!("the copy fails integrity_check: {}", e.message)));
    }
    for side in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{side}", dest.display()));
    }
    std::fs::rename(&beside, &dest)
        .map_err(|e| Failure::error(format!("cannot rename the copy over {}: {e}", dest.display())))?;
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty())
        && let Ok(d) = std::fs::File::open(parent)
    {
        let _ = d.sync_all();
    }
    let mut c = crate::db::open_sqlite_file(&dest, false, false).await?;
    if !carried.is_empty() {
        c.journal_setup().await?;
        let there: std::collections::HashSet<String> = journal::records(&mut c, true)
            .await?
            .into_iter()
            .map(|r| r.path)
            .collect();
        for r in carried.iter().filter(|r| !there.contains(&r.path)) {
            let id = journal::insert(&mut c, r).await?;
            if r.removed_at.is_some() {
                journal::mark_removed(&mut c, id).await?;
            }
        }
    }
    let counts = verify::sqlite_counts(&mut c).await?;
    c.close().await;
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_is_known_by_its_extension_and_never_a_hidden_or_side_file() {
        for name in ["nightly-20261203.dump", "nightly.dir", "schema.sql", "app-20261203.db"] {
            assert!(looks_like_backup(name), "{name}");
        }
        for name in [
            ".nightly-20261203.dump",
            ".app.db.restore.partial",
            "nightly-20261203.dump.manifest.json",
            "nightly-20261203.dump.partial",
            "notes.txt",
            "app.db-wal",
        ] {
            assert!(!looks_like_backup(name), "{name}");
        }
    }

    #[test]
    fn a_file_without_a_record_takes_its_format_from_its_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let at = |name: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, b"twelve bytes").expect("write");
            bare_record(&p)
        };
        for (name, format) in [
            ("a.sql", "plain"),
            ("a.db", "sqlite"),
            ("a.sqlite", "sqlite"),
            ("a.sqlite3", "sqlite"),
            ("a.dump", "custom"),
            ("a.backup", "custom"),
        ] {
            let r = at(name);
            assert_eq!(r.format, format, "{name}");
            assert_eq!(r.bytes, 12, "{name}");
            assert_eq!(r.verified, journal::UNVERIFIED, "{name}");
            assert!(r.sha256.is_empty(), "no checksum to hold {name} to");
        }
        let d = dir.path().join("nightly.dir");
        std::fs::create_dir(&d).expect("mkdir");
        assert_eq!(bare_record(&d).format, "directory");
    }
}

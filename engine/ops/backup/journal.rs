//! What dbmaint knows of the backups it made: one journal record per
//! backup (`dbmaint.backups` / `dbmaint_backups`, in the target database
//! beside the run journal) and the same record as a manifest file beside
//! the backup (`<backup>.manifest.json`), so a backup can be listed and
//! restored when its database — and with it the journal — is gone.
//!
//! Rotation deletes only backups this journal knows, whose file is still
//! the one dbmaint wrote (size and modification time, else the SHA-256):
//! a file an operator put beside the backups is never a candidate.

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::db::query::query;
use crate::db::{Conn, DbError};
use crate::ops::backup::verify::Counts;
use crate::plan::values::Backend;

/// Verification states, as `backups list` shows them.
pub const VERIFIED: &str = "verified";
pub const RESTORED: &str = "restored-and-compared";
pub const UNVERIFIED: &str = "unverified";

/// One backup dbmaint wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupRecord {
    /// The journal's id (0 in a manifest written before the record).
    pub id: i64,
    pub run_id: Option<i64>,
    pub plan: String,
    pub step: String,
    /// Absolute path of the file (or directory) as written.
    pub path: String,
    /// `custom`, `directory`, `plain` or `sqlite`.
    pub format: String,
    pub bytes: u64,
    pub sha256: String,
    /// The file's modification time when written (RFC 3339, nanoseconds):
    /// unchanged size and time spare re-reading the file for its checksum.
    pub modified: String,
    /// [`VERIFIED`], [`RESTORED`] or [`UNVERIFIED`].
    pub verified: String,
    #[serde(default)]
    pub verify_note: String,
    /// Rows per table at backup time, when the backup counted them.
    #[serde(default)]
    pub counts: Option<Counts>,
    /// RFC 3339, UTC.
    pub created_at: String,
    #[serde(default)]
    pub verified_at: Option<String>,
    #[serde(default)]
    pub removed_at: Option<String>,
    /// The database the backup is of (its name, or the SQLite file).
    #[serde(default)]
    pub database: String,
}

impl BackupRecord {
    /// Age in seconds at `now` (0 when the time does not parse).
    pub fn age_secs(&self, now: chrono::DateTime<chrono::Utc>) -> i64 {
        chrono::DateTime::parse_from_rfc3339(&self.created_at)
            .map(|t| (now - t.with_timezone(&chrono::Utc)).num_seconds())
            .unwrap_or(0)
    }

    /// The manifest written beside the backup.
    pub fn manifest_path(path: &str) -> String {
        format!("{path}.manifest.json")
    }
}

fn table(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "dbmaint.backups",
        Backend::Sqlite => "dbmaint_backups",
    }
}

/// True when the target has a backup journal (a read-only diff never
/// creates one).
pub async fn exists(c: &mut Conn) -> Result<bool, DbError> {
    match c.backend() {
        Backend::Postgres => {
            query("SELECT to_regclass('dbmaint.backups') IS NOT NULL")
                .scalar(c)
                .await
        }
        Backend::Sqlite => {
            query("SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = 'dbmaint_backups'")
                .scalar(c)
                .await
        }
    }
}

const COLUMNS: &str = "id, run_id, plan, step, path, format, bytes, sha256, modified, verified, verify_note, \
     counts, created_at, verified_at, removed_at, database";

/// Records a backup just written; returns its id.
pub async fn insert(c: &mut Conn, r: &BackupRecord) -> Result<i64, DbError> {
    let sql = format!(
        "INSERT INTO {} (run_id, plan, step, path, format, bytes, sha256, modified, verified, verify_note, counts, \
         created_at, verified_at, database) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
        table(c.backend())
    );
    query(sql)
        .bind(r.run_id)
        .bind(r.plan.as_str())
        .bind(r.step.as_str())
        .bind(r.path.as_str())
        .bind(r.format.as_str())
        .bind(r.bytes as i64)
        .bind(r.sha256.as_str())
        .bind(r.modified.as_str())
        .bind(r.verified.as_str())
        .bind(r.verify_note.as_str())
        .bind(r.counts.as_ref().map(|c| serde_json::to_string(c).unwrap_or_default()))
        .bind(r.created_at.as_str())
        .bind(r.verified_at.clone())
        .bind(r.database.as_str())
        .scalar(c)
        .await
}

/// Every record (removed ones too when `all`), oldest first; none when
/// the target has no backup journal.
pub async fn records(c: &mut Conn, all: bool) -> Result<Vec<BackupRecord>, DbError> {
    if !exists(c).await? {
        return Ok(vec![]);
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM {} {} ORDER BY created_at, id",
        table(c.backend()),
        if all { "" } else { "WHERE removed_at IS NULL" }
    );
    let rows = query(sql).fetch_all(c).await?;
    rows.iter()
        .map(|r| {
            let counts: Option<String> = r.get(11)?;
            Ok(BackupRecord {
                id: r.get(0)?,
                run_id: r.get(1)?,
                plan: r.get(2)?,
                step: r.get(3)?,
                path: r.get(4)?,
                format: r.get(5)?,
                bytes: r.get::<i64>(6)?.max(0) as u64,
                sha256: r.get(7)?,
                modified: r.get(8)?,
                verified: r.get(9)?,
                verify_note: r.get(10)?,
                counts: counts.and_then(|t| serde_json::from_str(&t).ok()),
                created_at: r.get(12)?,
                verified_at: r.get(13)?,
                removed_at: r.get(14)?,
                database: r.get(15)?,
            })
        })
        .collect()
}

/// A record by id.
pub async fn by_id(c: &mut Conn, id: i64) -> Result<Option<BackupRecord>, DbError> {
    Ok(records(c, true).await?.into_iter().find(|r| r.id == id))
}

/// Marks a record's file removed by rotation.
pub async fn mark_removed(c: &mut Conn, id: i64) -> Result<(), DbError> {
    let sql = format!("UPDATE {} SET removed_at = $1 WHERE id = $2", table(c.backend()));
    query(sql).bind(now_text()).bind(id).execute(c).await.map(|_| ())
}

/// Records the outcome of a later verification (`backups verify`).
pub async fn mark_verified(c: &mut Conn, id: i64, state: &str, note: &str) -> Result<(), DbError> {
    let sql = format!(
        "UPDATE {} SET verified = $1, verify_note = $2, verified_at = $3 WHERE id = $4",
        table(c.backend())
    );
    query(sql)
        .bind(state)
        .bind(note)
        .bind(now_text())
        .bind(id)
        .execute(c)
        .await
        .map(|_| ())
}

/// Now, as the journal writes times.
pub fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

// ------------------------------------------------------- scratch databases

/// A scratch database `verify: restore` created and did not drop (a
/// killed run): on `server` (a URL without password, or `same` for the
/// target's own server).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScratchLeft {
    pub name: String,
    pub server: String,
    pub run_id: Option<i64>,
    pub created_at: String,
}

/// Journals a scratch database before it is created (PostgreSQL).
pub async fn scratch_started(c: &mut Conn, name: &str, server: &str, run_id: Option<i64>) -> Result<(), DbError> {
    query("INSERT INTO dbmaint.scratch_databases (name, server, run_id, created_at) VALUES ($1, $2, $3, $4)")
        .bind(name)
        .bind(server)
        .bind(run_id)
        .bind(now_text())
        .execute(c)
        .await
        .map(|_| ())
}

/// Closes a scratch database's record once it is dropped.
pub async fn scratch_dropped(c: &mut Conn, name: &str, server: &str) -> Result<(), DbError> {
    query("UPDATE dbmaint.scratch_databases SET dropped_at = $1 WHERE name = $2 AND server = $3 AND dropped_at IS NULL")
        .bind(now_text())
        .bind(name)
        .bind(server)
        .execute(c)
        .await
        .map(|_| ())
}

/// Scratch databases earlier runs created and never dropped.
pub async fn scratch_leftovers(c: &mut Conn) -> Result<Vec<ScratchLeft>, DbError> {
    if c.backend() != Backend::Postgres {
        return Ok(vec![]);
    }
    let journal: bool = query("SELECT to_regclass('dbmaint.scratch_databases') IS NOT NULL")
        .scalar(&mut *c)
        .await?;
    if !journal {
        return Ok(vec![]);
    }
    let rows: Vec<(String, String, Option<i64>, String)> = query(
        "SELECT name, server, run_id, created_at FROM dbmaint.scratch_databases WHERE dropped_at IS NULL ORDER BY created_at",
    )
    .fetch_all_as(c)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(name, server, run_id, created_at)| ScratchLeft {
            name,
            server,
            run_id,
            created_at,
        })
        .collect())
}

// ------------------------------------------------------------------ files

/// What is on disk at a record's path, compared with what was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDisk {
    /// Same size and time, or same checksum.
    Intact,
    Missing,
    /// Size or checksum differ from the record.
    Changed,
}

impl OnDisk {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Intact => "intact",
            Self::Missing => "missing on disk",
            Self::Changed => "size or checksum changed",
        }
    }
}

/// Compares the file with its record: size and modification time first,
/// the SHA-256 only when the time moved (or `always_hash`).
pub fn on_disk(r: &BackupRecord, always_hash: bool) -> OnDisk {
    let path = Path::new(&r.path);
    if !path.exists() {
        return OnDisk::Missing;
    }
    if size_of(path) != r.bytes {
        return OnDisk::Changed;
    }
    if !always_hash && modified(path).is_some_and(|m| m == r.modified) {
        return OnDisk::Intact;
    }
    match digest(path) {
        Ok(sum) if sum == r.sha256 => OnDisk::Intact,
        _ => OnDisk::Changed,
    }
}

/// Bytes of a file, or of every file under a directory.
pub fn size_of(path: &Path) -> u64 {
    if path.is_dir() {
        std::fs::read_dir(path)
            .map(|rd| rd.filter_map(Result::ok).map(|e| size_of(&e.path())).sum())
            .unwrap_or(0)
    } else {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }
}

/// The latest modification time of a file or of the files in a directory.
pub fn modified(path: &Path) -> Option<String> {
    fn latest(path: &Path) -> Option<std::time::SystemTime> {
        let own = std::fs::metadata(path).ok()?.modified().ok()?;
        if !path.is_dir() {
            return Some(own);
        }
        std::fs::read_dir(path)
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|e| latest(&e.path()))
            .chain([own])
            .max()
    }
    latest(path).map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
}

/// SHA-256 of a file; of a directory, of its files' relative names and
/// contents in name order (pg_dump's directory format).
pub fn digest(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    fn feed(root: &Path, path: &Path, h: &mut sha2::Sha256) -> std::io::Result<()> {
        if path.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(path)?.collect::<Result<_, _>>()?;
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                feed(root, &e.path(), h)?;
            }
            return Ok(());
        }
        if path != root {
            let rel = path.strip_prefix(root).unwrap_or(path);
            h.update(rel.to_string_lossy().as_bytes());
            h.update([0]);
        }
        let mut f = std::fs::File::open(path)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(())
    }
    let mut h = sha2::Sha256::new();
    feed(path, path, &mut h)?;
    Ok(format!("{:x}", h.finalize()))
}

/// Writes the record beside the backup (write beside, fsync, rename).
pub fn write_manifest(r: &BackupRecord) -> std::io::Result<()> {
    use std::io::Write;
    let final_path = BackupRecord::manifest_path(&r.path);
    let temp = format!("{final_path}.partial");
    let mut f = std::fs::File::create(&temp)?;
    f.write_all(serde_json::to_string_pretty(r).unwrap_or_default().as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&temp, &final_path)
}

/// The manifest beside a backup, when there is one.
pub fn read_manifest(backup: &str) -> Option<BackupRecord> {
    let text = std::fs::read_to_string(BackupRecord::manifest_path(backup)).ok()?;
    serde_json::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A verified custom-format backup record of the file `f`.
    fn record(f: &std::path::Path, bytes: u64) -> BackupRecord {
        BackupRecord {
            id: 7,
            run_id: Some(3),
            plan: "nightly".into(),
            step: "dump".into(),
            path: f.display().to_string(),
            format: "custom".into(),
            bytes,
            sha256: digest(f).expect("digest"),
            modified: modified(f).expect("mtime"),
            verified: VERIFIED.into(),
            verify_note: String::new(),
            counts: None,
            created_at: now_text(),
            verified_at: None,
            removed_at: None,
            database: "app".into(),
        }
    }

    #[test]
    fn a_directory_digest_covers_names_and_contents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("b.dir");
        std::fs::create_dir(&d).expect("mkdir");
        std::fs::write(d.join("toc.dat"), b"toc").expect("write");
        std::fs::write(d.join("3001.dat.gz"), b"rows").expect("write");
        let before = digest(&d).expect("digest");
        std::fs::rename(d.join("3001.dat.gz"), d.join("3002.dat.gz")).expect("rename");
        assert_ne!(digest(&d).expect("digest"), before, "a renamed member changes it");
        std::fs::rename(d.join("3002.dat.gz"), d.join("3001.dat.gz")).expect("rename");
        assert_eq!(digest(&d).expect("digest"), before, "same tree, same digest");
    }

    #[test]
    fn a_same_size_change_is_caught_by_the_checksum() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("b.dump");
        std::fs::write(&f, b"abcdef").expect("write");
        let mut r = record(&f, 6);
        assert_eq!(on_disk(&r, false), OnDisk::Intact);
        std::fs::write(&f, b"abcdeX").expect("tamper");
        assert_eq!(on_disk(&r, true), OnDisk::Changed, "same size, other bytes");
        r.modified = "1970-01-01T00:00:00Z".into();
        assert_eq!(
            on_disk(&r, false),
            OnDisk::Changed,
            "a moved time leads to the checksum"
        );
        std::fs::remove_file(&f).expect("rm");
        assert_eq!(on_disk(&r, false), OnDisk::Missing);
    }

    /// The manifest sits beside its backup, named after it, so a backup
    /// directory lists and restores without the journal (cargo-mutants:
    /// `manifest_path` as a constant went unnoticed while only the
    /// round trip was exercised).
    #[test]
    fn the_manifest_is_written_beside_its_backup_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("nightly-20261202.dump");
        std::fs::write(&f, b"dump").expect("write");
        let path = f.display().to_string();
        let r = record(&f, 4);
        write_manifest(&r).expect("manifest");
        let beside = dir.path().join("nightly-20261202.dump.manifest.json");
        assert!(beside.is_file(), "{} beside the backup", beside.display());
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(
            names.len(),
            2,
            "the backup and its manifest, no partial left: {names:?}"
        );
        assert_eq!(read_manifest(&path), Some(r));
        assert_eq!(read_manifest(&format!("{path}.other")), None);
    }

    /// `always_hash` (a re-verify) reads the bytes even when size and
    /// time say nothing moved: a same-size change with its time put back
    /// is caught (cargo-mutants: the `!` before `always_hash` deleted went
    /// unnoticed while every tamper also moved the time).
    #[test]
    fn always_hash_reads_the_bytes_even_when_size_and_time_are_unchanged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("b.dump");
        std::fs::write(&f, b"abcdef").expect("write");
        let r = record(&f, 6);
        let when = std::fs::metadata(&f).and_then(|m| m.modified()).expect("mtime");
        std::fs::write(&f, b"abcdeX").expect("tamper");
        std::fs::File::options()
            .write(true)
            .open(&f)
            .and_then(|h| h.set_modified(when))
            .expect("time put back");
        assert_eq!(modified(&f), Some(r.modified.clone()), "the time is the record's again");
        assert_eq!(
            on_disk(&r, false),
            OnDisk::Intact,
            "the cheap check trusts size and time"
        );
        assert_eq!(on_disk(&r, true), OnDisk::Changed, "a full check reads the bytes");
    }

    /// Journal times are RFC 3339 UTC with milliseconds, now: `keep_days`
    /// and `backup_age` read ages off them.
    #[test]
    fn journal_times_are_now_in_rfc3339() {
        let t = chrono::DateTime::parse_from_rfc3339(&now_text()).expect("RFC 3339");
        let off = (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_milliseconds();
        assert!((0..2000).contains(&off), "{off} ms from now");
        assert!(now_text().ends_with('Z'), "UTC");
    }
}

//! One apply per database, for the whole run (safety.md rules 3 and 16).
//!
//! PostgreSQL: a session-level advisory lock on a session of its own, which
//! the server's idle timeouts never end (they are switched off for it) and
//! which is asked before every step and batch whether it still holds the
//! lock: `pg_terminate_backend`, a failover or a pooler can end it, and a
//! run that goes on without it runs beside the next apply.
//!
//! SQLite: a BSD `flock` on the database file itself, so every name of the
//! file (a symlink, a hard link, `./x/../app.db`) contends for one lock.
//! SQLite locks with POSIX `fcntl` locks, which `flock` does not touch; the
//! descriptor stays open until every connection of the run has closed,
//! because closing any descriptor of a file drops this process's `fcntl`
//! locks on it. A note beside the file's real path names the holder.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;

use crate::db::{Conn, SessionLimits};
use crate::plan::values::{Backend, Target};

/// Why the lock could not be taken.
#[derive(Debug)]
pub enum LockError {
    /// Another apply holds it: who.
    Held(String),
    /// The lock could not be asked for at all.
    Failed(String),
}

/// Holds "one apply at a time" until [`ApplyLock::release`].
#[derive(Debug)]
pub struct ApplyLock {
    held: Held,
    lost: AtomicBool,
}

#[derive(Debug)]
enum Held {
    Pg(tokio::sync::Mutex<Option<Conn>>),
    Sqlite { file: std::fs::File, note: PathBuf },
}

impl ApplyLock {
    pub async fn acquire(target: &Target) -> Result<Self, LockError> {
        let held = match target.backend {
            Backend::Postgres => Held::Pg(tokio::sync::Mutex::new(Some(pg_lock(target).await?))),
            Backend::Sqlite => sqlite_lock(target)?,
        };
        Ok(Self {
            held,
            lost: AtomicBool::new(false),
        })
    }

    /// Whether the lock is still this run's. PostgreSQL asks its session
    /// (one round trip); once lost, always lost.
    pub async fn still_held(&self) -> bool {
        if self.lost.load(Ordering::SeqCst) {
            return false;
        }
        let held = match &self.held {
            Held::Pg(conn) => {
                let mut guard = conn.lock().await;
                match guard.as_mut() {
                    Some(Conn::Pg(c)) => crate::db::pg::holds_lock(c).await.unwrap_or(false),
                    _ => false,
                }
            }
            Held::Sqlite { .. } => true,
        };
        if !held {
            self.lost.store(true, Ordering::SeqCst);
        }
        held
    }

    /// The lock was found lost by [`ApplyLock::still_held`].
    pub fn was_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Releases the lock: closing the session ends the advisory lock; the
    /// flock ends with its descriptor. Call it after every other
    /// connection of the run has closed.
    pub async fn release(self) {
        match self.held {
            Held::Pg(conn) => {
                if let Some(Conn::Pg(c)) = conn.into_inner() {
                    let _ = sqlx::Connection::close(c).await;
                }
            }
            Held::Sqlite { file, note } => {
                let _ = std::fs::remove_file(note);
                let _ = file.unlock();
            }
        }
    }
}

async fn pg_lock(target: &Target) -> Result<Conn, LockError> {
    let limits = SessionLimits {
        lock_timeout: Duration::from_secs(2),
        statement_timeout: Duration::from_secs(30),
        read_only: false,
    };
    let app = format!("dbmaint lock (pid {})", std::process::id());
    let mut c = crate::db::pg::connect_named(target, limits, &app)
        .await
        .map_err(|e| LockError::Failed(e.message))?;
    crate::db::pg::refuse_transaction_pooling(&mut c, target, limits)
        .await
        .map_err(|e| LockError::Failed(e.message))?;
    match crate::db::pg::try_lock(&mut c).await {
        Ok(Ok(())) => Ok(Conn::Pg(c)),
        Ok(Err(holder)) => Err(LockError::Held(holder)),
        Err(e) => Err(LockError::Failed(e.message)),
    }
}

fn sqlite_lock(target: &Target) -> Result<Held, LockError> {
    let path = std::path::Path::new(&target.database);
    let real =
        std::fs::canonicalize(path).map_err(|e| LockError::Failed(format!("cannot find `{}`: {e}", path.display())))?;
    let note = PathBuf::from(format!("{}.dbmaint-lock", real.display()));
    // Read-only is enough for flock, and never changes the database file.
    let file = std::fs::File::open(&real)
        .map_err(|e| LockError::Failed(format!("cannot open `{}` to lock it: {e}", real.display())))?;
    match file.try_lock() {
        Ok(()) => {
            let _ = std::fs::write(
                &note,
                format!(
                    "pid {} on {} since {}\n",
                    std::process::id(),
                    hostname(),
                    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            );
            Ok(Held::Sqlite { file, note })
        }
        Err(_) => {
            let holder = std::fs::read_to_string(&note).unwrap_or_default();
            Err(LockError::Held(format!(
                "{} is locked by {}",
                real.display(),
                if holder.trim().is_empty() {
                    "another process"
                } else {
                    holder.trim()
                }
            )))
        }
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into())
}

//! Which server and database a session reached, as the server itself
//! says: shown in every header, kept in saved plans, compared before a
//! saved plan is applied.

use serde::{Deserialize, Serialize};

use crate::plan::values::Backend;

/// The resolved target as the server itself reports it. The password is
/// never part of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetIdentity {
    pub backend: Backend,
    /// Host name, address or socket directory (PostgreSQL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Database name (PostgreSQL) or the file's real path (SQLite).
    pub database: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The `sslmode` in force, and the TLS protocol the session really
    /// uses (`off` when it is in clear text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslmode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    /// PostgreSQL: `pg_control_system().system_identifier`, one per
    /// cluster (a restored copy keeps it, a new cluster does not). SQLite:
    /// the file's device and inode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_identifier: Option<String>,
    /// Where the target came from (`--target, replacing …`, the plan, …).
    #[serde(default)]
    pub source: String,
}

impl TargetIdentity {
    /// One line for headers: `postgres user@host:port/db, TLS TLSv1.3 (sslmode=require), system 7312…`.
    pub fn describe(&self) -> String {
        let mut s = match self.backend {
            Backend::Postgres => format!(
                "postgres {}@{}:{}/{}",
                self.user.as_deref().unwrap_or("?"),
                self.host.as_deref().unwrap_or("?"),
                self.port.unwrap_or(0),
                self.database
            ),
            Backend::Sqlite => format!("sqlite {}", self.database),
        };
        if let Some(mode) = &self.sslmode {
            s.push_str(&format!(
                ", TLS {} (sslmode={mode})",
                self.tls.as_deref().unwrap_or("off")
            ));
        }
        if let Some(id) = &self.system_identifier {
            let what = if self.backend == Backend::Postgres {
                "system"
            } else {
                "file"
            };
            s.push_str(&format!(", {what} {id}"));
        }
        s
    }

    /// Why `other` is not the database this identity names, if it is not.
    pub fn mismatch(&self, other: &TargetIdentity) -> Option<String> {
        let same = self.backend == other.backend
            && self.database == other.database
            && match (&self.system_identifier, &other.system_identifier) {
                (Some(a), Some(b)) => a == b,
                _ => self.host == other.host && self.port == other.port,
            };
        (!same).then(|| format!("reviewed against {}, but this is {}", self.describe(), other.describe()))
    }
}

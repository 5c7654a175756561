//! The `stats` report: database size, the largest tables and indexes with
//! their activity figures. Read-only; the same queries answer `plan diff`
//! and `plan apply` (`pg.rs`, `sqlite.rs` beside this file).

use serde::{Deserialize, Serialize};

use crate::run::execplan::{human_bytes, human_count};

/// One table in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableStats {
    pub name: String,
    pub total_bytes: u64,
    /// Planner's live-row estimate (PostgreSQL) or `None` (SQLite).
    pub rows: Option<u64>,
    pub dead_tuples: Option<u64>,
    pub last_vacuum: Option<String>,
    pub last_analyze: Option<String>,
    /// Neither analyzed nor vacuumed (PostgreSQL `reltuples` -1): the
    /// planner knows nothing of it; `rows` then comes from the statistics
    /// collector's count of inserts, when it has one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub never_analyzed: bool,
}

/// One index in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexStats {
    pub name: String,
    pub table: String,
    pub bytes: u64,
    /// Scans since the statistics were reset (PostgreSQL).
    pub scans: Option<u64>,
}

/// The whole report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    pub database_bytes: u64,
    pub tables: Vec<TableStats>,
    pub indexes: Vec<IndexStats>,
    /// How sizes were measured (e.g. SQLite without `dbstat`).
    pub note: Option<String>,
}

impl TableStats {
    /// Size, rows, dead tuples, last vacuum and analyze, as the diff shows them.
    pub fn detail(&self) -> String {
        let mut parts = vec![human_bytes(self.total_bytes)];
        match (self.rows, self.never_analyzed) {
            (Some(r), false) => parts.push(format!("~{} rows", human_count(r))),
            (Some(r), true) => parts.push(format!(
                "~{} rows (counted from inserts: never analyzed)",
                human_count(r)
            )),
            (None, true) => parts.push("rows unknown: never analyzed — run ANALYZE".into()),
            (None, false) => {}
        }
        if let Some(d) = self.dead_tuples {
            parts.push(format!("{} dead", human_count(d)));
        }
        if self.rows.is_some() || self.never_analyzed {
            parts.push(format!("vacuumed {}", self.last_vacuum.as_deref().unwrap_or("never")));
            parts.push(format!("analyzed {}", self.last_analyze.as_deref().unwrap_or("never")));
        }
        parts.join(", ")
    }
}

impl IndexStats {
    pub fn detail(&self) -> String {
        format!(
            "on {}, {}{}",
            self.table,
            human_bytes(self.bytes),
            self.scans
                .map(|s| format!(", {} scans", human_count(s)))
                .unwrap_or_default()
        )
    }
}

impl StatsReport {
    /// The report as text lines, for the final report.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!("database {}", human_bytes(self.database_bytes))];
        out.extend(self.tables.iter().map(|t| format!("table {}: {}", t.name, t.detail())));
        out.extend(self.indexes.iter().map(|i| format!("index {}: {}", i.name, i.detail())));
        out.extend(self.note.clone());
        out
    }
}

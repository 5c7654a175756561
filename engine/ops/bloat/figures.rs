//! Bloat figures, shared by the `bloat` report and `reindex`'s
//! `min_bloat_ratio`: what one relation wastes, how it was measured, and the
//! findings a threshold turns them into. The SQL lives with each backend
//! (`pg.rs`, `sqlite.rs` beside this file).
//!
//! "Waste" is what a rebuild would give back: the relation's size minus
//! the size its live rows need at its fillfactor. PostgreSQL estimates it
//! without any extension from `pg_class` and `pg_stats` (the statistical
//! method of ioguix/pgsql-bloat-estimation, so figures are only as fresh as
//! the last ANALYZE); `exact: true` reads every page through `pgstattuple`
//! when the extension is installed. SQLite's waste is its free-list pages.

use serde::{Deserialize, Serialize};

use crate::ops::check::spec::{Finding, Severity};
use crate::run::execplan::human_bytes;
use crate::run::planner::percent;

/// How a figure was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// From planner statistics: an estimate, flagged as such everywhere.
    Estimate,
    /// Every page read by `pgstattuple` / `pgstatindex`.
    Pgstattuple,
    /// SQLite `freelist_count` / `page_count`.
    Freelist,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Estimate => "estimate",
            Self::Pgstattuple => "pgstattuple",
            Self::Freelist => "freelist",
        }
    }
}

/// One relation's bloat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BloatEntry {
    /// `table`, `index` or `database` (SQLite's file).
    pub kind: String,
    /// `schema.name` (PostgreSQL) or the file path (SQLite).
    pub name: String,
    /// The table an index belongs to (`schema.name`), else the table itself.
    pub table: String,
    pub bytes: u64,
    pub waste_bytes: u64,
    /// waste / bytes.
    pub ratio: f64,
    pub method: Method,
}

impl BloatEntry {
    /// Builds an entry; waste is clamped to `0..=bytes` (a compact or
    /// deduplicated btree is smaller than the estimate's model).
    pub fn new(kind: &str, name: String, table: String, bytes: u64, waste: i64, method: Method) -> Self {
        let waste_bytes = (waste.max(0) as u64).min(bytes);
        Self {
            kind: kind.into(),
            name,
            table,
            bytes,
            waste_bytes,
            ratio: if bytes == 0 {
                0.0
            } else {
                waste_bytes as f64 / bytes as f64
            },
            method,
        }
    }

    /// `12.0 MiB, ~4.1 MiB wasted (34.2%, estimate)`.
    pub fn detail(&self) -> String {
        let approx = if self.method == Method::Estimate { "~" } else { "" };
        format!(
            "{}, {approx}{} wasted ({}, {})",
            human_bytes(self.bytes),
            human_bytes(self.waste_bytes),
            percent(self.ratio),
            self.method.as_str()
        )
    }
}

/// What a bloat measurement reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BloatSpec {
    /// Use `pgstattuple` when installed.
    pub exact: bool,
    /// Relations smaller than this are skipped: estimates of a few pages are
    /// noise (check_postgres skips them the same way).
    pub min_bytes: u64,
    /// Table globs (all when empty); indexes follow their table.
    pub tables: Vec<String>,
}

/// Default `min_bytes`: 1 MiB.
pub const DEFAULT_MIN_BYTES: u64 = 1024 * 1024;
/// Default `min_waste_ratio` of the `bloat` report.
pub const DEFAULT_MIN_WASTE_RATIO: f64 = 0.2;

/// Every measured relation, largest waste first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BloatReport {
    pub entries: Vec<BloatEntry>,
    /// Relations left out because they are smaller than `min_bytes`.
    pub skipped_small: u64,
    /// Relations without the statistics an estimate needs (never analyzed,
    /// or a `name` column the estimate cannot size), by name.
    pub no_stats: Vec<String>,
    /// Their sizes, in the same order (PostgreSQL).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_stats_bytes: Vec<u64>,
    /// How figures were obtained when not as asked (no pgstattuple, …).
    pub note: Option<String>,
}

impl BloatReport {
    /// Sorts largest waste first, then by name, so output is stable.
    pub fn sorted(mut self) -> Self {
        self.entries
            .sort_by(|a, b| b.waste_bytes.cmp(&a.waste_bytes).then_with(|| a.name.cmp(&b.name)));
        self
    }

    pub fn entry(&self, kind: &str, name: &str) -> Option<&BloatEntry> {
        self.entries.iter().find(|e| e.kind == kind && e.name == name)
    }

    /// A warning per relation at or over `min_ratio`.
    pub fn findings(&self, min_ratio: f64) -> Vec<Finding> {
        self.entries
            .iter()
            .filter(|e| e.waste_bytes > 0 && e.ratio >= min_ratio)
            .map(|e| Finding {
                check: "bloat".into(),
                severity: Severity::Warning,
                object: format!("{} {}", e.kind, e.name),
                message: format!(
                    "{} of {} wasted ({}, {}){}",
                    human_bytes(e.waste_bytes),
                    human_bytes(e.bytes),
                    percent(e.ratio),
                    e.method.as_str(),
                    match e.kind.as_str() {
                        "index" => ": REINDEX CONCURRENTLY gives it back",
                        "table" => ": VACUUM FULL or pg_repack gives it back; plain VACUUM only makes it reusable",
                        _ => ": VACUUM gives it back",
                    }
                ),
                figures: serde_json::json!({
                    "bytes": e.bytes, "waste_bytes": e.waste_bytes, "ratio": e.ratio, "method": e.method,
                }),
            })
            .collect()
    }

    /// What was left out, for the diff and the report.
    pub fn notes(&self) -> Vec<String> {
        let mut out = vec![];
        if self.skipped_small > 0 {
            out.push(format!(
                "{} relations smaller than the size threshold not measured",
                self.skipped_small
            ));
        }
        if !self.no_stats.is_empty() {
            let shown: Vec<String> = self
                .no_stats
                .iter()
                .enumerate()
                .take(5)
                .map(|(i, n)| match self.no_stats_bytes.get(i) {
                    Some(b) => format!("{n} {}", crate::run::execplan::human_bytes(*b)),
                    None => n.clone(),
                })
                .collect();
            out.push(format!(
                "no statistics to estimate {} relations ({}{}): run ANALYZE on them",
                self.no_stats.len(),
                shown.join(", "),
                if self.no_stats.len() > 5 { ", …" } else { "" }
            ));
        }
        out.extend(self.note.clone());
        out
    }

    /// The report as text lines.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .entries
            .iter()
            .map(|e| format!("{} {}: {}", e.kind, e.name, e.detail()))
            .collect();
        out.extend(self.notes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waste_is_clamped_and_findings_follow_the_threshold() {
        let r = BloatReport {
            entries: vec![
                BloatEntry::new(
                    "index",
                    "public.a_idx".into(),
                    "public.a".into(),
                    1000,
                    400,
                    Method::Estimate,
                ),
                BloatEntry::new(
                    "table",
                    "public.a".into(),
                    "public.a".into(),
                    1000,
                    -50,
                    Method::Estimate,
                ),
                BloatEntry::new(
                    "table",
                    "public.b".into(),
                    "public.b".into(),
                    1000,
                    5000,
                    Method::Pgstattuple,
                ),
            ],
            ..BloatReport::default()
        }
        .sorted();
        assert_eq!(r.entries[0].name, "public.b");
        assert_eq!(r.entries[0].waste_bytes, 1000);
        assert_eq!(r.entry("table", "public.a").map(|e| e.waste_bytes), Some(0));
        let f = r.findings(0.3);
        assert_eq!(f.len(), 2);
        assert!(f[1].message.contains("40.0%, estimate"), "{}", f[1].message);
        assert!(r.findings(0.5).iter().all(|f| f.object != "index public.a_idx"));
    }

    #[test]
    fn globs_match_bare_or_qualified_names() {
        use crate::run::planner::matches_any;
        assert!(matches_any(&[], "public.x"));
        assert!(matches_any(&["core_*".into()], "public.core_log"));
        assert!(matches_any(&["public.core_log".into()], "public.core_log"));
        assert!(!matches_any(&["other".into()], "public.core_log"));
        // Only `*` and `?` are special: a backslash and brackets are text.
        assert!(!matches_any(&["a\\b".into()], "public.ab"));
        assert!(matches_any(&["a\\b".into()], "public.a\\b"));
        assert!(matches_any(&["t[1]".into()], "public.t[1]"));
        assert!(!matches_any(&["t[12]".into()], "public.t1"));
        assert!(matches_any(&["c?re_*_log".into()], "public.core_audit_log"));
        assert!(matches_any(&["*".into()], "public.x"));
        assert!(!matches_any(&["*x*y".into()], "public.axb"));
    }
}

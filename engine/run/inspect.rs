//! The facts planning needs, read from the live database in one read-only
//! transaction: the catalog (`db::catalog`), then what each step's
//! operation reads (retention counts over live data, previews, reports).

use serde::Serialize;

pub use crate::db::catalog::{
    Catalog, Column, DeleteTrigger, ForeignKey, IndexFacts, OnDelete, OtherRelation, SqliteFile, TableFacts,
};

/// An unfinished rebuild in the journal (`dbmaint.rebuilds`) and the
/// INVALID transient indexes it left on its table (none when it was
/// cleaned some other way: the record is then just closed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Leftover {
    pub record: i64,
    pub schema: String,
    pub table: String,
    pub index: String,
    pub invalid: Vec<String>,
}

/// A materialized view (PostgreSQL), for `refresh_views`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatView {
    pub schema: String,
    pub name: String,
    pub populated: bool,
    pub bytes: u64,
    /// A valid unique index on plain columns without a predicate, which
    /// `REFRESH … CONCURRENTLY` needs; `None` when there is none.
    pub unique_index: Option<String>,
    /// Other materialized views its query reads (`schema.name`).
    pub reads: Vec<String>,
}

/// The snapshot: the catalog, and what each step's operation read in the
/// same read-only transaction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inspection {
    #[serde(flatten)]
    pub catalog: Catalog,
    /// Retention facts by step id.
    pub retention: indexmap::IndexMap<String, crate::ops::retention::facts::RetentionFacts>,
    /// What each `sql` step's `dry_run` query returned, by step id.
    #[serde(default)]
    pub previews: indexmap::IndexMap<String, crate::ops::sql::preview::QueryPreview>,
    /// What each `check` step's checks found, by step id (an `Err` is the
    /// message of a check query that failed).
    #[serde(default)]
    pub findings: indexmap::IndexMap<String, Result<Vec<crate::ops::check::spec::Finding>, String>>,
    /// Each `stats` step's report, by step id.
    #[serde(default)]
    pub stats: indexmap::IndexMap<String, Result<crate::ops::stats::report::StatsReport, String>>,
    /// Bloat figures for each `bloat` and `reindex` step, by step id.
    #[serde(default)]
    pub bloat: indexmap::IndexMap<String, Result<crate::ops::bloat::figures::BloatReport, String>>,
    /// Unfinished concurrent rebuilds of earlier runs (read when the plan
    /// has a `reindex` step).
    #[serde(default)]
    pub leftovers: Option<Result<Vec<Leftover>, String>>,
    /// Materialized views (read when the plan has a `refresh_views` step).
    #[serde(default)]
    pub matviews: Option<Result<Vec<MatView>, String>>,
}

// Planning reads the catalog through the inspection everywhere; the
// catalog is the inspection's base, not a field anyone should name.
impl std::ops::Deref for Inspection {
    type Target = Catalog;
    fn deref(&self) -> &Catalog {
        &self.catalog
    }
}

impl std::ops::DerefMut for Inspection {
    fn deref_mut(&mut self) -> &mut Catalog {
        &mut self.catalog
    }
}

impl Inspection {
    /// An inspection of `catalog` before any operation read anything.
    pub fn new(catalog: Catalog) -> Self {
        Self {
            catalog,
            retention: indexmap::IndexMap::new(),
            previews: indexmap::IndexMap::new(),
            findings: indexmap::IndexMap::new(),
            stats: indexmap::IndexMap::new(),
            bloat: indexmap::IndexMap::new(),
            leftovers: None,
            matviews: None,
        }
    }
}

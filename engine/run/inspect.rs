//! The facts planning needs, read from the live database in one read-only
//! transaction: the catalog (`db::catalog`), then what each step's
//! operation reads (retention counts over live data, previews, reports).

/// Something an operation read, kept in the inspection for its planning.
pub type Fact = std::sync::Arc<dyn std::any::Any + Send + Sync>;

pub use crate::db::catalog::{
    Catalog, Column, DeleteTrigger, ForeignKey, IndexFacts, OnDelete, OtherRelation, SqliteFile, TableFacts,
};

/// The snapshot: the catalog, and what each step's operation read (its
/// [`Fact`]s, by keys the operation chooses: the step id, or the step id
/// and a table for a step that reads several).
#[derive(Debug, Clone)]
pub struct Inspection {
    pub catalog: Catalog,
    pub facts: indexmap::IndexMap<String, Fact>,
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
            facts: indexmap::IndexMap::new(),
        }
    }

    /// What an operation stored under `key`, when it is a `T`.
    pub fn fact<T: std::any::Any>(&self, key: &str) -> Option<&T> {
        self.facts.get(key).and_then(|f| f.downcast_ref::<T>())
    }

    /// Stores what an operation read under `key`.
    pub fn keep<T: std::any::Any + Send + Sync>(&mut self, key: impl Into<String>, fact: T) {
        self.facts.insert(key.into(), std::sync::Arc::new(fact));
    }
}

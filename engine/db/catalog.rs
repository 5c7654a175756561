//! What the database holds, as planning needs it: server facts, tables
//! with their columns, indexes, triggers, children and counters, foreign
//! keys, and SQLite's file figures. Backend-neutral types, filled by
//! `pg.rs` and `sqlite.rs` with a fixed number of set-based catalog
//! queries (never one query per table). It knows no operation: what a step
//! reads beyond the catalog, its operation reads itself.

use serde::Serialize;

/// A column of a table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Column {
    pub name: String,
    /// The type as the database spells it (`bigint`, `timestamp with time zone`, `TEXT`).
    pub data_type: String,
    pub not_null: bool,
}

/// A trigger (or, on PostgreSQL, a rule) that acts when rows of its table
/// are deleted: a retention step's delete fires it for every row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeleteTrigger {
    pub name: String,
    /// `BEFORE`, `AFTER`, `INSTEAD OF`, or `RULE`.
    pub timing: String,
    /// Fires per row (not once per statement).
    pub per_row: bool,
    /// The function it calls (PostgreSQL), empty otherwise.
    pub function: String,
    /// What its body does, as far as its text tells (see `triggerbody`).
    pub reads: crate::db::triggerbody::Body,
}

/// What a foreign key does to its rows when the row it references is
/// deleted (`ON DELETE …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDelete {
    NoAction,
    Restrict,
    Cascade,
    SetNull,
    SetDefault,
}

impl OnDelete {
    /// PostgreSQL's `confdeltype` letter or SQLite's `on_delete` text.
    pub fn parse(text: &str) -> Self {
        match text.to_ascii_uppercase().as_str() {
            "C" | "CASCADE" => Self::Cascade,
            "N" | "SET NULL" => Self::SetNull,
            "D" | "SET DEFAULT" => Self::SetDefault,
            "R" | "RESTRICT" => Self::Restrict,
            _ => Self::NoAction,
        }
    }

    pub fn sql(self) -> &'static str {
        match self {
            Self::NoAction => "NO ACTION",
            Self::Restrict => "RESTRICT",
            Self::Cascade => "CASCADE",
            Self::SetNull => "SET NULL",
            Self::SetDefault => "SET DEFAULT",
        }
    }

    /// The database changes the child rows itself (deletes or updates them).
    pub fn acts(self) -> bool {
        matches!(self, Self::Cascade | Self::SetNull | Self::SetDefault)
    }
}

/// A foreign key: `child (child_columns) REFERENCES parent (parent_columns)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForeignKey {
    pub name: String,
    pub child_schema: String,
    pub child_table: String,
    pub child_columns: Vec<String>,
    pub parent_schema: String,
    pub parent_table: String,
    pub parent_columns: Vec<String>,
    pub on_delete: OnDelete,
}

/// An index of a table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndexFacts {
    pub name: String,
    /// Key columns in order (expressions appear as `expr`).
    pub columns: Vec<String>,
    pub bytes: u64,
    pub unique: bool,
    pub primary: bool,
    pub valid: bool,
    pub partial: bool,
    /// Backs an exclusion constraint (PostgreSQL cannot rebuild it CONCURRENTLY).
    #[serde(default)]
    pub exclusion: bool,
    /// The partitioned index this partition's index is attached to
    /// (`schema.name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_index: Option<String>,
}

/// A table's TOAST table and its index (schema `pg_toast`).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Toast {
    pub table: String,
    pub index: String,
    pub index_bytes: u64,
}

/// A table and its maintenance figures. PostgreSQL fills every field;
/// SQLite has no per-table statistics, so the counters stay zero there.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableFacts {
    pub schema: String,
    pub name: String,
    /// Heap, indexes and TOAST.
    pub total_bytes: u64,
    pub live_tuples: u64,
    pub dead_tuples: u64,
    pub mod_since_analyze: u64,
    pub last_vacuum: Option<String>,
    pub last_autovacuum: Option<String>,
    pub last_analyze: Option<String>,
    pub last_autoanalyze: Option<String>,
    /// Age of relfrozenxid in transactions (PostgreSQL).
    pub xid_age: u64,
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
    pub indexes: Vec<IndexFacts>,
    /// Legacy inheritance children (`CREATE TABLE … INHERITS`), `schema.name`:
    /// a plain DELETE on this table reaches their rows too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inheritance_children: Vec<String>,
    /// SQLite `WITHOUT ROWID`: the table has no `rowid` to order batches by.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub without_rowid: bool,
    /// Enabled triggers and rules that act on DELETE of this table's rows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete_triggers: Vec<DeleteTrigger>,
    /// A PostgreSQL partitioned table: no storage of its own, its rows are
    /// in `partitions`. Only retention names one; vacuum, analyze,
    /// reindex and bloat select its partitions, which hold the data.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partitioned: bool,
    /// PostgreSQL: the table has storage but its activity counters say
    /// nothing about it — lost (crash, failover, clone, `pg_upgrade`) or
    /// reset (`pg_stat_reset`) since it was last vacuumed or analyzed: its
    /// dead tuples are unknown, not zero.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stats_unknown: bool,
    /// When `stats_unknown`: (live, dead) tuples measured by
    /// `pgstattuple_approx`, if the extension is installed and the role
    /// may run it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_tuples: Option<(u64, u64)>,
    /// The partitions of a partitioned table, `schema.name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<String>,
    /// What the plan's role may do with it (PostgreSQL; SQLite: all).
    #[serde(default)]
    pub access: TableAccess,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toast: Option<Toast>,
}

/// The plan's role and one table: its owner, and the privileges retention
/// needs. Only an owner (or a member of the owning role, or a superuser)
/// may VACUUM, ANALYZE, REINDEX, detach or drop it (PostgreSQL 15).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct TableAccess {
    pub owner: String,
    /// The owner is a superuser: membership in it is no grant to advise.
    #[serde(default)]
    pub owner_superuser: bool,
    pub owned: bool,
    pub select: bool,
    pub delete: bool,
}

impl Default for TableAccess {
    fn default() -> Self {
        Self {
            owner: String::new(),
            owner_superuser: false,
            owned: true,
            select: true,
            delete: true,
        }
    }
}

/// The plan's role, as the server sees it (PostgreSQL).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct RoleFacts {
    pub name: String,
    pub superuser: bool,
    pub createdb: bool,
    /// Member of (or granted) these predefined roles.
    pub read_all_stats: bool,
    pub signal_backend: bool,
    pub read_all_data: bool,
    /// CREATE on the database (the journal's schema is created with it).
    pub create_on_database: bool,
    /// The journal schema exists and the role owns it (or is a member of its owner).
    pub owns_journal: Option<bool>,
    pub database: String,
}

impl TableFacts {
    /// `schema.name`, or just `name` in the default schema.
    pub fn display_name(&self, default_schema: &str) -> String {
        if self.schema == default_schema {
            self.name.clone()
        } else {
            format!("{}.{}", self.schema, self.name)
        }
    }

    /// dead / (live + dead), 0 when empty.
    pub fn dead_ratio(&self) -> f64 {
        let all = self.live_tuples + self.dead_tuples;
        if all == 0 {
            0.0
        } else {
            self.dead_tuples as f64 / all as f64
        }
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// True when some valid index starts with `column` (a range on it can use it).
    pub fn has_index_on(&self, column: &str) -> bool {
        self.indexes
            .iter()
            .any(|i| i.valid && !i.partial && i.columns.first().is_some_and(|c| c == column))
    }
}

/// SQLite file figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SqliteFile {
    pub path: String,
    pub page_size: u64,
    pub page_count: u64,
    pub freelist_count: u64,
    pub file_bytes: u64,
}

impl SqliteFile {
    pub fn free_ratio(&self) -> f64 {
        if self.page_count == 0 {
            0.0
        } else {
            self.freelist_count as f64 / self.page_count as f64
        }
    }
}

/// Which tables the catalog measures on disk (`pg_table_size`,
/// `pg_relation_size`: a file system call per fork, and a relation cache
/// entry, for every relation measured). The others are sized from
/// `relpages` as of their last VACUUM or ANALYZE: a plan whose every step
/// names its tables without globs needs no other table's size, and on a
/// database of 25,000 relations measuring them all is most of a diff.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Measure {
    /// Every table (a step that selects by globs, reports on the whole
    /// database, or says nothing).
    #[default]
    All,
    /// Tables named bare or schema-qualified, with their partitions and
    /// inheritance children at any depth.
    Named(Vec<String>),
}

impl Measure {
    /// What a step's `tables` list needs: all when it is empty or has a
    /// glob (`*`, `?`), else those names.
    pub fn of(globs: &[String]) -> Self {
        if globs.is_empty() || globs.iter().any(|g| g.contains(['*', '?'])) {
            Self::All
        } else {
            Self::Named(globs.to_vec())
        }
    }

    /// What two steps need together.
    pub fn and(self, other: Self) -> Self {
        match (self, other) {
            (Self::Named(mut a), Self::Named(b)) => {
                a.extend(b);
                a.sort();
                a.dedup();
                Self::Named(a)
            }
            _ => Self::All,
        }
    }
}

/// The catalog half of an inspection, read in the inspection's snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Catalog {
    pub server_version: String,
    /// Schema unqualified names are created in (`public`, `main`).
    pub default_schema: String,
    /// The schemas unqualified names resolve through, in order (PostgreSQL
    /// `current_schemas(false)`, as the application's sessions see them).
    #[serde(default)]
    pub search_path: Vec<String>,
    /// Relations that are not tables (views, materialized views, foreign
    /// tables): named so that a step naming one says what it is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_relations: Vec<OtherRelation>,
    pub database_bytes: u64,
    pub tables: Vec<TableFacts>,
    /// Every foreign key of the database (one catalog query).
    #[serde(default)]
    pub foreign_keys: Vec<ForeignKey>,
    pub sqlite: Option<SqliteFile>,
    /// The plan's role (PostgreSQL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<RoleFacts>,
    /// Catalog queries issued (fixed whatever the number of tables).
    pub catalog_queries: u32,
}

impl Catalog {
    /// Finds a table by a plan identifier (`name` or `schema.name`). An
    /// unqualified name resolves through the search path, first match
    /// winning, as it does in the application's sessions.
    pub fn table(&self, schema: Option<&str>, name: &str) -> Option<&TableFacts> {
        match schema {
            Some(s) => self.tables.iter().find(|t| t.schema == s && t.name == name),
            None => self
                .search_path
                .iter()
                .chain(std::iter::once(&self.default_schema))
                .find_map(|s| self.tables.iter().find(|t| &t.schema == s && t.name == name)),
        }
    }

    /// A view, materialized view or foreign table by a plan identifier.
    pub fn other_relation(&self, schema: Option<&str>, name: &str) -> Option<&OtherRelation> {
        self.other_relations.iter().find(|r| {
            r.name == name
                && match schema {
                    Some(s) => r.schema == s,
                    None => self.search_path.contains(&r.schema) || r.schema == self.default_schema,
                }
        })
    }
}

/// A relation that is not a table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OtherRelation {
    pub schema: String,
    pub name: String,
    /// `view`, `materialized view` or `foreign table`.
    pub kind: String,
}

#[cfg(test)]
mod tests {
    use super::Measure;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_glob_or_no_list_measures_every_table() {
        assert_eq!(Measure::of(&[]), Measure::All);
        assert_eq!(Measure::of(&names(&["events", "audit_*"])), Measure::All);
        assert_eq!(Measure::of(&names(&["ev?nts"])), Measure::All);
        assert_eq!(
            Measure::of(&names(&["events", "public.logs"])),
            Measure::Named(names(&["events", "public.logs"]))
        );
    }

    #[test]
    fn steps_together_measure_the_union_or_everything() {
        let named = |n: &[&str]| Measure::Named(names(n));
        assert_eq!(named(&["b", "a"]).and(named(&["a", "c"])), named(&["a", "b", "c"]));
        assert_eq!(named(&["a"]).and(Measure::All), Measure::All);
        assert_eq!(Measure::All.and(named(&[])), Measure::All);
        assert_eq!(named(&[]).and(named(&["a"])), named(&["a"]));
    }
}

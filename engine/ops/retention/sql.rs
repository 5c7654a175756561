//! A retention step's statements, written once from a [`RetentionSpec`]:
//! the predicate, the eligible count and key span, the batch statements
//! (`pg.rs` and `sqlite.rs` write each dialect), the per-foreign-key
//! counts and the cascade counts. Text only; `batch.rs` runs them.

use super::facts::ChildProbe;

/// What the backend needs to write a retention step's statements.
#[derive(Debug, Clone)]
pub struct RetentionSpec {
    /// Quoted source table.
    pub table: String,
    /// Quoted timestamp column and its type.
    pub column: String,
    pub column_type: String,
    /// Quoted batch key columns (primary key, `rowid`, or `key:`) with
    /// their types: one for most tables, several for a composite primary
    /// key, whose batches are ordered and bounded as a row value
    /// (`(a, b) > (…, …)`, keyset pagination).
    pub key: Vec<(String, String)>,
    pub where_sql: Option<String>,
    pub batch_size: u64,
    /// Quoted source columns with their types, in table order.
    pub columns: Vec<(String, String)>,
    /// Quoted primary key columns of the source.
    pub primary_key: Vec<String>,
    pub archive: Option<ArchiveSpec>,
    /// SQLite: the storage class the cutoff is compared as (`INTEGER` for
    /// Unix times, `REAL` for Julian days); text compares as text.
    pub cutoff_cast: Option<&'static str>,
    /// PostgreSQL: the table has inheritance children; statements name
    /// `ONLY` the table, so their rows are never deleted with its own.
    pub only: bool,
    /// Something may keep a row the delete reaches (a row-level DELETE
    /// trigger, a rule, row-level security): key windows then also count
    /// the eligible rows each one left behind. Without such a thing a
    /// window's DELETE is its own selection and that count is skipped.
    pub check_left: bool,
    /// `on_cascade: allow`: the referencing keys that act, at any depth.
    pub cascades: Vec<CascadeSpec>,
}

/// Where a retention step archives.
#[derive(Debug, Clone)]
pub enum ArchiveSpec {
    /// Quoted archive table; `exists: false` adds its CREATE statements.
    Table {
        name: String,
        exists: bool,
    },
    File {
        path: String,
    },
}

/// The statements of a retention step, as the backend writes them.
#[derive(Debug, Clone)]
pub struct RetentionSql {
    pub create_archive: Vec<String>,
    /// Binds (cutoff); returns (eligible rows, first key, last key) when
    /// the step starts (see `work::RetentionWork::count`).
    pub count: String,
    pub batch: super::work::BatchSql,
    pub cascades: Vec<super::work::CascadeCount>,
}

/// The predicate shared by every retention statement; binds the cutoff as
/// parameter 1 in the form `cutoff_param` gives.
pub fn retention_predicate(spec: &RetentionSpec, cutoff_param: &str) -> String {
    let mut p = format!("{} < {cutoff_param}", spec.column);
    if let Some(w) = &spec.where_sql {
        p.push_str(&format!(" AND ({w})"));
    }
    p
}

/// Counts the rows of a referencing (child) table that reference rows of
/// `table` matching `pred`: `ch.from` aliases the child `dbmaint_c`.
pub fn child_count_sql(ch: &ChildProbe, table: &str, pred: &str) -> String {
    reach_sql(&ch.from, &ch.join, &ch.via, table, pred)
}

/// Counts the rows of `from` that reach rows of `table` matching `cond`
/// through the tables of `via` (nearest `table` first): one `EXISTS` per
/// level, each joining a level to the one before.
pub fn reach_sql(from: &str, join: &str, via: &[(String, String)], table: &str, cond: &str) -> String {
    let levels: Vec<(&str, &str)> = via
        .iter()
        .map(|(f, j)| (f.as_str(), j.as_str()))
        .chain(std::iter::once((from, join)))
        .collect();
    let mut reach = format!("EXISTS (SELECT 1 FROM {table} WHERE {} AND {cond})", levels[0].1);
    for k in 1..levels.len() {
        reach = format!(
            "EXISTS (SELECT 1 FROM {} WHERE {} AND {reach})",
            levels[k - 1].0,
            levels[k].1
        );
    }
    format!("SELECT count(*) FROM {from} WHERE {reach}")
}

/// A foreign key whose ON DELETE a batch's delete sets off
/// (`on_cascade: allow`), ready to be counted per batch.
#[derive(Debug, Clone)]
pub struct CascadeSpec {
    pub label: String,
    pub on_delete: String,
    pub from: String,
    pub join: String,
    pub via: Vec<(String, String)>,
}

/// Counts the rows of a self-referencing child that reference rows
/// matching `pred` without matching it themselves: rows a cascade would
/// reach past the cutoff. In the outer query `pred`'s columns are the
/// child's own (it is the only table in scope there).
pub fn outside_count_sql(ch: &ChildProbe, table: &str, pred: &str) -> String {
    format!(
        "SELECT count(*) FROM {} WHERE EXISTS (SELECT 1 FROM {table} WHERE {} AND {pred}) AND ({pred}) IS NOT TRUE",
        ch.from, ch.join
    )
}

/// `RetentionWork::cascades` for a spec, each count over `range` (the
/// batch's key condition, binding lo and hi as the batch does).
pub fn cascade_counts(spec: &RetentionSpec, table: &str, pred: &str, range: &str) -> Vec<super::work::CascadeCount> {
    spec.cascades
        .iter()
        .map(|c| super::work::CascadeCount {
            foreign_key: c.label.clone(),
            on_delete: c.on_delete.clone(),
            count: reach_sql(&c.from, &c.join, &c.via, table, &format!("{pred}{range}")),
        })
        .collect()
}

/// Counts the rows matching `pred` that the guard keeps (some row
/// references them).
pub fn referenced_count_sql(from: &str, pred: &str, guard: &str) -> String {
    format!("SELECT count(*) FROM {from} WHERE {pred} AND NOT ({guard})")
}

//! PostgreSQL bloat figures (`bloat::BloatReport`).
//!
//! The estimate reads only `pg_class`, `pg_attribute` and `pg_stats` (two
//! set-based queries, no lock on any relation) and does the page
//! arithmetic here in Rust, where it is unit-tested: the statistical method
//! of ioguix/pgsql-bloat-estimation, which check_postgres and most DBA
//! toolkits use. A relation's expected size is its row estimate times the
//! width of an average row (from `pg_stats`) plus per-row and per-page
//! overhead, at its fillfactor; waste is the size it has over that. Exact
//! figures read every page with `pgstattuple`/`pgstatindex`, one statement
//! for all relations, only when the extension is installed.

use crate::db::pg::BUSY;
use crate::db::query::{Exec, query};
use crate::db::{DbError, quote_ident};
use crate::ops::bloat::figures::{BloatEntry, BloatReport, BloatSpec, Method};
use crate::ops::bloat::shapes::Shapes;
use crate::run::planner::matches_any;

/// Page layout constants of PostgreSQL on 64-bit platforms (MAXALIGN 8).
const PAGE_HEADER: f64 = 24.0;
const BTREE_OPAQUE: f64 = 16.0;
const ITEM_ID: f64 = 4.0;
const HEAP_TUPLE_HEADER: f64 = 23.0;
const INDEX_TUPLE_HEADER: f64 = 8.0;
const INDEX_NULL_BITMAP: f64 = 4.0;
const MAX_HEAP_TUPLES_PER_PAGE: f64 = 291.0;
/// A heap tuple pointer in a btree posting list.
const HEAP_POINTER: f64 = 6.0;
/// Largest posting-list tuple deduplication builds (BTMaxItemSize / 2).
const MAX_POSTING: f64 = 1352.0;

fn align(x: f64) -> f64 {
    (x / 8.0).ceil() * 8.0
}

/// What the estimate knows about one relation, from the catalogs.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    pub oid: u32,
    pub name: String,
    pub table: String,
    pub pages: u64,
    pub tuples: f64,
    pub fillfactor: f64,
    pub columns: i64,
    pub columns_with_stats: i64,
    /// A `name` column: pg_stats' width of it is unusable (ioguix's is_na).
    pub has_name_column: bool,
    pub nullable: bool,
    /// Sum over columns of (1 - null_frac) * avg_width.
    pub data_width: f64,
    /// Btree deduplication applies (a non-unique index without INCLUDE
    /// columns and with `deduplicate_items` on): duplicates of one key
    /// share one posting-list tuple of 6-byte heap pointers.
    pub dedup: bool,
    /// Distinct keys (from pg_stats' n_distinct of each key column; their
    /// product, at most `tuples`), when known.
    pub distinct: Option<f64>,
    /// A TOAST table: its rows are chunks of at most ~2 KB, four to a page.
    pub toast: bool,
}

/// TOAST chunks a page holds when they are full (TOAST_TUPLES_PER_PAGE).
const TOAST_CHUNKS_PER_PAGE: f64 = 4.0;

impl Shape {
    /// False when the estimate would be a guess: the relation was never
    /// analyzed (`reltuples` -1 or missing column stats) or sizes a `name`.
    pub fn estimable(&self) -> bool {
        if self.toast {
            // VACUUM (autovacuum included) sets a TOAST table's reltuples.
            return self.tuples >= 0.0;
        }
        self.tuples == 0.0 || (self.tuples > 0.0 && self.columns_with_stats == self.columns && !self.has_name_column)
    }

    /// Heap pages the live rows need at the table's fillfactor.
    pub fn heap_pages(&self) -> f64 {
        if self.toast {
            // Values are cut into full chunks but for the last one of each:
            // counting every chunk as full gives the fewest pages the live
            // chunks need, so the waste is never overstated.
            return (self.tuples.max(0.0) / TOAST_CHUNKS_PER_PAGE).ceil();
        }
        let header = HEAP_TUPLE_HEADER
            + if self.nullable {
                (self.columns as f64 / 8.0).ceil()
            } else {
                0.0
            };
        let tuple = ITEM_ID + align(header) + align(self.data_width);
        per_page_pages(
            self.tuples,
            (8192.0 - PAGE_HEADER) * self.fillfactor / 100.0,
            tuple,
            true,
        )
    }

    /// Btree pages the entries need at the index's fillfactor: leaf pages
    /// plus the metapage (internal pages are a fraction of a percent).
    pub fn btree_pages(&self) -> f64 {
        let header = INDEX_TUPLE_HEADER + if self.nullable { INDEX_NULL_BITMAP } else { 0.0 };
        let tuple = ITEM_ID + align(align(header) + self.data_width);
        let usable = (8192.0 - PAGE_HEADER - BTREE_OPAQUE) * self.fillfactor / 100.0;
        let per_key = match self.distinct {
            Some(d) if self.dedup && d >= 1.0 => self.tuples / d,
            _ => 1.0,
        };
        if per_key < 2.0 || self.tuples <= 0.0 {
            return 1.0 + per_page_pages(self.tuples, usable, tuple, false);
        }
        // Deduplicated: per distinct key, posting-list tuples of at most
        // MAX_POSTING bytes (half of BTMaxItemSize), each holding 6 bytes
        // per heap row, plus the key and its line pointer.
        let keys = self.tuples / per_key;
        let room = (MAX_POSTING - (tuple - ITEM_ID)).max(HEAP_POINTER);
        let postings_per_key = (per_key * HEAP_POINTER / room).ceil();
        let bytes = keys * postings_per_key * (tuple + 4.0) + self.tuples * HEAP_POINTER;
        1.0 + (bytes / usable).ceil()
    }
}

/// Pages for `rows` rows of `tuple` bytes when `usable` bytes of each page
/// hold whole rows.
fn per_page_pages(rows: f64, usable: f64, tuple: f64, heap: bool) -> f64 {
    if rows <= 0.0 {
        return 0.0;
    }
    let mut per_page = (usable / tuple).floor().max(1.0);
    if heap {
        per_page = per_page.min(MAX_HEAP_TUPLES_PER_PAGE);
    }
    (rows / per_page).ceil()
}

const BLOCK: u64 = 8192;

/// The bloat report: estimates for every user table and btree index at
/// least `min_bytes` large, exact figures instead when asked and possible.
/// Reads the catalog shapes it needs itself (only the tables `spec` names,
/// when it names them without globs).
pub async fn bloat(c: &mut impl Exec, spec: &BloatSpec) -> Result<BloatReport, DbError> {
    let shapes = crate::ops::bloat::shapes::read(&mut *c, crate::ops::bloat::shapes::scope_of(&spec.tables)).await?;
    bloat_from(c, &shapes, spec).await
}

/// The bloat report from shapes already read (the diff reads them once
/// for all its steps).
pub async fn bloat_from(c: &mut impl Exec, shapes: &Shapes, spec: &BloatSpec) -> Result<BloatReport, DbError> {
    let mut report = BloatReport::default();
    let mut measured: Vec<(&str, Shape)> = vec![];
    let all = shapes
        .tables
        .iter()
        .map(|s| ("table", s))
        .chain(shapes.indexes.iter().map(|s| ("index", s)))
        .chain(shapes.toast.iter().map(|s| ("table", s)));
    for (kind, s) in all {
        if !matches_any(&spec.tables, &s.table) {
            continue;
        }
        // A never-analyzed (and never vacuumed) relation has no relpages
        // yet: not "small" — without statistics, its size is read below
        // and it is listed for ANALYZE. (A TOAST table's size is its
        // relpages whatever its reltuples.)
        if (s.toast || s.tuples >= 0.0) && s.pages * BLOCK < spec.min_bytes.max(1) {
            report.skipped_small += 1;
            continue;
        }
        measured.push((kind, s.clone()));
    }
    if spec.exact {
        match exact(c, &measured).await {
            Ok(Ok((entries, note))) => {
                report.entries = entries;
                report.note = note;
                return Ok(report.sorted());
            }
            Ok(Err(note)) | Err(DbError { message: note, .. }) => report.note = Some(note),
        }
    }
    let unanalyzed: Vec<i64> = measured
        .iter()
        .filter(|(_, s)| !s.estimable())
        .map(|(_, s)| i64::from(s.oid))
        .collect();
    let sizes: std::collections::HashMap<i64, i64> = if unanalyzed.is_empty() {
        Default::default()
    } else {
        query(format!(
            "SELECT o, CASE WHEN o::oid IN {BUSY} THEN 0 ELSE pg_relation_size(o::oid)::int8 END \
             FROM unnest($1::int8[]) o"
        ))
        .bind(unanalyzed.as_slice())
        .fetch_all_as::<(i64, i64)>(&mut *c)
        .await?
        .into_iter()
        .collect()
    };
    for (kind, s) in measured {
        if !s.estimable() {
            let bytes = sizes.get(&i64::from(s.oid)).copied().unwrap_or(0).max(0) as u64;
            if bytes < spec.min_bytes.max(1) && s.tuples < 0.0 {
                report.skipped_small += 1;
                continue;
            }
            report.no_stats.push(s.name.clone());
            report.no_stats_bytes.push(bytes);
            continue;
        }
        let expected = if kind == "table" {
            s.heap_pages()
        } else {
            s.btree_pages()
        };
        let waste = (s.pages as f64 - expected) * BLOCK as f64;
        report.entries.push(BloatEntry::new(
            kind,
            s.name,
            s.table,
            s.pages * BLOCK,
            waste as i64,
            Method::Estimate,
        ));
    }
    Ok(report.sorted())
}

/// A table with at least this share of dead rows has index entries that
/// `pgstatindex` counts as live (see [`exact`]).
const UNVACUUMED_DEAD_SHARE: f64 = 0.05;

/// `pgstattuple` figures (and a note on those that are not), or
/// `Ok(Err(note))` saying why there are none.
///
/// An index of a table VACUUM has not yet cleaned still holds the entries
/// of its dead rows, and `pgstatindex` counts them in its leaf density: a
/// table with 60% of its rows deleted and not yet vacuumed had indexes
/// measured 0% wasted that a rebuild shrank by 59%. Such an index (its
/// table's statistics count at least 5% dead rows) is estimated from the
/// live rows instead, and the note says so.
async fn exact(
    c: &mut impl Exec,
    measured: &[(&str, Shape)],
) -> Result<Result<(Vec<BloatEntry>, Option<String>), String>, DbError> {
    let schema: Option<String> = query(
        "SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace \
         WHERE e.extname = 'pgstattuple'",
    )
    .scalar_optional(&mut *c)
    .await?;
    let Some(schema) = schema else {
        return Ok(Err(
            "`exact: true`, but the pgstattuple extension is not installed in this database: \
                       figures are estimates (dbmaint never installs extensions; \
                       `CREATE EXTENSION pgstattuple` gives exact ones)"
                .into(),
        ));
    };
    let s = quote_ident(&schema);
    let oids = |kind: &str| -> Vec<i64> {
        measured
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, s)| s.oid as i64)
            .collect()
    };
    // table_len, tuple_count, tuple_len
    let tables: Vec<(i64, i64, i64, i64)> = match query(format!(
        "SELECT o, (t).table_len, (t).tuple_count, (t).tuple_len \
         FROM (SELECT o, {s}.pgstattuple(o::oid::regclass) t FROM unnest($1::int8[]) o) x"
    ))
    .bind(oids("table"))
    .fetch_all_as(&mut *c)
    .await
    {
        Ok(rows) => rows,
        Err(e) => return Ok(Err(unusable(e))),
    };
    // index_size, internal, leaf, empty, deleted pages, avg leaf density
    type IndexRow = (i64, i64, i64, i64, f64);
    let indexes: Vec<IndexRow> = match query(format!(
        "SELECT o, (t).index_size, (t).internal_pages, (t).leaf_pages, \
           CASE WHEN (t).avg_leaf_density = 'NaN' THEN 0 ELSE (t).avg_leaf_density END::float8 \
         FROM (SELECT o, {s}.pgstatindex(o::oid::regclass) t FROM unnest($1::int8[]) o) x"
    ))
    .bind(oids("index"))
    .fetch_all_as(&mut *c)
    .await
    {
        Ok(rows) => rows,
        Err(e) => return Ok(Err(unusable(e))),
    };
    let unvacuumed: std::collections::HashSet<i64> = query(format!(
        "SELECT x.indexrelid::int8 FROM pg_index x JOIN pg_stat_all_tables t ON t.relid = x.indrelid \
         WHERE x.indexrelid = ANY($1::int8[]::oid[]) \
           AND t.n_dead_tup >= {UNVACUUMED_DEAD_SHARE} * greatest(t.n_live_tup + t.n_dead_tup, 1)"
    ))
    .bind(oids("index"))
    .scalars::<i64>(&mut *c)
    .await?
    .into_iter()
    .collect();
    let find = |oid: i64| measured.iter().find(|(_, s)| s.oid as i64 == oid).map(|(_, s)| s);
    let mut out = vec![];
    for (oid, len, count, tuple_len) in tables {
        let Some(s) = find(oid) else { continue };
        let avg = if count > 0 {
            tuple_len as f64 / count as f64
        } else {
            0.0
        };
        let tuple = ITEM_ID + align(avg);
        let need = per_page_pages(count as f64, (8192.0 - PAGE_HEADER) * s.fillfactor / 100.0, tuple, true);
        let waste = len as f64 - need * BLOCK as f64;
        out.push(BloatEntry::new(
            "table",
            s.name.clone(),
            s.table.clone(),
            len.max(0) as u64,
            waste as i64,
            Method::Pgstattuple,
        ));
    }
    let mut estimated = vec![];
    for (oid, size, internal, leaf, density) in indexes {
        let Some(s) = find(oid) else { continue };
        let (need, method) = if unvacuumed.contains(&oid) && s.estimable() {
            estimated.push(s.name.clone());
            (s.btree_pages(), Method::Estimate)
        } else {
            // Leaf pages the entries would fill at the index's fillfactor.
            let need_leaf = (leaf as f64 * density / s.fillfactor).ceil();
            (1.0 + internal as f64 + need_leaf, Method::Pgstattuple)
        };
        let waste = size as f64 - need * BLOCK as f64;
        out.push(BloatEntry::new(
            "index",
            s.name.clone(),
            s.table.clone(),
            size.max(0) as u64,
            waste as i64,
            method,
        ));
    }
    let note = (!estimated.is_empty()).then(|| {
        format!(
            "{} estimated from the live rows, not read by pgstatindex: their tables hold dead rows \
             VACUUM has not removed yet, whose entries pgstatindex counts as live (VACUUM first for exact figures)",
            estimated.join(", ")
        )
    });
    Ok(Ok((out, note)))
}

fn unusable(e: DbError) -> String {
    format!(
        "`exact: true`, but pgstattuple failed ({}): figures are estimates; \
         its functions need superuser or the pg_stat_scan_tables role",
        e.message
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(tuples: f64, width: f64, ff: f64) -> Shape {
        Shape {
            oid: 1,
            name: "public.t".into(),
            table: "public.t".into(),
            pages: 0,
            tuples,
            fillfactor: ff,
            columns: 2,
            columns_with_stats: 2,
            has_name_column: false,
            nullable: false,
            data_width: width,
            dedup: false,
            distinct: None,
            toast: false,
        }
    }

    #[test]
    fn heap_pages_follow_the_page_layout() {
        // 100-byte rows: 4 + 24 + 104 = 132 bytes, 61 per 8168-byte page.
        assert_eq!(shape(6100.0, 100.0, 100.0).heap_pages(), 100.0);
        // Half the space at fillfactor 50.
        assert_eq!(shape(6100.0, 100.0, 50.0).heap_pages(), 204.0);
        // 1-byte rows take 36 bytes: 226 per page.
        assert_eq!(shape(2260.0, 1.0, 100.0).heap_pages(), 10.0);
        // Rows without data (28 bytes) stop at 291 per page, not 291.7.
        assert_eq!(shape(2910.0, 0.0, 100.0).heap_pages(), 10.0);
        assert_eq!(shape(0.0, 100.0, 100.0).heap_pages(), 0.0);
    }

    #[test]
    fn btree_pages_count_leaves_and_the_metapage() {
        // int8 key: 4 + align(8 + 8) = 20 bytes; (8152 * 0.9) / 20 = 366 per page.
        assert_eq!(shape(36600.0, 8.0, 90.0).btree_pages(), 101.0);
    }

    #[test]
    fn deduplicated_btrees_store_one_key_per_posting_list() {
        // 80,000 rows over 1,000 int4 keys: 80 heap pointers (480 bytes)
        // per key plus one 20-byte tuple: ~500 KB, 69 pages at 90%.
        let mut s = shape(80_000.0, 4.0, 90.0);
        s.dedup = true;
        s.distinct = Some(1000.0);
        assert_eq!(
            s.btree_pages(),
            1.0 + ((1000.0 * 20.0 + 80_000.0 * 6.0) / (8152.0 * 0.9_f64)).ceil()
        );
        // Unique keys are not deduplicated.
        s.distinct = Some(80_000.0);
        assert_eq!(s.btree_pages(), shape(80_000.0, 4.0, 90.0).btree_pages());
    }

    #[test]
    fn estimates_need_statistics() {
        assert!(shape(10.0, 8.0, 90.0).estimable());
        assert!(shape(0.0, 8.0, 90.0).estimable());
        assert!(!shape(-1.0, 8.0, 90.0).estimable());
        let mut s = shape(10.0, 8.0, 90.0);
        s.columns_with_stats = 1;
        assert!(!s.estimable());
    }
}

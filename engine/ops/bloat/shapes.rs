//! What the PostgreSQL bloat estimate reads from the catalogs, read once
//! per diff and shared by every step that needs it (`bloat`, `reindex`).
//!
//! Four set-based statements, each linear in the number of relations:
//! tables (with their TOAST tables), btree indexes, the attributes of both,
//! and the rows of `pg_stats` (of `pg_statistic`, when the role may read
//! it: the same figures, keyed by numbers). They are joined here, in Rust, by
//! `(schema, table, column)` — not in SQL: `pg_stats` is a view with no
//! index on its names, and a join of it with the catalogs is planned on
//! row estimates the catalogs do not have, which at 25,000 relations chose
//! nested loops and took 35 s (issue 16). Hash maps cost the same at any
//! size.

use std::collections::HashMap;

use crate::db::DbError;
use crate::db::pg::USER_RELATIONS;
use crate::db::query::{Exec, query};
use crate::ops::bloat::pg::Shape;

/// The relations the estimate can size, with what it needs of each.
#[derive(Debug, Clone, Default)]
pub struct Shapes {
    pub tables: Vec<Shape>,
    pub indexes: Vec<Shape>,
    pub toast: Vec<Shape>,
    /// Read for only these names (`Scope::Named`), else for every relation.
    pub scope: Option<Vec<String>>,
}

/// Which relations to read: all, or those a step names without globs
/// (bare or schema-qualified names; a filter in SQL, a superset that the
/// caller's own `matches_any` narrows).
pub fn scope_of(globs: &[String]) -> Option<Vec<String>> {
    match crate::db::catalog::Measure::of(globs) {
        crate::db::catalog::Measure::All => None,
        crate::db::catalog::Measure::Named(names) => Some(names),
    }
}

/// The SQL condition keeping the relations of `scope` ($1) for the
/// relation `c` of schema `n`.
fn scope_sql(scope: &Option<Vec<String>>, c: &str) -> String {
    match scope {
        None => String::new(),
        Some(_) => format!(" AND ({c}.relname = ANY($1) OR n.nspname || '.' || {c}.relname = ANY($1))"),
    }
}

fn fillfactor(rel: &str, default: u32) -> String {
    format!(
        "coalesce((regexp_match(array_to_string({rel}.reloptions, ','), 'fillfactor=([0-9]+)'))[1]::float8, {default})"
    )
}

/// Statistics by (relation, attribute number), for a role that may read
/// `pg_statistic` itself (a superuser): the same figures `pg_stats` shows
/// it, without the view's join of every attribute (0.2 s at 25,000
/// relations, against 10 ms).
const STATISTIC_SQL: &str = "SELECT starelid::int8, staattnum::int4, stanullfrac::float8, stawidth::int8, \
     stadistinct::float8 FROM pg_statistic WHERE NOT stainherit";

/// The statements, in order: tables with their TOAST, btree indexes,
/// attributes of both, `pg_stats`. Public so the benchmark and the
/// scale test can name them.
pub fn shapes_sql(scope: &Option<Vec<String>>) -> [String; 4] {
    let tables_scope = scope_sql(scope, "c");
    let index_scope = scope_sql(scope, "t");
    [
        format!(
            "SELECT c.oid::int8, n.nspname::text, c.relname::text, c.relpages::int8, c.reltuples::float8, {}, \
               t.oid::int8, t.relname::text, t.relpages::int8, t.reltuples::float8 \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_class t ON t.oid = c.reltoastrelid \
             WHERE c.relkind IN ('r', 'm') AND {USER_RELATIONS}{tables_scope}",
            fillfactor("c", 100)
        ),
        format!(
            "SELECT i.oid::int8, n.nspname::text, i.relname::text, t.relname::text, i.relpages::int8, \
               i.reltuples::float8, {}, t.reltuples::float8, \
               NOT x.indisunique AND x.indnatts = x.indnkeyatts \
                 AND coalesce(array_to_string(i.reloptions, ',') !~ 'deduplicate_items=(off|false)', true) \
             FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid \
             JOIN pg_namespace n ON n.oid = t.relnamespace \
             WHERE i.relam = (SELECT oid FROM pg_am WHERE amname = 'btree') AND x.indisvalid \
               AND t.relkind IN ('r', 'm') AND {USER_RELATIONS}{index_scope}",
            fillfactor("i", 90)
        ),
        // Every attribute of the tables and indexes above: an index
        // attribute gives its table and the number of the table's column
        // it holds, or 0 for an expression (whose statistics ANALYZE keeps
        // under the index's own name). The column's name comes from the
        // table's own rows, matched in Rust.
        format!(
            "SELECT a.attrelid::int8, a.attname::text, a.atttypid = 'pg_catalog.name'::regtype, \
               a.attnum::int4, x.indrelid::int8, x.indkey[a.attnum - 1]::int4 \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
             LEFT JOIN pg_index x ON x.indexrelid = c.oid LEFT JOIN pg_class t ON t.oid = x.indrelid \
             WHERE (c.relkind IN ('r', 'm') OR (c.relkind = 'i' AND t.relkind IN ('r', 'm'))) \
               AND {USER_RELATIONS}{}",
            match scope {
                None => String::new(),
                Some(_) => " AND (c.relkind <> 'i' AND (c.relname = ANY($1) OR n.nspname || '.' || c.relname = ANY($1)) \
                   OR c.relkind = 'i' AND x.indrelid IN (SELECT t.oid FROM pg_class t JOIN pg_namespace n ON n.oid = t.relnamespace \
                     WHERE t.relname = ANY($1) OR n.nspname || '.' || t.relname = ANY($1)))"
                    .to_string(),
            }
        ),
        format!(
            "SELECT schemaname::text, tablename::text, attname::text, null_frac::float8, avg_width::int8, \
               n_distinct::float8 \
             FROM pg_stats WHERE NOT inherited \
               AND schemaname NOT IN ('pg_catalog', 'information_schema', 'dbmaint') \
               AND schemaname NOT LIKE 'pg\\_toast%' AND schemaname NOT LIKE 'pg\\_temp%'{}",
            match scope {
                None => "",
                // The tables' and their indexes' names, from the rows above.
                Some(_) => " AND tablename = ANY($1)",
            }
        ),
    ]
}

/// One attribute: its name, whether it is of type `name`, and for an
/// index attribute the table column it indexes.
struct Attr {
    name: String,
    is_name: bool,
    table_column: Option<String>,
    /// Its number, and for an index's key column the table's oid and the
    /// column's number there.
    number: i32,
    table_oid: Option<i64>,
    table_number: Option<i32>,
}

/// Statistics found by names (`pg_stats`) or by numbers (`pg_statistic`).
enum Stats {
    Names(HashMap<(String, String, String), Stat>),
    Numbers(HashMap<(i64, i32), Stat>),
}

impl Stats {
    /// The statistics of column `column` (number `number`) of relation
    /// `relation` (oid `oid`) of `schema`.
    fn get(&self, schema: &str, relation: &str, oid: i64, column: &str, number: i32) -> Option<Stat> {
        match self {
            Stats::Names(m) => m
                .get(&(schema.to_string(), relation.to_string(), column.to_string()))
                .copied(),
            Stats::Numbers(m) => m.get(&(oid, number)).copied(),
        }
    }
}

/// `pg_stats` of one column: null fraction, average width, n_distinct.
type Stat = (f64, i64, f64);

/// Reads the shapes of every user table, materialized view, TOAST table
/// and valid btree index, or only of those `scope` names and theirs.
pub async fn read(c: &mut impl Exec, scope: Option<Vec<String>>) -> Result<Shapes, DbError> {
    let [tables_sql, indexes_sql, attrs_sql, stats_sql] = shapes_sql(&scope);
    let bind = |q: crate::db::query::Query| match &scope {
        Some(names) => q.bind(names.clone()),
        None => q,
    };
    type TableRow = (
        i64,
        String,
        String,
        i64,
        f64,
        f64,
        Option<i64>,
        Option<String>,
        Option<i64>,
        Option<f64>,
    );
    let table_rows: Vec<TableRow> = bind(query(tables_sql)).fetch_all_as(&mut *c).await?;
    type IndexRow = (i64, String, String, String, i64, f64, f64, f64, bool);
    let index_rows: Vec<IndexRow> = bind(query(indexes_sql)).fetch_all_as(&mut *c).await?;
    let mut attrs: HashMap<i64, Vec<Attr>> = HashMap::new();
    type AttrRow = (i64, String, bool, i32, Option<i64>, Option<i32>);
    let attr_rows: Vec<AttrRow> = bind(query(attrs_sql)).fetch_all_as(&mut *c).await?;
    // Table columns by (table, number), for the index attributes that hold them.
    let column_names: HashMap<(i64, i32), &str> = attr_rows
        .iter()
        .filter(|r| r.4.is_none())
        .map(|r| ((r.0, r.3), r.1.as_str()))
        .collect();
    for (rel, name, is_name, number, table_oid, table_number) in &attr_rows {
        let held = match (table_oid, table_number) {
            (Some(t), Some(n)) if *n > 0 => column_names.get(&(*t, *n)).map(|c| (*t, *n, c.to_string())),
            _ => None,
        };
        attrs.entry(*rel).or_default().push(Attr {
            name: name.clone(),
            is_name: *is_name,
            table_column: held.as_ref().map(|h| h.2.clone()),
            number: *number,
            table_oid: held.as_ref().map(|h| h.0),
            table_number: held.as_ref().map(|h| h.1),
        });
    }
    let stats = if query("SELECT has_table_privilege('pg_catalog.pg_statistic', 'SELECT')")
        .scalar::<bool>(&mut *c)
        .await?
    {
        Stats::Numbers(
            query(STATISTIC_SQL)
                .fetch_all_as::<(i64, i32, f64, i64, f64)>(&mut *c)
                .await?
                .into_iter()
                .map(|(rel, number, null_frac, width, distinct)| ((rel, number), (null_frac, width, distinct)))
                .collect(),
        )
    } else {
        let stats_query = match &scope {
            None => query(stats_sql),
            Some(_) => {
                let names: Vec<String> = table_rows
                    .iter()
                    .map(|r| r.2.clone())
                    .chain(index_rows.iter().map(|r| r.2.clone()))
                    .collect();
                query(stats_sql).bind(names)
            }
        };
        Stats::Names(
            stats_query
                .fetch_all_as::<(String, String, String, f64, i64, f64)>(&mut *c)
                .await?
                .into_iter()
                .map(|(s, t, a, null_frac, width, distinct)| ((s, t, a), (null_frac, width, distinct)))
                .collect(),
        )
    };

    let mut out = Shapes {
        scope: scope.clone(),
        ..Shapes::default()
    };
    for (oid, schema, name, pages, tuples, fillfactor, toast_oid, toast_name, toast_pages, toast_tuples) in table_rows {
        let columns = attrs.get(&oid).map(Vec::as_slice).unwrap_or_default();
        let found: Vec<Stat> = columns
            .iter()
            .filter_map(|a| stats.get(&schema, &name, oid, &a.name, a.number))
            .collect();
        let full = format!("{schema}.{name}");
        out.tables.push(Shape {
            oid: oid as u32,
            name: full.clone(),
            table: full.clone(),
            pages: pages.max(0) as u64,
            tuples,
            fillfactor,
            columns: columns.len() as i64,
            columns_with_stats: found.len() as i64,
            has_name_column: columns.iter().any(|a| a.is_name),
            nullable: found.iter().any(|s| s.0 > 0.0),
            data_width: width(&found),
            dedup: false,
            distinct: None,
            toast: false,
        });
        if let (Some(oid), Some(name), Some(pages), Some(tuples)) = (toast_oid, toast_name, toast_pages, toast_tuples) {
            out.toast.push(Shape {
                oid: oid as u32,
                name: format!("pg_toast.{name}"),
                table: full,
                pages: pages.max(0) as u64,
                tuples,
                fillfactor: 100.0,
                columns: 0,
                columns_with_stats: 0,
                has_name_column: false,
                nullable: false,
                data_width: 0.0,
                dedup: false,
                distinct: None,
                toast: true,
            });
        }
    }
    for (oid, schema, name, table, pages, tuples, fillfactor, table_tuples, dedup) in index_rows {
        let columns = attrs.get(&oid).map(Vec::as_slice).unwrap_or_default();
        // A key column's statistics are its table's; an expression's are
        // the index's own.
        let found: Vec<Stat> = columns
            .iter()
            .filter_map(|a| match (&a.table_column, a.table_oid, a.table_number) {
                (Some(col), Some(table_oid), Some(number)) => stats.get(&schema, &table, table_oid, col, number),
                _ => stats.get(&schema, &name, oid, &a.name, a.number),
            })
            .collect();
        // Distinct keys: the product of each column's n_distinct (negative:
        // a fraction of the table's rows), when every column has one.
        let distinct = (!columns.is_empty() && found.len() == columns.len()).then(|| {
            found
                .iter()
                .map(|s| {
                    let d = if s.2 >= 0.0 { s.2 } else { -s.2 * table_tuples.max(0.0) };
                    d.max(1.0).ln()
                })
                .sum::<f64>()
                .exp()
        });
        out.indexes.push(Shape {
            oid: oid as u32,
            name: format!("{schema}.{name}"),
            table: format!("{schema}.{table}"),
            pages: pages.max(0) as u64,
            tuples,
            fillfactor,
            columns: columns.len() as i64,
            columns_with_stats: found.len() as i64,
            has_name_column: columns.iter().any(|a| a.is_name),
            nullable: found.iter().any(|s| s.0 > 0.0),
            data_width: width(&found),
            dedup,
            distinct: distinct.map(|d| d.min(tuples.max(1.0))),
            toast: false,
        });
    }
    Ok(out)
}

/// Sum over columns of (1 - null_frac) * avg_width.
fn width(found: &[Stat]) -> f64 {
    found.iter().map(|s| (1.0 - s.0) * s.1 as f64).sum()
}

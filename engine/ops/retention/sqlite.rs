//! Retention on SQLite: the probe (one scan decides how the column stores
//! time), the key form (`json_array` text) and the ranged statements.

use super::facts::{RetentionFacts, RetentionProbe};
use super::sql::{ArchiveSpec, RetentionSpec, RetentionSql, retention_predicate};
use super::work::BatchSql;
use crate::db::DbError;
use crate::db::query::{Exec, query};

/// SQLite has no row estimates, so retention is always counted exactly.
/// One scan samples the column (storage classes, smallest and largest
/// value, NULLs) to decide how it stores time; the cutoff is then built in
/// that form and compared as that storage class.
pub async fn probe(c: &mut impl Exec, p: &RetentionProbe) -> Result<RetentionFacts, DbError> {
    use super::timefmt::{Sample, TimeFormat, cutoff_value, decide, is_zone_less};
    let r = query(format!(
        "SELECT CAST(min({c}) AS REAL), CAST(max({c}) AS REAL), CAST(min({c}) AS TEXT), CAST(max({c}) AS TEXT), \
         coalesce(sum({c} IS NULL), 0), group_concat(DISTINCT typeof({c})) FROM {t}",
        c = p.column,
        t = p.table
    ))
    .fetch_one(&mut *c)
    .await?;
    let classes: Option<String> = r.get(5)?;
    let sample = Sample {
        declared: p.column_type.to_ascii_lowercase(),
        storage: classes
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty() && *s != "null")
            .map(str::to_string)
            .collect(),
        min_num: r.get(0)?,
        max_num: r.get(1)?,
        min_text: r.get(2)?,
        max_text: r.get(3)?,
    };
    let nulls = r.get::<i64>(4)?.max(0) as u64;
    let format = match decide(&sample, p.stated_format) {
        Ok(f) => f,
        Err(e) => {
            return Ok(RetentionFacts {
                rows: 0,
                exact: true,
                oldest: sample.min_text,
                newest: sample.max_text,
                cutoff: String::new(),
                format: None,
                format_error: Some(e),
                nulls,
                ..RetentionFacts::default()
            });
        }
    };
    let t_sep = sample
        .min_text
        .as_ref()
        .is_some_and(|t| t.as_bytes().get(10) == Some(&b'T'));
    let zone_less = is_zone_less(format, &sample.declared, sample.min_text.as_deref());
    let cutoff = cutoff_value(format, p.cutoff, p.zone, t_sep);
    let param = match format {
        TimeFormat::JulianDay => "CAST(?1 AS REAL)",
        f if f.is_numeric() => "CAST(?1 AS INTEGER)",
        _ => "?1",
    };
    let mut pred = format!("{} < {param}", p.column);
    if let Some(w) = &p.where_sql {
        pred.push_str(&format!(" AND ({w})"));
    }
    let children = super::batch::child_counts(c, p, &pred, Some(&cutoff)).await?;
    let referenced = match &p.guard_sql {
        Some(g) => {
            let n: i64 = query(super::sql::referenced_count_sql(&p.table, &pred, g))
                .bind(&cutoff)
                .scalar(&mut *c)
                .await?;
            pred.push_str(&format!(" AND {g}"));
            n.max(0) as u64
        }
        None => 0,
    };
    let digest = match &p.digest_key {
        Some(k) => {
            let mut d = super::keydigest::KeyDigest::default();
            query(format!("SELECT {k} FROM {} WHERE {pred}", p.table))
                .bind(&cutoff)
                .for_each(&mut *c, |r| {
                    d.add(&r.get::<String>(0)?);
                    Ok(())
                })
                .await?;
            Some(d)
        }
        None => None,
    };
    let r = query(format!(
        "SELECT count(*), CAST(min({c}) AS TEXT), CAST(max({c}) AS TEXT), \
         NOT EXISTS (SELECT 1 FROM {t} WHERE ({pred}) IS NOT 1), (SELECT count(*) FROM {t}) FROM {t} WHERE {pred}",
        t = p.table,
        c = p.column
    ))
    .bind(&cutoff)
    .fetch_one(&mut *c)
    .await?;
    Ok(RetentionFacts {
        rows: r.get::<i64>(0)?.max(0) as u64,
        exact: true,
        oldest: r.get(1)?,
        newest: r.get(2)?,
        cutoff,
        format: Some(format),
        format_error: None,
        nulls,
        zone: zone_less.then(|| p.zone.to_string()),
        children,
        referenced,
        all_rows: r.get::<i64>(3)? != 0,
        rls_applies: false,
        table_rows: r.get::<i64>(4)?.max(0) as u64,
        table_rows_exact: true,
        partitions: vec![],
        digest,
    })
}

/// A retention key in SQLite's SQL: one column (or `rowid`), or a composite
/// key compared as a row value. Keys travel as `json_array(k, …)` text and
/// come back through `json_extract`, which returns each value in the
/// storage class it had: a typeless key holding numbers compares as
/// numbers, text as text, as SQLite itself orders them.
struct SqliteKey<'a>(&'a [(String, String)]);

impl SqliteKey<'_> {
    fn cols(&self) -> Vec<&str> {
        self.0.iter().map(|(c, _)| c.as_str()).collect()
    }

    /// `k` or `(a, b)`.
    fn tuple(&self) -> String {
        match self.cols().as_slice() {
            [one] => one.to_string(),
            many => format!("({})", many.join(", ")),
        }
    }

    fn order(&self, desc: bool) -> String {
        self.cols()
            .iter()
            .map(|c| format!("{c}{}", if desc { " DESC" } else { "" }))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The key as walk text.
    fn text(&self) -> String {
        format!("json_array({})", self.cols().join(", "))
    }

    /// Parameter `?n` (walk text) as a value comparable with [`Self::tuple`].
    fn param(&self, n: u8) -> String {
        let parts: Vec<String> = (0..self.0.len())
            .map(|i| format!("json_extract(?{n}, '$[{i}]')"))
            .collect();
        match parts.as_slice() {
            [one] => one.clone(),
            many => format!("({})", many.join(", ")),
        }
    }

    /// The key a file archive's line carries: the value itself for one
    /// column, a JSON array for several.
    fn file_key(&self) -> String {
        match self.cols().as_slice() {
            [one] => format!("CAST({one} AS TEXT)"),
            _ => self.text(),
        }
    }
}

/// A key as text (see [`SqliteKey`]).
pub fn key_text(key: &[(String, String)]) -> String {
    SqliteKey(key).text()
}

/// SQLite's retention statements: SQLite has no DELETE inside a CTE, so a
/// batch is its key range, then copy and delete over that range, in one
/// `BEGIN IMMEDIATE` transaction.
pub fn retention_sql(spec: &RetentionSpec) -> RetentionSql {
    let param = spec
        .cutoff_cast
        .map_or_else(|| "?1".to_string(), |c| format!("CAST(?1 AS {c})"));
    let pred = retention_predicate(spec, &param);
    let t = &spec.table;
    let key = SqliteKey(&spec.key);
    let kt = key.tuple();
    let cols = spec
        .columns
        .iter()
        .map(|(c, _)| c.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let range = format!(" AND {kt} >= {} AND {kt} <= {}", key.param(2), key.param(3));
    // The eligible rows and their key span; (rows, first key, last key) of
    // a batch. One column: min and max (which order storage classes as
    // comparisons do); several: the ends of the ordered rows.
    let (count, bound_first, bound_next) = if let [(k, _)] = spec.key.as_slice() {
        let bound = |op: &str| {
            format!(
                "SELECT count(*), json_array(min(b.k)), json_array(max(b.k)) \
                 FROM (SELECT {k} AS k FROM {t} WHERE {pred} AND {k} {op} {} AND {k} <= {} ORDER BY {k} LIMIT ?3) b",
                key.param(2),
                key.param(4)
            )
        };
        (
            format!("SELECT count(*), json_array(min({k})), json_array(max({k})) FROM {t} WHERE {pred}"),
            bound(">="),
            bound(">"),
        )
    } else {
        let end = |from: &str, desc| {
            format!(
                "(SELECT {} FROM {from} ORDER BY {} LIMIT 1)",
                key.text(),
                key.order(desc)
            )
        };
        let eligible = format!("{t} WHERE {pred}");
        let bound = |op: &str| {
            format!(
                "WITH b AS MATERIALIZED (SELECT {} FROM {t} WHERE {pred} AND {kt} {op} {} AND {kt} <= {} ORDER BY {} LIMIT ?3) \
                 SELECT (SELECT count(*) FROM b), {}, {}",
                key.cols().join(", "),
                key.param(2),
                key.param(4),
                key.order(false),
                end("b", false),
                end("b", true)
            )
        };
        (
            format!(
                "SELECT count(*), {}, {} FROM {t} WHERE {pred}",
                end(&eligible, false),
                end(&eligible, true)
            ),
            bound(">="),
            bound(">"),
        )
    };
    let mut create_archive = vec![];
    let mut copy = None;
    let delete = format!("DELETE FROM {t} WHERE {pred}{range}");
    let delete = match &spec.archive {
        Some(ArchiveSpec::Table { name, exists }) => {
            if !exists {
                let mut defs: Vec<String> = spec.columns.iter().map(|(c, ty)| format!("{c} {ty}")).collect();
                let pk = if spec.primary_key.is_empty() && kt != "rowid" {
                    key.cols().iter().map(|c| c.to_string()).collect()
                } else {
                    spec.primary_key.clone()
                };
                if !pk.is_empty() {
                    defs.push(format!("PRIMARY KEY ({})", pk.join(", ")));
                }
                create_archive.push(format!("CREATE TABLE {name} ({})", defs.join(", ")));
            }
            copy = Some(format!(
                "INSERT INTO {name} ({cols}) SELECT {cols} FROM {t} WHERE {pred}{range}"
            ));
            delete
        }
        // The rows the delete really removed, for the file (a row a
        // trigger kept is not written).
        Some(ArchiveSpec::File { .. }) => {
            let fields = spec
                .columns
                .iter()
                .map(|(c, _)| format!("'{}', {c}", c.trim_matches('"').replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(", ");
            format!("{delete} RETURNING {}, json_object({fields})", key.file_key())
        }
        None => delete,
    };
    RetentionSql {
        create_archive,
        count,
        batch: BatchSql::Ranged {
            bound_first,
            bound_next,
            copy,
            delete,
        },
        cascades: super::sql::cascade_counts(spec, t, &pred, &range),
    }
}

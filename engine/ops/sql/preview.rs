//! The `sql` step's `dry_run` preview: its first rows as text, read on
//! the diff's read-only session (a query that tries to write is refused by
//! the server).

use serde::Serialize;

use crate::db::query::{Exec, query};
use crate::db::{Conn, DbError, one_line};
use crate::plan::values::Backend;

/// The first rows of a read-only query, as text, for the diff.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueryPreview {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// More rows than [`PREVIEW_ROWS`] came back.
    pub truncated: bool,
    /// The query failed (it is shown instead of the rows).
    pub error: Option<String>,
}

/// Rows of a `dry_run` query the diff shows.
pub const PREVIEW_ROWS: usize = 20;

/// Runs a `dry_run` query (on a read-only session) and keeps its first
/// rows; a failure is kept as the preview's error.
pub async fn preview(c: &mut Conn, text: &str) -> QueryPreview {
    let result = match c.backend() {
        Backend::Postgres => pg(c, text).await,
        Backend::Sqlite => sqlite(c, text).await,
    };
    result.unwrap_or_else(|e| QueryPreview {
        error: Some(one_line(&e.message)),
        ..Default::default()
    })
}

/// A `dry_run` query's first rows: each row through `row_to_json`, so every
/// type shows as PostgreSQL prints it in JSON.
async fn pg(c: &mut impl Exec, text: &str) -> Result<QueryPreview, DbError> {
    let text = text.trim().trim_end_matches(';');
    let rows: Vec<String> = query(format!(
        "SELECT row_to_json(q)::text FROM ({text}\n) q LIMIT {}",
        PREVIEW_ROWS + 1
    ))
    .scalars(&mut *c)
    .await?;
    let mut p = QueryPreview {
        truncated: rows.len() > PREVIEW_ROWS,
        ..QueryPreview::default()
    };
    for r in rows.iter().take(PREVIEW_ROWS) {
        let v: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r).map_err(|e| DbError::other(format!("row_to_json gave bad JSON: {e}")))?;
        if p.columns.is_empty() {
            p.columns = v.keys().cloned().collect();
        }
        p.rows.push(
            v.values()
                .map(|x| match x {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => "NULL".into(),
                    other => other.to_string(),
                })
                .collect(),
        );
    }
    Ok(p)
}

/// A `dry_run` query's first rows: SQLite values are text, integers,
/// reals, NULL or blobs (shown by size).
async fn sqlite(c: &mut impl Exec, text: &str) -> Result<QueryPreview, DbError> {
    let mut p = QueryPreview::default();
    let text = text.trim().trim_end_matches(';');
    let rows = query(format!("SELECT * FROM ({text}\n) LIMIT {}", PREVIEW_ROWS + 1))
        .fetch_all(&mut *c)
        .await?;
    p.truncated = rows.len() > PREVIEW_ROWS;
    for r in rows.iter().take(PREVIEW_ROWS) {
        if p.columns.is_empty() {
            p.columns = r.columns();
        }
        let cells = (0..r.len())
            .map(|i| {
                if r.is_null(i) {
                    "NULL".to_string()
                } else if let Some(v) = r.try_get::<i64>(i) {
                    v.to_string()
                } else if let Some(v) = r.try_get::<f64>(i) {
                    v.to_string()
                } else if let Some(v) = r.try_get::<String>(i) {
                    v
                } else if let Some(v) = r.try_get::<Vec<u8>>(i) {
                    format!("<{} bytes>", v.len())
                } else {
                    "?".into()
                }
            })
            .collect();
        p.rows.push(cells);
    }
    Ok(p)
}
